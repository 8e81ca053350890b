"""The dataset `_base_` files of the mmsegmentation and sssegmentation recipes
run end to end on tiny generated copies of their datasets' layouts, through
PaddleSeg's ``Config``, ``SegBuilder``, dataset classes and ``Compose``.

Every size in them (resize box, crop, test-time img_scale) is divided by 32
to keep the run fast; the images are a few dozen pixels.
"""
import glob
import os
import random

import numpy as np
import pytest
import yaml
from paddleseg.cvlibs import Config, SegBuilder
from paddleseg.cvlibs.config import parse_from_yaml
from paddleseg.transforms import Compose

import paddleseg_ctx  # noqa: F401  (registers the datasets and transforms)
from dataset_layouts import LAYOUTS
from paddleseg_ctx.zoo import REPO_ROOT

BASES = sorted(
    glob.glob(os.path.join(REPO_ROOT, 'configs', '_base_', 'datasets',
                           'mmseg_*.yml')) +
    glob.glob(os.path.join(REPO_ROOT, 'configs', '_base_', 'datasets',
                           'ssseg_*.yml')))
SIZE_KEYS = ('target_size', 'crop_size', 'img_scale')
SHRINK = 32
SIZES = [(37, 61), (45, 29), (33, 33)]  # (h, w) of the generated images


def _shrunk(transforms):
    return [
        {k: [max(1, round(v / SHRINK)) for v in value] if k in SIZE_KEYS
         else value for k, value in t.items()} for t in transforms
    ]


def _fit(h, w, img_scale, keep_ratio):
    """(h, w) after the test-time resize: mmcv.imrescale / ssseg's Resize
    (scale = min(long / long side, short / short side), int(x * s + 0.5))
    or a squash to img_scale (docs/reference/evaluation.md#test-time-resize)."""
    if not keep_ratio:
        return img_scale[1], img_scale[0]
    scale = min(max(img_scale) / max(h, w), min(img_scale) / min(h, w))
    return int(h * scale + 0.5), int(w * scale + 0.5)


def test_every_new_dataset_base_is_checked():
    names = [os.path.basename(b) for b in BASES]
    assert names == sorted(
        ['mmseg_cityscapes_1024x512.yml', 'mmseg_cityscapes_769x769.yml',
         'mmseg_ade20k_512x512.yml', 'mmseg_voc12aug_512x512.yml',
         'ssseg_ade20k_512x512.yml', 'ssseg_cityscapes_1024x512.yml',
         'ssseg_cocostuff10k_512x512.yml', 'ssseg_lip_473x473.yml'])


@pytest.mark.parametrize('base', BASES, ids=os.path.basename)
def test_dataset_base_runs_on_generated_layout(base, tmp_path):
    dic = parse_from_yaml(base)
    dataset_type = dic['train_dataset']['type']
    root = LAYOUTS[dataset_type](str(tmp_path / 'data'), SIZES)
    for split in ('train_dataset', 'val_dataset'):
        dic[split]['dataset_root'] = root
        dic[split]['transforms'] = _shrunk(dic[split]['transforms'])
    export = _shrunk(dic['export']['transforms'])
    # PaddleSeg's Config wants a whole experiment; its model is not built.
    bases = [os.path.join(REPO_ROOT, 'configs', '_base_', b) for b in (
        'schedules/sgd_poly_wd5e-4.yml', 'models/gcnet_mmseg.yml',
        'backbones/resnet50v1c_os8.yml')]
    path = tmp_path / 'config.yml'
    path.write_text(yaml.safe_dump(dict(dic, _base_=bases, batch_size=1,
                                        iters=1)))
    builder = SegBuilder(Config(str(path)))

    train = builder.train_dataset
    num_classes = train.NUM_CLASSES
    crop_w, crop_h = [t for t in dic['train_dataset']['transforms']
                      if t['type'] == 'CtxRandomCrop'][0]['crop_size']
    np.random.seed(0)
    random.seed(0)
    for _ in range(2):
        for i in range(len(train)):
            sample = train[i]
            assert sample['img'].shape == (3, crop_h, crop_w)
            assert sample['img'].dtype == np.float32
            assert np.isfinite(sample['img']).all()
            assert sample['label'].shape == (crop_h, crop_w)
            values = set(np.unique(sample['label']).tolist())
            assert values <= set(range(num_classes)) | {255}, values

    val = builder.val_dataset
    resize = dic['val_dataset']['transforms'][0]
    assert resize['type'] == 'ResizeByImgScale'
    keep_ratio = resize.get('keep_ratio', True)
    h, w = SIZES[0]
    sample = val[0]
    assert sample['img'].shape == (3, ) + _fit(h, w, resize['img_scale'],
                                               keep_ratio)
    assert sample['label'].shape[-2:] == (h, w)  # labels keep their size
    # deploy.yaml's pipeline (PaddleSeg's own transforms) gives the same size.
    deployed = Compose([builder.build_component(t) for t in export])(
        {'img': val.file_list[0][0]})
    assert deployed['img'].shape == sample['img'].shape
    np.testing.assert_allclose(deployed['img'], sample['img'], atol=0.1)
