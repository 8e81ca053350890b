"""``val`` and ``predict`` with ``--backend paddle|onnxruntime``
(paddleseg_ctx.deploy.exported) against ``--backend dygraph``.

A GCNet (ResNet-18, OS8) with random weights on a generated data set of odd
size: every protocol must give the dygraph mIoU and class IoUs to 1e-4 and
predict the same label PNGs; the export is cached and reused; missing
packages and failed exports end the command with a message.
"""
import os
import sys
import time
import types

import numpy as np
import paddle
import pytest
import yaml
from PIL import Image

from cli_utils import (load_model, make_data, save_random_weights,
                       write_config)
from paddleseg_ctx.cli import predict, val
from paddleseg_ctx.deploy import export_model, exported

pytest.importorskip('paddle2onnx')
pytest.importorskip('onnxruntime')

SIZE = (71, 53)  # (w, h), not multiples of 8
MODEL = {
    'type': 'CtxGCNet',
    'backbone': {'type': 'ResNet18_vd', 'output_stride': 8},
    'gc_channels': 32,
}
# PaddleSeg's flags: slide windows over 3 scales, each also flipped.
PADDLESEG_AUG = ['--aug_eval', '--scales', '0.75', '1.25',
                 '--flip_horizontal', '--is_slide', '--crop_size', '53',
                 '41', '--stride', '37', '29']
ZOO_ROWS = {
    # ssseg: one resize of the feature-resolution logits (raw_logits), then
    # for ms_flip slide windows, probabilities averaged.
    'ssseg': {'test_resize': 'fit', 'img_scale': [64, 48], 'mode': 'whole',
              'ms_scales': [0.5, 1.0], 'merge': 'logits', 'miou': 'nanmean',
              'tta': {'mode': 'slide', 'slide_crop_size': [40, 30],
                      'slide_stride': [30, 22], 'merge': 'probs'}},
    # mmseg: slide, the small windows of the 0.5 scale zero-padded.
    'mmseg': {'test_resize': 'fit', 'img_scale': [69, 41], 'mode': 'slide',
              'slide_crop_size': [33, 33], 'slide_stride': [21, 21],
              'slide_pad': True, 'ms_scales': [0.5, 1.0], 'merge': 'probs',
              'miou': 'nanmean'},
}


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp('backends')
    data = make_data(root / 'data', num_train=1, num_val=3, size=SIZE)
    (root / 'configs').mkdir()
    configs, entries = {}, []
    for source, row in ZOO_ROWS.items():
        name = 'configs/gcnet_{}.yml'.format(source)
        configs[source] = write_config(root / name, data, model=MODEL)
        entries.append({
            'config': name, 'model': 'GCNet', 'source': source,
            'backbone': 'ResNet18_vd', 'dataset': 'cityscapes',
            'crop_size': [32, 32], 'iters': 1, 'gpus': None,
            'batch_size_per_gpu': 1, 'weights': 'https://example.com/w.pth',
            'published': {'miou': 50.0, 'miou_flip': None,
                          'miou_ms_flip': 51.0},
            'eval': row,
        })
    zoo = root / 'configs' / 'model_zoo.yml'
    zoo.write_text(yaml.safe_dump(entries))
    config = configs['ssseg']
    weights = save_random_weights(config, root / 'gcnet.pdparams')
    return dict(root=root, data=data, config=config, configs=configs,
                zoo=str(zoo), weights=weights)


@pytest.fixture(autouse=True)
def cache(setup, monkeypatch):
    """Every test exports into the module's own cache directory."""
    path = str(setup['root'] / 'cache')
    monkeypatch.setattr(exported, '_cache_root', lambda: path)
    return path


REAL_TIME_FORWARD = exported._time_forward


@pytest.fixture(autouse=True)
def forward_ms(monkeypatch):
    """``--backend auto``'s timings, fixed so that its choice is known:
    {runner name: ms}, which a test may change (before the weights it runs
    are timed: the times are kept with each export)."""
    times = {'onnxruntime': 10.0, 'paddle': 20.0}
    monkeypatch.setattr(exported, '_time_forward',
                        lambda candidate: times[candidate.runner.name])
    return times


def run_val(setup, backend, *flags, config=None, model_path=None):
    """``(mIoU, class IoU)`` of ``python -m paddleseg_ctx.val``."""
    result = val.main(
        ['--config', config or setup['config'], '--model_path',
         model_path or setup['weights'], '--device', 'cpu', '--backend',
         backend] + list(flags), zoo_file=setup['zoo'])
    return result[0], np.asarray(result[2])


def assert_same_miou(actual, expected, what):
    np.testing.assert_allclose(actual[0], expected[0], atol=1e-4, err_msg=what)
    np.testing.assert_allclose(actual[1], expected[1], atol=1e-4, err_msg=what)


# (config key, flags): whole image; PaddleSeg's slide + ms + flip; the
# ssseg whole-image column (raw logits resized once) and ms+flip slide
# column; mmseg's padded slide ms+flip column.
PROTOCOLS = {
    'whole': ('ssseg', []),
    'paddleseg_slide_ms_flip': ('ssseg', PADDLESEG_AUG),
    'ssseg_single': ('ssseg', ['--protocol', 'single']),
    'ssseg_ms_flip': ('ssseg', ['--protocol', 'ms_flip']),
    'mmseg_ms_flip': ('mmseg', ['--protocol', 'ms_flip']),
}


@pytest.fixture(scope='module')
def dygraph(setup):
    """The dygraph result of each of :data:`PROTOCOLS`, run once."""
    return {name: run_val(setup, 'dygraph', *flags,
                          config=setup['configs'][source])
            for name, (source, flags) in PROTOCOLS.items()}


@pytest.mark.parametrize('backend', ['onnxruntime', 'paddle'])
def test_val_gives_the_dygraph_miou(setup, dygraph, backend):
    for name, (source, flags) in PROTOCOLS.items():
        actual = run_val(setup, backend, *flags,
                         config=setup['configs'][source])
        assert_same_miou(actual, dygraph[name], '{} {}'.format(backend, name))


def test_val_runs_an_export_directory(setup, dygraph, tmp_path):
    model = load_model(setup['config'], setup['weights'])
    export_model(model, str(tmp_path), [{'type': 'Normalize'}], 'both',
                 output_op='none')
    for backend, name in (('onnxruntime', 'mmseg_ms_flip'),
                          ('paddle', 'whole')):
        source, flags = PROTOCOLS[name]
        actual = run_val(setup, backend, *flags,
                         config=setup['configs'][source],
                         model_path=str(tmp_path))
        assert_same_miou(actual, dygraph[name], '{} {}'.format(backend, name))


def test_predict_writes_the_dygraph_label_maps(setup, tmp_path):
    image_dir = os.path.join(setup['data']['dataset_root'], 'images')
    labels = {}
    for backend in ('dygraph', 'onnxruntime', 'paddle'):
        save_dir = tmp_path / backend
        predict.main(['--config', setup['config'], '--model_path',
                      setup['weights'], '--image_path', image_dir,
                      '--save_dir', str(save_dir), '--device', 'cpu',
                      '--backend', backend, '--aug_pred',
                      '--flip_horizontal'])
        pngs = sorted((save_dir / 'pseudo_color_prediction').rglob('*.png'))
        assert len(pngs) == 4  # 1 train + 3 val images
        labels[backend] = [np.array(Image.open(p)) for p in pngs]
    for backend in ('onnxruntime', 'paddle'):
        for actual, expected in zip(labels[backend], labels['dygraph']):
            # Random weights: allow a rare near tie to go the other way.
            assert np.mean(actual != expected) < 1e-3, backend


def test_the_export_is_reused(setup, cache, monkeypatch, capsys):
    run_val(setup, 'onnxruntime')
    entries = os.listdir(cache)
    capsys.readouterr()

    def no_export(*args, **kwargs):
        raise AssertionError('exported again')

    monkeypatch.setattr(exported, 'save_inference_model', no_export)
    run_val(setup, 'onnxruntime')
    assert os.listdir(cache) == entries
    assert 'Reusing the exported model in' in capsys.readouterr().out
    # Other weights are another export.
    other = save_random_weights(setup['config'],
                                setup['root'] / 'other.pdparams', seed=1)
    with pytest.raises(exported.BackendError, match='exported again'):
        run_val(setup, 'onnxruntime', model_path=other)


@pytest.mark.parametrize('module', ['onnxruntime', 'paddle2onnx'])
def test_missing_package_is_one_message(setup, monkeypatch, module):
    monkeypatch.setitem(sys.modules, module, None)  # import fails
    with pytest.raises(exported.BackendError) as error:
        run_val(setup, 'onnxruntime')
    message = str(error.value)
    assert message.startswith('--backend onnxruntime needs ' + module)
    assert 'pip install ' + module in message


def test_failed_export_is_one_message_and_leaves_no_files(setup, cache,
                                                          monkeypatch):
    def fail(*args, **kwargs):
        raise ValueError('op foo has no converter')

    monkeypatch.setattr(exported, 'export_onnx', fail)
    entries = set(os.listdir(cache)) if os.path.isdir(cache) else set()
    other = save_random_weights(setup['config'],
                                setup['root'] / 'third.pdparams', seed=2)
    with pytest.raises(exported.BackendError) as error:
        run_val(setup, 'onnxruntime', model_path=other)
    assert str(error.value).startswith(
        'Could not export the model for onnx: ValueError: op foo has '
        'no converter. Use --backend dygraph')
    assert set(os.listdir(cache)) == entries


def test_dygraph_refuses_an_export_directory(setup, tmp_path):
    (tmp_path / 'deploy.yaml').write_text('Deploy: {onnx: model.onnx}\n')
    with pytest.raises(exported.BackendError, match='is an exported model; run it with '
                       '--backend paddle or onnxruntime'):
        run_val(setup, 'dygraph', model_path=str(tmp_path))


# --backend auto: the fastest backend whose output equals dygraph's on CPU.

def test_auto_runs_onnxruntime_when_it_gives_the_dygraph_answer(
        setup, dygraph, capsys):
    actual = run_val(setup, 'auto')
    assert_same_miou(actual, dygraph['whole'], 'auto')
    assert '--backend auto: onnxruntime' in capsys.readouterr().out


def shifted_runner(runner_class):
    """``runner_class`` whose output favours class 0 everywhere: labels
    that are not dygraph's."""

    class Shifted(runner_class):
        def __call__(self, x):
            out = super().__call__(x).copy()
            out[:, 0] += 100.0
            return out

    return Shifted


def test_auto_skips_a_backend_whose_answer_differs(setup, dygraph, monkeypatch,
                                                   capsys):
    monkeypatch.setattr(exported, 'OnnxRunner',
                        shifted_runner(exported.OnnxRunner))
    weights = save_random_weights(setup['config'],
                                  setup['root'] / 'auto1.pdparams', seed=11)
    actual = run_val(setup, 'auto', model_path=weights)
    out = capsys.readouterr().out
    assert ("--backend auto: not onnxruntime: 100.000% of the probe's labels "
            'differ') in out
    assert '--backend auto: paddle' in out
    assert_same_miou(actual, run_val(setup, 'dygraph', model_path=weights),
                     'auto skipping onnxruntime')


def test_auto_falls_back_to_dygraph(setup, dygraph, monkeypatch, capsys):
    for name in ('OnnxRunner', 'InferenceRunner'):
        monkeypatch.setattr(exported, name,
                            shifted_runner(getattr(exported, name)))
    weights = save_random_weights(setup['config'],
                                  setup['root'] / 'auto2.pdparams', seed=12)
    actual = run_val(setup, 'auto', model_path=weights)
    out = capsys.readouterr().out
    assert '--backend auto: dygraph, as no faster backend gives its answer' \
        in out
    assert out.count("of the probe's labels differ") == 2
    assert_same_miou(actual, run_val(setup, 'dygraph', model_path=weights),
                     'auto fallen back to dygraph')


def test_auto_without_onnxruntime_runs_paddle_inference(setup, dygraph,
                                                       monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, 'onnxruntime', None)  # not installed
    actual = run_val(setup, 'auto')
    out = capsys.readouterr().out
    assert '--backend auto: paddle' in out
    assert ('--backend auto: not onnxruntime: --backend onnxruntime needs '
            'onnxruntime') in out
    assert_same_miou(actual, dygraph['whole'], 'auto without onnxruntime')


def test_auto_on_gpu_is_dygraph(setup, monkeypatch, capsys):
    monkeypatch.setattr(exported, '_device', lambda: 'gpu')

    def no_export(*args, **kwargs):
        raise AssertionError('exported on GPU')

    monkeypatch.setattr(exported, '_exported', no_export)
    run_val(setup, 'auto')
    assert '--backend auto: dygraph (on GPU).' in capsys.readouterr().out


def test_auto_runs_the_faster_correct_backend(setup, dygraph, forward_ms,
                                              cache, capsys):
    forward_ms.update(onnxruntime=30.0, paddle=12.0)
    weights = save_random_weights(setup['config'],
                                  setup['root'] / 'auto3.pdparams', seed=13)
    actual = run_val(setup, 'auto', model_path=weights)
    assert ('--backend auto: paddle (12 ms per 256x256 image; onnxruntime '
            '30 ms;') in capsys.readouterr().out
    assert_same_miou(actual, run_val(setup, 'dygraph', model_path=weights),
                     'auto choosing paddle')


def test_auto_times_each_backend_once_per_machine(setup, dygraph, cache,
                                                  monkeypatch, capsys):
    monkeypatch.setattr(exported, '_time_forward', REAL_TIME_FORWARD)
    weights = save_random_weights(setup['config'],
                                  setup['root'] / 'auto4.pdparams', seed=14)
    run_val(setup, 'auto', model_path=weights)
    out = capsys.readouterr().out
    memos = {}
    for path in os.listdir(cache):
        memo = os.path.join(cache, path, 'speed.yaml')
        if os.path.isfile(memo) and os.path.getmtime(memo) >= os.path.getmtime(
                weights):
            with open(memo) as f:
                memos[path] = yaml.safe_load(f)
    assert len(memos) == 2, memos  # one export per backend, each timed
    (machine, ), = {tuple(m) for m in memos.values()}
    assert machine == '{}, {} thread(s)'.format(exported.cpu_info().model,
                                               exported.cpu_cores())
    times = sorted(m[machine] for m in memos.values())
    assert times[0] > 0
    chosen = out.split('--backend auto: ')[-1]
    assert chosen.split(' (')[1].startswith('{:.0f} ms'.format(times[0]))

    def no_timing(candidate):
        raise AssertionError('timed again')

    monkeypatch.setattr(exported, '_time_forward', no_timing)
    run_val(setup, 'auto', model_path=weights)


DAMAGED = ['[1, 2]\n', 'a: [b\n', 'm: slow\n', "''\n"]


@pytest.mark.parametrize('text', DAMAGED)
def test_a_damaged_timing_file_is_timed_again(tmp_path, forward_ms, text):
    memo = tmp_path / 'speed.yaml'
    memo.write_text(text)
    candidate = types.SimpleNamespace(
        runner=types.SimpleNamespace(name='paddle'))
    assert exported._forward_ms('paddle', candidate, str(tmp_path), 3) == 20.0
    machine = '{}, 3 thread(s)'.format(exported.cpu_info().model)
    assert yaml.safe_load(memo.read_text()) == {machine: 20.0}


@pytest.mark.parametrize('text', DAMAGED + ['differs: 3\n', '{}\n'])
def test_a_damaged_probe_verdict_is_checked_again(tmp_path, text):
    memo = tmp_path / 'probe.yaml'
    memo.write_text(text)
    logits = np.zeros([1, 2, 4, 5], 'float32')
    logits[:, 0] = 1

    class Model:  # dygraph: class 0 everywhere
        def eval(self):
            pass

        def __call__(self, x):
            return [paddle.to_tensor(logits)]

    def candidate(x):  # class 1 everywhere
        return [paddle.to_tensor(logits[:, ::-1].copy())]

    assert exported._differs_from_dygraph(Model(), candidate,
                                          str(tmp_path)) == (
        '100.000% of the probe\'s labels differ')
    assert yaml.safe_load(memo.read_text()) == {
        'differs': '100.000% of the probe\'s labels differ'}


@pytest.mark.parametrize('text', DAMAGED + ['[yes]\n', '[1, why]\n'])
def test_a_damaged_onednn_verdict_is_checked_again(tmp_path, monkeypatch,
                                                   text):
    memo = tmp_path / 'onednn.yaml'
    memo.write_text(text)
    monkeypatch.setattr(exported, 'onednn_works',
                        lambda program, params: (False, 'it crashed'))
    assert exported._use_onednn('m.json', 'm.pdiparams', 'cpu',
                                str(tmp_path)) is False
    assert yaml.safe_load(memo.read_text()) == [False, 'it crashed']


def test_time_forward_measures_a_known_duration():
    calls = []

    def sleeper(x):
        calls.append(x.shape)
        time.sleep(0.05)

    ms = REAL_TIME_FORWARD(sleeper)
    assert 50 <= ms < 500
    assert calls == [exported.TIMING_SHAPE] * (1 + exported.TIMING_RUNS)


def test_auto_keeps_its_verdict_with_the_export(setup, dygraph, monkeypatch):
    run_val(setup, 'auto')  # the probe ran for these weights (or earlier)

    def no_probe(*args, **kwargs):
        raise AssertionError('probed again')

    monkeypatch.setattr(exported, 'logits_differ', no_probe)
    monkeypatch.setattr(exported, '_time_forward', no_probe)
    assert_same_miou(run_val(setup, 'auto'), dygraph['whole'], 'auto again')


def test_auto_runs_an_export_directory_with_onnxruntime(setup, dygraph,
                                                        tmp_path, capsys):
    model = load_model(setup['config'], setup['weights'])
    export_model(model, str(tmp_path), [{'type': 'Normalize'}], 'both',
                 output_op='none')
    actual = run_val(setup, 'auto', model_path=str(tmp_path))
    assert_same_miou(actual, dygraph['whole'], 'auto export directory')
    assert '--backend auto: onnxruntime for the export' in \
        capsys.readouterr().out


def test_default_backend_is_auto_unless_the_environment_says(monkeypatch):
    monkeypatch.delenv(exported.BACKEND_ENV, raising=False)
    for command in (val, predict):
        assert command.build_parser().get_default('backend') == 'auto'
    monkeypatch.setenv(exported.BACKEND_ENV, 'paddle')
    assert val.build_parser().get_default('backend') == 'paddle'
    monkeypatch.setenv(exported.BACKEND_ENV, 'tensorrt')
    with pytest.raises(exported.BackendError,
                       match="PADDLESEG_CTX_BACKEND='tensorrt' is not a "
                       'backend; use one of auto, dygraph, paddle, '
                       'onnxruntime'):
        val.build_parser()


def test_probe_comparison_hand_checked():
    expected = np.zeros([1, 3, 2, 2], 'float32')
    expected[0, 1] = 10.0  # label 1 everywhere, logit range 10
    assert exported.logits_differ(expected.copy(), expected) is None
    close = expected.copy()
    close[0, 0, 0, 0] = 0.009  # 0.9e-3 of the range
    assert exported.logits_differ(close, expected) is None
    far = expected.copy()
    far[0, 0, 0, 0] = 0.011
    assert exported.logits_differ(far, expected) == \
        'logits differ by 0.0011 of their range (> 0.001)'
    flipped = expected.copy()
    flipped[0, 2, 1, 1] = 11.0  # one of four labels changes
    assert exported.logits_differ(flipped, expected) == \
        "25.000% of the probe's labels differ"
    assert exported.logits_differ(expected[:, :2], expected) == \
        'shape [1, 2, 2, 2] instead of [1, 3, 2, 2]'
