"""COCO-Stuff-10k (v1.1): 9000 training and 1000 test images, 182 classes."""
import os

import numpy as np
from paddleseg.cvlibs import manager
from paddleseg.datasets import Dataset
from paddleseg.transforms import Compose

from paddleseg_ctx.datasets.prepare import read_mat
from paddleseg_ctx.registry import register

__all__ = ['CocoStuff10k', 'load_cocostuff10k_label']


def load_cocostuff10k_label(path, ignore_index=255):
    """Train ids of one ``.mat`` annotation: its variable ``S`` holds
    0 (unlabeled) and classes 1..182; 0 becomes ``ignore_index`` and k
    becomes k - 1 (any other value, none in the release, is ignored)."""
    raw = read_mat(path, 'S')  # v5 only: a v7.3 file is refused
    k = CocoStuff10k.NUM_CLASSES
    lut = np.full(k + 2, ignore_index, np.uint8)  # index k + 1: out of range
    lut[1:k + 1] = np.arange(k)
    return lut[np.clip(raw, 0, k + 1)]


@register(manager.DATASETS)
class CocoStuff10k(Dataset):
    """COCO-Stuff-10k in its released layout (which sssegmentation reads too)::

        dataset_root/images/<id>.jpg
        dataset_root/annotations/<id>.mat      variable S, see load_cocostuff10k_label
        dataset_root/imageLists/train.txt      one id per line (9000)
        dataset_root/imageLists/test.txt       (1000)

    ``mode='val'`` reads the test split, on which results are reported.  11 of
    the 182 classes (COCO "thing" ids that were never annotated; 0-based 11,
    25, 28, 29, 44, 65, 67, 68, 70, 82, 90) never occur, so compare mIoU
    averaged over the classes present (as sssegmentation's nanmean does).

    Labels are decoded from ``.mat`` here, in ``__getitem__``, because
    PaddleSeg's ``Compose`` reads only image files (as PaddleSeg's ADE20K
    computes its labels before ``Compose``); a converted PNG copy would have
    to be written and kept in sync for no gain (decoding one takes a
    millisecond or so).

    Args:
        transforms (list): Transforms, as for any PaddleSeg dataset.
        dataset_root (str): The directory laid out as above.
        mode (str): 'train' or 'val'.
    """
    NUM_CLASSES = 182
    IGNORE_INDEX = 255
    IMG_CHANNELS = 3
    SPLIT_FILES = {'train': 'train.txt', 'val': 'test.txt'}

    def __init__(self, transforms, dataset_root, mode='train'):
        self.mode = mode.lower()
        if self.mode not in self.SPLIT_FILES:
            raise ValueError("CocoStuff10k: `mode` must be 'train' or 'val' "
                             "(the test split), but it is {!r}.".format(mode))
        self.dataset_root = dataset_root
        self.transforms = Compose(transforms)
        self.num_classes = self.NUM_CLASSES
        self.ignore_index = self.IGNORE_INDEX
        self.edge = False
        ids = _read_ids(os.path.join(dataset_root, 'imageLists',
                                     self.SPLIT_FILES[self.mode]))
        self.file_list = [[
            os.path.join(dataset_root, 'images', i + '.jpg'),
            os.path.join(dataset_root, 'annotations', i + '.mat')
        ] for i in ids]

    def __getitem__(self, idx):
        image_path, label_path = self.file_list[idx]
        data = {
            'img': image_path,
            'label': load_cocostuff10k_label(label_path, self.ignore_index),
            'trans_info': [],
            'gt_fields': [],
        }
        if self.mode == 'val':  # evaluation compares at the original size
            data = self.transforms(data)
            data['label'] = data['label'][np.newaxis, :, :]
        else:
            data['gt_fields'].append('label')
            data = self.transforms(data)
        return data


def _read_ids(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(
            'The id list {} does not exist; `dataset_root` must be the '
            'directory that holds images/, annotations/ and imageLists/.'.format(path))
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]
