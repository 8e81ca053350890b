"""Paddle files (``.pdparams``, ``.pdopt``, the training state): reading one
without running anything it holds, and checking a state dict against a model.

``paddle.save`` writes a pickle, and ``paddle.load`` unpickles it with
Python's unrestricted unpickler: a crafted file can call any function
(``os.system``, ``builtins.eval``, ...) the moment it is loaded.
:func:`read_pickle` unpickles with an allow-list instead and refuses the file,
naming it and the foreign global, before anything is called.  What the
allow-list holds is what ``paddle.save`` (Paddle 2.x and 3.x, pickle
protocols 2 to 4) writes:

* dicts (``OrderedDict`` too), lists, tuples, sets, strings, numbers, None;
* numpy arrays and scalars (``numpy.core.multiarray._reconstruct`` /
  ``scalar``, ``numpy.ndarray``, ``numpy.dtype``; ``numpy._core`` in files
  written with numpy 2), never of dtype object;
* Paddle's tensor records: a state dict's tensors are plain arrays plus a
  ``StructuredToParameterName@@`` name table; a tensor outside a state dict
  is ``builtins.tuple((name, array))``; a ``DenseTensor`` is
  ``builtins.eval('data', {'data': array})``, which is accepted in exactly
  that form and refused in any other; tensors over 1 GiB saved with protocol
  2 or 3 are slices listed under ``UnpackBigParamInfor@@`` and joined here;
* protocol-2 ``bytes`` (``_codecs.encode``);
* ``paddle.base.libpaddle.GeneratorState``: the random state in the
  training state file (``training/checkpoints.py``).

:func:`load_paddle_file` returns what ``paddle.load`` returns for such a file
(tensors, named as Paddle names them); :func:`restricted_paddle_load` makes
``paddle.load`` this reader while PaddleSeg code runs.  A truncated or
damaged file, or one claiming sizes beyond memory, is one message too.
"""
import _compat_pickle
import collections
import contextlib
import importlib
import os
import pickle

import numpy as np
import paddle

from paddleseg_ctx.errors import WeightsError
from paddleseg_ctx.weights.pickled_data import data_globals

__all__ = ['read_pickle', 'load_paddle_file', 'read_paddle_state_dict',
           'restricted_paddle_load', 'check_state_dict', 'ALLOWED_GLOBALS']

NAME_TABLE = 'StructuredToParameterName@@'
BIG_PARAMS = 'UnpackBigParamInfor@@'  # (sic) Paddle's key for sliced tensors
GENERATOR_STATE = ('paddle.base.libpaddle', 'GeneratorState')


class _Refused(Exception):
    """A global (or a call of an allowed one) outside the allow-list."""

    def __init__(self, name, detail=''):
        super().__init__(name)
        self.name = name
        self.detail = detail


def _dense_tensor(*args):
    """``builtins.eval`` as Paddle's ``DenseTensor`` record uses it:
    ``eval('data', {'data': array})`` is the array; anything else is refused
    without evaluating it."""
    if (len(args) == 2 and args[0] == 'data' and isinstance(args[1], dict) and
            list(args[1]) == ['data'] and isinstance(args[1]['data'], np.ndarray)):
        return args[1]['data']
    raise _Refused('builtins.eval', ' with {}, not as Paddle\'s tensor record '
                   "eval('data', {{'data': array}})".format(repr(args[:1])[:120]))


def _encode(text, encoding='latin1'):
    """``_codecs.encode`` as protocol-2 pickles write ``bytes``."""
    if not (isinstance(text, str) and encoding in ('latin1', 'latin-1', 'utf-8', 'utf8')):
        raise _Refused('_codecs.encode', ' with a {} and encoding {!r}'.format(
            type(text).__name__, encoding))
    return text.encode(encoding)


ALLOWED_GLOBALS = {
    **data_globals(_encode),
    ('builtins', 'tuple'): tuple,
    ('builtins', 'list'): list,
    ('builtins', 'dict'): dict,
    ('builtins', 'eval'): _dense_tensor,
    GENERATOR_STATE: None,  # resolved on first use (see _Unpickler.find_class)
}

# What the allowed globals can build, besides the pickle's own literals.
_DATA_TYPES = (str, bytes, bytearray, int, float, complex, bool, type(None), np.generic,
               np.dtype)
_CONTAINERS = (dict, list, tuple, set, frozenset)


class _Unpickler(pickle.Unpickler):
    """Resolves only ``ALLOWED_GLOBALS``; no persistent ids."""

    def find_class(self, module, name):
        if (module, name) in _compat_pickle.NAME_MAPPING:  # protocol-2 names
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) not in ALLOWED_GLOBALS:
            raise _Refused('{}.{}'.format(module, name))
        if (module, name) == GENERATOR_STATE:
            return getattr(importlib.import_module(module), name)
        return ALLOWED_GLOBALS[(module, name)]

    def persistent_load(self, pid):
        raise _Refused('a persistent id', ' ({!r})'.format(pid)[:100])


def _check_data(obj, depth=0):
    """Raise ``_Refused`` for anything but data: containers, scalars, arrays
    of numbers (object arrays could hide anything), GeneratorState."""
    if depth > 100:
        raise ValueError('nested more than 100 levels deep')
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise _Refused('numpy.ndarray', ' of Python objects (dtype {})'.format(obj.dtype))
    elif isinstance(obj, _CONTAINERS):
        items = obj.items() if isinstance(obj, dict) else [(None, v) for v in obj]
        for key, value in items:
            _check_data(key, depth + 1)
            _check_data(value, depth + 1)
    elif not isinstance(obj, _DATA_TYPES) and type(obj).__name__ != GENERATOR_STATE[1]:
        raise _Refused(type(obj).__module__ + '.' + type(obj).__qualname__)


def read_pickle(path, name=None, advice=''):
    """Unpickle ``path`` with the allow-list (module docstring): plain data,
    numpy arrays, no Paddle tensors yet.  Raises ``WeightsError`` naming
    ``name`` (default: ``path``), followed by ``advice``, when the file
    refers to anything else (nothing in it is run) or cannot be read."""
    name = name or path
    try:
        with open(path, 'rb') as f:
            obj = _Unpickler(f, encoding='latin1').load()
        _check_data(obj)
        return obj
    except _Refused as refused:
        raise WeightsError(
            '{} cannot be loaded safely: it refers to {}{}, which no file written by '
            'paddle.save holds, and unpickling it (paddle.load, pickle) could run code. '
            'It was refused; nothing in it was run. Paddle weights, optimizer and '
            'checkpoint files are read only if they hold dicts, lists, tuples, strings, '
            "numbers, numpy arrays and Paddle's tensor records. Use a file from a source "
            'you trust.{}'.format(name, refused.name, refused.detail, advice)) from None
    except MemoryError:
        raise WeightsError(
            '{} cannot be read: it claims an array or string larger than this '
            "machine's memory; the file is damaged or crafted.{}".format(
                name, advice)) from None
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, TypeError, KeyError,
            IndexError, AttributeError, OverflowError, RecursionError, UnicodeError) as error:
        raise WeightsError(
            '{} cannot be read: the file is truncated, damaged or not a file written by '
            'paddle.save ({}: {}).{}'.format(name, type(error).__name__,
                                             str(error)[:200], advice)) from None


def _join_big_params(obj):
    """Undo ``paddle.save``'s slicing of tensors over 1 GiB (protocol 2/3):
    ``obj[key]`` is the concatenation of the slices, reshaped."""
    info = obj.pop(BIG_PARAMS)
    if not isinstance(info, dict):
        raise ValueError('{} is not a dict'.format(BIG_PARAMS))
    for key, entry in info.items():
        slices = [obj[part] for part in entry['slices']]
        if not all(isinstance(s, np.ndarray) and s.ndim == 1 for s in slices):
            raise ValueError('the slices of {} are not flat arrays'.format(key))
        obj[key] = np.concatenate(slices).reshape([int(n) for n in entry['OriginShape']])
        for part in entry['slices']:
            obj.pop(part)
    return obj


def _is_named_array(obj):
    """Paddle 2.1+'s record of a tensor outside a state dict."""
    return (isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[0], str) and
            isinstance(obj[1], np.ndarray))


def _contains(obj, match):
    if match(obj):
        return True
    if type(obj) in (dict, collections.OrderedDict):
        return any(_contains(v, match) for v in obj.values())
    if type(obj) in (list, tuple):
        return any(_contains(v, match) for v in obj)
    return False


def _replace(obj, match, convert):
    if match(obj):
        return convert(obj)
    if type(obj) in (dict, collections.OrderedDict):
        for key in list(obj):
            obj[key] = _replace(obj[key], match, convert)
        return obj
    if type(obj) in (list, tuple, set):
        return type(obj)(_replace(v, match, convert) for v in obj)
    return obj


def _tensor(array, name, return_numpy):
    if return_numpy:
        return array
    tensor = paddle.to_tensor(array)
    if name:
        tensor.name = name
    return tensor


def load_paddle_file(path, name=None, advice='', return_numpy=False):
    """What ``paddle.load(path)`` (or ``paddle.load(path,
    return_numpy=True)``) returns for a file written by ``paddle.save``,
    read by :func:`read_pickle`: a state dict's arrays become tensors with
    their parameter names, tensor records become tensors, big tensors are
    joined.  Raises ``WeightsError`` as :func:`read_pickle` does."""
    obj = read_pickle(path, name, advice)
    try:
        if isinstance(obj, dict) and BIG_PARAMS in obj:
            obj = _join_big_params(obj)
    except (KeyError, TypeError, ValueError) as error:
        raise WeightsError('{} cannot be read: its list of sliced big tensors ({}) is '
                           'damaged ({}: {}).{}'.format(name or path, BIG_PARAMS,
                                                       type(error).__name__, error,
                                                       advice)) from None
    if isinstance(obj, dict) and NAME_TABLE in obj:  # a state dict
        table = obj.pop(NAME_TABLE)
        for key, param_name in (table.items() if isinstance(table, dict) else ()):
            if isinstance(obj.get(key), np.ndarray):
                obj[key] = _tensor(obj[key], param_name, return_numpy)
        return obj
    if _contains(obj, _is_named_array):
        return _replace(obj, _is_named_array,
                        lambda record: _tensor(record[1], record[0], return_numpy))
    return _replace(obj, lambda v: isinstance(v, np.ndarray),
                    lambda array: _tensor(array, None, return_numpy))


def read_paddle_state_dict(path, source=None):
    """The dict of tensors in the ``.pdparams`` file ``path``, read by the
    restricted reader, or ``WeightsError`` when the file is truncated,
    damaged, refers to code or holds something else.  ``source`` names the
    file in the message (default: ``path``)."""
    source = source or path
    state_dict = load_paddle_file(
        path, 'Weights in {}'.format(source),
        advice=' Download or copy it again, or point `pretrained` / `--model_path` at '
        'another file.')
    if not isinstance(state_dict, dict):
        raise WeightsError(
            '{} holds a {}, not a dict of named weights (a .pdparams file '
            'written by paddle.save(model.state_dict(), ...)).'.format(
                source, type(state_dict).__name__))
    return state_dict


def _restricted_load(path, return_numpy=False):
    """``paddle.load`` for files written by ``paddle.save`` (see
    :func:`restricted_paddle_load`)."""
    if not isinstance(path, (str, os.PathLike)):
        raise WeightsError('paddle.load was given a {}, not a file path; only files are '
                           'read by the restricted reader.'.format(type(path).__name__))
    return load_paddle_file(os.fspath(path), return_numpy=return_numpy)


@contextlib.contextmanager
def restricted_paddle_load():
    """Within the block, ``paddle.load`` is :func:`load_paddle_file`: for
    code we call but do not own (PaddleSeg's loaders), whose ``paddle.load``
    would unpickle anything."""
    original = paddle.load
    paddle.load = _restricted_load
    try:
        yield
    finally:
        paddle.load = original


def check_state_dict(model, state_dict, source='<state dict>', advice=None):
    """Raise ``WeightsError`` unless ``state_dict`` matches ``model`` exactly
    (same keys, same shapes); the message lists the first ten offending keys
    of each kind, their count, and ``advice``."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    wrong_shape = [
        '{}: file {} vs model {}'.format(k, list(state_dict[k].shape),
                                          list(own[k].shape)) for k in own
        if k in state_dict and list(state_dict[k].shape) != list(own[k].shape)
    ]
    problems = []
    for title, keys in (('missing', missing), ('unexpected', unexpected),
                        ('shape mismatch', wrong_shape)):
        if keys:
            shown = ', '.join(keys[:10]) + (' ...' if len(keys) > 10 else '')
            problems.append('{} {} key(s): {}'.format(len(keys), title, shown))
    if problems:
        raise WeightsError('Weights in {} do not fit {}:\n  {}\n{}'.format(
            source, type(model).__name__, '\n  '.join(problems), advice or
            'Is it a checkpoint of this model with the same backbone and num_classes?'))
