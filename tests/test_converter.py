"""paddleseg_ctx.weights: PyTorch checkpoints read without PyTorch, key maps,
``python -m paddleseg_ctx.convert`` and ``.pth`` weights for --model_path /
pretrained.

Every checkpoint is written by real torch inside the test (both ``torch.save``
formats).  The reader is run where ``import torch`` fails and compared with
``.npy`` files written from the torch tensors.  Key maps are checked against
the real mmsegmentation / sssegmentation modules; expected Paddle names are
built here from the key tables of docs/reference/, independently of the maps.
"""
import argparse
import collections
import os
import subprocess
import sys

import numpy as np
import paddle
import paddleseg
import pytest
from paddleseg.utils import seg_env

from cli_utils import (build_model, logits, make_data, mean_iou, normalized_image,
                       run_cli, save_random_weights, val_samples, write_config)
from reference_imports import import_mmseg, import_ssseg, import_torch
from paddleseg_ctx import deploy, zoo
from paddleseg_ctx import weights as converters
from paddleseg_ctx.cli import convert as convert_cli
from paddleseg_ctx.errors import ConversionError, TorchReadError, WeightsError
from paddleseg_ctx.weights import fetch as pretrained
from paddleseg_ctx.weights import torch_file as torch_pickle

FORMATS = {'zip': True, 'legacy': False}  # _use_new_zipfile_serialization
BN = ('weight', 'bias', '_mean', '_variance')

# A hand-made map for the stock PaddleSeg models used here: torch keys are the
# Paddle names under `net.`, in torch's BN vocabulary (see `torch_style`).
TINY_MAP = r"""
description: test model, torch keys under net.
target: model
detect:
  all: ['net\..*']
rename:
  - ['net\.(.+)', '\1']
"""
TINY_BACKBONE_MAP = r"""
description: test backbone, torch keys under bb.
target: backbone
detect:
  all: ['bb\..*']
drop: ['head\..*']
rename:
  - ['bb\.(.+)', '\1']
"""


@pytest.fixture(scope='module')
def torch():
    return import_torch()


@pytest.fixture
def maps(tmp_path, monkeypatch):
    """$PADDLESEG_CTX_KEYMAPS with the two hand-made maps."""
    folder = tmp_path / 'maps'
    folder.mkdir()
    (folder / 'tiny_net.yml').write_text(TINY_MAP)
    (folder / 'tiny_backbone.yml').write_text(TINY_BACKBONE_MAP)
    monkeypatch.setenv('PADDLESEG_CTX_KEYMAPS', str(folder))
    return folder


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / 'cache'
    root.mkdir()
    monkeypatch.setattr(seg_env, 'PRETRAINED_MODEL_HOME', str(root))
    return root


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """A tiny data set, a config (stock FCN on HRNet_W18_Small_V1) and
    random Paddle weights for it."""
    root = tmp_path_factory.mktemp('tiny')
    data = make_data(root / 'data')
    config = write_config(root / 'fcn.yml', data)
    weights = save_random_weights(config, root / 'random.pdparams', seed=0)
    state = {k: np.asarray(v) for k, v in paddle.load(weights).items()}
    return root, data, config, weights, state


def torch_style(torch, state, prefix='net.'):
    """Paddle names -> torch keys (``prefix`` + name, BN statistics renamed,
    a ``num_batches_tracked`` per BN), values as torch tensors."""
    out = collections.OrderedDict()
    for name, value in state.items():
        key = prefix + name
        if key.endswith('._mean'):
            key = key[:-len('_mean')] + 'running_mean'
            out[key[:-len('running_mean')] + 'num_batches_tracked'] = torch.tensor(5)
        elif key.endswith('._variance'):
            key = key[:-len('_variance')] + 'running_var'
        out[key] = torch.from_numpy(np.array(value))
    return out


def assert_same_state(actual, expected):
    assert sorted(actual) == sorted(expected)
    for name in expected:
        np.testing.assert_array_equal(np.asarray(actual[name]), expected[name], err_msg=name)


# --------------------------------------------------------------------------
# The reader, without torch


def reader_sample(torch):
    """``(obj, tensors, optimizer)``: a checkpoint-like object holding every
    storage dtype, views with offsets/strides into shared storages, a
    Parameter, an OrderedDict with ``_metadata``, mmseg-like meta and SGD
    state; ``tensors`` are its state dict."""
    gen = torch.Generator().manual_seed(0)
    base = torch.randn(6, 10, generator=gen)
    tensors = collections.OrderedDict([
        ('float32', base),
        ('float64', torch.randn(3, 4, generator=gen, dtype=torch.float64)),
        ('float16', torch.randn(5, generator=gen).half()),
        ('bfloat16', torch.randn(2, 3, generator=gen).to(torch.bfloat16)),
        ('int64', torch.arange(-3, 4) * 10**12),
        ('int32', torch.arange(-5, 5, dtype=torch.int32)),
        ('int16', torch.arange(-7, 8, 3, dtype=torch.int16)),
        ('int8', torch.tensor([-128, 0, 127], dtype=torch.int8)),
        ('uint8', torch.tensor([0, 7, 255], dtype=torch.uint8)),
        ('bool', torch.tensor([[True, False], [False, True]])),
        ('view_strided', base[1:5, 2:9:3]),  # offset + strides into base
        ('view_transposed', base.t()),
        ('view_row', base[4]),
        ('scalar', torch.tensor(2.5)),
        ('empty', torch.zeros(0, 4)),
        ('param', torch.nn.Parameter(torch.randn(2, 2, generator=gen))),
    ])
    tensors._metadata = collections.OrderedDict([('', {'version': 1})])
    layer = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(layer.parameters(), lr=0.1, momentum=0.9)
    layer(torch.randn(4, 3, generator=gen)).sum().backward()
    optimizer.step()
    obj = {
        'meta': {'mmseg_version': '0.5.0+', 'CLASSES': ('road', 'car'),
                 'PALETTE': [[128, 64, 128], [0, 0, 142]], 'iter': 40000,
                 'lr': [0.01, 1e-4], 'none': None, 'flag': True, 'bytes': b'\x00\xff',
                 'set': {3, 4}, 'np_scalar': np.float64(0.5), 'np_array': np.arange(4.),
                 'device': torch.device('cpu'), 'dtype': torch.float16},
        'state_dict': tensors,
        'optimizer': optimizer.state_dict(),
    }
    return obj, tensors, optimizer


WITHOUT_TORCH = '''
import importlib.abc
import sys


class BlockTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == 'torch':
            raise ImportError('torch is blocked in this test')


sys.meta_path.insert(0, BlockTorch())  # `import torch` fails from here on
import numpy as np
from paddleseg_ctx.weights import torch_file as torch_pickle

folder = sys.argv[1]
for fmt in ('zip', 'legacy'):
    obj = torch_pickle.load('{}/{}.pth'.format(folder, fmt))
    state = obj['state_dict']
    assert type(state).__name__ == 'OrderedDict', type(state)
    assert state._metadata == {'': {'version': 1}}, state._metadata
    for name in NAMES:
        expected = np.load('{}/{}.npy'.format(folder, name))
        got = state[name]
        assert got.dtype == expected.dtype, (fmt, name, got.dtype, expected.dtype)
        assert got.shape == expected.shape, (fmt, name, got.shape, expected.shape)
        assert np.array_equal(got, expected), (fmt, name)
    for view in ('view_strided', 'view_transposed', 'view_row'):
        assert np.shares_memory(state[view], state['float32']), (fmt, view)
    meta = obj['meta']
    for key, value in PLAIN_META.items():
        assert meta[key] == value and type(meta[key]) == type(value), (fmt, key, meta[key])
    assert meta['np_scalar'] == 0.5 and meta['np_array'].tolist() == [0, 1, 2, 3]
    assert meta['device'].cls_name == 'torch.device' and meta['device'].args == ('cpu',)
    momentum = obj['optimizer']['state'][0]['momentum_buffer']
    assert np.array_equal(momentum, np.load(folder + '/momentum.npy')), fmt
    assert obj['optimizer']['param_groups'][0]['lr'] == 0.1
    print(fmt, 'ok')
assert not [m for m in sys.modules if m.split('.')[0] == 'torch']
'''


def test_reader_without_torch_matches_torch(torch, tmp_path):
    obj, tensors, optimizer = reader_sample(torch)
    for fmt, zip_format in FORMATS.items():
        torch.save(obj, tmp_path / (fmt + '.pth'), _use_new_zipfile_serialization=zip_format)
    for name, value in tensors.items():
        value = value.detach()
        # numpy has no bfloat16: the reader widens it to float32 (exactly).
        value = value.float() if value.dtype == torch.bfloat16 else value
        np.save(tmp_path / (name + '.npy'), value.numpy())
    np.save(tmp_path / 'momentum.npy', optimizer.state_dict()['state'][0]['momentum_buffer'].numpy())
    plain = {k: v for k, v in obj['meta'].items()
             if k not in ('np_scalar', 'np_array', 'device', 'dtype')}
    script = 'NAMES = {!r}\nPLAIN_META = {!r}\n'.format(list(tensors), plain) + WITHOUT_TORCH
    proc = subprocess.run([sys.executable, '-c', script, str(tmp_path)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ['zip', 'ok', 'legacy', 'ok']


class RunsCode:
    """Unpickling this would run a shell command."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, ('touch {}'.format(self.marker), )


@pytest.mark.parametrize('fmt', list(FORMATS))
def test_reader_never_runs_globals_of_the_file(torch, tmp_path, fmt):
    marker = tmp_path / 'ran'
    path = tmp_path / 'x.pth'
    torch.save({'state_dict': {'w': torch.ones(2)}, 'evil': RunsCode(marker),
                'args': argparse.Namespace(lr=0.01)}, path,
               _use_new_zipfile_serialization=FORMATS[fmt])
    obj = torch_pickle.load(str(path))
    assert not marker.exists()
    assert isinstance(obj['evil'], torch_pickle.Unknown)
    assert obj['evil'].cls_name.endswith('.system')
    assert obj['args'].cls_name == 'argparse.Namespace'  # inert, with its state
    assert obj['args'].state == {'lr': 0.01}
    np.testing.assert_array_equal(obj['state_dict']['w'], [1, 1])


UNSUPPORTED = {  # tensors whose rebuild needs a torch global the reader lacks
    'sparse': (lambda torch: torch.eye(3).to_sparse(), '_rebuild_sparse_tensor'),
    'complex': (lambda torch: torch.ones(2, dtype=torch.complex64), 'ComplexFloatStorage'),
    'quantized': (lambda torch: torch.quantize_per_tensor(torch.ones(2), 0.1, 0, torch.quint8),
                  '_rebuild_qtensor'),
}


@pytest.mark.filterwarnings('ignore:torch.quantize_per_tensor')
@pytest.mark.parametrize('fmt', list(FORMATS))
@pytest.mark.parametrize('kind', list(UNSUPPORTED))
def test_tensor_needing_an_unsupported_global_is_an_error(torch, tmp_path, kind, fmt):
    make, needs = UNSUPPORTED[kind]
    path = str(tmp_path / 'x.pth')
    torch.save({'state_dict': {'w': make(torch)}, 'meta': {}}, path,
               _use_new_zipfile_serialization=FORMATS[fmt])
    with pytest.raises(TorchReadError) as error:
        converters.convert(path)
    assert_names(error, path, needs)


# --------------------------------------------------------------------------
# Containers and the generic rules


def test_containers_module_prefix_and_both_formats(torch, tmp_path, maps, tiny):
    *_, state = tiny
    weights = torch_style(torch, state)
    module = collections.OrderedDict(('module.' + k, v) for k, v in weights.items())
    containers = {
        'mmseg': ({'meta': {'iter': 1}, 'state_dict': weights, 'optimizer': {}},
                  "OpenMMLab/mmseg checkpoint ('state_dict')"),
        'ssseg': ({'model': module, 'optimizer': {}, 'cur_epoch': 3, 'cur_iter': 90},
                  "sssegmentation checkpoint ('model')"),
        'bare': (weights, 'state dict'),
    }
    for name, (obj, source) in containers.items():
        for fmt, zip_format in FORMATS.items():
            path = str(tmp_path / '{}_{}.pth'.format(name, fmt))
            torch.save(obj, path, _use_new_zipfile_serialization=zip_format)
            result = converters.convert(path)
            assert (result.source, result.keymap.name) == (source, 'tiny_net')
            assert_same_state(result.state, state)
            assert all(v.dtype == np.float32 for v in result.state.values())
            dropped = [k for k, n in result.pairs if n is None]
            assert dropped and all(k.endswith('.num_batches_tracked') for k in dropped)


def test_half_precision_checkpoint_becomes_float32(torch, tmp_path, maps):
    path = str(tmp_path / 'half.pth')
    torch.save({'net.w': torch.tensor([0.5, -2.0], dtype=torch.float16),
                'net.b': torch.tensor([1.5], dtype=torch.bfloat16)}, path)
    state = converters.convert_checkpoint(path)
    assert state['w'].dtype == np.float32 and state['w'].tolist() == [0.5, -2.0]
    assert state['b'].dtype == np.float32 and state['b'].tolist() == [1.5]


# --------------------------------------------------------------------------
# The packaged maps against the reference implementations


def randomized_state(torch, module):
    """``module``'s state dict as numpy, every entry random (distinct)."""
    gen = torch.Generator().manual_seed(0)
    return {k: torch.rand(v.shape, generator=gen).numpy() if v.is_floating_point()
            else v.numpy() for k, v in module.state_dict().items()}


def resnet_v1c_names(depths, prefix=''):
    """docs/reference/backbones.md#resnetv1c (Paddle mirrors torch's tree)."""
    names = []
    for conv in (0, 3, 6):
        names += ['stem.{}.weight'.format(conv)]
        names += ['stem.{}.{}'.format(conv + 1, s) for s in BN]
    for stage, depth in enumerate(depths, 1):
        for block in range(depth):
            p = 'layer{}.{}.'.format(stage, block)
            for i in (1, 2, 3):
                names += [p + 'conv{}.weight'.format(i)] + [p + 'bn{}.{}'.format(i, s) for s in BN]
            if block == 0:
                names += [p + 'downsample.0.weight'] + [p + 'downsample.1.' + s for s in BN]
    return [prefix + n for n in names]


def resnest_names(depths):
    """docs/reference/backbones.md#resnest-101: deep stem, split-attention
    conv2, avg-down shortcut."""
    names = []
    for conv in (0, 3, 6):
        names += ['stem.{}.weight'.format(conv)]
        names += ['stem.{}.{}'.format(conv + 1, s) for s in BN]
    for stage, depth in enumerate(depths, 1):
        for block in range(depth):
            p = 'layer{}.{}.'.format(stage, block)
            names += [p + 'conv1.weight'] + [p + 'bn1.' + s for s in BN]
            names += [p + 'conv2.conv.weight'] + [p + 'conv2.bn0.' + s for s in BN]
            names += [p + 'conv2.fc1.weight', p + 'conv2.fc1.bias']
            names += [p + 'conv2.bn1.' + s for s in BN]
            names += [p + 'conv2.fc2.weight', p + 'conv2.fc2.bias']
            names += [p + 'conv3.weight'] + [p + 'bn3.' + s for s in BN]
            if block == 0:
                names += [p + 'downsample.1.weight'] + [p + 'downsample.2.' + s for s in BN]
    return names


def gcnet_head_names():
    """docs/reference/models.md#gcnet-mmseg-form: PaddleSeg GCNet names without 3x3 conv biases."""
    names = []
    for i in (1, 2, 3):
        names += ['head.conv_bn_relu{}._conv.weight'.format(i)]
        names += ['head.conv_bn_relu{}._batch_norm.{}'.format(i, s) for s in BN]
    names += ['head.gc_block.conv_mask.weight', 'head.gc_block.conv_mask.bias']
    names += ['head.gc_block.channel_add_conv.{}.{}'.format(i, s)
              for i in (0, 1, 3) for s in ('weight', 'bias')]
    names += ['head.conv.weight', 'head.conv.bias']
    names += ['head.auxlayer.conv_bn_relu._conv.weight']
    names += ['head.auxlayer.conv_bn_relu._batch_norm.' + s for s in BN]
    names += ['head.auxlayer.conv.weight', 'head.auxlayer.conv.bias']
    return names


def apply_packaged_map(state, name):
    keymap = converters.find_keymap(state, '<test>', converters.load_keymaps(
        [converters.keymaps.KEYMAP_DIR]))
    assert keymap.name == name
    return keymap.apply(state)


def test_mmseg_gcnet_map_maps_every_key_of_mmseg_gcnet(torch):
    import_mmseg()
    from mmseg.registry import MODELS
    norm = dict(type='BN', requires_grad=True)  # SyncBN in the config; same keys
    model = MODELS.build(dict(  # configs/_base_/models/gcnet_r50-d8.py, 5 classes
        type='EncoderDecoder',
        backbone=dict(type='ResNetV1c', depth=50, num_stages=4, out_indices=(0, 1, 2, 3),
                      dilations=(1, 1, 2, 4), strides=(1, 2, 1, 1), norm_cfg=norm,
                      norm_eval=False, style='pytorch', contract_dilation=True),
        decode_head=dict(type='GCHead', in_channels=2048, in_index=3, channels=512,
                         ratio=1 / 4., pooling_type='att', fusion_types=('channel_add', ),
                         dropout_ratio=0.1, num_classes=5, norm_cfg=norm, align_corners=False),
        auxiliary_head=dict(type='FCNHead', in_channels=1024, in_index=2, channels=256,
                            num_convs=1, concat_input=False, dropout_ratio=0.1,
                            num_classes=5, norm_cfg=norm, align_corners=False)))
    state = randomized_state(torch, model)
    converted, pairs = apply_packaged_map(state, 'mmseg_gcnet')

    expected = resnet_v1c_names((3, 4, 6, 3), 'backbone.') + gcnet_head_names()
    assert sorted(converted) == sorted(expected)
    assert {k for k, n in pairs if n is None} == {
        k for k in state if k.endswith('num_batches_tracked')}
    for key, name in pairs:  # values travel with their key
        if name:
            np.testing.assert_array_equal(converted[name].reshape(state[key].shape), state[key])
    for key, name in [  # spot checks from the spec table
            ('decode_head.convs.0.conv.weight', 'head.conv_bn_relu1._conv.weight'),
            ('decode_head.convs.1.bn.running_var', 'head.conv_bn_relu2._batch_norm._variance'),
            ('decode_head.conv_cat.bn.running_mean', 'head.conv_bn_relu3._batch_norm._mean'),
            ('decode_head.conv_seg.bias', 'head.conv.bias'),
            ('auxiliary_head.convs.0.bn.weight', 'head.auxlayer.conv_bn_relu._batch_norm.weight'),
            ('auxiliary_head.conv_seg.weight', 'head.auxlayer.conv.weight'),
            ('backbone.layer3.5.bn2.running_var', 'backbone.layer3.5.bn2._variance')]:
        np.testing.assert_array_equal(converted[name], state[key])
    for param in ('weight', 'bias'):  # LayerNorm([128, 1, 1]) -> [128]
        key = 'decode_head.gc_block.channel_add_conv.1.' + param
        assert state[key].shape == (128, 1, 1)
        np.testing.assert_array_equal(
            converted['head.gc_block.channel_add_conv.1.' + param], state[key].ravel())


def test_imagenet_resnet_v1c_map(torch):
    import_mmseg()
    from mmseg.models.backbones import ResNetV1c
    backbone = ResNetV1c(depth=50)
    state = randomized_state(torch, backbone)
    state.update({'fc.weight': np.ones((1000, 2048), 'float32'),
                  'fc.bias': np.ones(1000, 'float32')})  # the ImageNet classifier
    converted, _ = apply_packaged_map(state, 'imagenet_resnet_v1c')
    assert sorted(converted) == sorted(resnet_v1c_names((3, 4, 6, 3)))
    np.testing.assert_array_equal(converted['layer2.0.downsample.1._mean'],
                                  state['layer2.0.downsample.1.running_mean'])


def test_imagenet_resnest_map(torch):
    import_ssseg()
    from ssseg.modules.models.backbones.resnest import ResNeSt
    backbone = ResNeSt('resnest50', depth=50, norm_cfg={'type': 'BatchNorm2d'},
                       pretrained=False)  # ResNeSt-101 has the same keys, more blocks
    state = randomized_state(torch, backbone)
    converted, _ = apply_packaged_map(state, 'imagenet_resnest')
    assert sorted(converted) == sorted(resnest_names((3, 4, 6, 3)))
    np.testing.assert_array_equal(converted['layer1.0.conv2.bn1._variance'],
                                  state['layer1.0.conv2.bn1.running_var'])


# --------------------------------------------------------------------------
# Refusals


def assert_names(error, *parts):
    message = str(error.value)
    for part in parts:
        assert part in message, message


def save(torch, obj, path):
    torch.save(obj, str(path))
    return str(path)


def test_unmapped_keys_are_listed(torch, tmp_path, maps):
    extra = {'net.w': torch.ones(1)}
    extra.update(('other.x{}'.format(i), torch.ones(1)) for i in range(12))
    path = save(torch, extra, tmp_path / 'x.pth')
    with pytest.raises(ConversionError) as error:
        converters.convert(path)
    assert_names(error, '12 key(s)', 'other.x0', 'other.x9', 'tiny_net.yml')
    assert 'other.x11' not in str(error.value)  # the first ten only


def test_unknown_architecture_lists_known_maps_and_prefixes(torch, tmp_path):
    path = save(torch, {'encoder.conv.weight': torch.ones(1), 'decoder.fc.bias': torch.ones(1)},
                tmp_path / 'x.pth')
    with pytest.raises(ConversionError) as error:
        converters.convert(path)
    assert_names(error, path, 'mmseg_gcnet', 'imagenet_resnet_v1c', 'imagenet_resnest',
                 'encoder', 'decoder')
    assert '\n' not in str(error.value)


def test_checked_against_config_unfilled_unexpected_and_shape(torch, tmp_path, maps, tiny):
    _, _, config, _, state = tiny
    names = sorted(state)
    broken = dict(state)
    del broken[names[0]]
    broken['not_in_model.weight'] = np.ones(2, 'float32')
    broken[names[1]] = np.ones(state[names[1]].size + 1, 'float32')
    path = save(torch, torch_style(torch, broken), tmp_path / 'x.pth')
    with pytest.raises(WeightsError) as error:
        converters.convert(path, config)
    assert_names(error, path, '1 missing key(s): ' + names[0],
                 '1 unexpected key(s): not_in_model.weight',
                 '1 shape mismatch key(s): ' + names[1])
    # Without a config the same file converts (names are checked at load time).
    assert 'not_in_model.weight' in converters.convert(path).state


def test_reshape_must_keep_the_element_count(torch, tmp_path, monkeypatch):
    folder = tmp_path / 'maps'
    folder.mkdir()
    (folder / 'ln.yml').write_text(TINY_MAP + "reshape:\n  - ['ln\\.weight', [-1]]\n"
                                   "  - ['ln\\.bias', [5]]\n")
    monkeypatch.setenv('PADDLESEG_CTX_KEYMAPS', str(folder))
    path = save(torch, {'net.ln.weight': torch.ones(4, 1, 1), 'net.ln.bias': torch.ones(4, 1, 1)},
                tmp_path / 'x.pth')
    with pytest.raises(ConversionError) as error:
        converters.convert(path)
    assert_names(error, 'ln.bias', '[4, 1, 1]', '[5]')


def test_two_keys_to_one_name_is_an_error(torch, tmp_path, maps):
    path = save(torch, {'net.bn.running_mean': torch.ones(1), 'net.bn._mean': torch.ones(1)},
                tmp_path / 'x.pth')
    with pytest.raises(ConversionError) as error:
        converters.convert(path)
    assert_names(error, 'net.bn.running_mean', 'net.bn._mean', 'bn._mean')
    path = save(torch, {'net.w': torch.ones(1), 'module.net.w': torch.ones(1)}, tmp_path / 'x.pth')
    with pytest.raises(ConversionError) as error:
        converters.convert(path)
    assert_names(error, 'module.net.w')


@pytest.fixture
def not_checkpoints(torch, tmp_path):
    files = {}
    files['text'] = tmp_path / 'notes.pth'
    files['text'].write_text('not weights\n')
    files['random'] = tmp_path / 'random.pth'
    files['random'].write_bytes(np.random.RandomState(0).bytes(4096))
    files['pdparams'] = tmp_path / 'model.pdparams'
    paddle.save({'w': paddle.ones([2])}, str(files['pdparams']))
    for fmt, zip_format in FORMATS.items():
        whole = tmp_path / (fmt + '_whole.pth')
        torch.save({'state_dict': {'w': torch.ones(5000)}}, whole,
                   _use_new_zipfile_serialization=zip_format)
        files['truncated_' + fmt] = tmp_path / ('truncated_' + fmt + '.pth')
        files['truncated_' + fmt].write_bytes(whole.read_bytes()[:12000])
    files['no_state_dict'] = tmp_path / 'meta_only.pth'
    torch.save({'meta': {'epoch': 3}}, files['no_state_dict'])
    return {k: str(v) for k, v in files.items()}


def test_files_that_are_no_checkpoint_give_one_sentence(not_checkpoints):
    for kind, path in not_checkpoints.items():
        with pytest.raises(WeightsError) as error:
            converters.convert(path)
        message = str(error.value)
        assert message.startswith(path) and '\n' not in message, (kind, message)
        assert 'PyTorch checkpoint' in message or 'holds no state dict' in message, message


def test_failed_cli_conversion_leaves_destination_alone(not_checkpoints, tmp_path):
    out = tmp_path / 'out'
    out.mkdir()
    dst = out / 'out.pdparams'
    dst.write_bytes(b'previous')
    proc = run_cli('convert', not_checkpoints['truncated_zip'], dst, check=False)
    assert proc.returncode == 1
    assert 'Traceback' not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        'error: ' + not_checkpoints['truncated_zip'])
    assert dst.read_bytes() == b'previous'
    assert os.listdir(out) == ['out.pdparams']


def test_save_is_atomic(tmp_path, monkeypatch):
    dst = tmp_path / 'out.pdparams'
    dst.write_bytes(b'previous')

    def broken_save(state, path):
        with open(path, 'wb') as f:
            f.write(b'half a file')
        raise OSError('disk full')

    monkeypatch.setattr(paddle, 'save', broken_save)
    with pytest.raises(OSError):
        converters.save_converted({'w': np.ones(2, 'float32')}, str(dst))
    assert dst.read_bytes() == b'previous'
    assert os.listdir(tmp_path) == ['out.pdparams']
    monkeypatch.undo()
    converters.save_converted({'w': np.ones(2, 'float32')}, str(dst))
    assert_same_state(paddle.load(str(dst)), {'w': np.ones(2, 'float32')})


# --------------------------------------------------------------------------
# python -m paddleseg_ctx.convert


def test_cli_reports_what_it_detected(torch, tmp_path, maps, tiny, capsys, monkeypatch):
    _, _, config, _, state = tiny
    src = save(torch, {'state_dict': torch_style(torch, state)},
               tmp_path / 'fcn_20200618-4b0fd17b.pth')
    dst = tmp_path / 'out.pdparams'

    convert_cli.main([src, str(dst), '--config', config])
    out = capsys.readouterr().out
    for line in ("OpenMMLab/mmseg checkpoint ('state_dict')", 'Architecture: tiny_net',
                 'Tensors:      {} '.format(len(state)), 'key and shape of the model of ' + config):
        assert line in out, out
    assert_same_state(paddle.load(str(dst)), state)

    convert_cli.main([src, str(dst)])  # no config, no zoo entry: a warning
    assert 'not checked against a model' in capsys.readouterr().out

    monkeypatch.setattr(zoo, 'load_zoo', lambda: [  # a zoo entry publishing this file
        {'config': config, 'weights': 'https://x.org/v0.5/fcn/fcn_20200618-4b0fd17b.pth'}])
    convert_cli.main([src, str(dst), '--debug'])
    out = capsys.readouterr().out
    assert 'the model-zoo entry of this file' in out
    name = 'backbone.conv_layer1_1._batch_norm._mean'
    assert 'net.backbone.conv_layer1_1._batch_norm.running_mean -> {} {}'.format(
        name, list(state[name].shape)) in out


# --------------------------------------------------------------------------
# .pth straight into --model_path and pretrained


def test_val_and_export_accept_a_pth(torch, tmp_path, tiny, maps, monkeypatch):
    _, data, config, weights, state = tiny
    monkeypatch.setenv('SEG_HOME', str(tmp_path / 'seg_home'))
    pth = save(torch, {'model': torch_style(torch, state)}, tmp_path / 'fcn.pth')

    proc = run_cli('val', '--config', config, '--device', 'cpu', '--model_path', pth)
    miou = float(proc.stdout.split('mIoU: ')[1].split()[0])
    model = build_model(config)
    model.set_state_dict(paddle.load(weights))
    samples = val_samples(data)
    preds = [logits(model, normalized_image(image)).argmax(0) for image, _ in samples]
    assert len(np.unique(preds[0])) > 1  # a constant label map would prove little
    assert abs(miou - mean_iou(preds, [l for _, l in samples], data['num_classes'])[1]) <= 5e-5
    def cached():
        return [f for _, _, files in os.walk(tmp_path / 'seg_home') for f in files]

    assert cached() == ['fcn.pdparams']  # converted into the cache

    save_dir = tmp_path / 'export'
    run_cli('export', '--config', config, '--model_path', pth, '--save_dir', save_dir)
    runner = deploy.InferenceRunner(deploy.find_model_file(str(save_dir)),
                                    str(save_dir / 'model.pdiparams'))
    labels = runner(normalized_image(samples[0][0])[None])[0]
    np.testing.assert_array_equal(labels, preds[0])
    assert cached() == ['fcn.pdparams']  # and only once


def test_predict_loader_and_backbone_pretrained_accept_a_pth(torch, tmp_path, maps, cache, tiny):
    # predict loads through PaddleSeg's load_entire_model, backbones through
    # load_pretrained_model: both reach paddleseg_ctx.weights.fetch.local_file.
    _, _, config, _, state = tiny
    pth = save(torch, torch_style(torch, state), tmp_path / 'whole.pth')
    model = build_model(config)
    paddleseg.utils.utils.load_entire_model(model, pth)
    assert_same_state({k: v.numpy() for k, v in model.state_dict().items()}, state)

    backbone_state = {k[len('backbone.'):]: v for k, v in state.items()
                      if k.startswith('backbone.')}
    bb = torch_style(torch, backbone_state, prefix='bb.')
    bb['head.fc.weight'] = torch.ones(3)  # an ImageNet classifier, dropped by the map
    pth = save(torch, {'state_dict': bb}, tmp_path / 'imagenet.pth')
    backbone = paddleseg.models.backbones.HRNet_W18_Small_V1(pretrained=pth)
    assert_same_state({k: v.numpy() for k, v in backbone.state_dict().items()}, backbone_state)
    assert len(os.listdir(cache / 'converted')) == 2  # one conversion per file


def test_local_pth_is_reconverted_when_it_changes(torch, tmp_path, maps, cache):
    path = tmp_path / 'w.pth'
    save(torch, {'net.w': torch.ones(2)}, path)
    first = pretrained.local_file(str(path))
    assert pretrained.local_file(str(path)) == first  # cached
    save(torch, {'net.w': torch.zeros(3)}, path)
    os.utime(path, ns=(1, 1))
    second = pretrained.local_file(str(path))
    assert second != first
    assert_same_state(paddle.load(second), {'w': np.zeros(3, 'float32')})


def test_torch_file_recognised_by_content(torch, tmp_path, maps, cache):
    path = save(torch, {'net.w': torch.ones(2)}, tmp_path / 'weights.bin')
    assert converters.is_torch_checkpoint(path)
    assert_same_state(paddle.load(pretrained.local_file(path)), {'w': np.ones(2, 'float32')})
    paddle.save({'w': paddle.ones([2])}, str(tmp_path / 'p.pdparams'))
    assert pretrained.local_file(str(tmp_path / 'p.pdparams')) == str(tmp_path / 'p.pdparams')
