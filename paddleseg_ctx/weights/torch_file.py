"""Read ``torch.save`` files without PyTorch: tensors become numpy arrays.

:func:`read_torch_state_dict` returns the state dict of a checkpoint
(unwrapping the mmseg and ssseg containers); :func:`load` the whole object.

Both on-disk formats are read:

* zip (torch >= 1.6): ``<top>/data.pkl`` pickles the object; each storage is
  the raw member ``<top>/data/<key>`` (``<top>`` is ``archive`` or, in older
  versions, the file's own name);
* legacy (torch <= 1.5, or ``_use_new_zipfile_serialization=False``): five
  pickles in a row (magic number, protocol version, system info, the object,
  the sorted storage keys), then every storage as an 8-byte element count
  followed by its raw bytes.

Unpickling is restricted (``find_class``): only the tensor rebuild functions,
storage types, ``OrderedDict``, a few builtins and numpy's own pickling
helpers are resolved.  Any other class (say an mmcv ``ConfigDict`` in a
checkpoint's ``meta``) becomes an inert :class:`Unknown` holding its pickled
arguments and state; nothing from the file is ever imported or executed.  A
torch global that a tensor needs but this reader does not know (sparse or
quantized tensors, complex or float8 storages) is an error.

A storage is allocated only if the file holds its bytes (a damaged or
crafted size is one message, never a ``MemoryError``).

Tensors come back as read-only numpy arrays, views into their storage like
torch's (shared storages stay shared, offsets and strides are kept).
BFloat16 becomes float32 (numpy has no bfloat16).  Only little-endian files
are supported (every file torch writes on x86/ARM machines).
"""
import _compat_pickle
import copyreg
import os
import pickle
import zipfile

import numpy as np

from paddleseg_ctx.errors import ConversionError, TorchReadError, shown
from paddleseg_ctx.weights.pickled_data import data_globals

__all__ = ['Unknown', 'load', 'read_torch_state_dict', 'is_torch_checkpoint']

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001
# pickle.dumps(MAGIC_NUMBER, protocol=2): how every legacy file begins.
_LEGACY_HEADER = pickle.dumps(MAGIC_NUMBER, protocol=2)

BFLOAT16 = 'bfloat16'  # stored as the upper 16 bits of a float32

# Storage class (``torch.FloatStorage`` ...) -> element type in the file.
_STORAGE_DTYPES = {
    'DoubleStorage': '<f8',
    'FloatStorage': '<f4',
    'HalfStorage': '<f2',
    'BFloat16Storage': BFLOAT16,
    'LongStorage': '<i8',
    'IntStorage': '<i4',
    'ShortStorage': '<i2',
    'CharStorage': 'i1',
    'ByteStorage': 'u1',
    'BoolStorage': '?',
    'UntypedStorage': 'u1',
}
# torch dtype objects (``torch.uint16`` ...): ``_rebuild_tensor_v3`` takes one.
_TORCH_DTYPES = {
    'float64': '<f8', 'double': '<f8', 'float32': '<f4', 'float': '<f4',
    'float16': '<f2', 'half': '<f2', 'bfloat16': BFLOAT16,
    'int64': '<i8', 'long': '<i8', 'int32': '<i4', 'int': '<i4',
    'int16': '<i2', 'short': '<i2', 'int8': 'i1', 'uint8': 'u1',
    'bool': '?', 'uint16': '<u2', 'uint32': '<u4', 'uint64': '<u8',
}
# Checkpoint containers: the field holding the state dict, and what it says.
CONTAINERS = (('state_dict', "OpenMMLab/mmseg checkpoint ('state_dict')"),
              ('model', "sssegmentation checkpoint ('model')"))


class Unknown:
    """Stand-in for an object of a class the reader does not import.

    ``cls_name`` is the pickled ``module.name``; ``args``/``kwargs`` are the
    constructor arguments, ``state`` the pickled state and ``items`` the
    ``(key, value)`` pairs / list items a dict or list subclass carried.
    """
    cls_name = '?'

    def __new__(cls, *args, **kwargs):
        obj = super().__new__(cls)
        obj.args, obj.kwargs, obj.state, obj.items = args, kwargs, None, []
        return obj

    def __init__(self, *args, **kwargs):  # arguments are kept by __new__
        pass

    def __setstate__(self, state):
        self.state = state

    def __setitem__(self, key, value):
        self.items.append((key, value))

    def append(self, value):
        self.items.append(value)

    def extend(self, values):
        self.items.extend(values)

    def __repr__(self):
        return '<unknown {}>'.format(self.cls_name)


class _DType(str):
    """A torch storage type or dtype, as the numpy type it stores."""


class _Storage:
    """A storage: ``array`` (1-D, in the tensors' element type: float32 for
    BFloat16) and ``file_dtype``, the element type of its bytes in the file."""

    def __init__(self, file_dtype, array):
        self.file_dtype = file_dtype
        self.array = array

    @classmethod
    def empty(cls, file_dtype, numel, available):
        """A storage of ``numel`` elements, refused unless their bytes fit
        in ``available``, the bytes the file has for it (no allocation of a
        size a damaged or crafted file claims)."""
        itemsize = np.dtype('<u2' if file_dtype == BFLOAT16 else file_dtype).itemsize
        if not isinstance(numel, int) or numel < 0 or numel * itemsize > available:
            raise TorchReadError('a storage claims {!r} elements of {} bytes, but the file has '
                                 '{} bytes for it (damaged or crafted)'.format(
                                     numel, itemsize, available))
        array_dtype = np.float32 if file_dtype == BFLOAT16 else file_dtype
        return cls(file_dtype, np.empty(numel, array_dtype))

    def fill(self, read):
        """Fill ``array`` from ``read(nbytes) -> bytes``."""
        raw_dtype = '<u2' if self.file_dtype == BFLOAT16 else self.file_dtype
        nbytes = self.array.size * np.dtype(raw_dtype).itemsize
        raw = read(nbytes)
        if len(raw) != nbytes:
            raise EOFError('storage data ends after {} of {} bytes'.format(len(raw), nbytes))
        values = np.frombuffer(raw, raw_dtype)
        if self.file_dtype == BFLOAT16:
            self.array.view('<u4')[:] = values.astype('<u4') << 16
        else:
            self.array[:] = values


def _tensor(storage, offset, size, stride):
    """A read-only view of ``storage`` like torch's ``Tensor.set_``."""
    if not isinstance(storage, _Storage):
        raise TorchReadError('a tensor refers to {!r}, not to a storage'.format(storage))
    size, stride = tuple(int(n) for n in size), tuple(int(s) for s in stride)
    if len(size) != len(stride) or offset < 0 or min(size + stride, default=0) < 0:
        raise TorchReadError('invalid tensor layout: offset {}, size {}, stride {}'
                             .format(offset, size, stride))
    if 0 in size:
        return np.empty(size, storage.array.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.array.size:
        raise TorchReadError('a tensor of size {} reaches element {} of a storage of {}'
                             .format(size, last, storage.array.size))
    item = storage.array.itemsize
    return np.lib.stride_tricks.as_strided(
        storage.array[offset:], size, [s * item for s in stride], writeable=False)


def _rebuild_tensor(storage, offset, size, stride):
    return _tensor(storage, offset, size, stride)


def _rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks, metadata=None):
    return _tensor(storage, offset, size, stride)


def _rebuild_tensor_v3(storage, offset, size, stride, requires_grad, hooks, dtype,
                       metadata=None):
    # ``storage`` is untyped (bytes), viewed as ``dtype``; torch uses v3 for the
    # dtypes without a typed storage (uint16/32/64, float8 ...).
    if not isinstance(dtype, _DType) or dtype == BFLOAT16:
        raise TorchReadError('it holds a tensor of dtype {}, which this reader does not '
                             'support'.format(getattr(dtype, 'cls_name', dtype)))
    return _tensor(_Storage(dtype, storage.array.view(dtype)), offset, size, stride)


def _rebuild_parameter(data, requires_grad, hooks, state=None):
    return data


def _rebuild_from_type_v2(func, new_type, args, state):
    # A tensor subclass: its values are those of the plain tensor.
    if func not in _TORCH_FUNCTIONS.values():
        raise TorchReadError('a tensor subclass is rebuilt by {!r}, which this reader '
                             'does not support'.format(func))
    return func(*args)


def _encode(text, encoding='utf-8'):
    """``_codecs.encode`` as protocol-2 pickles use it for ``bytes``."""
    if not isinstance(text, str):
        raise TorchReadError('unexpected _codecs.encode argument {!r}'.format(text))
    return text.encode(encoding)


def _reconstructor(cls, base, state):
    """``copyreg._reconstructor`` limited to allowed classes."""
    if isinstance(cls, type) and issubclass(cls, Unknown):
        return cls(state)
    return copyreg._reconstructor(cls, base, state)


_TORCH_FUNCTIONS = {
    ('torch._utils', '_rebuild_tensor'): _rebuild_tensor,
    ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor_v2,
    ('torch._utils', '_rebuild_tensor_v3'): _rebuild_tensor_v3,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
    ('torch._utils', '_rebuild_parameter_with_state'): _rebuild_parameter,
    ('torch._tensor', '_rebuild_from_type_v2'): _rebuild_from_type_v2,
}
_ALLOWED = {
    **data_globals(_encode),
    ('builtins', 'slice'): slice,
    ('builtins', 'bytearray'): bytearray,
    ('copyreg', '_reconstructor'): _reconstructor,
}


class _Unpickler(pickle.Unpickler):
    """Resolves only allowed globals; ``storage(saved_id)`` serves storages."""

    def __init__(self, file, storage):
        super().__init__(file, encoding='utf-8')
        self._storage = storage
        self._unknown = {}

    def find_class(self, module, name):
        if (module, name) in _compat_pickle.NAME_MAPPING:  # protocol-2 names
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if (module, name) in _TORCH_FUNCTIONS:
            return _TORCH_FUNCTIONS[(module, name)]
        in_torch = module.split('.')[0] == 'torch'
        if in_torch and name in _STORAGE_DTYPES:  # e.g. torch.FloatStorage
            return _DType(_STORAGE_DTYPES[name])
        if module == 'torch' and name in _TORCH_DTYPES:
            return _DType(_TORCH_DTYPES[name])
        if in_torch and (name.startswith('_rebuild') or name.endswith('Storage')):
            raise TorchReadError(
                'it holds tensors rebuilt by {}.{}, which this reader does not support '
                '(only dense tensors of real or bool dtype); load it with PyTorch and save '
                'those tensors as dense ones'.format(module, name))
        key = module + '.' + name
        if key not in self._unknown:
            self._unknown[key] = type(name, (Unknown, ), {'cls_name': key})
        return self._unknown[key]

    def persistent_load(self, saved_id):
        if not (isinstance(saved_id, tuple) and saved_id and saved_id[0] == 'storage'):
            if isinstance(saved_id, tuple) and saved_id and saved_id[0] == 'module':
                return saved_id[1]  # legacy: the class of a pickled nn.Module
            raise TorchReadError('unknown persistent id {!r}'.format(saved_id[:1]))
        storage_type = saved_id[1]
        if not isinstance(storage_type, _DType):
            raise TorchReadError('unsupported storage type {!r}'.format(storage_type))
        return self._storage(storage_type, *saved_id[2:])


def is_torch_checkpoint(path):
    """True if ``path`` starts like a file written by ``torch.save``."""
    try:
        with open(path, 'rb') as f:
            head = f.read(len(_LEGACY_HEADER))
        if head == _LEGACY_HEADER:
            return True
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return _pickle_member(archive.namelist()) is not None
    except (OSError, zipfile.BadZipFile):
        pass
    return False


def load(path):
    """Read the object ``torch.save`` wrote to ``path``; tensors are numpy
    arrays.  Raises :class:`TorchReadError` (one sentence naming the file)
    for anything that is not a readable PyTorch checkpoint."""
    try:
        with open(path, 'rb') as f:
            head = f.read(len(_LEGACY_HEADER))
            f.seek(0)
            if head == _LEGACY_HEADER:
                return _load_legacy(f)
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                return _load_zip(archive)
    except TorchReadError as error:
        raise TorchReadError('{} cannot be read as a PyTorch checkpoint: {}.'.format(
            path, error)) from None
    except MemoryError:
        raise TorchReadError('{} cannot be read as a PyTorch checkpoint: it claims an array '
                             "larger than this machine's memory; the file is damaged or "
                             'crafted.'.format(path)) from None
    except (OSError, EOFError, zipfile.BadZipFile, pickle.UnpicklingError, ValueError,
            TypeError, KeyError, IndexError, AttributeError, OverflowError) as error:
        raise TorchReadError('{} is not a readable PyTorch checkpoint (truncated or '
                             'corrupt?): {}: {}.'.format(path, type(error).__name__,
                                                         error)) from None
    if head.startswith(b'PK\x03\x04'):
        why = 'a truncated or damaged zip archive'
    elif head.startswith(b'\x80'):
        why = 'a pickle, but not one written by torch.save (a Paddle .pdparams file?)'
    else:
        why = 'neither a zip archive written by torch >= 1.6 nor a legacy torch.save file'
    raise TorchReadError('{} is not a PyTorch checkpoint: it is {}.'.format(path, why))


def read_torch_state_dict(path):
    """``(source, state_dict)`` of the PyTorch checkpoint at ``path``:
    unwraps mmseg (``state_dict``) and ssseg (``model``) containers and
    strips a DataParallel ``module.`` prefix."""
    obj = load(path)
    source, state = 'state dict', obj
    if isinstance(obj, dict):
        for field, description in CONTAINERS:
            if isinstance(obj.get(field), dict):
                source, state = description, obj[field]
                break
    if not (isinstance(state, dict) and state and
            all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in state.items())):
        top = sorted(map(str, obj)) if isinstance(obj, dict) else [type(obj).__name__]
        raise ConversionError(
            '{} holds no state dict: expected a dict of tensors, bare or under '
            "'state_dict' (mmseg) or 'model' (sssegmentation); found {}.".format(
                path, ', '.join(top[:10])))
    stripped = {k[len('module.'):] if k.startswith('module.') else k: v
                for k, v in state.items()}
    if len(stripped) != len(state):
        twice = [k for k in state if k.startswith('module.') and k[len('module.'):] in state]
        raise ConversionError('{} has keys both with and without the DataParallel prefix '
                              "'module.': {}.".format(path, shown(twice)))
    return source, stripped


def _pickle_member(names):
    """``<top>/data.pkl`` of a torch zip archive, or None."""
    found = [n for n in names if n.count('/') == 1 and n.endswith('/data.pkl')]
    return found[0] if len(found) == 1 else None


def _load_zip(archive):
    member = _pickle_member(archive.namelist())
    if member is None:
        raise TorchReadError('a zip archive without <folder>/data.pkl')
    top = member[:-len('data.pkl')]
    byteorder = top + 'byteorder'  # not written by older torch versions
    if byteorder in archive.namelist() and archive.read(byteorder) != b'little':
        raise TorchReadError('it was written on a big-endian machine; only little-endian '
                             'files are supported')
    storages = {}

    def storage(dtype, key, location, numel):
        if key not in storages:
            member = '{}data/{}'.format(top, key)
            storages[key] = _Storage.empty(dtype, numel, archive.getinfo(member).file_size)
            with archive.open(member) as data:
                storages[key].fill(data.read)
        return storages[key]

    with archive.open(member) as f:
        return _Unpickler(f, storage).load()


def _load_legacy(f):
    unpickle = lambda: _Unpickler(f, storage=None).load()  # noqa: E731  (no tensors here)
    if unpickle() != MAGIC_NUMBER:
        raise TorchReadError('wrong magic number')
    protocol = unpickle()
    if protocol != LEGACY_PROTOCOL:
        raise TorchReadError('unknown legacy protocol version {}'.format(protocol))
    if not unpickle().get('little_endian', True):
        raise TorchReadError('it was written on a big-endian machine; only little-endian '
                             'files are supported')
    storages, views = {}, {}
    file_size = os.fstat(f.fileno()).st_size

    # Storages are filled after the object is unpickled (their data follows it).
    def storage(dtype, key, location, numel, view=None):
        if key not in storages:
            storages[key] = _Storage.empty(dtype, numel, file_size)
        if view is None:
            return storages[key]
        view_key, offset, view_numel = view  # a storage slice (torch <= 0.4 files)
        if view_key not in views:
            views[view_key] = _Storage(dtype, storages[key].array[offset:offset + view_numel])
        return views[view_key]

    obj = _Unpickler(f, storage).load()
    for key in unpickle():
        numel = np.frombuffer(f.read(8), '<i8')
        if numel.size != 1 or numel[0] != storages[key].array.size:
            raise TorchReadError('storage {} has the wrong size'.format(key))
        storages[key].fill(f.read)
    return obj
