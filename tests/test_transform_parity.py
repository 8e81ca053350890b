"""Training-transform parity with the original toolboxes, step by step,
with the transforms as the configs build them.

Ours: the ``train_dataset.transforms`` of our row configs, built by PaddleSeg's
``SegBuilder`` and applied in order to the data dict PaddleSeg's ``Compose``
hands them (RGB float32 image, uint8 label with 255 ignored).  The originals:

* mmsegmentation 1.2.2: the ``train_pipeline`` of its published GCNet config
  (``RandomResize`` with ``ratio_range``, ``RandomCrop`` with
  ``cat_max_ratio``, ``RandomFlip``, ``PhotoMetricDistortion``) built by its
  registry, then ``PackSegInputs`` and the config's ``SegDataPreProcessor``,
  which normalises and pads (1.x's place for 0.x's ``Normalize`` + ``Pad``;
  ours: ``Normalize`` then ``Padding``);
* sssegmentation 1.7.0: its transforms built by its ``BuildDataTransform``
  from the ``data_pipelines`` of ``ssseg/configs/_base_/datasets/
  {ade20k_512x512,lip_473x473}.py`` (copied below: the package ships no
  configs).  It marks ignored pixels -100 where ours use 255, and its image
  is cv2's BGR.  Its ``EdgeExtractor`` (LIP) only adds an edge map that ISNet
  does not use, so it is left out.  (Since 2021-09-15 its ``RandomCrop``
  returns the sample uncropped when every crop it tried is all ignored; the
  code that trained ISNet did not, and the labels here never are.)

Both sides start from the loaded sample: the same image and label (ADE20K's
label already reduced, as our ``ADE20K`` data set reads it and mmseg's
``LoadAnnotations(reduce_zero_label=True)`` loads it; the loading steps are
not under test here).

Random draws: numpy's global RNG is seeded the same before each step on both
sides; both draw from it in the same order.  The flips draw elsewhere
(PaddleSeg: Python's ``random``; mmcv: ``np.random.choice``; sssegmentation:
``np.random.rand``), so each side's flip draw is patched to the same decision,
both decisions over the seeds.

Every step must give the original's pixels exactly (the same cv2 calls on
uint8 images) and its labels exactly, except after normalisation: PaddleSeg's
``Normalize`` computes ``(x / 255 - mean) / std`` and the originals
``(x - 255 mean) / (255 std)``, in float32, so those images agree within 1e-5
(measured 5e-7; a grey level is 0.017).
"""
import os
import random

import numpy as np
import pytest
from paddleseg.cvlibs import Config, SegBuilder

import paddleseg_ctx  # noqa: F401  (registers the transforms)
from paddleseg_ctx.zoo import REPO_ROOT
from reference_imports import import_mmseg, import_ssseg

NORMALIZED_ATOL = 1e-5
SEEDS = tuple(range(6))
# (height, width) of the input images: wide (every crop needs padding except
# with LIP's squashing resize), near square, portrait.
SHAPES = ((60, 600), (150, 200), (300, 160))

MMSEG = {
    'Cityscapes': ('configs/gcnet/gcnet_resnet50v1c_os8_cityscapes_1024x512_40k.yml',
                   'gcnet_r50-d8_4xb2-40k_cityscapes-512x1024.py', 19),
    'ADE20K': ('configs/gcnet/gcnet_resnet50v1c_os8_ade20k_512x512_80k.yml',
               'gcnet_r50-d8_4xb4-80k_ade20k-512x512.py', 150),
}
# sssegmentation's ssseg/configs/_base_/datasets/{ade20k_512x512,
# lip_473x473}.py, train data_pipelines, one list per step of ours.
SSSEG_NORMALIZE = ('Normalize', {'mean': [123.675, 116.28, 103.53],
                                 'std': [58.395, 57.12, 57.375]})
SSSEG = {
    'ADE20K': ('configs/isnet/isnet_resnet50v1c_os8_ade20k_512x512_164190.yml',
               150, [
                   [('Resize', {'output_size': (2048, 512), 'keep_ratio': True,
                                'scale_range': (0.5, 2.0)})],
                   [('RandomCrop', {'crop_size': (512, 512),
                                    'one_category_max_ratio': 0.75})],
                   [('RandomFlip', {'prob': 0.5})],
                   [('PhotoMetricDistortion', {})],
                   [SSSEG_NORMALIZE],
                   [('ToTensor', {}),
                    ('Padding', {'output_size': (512, 512),
                                 'data_type': 'tensor'})],
               ]),
    'LIP': ('configs/isnet/isnet_resnet50v1c_os8_lip_473x473_142800.yml', 20, [
        [('Resize', {'output_size': (520, 520), 'keep_ratio': False,
                     'scale_range': (0.75, 1.25)})],
        [('RandomCrop', {'crop_size': (473, 473),
                         'one_category_max_ratio': 0.75})],
        [('RandomFlip', {'prob': 0.5,
                         'fixed_seg_target_pairs': [(15, 14), (17, 16),
                                                    (19, 18)]})],
        [('RandomRotation', {'angle_upper': 30, 'prob': 0.6})],
        [('PhotoMetricDistortion', {})],
        [SSSEG_NORMALIZE],
        [('ToTensor', {}),
         ('Padding', {'output_size': (473, 473), 'data_type': 'tensor'})],
    ]),
}


def sample(seed, num_classes):
    """A BGR uint8 image and a label of class blocks with a band of ignored
    (255) pixels.  Seeds 1 and 4: one class covers nearly everything, so
    every crop fails ``cat_max_ratio`` and the fallbacks differ (mmseg
    keeps an 11th draw, sssegmentation the 10th)."""
    rng = np.random.RandomState(seed)
    h, w = SHAPES[seed % len(SHAPES)]
    bgr = rng.randint(0, 256, (h, w, 3)).astype(np.uint8)
    blocks = rng.randint(0, num_classes, (4, 4))
    blocks[:, :2] = blocks[0, 0]  # one class on half the image
    label = np.kron(blocks, np.ones((h // 4 + 1, w // 4 + 1), np.uint8))
    label = label[:h, :w].astype(np.uint8)
    if seed % 3 == 1:
        label[:] = blocks[0, 0]
        label[h // 2:h // 2 + 3, w // 2:w // 2 + 3] = (blocks[0, 0] + 1) % num_classes
    label[:h // 10] = 255
    return bgr, label


def our_transforms(config):
    cfg = Config(os.path.join(REPO_ROOT, config))
    builder = SegBuilder(cfg)
    return [(t['type'], builder.build_component(t))
            for t in cfg.dic['train_dataset']['transforms']]


def patched_flip(monkeypatch, flip):
    """Every side's flip draw gives ``flip``."""
    monkeypatch.setattr(random, 'random', lambda: 0.0 if flip else 0.999)
    monkeypatch.setattr(np.random, 'choice',
                        lambda *a, **k: 'horizontal' if flip else None)
    monkeypatch.setattr(np.random, 'rand', lambda *a: 0.0 if flip else 1.0)


def assert_image(ours, expected_rgb, what, normalized):
    assert ours.shape == expected_rgb.shape, what
    if normalized:
        np.testing.assert_allclose(ours, expected_rgb, rtol=0,
                                   atol=NORMALIZED_ATOL, err_msg=what)
    else:
        assert ours.dtype == np.float32, what
        np.testing.assert_array_equal(ours, expected_rgb, err_msg=what)


@pytest.mark.parametrize('name', sorted(MMSEG))
@pytest.mark.parametrize('seed', SEEDS)
def test_training_transforms_match_mmsegmentation(monkeypatch, name, seed):
    mmseg = import_mmseg()
    from mmengine.config import Config as MMConfig
    from mmseg.registry import MODELS, TRANSFORMS
    config, mmseg_config, num_classes = MMSEG[name]
    published = MMConfig.fromfile(os.path.join(
        os.path.dirname(mmseg.__file__), '.mim', 'configs', 'gcnet',
        mmseg_config))
    pipeline = [TRANSFORMS.build(t) for t in published.train_pipeline
                if not t['type'].startswith('Load')]
    assert [type(t).__name__ for t in pipeline] == [
        'RandomResize', 'RandomCrop', 'RandomFlip', 'PhotoMetricDistortion',
        'PackSegInputs']
    preprocessor = MODELS.build(published.model.data_preprocessor)
    ours = our_transforms(config)
    assert [kind for kind, _ in ours] == [
        'CtxRandomResize', 'CtxRandomCrop', 'RandomHorizontalFlip',
        'CtxPhotoMetricDistortion', 'Normalize', 'Padding']

    bgr, label = sample(seed, num_classes)
    data = {'img': bgr[..., ::-1].astype(np.float32), 'label': label.copy(),
            'gt_fields': ['label'], 'trans_info': []}
    results = {'img': bgr.copy(), 'gt_seg_map': label.copy(),
               'seg_fields': ['gt_seg_map'], 'img_shape': bgr.shape[:2],
               'ori_shape': bgr.shape[:2]}
    flip = seed % 2 == 0
    for step, reference in enumerate(pipeline[:4]):
        kind, transform = ours[step]
        with monkeypatch.context() as patch:
            if kind == 'RandomHorizontalFlip':
                patched_flip(patch, flip)
            np.random.seed(100 * seed + step)
            data = transform(data)
            np.random.seed(100 * seed + step)
            results = reference.transform(results)
        what = '{} {} (seed {})'.format(name, kind, seed)
        assert_image(data['img'], results['img'][..., ::-1].astype(np.float32),
                     what, normalized=False)
        np.testing.assert_array_equal(data['label'], results['gt_seg_map'],
                                      err_msg=what)
    # Normalize + Padding (ours) against PackSegInputs + SegDataPreProcessor.
    for _, transform in ours[4:]:
        data = transform(data)
    packed = pipeline[4].transform(results)
    batch = preprocessor({'inputs': [packed['inputs']],
                          'data_samples': [packed['data_samples']]},
                         training=True)
    expected = batch['inputs'][0].numpy().transpose(1, 2, 0)
    what = '{} Normalize + Padding (seed {})'.format(name, seed)
    assert_image(data['img'], expected, what, normalized=True)
    np.testing.assert_array_equal(
        data['label'],
        batch['data_samples'][0].gt_sem_seg.data[0].numpy(), err_msg=what)
    assert data['img'].shape[:2] == tuple(published.crop_size)


@pytest.mark.parametrize('name', sorted(SSSEG))
@pytest.mark.parametrize('seed', SEEDS)
def test_training_transforms_match_sssegmentation(monkeypatch, name, seed):
    import_ssseg()
    from ssseg.modules.datasets.pipelines.transforms import BuildDataTransform
    config, num_classes, steps = SSSEG[name]
    pipeline = [[BuildDataTransform(dict(cfg, type=kind)) for kind, cfg in step]
                for step in steps]
    ours = our_transforms(config)
    assert len(ours) == len(pipeline)

    bgr, label = sample(seed, num_classes)
    data = {'img': bgr[..., ::-1].astype(np.float32), 'label': label.copy(),
            'gt_fields': ['label'], 'trans_info': []}
    sample_meta = {'image': bgr.copy(), 'seg_target': np.where(
        label == 255, -100, label).astype(np.float32)}
    flip = seed % 2 == 0
    normalized = False
    for step, (references, (kind, transform)) in enumerate(zip(pipeline,
                                                               ours)):
        with monkeypatch.context() as patch:
            if 'Flip' in kind:
                patched_flip(patch, flip)
            np.random.seed(100 * seed + step)
            data = transform(data)
            np.random.seed(100 * seed + step)
            for reference in references:
                sample_meta = reference(sample_meta)
        image = sample_meta['image']
        if kind == 'Normalize':
            normalized = True  # and sssegmentation's image is RGB from here
        elif not normalized:
            image = image[..., ::-1].astype(np.float32)  # BGR uint8
        else:
            image = image.numpy().transpose(1, 2, 0)  # ToTensor: CHW
        what = '{} {} (seed {})'.format(name, kind, seed)
        assert_image(data['img'], image, what, normalized=normalized)
        target = np.asarray(sample_meta['seg_target'])
        np.testing.assert_array_equal(
            data['label'], np.where(target == -100, 255, target), err_msg=what)
    assert ours[-1][0] == 'CtxCenterPadding'
