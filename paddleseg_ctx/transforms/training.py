"""Training transforms of the mmsegmentation and sssegmentation recipes that
PaddleSeg 2.8 lacks, for PaddleSeg's own ``Compose``.

PaddleSeg's ``Compose`` reads the image with cv2, turns it into RGB float32
(whole numbers 0..255) and passes every transform a ``data`` dict with
``img``, ``label``, ``gt_fields`` and ``trans_info``.  The references run the
same steps on cv2's uint8 BGR image, where resizing and rotating round and the
photometric steps truncate to uint8.  The image transforms below therefore
work on a uint8 copy (exact, since the values are whole numbers) and hand back
float32, which reproduces the references' pixels.

Sizes are ``[width, height]`` as everywhere in PaddleSeg's configs (mmseg's
and ssseg's crop sizes are (height, width)).  Random draws go through numpy's
global RNG in the references' order, so a seeded run repeats them draw for
draw; the flips reuse PaddleSeg's ``RandomHorizontalFlip`` (Python ``random``).

Versions followed: mmseg 0.5 (the GCNet checkpoints; 1.x computes the same) and
sssegmentation as of 2021-09-04 (the ISNet release), whose crop differs from
later versions in one case, noted at :class:`CtxRandomCrop`.
"""
import random

import cv2
import numpy as np
from paddleseg.cvlibs import manager
from paddleseg.transforms import Padding, RandomHorizontalFlip, functional

from paddleseg_ctx.registry import register

__all__ = [
    'CtxRandomResize', 'CtxRandomCrop', 'CtxPhotoMetricDistortion',
    'CtxCenterPadding', 'CtxRandomHorizontalFlip', 'CtxRandomRotation'
]


def _as_uint8(img):
    """``img`` as uint8: exact for PaddleSeg's float32 image of whole numbers
    (other values are clipped to 0..255 and truncated, as the references'
    own float-to-uint8 casts do)."""
    if img.dtype == np.uint8:
        return img
    return np.clip(img, 0, 255).astype(np.uint8)


def _pair(value, name, kind='[width, height]'):
    if not (isinstance(value, (list, tuple)) and len(value) == 2):
        raise ValueError('`{}` must be {}, but it is {!r}.'.format(
            name, kind, value))
    return tuple(value)


@register(manager.TRANSFORMS)
class CtxRandomResize:
    """Resize to fit a randomly scaled box: mmseg ``Resize(img_scale,
    ratio_range)`` (0.x) / ``RandomResize(scale, ratio_range, keep_ratio)``
    (1.x), sssegmentation ``Resize(output_size, scale_range, keep_ratio)``.

    A ratio r ~ U(ratio_range) (continuous) gives the box
    (int(width·r), int(height·r)).  With ``keep_ratio`` the image is scaled by
    s = min(max(box) / max(h, w), min(box) / min(h, w)), i.e. as large as it
    fits into the box in either orientation, to (int(w·s + 0.5),
    int(h·s + 0.5)); otherwise it is resized to the box itself, as mmcv does
    (sssegmentation turns a non-square box to the image's orientation; LIP's
    box, (520r)², is square).  Image bilinear, label nearest (cv2).  Both
    references draw and round the same way.

    Args:
        target_size (list[int]): The box [width, height] before scaling,
            e.g. [2048, 512].
        ratio_range (list[float]|None): [min, max] of r; None means r = 1 (a
            deterministic resize, e.g. sssegmentation's test-time resize).
        keep_ratio (bool): Keep the aspect ratio, see above.
    """

    def __init__(self, target_size, ratio_range=(0.5, 2.0), keep_ratio=True):
        self.target_size = _pair(target_size, 'target_size')
        if ratio_range is not None:
            ratio_range = _pair(ratio_range, 'ratio_range', '[min, max]')
            if ratio_range[0] > ratio_range[1]:
                raise ValueError('`ratio_range` must be [min, max], but it is '
                                 '{!r}.'.format(ratio_range))
        self.ratio_range = ratio_range
        self.keep_ratio = keep_ratio

    def __call__(self, data):
        h, w = data['img'].shape[:2]
        data['trans_info'].append(('resize', (h, w)))
        box_w, box_h = self.target_size
        if self.ratio_range is not None:
            low, high = self.ratio_range
            ratio = np.random.random_sample() * (high - low) + low
            box_w, box_h = int(box_w * ratio), int(box_h * ratio)
        if self.keep_ratio:
            scale = min(max(box_w, box_h) / max(h, w),
                        min(box_w, box_h) / min(h, w))
            size = (int(w * scale + 0.5), int(h * scale + 0.5))
        else:
            size = (box_w, box_h)
        data['img'] = cv2.resize(_as_uint8(data['img']), size,
                                 interpolation=cv2.INTER_LINEAR).astype('float32')
        for key in data.get('gt_fields', []):
            data[key] = cv2.resize(data[key], size,
                                   interpolation=cv2.INTER_NEAREST)
        return data


@register(manager.TRANSFORMS)
class CtxRandomCrop:
    """Random crop that avoids crops dominated by one class: mmseg
    ``RandomCrop(crop_size, cat_max_ratio)``, sssegmentation
    ``RandomCrop(crop_size, one_category_max_ratio)``.

    A side shorter than the crop is kept whole (pad afterwards).  With
    ``cat_max_ratio < 1`` a crop is accepted when its label holds at least two
    classes other than ``ignore_index`` and none of them covers
    ``cat_max_ratio`` or more of the non-ignored pixels; up to 10 crops are
    checked.  When all 10 fail, mmseg draws an 11th crop and keeps it unchecked
    (``fallback='redraw'``), sssegmentation keeps the 10th
    (``fallback='last'``).  (Since 2021-09-15, after the ISNet release,
    sssegmentation returns the sample uncropped when that last crop is all
    ``ignore_index``; the code that trained ISNet crops as here.)
    PaddleSeg 2.8's ``RandomPaddingCrop`` with
    ``category_max_ratio`` is not an alternative: it assigns the label crop
    to the image.

    Args:
        crop_size (list[int]): [width, height] of the crop.
        cat_max_ratio (float): Largest share one class may cover; 1 turns the
            check off (one random crop).
        ignore_index (int): Label value left out of the count.
        fallback (str): 'redraw' (mmseg) or 'last' (sssegmentation), see above.
    """

    TRIES = 10

    def __init__(self, crop_size, cat_max_ratio=1.0, ignore_index=255,
                 fallback='redraw'):
        self.crop_size = _pair(crop_size, 'crop_size')
        if fallback not in ('redraw', 'last'):
            raise ValueError("`fallback` must be 'redraw' (mmseg) or 'last' "
                             "(sssegmentation), but it is {!r}.".format(fallback))
        self.cat_max_ratio = cat_max_ratio
        self.ignore_index = ignore_index
        self.fallback = fallback

    def _draw(self, h, w):
        crop_w, crop_h = self.crop_size
        top = np.random.randint(0, max(h - crop_h, 0) + 1)
        left = np.random.randint(0, max(w - crop_w, 0) + 1)
        return top, left

    def _crop(self, array, top, left):
        crop_w, crop_h = self.crop_size
        return array[top:top + crop_h, left:left + crop_w]

    def _accepts(self, label):
        counts = np.bincount(label.ravel())
        if 0 <= self.ignore_index < len(counts):
            counts[self.ignore_index] = 0
        counts = counts[counts > 0]
        return len(counts) > 1 and counts.max() / counts.sum() < self.cat_max_ratio

    def __call__(self, data):
        h, w = data['img'].shape[:2]
        top, left = self._draw(h, w)
        if self.cat_max_ratio < 1.0:
            for attempt in range(1, self.TRIES + 1):
                if self._accepts(self._crop(data['label'], top, left)):
                    break
                if attempt < self.TRIES or self.fallback == 'redraw':
                    top, left = self._draw(h, w)
        data['img'] = self._crop(data['img'], top, left)
        for key in data.get('gt_fields', []):
            data[key] = self._crop(data[key], top, left)
        return data


@register(manager.TRANSFORMS)
class CtxPhotoMetricDistortion:
    """mmseg's ``PhotoMetricDistortion`` on PaddleSeg's RGB image.

    In order, each with probability 1/2: brightness (+U(-delta, delta)),
    contrast (·U(range)) here or after the HSV steps (a coin decides),
    saturation (S·U(range)), hue (H + randint(-delta, delta), mod 180), the
    last two in cv2's uint8 HSV.  Every step computes in float32, clips to
    [0, 255] and truncates to uint8, as the references do.

    mmseg converts its BGR image with BGR<->HSV; the same colours are reached
    here with RGB<->HSV (``hsv_order='RGB'``, exact).  sssegmentation applies
    RGB<->HSV to its BGR image, so its hue and saturation steps act on a
    colour with red and blue swapped; ``hsv_order='BGR'`` reproduces that.

    Args:
        brightness_delta (int): Largest brightness shift.
        contrast_range (list[float]): [low, high] contrast factor.
        saturation_range (list[float]): [low, high] saturation factor.
        hue_delta (int): Hue shifts are integers in [-hue_delta, hue_delta).
        hsv_order (str): Channel order the HSV conversion assumes: 'RGB'
            (mmseg) or 'BGR' (sssegmentation).
    """

    _HSV_CODES = {
        'RGB': (cv2.COLOR_RGB2HSV, cv2.COLOR_HSV2RGB),
        'BGR': (cv2.COLOR_BGR2HSV, cv2.COLOR_HSV2BGR),
    }

    def __init__(self, brightness_delta=32, contrast_range=(0.5, 1.5),
                 saturation_range=(0.5, 1.5), hue_delta=18, hsv_order='RGB'):
        if hsv_order not in self._HSV_CODES:
            raise ValueError("`hsv_order` must be 'RGB' (mmseg) or 'BGR' "
                             "(sssegmentation), but it is {!r}.".format(hsv_order))
        self.brightness_delta = brightness_delta
        self.contrast_range = _pair(contrast_range, 'contrast_range', '[low, high]')
        self.saturation_range = _pair(saturation_range, 'saturation_range',
                                      '[low, high]')
        self.hue_delta = hue_delta
        self.hsv_order = hsv_order
        self._to_hsv, self._from_hsv = self._HSV_CODES[hsv_order]

    @staticmethod
    def _convert(img, alpha=1, beta=0):
        # The references' arithmetic, literally: float32, clip, truncate.
        return np.clip(img.astype(np.float32) * alpha + beta, 0, 255).astype(np.uint8)

    def _contrast(self, img):
        if np.random.randint(2):
            img = self._convert(img, alpha=np.random.uniform(*self.contrast_range))
        return img

    def __call__(self, data):
        img = _as_uint8(data['img'])
        if np.random.randint(2):
            img = self._convert(img, beta=np.random.uniform(
                -self.brightness_delta, self.brightness_delta))
        contrast_first = np.random.randint(2) == 1
        if contrast_first:
            img = self._contrast(img)
        if np.random.randint(2):
            hsv = cv2.cvtColor(img, self._to_hsv)
            hsv[..., 1] = self._convert(
                hsv[..., 1], alpha=np.random.uniform(*self.saturation_range))
            img = cv2.cvtColor(hsv, self._from_hsv)
        if np.random.randint(2):
            hsv = cv2.cvtColor(img, self._to_hsv)
            hsv[..., 0] = (hsv[..., 0].astype(int) + np.random.randint(
                -self.hue_delta, self.hue_delta)) % 180
            img = cv2.cvtColor(hsv, self._from_hsv)
        if not contrast_first:
            img = self._contrast(img)
        data['img'] = img.astype('float32')
        return data


@register(manager.TRANSFORMS)
class CtxCenterPadding(Padding):
    """PaddleSeg's ``Padding``, centred: sssegmentation pads its crops equally
    on both sides (the odd pixel to the bottom/right).  For training only:
    PaddleSeg's evaluation can undo only bottom-right padding.

    (mmseg pads bottom/right after ``Normalize``: that is PaddleSeg's own
    ``Padding`` with ``im_padding_value: 0``, placed after ``Normalize``.)

    Args:
        target_size (list[int]): [width, height] after padding.
        im_padding_value (float): Image fill; 0 after ``Normalize`` as in
            sssegmentation.
        label_padding_value (int): Label fill (the ignore index).
    """

    def __init__(self, target_size, im_padding_value=0, label_padding_value=255):
        super().__init__(target_size, im_padding_value, label_padding_value)

    def __call__(self, data):
        h, w = data['img'].shape[:2]
        target_w, target_h = self.target_size
        if h > target_h or w > target_w:
            raise ValueError(
                'CtxCenterPadding: the image ({}x{}) is larger than '
                '`target_size` ({}x{}); crop it first.'.format(
                    w, h, target_w, target_h))
        top, left = (target_h - h) // 2, (target_w - w) // 2
        border = (top, target_h - h - top, left, target_w - w - left)
        channels = 1 if data['img'].ndim == 2 else data['img'].shape[2]
        data['img'] = cv2.copyMakeBorder(
            data['img'], *border, cv2.BORDER_CONSTANT,
            value=(self.im_padding_value, ) * channels)
        for key in data.get('gt_fields', []):
            data[key] = cv2.copyMakeBorder(data[key], *border,
                                           cv2.BORDER_CONSTANT,
                                           value=self.label_padding_value)
        return data


@register(manager.TRANSFORMS)
class CtxRandomHorizontalFlip(RandomHorizontalFlip):
    """PaddleSeg's ``RandomHorizontalFlip`` that also swaps left/right class
    ids in the flipped labels, e.g. LIP's arms, legs and shoes
    ``[[14, 15], [16, 17], [18, 19]]`` (sssegmentation ``RandomFlip(
    fixed_seg_target_pairs)``, mmcv ``RandomFlip(swap_seg_labels)``).

    Args:
        prob (float): Flip probability.
        label_pairs (list[list[int]]): Class id pairs swapped after a flip.
    """

    def __init__(self, prob=0.5, label_pairs=()):
        super().__init__(prob)
        self.label_pairs = [_pair(p, 'label_pairs item', '[left_id, right_id]')
                            for p in label_pairs]

    def _swap(self, label):
        swapped = label.copy()
        for a, b in self.label_pairs:
            swapped[label == a] = b
            swapped[label == b] = a
        return swapped

    def __call__(self, data):
        if random.random() < self.prob:  # the draw of PaddleSeg's flip
            data['img'] = functional.horizontal_flip(data['img'])
            for key in data.get('gt_fields', []):
                data[key] = self._swap(functional.horizontal_flip(data[key]))
        return data


@register(manager.TRANSFORMS)
class CtxRandomRotation:
    """sssegmentation's ``RandomRotation`` (LIP): with probability ``prob``,
    rotate about the image centre (w/2, h/2) by an integer angle in
    [-max_angle, max_angle) degrees, keeping the canvas size (corners are
    cut off, uncovered borders filled).  Image bicubic on uint8, label
    nearest.  PaddleSeg's ``RandomRotation`` always rotates, by a real
    angle, and enlarges the canvas.

    Args:
        prob (float): Rotation probability.
        max_angle (int): Angles are drawn from [-max_angle, max_angle).
        im_padding_value (float): Image fill.
        label_padding_value (int): Label fill (the ignore index).
    """

    def __init__(self, prob=0.5, max_angle=30, im_padding_value=0,
                 label_padding_value=255):
        self.prob = prob
        self.max_angle = max_angle
        self.im_padding_value = im_padding_value
        self.label_padding_value = label_padding_value

    def __call__(self, data):
        if np.random.rand() > self.prob:
            return data
        h, w = data['img'].shape[:2]
        angle = np.random.randint(-self.max_angle, self.max_angle)
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), int(angle), 1)
        img = _as_uint8(data['img'])
        channels = 1 if img.ndim == 2 else img.shape[2]
        data['img'] = cv2.warpAffine(
            img, matrix, (w, h), flags=cv2.INTER_CUBIC,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(self.im_padding_value, ) * channels).astype('float32')
        for key in data.get('gt_fields', []):
            data[key] = cv2.warpAffine(data[key], matrix, (w, h),
                                       flags=cv2.INTER_NEAREST,
                                       borderMode=cv2.BORDER_CONSTANT,
                                       borderValue=self.label_padding_value)
        return data
