"""Training transforms of the mmseg/ssseg recipes (paddleseg_ctx.transforms).

Expected values are hand-checked, recomputed here from the same random draws
(seeded numpy RNG, draws replayed in the test), or produced by the reference
implementations themselves (mmcv/mmseg 1.2.2, sssegmentation 1.7.0) on cv2's
uint8 BGR image under the same seed: our output must be their output with the
channels reversed (RGB).
"""
import random

import cv2
import numpy as np
import pytest
import yaml
from paddleseg.cvlibs import manager
from paddleseg.transforms import Compose, Normalize, Padding

import paddleseg_ctx  # noqa: F401  (registration)
from paddleseg_ctx.transforms import (CtxCenterPadding, CtxPhotoMetricDistortion,
                                      CtxRandomCrop, CtxRandomHorizontalFlip,
                                      CtxRandomResize, CtxRandomRotation)
from reference_imports import import_mmseg, import_ssseg

LIP_PAIRS = [[14, 15], [16, 17], [18, 19]]


def _bgr_image(h, w, seed=0):
    return np.random.RandomState(seed).randint(0, 256, (h, w, 3)).astype(np.uint8)


def _data(bgr, label):
    """What PaddleSeg's Compose hands the first transform: RGB float32."""
    return {'img': bgr[..., ::-1].astype(np.float32), 'label': label.copy(),
            'gt_fields': ['label'], 'trans_info': []}


def _rgb_of(bgr):
    return bgr[..., ::-1].astype(np.float32)


def _position_image(h, w):
    """Image whose pixel (y, x) holds (y, x, 0): shows where a crop came from."""
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([yy, xx, np.zeros_like(yy)], -1).astype(np.float32)


# ---------------------------------------------------------------- resize

@pytest.mark.parametrize('hw, expected_wh', [
    ((300, 400), (683, 512)),  # s = min(2048/400, 512/300) = 1.7067
    ((400, 300), (512, 683)),  # portrait: the box fits either orientation
    ((100, 3000), (2048, 68)),  # s = min(2048/3000, 512/100): the long side binds
])
def test_resize_keep_ratio_sizes_hand_checked(hw, expected_wh):
    data = CtxRandomResize([2048, 512], ratio_range=None)(
        _data(np.zeros(hw + (3, ), np.uint8), np.zeros(hw, np.uint8)))
    assert data['img'].shape[1::-1] == expected_wh
    assert data['label'].shape[::-1] == expected_wh
    assert data['trans_info'] == [('resize', hw)]


def test_resize_ratio_is_continuous_and_box_truncated():
    np.random.seed(5)
    r = np.random.random_sample() * 1.5 + 0.5  # the draw, replayed
    box = int(2048 * r), int(512 * r)
    h, w = 37, 53
    s = min(max(box) / w, min(box) / h)
    np.random.seed(5)
    data = CtxRandomResize([2048, 512], [0.5, 2.0])(
        _data(_bgr_image(h, w), np.zeros((h, w), np.uint8)))
    assert data['img'].shape[:2] == (int(h * s + 0.5), int(w * s + 0.5))


def test_resize_rounds_like_uint8_and_labels_stay_nearest():
    bgr = _bgr_image(37, 53)
    label = np.random.RandomState(1).randint(0, 5, (37, 53)).astype(np.uint8)
    data = CtxRandomResize([61, 83], ratio_range=None, keep_ratio=False)(
        _data(bgr, label))
    expected = cv2.resize(bgr, (61, 83), interpolation=cv2.INTER_LINEAR)
    assert data['img'].dtype == np.float32
    np.testing.assert_array_equal(data['img'], _rgb_of(expected))
    # A float32 resize (what PaddleSeg's own Resize does) gives other pixels.
    float_resize = cv2.resize(_rgb_of(bgr), (61, 83), interpolation=cv2.INTER_LINEAR)
    assert not np.array_equal(float_resize, data['img'])
    assert set(np.unique(data['label'])) <= set(np.unique(label))


def test_resize_matches_mmcv_random_resize():
    import_mmseg()
    from mmcv.transforms import RandomResize
    ref = RandomResize(scale=(2048, 512), ratio_range=(0.5, 2.0), keep_ratio=True)
    ours = CtxRandomResize([2048, 512], [0.5, 2.0])
    for seed, (h, w) in enumerate([(37, 53), (61, 29), (45, 45)]):
        bgr = _bgr_image(h, w, seed)
        label = np.random.RandomState(seed).randint(0, 7, (h, w)).astype(np.uint8)
        np.random.seed(seed)
        expected = ref({'img': bgr.copy(), 'gt_seg_map': label.copy()})
        np.random.seed(seed)
        data = ours(_data(bgr, label))
        np.testing.assert_array_equal(data['img'], _rgb_of(expected['img']))
        np.testing.assert_array_equal(data['label'], expected['gt_seg_map'])


@pytest.mark.parametrize('keep_ratio, target, ratio_range', [
    (True, (2048, 512), (0.5, 2.0)),  # ADE20K / COCO-Stuff-10k
    (False, (520, 520), (0.75, 1.25)),  # LIP: squashed to (520 r)^2
])
def test_resize_matches_ssseg(keep_ratio, target, ratio_range):
    import_ssseg()
    from ssseg.modules.datasets.pipelines.transforms import Resize
    ref = Resize(output_size=target, keep_ratio=keep_ratio, scale_range=ratio_range)
    ours = CtxRandomResize(list(target), list(ratio_range), keep_ratio=keep_ratio)
    for seed, (h, w) in enumerate([(37, 53), (61, 29)]):
        bgr = _bgr_image(h, w, seed)
        label = np.random.RandomState(seed).randint(0, 20, (h, w)).astype(np.uint8)
        np.random.seed(seed)
        expected = ref({'image': bgr.copy(), 'seg_target': label.astype(np.float32)})
        np.random.seed(seed)
        data = ours(_data(bgr, label))
        np.testing.assert_array_equal(data['img'], _rgb_of(expected['image']))
        np.testing.assert_array_equal(data['label'], expected['seg_target'])
        if not keep_ratio:
            assert data['img'].shape[0] == data['img'].shape[1]


# ---------------------------------------------------------------- crop

def _crop_draws(seed, h, w, crop_h, crop_w, n):
    np.random.seed(seed)
    return [(np.random.randint(0, max(h - crop_h, 0) + 1),
             np.random.randint(0, max(w - crop_w, 0) + 1)) for _ in range(n)]


def _reference_accepts(label, ratio=0.75, ignore=255):
    labels, counts = np.unique(label, return_counts=True)  # the references' test
    counts = counts[labels != ignore]
    return len(counts) > 1 and counts.max() / counts.sum() < ratio


def test_crop_takes_first_accepted_draw():
    # Columns 0..13 are class 1 only; columns 14..19 alternate classes 2/3.
    h, w = 6, 20
    label = np.ones((h, w), np.uint8)
    label[:, 14:] = np.where(np.arange(14, 20) % 2, 2, 3)
    boxes = _crop_draws(7, h, w, 4, 5, 11)
    first_ok = next(i for i, (t, l) in enumerate(boxes)
                    if _reference_accepts(label[t:t + 4, l:l + 5]))
    assert first_ok == 8  # with this seed: eight rejected crops first
    np.random.seed(7)
    data = CtxRandomCrop([5, 4], cat_max_ratio=0.75)(
        {'img': _position_image(h, w), 'label': label, 'gt_fields': ['label']})
    top, left = boxes[first_ok]
    assert data['img'][0, 0, :2].tolist() == [top, left]
    np.testing.assert_array_equal(data['label'], label[top:top + 4, left:left + 5])


@pytest.mark.parametrize('fill', [1, 255])  # one class everywhere / all ignored
@pytest.mark.parametrize('fallback, kept_draw', [('redraw', 10), ('last', 9)])
def test_crop_retries_exhausted(fill, fallback, kept_draw):
    h, w = 9, 13
    label = np.full((h, w), fill, np.uint8)
    draws = _crop_draws(3, h, w, 4, 5, 11)
    np.random.seed(3)
    data = CtxRandomCrop([5, 4], 0.75, fallback=fallback)(
        {'img': _position_image(h, w), 'label': label, 'gt_fields': ['label']})
    # mmseg keeps an 11th, unchecked draw; sssegmentation the 10th.
    assert data['img'][0, 0, :2].tolist() == list(draws[kept_draw])
    assert data['img'].shape[:2] == (4, 5)


def test_crop_counts_without_ignore_ade_style():
    crop = CtxRandomCrop([4, 4], cat_max_ratio=0.75)
    label = np.full((4, 4), 255, np.uint8)  # reduce_zero_label: 0 -> 255
    label[0, :2] = 3
    label[1, :2] = 7  # 2 + 2 of 16 labelled: 50/50 -> accepted
    assert crop._accepts(label)
    label[1, :2] = 3  # one labelled class only -> rejected
    assert not crop._accepts(label)
    label[1, :1] = 7  # 3 : 1 -> 0.75 is not < 0.75 -> rejected
    assert not crop._accepts(label)


@pytest.mark.parametrize('fallback', ['redraw', 'last'])
def test_crop_image_smaller_than_crop_keeps_short_sides(fallback):
    img = _position_image(3, 11)
    label = np.arange(33, dtype=np.uint8).reshape(3, 11)
    draws = _crop_draws(2, 3, 11, 8, 7, 1)
    np.random.seed(2)
    data = CtxRandomCrop([7, 8], 0.75, fallback=fallback)(
        {'img': img, 'label': label, 'gt_fields': ['label']})
    top, left = draws[0]
    assert top == 0 and data['img'].shape[:2] == (3, 7)
    np.testing.assert_array_equal(data['label'], label[:, left:left + 7])


def test_crop_without_ratio_is_one_random_crop():
    (top, left), = _crop_draws(4, 20, 30, 8, 9, 1)
    np.random.seed(4)
    data = CtxRandomCrop([9, 8])({'img': _position_image(20, 30),
                                  'label': np.zeros((20, 30), np.uint8),
                                  'gt_fields': ['label']})
    assert data['img'][0, 0, :2].tolist() == [top, left]


def _random_label(seed, h, w):
    rs = np.random.RandomState(seed)
    label = np.zeros((h, w), np.uint8)
    label[:, rs.randint(w // 4, w):] = 1  # large blocks: many crops single-class
    label[rs.randint(h // 2, h):, :] = 2
    label[:rs.randint(0, h // 3), :] = 255
    return label


def test_crop_matches_mmseg():
    import_mmseg()
    from mmseg.datasets.transforms import RandomCrop
    for seed in range(12):
        h, w = 31 + seed, 47 - seed
        bgr, label = _bgr_image(h, w, seed), _random_label(seed, h, w)
        if seed == 11:
            label[:] = 4  # exhausted: the 11th draw
        np.random.seed(seed)
        expected = RandomCrop(crop_size=(17, 19), cat_max_ratio=0.75).transform(
            {'img': bgr.copy(), 'gt_seg_map': label.copy(), 'seg_fields': ['gt_seg_map']})
        np.random.seed(seed)
        data = CtxRandomCrop([19, 17], 0.75, fallback='redraw')(_data(bgr, label))
        np.testing.assert_array_equal(data['img'], _rgb_of(expected['img']))
        np.testing.assert_array_equal(data['label'], expected['gt_seg_map'])


def test_crop_matches_ssseg():
    import_ssseg()
    from ssseg.modules.datasets.pipelines.transforms import RandomCrop
    ref = RandomCrop(crop_size=(17, 19), ignore_index=255, one_category_max_ratio=0.75)
    for seed in range(12):
        h, w = 31 + seed, 47 - seed
        bgr, label = _bgr_image(h, w, seed), _random_label(seed, h, w)
        if seed == 11:
            label[:] = 4  # exhausted: the 10th draw
        np.random.seed(seed)
        expected = ref({'image': bgr.copy(), 'seg_target': label.astype(np.float32)})
        np.random.seed(seed)
        data = CtxRandomCrop([19, 17], 0.75, fallback='last')(_data(bgr, label))
        np.testing.assert_array_equal(data['img'], _rgb_of(expected['image']))
        np.testing.assert_array_equal(data['label'], expected['seg_target'])


# ---------------------------------------------------------------- photometric

class _Scripted:
    """Replace numpy's randint/uniform by scripted values (in call order)."""

    def __init__(self, monkeypatch, randint, uniform):
        self.randint, self.uniform = list(randint), list(uniform)
        monkeypatch.setattr(np.random, 'randint', lambda *a: self.randint.pop(0))
        monkeypatch.setattr(np.random, 'uniform', lambda *a: self.uniform.pop(0))


def test_photometric_brightness_and_contrast_truncate_hand_checked(monkeypatch):
    img = np.array([[[100, 2, 254], [0, 101, 200]]], np.float32)
    # brightness on (-3.7); contrast last (mode 0); saturation off; hue off;
    # contrast on (x1.5).
    script = _Scripted(monkeypatch, randint=[1, 0, 0, 0, 1], uniform=[-3.7, 1.5])
    data = CtxPhotoMetricDistortion()({'img': img.copy()})
    # 100-3.7=96.3->96, 2-3.7->0, 254-3.7=250.3->250; then x1.5, clip, truncate:
    # 96*1.5=144, 0, 250*1.5=375->255; 0-3.7->0, 101-3.7=97.3->97 ->145.5->145,
    # 200-3.7=196.3->196 -> 294->255.
    np.testing.assert_array_equal(data['img'], [[[144, 0, 255], [0, 145, 255]]])
    assert data['img'].dtype == np.float32
    assert not script.randint and not script.uniform


def test_photometric_all_off_is_identity(monkeypatch):
    _Scripted(monkeypatch, randint=[0, 1, 0, 0, 0], uniform=[])
    img = _rgb_of(_bgr_image(5, 7))
    data = CtxPhotoMetricDistortion()({'img': img.copy()})
    np.testing.assert_array_equal(data['img'], img)


def test_photometric_hue_uses_hsv_of_the_rgb_colour(monkeypatch):
    # Pure red: hue 0 in cv2's HSV; +10 -> hue 10 (an orange); the RGB image
    # must stay red-dominant.  With hsv_order='BGR' the same pixel is read as
    # blue (hue 120) and turns towards magenta/violet instead.
    red = np.array([[[255, 0, 0]]], np.float32)
    expected = cv2.cvtColor(np.array([[[10, 255, 255]]], np.uint8), cv2.COLOR_HSV2RGB)
    _Scripted(monkeypatch, randint=[0, 0, 0, 1, 10, 0], uniform=[])
    data = CtxPhotoMetricDistortion()({'img': red.copy()})
    np.testing.assert_array_equal(data['img'], expected.astype(np.float32))
    assert data['img'][0, 0, 0] == 255 and data['img'][0, 0, 1] > 0
    _Scripted(monkeypatch, randint=[0, 0, 0, 1, 10, 0], uniform=[])
    quirk = CtxPhotoMetricDistortion(hsv_order='BGR')({'img': red.copy()})
    assert quirk['img'][0, 0, 2] > 0 and quirk['img'][0, 0, 1] == 0


def test_photometric_matches_mmseg():
    import_mmseg()
    from mmseg.datasets.transforms import PhotoMetricDistortion
    ref, ours = PhotoMetricDistortion(), CtxPhotoMetricDistortion()
    quirk = CtxPhotoMetricDistortion(hsv_order='BGR')
    differs = 0
    for seed in range(40):
        bgr = _bgr_image(13, 17, seed)
        np.random.seed(seed)
        expected = ref.transform({'img': bgr.copy()})['img']
        np.random.seed(seed)
        data = ours({'img': _rgb_of(bgr)})
        np.testing.assert_array_equal(data['img'], _rgb_of(expected))
        np.random.seed(seed)
        differs += not np.array_equal(quirk({'img': _rgb_of(bgr)})['img'],
                                      _rgb_of(expected))
    assert differs > 0  # ssseg's conversion really is another transform


def test_photometric_bgr_order_matches_ssseg():
    import_ssseg()
    from ssseg.modules.datasets.pipelines.transforms import PhotoMetricDistortion
    ref, ours = PhotoMetricDistortion(), CtxPhotoMetricDistortion(hsv_order='BGR')
    for seed in range(40):
        bgr = _bgr_image(13, 17, seed)
        np.random.seed(seed)
        expected = ref({'image': bgr.copy()})['image']
        np.random.seed(seed)
        data = ours({'img': _rgb_of(bgr)})
        np.testing.assert_array_equal(data['img'], _rgb_of(expected))


# ---------------------------------------------------------------- padding

def test_paddleseg_padding_after_normalize_is_mmseg_pad():
    import_mmseg()
    from mmcv.transforms import Pad
    rgb = _rgb_of(_bgr_image(11, 7))
    label = np.random.RandomState(0).randint(0, 9, (11, 7)).astype(np.uint8)
    data = {'img': rgb.copy(), 'label': label.copy(), 'gt_fields': ['label'],
            'trans_info': []}
    data = Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])(data)
    normalized = data['img'].copy()
    data = Padding([13, 16], im_padding_value=0, label_padding_value=255)(data)
    # By hand: the image at the top left, zeros right and below; label 255.
    assert data['img'].shape == (16, 13, 3)
    np.testing.assert_array_equal(data['img'][:11, :7], normalized)
    assert not data['img'][11:].any() and not data['img'][:, 7:].any()
    assert (data['label'][11:] == 255).all() and (data['label'][:, 7:] == 255).all()
    expected = Pad(size=(13, 16), pad_val=dict(img=0, seg=255)).transform(
        {'img': normalized.copy(), 'gt_seg_map': label.copy()})
    np.testing.assert_array_equal(data['img'], expected['img'])
    np.testing.assert_array_equal(data['label'], expected['gt_seg_map'])


def test_center_padding_hand_checked_and_matches_ssseg():
    img = np.ones((3, 4, 3), np.float32)
    label = np.full((3, 4), 5, np.uint8)
    data = CtxCenterPadding([7, 6])({'img': img, 'label': label,
                                     'gt_fields': ['label']})
    # height 3 -> 6: 1 above, 2 below; width 4 -> 7: 1 left, 2 right.
    expected = np.zeros((6, 7), np.float32)
    expected[1:4, 1:5] = 1
    np.testing.assert_array_equal(data['img'][..., 0], expected)
    np.testing.assert_array_equal(data['label'], np.where(expected == 1, 5, 255))

    torch = import_ssseg() and __import__('torch')
    from ssseg.modules.datasets.pipelines.transforms import Padding as SssegPadding
    rs = np.random.RandomState(0)
    img, label = rs.randn(5, 8, 3).astype(np.float32), rs.randint(0, 9, (5, 8))
    ref = SssegPadding(output_size=(10, 13), data_type='tensor',
                       seg_target_fill_value=255)(
        {'image': torch.from_numpy(img.transpose(2, 0, 1).copy()),
         'seg_target': torch.from_numpy(label.astype(np.float32))})
    data = CtxCenterPadding([13, 10])({'img': img, 'label': label.astype(np.uint8),
                                       'gt_fields': ['label']})
    np.testing.assert_array_equal(data['img'], ref['image'].numpy().transpose(1, 2, 0))
    np.testing.assert_array_equal(data['label'], ref['seg_target'].numpy())


def test_center_padding_refuses_larger_images():
    with pytest.raises(ValueError, match='larger than'):
        CtxCenterPadding([4, 4])({'img': np.zeros((5, 4, 3), np.float32),
                                  'gt_fields': []})


# ---------------------------------------------------------------- LIP flip

def test_flip_swaps_lip_pairs_hand_checked():
    label = np.array([[14, 15, 16, 0], [17, 18, 19, 255]], np.uint8)
    img = np.arange(24, dtype=np.float32).reshape(2, 4, 3)
    data = CtxRandomHorizontalFlip(prob=1.0, label_pairs=LIP_PAIRS)(
        {'img': img.copy(), 'label': label, 'gt_fields': ['label']})
    # Mirror, then left <-> right: [0,16,15,14] -> [0,17,14,15].
    np.testing.assert_array_equal(data['label'], [[0, 17, 14, 15], [255, 18, 19, 16]])
    np.testing.assert_array_equal(data['img'], img[:, ::-1])
    unflipped = CtxRandomHorizontalFlip(prob=0.0, label_pairs=LIP_PAIRS)(
        {'img': img.copy(), 'label': label.copy(), 'gt_fields': ['label']})
    np.testing.assert_array_equal(unflipped['label'], label)


def test_flip_draws_like_paddleseg():
    flip = CtxRandomHorizontalFlip(prob=0.5, label_pairs=LIP_PAIRS)
    random.seed(11)
    flips = [random.random() < 0.5 for _ in range(6)]
    random.seed(11)
    label = np.array([[14, 1]], np.uint8)
    got = [flip({'img': np.zeros((1, 2, 3), np.float32), 'label': label,
                 'gt_fields': ['label']})['label'][0, 0] == 1 for _ in range(6)]
    assert got == flips and any(flips) and not all(flips)


def test_flip_matches_ssseg():
    import_ssseg()
    from ssseg.modules.datasets.pipelines.transforms import RandomFlip
    bgr = _bgr_image(9, 11)
    label = np.random.RandomState(2).randint(0, 20, (9, 11)).astype(np.uint8)
    expected = RandomFlip(prob=1.0, fixed_seg_target_pairs=[(15, 14), (17, 16), (19, 18)])(
        {'image': bgr.copy(), 'seg_target': label.astype(np.float32)})
    data = CtxRandomHorizontalFlip(1.0, LIP_PAIRS)(_data(bgr, label))
    np.testing.assert_array_equal(data['img'], _rgb_of(expected['image']))
    np.testing.assert_array_equal(data['label'], expected['seg_target'])


# ---------------------------------------------------------------- LIP rotation

def test_rotation_probability_and_angle_draws():
    rotate = CtxRandomRotation(prob=0.6, max_angle=30)
    np.random.seed(0)
    expected = []
    for _ in range(8):
        if np.random.rand() > 0.6:
            expected.append(None)
        else:
            expected.append(np.random.randint(-30, 30))
    np.random.seed(0)
    label = np.full((21, 31), 3, np.uint8)
    for angle in expected:
        data = rotate({'img': np.full((21, 31, 3), 7, np.float32),
                       'label': label.copy(), 'gt_fields': ['label']})
        rotated = (data['label'] == 255).any()
        assert rotated == (angle not in (None, 0))


def test_rotation_fills_corners_with_ignore_and_zero(monkeypatch):
    monkeypatch.setattr(np.random, 'rand', lambda: 0.0)
    monkeypatch.setattr(np.random, 'randint', lambda low, high: -30)
    data = CtxRandomRotation(prob=0.6)({'img': np.full((21, 31, 3), 200, np.float32),
                                        'label': np.full((21, 31), 3, np.uint8),
                                        'gt_fields': ['label']})
    assert data['img'].shape == (21, 31, 3) and data['label'].shape == (21, 31)
    for y, x in [(0, 0), (0, 30), (20, 0), (20, 30)]:  # corners leave the canvas
        assert data['label'][y, x] == 255 and (data['img'][y, x] == 0).all()
    assert data['label'][10, 15] == 3 and (data['img'][10, 15] == 200).all()
    assert set(np.unique(data['label'])) == {3, 255}
    assert data['img'].dtype == np.float32 and data['img'].min() >= 0


def test_rotation_matches_ssseg():
    import_ssseg()
    from ssseg.modules.datasets.pipelines.transforms import RandomRotation
    ref = RandomRotation(prob=0.6, angle_upper=30, seg_target_fill_value=255)
    ours = CtxRandomRotation(prob=0.6, max_angle=30)
    for seed in range(6):
        bgr = _bgr_image(23, 29, seed)
        label = np.random.RandomState(seed).randint(0, 20, (23, 29)).astype(np.uint8)
        np.random.seed(seed)
        expected = ref({'image': bgr.copy(), 'seg_target': label.astype(np.float32)})
        np.random.seed(seed)
        data = ours(_data(bgr, label))
        np.testing.assert_array_equal(data['img'], _rgb_of(expected['image']))
        np.testing.assert_array_equal(data['label'], expected['seg_target'])


# ---------------------------------------------------------------- recipes

NORMALIZE = ('- {type: Normalize, mean: [0.485, 0.456, 0.406], '
             'std: [0.229, 0.224, 0.225]}\n')


def _mmseg(target, crop):
    return ('- {{type: CtxRandomResize, target_size: {t}, ratio_range: [0.5, 2.0]}}\n'
            '- {{type: CtxRandomCrop, crop_size: {c}, cat_max_ratio: 0.75}}\n'
            '- {{type: RandomHorizontalFlip, prob: 0.5}}\n'
            '- {{type: CtxPhotoMetricDistortion}}\n').format(t=target, c=crop) + \
        NORMALIZE + ('- {{type: Padding, target_size: {c}, im_padding_value: 0, '
                     'label_padding_value: 255}}\n').format(c=crop)


def _ssseg(target, crop):
    return ('- {{type: CtxRandomResize, target_size: {t}, ratio_range: [0.5, 2.0]}}\n'
            '- {{type: CtxRandomCrop, crop_size: {c}, cat_max_ratio: 0.75, '
            'fallback: last}}\n'
            '- {{type: RandomHorizontalFlip, prob: 0.5}}\n'
            '- {{type: CtxPhotoMetricDistortion, hsv_order: BGR}}\n').format(
                t=target, c=crop) + \
        NORMALIZE + '- {{type: CtxCenterPadding, target_size: {c}}}\n'.format(c=crop)


SSSEG_LIP = """
- {type: CtxRandomResize, target_size: [520, 520], ratio_range: [0.75, 1.25], keep_ratio: false}
- {type: CtxRandomCrop, crop_size: [473, 473], cat_max_ratio: 0.75, fallback: last}
- {type: CtxRandomHorizontalFlip, prob: 0.5, label_pairs: [[14, 15], [16, 17], [18, 19]]}
- {type: CtxRandomRotation, prob: 0.6, max_angle: 30}
- {type: CtxPhotoMetricDistortion, hsv_order: BGR}
""" + NORMALIZE + """- {type: CtxCenterPadding, target_size: [473, 473]}
"""

# The training pipelines of docs/reference/recipes.md (mmseg, ssseg), as configs write them
# ([width, height]).
RECIPES = {
    'mmseg_cityscapes_512x1024': (_mmseg([2048, 1024], [1024, 512]), (512, 1024)),
    'mmseg_cityscapes_769x769': (_mmseg([2049, 1025], [769, 769]), (769, 769)),
    'mmseg_ade20k_voc_512x512': (_mmseg([2048, 512], [512, 512]), (512, 512)),
    'ssseg_ade20k_cocostuff10k': (_ssseg([2048, 512], [512, 512]), (512, 512)),
    'ssseg_cityscapes': (_ssseg([2048, 1024], [1024, 512]), (512, 1024)),
    'ssseg_lip': (SSSEG_LIP, (473, 473)),
}


@pytest.mark.parametrize('name', sorted(RECIPES))
def test_recipes_build_from_yaml_and_run_in_paddleseg_compose(tmp_path, name):
    recipe, out_hw = RECIPES[name]
    transforms = []
    for cfg in yaml.safe_load(recipe):
        kind = cfg.pop('type')
        transforms.append(manager.TRANSFORMS[kind](**cfg))
    path = str(tmp_path / 'img.png')
    cv2.imwrite(path, _bgr_image(201, 143))  # odd sizes, portrait
    label = np.random.RandomState(0).randint(0, 20, (201, 143)).astype(np.uint8)
    np.random.seed(0)
    random.seed(0)
    data = Compose(transforms)({'img': path, 'label': label, 'gt_fields': ['label']})
    assert data['img'].shape == (3, ) + out_hw and data['img'].dtype == np.float32
    assert data['label'].shape == out_hw
    assert set(np.unique(data['label'])) <= set(range(20)) | {255}
