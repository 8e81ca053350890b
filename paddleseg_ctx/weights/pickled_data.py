"""The globals a pickle of plain data may name, shared by the two restricted
readers (``paddle_file`` for files of ``paddle.save``, ``torch_file`` for
files of ``torch.save``): containers, complex numbers, ``bytes`` as
protocol-2 pickles write them, and numpy arrays, dtypes and scalars (files
written with numpy 1 or 2).  Each reader adds what its own format needs.
"""
import collections

import numpy as np

__all__ = ['data_globals']


def data_globals(encode):
    """``{(module, name): object}`` of plain data; ``encode`` stands for
    ``_codecs.encode`` (each reader refuses odd arguments its own way)."""
    table = {
        ('collections', 'OrderedDict'): collections.OrderedDict,
        ('builtins', 'set'): set,
        ('builtins', 'frozenset'): frozenset,
        ('builtins', 'complex'): complex,
        ('_codecs', 'encode'): encode,
        ('numpy', 'ndarray'): np.ndarray,
        ('numpy', 'dtype'): np.dtype,
    }
    for core in ('numpy.core.multiarray', 'numpy._core.multiarray'):  # numpy 1 / 2
        table[(core, '_reconstruct')] = np.core.multiarray._reconstruct
        table[(core, 'scalar')] = np.core.multiarray.scalar
    return table
