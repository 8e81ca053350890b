"""Weights are data, never code (issue 19, item 1).

Every file that ``paddle.load`` or ``pickle`` would unpickle (``.pdparams``,
``.pdopt``, the training state) is read by the restricted reader of
``paddleseg_ctx.weights.paddle_file``:

* files written by ``paddle.save`` (Paddle 3.3.1 here, protocols 2 to 4;
  Paddle 2.6.2 in tests/data/paddle26) load exactly as ``paddle.load``
  loads them;
* crafted files whose pickle calls ``os.system``, ``subprocess``,
  ``builtins.eval`` or a Paddle function outside the allow-list are refused
  with one message naming the file and the global, and nothing runs (each
  payload writes a marker file; the control test shows that plain ``pickle``
  does run it), through every way a user's file gets in: ``--model_path`` of
  val and export, ``pretrained`` in a config, ``--resume_model`` (weights,
  ``.pdopt``, training state) and PaddleSeg's own ``resume``;
* truncated files and sizes beyond memory are one message.
"""
import collections
import io
import os
import pickle
import struct
import subprocess
import sys
import types
import zipfile

import numpy as np
import paddle
import pytest
from paddleseg import utils as paddleseg_utils

from cli_utils import build_model, make_data, write_config
from paddleseg_ctx.cli import export, train, val
from paddleseg_ctx.errors import TorchReadError, WeightsError, run
from paddleseg_ctx.training.checkpoints import read_state
from paddleseg_ctx.weights import load_paddle_file, read_pickle, read_torch_state_dict

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data')


# --- reference: what paddle.load returns -------------------------------------


def assert_same(ours, reference, where='.'):
    """``ours`` equals ``reference`` (what paddle.load returned): same
    types, keys in order, tensor names, dtypes and values."""
    assert type(ours) is type(reference), (where, type(ours), type(reference))
    if isinstance(reference, paddle.Tensor):
        assert ours.dtype == reference.dtype, where
        np.testing.assert_array_equal(ours.numpy(), reference.numpy(), err_msg=where)
        generated = [n.startswith('generated_tensor') for n in (ours.name, reference.name)]
        assert ours.name == reference.name or all(generated), (where, ours.name)
    elif isinstance(reference, dict):
        assert list(ours) == list(reference), where
        for key in reference:
            assert_same(ours[key], reference[key], '{}/{}'.format(where, key))
    elif isinstance(reference, (list, tuple)):
        assert len(ours) == len(reference), where
        for i, (a, b) in enumerate(zip(ours, reference)):
            assert_same(a, b, '{}/{}'.format(where, i))
    elif isinstance(reference, np.ndarray):
        assert ours.dtype == reference.dtype, where
        np.testing.assert_array_equal(ours, reference, err_msg=where)
    else:
        assert ours == reference, where


def trained_objects():
    """What training saves: a model's state dict, optimizer states (with an
    LR scheduler's state dict, nested), and other shapes paddle.save
    takes."""
    paddle.seed(0)
    model = paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3), paddle.nn.BatchNorm2D(4))
    schedule = paddle.optimizer.lr.LinearWarmup(
        paddle.optimizer.lr.PolynomialDecay(0.01, 100, power=0.9), 10, 0.0, 0.01)
    momentum = paddle.optimizer.Momentum(learning_rate=schedule,
                                         parameters=model.parameters(), weight_decay=4e-5)
    adamw = paddle.optimizer.AdamW(learning_rate=0.001, parameters=model.parameters())
    for optimizer in (momentum, adamw):
        model(paddle.randn([1, 3, 8, 8])).mean().backward()
        optimizer.step()
        optimizer.clear_grad()
    schedule.step()
    return {
        'state_dict': model.state_dict(),
        'momentum': momentum.state_dict(),
        'adamw': adamw.state_dict(),
        'nested': {'model': model.state_dict(), 'meta': {
            'iter': 3, 'lr': np.float64(0.1), 'name': 'x', 'l': [1, 2.0, None, True],
            't': (1, 2)}},
        'tensor': paddle.arange(6, dtype='float32').reshape([2, 3]),
        'dense_tensor': paddle.ones([2]).value().get_tensor(),
        'tensors': [paddle.ones([2]), paddle.zeros([1], dtype='int64')],
        'array': np.arange(3),
    }


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
    root = tmp_path_factory.mktemp('saved')
    files = {}
    for name, obj in trained_objects().items():
        for protocol in (2, 3, 4):
            path = root / '{}_p{}.pdparams'.format(name, protocol)
            paddle.save(obj, str(path), protocol=protocol)
            files[path.stem] = str(path)
    return files


@pytest.mark.parametrize('return_numpy', [False, True])
def test_files_written_by_paddle_save_load_as_paddle_load_loads_them(saved, return_numpy):
    for path in saved.values():
        assert_same(load_paddle_file(path, return_numpy=return_numpy),
                    paddle.load(path, return_numpy=return_numpy), path)


def test_optimizer_state_restores_an_optimizer(saved):
    state = load_paddle_file(saved['momentum_p4'])
    assert state['LR_Scheduler']['LinearWarmup_LR'] == {'last_epoch': 0, 'last_lr': 0.01}
    model = paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3), paddle.nn.BatchNorm2D(4))
    schedule = paddle.optimizer.lr.LinearWarmup(
        paddle.optimizer.lr.PolynomialDecay(0.01, 100, power=0.9), 10, 0.0, 0.01)
    optimizer = paddle.optimizer.Momentum(learning_rate=schedule,
                                          parameters=model.parameters())
    optimizer.set_state_dict(state)
    assert schedule.last_epoch == 1


def test_big_tensors_sliced_by_protocol_2_are_joined(tmp_path):
    # paddle.save slices tensors over 1 GiB under protocols 2/3 into this
    # layout (framework/io_utils._unpack_saved_dict); written small by hand.
    weight = np.arange(12, dtype='float32').reshape(3, 4)
    obj = {'w@@.0': weight.ravel()[:5], 'w@@.1': weight.ravel()[5:],
           'b': np.ones(2, 'float32'),
           'UnpackBigParamInfor@@': {'w': {'OriginShape': (3, 4),
                                           'slices': ['w@@.0', 'w@@.1']}},
           'StructuredToParameterName@@': {'w': 'linear_0.w_0', 'b': 'linear_0.b_0'}}
    path = tmp_path / 'big.pdparams'
    path.write_bytes(pickle.dumps(obj, protocol=2))
    ours = load_paddle_file(str(path))
    assert_same(ours, paddle.load(str(path)))
    np.testing.assert_array_equal(ours['w'].numpy(), weight)
    assert ours['w'].name == 'linear_0.w_0'


PADDLE26 = os.path.join(DATA, 'paddle26')


@pytest.mark.parametrize('name', ['state_dict_p2', 'state_dict_p4', 'momentum_p4',
                                  'nested_p2', 'tensor_p4'])
def test_files_written_by_paddle_2_6_load(name):
    path = os.path.join(PADDLE26, name + '.pdparams')
    ours = load_paddle_file(path)
    assert_same(ours, paddle.load(path))
    # The values Paddle 2.6.2 saved, as numpy wrote them next to the file.
    expected = np.load(os.path.join(PADDLE26, 'expected.npz'))
    saved, tensors = name.rsplit('_p', 1)[0], ours
    if saved == 'nested':
        saved, tensors = 'state_dict', ours['model']
        assert ours['iter'] == 3
    checked = 0
    for key, value in tensors.items():
        if isinstance(value, paddle.Tensor):
            np.testing.assert_array_equal(value.numpy(), expected['{}.{}'.format(saved, key)])
            checked += 1
    assert checked == len([k for k in expected if k.startswith(saved + '.')]) > 0


# --- crafted files -------------------------------------------------------------


class Call:
    """Pickles as the call ``function(*args)`` (what a crafted file does)."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def payloads(marker):
    """Name -> (object whose unpickling writes ``marker``, the global the
    refusal must name)."""
    shell = 'touch {}'.format(marker)
    return {
        'os.system': (Call(os.system, shell), '{}.system'.format(os.system.__module__)),
        'subprocess': (Call(subprocess.check_call, ['touch', str(marker)]),
                       'subprocess.check_call'),
        'eval': (Call(eval, '__import__("os").system({!r})'.format(shell)), 'builtins.eval'),
        'paddle.save': (Call(paddle.save, {'w': np.ones(1)}, str(marker)),
                        'paddle.framework.io.save'),
    }


def crafted(path, payload, protocol=4):
    """A .pdparams-looking state dict with ``payload`` among real arrays."""
    state = collections.OrderedDict(
        [('conv.weight', np.ones((2, 2), 'float32')), ('evil', payload),
         ('StructuredToParameterName@@', {'conv.weight': 'conv2d_0.w_0'})])
    with open(path, 'wb') as f:
        pickle.dump(state, f, protocol=protocol)
    return str(path)


@pytest.mark.parametrize('kind', ['os.system', 'subprocess', 'eval', 'paddle.save'])
def test_plain_unpickling_runs_the_crafted_files(tmp_path, kind):
    """Control: the payloads are real (pickle.load writes the marker)."""
    marker = tmp_path / 'ran'
    path = crafted(tmp_path / 'evil.pdparams', payloads(marker)[kind][0])
    subprocess.run([sys.executable, '-c', 'import pickle, sys; '
                    'pickle.load(open(sys.argv[1], "rb"))', path], check=False,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert marker.exists()


@pytest.mark.parametrize('protocol', [0, 2, 4])
@pytest.mark.parametrize('kind', ['os.system', 'subprocess', 'eval', 'paddle.save'])
def test_crafted_files_are_refused_without_running(tmp_path, kind, protocol):
    marker = tmp_path / 'ran'
    payload, name = payloads(marker)[kind]
    path = crafted(tmp_path / 'evil.pdparams', payload, protocol)
    for read in (read_pickle, load_paddle_file):
        with pytest.raises(WeightsError) as error:
            read(path)
        message = str(error.value)
        assert message.startswith('{} cannot be loaded safely: it refers to {}'.format(path, name)), message
        assert 'It was refused; nothing in it was run' in message
    assert not marker.exists()


@pytest.mark.parametrize('data, name', [
    # protocol 0 text GLOBAL, as hand-written exploits use it
    (b"cos\nsystem\n(S'touch MARKER'\ntR.", 'os.system'),
    # INST opcode (the class is called at once)
    (b"(S'touch MARKER'\nios\nsystem\n.", 'os.system'),
    # eval in Paddle's DenseTensor form, but with code instead of 'data'
    (b"cbuiltins\neval\n(S'__import__(\"os\").system(\"touch MARKER\")'\n(dS'data'\n"
     b"I1\nstR.", 'builtins.eval'),
    # a persistent id (torch's storages), which Paddle files never hold
    (b"(S'x'\ntQ.", 'a persistent id'),
], ids=['global', 'inst', 'eval-not-data', 'persistent-id'])
def test_hand_written_exploits_are_refused(tmp_path, data, name):
    path = tmp_path / 'evil.pdparams'
    path.write_bytes(data.replace(b'MARKER', str(tmp_path / 'ran').encode()))
    with pytest.raises(WeightsError, match='refers to {}'.format(name)):
        read_pickle(str(path))
    assert not (tmp_path / 'ran').exists()


def test_object_arrays_are_refused(tmp_path):
    path = tmp_path / 'objects.pdparams'
    path.write_bytes(pickle.dumps({'w': np.array([{'a': 1}, None], dtype=object)}))
    with pytest.raises(WeightsError, match='numpy.ndarray of Python objects'):
        load_paddle_file(str(path))


# --- damaged files -------------------------------------------------------------


class Array:
    """Pickles as a numpy array whose header claims ``shape``."""

    def __init__(self, shape):
        self.shape = shape

    def __reduce__(self):
        return (np.core.multiarray._reconstruct, (np.ndarray, (0, ), b'b'),
                (1, self.shape, np.dtype('float32'), False, b'\0' * 8))


@pytest.mark.parametrize('case', ['petabytes', 'overflow', 'bytes-header', 'truncated',
                                  'text'])
def test_damaged_files_are_one_message(tmp_path, saved, case):
    path = tmp_path / 'bad.pdparams'
    if case == 'petabytes':
        path.write_bytes(pickle.dumps({'w': Array((2**48, 1024))}, protocol=4))
    elif case == 'overflow':
        path.write_bytes(pickle.dumps({'w': Array((2**62, 2**62))}, protocol=4))
    elif case == 'bytes-header':  # BINBYTES8 claiming a petabyte
        path.write_bytes(b'\x80\x04\x8e' + struct.pack('<Q', 2**50) + b'abc')
    elif case == 'truncated':
        with open(saved['state_dict_p4'], 'rb') as f:
            path.write_bytes(f.read()[:300])
    else:
        path.write_text('not weights\n')
    with pytest.raises(WeightsError) as error:
        load_paddle_file(str(path))
    assert str(error.value).startswith('{} cannot be read: '.format(path))


def test_pytorch_storage_beyond_the_file_is_one_message(tmp_path):
    """A .pth (read by weights/torch_file.py) whose storage claims 2**50
    floats: refused before anything is allocated."""
    torch = pytest.importorskip('torch')
    storage = object()

    class Tensor:
        def __reduce__(self):
            return (torch._utils._rebuild_tensor_v2,
                    (storage, 0, (2**50, ), (1, ), False, collections.OrderedDict()))

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ('storage', torch.FloatStorage, '0', 'cpu', 2**50) if obj is storage else None

    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump({'state_dict': {'w': Tensor()}})
    path = tmp_path / 'absurd.pth'
    with zipfile.ZipFile(path, 'w') as archive:
        archive.writestr('archive/data.pkl', buffer.getvalue())
        archive.writestr('archive/byteorder', 'little')
        archive.writestr('archive/data/0', b'\0' * 16)
    with pytest.raises(TorchReadError) as error:
        read_torch_state_dict(str(path))
    assert str(error.value).startswith('{} cannot be read as a PyTorch checkpoint: a storage '
                                       'claims {} elements'.format(path, 2**50))


# --- through the commands ----------------------------------------------------


@pytest.fixture(scope='module')
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp('safe_load')
    data = make_data(root / 'data', num_train=2, num_val=1)
    config = write_config(root / 'fcn.yml', data)
    model = build_model(config)
    checkpoint = root / 'out' / 'iter_2'
    checkpoint.mkdir(parents=True)
    paddle.save(model.state_dict(), str(checkpoint / 'model.pdparams'))
    optimizer = paddle.optimizer.Momentum(  # as the config's optimizer and schedule
        learning_rate=paddle.optimizer.lr.PolynomialDecay(0.01, 4, power=0.9),
        parameters=model.parameters())
    paddle.save(optimizer.state_dict(), str(checkpoint / 'model.pdopt'))
    return types.SimpleNamespace(root=root, config=config, checkpoint=checkpoint)


def refused(command, argv, capsys, path, marker):
    """``command`` ends with one message refusing ``path``; nothing ran."""
    with pytest.raises(SystemExit) as exit_info:
        run(command.main, [str(a) for a in argv])
    code = exit_info.value.code  # train ends a stopped run with its message
    err = code if isinstance(code, str) else capsys.readouterr().err
    assert isinstance(code, str) or code == 1, code
    assert 'Traceback' not in err, err
    errors = [line for line in err.splitlines() if line.startswith('error: ')]
    assert len(errors) == 1 and str(path) in errors[0] and 'cannot be loaded safely' in errors[0], err
    assert 'os.system' in errors[0] or 'posix.system' in errors[0], err
    assert not marker.exists()
    return errors[0]


def evil_weights(tmp_path, name='evil.pdparams'):
    marker = tmp_path / 'ran'
    return crafted(tmp_path / name, Call(os.system, 'touch {}'.format(marker))), marker


def test_model_path_of_val_and_export(work, tmp_path, capsys):
    path, marker = evil_weights(tmp_path)
    refused(val, ['--config', work.config, '--device', 'cpu', '--model_path', path],
            capsys, path, marker)
    refused(export, ['--config', work.config, '--save_dir', tmp_path / 'out',
                     '--model_path', path], capsys, path, marker)


def test_pretrained_in_a_config(work, tmp_path, capsys):
    # FCN is PaddleSeg's: its `pretrained` goes through PaddleSeg's loader.
    path, marker = evil_weights(tmp_path)
    message = refused(train, ['--config', work.config, '--device', 'cpu', '--iters', 1,
                              '--save_dir', tmp_path / 'out', '--opts',
                              'model.pretrained=' + path], capsys, path, marker)
    assert '`model.pretrained`' in message


@pytest.mark.parametrize('name', ['model.pdparams', 'model.pdopt', 'train_state.pkl'])
def test_resume_model(work, tmp_path, capsys, name):
    checkpoint = tmp_path / 'out' / 'iter_2'
    checkpoint.mkdir(parents=True)
    for file_name in ('model.pdparams', 'model.pdopt'):
        (checkpoint / file_name).write_bytes((work.checkpoint / file_name).read_bytes())
    path, marker = evil_weights(checkpoint, name)
    refused(train, ['--config', work.config, '--device', 'cpu', '--iters', 3,
                    '--save_dir', tmp_path / 'out', '--resume_model', checkpoint],
            capsys, path, marker)


def test_training_state_file(tmp_path):
    marker = tmp_path / 'ran'
    (tmp_path / 'train_state.pkl').write_bytes(pickle.dumps(
        {'iter': 2, 'rng': Call(os.system, 'touch {}'.format(marker))}, protocol=4))
    with pytest.raises(WeightsError, match='refers to (os|posix).system'):
        read_state(str(tmp_path))
    assert not marker.exists()


def test_training_state_written_by_training_is_read(tmp_path):
    from paddleseg_ctx.training.checkpoints import write_state  # noqa: PLC0415
    from paddleseg_ctx.training.data import rng_state  # noqa: PLC0415
    state = {'iter': 4, 'seed': 1, 'best': {'model': {'mIoU': 0.5}}, 'rng': rng_state(),
             'grad_scaler': None, 'paddleseg_ctx': '1'}
    write_state(str(tmp_path), state)
    back = read_state(str(tmp_path))
    assert back['rng']['python'] == state['rng']['python']
    np.testing.assert_array_equal(back['rng']['numpy'][1], state['rng']['numpy'][1])
    paddle.set_rng_state(back['rng']['paddle_cpu'], 'cpu')
    first = paddle.rand([3]).numpy()
    paddle.set_rng_state(state['rng']['paddle_cpu'], 'cpu')
    np.testing.assert_array_equal(paddle.rand([3]).numpy(), first)


def test_paddleseg_resume_and_load_entire_model(work, tmp_path):
    """PaddleSeg's own loaders, as PaddleSeg code calls them."""
    checkpoint = tmp_path / 'iter_2'
    checkpoint.mkdir()
    (checkpoint / 'model.pdopt').write_bytes((work.checkpoint / 'model.pdopt').read_bytes())
    path, marker = evil_weights(checkpoint, 'model.pdparams')
    model = build_model(work.config)
    optimizer = paddle.optimizer.Momentum(parameters=model.parameters())
    train_module = sys.modules['paddleseg.core.train']
    for resume in (paddleseg_utils.resume, paddleseg_utils.utils.resume, train_module.resume):
        with pytest.raises(WeightsError, match='cannot be loaded safely'):
            resume(model, optimizer, str(checkpoint))
    with pytest.raises(WeightsError, match='cannot be loaded safely'):
        paddleseg_utils.utils.load_entire_model(model, path)
    assert not marker.exists()
    # ... and real checkpoints still resume through them.
    assert paddleseg_utils.resume(model, optimizer, str(work.checkpoint)) == 2


def test_paddleseg_backbones_that_call_paddle_load_themselves(tmp_path, monkeypatch):
    """PaddleSeg's ViT reads `pretrained` with paddle.load after its
    load_pretrained_model; with that step out of the way, its own read is
    the restricted reader too."""
    from paddleseg.models.backbones.vision_transformer import \
        VisionTransformer  # noqa: PLC0415
    monkeypatch.setattr(paddleseg_utils.utils, 'load_pretrained_model',
                        lambda model, path: None)
    path, marker = evil_weights(tmp_path)
    with pytest.raises(WeightsError, match='cannot be loaded safely'):
        VisionTransformer(img_size=32, patch_size=16, embed_dim=16, depth=1, num_heads=1,
                          pretrained=path)
    assert not marker.exists()
