"""Every model-zoo config against the published recipe and its zoo entry.

``RECIPES`` is written from MODELS_SPEC.md (sections 3.3, 4.3 and 5.2, the
PaddleSeg 2.8 recipes), independently of the config files, and each config is
loaded through PaddleSeg's own ``Config`` (``_base_`` merging included) and
``SegBuilder`` before being compared field by field.
"""
import gc
import os
import re
from typing import NamedTuple

import numpy as np
import paddle
import pytest
import yaml
from paddleseg.cvlibs import Config, SegBuilder, manager
from paddleseg.cvlibs.config import parse_from_yaml

import paddleseg_ctx  # noqa: F401  (registers the Ctx* models)
from paddleseg_ctx.zoo import REPO_ROOT, load_zoo

ENTRIES = load_zoo()
IDS = [os.path.basename(e['config'])[:-len('.yml')] for e in ENTRIES]

# Zoo vocabulary -> what the config must say.
MODEL_TYPES = {'GINet': 'CtxGINet', 'GCNet': 'CtxGCNet', 'ISANet': 'CtxISANet'}
DATASETS = {  # zoo name: (PaddleSeg type, train mode, number of classes)
    'cityscapes': ('Cityscapes', 'train', 19),
    'voc12aug': ('PascalVOC', 'trainaug', 21),
    'ade20k': ('ADE20K', 'train', 150),
}
DEPTHS = {'ResNet50_vd': 50, 'ResNet101_vd': 101}  # both build a ResNet_vd
PRETRAINED = {  # PaddleSeg's ImageNet (SSLD) backbone weights
    'ResNet50_vd':
    'https://bj.bcebos.com/paddleseg/dygraph/resnet50_vd_ssld_v2.tar.gz',
    'ResNet101_vd':
    'https://bj.bcebos.com/paddleseg/dygraph/resnet101_vd_ssld.tar.gz',
}
HEAD_ARGS = {  # model arguments fixed by the published configs
    'CtxGINet': {'backbone_indices': [0, 1, 2, 3], 'jpu': True},
    'CtxISANet': {'backbone_indices': [2, 3], 'isa_channels': 256,
                  'down_factor': [8, 8], 'align_mode': 1},
    'CtxGCNet': {'backbone_indices': [2, 3], 'gc_channels': 512,
                 'ratio': 0.25},
}


def train_transforms(crop):
    """PaddleSeg's augmentation for every row (MODELS_SPEC 3.3)."""
    return [
        {'type': 'ResizeStepScaling', 'min_scale_factor': 0.5,
         'max_scale_factor': 2.0, 'scale_step_size': 0.25},
        {'type': 'RandomPaddingCrop', 'crop_size': crop},
        {'type': 'RandomHorizontalFlip'},
        {'type': 'RandomDistort', 'brightness_range': 0.4,
         'contrast_range': 0.4, 'saturation_range': 0.4},
        {'type': 'Normalize'},
    ]


def padded_val(width, height):
    return [{'type': 'Padding', 'target_size': [width, height]},
            {'type': 'Normalize'}]


WHOLE_VAL = [{'type': 'Normalize'}]


class Recipe(NamedTuple):
    lr: float
    end_lr: float
    weight_decay: float
    align_corners: bool
    crop: list
    val_transforms: list


# Per published row; common to all: momentum 0.9, poly power 0.9,
# cross-entropy on [main, aux] with coef [1, 0.4].
RECIPES = {
    # GINet (MODELS_SPEC 3.3): wd 4e-5, end_lr 0, align_corners True.
    'ginet_resnet50vd_os8_cityscapes_1024x512_80k':
    Recipe(0.01, 0, 4e-5, True, [1024, 512], WHOLE_VAL),
    'ginet_resnet101vd_os8_cityscapes_1024x512_80k':
    Recipe(0.01, 0, 4e-5, True, [1024, 512], WHOLE_VAL),
    'ginet_resnet50vd_os8_voc12aug_512x512_40k':
    Recipe(0.01, 0, 4e-5, True, [512, 512], padded_val(512, 512)),
    'ginet_resnet101vd_os8_voc12aug_512x512_40k':
    Recipe(0.01, 0, 4e-5, True, [512, 512], padded_val(512, 512)),
    'ginet_resnet50vd_os8_ade20k_520x520_150k':
    Recipe(0.005, 0, 4e-5, True, [520, 520], WHOLE_VAL),
    'ginet_resnet101vd_os8_ade20k_520x520_150k':
    Recipe(0.005, 0, 4e-5, True, [520, 520], WHOLE_VAL),
    # ISANet (MODELS_SPEC 4.3): end_lr 0; wd and align_corners per row.
    'isanet_resnet50vd_os8_cityscapes_769x769_80k':
    Recipe(0.01, 0, 1e-5, False, [769, 769], padded_val(2049, 1025)),
    'isanet_resnet101vd_os8_cityscapes_769x769_80k':
    Recipe(0.01, 0, 1e-5, False, [769, 769], padded_val(2049, 1025)),
    'isanet_resnet50vd_os8_voc12aug_512x512_40k':
    Recipe(0.01, 0, 1e-5, True, [512, 512], padded_val(512, 512)),
    'isanet_resnet101vd_os8_voc12aug_512x512_40k':
    Recipe(0.01, 0, 4e-5, True, [512, 512], padded_val(512, 512)),
    # GCNet, PaddleSeg variant (MODELS_SPEC 5.2): end_lr 1e-5, wd 4e-5.
    'gcnet_resnet50vd_os8_cityscapes_1024x512_80k':
    Recipe(0.01, 1e-5, 4e-5, False, [1024, 512], WHOLE_VAL),
    'gcnet_resnet101vd_os8_cityscapes_1024x512_80k':
    Recipe(0.01, 1e-5, 4e-5, False, [1024, 512], WHOLE_VAL),
    'gcnet_resnet50vd_os8_voc12aug_512x512_40k':
    Recipe(0.01, 1e-5, 4e-5, False, [512, 512], padded_val(512, 512)),
    'gcnet_resnet101vd_os8_voc12aug_512x512_40k':
    Recipe(0.01, 1e-5, 4e-5, False, [512, 512], padded_val(512, 512)),
}

# configs/<model>/<model>_<backbone>_os<N>_<dataset>_<W>x<H>_<iters>k.yml
NAME = re.compile(r'configs/(?P<dir>\w+)/'
                  r'(?P<model>[a-z]+)_(?P<backbone>[a-z0-9]+)_os(?P<os>\d+)_'
                  r'(?P<dataset>[a-z0-9]+)_(?P<w>\d+)x(?P<h>\d+)_'
                  r'(?P<iters>\d+)k\.yml$')


def load(entry, opts=None):
    return Config(os.path.join(REPO_ROOT, entry['config']), opts=opts)


def test_every_published_row_has_a_recipe():
    assert sorted(IDS) == sorted(RECIPES)


@pytest.mark.parametrize('entry', ENTRIES, ids=IDS)
def test_config_follows_published_recipe(entry):
    recipe = RECIPES[os.path.basename(entry['config'])[:-len('.yml')]]
    cfg = load(entry)
    assert cfg.dic['optimizer'] == {
        'type': 'SGD', 'momentum': 0.9, 'weight_decay': recipe.weight_decay}
    assert cfg.dic['lr_scheduler'] == {
        'type': 'PolynomialDecay', 'learning_rate': recipe.lr,
        'end_lr': recipe.end_lr, 'power': 0.9}
    # PaddleSeg's Config replicates a single loss type over the coef list.
    assert cfg.dic['loss'] == {'types': [{'type': 'CrossEntropyLoss'}] * 2,
                               'coef': [1, 0.4]}
    assert cfg.dic['train_dataset']['transforms'] == train_transforms(
        recipe.crop)
    assert cfg.dic['val_dataset']['transforms'] == recipe.val_transforms
    model = cfg.dic['model']
    assert model['align_corners'] is recipe.align_corners
    assert model['enable_auxiliary_loss'] is True
    for key, value in HEAD_ARGS[model['type']].items():
        assert model[key] == value, key
    backbone = model['backbone']
    assert backbone['output_stride'] == 8
    assert backbone['pretrained'] == PRETRAINED[backbone['type']]
    assert model['pretrained'] is None


@pytest.mark.parametrize('entry', ENTRIES, ids=IDS)
def test_paddleseg_builds_schedule_loss_and_transforms(entry):
    cfg = load(entry)
    builder = SegBuilder(cfg)
    sched = builder.lr_scheduler
    assert isinstance(sched, paddle.optimizer.lr.PolynomialDecay)
    assert (sched.base_lr, sched.end_lr, sched.power, sched.decay_steps) == (
        cfg.dic['lr_scheduler']['learning_rate'],
        cfg.dic['lr_scheduler']['end_lr'], 0.9, entry['iters'])
    assert [type(t).__name__ for t in builder.loss['types']
            ] == ['CrossEntropyLoss'] * 2
    for split in ('train_dataset', 'val_dataset'):
        for t in cfg.dic[split]['transforms']:
            assert type(builder.build_component(t)).__name__ == t['type']


@pytest.mark.parametrize('entry', ENTRIES, ids=IDS)
def test_zoo_entry_matches_config(entry):
    cfg = load(entry)
    train, val = cfg.dic['train_dataset'], cfg.dic['val_dataset']
    crop = [t for t in train['transforms'] if t['type'] == 'RandomPaddingCrop']
    assert [t['crop_size'] for t in crop] == [entry['crop_size']]
    assert cfg.iters == entry['iters']
    assert cfg.batch_size == entry['batch_size_per_gpu']
    assert cfg.dic['model']['type'] == MODEL_TYPES[entry['model']]
    assert cfg.dic['model']['backbone']['type'] == entry['backbone']
    dataset_type, train_mode, num_classes = DATASETS[entry['dataset']]
    assert (train['type'], train['mode']) == (dataset_type, train_mode)
    assert (val['type'], val['mode']) == (dataset_type, 'val')
    assert SegBuilder(cfg).train_dataset_class.NUM_CLASSES == num_classes


@pytest.mark.parametrize('entry', ENTRIES, ids=IDS)
def test_file_name_matches_content(entry):
    match = NAME.match(entry['config'])
    assert match, '{} does not follow {}'.format(entry['config'],
                                                 NAME.pattern)
    name = match.groupdict()
    cfg = load(entry)
    backbone = cfg.dic['model']['backbone']
    assert name['dir'] == name['model'] == entry['model'].lower()
    assert name['backbone'] == backbone['type'].lower().replace('_', '')
    assert int(name['os']) == backbone['output_stride']
    assert name['dataset'] == entry['dataset']
    crop = [t for t in cfg.dic['train_dataset']['transforms']
            if t['type'] == 'RandomPaddingCrop'][0]['crop_size']
    assert [int(name['w']), int(name['h'])] == crop
    assert int(name['iters']) * 1000 == cfg.iters


def _leaf_keys(dic, prefix=''):
    for key, value in dic.items():
        if isinstance(value, dict):
            yield from _leaf_keys(value, prefix + key + '.')
        else:
            yield prefix + key


@pytest.mark.parametrize('entry', ENTRIES, ids=IDS)
def test_bases_set_disjoint_keys(entry):
    # With several `_base_` files PaddleSeg lets the *first* one win a
    # conflict; keeping them disjoint makes their order irrelevant.
    path = os.path.join(REPO_ROOT, entry['config'])
    with open(path) as f:
        bases = yaml.safe_load(f).get('_base_', [])
    owner = {}
    for base in [bases] if isinstance(bases, str) else bases:
        for key in _leaf_keys(
                parse_from_yaml(os.path.join(os.path.dirname(path), base))):
            assert key not in owner, '{} is set by both {} and {}'.format(
                key, owner[key], base)
            owner[key] = base


@pytest.mark.parametrize('entry', ENTRIES, ids=IDS)
def test_model_builds_from_config(entry):
    model_type = MODEL_TYPES[entry['model']]
    if model_type not in manager.MODELS.components_dict:
        pytest.skip('{} is not registered yet (being implemented)'.format(
            model_type))
    cfg = load(entry, opts=['model.backbone.pretrained=None'])
    num_classes = DATASETS[entry['dataset']][2]
    model = SegBuilder(cfg).model
    try:
        assert type(model).__name__ == model_type
        assert model.backbone.layers == DEPTHS[entry['backbone']]
        assert model.align_corners is cfg.dic['model']['align_corners']
        # Training returns one logit map per loss coefficient.
        model.train()
        with paddle.no_grad():
            logits = model(paddle.to_tensor(
                np.random.RandomState(0).rand(1, 3, 65, 65).astype('float32')))
        assert len(logits) == len(cfg.dic['loss']['coef'])
        assert [tuple(x.shape) for x in logits
                ] == [(1, num_classes, 65, 65)] * 2
    finally:
        del model
        gc.collect()
