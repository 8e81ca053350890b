"""Export to Paddle Inference and ONNX, and ``python -m paddleseg_ctx.infer``.

For every model family (``FAMILIES``: paddleseg_ctx/testing/families.yml,
each with a light backbone), the exported Paddle program and the ONNX model give the dygraph
logits, and ``infer`` writes the dygraph argmax with both backends.  The
references are the dygraph models run in this process, on inputs normalised
here with numpy, and PaddleSeg's own transforms and colour map.
"""
import os
import subprocess
import sys
import textwrap
import types

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest
import yaml
from paddleseg import transforms as T
from paddleseg.core.infer import reverse_transform
from paddleseg.models.backbones import ResNet18_vd
from paddleseg.utils.visualize import get_color_map_list
from PIL import Image

from model_checks import assert_logits_close, randomize
from paddleseg_ctx.cli import infer
from paddleseg_ctx.datasets.synthetic import make_synthetic_dataset
from paddleseg_ctx.deploy import (DeployConfig, InferenceRunner, OnnxRunner,
                                  export_model, export_onnx,
                                  save_inference_model)
from paddleseg_ctx.deploy.backends import onednn_works
from paddleseg_ctx.deploy.config import Compose, restore
from paddleseg_ctx.deploy.visualize import color_map, palette_png
from paddleseg_ctx.models import CtxGCNet
from paddleseg_ctx.testing.families import FAMILIES, build_light

pytest.importorskip('paddle2onnx')
pytest.importorskip('onnxruntime')

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES = 4
IMAGE_SIZE = (129, 97)  # (w, h), not multiples of 8
NORMALIZE = [{'type': 'Normalize'}]


def build(family):
    """The light model of a row of the family table."""
    return build_light(family, NUM_CLASSES)


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return make_synthetic_dataset(
        str(tmp_path_factory.mktemp('data')), 0, 3, IMAGE_SIZE, NUM_CLASSES)


def val_images(data):
    with open(data['val_path']) as f:
        return [os.path.join(data['dataset_root'], line.split()[0])
                for line in f if line.strip()]


def normalized(path):
    """PaddleSeg's default Normalize (mean = std = 0.5), in numpy: CHW."""
    rgb = np.asarray(Image.open(path).convert('RGB'), dtype='float32')
    return ((rgb / 255 - 0.5) / 0.5).transpose(2, 0, 1)


def dygraph_logits(model, chw):
    with paddle.no_grad():
        return model(paddle.to_tensor(chw[None].copy()))[0][0].numpy()


def assert_argmax_of(label, logits, rtol=1e-4):
    """``label`` is the argmax of ``logits`` [C, H, W], except where the
    two best classes are within ``rtol`` x the largest logit (a deployed
    model may rank a near-tie either way)."""
    assert label.shape == logits.shape[1:]
    top2 = np.sort(logits, axis=0)[-2:]
    tie = top2[1] - top2[0] <= rtol * np.abs(logits).max()
    differ = label != logits.argmax(axis=0)
    assert not (differ & ~tie).any(), '{} pixels differ'.format(
        (differ & ~tie).sum())


def run_infer(*args, env=None):
    proc = subprocess.run(
        [sys.executable, '-m', 'paddleseg_ctx.infer', '--cpu_threads', '1'] +
        [str(a) for a in args], capture_output=True, text=True, timeout=300,
        env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def read_labels(save_dir, names):
    return [np.array(Image.open(os.path.join(
        save_dir, 'pseudo_color_prediction',
        os.path.splitext(name)[0] + '.png'))) for name in names]


# Parity: dygraph, Paddle Inference, ONNX Runtime, infer --------------------------


@pytest.fixture(scope='module', params=sorted(FAMILIES))
def exported(request, tmp_path_factory):
    """A family's model with random weights, exported with --format both
    and raw logits (output_op none)."""
    paddle.seed(0)
    model = build(request.param)
    randomize(model)
    model.eval()
    save_dir = tmp_path_factory.mktemp(request.param)
    deploy_yaml = export_model(model, str(save_dir), NORMALIZE, 'both',
                               output_op='none')
    return types.SimpleNamespace(model=model, dir=save_dir,
                                 config=DeployConfig(deploy_yaml),
                                 family=request.param)


def test_exported_logits_match_dygraph(exported):
    config = exported.config
    runners = [InferenceRunner(config.model, config.params),
               OnnxRunner(config.onnx)]
    rng = np.random.RandomState(1)
    for shape in ((1, 3, 97, 129), (2, 3, 65, 71)):
        x = rng.uniform(-1, 1, shape).astype('float32')
        with paddle.no_grad():
            expected = exported.model(paddle.to_tensor(x))[0].numpy()
        for runner in runners:
            assert_logits_close(runner(x), expected, rtol=1e-4,
                                what='{} {}'.format(runner.name, shape))


# Where Paddle 3.3.1's oneDNN fails (InferenceRunner's docstring).
ONEDNN_FAILS = {'ginet', 'isnet_lip'}


def test_onednn_where_it_works(exported):
    """oneDNN is either refused by onednn_works or gives the dygraph
    logits; only the families known to fail may be refused."""
    config = exported.config
    works, why = onednn_works(config.model, config.params)
    if not works:
        assert exported.family in ONEDNN_FAILS, why
        return
    runner = InferenceRunner(config.model, config.params, enable_mkldnn=True)
    x = np.random.RandomState(2).uniform(-1, 1, (1, 3, 97, 129))
    with paddle.no_grad():
        expected = exported.model(paddle.to_tensor(x, 'float32'))[0].numpy()
    assert_logits_close(runner(x), expected, rtol=1e-4, what='oneDNN')


@pytest.mark.parametrize('backend', ['paddle', 'onnxruntime'])
def test_infer_writes_dygraph_argmax(exported, data, backend, tmp_path):
    out = run_infer('--config', exported.dir / 'deploy.yaml', '--image_path',
                    data['val_path'], '--save_dir', tmp_path, '--backend',
                    backend)
    assert 'backend {} on cpu'.format(backend) in out
    images = val_images(data)
    names = [os.path.relpath(p, data['dataset_root']) for p in images]
    for path, label in zip(images, read_labels(tmp_path, names)):
        assert_argmax_of(label, dygraph_logits(exported.model,
                                               normalized(path)))


# The CLI export (argmax, --format both) and infer's inputs ------------------------


@pytest.fixture(scope='module')
def cli_export(data, tmp_path_factory):
    """GCNet exported by the CLI with the default output_op (argmax)."""
    root = tmp_path_factory.mktemp('cli')
    config = root / 'gcnet.yml'
    dataset = {'type': 'Dataset', 'dataset_root': data['dataset_root'],
               'num_classes': NUM_CLASSES, 'transforms': NORMALIZE}
    config.write_text(yaml.safe_dump({
        'batch_size': 1, 'iters': 1,
        'train_dataset': dict(dataset, mode='train',
                              train_path=data['val_path']),
        'val_dataset': dict(dataset, mode='val', val_path=data['val_path']),
        'model': {'type': 'CtxGCNet', 'backbone': {'type': 'ResNet18_vd'},
                  'gc_channels': 64},
        'optimizer': {'type': 'SGD'},
        'lr_scheduler': {'type': 'PolynomialDecay', 'learning_rate': 0.01},
        'loss': {'types': [{'type': 'CrossEntropyLoss'}], 'coef': [1, 0.4]},
    }))
    paddle.seed(0)
    model = CtxGCNet(NUM_CLASSES, ResNet18_vd(), gc_channels=64)
    randomize(model)
    model.eval()
    weights = root / 'model.pdparams'
    paddle.save(model.state_dict(), str(weights))
    proc = subprocess.run(
        [sys.executable, '-m', 'paddleseg_ctx.export', '--config', str(config),
         '--model_path', str(weights), '--save_dir', str(root / 'export'),
         '--format', 'both'], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return types.SimpleNamespace(model=model, dir=root / 'export')


def test_cli_export_names_the_files_written(cli_export):
    with open(cli_export.dir / 'deploy.yaml') as f:
        deploy = yaml.safe_load(f)['Deploy']
    assert (deploy['model'], deploy['params'], deploy['onnx']) == (
        'model.json', 'model.pdiparams', 'model.onnx')
    assert sorted(os.listdir(cli_export.dir)) == [
        'deploy.yaml', 'model.json', 'model.onnx', 'model.pdiparams']
    assert deploy['transforms'] == NORMALIZE
    assert deploy['output_op'] == 'argmax'
    assert deploy['input_shape'] == [None, 3, None, None]


def test_infer_without_flags_uses_onnxruntime_on_a_directory(
        cli_export, data, tmp_path):
    images_dir = os.path.join(data['dataset_root'], 'images')
    out = run_infer('--config', cli_export.dir / 'deploy.yaml',
                    '--image_path', images_dir, '--save_dir', tmp_path)
    assert 'backend onnxruntime on cpu' in out
    images = sorted(os.listdir(images_dir))
    for name, label in zip(images, read_labels(tmp_path, images)):
        path = os.path.join(images_dir, name)
        assert_argmax_of(label, dygraph_logits(cli_export.model,
                                               normalized(path)))
        # The overlay: 0.6 x image + 0.4 x class colour (PaddleSeg's).
        added = np.asarray(Image.open(tmp_path / 'added_prediction' / name))
        colors = np.array(get_color_map_list(256)).reshape(-1, 3)
        rgb = np.asarray(Image.open(path).convert('RGB'), dtype='float32')
        expected = 0.6 * rgb + 0.4 * colors[label]
        assert np.abs(added - expected).max() <= 1


def test_infer_paddle_on_a_list_in_batches(cli_export, data, tmp_path):
    run_infer('--config', cli_export.dir / 'deploy.yaml', '--image_path',
              data['val_path'], '--save_dir', tmp_path, '--backend', 'paddle',
              '--batch_size', 2)
    images = val_images(data)
    names = [os.path.relpath(p, data['dataset_root']) for p in images]
    for path, label in zip(images, read_labels(tmp_path, names)):
        assert_argmax_of(label, dygraph_logits(cli_export.model,
                                               normalized(path)))


def test_infer_reads_a_paddleseg_export(cli_export, data, tmp_path):
    # PaddleSeg 2.8's tools/export.py names model.pdmodel (Paddle 3 writes
    # model.json) and no ONNX model: infer falls back to Paddle Inference.
    export = tmp_path / 'export'
    export.mkdir()
    for name in ('model.json', 'model.pdiparams'):
        (export / name).symlink_to(cli_export.dir / name)
    (export / 'deploy.yaml').write_text(yaml.safe_dump({'Deploy': {
        'model': 'model.pdmodel', 'params': 'model.pdiparams',
        'transforms': NORMALIZE}}))
    assert DeployConfig(str(export / 'deploy.yaml')).model == str(
        export / 'model.json')
    out = run_infer('--config', export / 'deploy.yaml', '--image_path',
                    val_images(data)[0], '--save_dir', tmp_path / 'out')
    assert 'backend paddle on cpu' in out
    path = val_images(data)[0]
    (label, ) = read_labels(tmp_path / 'out', [os.path.basename(path)])
    assert_argmax_of(label, dygraph_logits(cli_export.model,
                                           normalized(path)))


def test_fixed_input_shape_onnx_only(cli_export, data, tmp_path):
    deploy_yaml = export_model(cli_export.model, str(tmp_path / 'export'),
                               NORMALIZE, 'onnx', input_shape=[1, 3, 97, 129])
    assert sorted(os.listdir(tmp_path / 'export')) == ['deploy.yaml',
                                                       'model.onnx']
    runner = OnnxRunner(DeployConfig(deploy_yaml).onnx)
    assert runner.session.get_inputs()[0].shape == [1, 3, 97, 129]
    # A batch size the model cannot take is replaced by the exported one.
    out = run_infer('--config', deploy_yaml, '--image_path',
                    data['val_path'], '--save_dir', tmp_path / 'out',
                    '--batch_size', 2)
    assert 'using --batch_size 1' in out
    images = val_images(data)
    names = [os.path.relpath(p, data['dataset_root']) for p in images]
    for path, label in zip(images, read_labels(tmp_path / 'out', names)):
        assert_argmax_of(label, dygraph_logits(cli_export.model,
                                               normalized(path)))


# Only numpy, OpenCV, PyYAML and one backend ---------------------------------------

# sitecustomize for the child process: imports outside the allowed set fail.
IMPORT_GUARD = '''
import importlib.abc
import sys

ALLOWED = {allowed!r}
BLOCKED = {blocked!r}


class Guard(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        top = name.split('.')[0]
        if name in BLOCKED or top in BLOCKED or (
                ALLOWED is not None and top not in ALLOWED and
                top not in sys.stdlib_module_names):
            raise ImportError('blocked by the test: ' + name)
        if top == 'paddleseg_ctx' and name not in PACKAGE:
            raise ImportError('blocked by the test: ' + name)
        return None


PACKAGE = {{'paddleseg_ctx', 'paddleseg_ctx.version', 'paddleseg_ctx.infer',
            'paddleseg_ctx.mkl_dispatch',  # standard library only
            'paddleseg_ctx.errors', 'paddleseg_ctx.files',  # standard library only
            'paddleseg_ctx.cli', 'paddleseg_ctx.cli.infer',
            'paddleseg_ctx.deploy', 'paddleseg_ctx.deploy.config',
            'paddleseg_ctx.deploy.backends', 'paddleseg_ctx.deploy.visualize',
            'paddleseg_ctx.deploy.predictor'}}
sys.meta_path.insert(0, Guard())
'''


@pytest.mark.parametrize('backend, allowed, blocked', [
    # onnxruntime + numpy + cv2 + yaml; no tqdm: the plain progress counter.
    ('onnxruntime', ['numpy', 'cv2', 'yaml', 'onnxruntime', 'paddleseg_ctx'],
     ['paddle', 'paddleseg', 'PIL', 'tqdm']),
    # paddle brings its own dependencies; PaddleSeg and ONNX stay out.
    ('paddle', None, ['paddleseg', 'onnxruntime', 'onnx', 'paddle2onnx']),
])
def test_infer_needs_no_training_code(cli_export, data, tmp_path, backend,
                                      allowed, blocked):
    guard = tmp_path / 'guard'
    guard.mkdir()
    (guard / 'sitecustomize.py').write_text(
        IMPORT_GUARD.format(allowed=set(allowed) if allowed else None,
                            blocked=set(blocked)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(guard), ROOT, os.environ.get('PYTHONPATH', '')]))
    out = run_infer('--config', cli_export.dir / 'deploy.yaml',
                    '--image_path', data['val_path'], '--save_dir',
                    tmp_path / 'out', '--backend', backend, env=env)
    assert 'backend {} on cpu'.format(backend) in out
    images = val_images(data)
    names = [os.path.relpath(p, data['dataset_root']) for p in images]
    for path, label in zip(images, read_labels(tmp_path / 'out', names)):
        assert_argmax_of(label, dygraph_logits(cli_export.model,
                                               normalized(path)))


def test_infer_explains_what_cannot_run(tmp_path, capsys):
    (tmp_path / 'deploy.yaml').write_text(yaml.safe_dump({'Deploy': {
        'model': 'model.json', 'params': 'model.pdiparams',
        'transforms': NORMALIZE}}))
    image = tmp_path / 'x.png'
    Image.new('RGB', (9, 7)).save(image)
    with pytest.raises(SystemExit):
        infer.main(['--config', str(tmp_path / 'deploy.yaml'),
                    '--image_path', str(image), '--backend', 'onnxruntime'])
    assert 'names no ONNX model' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        infer.main(['--config', str(tmp_path / 'deploy.yaml'),
                    '--image_path', str(image)])
    err = capsys.readouterr().err
    assert 'names no ONNX model' in err and 'model.json does not exist' in err

    (tmp_path / 'deploy.yaml').write_text(yaml.safe_dump({'Deploy': {
        'model': 'model.json', 'params': 'model.pdiparams',
        'transforms': [{'type': 'RandomHorizontalFlip'}]}}))
    with pytest.raises(SystemExit):
        infer.main(['--config', str(tmp_path / 'deploy.yaml'),
                    '--image_path', str(image)])
    assert "'RandomHorizontalFlip' is not supported" in capsys.readouterr().err


# ONNX conversion ------------------------------------------------------------------


class Pads(paddle.nn.Layer):
    """Constant pads of different values, fixed and shape-dependent."""

    def __init__(self):
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 2, 3)

    def forward(self, x):
        x = F.pad(x, [1, 2, 3, 0], value=0.5)
        # Shape-dependent pads as a tensor: Paddle 3.0's to_static rejects a
        # list holding shape tensors.
        h = paddle.shape(x)[2]
        zero, bottom = h - h, (8 - h % 8) % 8
        pads = paddle.stack([zero, bottom, zero + 2, zero]).astype('int32')
        return [self.conv(F.pad(x, pads, value=-1.25))]


@pytest.fixture(scope='module')
def pads_program(tmp_path_factory):
    paddle.seed(0)
    net = Pads()
    program, params = save_inference_model(
        net, str(tmp_path_factory.mktemp('pads')), output_op='none')
    return net, program, params


def test_onnx_keeps_pad_values(pads_program, tmp_path):
    # paddle2onnx 2.1.0 reads Paddle 3.3's double pad_value as a float.
    net, program, params = pads_program
    runner = OnnxRunner(export_onnx(program, params,
                                    str(tmp_path / 'm.onnx')))
    x = np.random.RandomState(0).uniform(-1, 1, (2, 3, 13, 17)).astype(
        'float32')
    with paddle.no_grad():
        expected = net(paddle.to_tensor(x))[0].numpy()
    np.testing.assert_allclose(runner(x), expected, rtol=1e-5, atol=1e-5)


CONVERT_AND_REPORT = '''
import importlib.metadata, os, sys
from paddleseg_ctx.deploy import export_onnx
before = sorted(d.metadata['Name'] for d in importlib.metadata.distributions())
export_onnx(sys.argv[1], sys.argv[2], sys.argv[3])
after = sorted(d.metadata['Name'] for d in importlib.metadata.distributions())
assert before == after, set(after) ^ set(before)
print('AUTOINSTALL=' + os.environ.get('POLYGRAPHY_AUTOINSTALL_DEPS', ''))
'''


def test_onnx_conversion_installs_nothing(pads_program, tmp_path):
    # Every way the conversion could install: polygraphy's install command,
    # and a `pip` first on PATH.  Each leaves a mark and fails.
    _, program, params = pads_program
    marks = tmp_path / 'install_attempts.txt'
    fake = tmp_path / 'bin' / 'pip'
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\necho "$0 $*" >> {}\nexit 1\n'.format(marks))
    fake.chmod(0o755)
    env = dict(os.environ, POLYGRAPHY_INSTALL_CMD=str(fake),
               PATH=os.pathsep.join([str(fake.parent), os.environ['PATH']]))
    env.pop('POLYGRAPHY_AUTOINSTALL_DEPS', None)
    proc = subprocess.run(
        [sys.executable, '-c', CONVERT_AND_REPORT, program, params,
         str(tmp_path / 'm.onnx')], capture_output=True, text=True,
        timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert not marks.exists(), marks.read_text()
    assert 'AUTOINSTALL=\n' in proc.stdout
    assert (tmp_path / 'm.onnx').is_file()


# Preprocessing, restoring and pictures against PaddleSeg's own -------------------

TRANSFORM_CASES = [
    [{'type': 'Normalize', 'mean': [0.4, 0.5, 0.6], 'std': [0.2, 0.3, 0.25]}],
    [{'type': 'Resize', 'target_size': [64, 40]}, {'type': 'Normalize'}],
    [{'type': 'Resize', 'target_size': [100, 60], 'keep_ratio': True,
      'size_divisor': 16, 'interp': 'NEAREST'}],
    [{'type': 'ResizeByLong', 'long_size': 50}],
    [{'type': 'ResizeByShort', 'short_size': 60, 'max_size': 100}],
    [{'type': 'LimitLong', 'max_long': 80}, {'type': 'Normalize'}],
    [{'type': 'LimitLong', 'min_long': 200}],
    [{'type': 'Padding', 'target_size': [140, 120],
      'im_padding_value': 10}],
    [{'type': 'PaddingByAspectRatio', 'aspect_ratio': 0.5}],
    [{'type': 'ResizeByShort', 'short_size': 48},
     {'type': 'Padding', 'target_size': [80, 80]}, {'type': 'Normalize'}],
]


@pytest.mark.parametrize('configs', TRANSFORM_CASES,
                         ids=lambda c: '+'.join(t['type'] for t in c))
def test_transforms_match_paddleseg(configs, data, tmp_path):
    path = val_images(data)[0]
    expected = T.Compose([
        getattr(T, c['type'])(**{k: v for k, v in c.items() if k != 'type'})
        for c in configs
    ])({'img': path})
    image = np.asarray(Image.open(path).convert('RGB'))[..., ::-1].copy()
    chw, info = Compose(configs, 'test')(image)
    np.testing.assert_allclose(chw, expected['img'], rtol=0, atol=1e-6)
    assert [(kind, tuple(shape)) for kind, shape in info] == [
        (kind, tuple(shape)) for kind, shape in expected['trans_info']]

    # Scores go back bilinearly, label maps by nearest neighbour, as
    # PaddleSeg's reverse_transform does.
    rng = np.random.RandomState(0)
    scores = rng.uniform(-1, 1, (3, ) + chw.shape[1:]).astype('float32')
    back = reverse_transform(paddle.to_tensor(scores[None]), info,
                             mode='bilinear')[0].numpy()
    np.testing.assert_allclose(restore(scores, info), back, atol=1e-4)
    labels = scores.argmax(0).astype('int32')
    back = reverse_transform(paddle.to_tensor(labels[None, None]), info,
                             mode='nearest')[0, 0].numpy()
    np.testing.assert_array_equal(restore(labels, info), back)


def test_palette_png_and_colours_match_paddleseg(tmp_path):
    np.testing.assert_array_equal(
        color_map().reshape(-1), get_color_map_list(256))
    custom = [255, 0, 0, 0, 9, 9]
    np.testing.assert_array_equal(
        color_map(custom).reshape(-1), get_color_map_list(256, custom))
    label = np.random.RandomState(0).randint(0, 256, (7, 13)).astype('uint8')
    (tmp_path / 'x.png').write_bytes(palette_png(label, color_map()))
    image = Image.open(tmp_path / 'x.png')
    assert image.mode == 'P'
    np.testing.assert_array_equal(np.array(image), label)
    assert image.getpalette()[:768] == get_color_map_list(256)
