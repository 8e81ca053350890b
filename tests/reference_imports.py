"""The PyTorch references for parity tests (``paddleseg_ctx.testing.references``),
skipping the test with the reason when torch or a reference package is
missing (requirements-parity.txt)."""
import functools

import pytest

from paddleseg_ctx.testing import references

__all__ = ['import_torch', 'import_mmseg', 'import_ssseg']


def _or_skip(function):
    @functools.wraps(function)
    def wrapper():
        try:
            return function()
        except references.ReferenceUnavailable as err:
            pytest.skip(str(err))
    return wrapper


import_torch = _or_skip(references.import_torch)
import_mmseg = _or_skip(references.import_mmseg)
import_ssseg = _or_skip(references.import_ssseg)
