"""Importing paddleseg_ctx registers its components without touching PaddleSeg's."""
import subprocess
import sys
import warnings

import pytest
from paddleseg.cvlibs import manager

import paddleseg_ctx
from paddleseg_ctx.registry import (ComponentCollisionError, register,
                                    registered_names)
from paddleseg_ctx.testing.families import FAMILIES

# PaddleSeg's own classes of our models, and ours of the same models.
STOCK = tuple(sorted({f.paddleseg for f in FAMILIES.values() if f.paddleseg}))
OURS = tuple(sorted({f.type for f in FAMILIES.values() if f.paddleseg}))


def test_stock_models_untouched_after_import():
    # A fresh interpreter: record PaddleSeg's classes, import us, compare.
    code = (
        'import warnings\n'
        'import paddleseg.models\n'
        'from paddleseg.cvlibs import manager\n'
        'before = {{k: manager.MODELS[k] for k in {stock!r}}}\n'
        'with warnings.catch_warnings(record=True) as caught:\n'
        '    warnings.simplefilter("always")\n'
        '    import paddleseg_ctx\n'
        'replaced = [str(w.message) for w in caught if "exists already" in str(w.message)]\n'
        'assert not replaced, replaced\n'
        'after = {{k: manager.MODELS[k] for k in {stock!r}}}\n'
        'assert before == after, (before, after)\n'
        'assert all(c.__module__.startswith("paddleseg.models") '
        'for c in after.values())\n'
        'print("ok")\n').format(stock=STOCK)
    out = subprocess.run([sys.executable, '-c', code], capture_output=True,
                         text=True)
    assert out.returncode == 0 and out.stdout.strip().endswith('ok'), out.stderr


def test_our_components_are_registered_under_distinct_names():
    ours = registered_names()
    for name in OURS:
        if name in ours:  # models land through separate modules
            assert ours[name] == 'models'
            assert manager.MODELS[name].__module__.startswith('paddleseg_ctx')
    assert not set(ours) & set(STOCK)


def test_collision_raises_and_names_both_classes():
    class GINet:  # same name as PaddleSeg's model
        pass

    with pytest.raises(ComponentCollisionError) as err:
        register(manager.MODELS)(GINet)
    message = str(err.value)
    assert 'paddleseg.models.ginet.GINet' in message
    assert 'test_registry' in message and 'GINet' in message
    assert manager.MODELS['GINet'].__module__ == 'paddleseg.models.ginet'


def test_collision_across_managers_is_detected():
    # SegBuilder searches every manager, so a transform named like a backbone
    # would shadow it too.
    class ResNet50_vd:
        pass

    with pytest.raises(ComponentCollisionError):
        register(manager.TRANSFORMS)(ResNet50_vd)
    assert 'ResNet50_vd' not in manager.TRANSFORMS.components_dict


def test_new_name_registers_without_warning_and_reregistering_same_is_ok():
    class CtxRegistryProbe:
        pass

    with warnings.catch_warnings():
        warnings.simplefilter('error')
        register(manager.LOSSES)(CtxRegistryProbe)
        register(manager.LOSSES)(CtxRegistryProbe)  # e.g. module reload
    try:
        assert manager.LOSSES['CtxRegistryProbe'] is CtxRegistryProbe
    finally:
        del manager.LOSSES.components_dict['CtxRegistryProbe']
