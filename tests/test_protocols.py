"""Evaluation protocols (paddleseg_ctx.evaluation, ``val --protocol``) against
independent numpy versions of the test code of PaddleSeg 2.8
(``core/infer.py``), mmsegmentation 0.x (``EncoderDecoder.inference`` /
``aug_test``, ``MultiScaleFlipAug``) and sssegmentation (``BaseSegmentor.
inference`` / ``auginference``, ``test.py``), written here with numpy and cv2.

The probe model's logits depend on the content and on the position inside
its input (two coordinate channels, 1/8 resolution), so a wrong resize, flip,
window offset, channel swap or merge order changes predictions; its last
class is never predicted and never labelled (IoU 0 or NaN by the mIoU rule).
Per image, the prediction of the code under test must equal the reference's
argmax except at the reference's near ties (float32 vs float64); the class
IoUs that ``evaluate`` reports must equal numpy's on those predictions.
"""
import importlib
import os

import cv2
import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
import pytest
import yaml
from PIL import Image
from paddleseg.core import evaluate as paddleseg_evaluate
from paddleseg.core import infer
from paddleseg.cvlibs import manager
from paddleseg.datasets import ADE20K, Dataset
from paddleseg.transforms import Normalize, Padding

from reference_imports import import_mmseg, import_ssseg, import_torch
from paddleseg_ctx.cli import val
from paddleseg_ctx.evaluation import Protocol, evaluate
from paddleseg_ctx.evaluation.inference import predict
from paddleseg_ctx.registry import register
from paddleseg_ctx.transforms import test_time

K = 5
SIZES = [(45, 37), (37, 53), (61, 29)]  # (w, h): odd, portrait and landscape
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
MARGIN = 1e-3  # top-1/top-2 gaps below this are near ties


@register(manager.MODELS)
class ProtocolProbeNet(nn.Layer):
    """3x3 conv + tanh, 8x8 average pool (ceil), then a 1x1 classifier over
    the features and the (y, x) position in [-1, 1]: logits at 1/8."""

    def __init__(self, num_classes, align_corners=False):
        super().__init__()
        self.num_classes = num_classes
        self.align_corners = align_corners
        self.conv = nn.Conv2D(3, 8, 3, padding=1)
        self.cls = nn.Conv2D(10, num_classes, 1)
        rng = np.random.RandomState(7)
        bias = rng.normal(0, 1, num_classes)
        bias[-1] = -1000.0  # the last class is never predicted
        for param, value in (
            (self.conv.weight, rng.normal(0, 0.6, [8, 3, 3, 3])),
            (self.conv.bias, rng.normal(0, 0.1, [8])),
            (self.cls.weight, rng.normal(0, 3.0, [num_classes, 10, 1, 1])),
            (self.cls.bias, bias)):
            param.set_value(value.astype('float32'))

    def raw_logits(self, x):
        feat = F.avg_pool2d(paddle.tanh(self.conv(x)), 8, 8, ceil_mode=True)
        n, _, h, w = feat.shape
        yy = paddle.linspace(-1.0, 1.0, h).reshape([1, 1, h, 1])
        xx = paddle.linspace(-1.0, 1.0, w).reshape([1, 1, 1, w])
        coords = [yy.expand([n, 1, h, w]), xx.expand([n, 1, h, w])]
        return [self.cls(paddle.concat([feat] + coords, axis=1))]

    def forward(self, x):
        return [
            F.interpolate(self.raw_logits(x)[0], x.shape[2:], mode='bilinear',
                          align_corners=self.align_corners)
        ]


# --------------------------------------------------------------- numpy side


def np_resize(chw, size, align_corners, scale=None):
    """Bilinear resize of a CHW array to ``size`` (h, w) as torch's
    F.interpolate does: corners aligned, or half-pixel centres sampled at
    in/out (or 1/scale for ``scale_factor``), no antialiasing."""

    def taps(n_out, n_in):
        if align_corners:
            step = (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
            src = np.arange(n_out) * step
        else:
            ratio = 1.0 / scale if scale else n_in / n_out
            src = np.clip((np.arange(n_out) + 0.5) * ratio - 0.5, 0, n_in - 1)
        low = np.floor(src).astype(int)
        return low, np.minimum(low + 1, n_in - 1), src - low

    y0, y1, wy = taps(size[0], chw.shape[1])
    x0, x1, wx = taps(size[1], chw.shape[2])
    rows = chw[:, y0] * (1 - wy)[:, None] + chw[:, y1] * wy[:, None]
    return rows[:, :, x0] * (1 - wx) + rows[:, :, x1] * wx


def np_softmax(chw):
    e = np.exp(chw - chw.max(0))
    return e / e.sum(0)


def np_normalize(rgb, mean=MEAN, std=STD):
    return ((rgb / 255.0 - np.array(mean)) / np.array(std)).transpose(2, 0, 1)


def raw(model, chw):
    with paddle.no_grad():
        x = paddle.to_tensor(chw[None].astype('float32'))
        return model.raw_logits(x)[0][0].numpy().astype('float64')


def net(model, chw):
    """The model's logits resized to its input (mmseg ``encode_decode``)."""
    return np_resize(raw(model, chw), chw.shape[1:], model.align_corners)


def fit(width, height, box):
    scale = min(max(box) / max(width, height), min(box) / min(width, height))
    return int(width * scale + 0.5), int(height * scale + 0.5)


def windows(length, crop, stride):
    """[(start, end)] of sliding windows along one axis."""
    spans, start = [], 0
    while True:
        end = min(start + crop, length)
        spans.append((max(end - crop, 0), end))
        if start + crop >= length:
            return spans
        start += stride


def np_slide(model, chw, crop, stride, pad, softmax):
    """Windows ``crop`` = (w, h) every ``stride``; window logits at window
    size (``pad``: small windows zero-padded first), averaged."""
    total = np.zeros((model.num_classes, ) + chw.shape[1:])
    count = np.zeros(chw.shape[1:])
    for y1, y2 in windows(chw.shape[1], crop[1], stride[1]):
        for x1, x2 in windows(chw.shape[2], crop[0], stride[0]):
            part = chw[:, y1:y2, x1:x2]
            if pad and part.shape[1:] != (crop[1], crop[0]):
                padded = np.zeros((3, crop[1], crop[0]))
                padded[:, :y2 - y1, :x2 - x1] = part
                out = net(model, padded)[:, :y2 - y1, :x2 - x1]
            else:
                out = net(model, part)
            total[:, y1:y2, x1:x2] += np_softmax(out) if softmax else out
            count[y1:y2, x1:x2] += 1
    return total / count


def ref_mmseg(model, rgb, scales, flip, img_scale, slide=None, pad=False):
    """mmseg 0.x: per ratio r the original uint8 image fitted into
    (int(W*r), int(H*r)) of img_scale; flip; logits -> input -> original
    size; softmax; flip back; probabilities summed."""
    height, width = rgb.shape[:2]
    ac = model.align_corners
    total = 0
    for r in scales:
        size = fit(width, height, (int(img_scale[0] * r),
                                   int(img_scale[1] * r)))
        image = cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR)
        for flipped in (False, True) if flip else (False, ):
            x = np_normalize(image[:, ::-1] if flipped else image)
            logit = (np_slide(model, x, *slide, pad, False)
                     if slide else net(model, x))
            prob = np_softmax(np_resize(logit, (height, width), ac))
            total = total + (prob[:, :, ::-1] if flipped else prob)
    return total


def ref_ssseg(model, rgb, scales, flip, img_scale, keep_ratio=True,
              slide=None, probs=False, pairs=()):
    """ssseg: one uint8 test resize; per scale F.interpolate(scale_factor)
    of the normalised tensor; flip; whole: feature-resolution output
    (softmax there with probs), slide: windows; flipped output channel-
    swapped and flipped back; each resized ONCE to the original size."""
    height, width = rgb.shape[:2]
    ac = model.align_corners
    size = fit(width, height, img_scale) if keep_ratio else tuple(img_scale)
    x = np_normalize(cv2.resize(rgb, size, interpolation=cv2.INTER_LINEAR))
    order = list(range(model.num_classes))
    for a, b in pairs:
        order[a], order[b] = b, a
    total = 0
    for s in scales:
        xs = np_resize(x, (int(np.floor(x.shape[1] * s)),
                           int(np.floor(x.shape[2] * s))), ac, scale=s)
        for flipped in (False, True) if flip else (False, ):
            xf = xs[:, :, ::-1] if flipped else xs
            if slide:
                out = np_slide(model, xf, *slide, False, probs)
            else:
                out = raw(model, xf)
                out = np_softmax(out) if probs else out
            if flipped:
                out = out[order][:, :, ::-1]
            total = total + np_resize(out, (height, width), ac)
    return total


def ref_paddleseg(model, rgb, scales, flip, pad_to):
    """PaddleSeg 2.8: float image padded bottom/right with 127.5 to
    ``pad_to`` (w, h), normalised (0.5/0.5); per scale resized to
    int(L*s+0.5); model logits (resized to its input) flipped back and
    resized to the padded size; logits summed; padding cropped."""
    height, width = rgb.shape[:2]
    padded = np.full((pad_to[1], pad_to[0], 3), 127.5)
    padded[:height, :width] = rgb
    x = np_normalize(padded, (0.5, ) * 3, (0.5, ) * 3)
    size = x.shape[1:]
    total = 0
    for s in scales:
        xs = np_resize(x, (int(size[0] * s + 0.5), int(size[1] * s + 0.5)),
                       False)
        for flipped in (False, True) if flip else (False, ):
            logit = net(model, xs[:, :, ::-1] if flipped else xs)
            logit = logit[:, :, ::-1] if flipped else logit
            total = total + np_resize(logit, size, False)
    return total[:, :height, :width]


def assert_matches(preds, totals):
    """Each prediction is argmax(total) except at near ties of ``total``."""
    for pred, total in zip(preds, totals):
        top = np.sort(total, axis=0)
        gap = (top[-1] - top[-2])[pred != total.argmax(0)]
        assert gap.size == 0 or gap.max() < MARGIN, (
            '{} pixels differ from the reference, with score gaps up to '
            '{:.3g}'.format(gap.size, gap.max()))


def np_class_iou(preds, labels, empty, num_classes=K):
    inter, union = np.zeros(num_classes), np.zeros(num_classes)
    for pred, label in zip(preds, labels):
        valid = label != 255
        for c in range(num_classes):
            inter[c] += np.sum((pred == c) & (label == c) & valid)
            union[c] += np.sum(((pred == c) | (label == c)) & valid)
    return np.where(union > 0, inter / np.maximum(union, 1), empty)


# -------------------------------------------------------------------- data


def write_images(root, sizes, seed, num_labels, label_offset=0,
                 image_ext='.png'):
    """Smooth random RGB images and blocky labels in [0, num_labels) plus
    ignore pixels; returns [(image path, label path, rgb, label)]."""
    rng = np.random.RandomState(seed)
    samples = []
    for i, (w, h) in enumerate(sizes):
        small = rng.randint(0, 256, (h // 4 + 2, w // 4 + 2, 3))
        rgb = cv2.resize(small.astype(np.uint8), (w, h),
                         interpolation=cv2.INTER_CUBIC)
        rgb = np.clip(rgb.astype(int) + rng.randint(-20, 21, rgb.shape), 0,
                      255).astype(np.uint8)
        label = cv2.resize(
            rng.randint(0, num_labels, (h // 6 + 1, w // 6 + 1)).astype(
                np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
        label[rng.rand(h, w) < 0.05] = 255
        label = (label + label_offset).astype(np.uint8)
        image_path = os.path.join(root, 'img{}{}'.format(i, image_ext))
        label_path = os.path.join(root, 'lab{}.png'.format(i))
        cv2.imwrite(image_path, rgb[:, :, ::-1])
        Image.fromarray(label).save(label_path)
        if image_ext != '.png':  # lossy: the reference reads what was saved
            rgb = cv2.imread(image_path)[:, :, ::-1]
        samples.append((image_path, label_path, rgb, label))
    return samples


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('protocols'))
    samples = write_images(root, SIZES, seed=1, num_labels=K - 1)
    val_path = os.path.join(root, 'val.txt')
    with open(val_path, 'w') as f:
        for image, label, _, _ in samples:
            f.write('{} {}\n'.format(os.path.basename(image),
                                     os.path.basename(label)))
    return {'root': root, 'val_path': val_path, 'samples': samples}


def make_dataset(data, transforms):
    return Dataset(mode='val', dataset_root=data['root'],
                   transforms=transforms, num_classes=K,
                   val_path=data['val_path'])


def probe(align_corners=False):
    model = ProtocolProbeNet(K, align_corners)
    model.eval()
    return model


def check(result, preds, data, empty):
    """evaluate()'s class IoU and mIoU equal numpy's on ``preds``."""
    miou, _, class_iou, _, _ = result
    expected = np_class_iou(preds, [s[3] for s in data['samples']], empty)
    np.testing.assert_allclose(class_iou, expected, rtol=0, atol=1e-12)
    reduce = np.mean if empty == 0 else np.nanmean
    assert miou == pytest.approx(reduce(expected), abs=1e-12)
    return expected


def engine_preds(model, data, protocol):
    """Predictions of paddleseg_ctx's engine for the data's images."""
    with paddle.no_grad():
        return [
            predict(model, s[2], protocol, np.array(MEAN), np.array(STD))
            for s in data['samples']
        ]


def run_protocol(data, model, protocol, totals):
    """evaluate() under ``protocol`` against the reference ``totals``."""
    preds = engine_preds(model, data, protocol)
    assert_matches(preds, totals)
    dataset = make_dataset(data, [Normalize(MEAN, STD)])
    return check(evaluate(model, dataset, protocol), preds, data,
                 np.nan if protocol.miou == 'nanmean' else 0.0)


# --------------------------------------------------------------- PaddleSeg

PADDLESEG_COLUMNS = {
    'single': ((1.0, ), False),
    'flip': ((1.0, ), True),
    'ms_flip': ((0.75, 1.0, 1.25), True),
}


def paddleseg_preds(model, dataset, flags):
    """Per-image predictions of PaddleSeg's infer functions, as its
    evaluate makes them."""
    preds = []
    with paddle.no_grad():
        for i in range(len(dataset)):
            sample = dataset[i]
            image = paddle.to_tensor(sample['img'][None])
            if flags:
                pred, _ = infer.aug_inference(
                    model, image, trans_info=sample['trans_info'],
                    scales=flags['scales'], flip_horizontal=True)
            else:
                pred, _ = infer.inference(model, image,
                                          trans_info=sample['trans_info'])
            preds.append(pred.numpy()[0, 0])
    return preds


@pytest.mark.parametrize('column', PADDLESEG_COLUMNS)
def test_paddleseg_columns_are_paddleseg_evaluate(data, column):
    """Padding to 64x64 in the val transforms, cropped off the logits."""
    scales, flip = PADDLESEG_COLUMNS[column]
    model = probe()
    dataset = make_dataset(data, [Padding([64, 64]), Normalize()])
    flags = {} if column == 'single' else dict(
        aug_eval=True, scales=list(scales), flip_horizontal=True)
    preds = paddleseg_preds(model, dataset, flags)
    assert_matches(preds, [
        ref_paddleseg(model, s[2], scales, flip, (64, 64))
        for s in data['samples']
    ])
    result = evaluate(model, dataset,
                      Protocol('paddleseg', scales=scales, flip=flip))
    check(result, preds, data, empty=0.0)
    direct = paddleseg_evaluate(model, dataset, **flags)
    np.testing.assert_array_equal(direct[2], result[2])


# ------------------------------------------------------------------- mmseg


@pytest.mark.parametrize('scales,flip', [((1.0, ), False),
                                         ((0.5, 0.75, 1.0, 1.5), True)])
def test_mmseg_whole(data, scales, flip):
    model = probe()
    protocol = Protocol('mmseg', scales=scales, flip=flip, test_resize='fit',
                        img_scale=(48, 32), merge='probs', miou='nanmean')
    totals = [ref_mmseg(model, s[2], scales, flip, (48, 32))
              for s in data['samples']]
    iou = run_protocol(data, model, protocol, totals)
    assert np.isnan(iou[K - 1]) and not np.isnan(iou[:K - 1]).any()


def test_mmseg_ms_refits_the_original_image(data):
    """The data tells mmseg 0.x's ms (re-fit the original uint8 image into
    r*img_scale) from rescaling the fitted image (mmseg 1.x style)."""
    model = probe()
    rgb = data['samples'][0][2]
    refit = ref_mmseg(model, rgb, (0.75, ), False, (48, 32)).argmax(0)
    fitted = cv2.resize(rgb, fit(45, 37, (48, 32)),
                        interpolation=cv2.INTER_LINEAR)
    w, h = fitted.shape[1], fitted.shape[0]
    rescaled = cv2.resize(fitted, (int(w * 0.75 + 0.5), int(h * 0.75 + 0.5)),
                          interpolation=cv2.INTER_LINEAR)
    other = np_resize(net(model, np_normalize(rescaled)), (37, 45), False)
    assert (refit != other.argmax(0)).any()


@pytest.mark.parametrize('pad', [False, True])
def test_mmseg_slide_with_windows_larger_than_small_scales(data, pad):
    """769-style: corners aligned, img_scale 8k+1, square window and stride;
    at ratio 0.5 the image is smaller than the window."""
    model = probe(align_corners=True)
    slide = ((21, 21), (13, 13))
    scales = (0.5, 1.0, 1.25)
    protocol = Protocol('mmseg', scales=scales, flip=True, test_resize='fit',
                        img_scale=(49, 25), mode='slide',
                        slide_crop_size=slide[0], slide_stride=slide[1],
                        slide_pad=pad, merge='probs', miou='nanmean')
    totals = [
        ref_mmseg(model, s[2], scales, True, (49, 25), slide, pad)
        for s in data['samples']
    ]
    run_protocol(data, model, protocol, totals)
    other = ref_mmseg(model, data['samples'][0][2], scales, True, (49, 25),
                      slide, not pad)
    assert (other.argmax(0) != totals[0].argmax(0)).any()


@pytest.mark.parametrize('mode,align_corners', [('whole', False),
                                                  ('slide', True)])
def test_mmseg_single_scale_matches_mmsegmentation_code(data, mode,
                                                        align_corners):
    """mmsegmentation's own EncoderDecoder.predict (1.2.2; single scale is
    the same in 0.x) and test Resize on a torch copy of the probe."""
    import_mmseg()
    torch = import_torch()
    from mmcv.transforms import Resize
    from mmengine.config import ConfigDict
    from mmengine.model import BaseModule
    from mmseg.models.decode_heads.decode_head import BaseDecodeHead
    from mmseg.models.segmentors import EncoderDecoder
    from mmseg.structures import SegDataSample
    model = probe(align_corners)

    class Backbone(BaseModule):

        def __init__(self):
            super().__init__()
            self.probe = torch_probe(model)

        def forward(self, x):
            return [self.probe(x)]

    class Head(BaseDecodeHead):  # the backbone already gives the logits

        def forward(self, inputs):
            return inputs[0]

    slide = dict(mode='slide', crop_size=(21, 21), stride=(13, 13))
    segmentor = EncoderDecoder(
        backbone=dict(type=Backbone),
        decode_head=dict(type=Head, in_channels=K, channels=K,
                         num_classes=K, align_corners=align_corners),
        test_cfg=ConfigDict(slide if mode == 'slide' else dict(
            mode='whole'))).eval()
    img_scale = (49, 25) if mode == 'slide' else (48, 32)
    totals = []
    with torch.no_grad():
        for image_path, _, rgb, _ in data['samples']:
            image = Resize(scale=img_scale, keep_ratio=True)(
                {'img': cv2.imread(image_path)})['img']
            x = np_normalize(image[:, :, ::-1]).astype('float32')
            meta = dict(ori_shape=rgb.shape[:2], img_shape=image.shape[:2],
                        pad_shape=image.shape[:2], padding_size=[0] * 4)
            out = segmentor.predict(torch.from_numpy(x[None].copy()),
                                    [SegDataSample(metainfo=meta)])
            totals.append(out[0].seg_logits.data.numpy().astype('float64'))
    extra = dict(mode='slide', slide_crop_size=(21, 21),
                 slide_stride=(13, 13)) if mode == 'slide' else {}
    protocol = Protocol('mmseg', test_resize='fit', img_scale=img_scale,
                        merge='probs', miou='nanmean', **extra)
    run_protocol(data, model, protocol, totals)


# ------------------------------------------------------------------- ssseg

SSSEG_CASES = {
    'whole_logits_single': dict(scales=(1.0, ), flip=False, probs=False),
    'whole_probs_ms_flip': dict(scales=(0.5, 0.75, 1.0, 1.75), flip=True,
                                probs=True),
    'whole_logits_ms_flip': dict(scales=(0.5, 0.75, 1.0, 1.75), flip=True,
                                 probs=False),
    'slide_probs_ms_flip': dict(scales=(0.5, 1.0, 1.5), flip=True,
                                probs=True, slide=((30, 20), (11, 11))),
    'slide_logits_ms_flip': dict(scales=(0.5, 1.0, 1.5), flip=True,
                                 probs=False, slide=((20, 30), (11, 11))),
}


@pytest.mark.parametrize('case', SSSEG_CASES)
def test_ssseg(data, case):
    c = SSSEG_CASES[case]
    model = probe()
    slide = c.get('slide')
    protocol = Protocol(
        'ssseg', scales=c['scales'], flip=c['flip'], test_resize='fit',
        img_scale=(48, 32), mode='slide' if slide else 'whole',
        slide_crop_size=slide[0] if slide else None,
        slide_stride=slide[1] if slide else None,
        merge='probs' if c['probs'] else 'logits', miou='nanmean')
    totals = [
        ref_ssseg(model, s[2], c['scales'], c['flip'], (48, 32), slide=slide,
                  probs=c['probs']) for s in data['samples']
    ]
    run_protocol(data, model, protocol, totals)
    if c['flip']:  # where the softmax happens matters on this data
        other = ref_ssseg(model, data['samples'][0][2], c['scales'], True,
                          (48, 32), slide=slide, probs=not c['probs'])
        assert (other.argmax(0) != totals[0].argmax(0)).any()


def test_lip_flip_swaps_paired_channels(data):
    """ssseg LIP: squash to a square, flip, the flipped output's left/right
    channels swapped back (here classes 1 <-> 2)."""
    model = probe()
    pairs = ((1, 2), )
    protocol = Protocol('ssseg', flip=True, test_resize='squash',
                        img_scale=(33, 33), merge='logits', miou='nanmean',
                        flip_pairs=pairs)
    totals = [
        ref_ssseg(model, s[2], (1.0, ), True, (33, 33), keep_ratio=False,
                  pairs=pairs) for s in data['samples']
    ]
    run_protocol(data, model, protocol, totals)
    unswapped = ref_ssseg(model, data['samples'][0][2], (1.0, ), True,
                          (33, 33), keep_ratio=False)
    assert (unswapped.argmax(0) != totals[0].argmax(0)).any()


def torch_probe(model):
    """A torch copy of the probe (same weights), for the reference code."""
    torch = import_torch()

    class TorchProbe(torch.nn.Module):

        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
            self.cls = torch.nn.Conv2d(10, model.num_classes, 1)
            self.load_state_dict({
                k: torch.from_numpy(v.numpy())
                for k, v in model.state_dict().items()
            })

        def forward(self, x):
            feat = torch.nn.functional.avg_pool2d(
                torch.tanh(self.conv(x)), 8, 8, ceil_mode=True)
            n, _, h, w = feat.shape
            yy = torch.linspace(-1, 1, h).view(1, 1, h, 1).expand(n, 1, h, w)
            xx = torch.linspace(-1, 1, w).view(1, 1, 1, w).expand(n, 1, h, w)
            return self.cls(torch.cat([feat, yy, xx], 1))

    return TorchProbe().eval()


# ssseg inference cfg (windows h x w), protocol fields, test Resize.  The
# flip pairs come from the train pipeline's RandomFlip, as in ssseg's LIP.
SSSEG_CODE_CASES = {
    'slide_probs_ms_flip': (
        {'forward': {'mode': 'slide', 'cropsize': (20, 30),
                     'stride': (11, 11)},
         'tta': {'multiscale': [0.5, 1.0, 1.5], 'flip': True,
                 'use_probs_before_resize': True}},
        dict(scales=(0.5, 1.0, 1.5), flip=True, mode='slide',
             slide_crop_size=(30, 20), slide_stride=(11, 11), merge='probs'),
        ('Resize', {'output_size': (48, 32), 'keep_ratio': True,
                    'scale_range': None}),
        dict(test_resize='fit', img_scale=(48, 32))),
    'lip_flip': (
        {'forward': {'mode': 'whole', 'cropsize': None, 'stride': None},
         'tta': {'multiscale': [1], 'flip': True,
                 'use_probs_before_resize': False}},
        dict(flip=True, flip_pairs=((1, 2), )),
        ('Resize', {'output_size': (33, 33), 'keep_ratio': False,
                    'scale_range': None}),
        dict(test_resize='squash', img_scale=(33, 33))),
}


@pytest.mark.parametrize('case', SSSEG_CODE_CASES)
def test_ssseg_matches_sssegmentation_code(data, case):
    """sssegmentation's own BaseSegmentor.inference/auginference and data
    pipeline on a torch copy of the probe, merged as its test.py does."""
    import_ssseg()
    torch = import_torch()
    base = importlib.import_module('ssseg.modules.models.segmentors.base.base')
    pipelines = importlib.import_module('ssseg.modules.datasets.pipelines')
    structures = importlib.import_module('ssseg.modules.utils')
    inference_cfg, fields, resize, resize_fields = SSSEG_CODE_CASES[case]
    model = probe()

    class TorchProbe(base.BaseSegmentor):

        def __init__(self):
            torch.nn.Module.__init__(self)
            flip = ('RandomFlip', {'fixed_seg_target_pairs': [(2, 1)]})
            self.cfg = {
                'inference': inference_cfg, 'num_classes': K,
                'dataset': {'train': {'data_pipelines': [flip] if
                                      fields.get('flip_pairs') else []}}
            }
            self.mode, self.align_corners = 'TEST', False
            self.probe = torch_probe(model)

        def forward(self, data_meta):
            return structures.SSSegOutputStructure(
                mode='TEST', seg_logits=self.probe(data_meta.images))

    segmentor = TorchProbe().eval()
    compose = pipelines.Compose([
        pipelines.BuildDataTransform(dict(resize[1], type=resize[0])),
        pipelines.BuildDataTransform(dict(type='Normalize',
                                          mean=[m * 255 for m in MEAN],
                                          std=[s * 255 for s in STD])),
        pipelines.BuildDataTransform(dict(type='ToTensor')),
    ])
    totals = []
    with torch.no_grad():
        for image_path, _, rgb, _ in data['samples']:
            height, width = rgb.shape[:2]
            image = compose({'image': cv2.imread(image_path)})['image']
            outputs = segmentor.auginference(image[None])
            merged = sum(
                torch.nn.functional.interpolate(
                    out, size=(height, width), mode='bilinear',
                    align_corners=False) for out in outputs) / len(outputs)
            totals.append(merged[0].numpy().astype('float64'))
    protocol = Protocol('ssseg', miou='nanmean', **fields, **resize_fields)
    run_protocol(data, model, protocol, totals)


# ------------------------------------------------------------- mIoU rules


def test_nanmean_skips_and_empty_as_zero_counts_an_absent_class(data):
    model = probe()
    totals = [ref_mmseg(model, s[2], (1.0, ), False, (48, 32))
              for s in data['samples']]
    iou = {}
    for rule in ('nanmean', 'empty_as_zero'):
        protocol = Protocol('mmseg', test_resize='fit', img_scale=(48, 32),
                            merge='probs', miou=rule)
        iou[rule] = run_protocol(data, model, protocol, totals)
    assert np.isnan(iou['nanmean'][K - 1]) and iou['empty_as_zero'][K - 1] == 0
    np.testing.assert_array_equal(iou['nanmean'][:K - 1],
                                  iou['empty_as_zero'][:K - 1])


def test_labels_come_from_the_dataset_class(tmp_path):
    """ADE20K's own decoding (uint8 label - 1: 0 becomes ignore 255)."""
    root = tmp_path / 'ADEChallengeData2016'
    for sub in ('images/validation', 'annotations/validation'):
        (root / sub).mkdir(parents=True)
    samples = write_images(str(tmp_path), SIZES[:2], seed=3, num_labels=4,
                           image_ext='.jpg')
    for i, (image, label, _, _) in enumerate(samples):
        name = 'ADE_val_{}'.format(i)
        os.replace(image, str(root / 'images/validation' / (name + '.jpg')))
        lab = np.array(Image.open(label))
        lab[lab == 255] = 0  # ADE's "other"
        Image.fromarray(lab).save(
            str(root / 'annotations/validation' / (name + '.png')))
    dataset = ADE20K(transforms=[Normalize(MEAN, STD)],
                     dataset_root=str(root), mode='val')
    model = ProtocolProbeNet(150)
    model.eval()
    protocol = Protocol('mmseg', test_resize='fit', img_scale=(48, 32),
                        merge='probs', miou='nanmean')
    preds, labels = [], []
    for image_path, label_path in dataset.file_list:
        rgb = cv2.imread(image_path)[:, :, ::-1]
        with paddle.no_grad():
            preds.append(predict(model, rgb, protocol, np.array(MEAN),
                                 np.array(STD)))
        assert_matches(preds[-1:], [ref_mmseg(model, rgb, (1.0, ), False,
                                              (48, 32))])
        labels.append(np.array(Image.open(label_path)) - np.uint8(1))
    result = evaluate(model, dataset, protocol)
    expected = np_class_iou(preds, labels, np.nan, 150)
    np.testing.assert_allclose(result[2], expected, rtol=0, atol=1e-12)


# ------------------------------------------------- ResizeByImgScale transform


@pytest.mark.parametrize('keep_ratio', [True, False])
def test_resize_by_img_scale_matches_sssegs_resize(keep_ratio):
    import_ssseg()
    transforms = importlib.import_module(
        'ssseg.modules.datasets.pipelines.transforms')
    rng = np.random.RandomState(0)
    for width, height in [(45, 37), (37, 53), (2048, 1024), (683, 512)]:
        bgr = rng.randint(0, 256, (height, width, 3)).astype(np.uint8)
        reference = transforms.Resize(
            output_size=(48, 48) if not keep_ratio else (2048, 512),
            keep_ratio=keep_ratio, scale_range=None)
        expected = reference({'image': bgr.copy()})['image']
        op = test_time.ResizeByImgScale(
            [2048, 512] if keep_ratio else [48, 48], keep_ratio)
        out = op({'img': bgr.astype('float32'), 'trans_info': []})
        np.testing.assert_array_equal(out['img'], expected)
        assert out['trans_info'] == [('resize', (height, width))]


def test_resize_by_img_scale_in_plain_val(data):
    """PaddleSeg's evaluate with [ResizeByImgScale, Normalize]: the uint8
    image fitted into img_scale, and the logits resized back to the
    label's size (reverse_transform: bilinear, align_corners=False)."""
    model = probe()
    dataset = make_dataset(
        data, [test_time.ResizeByImgScale([48, 32]),
               Normalize(MEAN, STD)])
    totals = []
    for _, _, rgb, _ in data['samples']:
        h, w = rgb.shape[:2]
        image = cv2.resize(rgb, fit(w, h, (48, 32)),
                           interpolation=cv2.INTER_LINEAR)
        totals.append(np_resize(net(model, np_normalize(image)), (h, w),
                                False))
    preds = paddleseg_preds(model, dataset, {})
    assert_matches(preds, totals)
    check(paddleseg_evaluate(model, dataset), preds, data, empty=0.0)


def test_resize_by_img_scale_needs_raw_pixels_and_resizes_train_labels():
    op = test_time.ResizeByImgScale([20, 10])
    image = np.random.RandomState(0).randint(0, 256, (7, 9, 3))
    label = np.arange(63, dtype=np.uint8).reshape(7, 9)
    out = op({'img': image.astype('float32'), 'label': label,
              'gt_fields': ['label'], 'trans_info': []})
    assert out['img'].shape == (10, 13, 3)  # fit: scale min(20/9, 10/7)
    np.testing.assert_array_equal(
        out['label'], cv2.resize(label, (13, 10),
                                 interpolation=cv2.INTER_NEAREST))
    with pytest.raises(ValueError, match='before Normalize'):
        op({'img': image.astype('float32') / 255 - 0.5, 'trans_info': []})


# --------------------------------------------------------------------- CLI


def write_zoo(tmp_path, data, rows):
    """A config of the probe model on ``data`` and a zoo file with ``rows``
    (eval block, published) for it; returns (config, zoo, weights)."""
    (tmp_path / 'configs').mkdir(exist_ok=True)
    dataset = {
        'type': 'Dataset', 'dataset_root': data['root'],
        'val_path': data['val_path'], 'train_path': data['val_path'],
        'num_classes': K,
        'transforms': [{'type': 'Normalize', 'mean': list(MEAN),
                        'std': list(STD)}],
    }
    config = {
        'batch_size': 1, 'iters': 1,
        'train_dataset': dict(dataset, mode='train'),
        'val_dataset': dict(dataset, mode='val'),
        'model': {'type': 'ProtocolProbeNet', 'num_classes': K},
        'optimizer': {'type': 'SGD'},
        'lr_scheduler': {'type': 'PolynomialDecay', 'learning_rate': 0.01},
        'loss': {'types': [{'type': 'CrossEntropyLoss'}], 'coef': [1]},
    }
    entries = []
    for i, (source, ev, published) in enumerate(rows):
        name = 'configs/probe{}.yml'.format(i)
        (tmp_path / name).write_text(yaml.safe_dump(config))
        entries.append({
            'config': name, 'model': 'GCNet', 'source': source,
            'backbone': 'none', 'dataset': 'cityscapes',
            'crop_size': [32, 32], 'iters': 1, 'gpus': None,
            'batch_size_per_gpu': 1, 'weights': 'https://example.com/w.pth',
            'published': dict({'miou': None, 'miou_flip': None,
                               'miou_ms_flip': None}, **published),
            'eval': ev,
        })
    zoo = tmp_path / 'configs' / 'model_zoo.yml'
    zoo.write_text(yaml.safe_dump(entries))
    weights = str(tmp_path / 'probe.pdparams')
    paddle.save(probe().state_dict(), weights)
    return [str(tmp_path / e['config']) for e in entries], str(zoo), weights


SSSEG_ROW = {
    'test_resize': 'fit', 'img_scale': [48, 32], 'mode': 'whole',
    'ms_scales': [0.5, 1.0, 1.5], 'merge': 'logits', 'miou': 'nanmean',
    'tta': {'mode': 'slide', 'slide_crop_size': [30, 20],
            'slide_stride': [11, 11], 'merge': 'probs'},
}
MMSEG_ROW = {
    'test_resize': 'fit', 'img_scale': [49, 25], 'mode': 'slide',
    'slide_crop_size': [21, 21], 'slide_stride': [13, 13], 'slide_pad': True,
    'ms_scales': [0.5, 1.0], 'merge': 'probs', 'miou': 'nanmean',
}
PADDLESEG_ROW = {
    'test_resize': 'none', 'mode': 'whole', 'ms_scales': [0.75, 1.0, 1.25],
    'merge': 'logits', 'miou': 'empty_as_zero',
}


@pytest.fixture(scope='module')
def cli_zoo(tmp_path_factory, data):
    return write_zoo(tmp_path_factory.mktemp('zoo'), data, [
        ('ssseg', SSSEG_ROW, {'miou': 50.0, 'miou_ms_flip': 51.0}),
        ('mmseg', MMSEG_ROW, {'miou': 50.0, 'miou_ms_flip': 51.0}),
        ('paddleseg', PADDLESEG_ROW, {'miou': 50.0, 'miou_flip': 50.5}),
    ])


def cli(args, zoo):
    return val.main([str(a) for a in args] + ['--device', 'cpu'],
                    zoo_file=zoo)


def test_cli_protocol_runs_the_row(cli_zoo, data, capsys):
    (ssseg_cfg, mmseg_cfg, _), zoo, weights = cli_zoo
    model = probe()
    samples = data['samples']

    def expect(protocol, totals):
        preds = engine_preds(model, data, protocol)
        assert_matches(preds, totals)
        return preds

    # ssseg: the single column whole + logits, ms_flip from the tta block.
    single = expect(
        Protocol('ssseg', test_resize='fit', img_scale=(48, 32),
                 miou='nanmean'),
        [ref_ssseg(model, s[2], (1.0, ), False, (48, 32)) for s in samples])
    check(cli(['--config', ssseg_cfg, '--model_path', weights,
               '--protocol', 'single'], zoo), single, data, np.nan)
    ms_flip = expect(
        Protocol('ssseg', scales=(0.5, 1.0, 1.5), flip=True,
                 test_resize='fit', img_scale=(48, 32), mode='slide',
                 slide_crop_size=(30, 20), slide_stride=(11, 11),
                 merge='probs', miou='nanmean'),
        [ref_ssseg(model, s[2], (0.5, 1.0, 1.5), True, (48, 32),
                   slide=((30, 20), (11, 11)), probs=True) for s in samples])
    check(cli(['--config', ssseg_cfg, '--model_path', weights,
               '--protocol', 'ms_flip'], zoo), ms_flip, data, np.nan)
    out = capsys.readouterr().out
    for line in ('[EVAL] Protocol: sssegmentation test;', '[EVAL] #Images: 3 '
                 'mIoU:', '[EVAL] Class IoU:', '[EVAL] Class Precision:',
                 '[EVAL] Class Recall:', 'published ms_flip mIoU 51.00'):
        assert line in out
    # mmseg 769-style slide with padded small windows.
    ms_flip = expect(
        Protocol('mmseg', scales=(0.5, 1.0), flip=True, test_resize='fit',
                 img_scale=(49, 25), mode='slide', slide_crop_size=(21, 21),
                 slide_stride=(13, 13), slide_pad=True, merge='probs',
                 miou='nanmean'),
        [ref_mmseg(model, s[2], (0.5, 1.0), True, (49, 25),
                   ((21, 21), (13, 13)), pad=True) for s in samples])
    check(cli(['--config', mmseg_cfg, '--model_path', weights,
               '--protocol', 'ms_flip'], zoo), ms_flip, data, np.nan)


def test_cli_paddleseg_protocol_is_paddleseg_flags(cli_zoo):
    (_, _, paddleseg_cfg), zoo, weights = cli_zoo
    base = ['--config', paddleseg_cfg, '--model_path', weights]
    by_protocol = cli(base + ['--protocol', 'flip'], zoo)
    by_flags = cli(base + ['--aug_eval', '--flip_horizontal'], zoo)
    np.testing.assert_array_equal(by_protocol[2], by_flags[2])
    assert by_protocol[0] == by_flags[0]


REFUSED = {
    'aug flags': (['--aug_eval', '--scales', '0.5', '1.0',
                   '--flip_horizontal'],
                  '--aug_eval, --scales, --flip_horizontal'),
    'slide flags': (['--is_slide', '--crop_size', '9', '9', '--stride', '5',
                     '5'], '--is_slide, --crop_size, --stride'),
    'vertical flip': (['--flip_vertical'], '--flip_vertical'),
}


@pytest.mark.parametrize('case', REFUSED)
def test_cli_refuses_protocol_with_paddleseg_flags(cli_zoo, capsys, case):
    (config, _, _), zoo, weights = cli_zoo
    extra, named = REFUSED[case]
    with pytest.raises(SystemExit) as info:
        cli(['--config', config, '--model_path', weights, '--protocol',
             'single'] + extra, zoo)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert 'cannot be combined with ' + named in err


def test_cli_refuses_a_column_without_a_number(cli_zoo, capsys):
    (config, _, _), zoo, weights = cli_zoo
    with pytest.raises(SystemExit):
        cli(['--config', config, '--model_path', weights, '--protocol',
             'flip'], zoo)
    err = capsys.readouterr().err
    assert 'published.miou_flip is null' in err
    assert 'choose one of: single, ms_flip' in err


def test_cli_refuses_a_config_without_a_row(cli_zoo, tmp_path, capsys):
    (config, _, _), zoo, weights = cli_zoo
    other = tmp_path / 'other.yml'
    other.write_text(open(config).read())
    with pytest.raises(SystemExit):
        cli(['--config', other, '--model_path', weights, '--protocol',
             'single'], zoo)
    assert 'has no row in' in capsys.readouterr().err
