"""``export --layout paddlex``: the model directory PaddleX 3.x serves.

For every model family (paddleseg_ctx/testing/families.yml, light models
with random weights) the export writes ``inference.json`` +
``inference.pdiparams`` + ``inference.yml``, whose fields are checked here
against what PaddleX 3.7's ``SegRunnerPredictor`` reads (written out by hand
below, from paddlex/inference/models/semantic_segmentation/predictor.py).
Where a PaddleX environment is given (``PADDLEX_PYTHON``: the python of a
virtual environment with ``paddlepaddle==3.3.1`` and ``paddlex[cv]``, never
this one), PaddleX's own predictor runs each export in a subprocess and its
label maps are compared with ``python -m paddleseg_ctx.infer``'s.
"""
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image

from paddleseg_ctx.deploy import export_model, paddlex_transforms
from paddleseg_ctx.testing.families import FAMILIES, build_light
from paddleseg_ctx.testing.random_weights import randomize

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO_CONFIG = 'gcnet_resnet18vd_os16_synthetic_128x128_200.yml'
NUM_CLASSES = 4
TARGET = [96, 64]  # (w, h) of the Resize
# (w, h): resized down, at the target (no resize: pixels identical),
# resized up in one axis and down in the other.
IMAGE_SIZES = [(129, 97), (96, 64), (50, 80)]
TRANSFORMS = [
    {'type': 'Resize', 'target_size': TARGET},
    {'type': 'Normalize', 'mean': [0.4, 0.5, 0.6], 'std': [0.2, 0.3, 0.25]},
]
# What PaddleX must read from inference.yml for TRANSFORMS: every Resize
# argument explicit (PaddleX's defaults are keep_ratio=True, size_divisor=32,
# PaddleSeg's False and None), Normalize with 3-element mean and std.
PADDLEX_TRANSFORMS = [
    {'type': 'Resize', 'target_size': [96, 64], 'keep_ratio': False,
     'size_divisor': None, 'interp': 'LINEAR'},
    {'type': 'Normalize', 'mean': [0.4, 0.5, 0.6], 'std': [0.2, 0.3, 0.25]},
]
# Fraction of pixels that may differ on a resized image: PaddleX resizes the
# uint8 image (cv2 rounds the result to integers), PaddleSeg's Compose (and
# infer) the float32 one, so inputs differ by up to half a grey level.
RESIZED_TOLERANCE = 0.01


def paddlex_python():
    return os.environ.get('PADDLEX_PYTHON')


@pytest.fixture(scope='module')
def images(tmp_path_factory):
    """Smooth random colour images (blurred noise: regions, not speckle),
    ``i.png``, and each resized to TARGET on its uint8 values with cv2's
    bilinear resize, what PaddleX's Resize does, ``r<i>.png``."""
    root = tmp_path_factory.mktemp('images')
    rng = np.random.RandomState(0)
    paths = []
    for i, (w, h) in enumerate(IMAGE_SIZES):
        image = cv2.GaussianBlur(
            rng.randint(0, 256, (h, w, 3)).astype('uint8'), (9, 9), 0)
        cv2.imwrite(str(root / '{}.png'.format(i)), image)
        cv2.imwrite(str(root / 'r{}.png'.format(i)),
                    cv2.resize(image, tuple(TARGET),
                               interpolation=cv2.INTER_LINEAR))
        paths.append(str(root / '{}.png'.format(i)))
    return paths


@pytest.fixture(scope='module')
def exports(tmp_path_factory):
    """Every family's light model, random weights, exported for PaddleX."""
    dirs = {}
    for name in sorted(FAMILIES):
        model = build_light(name, NUM_CLASSES)
        randomize(model)
        model.eval()
        save_dir = str(tmp_path_factory.mktemp(name))
        export_model(model, save_dir, TRANSFORMS, layout='paddlex')
        dirs[name] = save_dir
    return dirs


def read_yml(save_dir):
    with open(os.path.join(save_dir, 'inference.yml')) as f:
        return yaml.safe_load(f)


def test_layout_is_what_paddlex_reads(exports):
    for name, save_dir in exports.items():
        assert sorted(os.listdir(save_dir)) == [
            'inference.json', 'inference.pdiparams', 'inference.yml'], name
        config = read_yml(save_dir)
        # PaddleX looks the predictor up by Global.model_name.
        assert config['Global'] == {'model_name': FAMILIES[name].type}, name
        deploy = config['Deploy']
        assert deploy['transforms'] == PADDLEX_TRANSFORMS, name
        assert deploy['model'] == 'inference.json'
        assert deploy['params'] == 'inference.pdiparams'
        assert deploy['output_op'] == 'argmax'


def test_paddlex_transforms_translation():
    source = 'test.yml'
    # ResizeByLong(L): keep-ratio fit into an L x L square, the same size.
    assert paddlex_transforms(
        [{'type': 'ResizeByLong', 'long_size': 512}], source) == [
            {'type': 'Resize', 'target_size': [512, 512], 'keep_ratio': True,
             'size_divisor': None, 'interp': 'LINEAR'},
            {'type': 'Normalize', 'mean': [0.0] * 3, 'std': [1 / 255.0] * 3}]
    # PaddleSeg's Normalize defaults, one-value lists, CUBIC's PaddleX name.
    assert paddlex_transforms(
        [{'type': 'Normalize'},
         {'type': 'Resize', 'target_size': [8, 8], 'interp': 'CUBIC'}],
        source) == [
            {'type': 'Resize', 'target_size': [8, 8], 'keep_ratio': False,
             'size_divisor': None, 'interp': 'BICUBIC'},
            {'type': 'Normalize', 'mean': [0.5] * 3, 'std': [0.5] * 3}]
    with pytest.raises(ValueError, match="test.yml: transform 'Padding' "
                       'cannot be written for PaddleX'):
        paddlex_transforms([{'type': 'Padding', 'target_size': 8}], source)
    with pytest.raises(ValueError, match='one Resize and one Normalize'):
        paddlex_transforms([{'type': 'Resize'}, {'type': 'Resize'}], source)
    with pytest.raises(ValueError, match='interp'):
        paddlex_transforms([{'type': 'Resize', 'interp': 'RANDOM'}], source)


def test_paddlex_layout_needs_argmax():
    model = build_light('ginet', NUM_CLASSES)
    with pytest.raises(ValueError, match='needs output_op argmax'):
        export_model(model, 'unused', TRANSFORMS, layout='paddlex',
                     output_op='softmax')


def run_export(tmp_path, export_transforms, *args):
    """``python -m paddleseg_ctx.export --layout paddlex`` on the demo config
    with ``export.transforms`` replaced."""
    config = tmp_path / 'config.yml'
    config.write_text(yaml.safe_dump({
        '_base_': os.path.join(ROOT, 'configs', 'demo', DEMO_CONFIG),
        'export': {'transforms': export_transforms}}))
    return subprocess.run(
        [sys.executable, '-m', 'paddleseg_ctx.export', '--config',
         str(config), '--layout', 'paddlex', '--save_dir',
         str(tmp_path / 'out')] + list(args),
        capture_output=True, text=True, timeout=300, cwd=str(tmp_path))


def test_export_cli_writes_the_paddlex_layout(tmp_path):
    proc = run_export(tmp_path, [{'type': 'ResizeByLong', 'long_size': 64},
                                 {'type': 'Normalize'}],
                      '--paddlex_model_name', 'GCNet_demo')
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(os.listdir(tmp_path / 'out')) == [
        'inference.json', 'inference.pdiparams', 'inference.yml']
    config = read_yml(str(tmp_path / 'out'))
    assert config['Global'] == {'model_name': 'GCNet_demo'}
    assert config['Deploy']['transforms'] == [
        {'type': 'Resize', 'target_size': [64, 64], 'keep_ratio': True,
         'size_divisor': None, 'interp': 'LINEAR'},
        {'type': 'Normalize', 'mean': [0.5] * 3, 'std': [0.5] * 3}]


def test_export_cli_refuses_an_untranslatable_config(tmp_path):
    proc = run_export(tmp_path, [{'type': 'LimitLong', 'max_long': 512},
                                 {'type': 'Normalize'}])
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "transform 'LimitLong' cannot be written for PaddleX" in (
        proc.stdout + proc.stderr)
    assert not (tmp_path / 'out').exists()
    proc = run_export(tmp_path, [{'type': 'Normalize'}], '--output_op', 'none')
    assert proc.returncode == 2
    assert '--layout paddlex needs --output_op argmax' in proc.stderr


def infer_labels(save_dir, images, out_dir):
    """``python -m paddleseg_ctx.infer`` on the export's inference.yml, on
    every image of the images' directory: {file name: label map}."""
    image_dir = os.path.dirname(images[0])
    proc = subprocess.run(
        [sys.executable, '-m', 'paddleseg_ctx.infer', '--config',
         os.path.join(save_dir, 'inference.yml'), '--image_path', image_dir,
         '--save_dir', out_dir, '--cpu_threads', '1'],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    labels_dir = os.path.join(out_dir, 'pseudo_color_prediction')
    return {name: np.array(Image.open(os.path.join(labels_dir, name)))
            for name in os.listdir(labels_dir)}


def nearest(label, size):
    """``label`` resized to ``size`` = (w, h) by nearest neighbour: source
    index floor(i * in / out)."""
    rows = np.arange(size[1]) * label.shape[0] // size[1]
    cols = np.arange(size[0]) * label.shape[1] // size[0]
    return label[rows[:, None], cols]


# Runs in PaddleX's environment: PaddleX's predictor on each export.  A model
# name PaddleX does not list is refused (the message is recorded), then
# registered with SegRunnerPredictor, PaddleX's own segmentation predictor.
# run_mode 'paddle': PaddleX's CPU default 'mkldnn' enables every oneDNN
# pass, which Paddle 3.3.1 cannot build for some models (README).
PADDLEX_SCRIPT = '''
import json, os, sys
import numpy as np
import paddlex
from paddlex.inference.models.bindings import register_predictor_binding_map
from paddlex.inference.models.semantic_segmentation import SegPredictor

job = json.load(open(sys.argv[1]))
report, refused = {}, {}
for name, model_dir in job['exports'].items():
    model_name = job['model_names'][name]
    entry = report[name] = {}
    if model_name not in refused:  # two rows may share a model class
        try:
            paddlex.create_predictor(model_name, model_dir=model_dir,
                                     device='cpu')
            refused[model_name] = None
        except Exception as err:
            refused[model_name] = '{}: {}'.format(type(err).__name__, err)
        register_predictor_binding_map(SegPredictor,
                                       {'paddle_static': [model_name]})
    entry['refused'] = refused[model_name]
    predictor = paddlex.create_predictor(
        model_name, model_dir=model_dir, device='cpu',
        engine_config={'run_mode': 'paddle', 'cpu_threads': 1})
    entry['labels'] = []
    for i, result in enumerate(predictor.predict(job['images'])):
        path = os.path.join(job['out'], '{}_{}.npy'.format(name, i))
        np.save(path, np.asarray(result['pred'])[0])
        entry['labels'].append(path)
json.dump(report, open(os.path.join(job['out'], 'report.json'), 'w'))
'''


@pytest.fixture(scope='module')
def paddlex_report(exports, images, tmp_path_factory):
    python = paddlex_python()
    if not python:
        pytest.skip('PADDLEX_PYTHON is not set: give the python of a virtual '
                    'environment with paddlepaddle==3.3.1 and paddlex[cv] 3.x '
                    '(python -m venv /work/paddlex-venv; pip install ...) to '
                    'run PaddleX\'s predictor on the exports')
    out = tmp_path_factory.mktemp('paddlex')
    job = out / 'job.json'
    job.write_text(json.dumps({
        'exports': exports, 'images': images, 'out': str(out),
        'model_names': {name: FAMILIES[name].type for name in exports}}))
    script = out / 'run_paddlex.py'
    script.write_text(PADDLEX_SCRIPT)
    # Nothing of this environment may leak into PaddleX's.
    env = {key: value for key, value in os.environ.items()
           if key not in ('PYTHONPATH', 'VIRTUAL_ENV')}
    proc = subprocess.run([python, str(script), str(job)], capture_output=True,
                          text=True, timeout=900, env=env, cwd=str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(out / 'report.json') as f:
        return json.load(f)


def test_paddlex_refuses_unlisted_model_names(paddlex_report):
    """PaddleX 3.x picks the predictor by Global.model_name from a fixed list
    (paddlex/modules/semantic_segmentation/model_list.py); our names are not
    in it, so a plain create_predictor refuses them until registered."""
    for name, entry in paddlex_report.items():
        assert entry.get('refused') == (
            'ValueError: No engine bindings registered for model {!r}.'.format(
                FAMILIES[name].type)), name


def test_paddlex_label_maps_equal_infer(paddlex_report, exports, images,
                                        tmp_path):
    """PaddleX's label maps are infer's: exactly where no resize happens;
    on resized images exactly infer's on the image PaddleX's Resize makes
    (uint8, rounded) brought back to the image's size; and, at most
    RESIZED_TOLERANCE of the pixels apart, infer's on the image itself."""
    for name, save_dir in sorted(exports.items()):
        ours = infer_labels(save_dir, images, str(tmp_path / name))
        theirs = [np.load(path) for path in paddlex_report[name]['labels']]
        for i, (size, their) in enumerate(zip(IMAGE_SIZES, theirs)):
            our = ours['{}.png'.format(i)]
            assert their.shape == our.shape == size[::-1], name
            if list(size) == TARGET:
                np.testing.assert_array_equal(their, our, err_msg=name)
            np.testing.assert_array_equal(
                their, nearest(ours['r{}.png'.format(i)], size),
                err_msg='{} {}'.format(name, size))
            differ = np.mean(our != their)
            assert differ <= RESIZED_TOLERANCE, (name, size, differ)
        # A model predicting one class everywhere would prove little.
        assert len(np.unique(np.concatenate(
            [label.ravel() for label in ours.values()]))) > 1, name


# PaddleX's CPU default, run_mode 'mkldnn', in PaddleX's environment.
PADDLEX_DEFAULT_SCRIPT = '''
import sys
import paddlex
from paddlex.inference.models.bindings import register_predictor_binding_map
from paddlex.inference.models.semantic_segmentation import SegPredictor

register_predictor_binding_map(SegPredictor, {'paddle_static': [sys.argv[1]]})
predictor = paddlex.create_predictor(sys.argv[1], model_dir=sys.argv[2],
                                     device='cpu')
list(predictor.predict(sys.argv[3:]))
'''


def test_paddlex_cpu_default_run_mode_fails(paddlex_report, exports, images,
                                            tmp_path):
    """Why the README says run_mode 'paddle' on CPU: PaddleX's default there
    ('mkldnn', every oneDNN pass) cannot build GINet on Paddle 3.3.1 (a
    oneDNN pass breaks a broadcast; other families fail on other oneDNN
    errors or crash).  When this fails, Paddle is fixed: update the README's
    PaddleX paragraph."""
    script = tmp_path / 'default_run_mode.py'
    script.write_text(PADDLEX_DEFAULT_SCRIPT)
    env = {key: value for key, value in os.environ.items()
           if key not in ('PYTHONPATH', 'VIRTUAL_ENV')}
    proc = subprocess.run(
        [paddlex_python(), str(script), FAMILIES['ginet'].type,
         exports['ginet']] + images[:1], capture_output=True, text=True,
        timeout=300, env=env, cwd=str(tmp_path))
    assert proc.returncode != 0
    assert 'Broadcast dimension mismatch' in proc.stderr, proc.stderr[-3000:]
