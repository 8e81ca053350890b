"""Tiny generated copies of the datasets' released layouts, for the tests
that run the configs' data pipelines and training on them.

Each ``make_<dataset>(root, sizes)`` writes one image per (h, w) in
``sizes`` for the training split and the first one again for validation,
with random uint8 images and blocky random labels (several classes per image,
as real labels, so that class-ratio crops can succeed), and returns
``root``.  Label values are what the files hold in the released datasets.
"""
import os

import cv2
import numpy as np
from PIL import Image
from scipy import io as sio

__all__ = ['LAYOUTS', 'make_ade20k', 'make_cityscapes', 'make_cocostuff10k',
           'make_lip', 'make_voc12aug']


def _image(path, h, w, rng):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(path, rng.randint(0, 256, (h, w, 3)).astype(np.uint8))


def _labels(h, w, values, rng, block=4):
    """Random labels drawn from ``values`` in blocks of ``block`` pixels."""
    coarse = rng.choice(values, (-(-h // block), -(-w // block)))
    return np.kron(coarse, np.ones((block, block), coarse.dtype))[:h, :w]


def _png(path, label):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(label.astype(np.uint8), mode='L').save(path)


def _splits(sizes):
    return (('train', list(sizes)), ('val', list(sizes[:1])))


def make_cityscapes(root, sizes, seed=0):
    """leftImg8bit/<split>/<city>/*_leftImg8bit.png and
    gtFine/<split>/<city>/*_gtFine_labelTrainIds.png (0..18, 255)."""
    rng = np.random.RandomState(seed)
    for split, shapes in _splits(sizes):
        for i, (h, w) in enumerate(shapes):
            name = 'aachen_{:06d}_000019'.format(i)
            _image(os.path.join(root, 'leftImg8bit', split, 'aachen',
                                name + '_leftImg8bit.png'), h, w, rng)
            _png(os.path.join(root, 'gtFine', split, 'aachen',
                              name + '_gtFine_labelTrainIds.png'),
                 _labels(h, w, list(range(19)) + [255], rng))
    return root


def make_ade20k(root, sizes, seed=0):
    """images/{training,validation}/*.jpg, annotations/.../*.png (0 is
    "other", 1..150 the classes)."""
    rng = np.random.RandomState(seed)
    folders = {'train': 'training', 'val': 'validation'}
    for split, shapes in _splits(sizes):
        for i, (h, w) in enumerate(shapes):
            name = 'ADE_{}_{:08d}'.format(folders[split], i + 1)
            _image(os.path.join(root, 'images', folders[split], name + '.jpg'),
                   h, w, rng)
            _png(os.path.join(root, 'annotations', folders[split],
                              name + '.png'),
                 _labels(h, w, list(range(151)), rng))
    return root


def make_voc12aug(root, sizes, seed=0):
    """VOC2012/{JPEGImages,SegmentationClass,SegmentationClassAug} and
    ImageSets/Segmentation/{train,aug,val}.txt (labels 0..20, 255)."""
    rng = np.random.RandomState(seed)
    voc = os.path.join(root, 'VOC2012')
    lists = {'train': [], 'aug': [], 'val': []}
    for split, shapes in _splits(sizes):
        for i, (h, w) in enumerate(shapes):
            name = '2007_{:06d}'.format(i) if split == 'val' else (
                '2008_{:06d}'.format(i))
            # train.txt labels in SegmentationClass, aug.txt (SBD) in ...Aug
            part = 'val' if split == 'val' else ('train' if i % 2 else 'aug')
            lists[part].append(name)
            label_dir = ('SegmentationClassAug' if part == 'aug' else
                         'SegmentationClass')
            _image(os.path.join(voc, 'JPEGImages', name + '.jpg'), h, w, rng)
            _png(os.path.join(voc, label_dir, name + '.png'),
                 _labels(h, w, list(range(21)) + [255], rng))
    sets = os.path.join(voc, 'ImageSets', 'Segmentation')
    os.makedirs(sets, exist_ok=True)
    for part, names in lists.items():
        with open(os.path.join(sets, part + '.txt'), 'w') as f:
            f.write(''.join(n + '\n' for n in names))
    return root


def make_cocostuff10k(root, sizes, seed=0):
    """images/<id>.jpg, annotations/<id>.mat (S: 0 unlabeled, 1..182),
    imageLists/{train,test}.txt."""
    rng = np.random.RandomState(seed)
    lists = {'train': [], 'val': []}
    for split, shapes in _splits(sizes):
        for i, (h, w) in enumerate(shapes):
            name = 'COCO_{}2014_{:012d}'.format(split, i + 1)
            lists[split].append(name)
            _image(os.path.join(root, 'images', name + '.jpg'), h, w, rng)
            os.makedirs(os.path.join(root, 'annotations'), exist_ok=True)
            sio.savemat(os.path.join(root, 'annotations', name + '.mat'),
                        {'S': _labels(h, w, list(range(183)),
                                      rng).astype(np.uint16)})
    os.makedirs(os.path.join(root, 'imageLists'), exist_ok=True)
    for split, file in (('train', 'train.txt'), ('val', 'test.txt')):
        with open(os.path.join(root, 'imageLists', file), 'w') as f:
            f.write(''.join(n + '\n' for n in lists[split]))
    return root


def make_lip(root, sizes, seed=0):
    """{train,val}_images/<id>.jpg, {train,val}_segmentations/<id>.png
    (0..19), {train,val}_id.txt."""
    rng = np.random.RandomState(seed)
    for split, shapes in _splits(sizes):
        names = []
        for i, (h, w) in enumerate(shapes):
            name = '{}_{:06d}'.format(100034 + i, 483681 + i)
            names.append(name)
            _image(os.path.join(root, split + '_images', name + '.jpg'), h, w,
                   rng)
            _png(os.path.join(root, split + '_segmentations', name + '.png'),
                 _labels(h, w, list(range(20)), rng))
        with open(os.path.join(root, split + '_id.txt'), 'w') as f:
            f.write(''.join(n + '\n' for n in names))
    return root


# PaddleSeg dataset type -> generator of its layout.
LAYOUTS = {
    'Cityscapes': make_cityscapes,
    'ADE20K': make_ade20k,
    'PascalVOC': make_voc12aug,
    'CocoStuff10k': make_cocostuff10k,
    'LIP': make_lip,
}
