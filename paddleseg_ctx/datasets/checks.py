"""Checks of each sample as it is read, so that a bad file ends a run with one
message naming it instead of a shape error deep in the model or loss, a
silently wrong mIoU, or (with PaddleSeg's own reader) an ``AttributeError``.

Nothing is scanned up front: :func:`check_samples` wraps a data set's
``transforms`` (PaddleSeg's ``Compose``), which then reads the image and the
label itself, exactly as ``Compose`` would, checks them and hands the arrays
on.  The cost per sample is one comparison over the label (its maximum, and
a mask only when it is out of range).  Checked:

* the image exists and can be decoded;
* the label exists, can be decoded and has one channel;
* image and label have the same height and width;
* label values are class ids ``0 .. num_classes - 1`` or ``ignore_index``.

Labels a data set decodes itself (ADE20K's shifted ids, COCO-Stuff's
``.mat`` files) are checked as arrays; a label the data set keeps out of the
transforms (PaddleSeg's ADE20K in ``val`` mode) is not checked.
"""
import os

import cv2
import numpy as np
from PIL import Image

from paddleseg_ctx.errors import UserError

__all__ = ['SampleError', 'CheckedCompose', 'check_samples', 'read_image']


class SampleError(UserError, ValueError):
    """A sample of a data set (or an input image) is unusable; the message
    names the file."""


def read_image(path, flag=cv2.IMREAD_COLOR, where='input'):
    """``cv2.imread(path, flag)``, or ``SampleError`` naming ``path`` (and
    ``where`` it comes from) when it is missing or not a decodable image.
    With ``IMREAD_COLOR`` grayscale and RGBA files are read as 3-channel BGR
    (alpha dropped), as PaddleSeg reads them."""
    if not os.path.isfile(path):
        raise SampleError('{}: image {} does not exist.'.format(where, path))
    image = cv2.imread(path, flag)
    if image is None:
        raise SampleError(
            '{}: {} cannot be read as an image: it is not an image file '
            '(JPEG, PNG, BMP, ...) or it is truncated. Replace or remove '
            'it.'.format(where, path))
    return image


def _read_label(path, image_path, where):
    if not os.path.isfile(path):
        raise SampleError(
            '{}: image {} has no label: {} does not exist. Add the label file '
            'or fix the line of this image in the file list.'.format(
                where, image_path, path))
    try:
        return np.asarray(Image.open(path))
    except (OSError, SyntaxError, ValueError) as err:
        raise SampleError(
            '{}: label {} (of image {}) cannot be read as an image ({}); it '
            'is not an image file or it is truncated.'.format(
                where, path, image_path, err)) from None


class CheckedCompose:
    """A data set's ``Compose`` that reads and checks image and label first.

    Args:
        compose (paddleseg.transforms.Compose): The data set's transforms.
        where (str): Names the data set in messages, e.g. 'train_dataset'.
        num_classes (int|None): Valid class ids are ``0 .. num_classes - 1``;
            None: inputs without labels (prediction).
        ignore_index (int): Also valid in labels.
    """

    def __init__(self, compose, where, num_classes=None, ignore_index=255):
        self.compose = compose
        self.where = where
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def __getattr__(self, name):  # `transforms`, `to_rgb`, ... of Compose
        if name == 'compose':  # not set yet (copy, unpickling)
            raise AttributeError(name)
        return getattr(self.compose, name)

    def __call__(self, data):
        image = data['img']
        image_path = image if isinstance(image, str) else '(in memory)'
        if isinstance(image, str):
            data['img'] = read_image(image, self.compose.read_flag,
                                     self.where).astype('float32')
        label = data.get('label')
        label_path = None
        if isinstance(label, str):
            label_path = label
            data['label'] = label = _read_label(label, image_path, self.where)
        if label is not None and self.num_classes is not None:
            self.check_label(label, data['img'].shape[:2], image_path,
                             label_path)
        return self.compose(data)

    def check_label(self, label, image_size, image_path, label_path):
        name = 'label {}'.format(label_path) if label_path else \
            'the label'
        if label.ndim != 2:
            raise SampleError(
                '{}: {} of image {} has shape {}: a label must be a '
                'single-channel image of class ids (PNG mode L or P), not '
                'colours.'.format(self.where, name, image_path,
                                  list(label.shape)))
        if label.shape != tuple(image_size):
            raise SampleError(
                '{}: image {} is {}x{} (WxH) but {} is {}x{}; each label '
                'must have the size of its image.'.format(
                    self.where, image_path, image_size[1], image_size[0],
                    name, label.shape[1], label.shape[0]))
        if label.size and (label.max() >= self.num_classes or
                           label.min() < 0):
            bad = (label < 0) | (label >= self.num_classes)
            bad &= label != self.ignore_index
            if bad.any():
                values = np.unique(label[bad])
                shown = ', '.join(str(v) for v in values[:10])
                raise SampleError(
                    '{}: {} of image {} has values {}{} outside the class '
                    'ids 0..{} (num_classes {}) and the ignore index {}. Map '
                    'them to class ids or to {}, or set num_classes to match '
                    'the data.'.format(
                        self.where, name, image_path, shown,
                        ' ...' if len(values) > 10 else '',
                        self.num_classes - 1, self.num_classes,
                        self.ignore_index, self.ignore_index))


def check_samples(dataset, where):
    """Make ``dataset`` check every sample as it reads it (see the module
    docstring); returns ``dataset``.  Data sets without a PaddleSeg-style
    ``transforms`` / ``num_classes`` are returned unchanged."""
    transforms = getattr(dataset, 'transforms', None)
    num_classes = getattr(dataset, 'num_classes', None)
    if (transforms is None or num_classes is None or
            isinstance(transforms, CheckedCompose) or
            not hasattr(transforms, 'read_flag')):
        return dataset
    dataset.transforms = CheckedCompose(
        transforms, where, num_classes, getattr(dataset, 'ignore_index', 255))
    return dataset
