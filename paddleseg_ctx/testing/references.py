"""The PyTorch originals, built as the parity tests and the benchmark use
them: mmsegmentation's GCNet and sssegmentation's ISNet from their published
configs, BN instead of SyncBN, random weights, eval mode.

Needs requirements-parity.txt (torch, mmsegmentation, mmcv-lite,
sssegmentation); nothing is imported before a function is called, and a
missing piece raises :class:`ReferenceUnavailable` saying which (the tests
turn it into a skip).  Two compiled pieces this CPU machine cannot have get
import-only stand-ins:

* ``mmcv._ext`` (mmcv's compiled ops; mmcv-lite ships without them): mmseg
  imports it at start-up through ``mmcv.ops``; GCNet uses none of those ops.
* ``torchvision``: sssegmentation imports it at start-up; the only build that
  installs next to our CPU torch needs CUDA.  ISNet uses none of it.

Every attribute of a stand-in is a class that raises when used, so a reference
that really needed one of them fails loudly instead of computing something else.
"""
import importlib
import importlib.abc
import importlib.machinery
import os
import sys
import types

import numpy as np

from paddleseg_ctx.testing.random_weights import random_array

__all__ = ['MMSEG_GCNET_CONFIGS', 'ReferenceUnavailable', 'SSSEG_ISNET_CASES',
           'import_mmseg', 'import_ssseg', 'import_torch', 'mmseg_gcnet',
           'ssseg_isnet']


class ReferenceUnavailable(ImportError):
    """A PyTorch reference cannot be imported here; the message says which
    package is missing (install requirements-parity.txt)."""


class _Unavailable:
    """Placeholder for anything taken from a stand-in module."""

    def __init__(self, *args, **kwargs):
        raise RuntimeError('{} is an import-only stand-in; the reference code '
                           'used it, so this test cannot run here.'.format(
                               type(self).__module__))


class _StandInFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves empty modules for ``root`` and every ``root.sub.module``."""

    def __init__(self, root):
        self.root = root

    def find_spec(self, name, path=None, target=None):
        if name == self.root or name.startswith(self.root + '.'):
            return importlib.machinery.ModuleSpec(name, self, is_package=True)
        return None

    def create_module(self, spec):
        module = types.ModuleType(spec.name)
        module.__path__ = []
        module.__file__ = '<import-only stand-in for {}>'.format(spec.name)

        def __getattr__(attr):
            if attr.startswith('__'):
                raise AttributeError(attr)
            return type(attr, (_Unavailable, ), {'__module__': spec.name})

        module.__getattr__ = __getattr__
        return module

    def exec_module(self, module):
        pass


def _install_stand_in(root):
    if root in sys.modules or any(
            isinstance(f, _StandInFinder) and f.root == root
            for f in sys.meta_path):
        return
    try:  # a real installation wins
        importlib.import_module(root)
        return
    except ImportError:
        pass
    sys.meta_path.insert(0, _StandInFinder(root))


def _import(name, what):
    try:
        return importlib.import_module(name)
    except ImportError:
        raise ReferenceUnavailable(
            '{} is not installed (pip install -r requirements-parity.txt)'
            .format(what)) from None


def import_torch():
    """``torch``, or :class:`ReferenceUnavailable`."""
    return _import('torch', 'PyTorch')


def import_mmseg():
    """``mmseg`` with its modules registered."""
    import_torch()
    _import('mmcv', 'mmcv-lite')
    _install_stand_in('mmcv._ext')
    mmseg = _import('mmseg', 'mmsegmentation')
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    return mmseg


def import_ssseg():
    """``ssseg``."""
    import_torch()
    _install_stand_in('torchvision')
    return _import('ssseg', 'sssegmentation')


def _randomize_torch(model, batches_tracked, flat=()):
    """Random weights (``random_weights.random_array``, seed 0) for every
    tensor of a PyTorch ``model``; ``flat``: name parts of tensors drawn
    like 1-D parameters."""
    torch = import_torch()
    rng = np.random.RandomState(0)
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if name.endswith('num_batches_tracked'):
                value.fill_(batches_tracked)
                continue
            arr = random_array(name, tuple(value.shape), rng,
                               flat=any(part in name for part in flat))
            value.copy_(torch.from_numpy(arr.astype('float32')))


# (depth, align_corners) -> a published mmseg config of that form.
MMSEG_GCNET_CONFIGS = {
    (50, False): 'gcnet_r50-d8_4xb2-40k_cityscapes-512x1024.py',
    (101, False): 'gcnet_r101-d8_4xb4-80k_ade20k-512x512.py',
    (50, True): 'gcnet_r50-d8_4xb2-80k_cityscapes-769x769.py',
    (101, True): 'gcnet_r101-d8_4xb2-40k_cityscapes-769x769.py',
}


def mmseg_gcnet(config_name, num_classes):
    """mmseg's GCNet from its published config ``config_name`` (a file of
    mmseg's ``configs/gcnet``), BN instead of SyncBN, ``num_classes``,
    random weights, eval mode."""
    mmseg = import_mmseg()
    from mmengine.config import Config
    from mmseg.registry import MODELS
    path = os.path.join(os.path.dirname(mmseg.__file__), '.mim', 'configs',
                        'gcnet', config_name)
    cfg = Config.fromfile(path).model
    cfg.backbone.norm_cfg = cfg.decode_head.norm_cfg = \
        cfg.auxiliary_head.norm_cfg = dict(type='BN', requires_grad=True)
    cfg.decode_head.num_classes = cfg.auxiliary_head.num_classes = num_classes
    cfg.pretrained = None
    cfg.backbone.init_cfg = None
    cfg.data_preprocessor = None  # normalisation is not under test here
    model = MODELS.build(cfg)
    # channel_add_conv.1 is a LayerNorm: its [C, 1, 1] weight is an affine.
    _randomize_torch(model, batches_tracked=7, flat=('channel_add_conv.1', ))
    return model.eval()


_RELU = {'type': 'ReLU', 'inplace': True}
_LEAKY = {'type': 'LeakyReLU', 'negative_slope': 0.01, 'inplace': True}
_RESNET50 = {'type': 'ResNet', 'depth': 50,
             'structure_type': 'resnet50conv3x3stem', 'outstride': 8,
             'use_conv3x3_stem': True}
# ssseg configs/isnet/isnet_{resnet50,resnest101}os8_{ade20k,lip}.py: backbone
# and head settings (everything else as in configs/_base_/segmentors/isnet.py),
# and the backbone of ours that takes the same weights.
SSSEG_ISNET_CASES = {
    'R50-ADE20K': dict(backbone=_RESNET50, act=_RELU, shortcut=False,
                       ours_backbone='ResNet50_v1c'),
    'R50-LIP': dict(backbone=_RESNET50, act=_LEAKY, shortcut=True,
                    ours_backbone='ResNet50_v1c'),
    'S101-ADE20K': dict(
        backbone={'type': 'ResNeSt', 'depth': 101,
                  'structure_type': 'resnest101', 'outstride': 8},
        act=_RELU, shortcut=False, ours_backbone='ResNeSt101'),
}


def ssseg_isnet(case, num_classes):
    """sssegmentation's ISNet with a real backbone (``case``: a value of
    :data:`SSSEG_ISNET_CASES`), BN instead of SyncBN, random weights; eval
    mode."""
    import_ssseg()
    torch = import_torch()
    from ssseg.modules.models.segmentors.isnet import ISNet
    cfg = {
        'num_classes': num_classes,
        'align_corners': False,
        'norm_cfg': {'type': 'BatchNorm2d'},
        'act_cfg': case['act'],
        'backbone': dict(case['backbone'], pretrained=False,
                         selected_indices=(0, 1, 2, 3)),
        'head': {
            'in_channels': 2048, 'feats_channels': 512,
            'transform_channels': 256, 'concat_input': True, 'dropout': 0.1,
            'shortcut': {'is_on': case['shortcut'], 'in_channels': 256,
                         'feats_channels': 48},
        },
        'auxiliary': {'in_channels': 1024, 'out_channels': 512,
                      'dropout': 0.1},
    }
    model = ISNet(cfg, mode='TEST')
    _randomize_torch(model, batches_tracked=11)
    with torch.no_grad():
        # Sharpen the stage-1 classifier: the argmax that picks each pixel's
        # class centre must not be flipped by float noise between frameworks.
        model.decoder_stage1[4].weight.mul_(20.0)
    return model.eval()
