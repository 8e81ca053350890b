"""Every model-zoo config against the recipe it follows and its zoo entry.

The recipe of each config is built here from the published tables
(``tests/published.py``: PaddleSeg's and sssegmentation's, typed once in
tests/data/published_recipes.yml from docs/reference/README.md sections 3.3, 4.3, 5.2
and 6.3-6.5, and mmsegmentation's own GCNet metafile; the pipelines below
from sections 3.3, 5.1 and 6.4), independently of the config files and the
zoo file: each config, loaded through PaddleSeg's own ``Config`` (``_base_``
merging included), must equal its recipe key for key, and ``SegBuilder``
must build the schedule, optimizer, loss, transforms, datasets and model it
describes.

Models: every config's model is built under ``paddle.LazyGuard`` (no weight
initialisation, which is what costs time for the 101-layer backbones); one
config per distinct architecture is built for real and run forward.
"""
import gc
import os
import re

import numpy as np
import paddle
import pytest
import yaml
from paddleseg.cvlibs import Config, SegBuilder
from paddleseg.cvlibs.config import parse_from_yaml

import paddleseg_ctx  # noqa: F401  (registers the Ctx* components)
import published
from paddleseg_ctx.testing.families import FAMILIES
from paddleseg_ctx.zoo import REPO_ROOT, is_published, load_zoo

ENTRIES = load_zoo(include_unpublished=True)


def _stem(entry):
    return os.path.basename(entry['config'])[:-len('.yml')]


IDS = [_stem(e) for e in ENTRIES]

# ---------------------------------------------------------------- transforms
IMAGENET = {'mean': [0.485, 0.456, 0.406], 'std': [0.229, 0.224, 0.225]}
IMAGENET_NORMALIZE = dict(type='Normalize', **IMAGENET)


def paddleseg_train(crop):
    """PaddleSeg's augmentation of every PaddleSeg row
    (docs/reference/recipes.md#paddleseg-pipeline)."""
    return [
        {'type': 'ResizeStepScaling', 'min_scale_factor': 0.5,
         'max_scale_factor': 2.0, 'scale_step_size': 0.25},
        {'type': 'RandomPaddingCrop', 'crop_size': crop},
        {'type': 'RandomHorizontalFlip'},
        {'type': 'RandomDistort', 'brightness_range': 0.4,
         'contrast_range': 0.4, 'saturation_range': 0.4},
        {'type': 'Normalize'},
    ]


def paddleseg_padded_val(width, height):
    return [{'type': 'Padding', 'target_size': [width, height]},
            {'type': 'Normalize'}]


PADDLESEG_WHOLE_VAL = [{'type': 'Normalize'}]


def mmseg_train(img_scale, crop):
    """mmseg 0.x: Resize(img_scale, ratio_range=(0.5, 2.0)), RandomCrop(crop,
    cat_max_ratio=0.75), RandomFlip(0.5), PhotoMetricDistortion, Normalize
    (ImageNet, RGB), Pad(crop, pad_val=0, seg_pad_val=255)
    (docs/reference/recipes.md#mmseg-pipeline)."""
    return [
        {'type': 'CtxRandomResize', 'target_size': img_scale,
         'ratio_range': [0.5, 2.0]},
        {'type': 'CtxRandomCrop', 'crop_size': crop, 'cat_max_ratio': 0.75},
        {'type': 'RandomHorizontalFlip', 'prob': 0.5},
        {'type': 'CtxPhotoMetricDistortion'},
        IMAGENET_NORMALIZE,
        {'type': 'Padding', 'target_size': crop, 'im_padding_value': 0,
         'label_padding_value': 255},
    ]


def ssseg_train(img_scale, crop):
    """sssegmentation (docs/reference/recipes.md#ssseg-pipeline): the same steps with its crop
    fallback (the 10th try), its BGR-image HSV quirk and centred padding."""
    return [
        {'type': 'CtxRandomResize', 'target_size': img_scale,
         'ratio_range': [0.5, 2.0]},
        {'type': 'CtxRandomCrop', 'crop_size': crop, 'cat_max_ratio': 0.75,
         'fallback': 'last'},
        {'type': 'RandomHorizontalFlip', 'prob': 0.5},
        {'type': 'CtxPhotoMetricDistortion', 'hsv_order': 'BGR'},
        IMAGENET_NORMALIZE,
        {'type': 'CtxCenterPadding', 'target_size': crop},
    ]


SSSEG_LIP_TRAIN = [  # docs/reference/recipes.md#ssseg-pipeline, LIP row
    {'type': 'CtxRandomResize', 'target_size': [520, 520],
     'ratio_range': [0.75, 1.25], 'keep_ratio': False},
    {'type': 'CtxRandomCrop', 'crop_size': [473, 473], 'cat_max_ratio': 0.75,
     'fallback': 'last'},
    {'type': 'CtxRandomHorizontalFlip', 'prob': 0.5,
     'label_pairs': [[14, 15], [16, 17], [18, 19]]},
    {'type': 'CtxRandomRotation', 'prob': 0.6, 'max_angle': 30},
    {'type': 'CtxPhotoMetricDistortion', 'hsv_order': 'BGR'},
    IMAGENET_NORMALIZE,
    {'type': 'CtxCenterPadding', 'target_size': [473, 473]},
]


def resized_val(img_scale, keep_ratio=True):
    """The test-time resize of mmseg / ssseg on the uint8 image, then
    Normalize (docs/reference/evaluation.md#test-time-resize)."""
    resize = {'type': 'ResizeByImgScale', 'img_scale': img_scale}
    if not keep_ratio:
        resize['keep_ratio'] = False
    return [resize, IMAGENET_NORMALIZE]


def deploy(img_scale, keep_ratio=True):
    """deploy.yaml: the same resize with PaddleSeg's own ``Resize``."""
    return {'transforms': [{'type': 'Resize', 'target_size': img_scale,
                            'keep_ratio': keep_ratio}, IMAGENET_NORMALIZE]}


# ------------------------------------------------------------------ datasets
DATASETS = {  # zoo name: (type, dataset_root, train mode, number of classes)
    'cityscapes': ('Cityscapes', 'data/cityscapes', 'train', 19),
    'voc12aug': ('PascalVOC', 'data/VOCdevkit/', 'trainaug', 21),
    'ade20k': ('ADE20K', 'data/ADEChallengeData2016/', 'train', 150),
    'cocostuff10k': ('CocoStuff10k', 'data/cocostuff-10k', 'train', 182),
    'lip': ('LIP', 'data/LIP', 'train', 20),
}


def datasets(name, train_transforms, val_transforms):
    dataset_type, root, train_mode, _ = DATASETS[name]
    return {
        'train_dataset': {'type': dataset_type, 'dataset_root': root,
                          'mode': train_mode, 'transforms': train_transforms},
        'val_dataset': {'type': dataset_type, 'dataset_root': root,
                        'mode': 'val', 'transforms': val_transforms},
    }


# ----------------------------------------------------------------- backbones
PRETRAINED = {  # ImageNet weights of each backbone
    'ResNet50_vd':
    'https://bj.bcebos.com/paddleseg/dygraph/resnet50_vd_ssld_v2.tar.gz',
    'ResNet101_vd':
    'https://bj.bcebos.com/paddleseg/dygraph/resnet101_vd_ssld.tar.gz',
    # OpenMMLab's files behind open-mmlab://resnet{50,101}_v1c and resnest101
    # (docs/reference/backbones.md#imagenet-weights; sssegmentation downloads the same ones).
    'ResNet50_v1c': 'https://download.openmmlab.com/pretrain/third_party/'
                    'resnet50_v1c-2cccc1ad.pth',
    'ResNet101_v1c': 'https://download.openmmlab.com/pretrain/third_party/'
                     'resnet101_v1c-e67eebb6.pth',
    'ResNeSt101': 'https://download.openmmlab.com/pretrain/third_party/'
                  'resnest101_d2-f3b931b2.pth',
}
DEPTHS = {'ResNet50_vd': 50, 'ResNet101_vd': 101, 'ResNet50_v1c': 50,
          'ResNet101_v1c': 101, 'ResNeSt101': 101}
BACKBONE_CLASSES = {'ResNet50_vd': 'ResNet_vd', 'ResNet101_vd': 'ResNet_vd',
                    'ResNet50_v1c': 'ResNetV1c', 'ResNet101_v1c': 'ResNetV1c',
                    'ResNeSt101': 'ResNeSt'}


def backbone(name):
    cfg = {'type': name, 'output_stride': 8, 'pretrained': PRETRAINED[name]}
    if not name.endswith('_vd'):  # mmseg D8 / ssseg: contract_dilation=True
        cfg['contract_dilation'] = True
    return cfg


# -------------------------------------------------------------------- models
def ginet(bb):
    return {'type': 'CtxGINet', 'backbone': backbone(bb),
            'backbone_indices': [0, 1, 2, 3], 'enable_auxiliary_loss': True,
            'jpu': True, 'align_corners': True, 'pretrained': None}


def isanet(bb, align_corners):
    return {'type': 'CtxISANet', 'backbone': backbone(bb),
            'backbone_indices': [2, 3], 'isa_channels': 256,
            'down_factor': [8, 8], 'enable_auxiliary_loss': True,
            'align_corners': align_corners, 'align_mode': 1,
            'pretrained': None}


def gcnet(bb):
    return {'type': 'CtxGCNet', 'backbone': backbone(bb),
            'backbone_indices': [2, 3], 'gc_channels': 512, 'ratio': 0.25,
            'enable_auxiliary_loss': True, 'align_corners': False,
            'pretrained': None}


def gcnet_mmseg(bb, align_corners):
    """docs/reference/models.md#gcnet-mmseg-form: bias-free head convs, Dropout2d, mmseg init."""
    return dict(gcnet(bb), head_conv_bias=False, channel_dropout=True,
                head_init='mmseg', align_corners=align_corners)


def isnet(bb, lip=False):
    """docs/reference/models.md#isnet: 512/256 channels, dropout 0.1, aux; LIP: 48-channel
    C1 shortcut and LeakyReLU in the head."""
    return {'type': 'CtxISNet', 'backbone': backbone(bb),
            'backbone_indices': [0, 1, 2, 3], 'feats_channels': 512,
            'transform_channels': 256,
            'shortcut_channels': 48 if lip else 0,
            'act': 'leakyrelu' if lip else 'relu', 'dropout': 0.1,
            'enable_auxiliary_loss': True, 'align_corners': False,
            'pretrained': None}


def cross_entropy(coef, **options):
    """PaddleSeg's Config repeats a single loss type over the coef list."""
    return {'types': [dict(type='CrossEntropyLoss', **options)] * len(coef),
            'coef': coef}


def recipe(model, loss, data, batch_size, iters, lr, end_lr, weight_decay,
           export=None):
    dic = dict(data, model=model, loss=loss, batch_size=batch_size,
               iters=iters,
               optimizer={'type': 'SGD', 'momentum': 0.9,
                          'weight_decay': weight_decay},
               lr_scheduler={'type': 'PolynomialDecay', 'learning_rate': lr,
                             'end_lr': end_lr, 'power': 0.9})
    if export is not None:
        dic['export'] = export
    return dic


# ------------------------------------------------------------------- recipes
# The numbers of each row come from the published tables (tests/published.py:
# tests/data/published_recipes.yml and mmsegmentation's metafile), never from
# the zoo file or the configs under test.
MODEL_BUILDERS = {'GINet': ginet, 'ISANet': isanet, 'GCNet': gcnet,
                  'ISNet': isnet}


def paddleseg_row(row):
    """docs/reference/recipes.md#paddleseg: PaddleSeg's augmentation,
    whole-image or padded val, CE with aux (ISNet: stage 1 and aux)."""
    options = {}
    if 'align_corners' in row:  # ISANet: per row
        options['align_corners'] = row['align_corners']
    model = MODEL_BUILDERS[row['model']](row['backbone'], **options)
    val = (paddleseg_padded_val(*row['val_padding']) if row['val_padding']
           else PADDLESEG_WHOLE_VAL)
    data = datasets(row['dataset'], paddleseg_train(row['crop']), val)
    return recipe(model, cross_entropy([1, 0.4, 0.4] if row['model'] ==
                                       'ISNet' else [1, 0.4]),
                  data, row['batch_size'], row['iters'], row['lr'],
                  row['end_lr'], row['weight_decay'])


def mmseg_gcnet_row(row):
    """SGD 0.9, wd 5e-4, poly 0.9 from 0.01 to 1e-4, CE over all pixels,
    aux 0.4, 4 GPUs x 2 (Cityscapes) / x 4; align_corners True at 769."""
    table = published.TABLES['mmseg_gcnet']
    crop = row['crop_size']
    img_scale = table['img_scale']['{}_{}x{}'.format(row['dataset'], *crop)]
    return recipe(
        gcnet_mmseg(row['backbone'], align_corners=crop == [769, 769]),
        cross_entropy([1, 0.4], avg_non_ignore=False),
        datasets(row['dataset'], mmseg_train(img_scale, crop),
                 resized_val(img_scale)),
        row['batch_size_per_gpu'], row['iters'], table['lr'],
        table['end_lr'], table['weight_decay'], deploy(img_scale))


def ssseg_isnet_row(bb, row):
    """docs/reference/recipes.md#ssseg-isnet: per row; the total batch over 4 GPUs."""
    lip = row['dataset'] == 'lip'
    train = SSSEG_LIP_TRAIN if lip else ssseg_train(row['img_scale'],
                                                    row['crop'])
    return recipe(
        isnet(bb, lip=lip), cross_entropy([1, 0.4, 0.4]),
        datasets(row['dataset'], train,
                 resized_val(row['img_scale'], row['keep_ratio'])),
        row['batch'] // 4, row['iters'], row['lr'], row['min_lr'],
        row['weight_decay'], deploy(row['img_scale'], row['keep_ratio']))


PADDLESEG_ROWS = published.paddleseg_rows()
SSSEG_ROWS = published.ssseg_rows()
METAFILE = published.mmseg_metafile()
MMSEG_ROWS = published.mmseg_rows(METAFILE) if METAFILE else None


def published_row(entry):
    """The row of ``entry``'s source table: by model, backbone and data set
    (PaddleSeg), by backbone and data set (sssegmentation), and for mmseg
    also by crop and iterations (its table has several schedules)."""
    e = entry
    if e['source'] == 'paddleseg':
        return PADDLESEG_ROWS[e['model'], e['backbone'], e['dataset']]
    if e['source'] == 'ssseg':
        return SSSEG_ROWS[e['dataset'], published.SSSEG_BACKBONES[
            e['backbone']]]
    if MMSEG_ROWS is None:
        pytest.skip('mmsegmentation (its GCNet metafile) is not installed')
    rows = [r for r in MMSEG_ROWS
            if (r['backbone'], r['dataset'], r['crop_size'], r['iters']) ==
            (e['backbone'], e['dataset'], e['crop_size'], e['iters'])]
    assert len(rows) == 1, '{}: {} rows of mmseg\'s metafile'.format(
        e['config'], len(rows))
    return rows[0]


def expected_recipe(entry):
    row = published_row(entry)
    if entry['source'] == 'paddleseg':
        return paddleseg_row(row)
    if entry['source'] == 'ssseg':
        return ssseg_isnet_row(entry['backbone'], row)
    return mmseg_gcnet_row(row)


MODEL_TYPES = {f.family: f.type for f in FAMILIES.values()}  # zoo -> ours
CROP_TRANSFORMS = ('RandomPaddingCrop', 'CtxRandomCrop')

# configs/<model>/<model>_<backbone>_os<N>_<dataset>_<W>x<H>_<iters>.yml,
# iters as <thousands>k when a multiple of 1000.
NAME = re.compile(r'configs/(?P<dir>\w+)/'
                  r'(?P<model>[a-z]+)_(?P<backbone>[a-z0-9]+)_os(?P<os>\d+)_'
                  r'(?P<dataset>[a-z0-9]+)_(?P<w>\d+)x(?P<h>\d+)_'
                  r'(?P<iters>\d+k?)\.yml$')


def load(entry, opts=None):
    return Config(os.path.join(REPO_ROOT, entry['config']), opts=opts)


def _crop_size(cfg):
    crops = [t['crop_size'] for t in cfg.dic['train_dataset']['transforms']
             if t['type'] in CROP_TRANSFORMS]
    assert len(crops) == 1, crops
    return crops[0]


def test_every_config_has_a_recipe():
    """Each config follows one row of a published table, and each row has
    one config."""
    rows = {'paddleseg': PADDLESEG_ROWS, 'ssseg': SSSEG_ROWS}
    for source, table in rows.items():
        used = [id(published_row(e)) for e in ENTRIES if e['source'] == source]
        assert sorted(used) == sorted(id(r) for r in table.values()), source
    assert len(PADDLESEG_ROWS) == 14 + 6 and len(SSSEG_ROWS) == 12
    if MMSEG_ROWS is None:
        pytest.skip('mmsegmentation (its GCNet metafile) is not installed')
    used = [id(published_row(e)) for e in ENTRIES if e['source'] == 'mmseg']
    assert sorted(used) == sorted(id(r) for r in MMSEG_ROWS)
    assert len(MMSEG_ROWS) == 16
    assert len(ENTRIES) == 14 + 16 + 12 + 6


@pytest.mark.parametrize('entry', ENTRIES, ids=IDS)
def test_config_is_the_published_recipe(entry):
    expected = expected_recipe(entry)
    actual = load(entry).dic
    assert sorted(actual) == sorted(expected)
    for key in expected:  # one key at a time: readable failures
        assert actual[key] == expected[key], key


@pytest.mark.parametrize('entry', ENTRIES, ids=IDS)
def test_paddleseg_builds_schedule_optimizer_loss_and_transforms(entry):
    cfg = load(entry)
    builder = SegBuilder(cfg)
    sched = builder.lr_scheduler
    assert isinstance(sched, paddle.optimizer.lr.PolynomialDecay)
    assert (sched.base_lr, sched.end_lr, sched.power, sched.decay_steps) == (
        cfg.dic['lr_scheduler']['learning_rate'],
        cfg.dic['lr_scheduler']['end_lr'], 0.9, entry['iters'])
    # The optimizer needs only parameters: skip building the real model.
    builder.__dict__['model'] = paddle.nn.Linear(2, 2)
    optimizer = builder.optimizer
    assert type(optimizer) is paddle.optimizer.Momentum
    assert optimizer._default_dict['momentum'] == 0.9
    assert optimizer._default_dict['regularization_method'] == 'l2_decay'
    assert optimizer._default_dict['regularization_coeff'] == pytest.approx(
        cfg.dic['optimizer']['weight_decay'])
    coef = cfg.dic['loss']['coef']
    assert builder.loss['coef'] == coef
    for loss, loss_cfg in zip(builder.loss['types'],
                              cfg.dic['loss']['types']):
        assert type(loss).__name__ == 'CrossEntropyLoss'
        assert loss.ignore_index == 255
        assert loss.avg_non_ignore is loss_cfg.get('avg_non_ignore', True)
    for split in ('train_dataset', 'val_dataset'):
        for t in cfg.dic[split]['transforms']:
            assert type(builder.build_component(t)).__name__ == t['type']


@pytest.mark.parametrize('entry', ENTRIES, ids=IDS)
def test_zoo_entry_matches_config(entry):
    cfg = load(entry)
    train, val = cfg.dic['train_dataset'], cfg.dic['val_dataset']
    assert _crop_size(cfg) == entry['crop_size']
    assert cfg.iters == entry['iters']
    assert cfg.batch_size == entry['batch_size_per_gpu']
    assert cfg.dic['model']['type'] == MODEL_TYPES[entry['model']]
    assert cfg.dic['model']['backbone']['type'] == entry['backbone']
    dataset_type, _, train_mode, num_classes = DATASETS[entry['dataset']]
    assert (train['type'], train['mode']) == (dataset_type, train_mode)
    assert (val['type'], val['mode']) == (dataset_type, 'val')
    assert SegBuilder(cfg).train_dataset_class.NUM_CLASSES == num_classes
    # The val transforms resize the way the zoo's protocol says (what
    # `val` without --protocol runs is the single-scale procedure).
    resize = [t for t in val['transforms'] if t['type'] == 'ResizeByImgScale']
    test_resize = entry['eval']['test_resize'] if is_published(entry) else (
        'none')
    if test_resize == 'none':
        assert resize == []
    else:
        assert resize == [dict(
            {'type': 'ResizeByImgScale',
             'img_scale': entry['eval']['img_scale']},
            **({} if test_resize == 'fit' else {'keep_ratio': False}))]


@pytest.mark.parametrize('entry', ENTRIES, ids=IDS)
def test_file_name_matches_content(entry):
    match = NAME.match(entry['config'])
    assert match, '{} does not follow {}'.format(entry['config'],
                                                 NAME.pattern)
    name = match.groupdict()
    cfg = load(entry)
    backbone_cfg = cfg.dic['model']['backbone']
    assert name['dir'] == name['model'] == entry['model'].lower()
    assert name['backbone'] == backbone_cfg['type'].lower().replace('_', '')
    assert int(name['os']) == backbone_cfg['output_stride']
    assert name['dataset'] == entry['dataset']
    assert [int(name['w']), int(name['h'])] == _crop_size(cfg)
    iters = name['iters']
    assert (int(iters[:-1]) * 1000 if iters.endswith('k') else
            int(iters)) == cfg.iters
    assert iters.endswith('k') == (cfg.iters % 1000 == 0)


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


def _depth(backbone_layer):
    """Layers of a bottleneck ResNet: 3 per block + stem and classifier
    (PaddleSeg's ResNet_vd records it as ``layers``)."""
    if hasattr(backbone_layer, 'layers'):
        return backbone_layer.layers
    stages = [backbone_layer.layer1, backbone_layer.layer2,
              backbone_layer.layer3, backbone_layer.layer4]
    return 3 * sum(len(stage) for stage in stages) + 2


def _build(entry, lazy):
    cfg = load(entry, opts=['model.backbone.pretrained=None'])
    if not lazy:
        return cfg, SegBuilder(cfg).model
    with paddle.LazyGuard():
        return cfg, SegBuilder(cfg).model


@pytest.mark.parametrize('entry', ENTRIES, ids=IDS)
def test_model_builds_from_config(entry):
    cfg, model = _build(entry, lazy=True)
    model_cfg = cfg.dic['model']
    assert type(model).__name__ == model_cfg['type']
    assert type(model.backbone).__name__ == BACKBONE_CLASSES[entry['backbone']]
    assert _depth(model.backbone) == DEPTHS[entry['backbone']]
    assert model.num_classes == DATASETS[entry['dataset']][3]
    assert model.align_corners is model_cfg['align_corners']
    if model_cfg['type'] == 'CtxISNet':  # LIP's C1 shortcut
        assert (model.head.shortcut is not None) == (
            model_cfg['shortcut_channels'] > 0)


def _architecture(entry):
    """What decides the computation apart from depth and class count."""
    model_cfg = dict(load(entry).dic['model'])
    model_cfg.pop('align_corners')
    model_cfg['backbone'] = BACKBONE_CLASSES[model_cfg['backbone']['type']]
    return yaml.safe_dump(model_cfg)


ONE_PER_ARCHITECTURE = {}
for _entry in ENTRIES:  # the first config of each (R50 where there is one)
    ONE_PER_ARCHITECTURE.setdefault(_architecture(_entry), _entry)
ONE_PER_ARCHITECTURE = list(ONE_PER_ARCHITECTURE.values())


@pytest.mark.parametrize('entry', ONE_PER_ARCHITECTURE,
                         ids=[_stem(e) for e in ONE_PER_ARCHITECTURE])
def test_model_trains_forward(entry):
    cfg, model = _build(entry, lazy=False)
    num_classes = DATASETS[entry['dataset']][3]
    try:
        # Training returns one logit map per loss coefficient.
        model.train()
        with paddle.no_grad():
            logits = model(paddle.to_tensor(
                np.random.RandomState(0).rand(1, 3, 65, 65).astype('float32')))
        assert len(logits) == len(cfg.dic['loss']['coef'])
        assert [tuple(x.shape) for x in logits] == [
            (1, num_classes, 65, 65)] * len(logits)
    finally:
        del model
        gc.collect()


def test_one_forward_per_architecture():
    assert len(ONE_PER_ARCHITECTURE) == 9  # 5 models x backbones, LIP form
