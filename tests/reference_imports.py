"""Import the PyTorch reference implementations (mmsegmentation, sssegmentation)
for parity tests, with import-only stand-ins for the two compiled pieces this
CPU machine cannot have:

* ``mmcv._ext`` (mmcv's compiled ops; mmcv-lite ships without them): mmseg
  imports it at start-up through ``mmcv.ops``; GCNet uses none of those ops.
* ``torchvision``: sssegmentation imports it at start-up; the only build that
  installs next to our CPU torch needs CUDA.  ISNet uses none of it.

Every attribute of a stand-in is a class that raises when used, so a reference
that really needed one of them fails loudly instead of computing something else.
Tests skip (with the reason) when torch or a reference package is missing.
"""
import importlib.abc
import importlib.machinery
import sys
import types

import pytest

__all__ = ['import_torch', 'import_mmseg', 'import_ssseg']


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


def import_torch():
    """``torch``, or skip the test."""
    return pytest.importorskip('torch', reason='PyTorch is not installed')


def import_mmseg():
    """``mmseg`` with its modules registered, or skip the test."""
    import_torch()
    pytest.importorskip('mmcv', reason='mmcv-lite is not installed')
    _install_stand_in('mmcv._ext')
    mmseg = pytest.importorskip(
        'mmseg', reason='mmsegmentation is not installed')
    from mmseg.utils import register_all_modules
    register_all_modules(init_default_scope=False)
    return mmseg


def import_ssseg():
    """``ssseg``, or skip the test."""
    import_torch()
    _install_stand_in('torchvision')
    return pytest.importorskip(
        'ssseg', reason='sssegmentation is not installed')
