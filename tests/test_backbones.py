"""ResNetV1c and ResNeSt against their PyTorch references.

Each reference (mmsegmentation, sssegmentation) is built as its segmentation
configs build it, given random weights with non-trivial BatchNorm statistics,
and copied into ours through the BatchNorm renames alone: the key sets must
be equal, and all four stage outputs must agree.
"""
import os

import numpy as np
import paddle
import pytest
from paddleseg.cvlibs import manager

import paddleseg_ctx  # noqa: F401  (registers the backbones)
from paddleseg_ctx.backbones import (ResNeSt, ResNeSt50, ResNeSt101,
                                     ResNet18_v1c, ResNet50_v1c,
                                     ResNet101_v1c, ResNetV1c)
from paddleseg_ctx.weights import WeightsError
from model_checks import (PARITY_INPUTS, assert_export_matches,
                          assert_gradients_reach, assert_logits_close,
                          randomize)
from reference_imports import import_mmseg, import_ssseg, import_torch

# Odd sizes down to 1x1 (every stride-2 op then yields 1 pixel).
SMALL_INPUTS = ((1, 3, 1, 1), (1, 3, 3, 5), (1, 3, 9, 7), (1, 3, 17, 31))

BN_RENAMES = {'running_mean': '_mean', 'running_var': '_variance'}


def randomize_torch(module, seed=0):
    """Random weights for a torch module, with non-trivial BN statistics
    (the rules of ``model_checks.randomize``, on torch names)."""
    torch = import_torch()
    rng = np.random.RandomState(seed)
    state = {}
    for name, value in module.state_dict().items():
        shape = tuple(value.shape)
        if name.endswith('num_batches_tracked'):
            state[name] = value
            continue
        if name.endswith('running_var'):
            arr = rng.uniform(0.5, 1.5, shape)
        elif name.endswith('running_mean'):
            arr = rng.normal(0, 0.1, shape)
        elif len(shape) <= 1:
            arr = rng.normal(0, 0.1, shape) + (1.0 if name.endswith(
                'weight') else 0.0)
        else:
            arr = rng.normal(0, 1.0 / np.sqrt(np.prod(shape[1:])), shape)
        state[name] = torch.from_numpy(arr.astype('float32'))
    module.load_state_dict(state)


def paddle_names(torch_state):
    """The torch state dict under Paddle names: BN renames, nothing else."""
    state = {}
    for key, value in torch_state.items():
        prefix, _, leaf = key.rpartition('.')
        if leaf != 'num_batches_tracked':
            state[prefix + '.' + BN_RENAMES.get(leaf, leaf)] = value.numpy()
    return state


def copy_weights(reference, ours):
    """Randomise ``reference`` and load its weights into ``ours``; the two
    parameter trees must be identical up to the BN renames."""
    randomize_torch(reference)
    state = paddle_names(reference.state_dict())
    own = ours.state_dict()
    assert sorted(state) == sorted(own), (
        'only in torch: {}, only in ours: {}'.format(
            sorted(set(state) - set(own))[:5],
            sorted(set(own) - set(state))[:5]))
    for key, value in own.items():
        assert list(value.shape) == list(state[key].shape), key
    ours.set_state_dict(state)


def assert_stages_match(reference, ours, shapes=PARITY_INPUTS):
    """Eval-mode stage outputs within 1e-4 of the largest value."""
    torch = import_torch()
    reference.eval()
    ours.eval()
    for shape in shapes:
        x = np.random.RandomState(1).uniform(-1, 1, shape).astype('float32')
        with torch.no_grad():
            expected = [t.numpy() for t in reference(torch.from_numpy(x))]
        with paddle.no_grad():
            actual = [t.numpy() for t in ours(paddle.to_tensor(x))]
        assert len(expected) == len(actual) == 4
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_logits_close(a, e, rtol=1e-4,
                                what='stage {} of {}'.format(i + 1, shape))


def mmseg_backbone(config, **overrides):
    """The backbone of an mmsegmentation config, with plain BN (CPU)."""
    mmseg = import_mmseg()
    from mmengine.config import Config
    from mmseg.registry import MODELS
    path = os.path.join(os.path.dirname(mmseg.__file__), '.mim', 'configs',
                        config)
    cfg = Config.fromfile(path).model.backbone
    cfg.update(norm_cfg=dict(type='BN', requires_grad=True), **overrides)
    return MODELS.build(cfg)


def ssseg_backbone(cfg):
    """An sssegmentation backbone from an ISNet config's ``backbone`` dict;
    the segmentor adds its ``norm_cfg`` (SyncBatchNorm; BatchNorm2d here)."""
    import_ssseg()
    from ssseg.modules.models.backbones import BuildBackbone
    return BuildBackbone(dict(cfg, pretrained=False,
                              norm_cfg={'type': 'BatchNorm2d'}))


GCNET_R101 = 'gcnet/gcnet_r101-d8_4xb2-40k_cityscapes-512x1024.py'
RESNEST_S101 = 'resnest/resnest_s101-d8_fcn_4xb4-160k_ade20k-512x512.py'


@pytest.mark.parametrize('depth, factory', [(50, ResNet50_v1c),
                                            (101, ResNet101_v1c)])
def test_resnet_v1c_matches_mmseg_gcnet_backbone(depth, factory):
    reference = mmseg_backbone(GCNET_R101, depth=depth)
    ours = factory()
    copy_weights(reference, ours)
    assert_stages_match(reference, ours)


def test_resnet_v1c_matches_ssseg_conv3x3stem():
    # configs/isnet/isnet_resnet50os8_*.py
    reference = ssseg_backbone({
        'type': 'ResNet', 'depth': 50, 'structure_type': 'resnet50conv3x3stem',
        'outstride': 8, 'use_conv3x3_stem': True,
        'selected_indices': (0, 1, 2, 3)})
    ours = ResNet50_v1c()
    copy_weights(reference, ours)
    assert_stages_match(reference, ours)


def test_resnest101_matches_ssseg_isnet_backbone():
    # configs/isnet/isnet_resnest101os8_*.py (everything else: defaults)
    reference = ssseg_backbone({
        'type': 'ResNeSt', 'depth': 101, 'structure_type': 'resnest101',
        'outstride': 8, 'selected_indices': (0, 1, 2, 3)})
    ours = ResNeSt101()
    copy_weights(reference, ours)
    assert_stages_match(reference, ours)


@pytest.mark.parametrize('output_stride, strides, dilations', [
    (8, (1, 2, 1, 1), (1, 1, 2, 4)),
    (16, (1, 2, 2, 1), (1, 1, 1, 2)),
    (32, (1, 2, 2, 2), (1, 1, 1, 1)),
])
def test_basic_block_v1c_on_small_odd_sizes(output_stride, strides,
                                            dilations):
    reference = mmseg_backbone(GCNET_R101, depth=18, strides=strides,
                               dilations=dilations)
    ours = ResNet18_v1c(output_stride=output_stride)
    copy_weights(reference, ours)
    assert_stages_match(reference, ours, SMALL_INPUTS)


@pytest.mark.parametrize('radix, cardinality', [(2, 1), (2, 2), (1, 1)])
def test_resnest_matches_mmseg_on_small_odd_sizes(radix, cardinality):
    # mmsegmentation's S-101-D8 backbone at depth 50: mmseg's and ssseg's
    # ResNeSt share one layout and one computation.  Cardinality 2 checks
    # the grouped widths and the r-softmax channel order; radix 1 the
    # sigmoid gate.
    reference = mmseg_backbone(RESNEST_S101, depth=50, radix=radix,
                               groups=cardinality)
    ours = ResNeSt(50, radix=radix, cardinality=cardinality)
    copy_weights(reference, ours)
    assert_stages_match(reference, ours, SMALL_INPUTS)


@pytest.mark.parametrize('factory', [ResNet18_v1c, ResNeSt50])
def test_train_mode_backward_reaches_every_parameter(factory):
    backbone = factory()
    backbone.train()
    x = paddle.uniform([2, 3, 33, 33], min=-1, max=1)
    sum(feat.mean() for feat in backbone(x)).backward()
    assert_gradients_reach(backbone)


class LastStage(paddle.nn.Layer):
    """The deepest stage as a one-element list (the export helpers' form)."""

    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone

    def forward(self, x):
        return [self.backbone(x)[-1]]


@pytest.mark.parametrize('factory', [ResNet50_v1c, ResNeSt50])
def test_export_matches_dygraph(factory, tmp_path):
    model = LastStage(factory())
    randomize(model)
    assert_export_matches(model, tmp_path, PARITY_INPUTS, onnx=True)


def test_factories_are_registered():
    for factory in (ResNet18_v1c, ResNet50_v1c, ResNet101_v1c, ResNeSt50,
                    ResNeSt101):
        assert manager.BACKBONES[factory.__name__] is factory


@pytest.mark.parametrize('factory, cls, channels', [
    (ResNet18_v1c, ResNetV1c, [64, 128, 256, 512]),
    (ResNet50_v1c, ResNetV1c, [256, 512, 1024, 2048]),
    (ResNeSt50, ResNeSt, [256, 512, 1024, 2048]),
])
def test_feat_channels(factory, cls, channels):
    backbone = factory(output_stride=16)
    assert isinstance(backbone, cls)
    assert backbone.feat_channels == channels
    feats = backbone(paddle.zeros([1, 3, 64, 64]))
    assert [f.shape[1] for f in feats] == channels
    assert [f.shape[2] for f in feats] == [16, 8, 4, 4]


def test_bad_arguments_name_the_choices():
    with pytest.raises(ValueError, match=r'depth must be one of \[18, 34'):
        ResNetV1c(depth=42)
    with pytest.raises(ValueError, match=r'depth must be one of \[50, 101'):
        ResNeSt(depth=18)
    with pytest.raises(ValueError, match=r'output_stride must be one of'):
        ResNet18_v1c(output_stride=4)


def test_pretrained_loads_strictly(tmp_path):
    source = ResNet18_v1c()
    randomize(source)
    path = str(tmp_path / 'backbone.pdparams')
    paddle.save(source.state_dict(), path)

    loaded = ResNet18_v1c(pretrained=path).state_dict()
    for key, value in source.state_dict().items():
        np.testing.assert_array_equal(loaded[key].numpy(), value.numpy())
    with pytest.raises(WeightsError, match='stem.0.weight'):
        ResNet18_v1c(in_channels=4, pretrained=path)


@pytest.mark.parametrize('ours, config, depth', [
    (ResNet18_v1c, GCNET_R101, 18),   # zero-init bn2
    (ResNet50_v1c, GCNET_R101, 50),   # zero-init bn3
    (ResNeSt50, RESNEST_S101, 50),    # no zero-init
])
def test_default_init_follows_mmseg(ours, config, depth):
    """Constants equal mmseg's ``init_weights``; random tensors have its
    standard deviation (Kaiming normal, fan_out)."""
    reference = mmseg_backbone(config, depth=depth)
    reference.init_weights()
    expected = paddle_names(reference.state_dict())
    for key, value in ours().state_dict().items():
        actual, wanted = value.numpy(), expected[key]
        if key.endswith(('_mean', '_variance')):
            continue
        if wanted.std() == 0:
            np.testing.assert_array_equal(actual, wanted, err_msg=key)
        else:
            assert abs(actual.std() / wanted.std() - 1) < 0.15, key
            assert abs(actual.mean()) < 0.1 * wanted.std() + 1e-3, key
