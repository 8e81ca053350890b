"""Test-time resize of mmsegmentation / sssegmentation: fit the image into
``img_scale`` (or squash it to that size) on its **uint8** values.

mmseg's ``Resize`` (``mmcv.imrescale``) and ssseg's ``Resize`` run cv2's
bilinear resize on the uint8 image, whose result is rounded to integers, and
normalise afterwards.  PaddleSeg's ``Compose`` reads images as float32, so its
own ``Resize`` interpolates floats and gives different pixels.
:class:`ResizeByImgScale` rounds like the references and records the resize
in ``trans_info``, so PaddleSeg's evaluation resizes the prediction back to
the label's original size (``paddleseg.core.infer.reverse_transform``).
"""
import cv2
import numpy as np
from paddleseg.cvlibs import manager

from paddleseg_ctx.registry import register

__all__ = ['ResizeByImgScale', 'fit_size', 'resize_uint8', 'target_size']


def fit_size(width, height, img_scale):
    """``(w, h)`` of a ``width`` x ``height`` image rescaled with its aspect
    ratio kept, as large as possible with the long side <= max(img_scale) and
    the short side <= min(img_scale); each side int(x * s + 0.5), like
    ``mmcv.rescale_size`` and ssseg's ``Resize(keep_ratio=True)``."""
    long_edge, short_edge = max(img_scale), min(img_scale)
    scale = min(long_edge / max(height, width), short_edge / min(height, width))
    return int(width * scale + 0.5), int(height * scale + 0.5)


def target_size(width, height, img_scale, keep_ratio):
    """``(w, h)`` after the test-time resize: :func:`fit_size` with
    ``keep_ratio``, else exactly ``img_scale`` (``[w, h]``)."""
    if keep_ratio:
        return fit_size(width, height, img_scale)
    return int(img_scale[0]), int(img_scale[1])


def resize_uint8(image, size):
    """cv2 bilinear resize of a uint8 HWC image to ``size`` = ``(w, h)``."""
    if image.dtype != np.uint8:
        raise TypeError('resize_uint8 expects a uint8 image, got {}.'.format(
            image.dtype))
    return cv2.resize(image, tuple(size), interpolation=cv2.INTER_LINEAR)


def _as_uint8(image):
    """The float32 image PaddleSeg's ``Compose`` read, back as uint8; refuses
    values that are not integers in [0, 255] (already normalised)."""
    if image.dtype == np.uint8:
        return image
    as_int = np.rint(image)
    if image.min() < 0 or image.max() > 255 or not np.array_equal(
            image, as_int):
        raise ValueError(
            'ResizeByImgScale needs the raw image (integers 0-255) but got '
            'values in [{:.3g}, {:.3g}]; put it before Normalize (and before '
            'any transform that changes pixel values) in the config\'s '
            'transforms.'.format(float(image.min()), float(image.max())))
    return as_int.astype(np.uint8)


@register(manager.TRANSFORMS)
class ResizeByImgScale:
    """Test-time resize as in mmsegmentation / sssegmentation test pipelines.

    Args:
        img_scale (list[int]): Target ``[w, h]``, e.g. ``[2048, 512]``.
        keep_ratio (bool): True: fit the image inside ``img_scale`` keeping
            its aspect ratio (mmseg ``Resize(img_scale, keep_ratio=True)``);
            False: squash it to exactly ``img_scale`` (ssseg LIP's
            ``keep_ratio=False`` with a square size).

    Must come before ``Normalize``.  In ``val`` mode the label keeps its size
    and the prediction is resized back to it (bilinear logits,
    align_corners=False) by PaddleSeg's evaluation; ``gt_fields`` (train
    mode) are resized with nearest neighbour.
    """

    def __init__(self, img_scale, keep_ratio=True):
        if not (isinstance(img_scale, (list, tuple)) and len(img_scale) == 2
                and all(int(v) == v and v > 0 for v in img_scale)):
            raise ValueError('ResizeByImgScale: img_scale must be [w, h], two '
                             'positive integers, got {!r}.'.format(img_scale))
        self.img_scale = [int(v) for v in img_scale]
        self.keep_ratio = bool(keep_ratio)

    def __call__(self, data):
        height, width = data['img'].shape[:2]
        data['trans_info'].append(('resize', (height, width)))
        size = target_size(width, height, self.img_scale, self.keep_ratio)
        image = resize_uint8(_as_uint8(data['img']), size)
        data['img'] = image.astype('float32')
        for key in data.get('gt_fields', []):
            data[key] = cv2.resize(
                data[key], size, interpolation=cv2.INTER_NEAREST)
        return data
