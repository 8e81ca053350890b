"""Tiny generated copies of the datasets' released layouts, for the tests
that run the configs' data pipelines and training on them.

Each ``make_<dataset>(root, sizes)`` writes one image per (h, w) in
``sizes`` for the training split and the first one again for validation,
with random uint8 images and blocky random labels (several classes per image,
as real labels, so that class-ratio crops can succeed), and returns
``root``.  Label values are what the files hold in the released datasets.
"""
import io
import os
import tarfile
import zipfile

import cv2
import numpy as np
import scipy.sparse
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


# ------------------------------------------------ miniature official downloads
# ``write_<name>_downloads(src, seed)`` writes the archives a user downloads
# from each data set's page, with their member names and file formats (tiny
# images), into ``src`` and returns ``(counts, raw)``: the image count per
# split as prepared, and ``raw[split][id]``, the label array as the download
# stores it (Cityscapes labelIds, VOC palette indices / SBD GTcls, ...).


def _encoded(path_suffix, array):
    """The bytes of ``array`` written as an image file of ``path_suffix``."""
    if array.ndim == 2 and path_suffix == '.png':
        buf = io.BytesIO()
        Image.fromarray(array.astype(np.uint8), mode='L').save(buf, 'PNG')
        return buf.getvalue()
    ok, data = cv2.imencode(path_suffix, array)
    assert ok
    return data.tobytes()


def _random_image(rng, h, w):
    return rng.randint(0, 256, (h, w, 3)).astype(np.uint8)


def write_archive(path, members):
    """A zip, tar or tar.gz at ``path`` holding ``members`` (name -> bytes)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    if path.endswith('.zip'):
        with zipfile.ZipFile(path, 'w') as zf:
            for name, data in members.items():
                zf.writestr(name, data)
        return path
    with tarfile.open(path, 'w:gz' if path.endswith(('.tgz', '.gz')) else
                      'w') as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def voc_palette():
    """PASCAL VOC's colour map (256 RGB entries, bit-interleaved)."""
    palette = np.zeros((256, 3), np.uint8)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette[i] = r, g, b
    return palette


def _palette_png(label):
    buf = io.BytesIO()
    image = Image.fromarray(label.astype(np.uint8), mode='P')
    image.putpalette(voc_palette().ravel().tolist())
    image.save(buf, 'PNG')
    return buf.getvalue()


def _mat(variables):
    buf = io.BytesIO()
    sio.savemat(buf, variables)
    return buf.getvalue()


def write_cityscapes_downloads(src, seed=0):
    rng = np.random.RandomState(seed)
    counts = {'train': 3, 'val': 2, 'test': 1}
    cities = {'train': ['aachen', 'bremen'], 'val': ['frankfurt'],
              'test': ['berlin']}
    images = {'README': b'leftImg8bit', 'license.txt': b'license'}
    labels = {'README': b'gtFine', 'license.txt': b'license'}
    raw = {}
    for split, n in counts.items():
        raw[split] = {}
        for i in range(n):
            city = cities[split][i % len(cities[split])]
            stem = '{}_{:06d}_000019'.format(city, i)
            h, w = 16 + 2 * i, 24
            images['leftImg8bit/{}/{}/{}_leftImg8bit.png'.format(
                split, city, stem)] = _encoded('.png', _random_image(rng, h, w))
            ids = _labels(h, w, list(range(34)), rng, block=2)
            raw[split][stem] = ids
            base = 'gtFine/{}/{}/{}_gtFine_'.format(split, city, stem)
            labels[base + 'labelIds.png'] = _encoded('.png', ids)
            labels[base + 'instanceIds.png'] = _encoded('.png', ids)
            labels[base + 'color.png'] = _encoded('.png', _random_image(
                rng, h, w))
            labels[base + 'polygons.json'] = b'{}'
    write_archive(os.path.join(src, 'leftImg8bit_trainvaltest.zip'), images)
    write_archive(os.path.join(src, 'gtFine_trainvaltest.zip'), labels)
    return counts, raw


def write_voc12aug_downloads(src, seed=0):
    """VOC 2012 train a b c, val d e; SBD train a f g x, val d h (x only in
    SBD's img/): trainaug = a b c f g h x, aug = f g h x."""
    rng = np.random.RandomState(seed)
    ids = {k: '2008_{:06d}'.format(i) for i, k in enumerate('abcdefghx')}
    voc_train, voc_val = 'abc', 'de'
    sbd_train, sbd_val = 'afgx', 'dh'
    voc, sbd, raw = {}, {}, {'voc': {}, 'sbd': {}}
    root = 'VOCdevkit/VOC2012/'
    for k in 'abcdefgh':
        voc[root + 'JPEGImages/{}.jpg'.format(ids[k])] = _encoded(
            '.jpg', _random_image(rng, 14, 18 + ord(k) % 3))
        voc[root + 'Annotations/{}.xml'.format(ids[k])] = b'<annotation/>'
    for k in voc_train + voc_val:
        w = 18 + ord(k) % 3
        label = _labels(14, w, list(range(21)), rng, block=2)
        label[0, :] = 255  # the object borders VOC marks as "void"
        raw['voc'][ids[k]] = label
        voc[root + 'SegmentationClass/{}.png'.format(ids[k])] = _palette_png(
            label)
        voc[root + 'SegmentationObject/{}.png'.format(ids[k])] = \
            _palette_png(label)
    sets = root + 'ImageSets/Segmentation/'
    for name, keys in (('train', voc_train), ('val', voc_val),
                       ('trainval', voc_train + voc_val)):
        voc[sets + name + '.txt'] = ''.join(
            ids[k] + '\n' for k in keys).encode()
    for k in sbd_train + sbd_val:
        w = 18 + ord(k) % 3
        seg = _labels(14, w, list(range(21)), rng, block=2)
        raw['sbd'][ids[k]] = seg
        boundaries = np.empty((21, 1), dtype=object)
        for c in range(21):
            boundaries[c, 0] = scipy.sparse.csc_matrix(
                (seg == c).astype(np.float64))
        gt = {'Segmentation': seg.astype(np.uint8), 'Boundaries': boundaries,
              'CategoriesPresent': np.unique(seg).astype(np.uint8)}
        sbd['benchmark_RELEASE/dataset/cls/{}.mat'.format(ids[k])] = _mat(
            {'GTcls': gt})
        sbd['benchmark_RELEASE/dataset/inst/{}.mat'.format(ids[k])] = _mat(
            {'GTinst': {'Segmentation': seg.astype(np.uint8)}})
        sbd['benchmark_RELEASE/dataset/img/{}.jpg'.format(ids[k])] = _encoded(
            '.jpg', _random_image(rng, 14, w))
    for name, keys in (('train', sbd_train), ('val', sbd_val)):
        sbd['benchmark_RELEASE/dataset/{}.txt'.format(name)] = ''.join(
            ids[k] + '\n' for k in keys).encode()
    write_archive(os.path.join(src, 'VOCtrainval_11-May-2012.tar'), voc)
    write_archive(os.path.join(src, 'benchmark.tgz'), sbd)
    splits = {'train': [ids[k] for k in voc_train],
              'val': [ids[k] for k in voc_val],
              'aug': [ids[k] for k in 'fghx']}
    return {'train': 3, 'trainaug': 7, 'val': 2}, raw, splits


def write_ade20k_downloads(src, seed=0):
    rng = np.random.RandomState(seed)
    counts = {'train': 3, 'val': 2}
    members = {'ADEChallengeData2016/objectInfo150.txt': b'Idx\n',
               'ADEChallengeData2016/sceneCategories.txt': b''}
    raw = {}
    for split, folder in (('train', 'training'), ('val', 'validation')):
        raw[split] = {}
        for i in range(counts[split]):
            stem = 'ADE_{}_{:08d}'.format(split, i + 1)
            h, w = 15 + i, 20
            members['ADEChallengeData2016/images/{}/{}.jpg'.format(
                folder, stem)] = _encoded('.jpg', _random_image(rng, h, w))
            label = _labels(h, w, list(range(151)), rng, block=2)
            raw[split][stem] = label
            members['ADEChallengeData2016/annotations/{}/{}.png'.format(
                folder, stem)] = _encoded('.png', label)
    write_archive(os.path.join(src, 'ADEChallengeData2016.zip'), members)
    return counts, raw


def write_cocostuff10k_downloads(src, seed=0):
    rng = np.random.RandomState(seed)
    counts = {'train': 3, 'test': 2}
    members = {'cocostuff-labels.txt': b'0: unlabeled\n'}
    raw = {}
    for split in counts:
        raw[split] = {}
        for i in range(counts[split]):
            stem = 'COCO_{}2014_{:012d}'.format(
                'train' if split == 'train' else 'val', 10 * i + len(split))
            h, w = 13 + i, 17
            members['images/{}.jpg'.format(stem)] = _encoded(
                '.jpg', _random_image(rng, h, w))
            label = _labels(h, w, list(range(183)), rng, block=2).astype(
                np.uint16)
            raw[split][stem] = label
            members['annotations/{}.mat'.format(stem)] = _mat(
                {'S': label, 'names': np.array(['unlabeled', 'person'],
                                               dtype=object),
                 'captions': np.array(['a caption'], dtype=object)})
        members['imageLists/{}.txt'.format(split)] = ''.join(
            s + '\n' for s in raw[split]).encode()
    members['imageLists/all.txt'] = b''.join(
        members['imageLists/{}.txt'.format(s)] for s in counts)
    write_archive(os.path.join(src, 'cocostuff-10k-v1.1.zip'), members)
    return counts, raw


def write_lip_downloads(src, seed=0):
    rng = np.random.RandomState(seed)
    counts = {'train': 3, 'val': 2}
    images, labels, raw = {}, {}, {}
    for split in counts:
        raw[split] = {}
        for i in range(counts[split]):
            stem = '{}_{:06d}'.format(100034 + i, 483681 + len(split))
            h, w = 19, 11 + i
            images['TrainVal_images/{}_images/{}.jpg'.format(
                split, stem)] = _encoded('.jpg', _random_image(rng, h, w))
            label = _labels(h, w, list(range(20)), rng, block=2)
            raw[split][stem] = label
            labels['TrainVal_parsing_annotations/{}_segmentations/{}.png'.
                   format(split, stem)] = _encoded('.png', label)
        images['TrainVal_images/{}_id.txt'.format(split)] = ''.join(
            s + '\n' for s in raw[split]).encode()
    write_archive(os.path.join(src, 'TrainVal_images.zip'), images)
    write_archive(os.path.join(src, 'TrainVal_parsing_annotations.zip'),
                  labels)
    return counts, raw
