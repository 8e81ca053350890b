"""Two gloo ranks on CPU (``paddle.distributed.launch``) training our models
through ``paddleseg_ctx.train``: a SIGKILLed and resumed run ends with the
weights of the uninterrupted one, the ranks stay in step and share one run
seed, a NaN on one rank stops both with one message, and every family of
the zoo trains on two ranks; a checkpoint of another process count resumes
with rank 0's random state and a warning.

Each rank runs ``tests/rank_process.py``, which starts every rank from its
own random state and its own would-be run seed, both repeatable: a rank that
resumed with rank 0's random state or seed would change the weights.
"""
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import numpy as np
import paddle
import pytest
from paddleseg.utils import logger

import training_runs as runs
from cli_utils import make_data, write_config
from paddleseg_ctx.testing.families import FAMILIES, light_config
from paddleseg_ctx.training.checkpoints import complete_checkpoints, read_state
from paddleseg_ctx.training.hooks import TrainingRun

HERE = pathlib.Path(__file__).resolve().parent
RANK_PROCESS = str(HERE / 'rank_process.py')
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join(
    [str(HERE.parent)] + [p for p in [os.environ.get('PYTHONPATH')] if p]))
TIMEOUT = 240


def launch_command(log_dir, train_args, inject=()):
    return [sys.executable, '-m', 'paddle.distributed.launch',
            '--nproc_per_node', '2', '--log_dir', str(log_dir), RANK_PROCESS
            ] + list(inject) + [str(a) for a in train_args]


def launch(log_dir, train_args, inject=(), check=True):
    """Run two ranks to their end; returns (exit status, [log of rank 0,
    log of rank 1])."""
    proc = subprocess.run(launch_command(log_dir, train_args, inject),
                          env=ENV, capture_output=True, text=True,
                          timeout=TIMEOUT)
    logs = [worker_log(log_dir, rank) for rank in (0, 1)]
    assert not check or proc.returncode == 0, 'launch exited with {}:\n{}'.format(
        proc.returncode, logs[0][-3000:] + logs[1][-3000:] + proc.stderr[-2000:])
    return proc.returncode, logs


def worker_log(log_dir, rank):
    path = pathlib.Path(log_dir) / 'workerlog.{}'.format(rank)
    return path.read_text() if path.exists() else ''


def launch_until_killed(log_dir, train_args, marker):
    """Start two ranks, SIGKILL the launcher and both ranks as soon as
    ``marker`` exists."""
    proc = subprocess.Popen(launch_command(log_dir, train_args), env=ENV,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + TIMEOUT
    while not marker.exists():
        if proc.poll() is not None or time.time() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            raise AssertionError('training ended before {} existed:\n{}'.format(
                marker, worker_log(log_dir, 0)[-3000:]))
        time.sleep(0.02)
    assert proc.poll() is None, 'training finished before it could be killed'
    os.killpg(proc.pid, signal.SIGKILL)  # the launcher's session: both ranks too
    proc.wait()


def rank_weights(save_dir, rank):
    return {k: v.numpy() for k, v in paddle.load(str(
        save_dir / 'rank_weights' / 'rank{}_end.pdparams'.format(rank))).items()}


def run_seeds(log):
    return re.findall(r'Run seed \(data order and augmentations\): (\d+)', log)


def is_bn_statistic(name):
    return name.endswith(('_mean', '_variance'))


# -- kill and resume -------------------------------------------------------

ITERS = 8  # batch 2 per rank, 12 images: 3 steps per epoch; iter_4 is mid-epoch


def gcnet_args(config, save_dir, *flags):
    """training_runs' CtxGCNet (dropout, random augmentations), no --seed."""
    return ['--config', config, '--device', 'cpu', '--save_dir', save_dir,
            '--iters', ITERS, '--batch_size', 2, '--save_interval', 2,
            '--log_iters', 2, '--num_workers', 0, '--save_rank_weights'
            ] + list(flags)


def test_killed_and_resumed_two_ranks_end_as_the_uninterrupted_run(tmp_path):
    setup = runs.setup(str(tmp_path))
    reference = tmp_path / 'uninterrupted'
    _, logs = launch(tmp_path / 'log_uninterrupted',
                     gcnet_args(setup.config, reference))
    seeds = run_seeds(logs[0])  # PaddleSeg's logger writes on rank 0 only
    assert len(seeds) == 1, logs[0][-3000:]

    resumed = tmp_path / 'resumed'
    launch_until_killed(tmp_path / 'log_killed',
                        gcnet_args(setup.config, resumed),
                        resumed / 'iter_6' / 'train_state.pkl')
    state = read_state(str(resumed / 'iter_4'))
    assert len(state['rng_ranks']) == 2  # every rank's random state ...
    assert state['rng_ranks'][0]['python'] != state['rng_ranks'][1]['python']
    assert not np.array_equal(state['rng_ranks'][0]['numpy'][1],
                              state['rng_ranks'][1]['numpy'][1])  # ... its own
    assert [str(state['seed'])] == seeds
    _, logs = launch(tmp_path / 'log_resumed', gcnet_args(
        setup.config, resumed, '--resume_model', resumed / 'iter_4'))
    assert 'Resume model from' in logs[0]
    assert 'iter: {}/{}'.format(ITERS, ITERS) in logs[0]

    a = paddle.load(str(reference / 'iter_{}'.format(ITERS) / 'model.pdparams'))
    b = paddle.load(str(resumed / 'iter_{}'.format(ITERS) / 'model.pdparams'))
    assert sorted(a) == sorted(b)
    for key in a:  # as test_training's resume check: 1e-4 of the scale
        x, y = a[key].numpy(), b[key].numpy()
        scale = max(float(np.abs(x).max()), 1e-3)
        assert float(np.abs(x - y).max()) <= 1e-4 * scale, key

    # The ranks stay in step: the same parameters on both (BatchNorm
    # statistics differ: each rank normalises its own images).
    for save_dir in (reference, resumed):
        ends = [rank_weights(save_dir, rank) for rank in (0, 1)]
        params = [k for k in ends[1] if not is_bn_statistic(k)]
        for key in params:
            np.testing.assert_array_equal(ends[0][key], ends[1][key], key)
        assert any(not np.array_equal(ends[0][k], ends[1][k])
                   for k in ends[1] if is_bn_statistic(k))


# -- a NaN on one rank -----------------------------------------------------

@pytest.mark.parametrize('inject, what, iteration, last_good', [
    (('--nan_loss', '1:5'), r'The loss became NaN on rank 1', 5, 4),
    (('--nan_weights', '0:4'), r'The weights became NaN or inf', 4, 2),
])
def test_a_nan_on_one_rank_stops_both_with_one_message(
        tmp_path, inject, what, iteration, last_good):
    data = make_data(tmp_path / 'data', num_train=4, num_val=1)
    config = write_config(tmp_path / 'fcn.yml', data)
    save_dir = tmp_path / 'out'
    code, logs = launch(tmp_path / 'log', [
        '--config', config, '--device', 'cpu', '--save_dir', save_dir,
        '--iters', 20, '--batch_size', 1, '--save_interval', 2,
        '--log_iters', 1, '--seed', 0], inject=inject, check=False)
    assert code != 0
    errors = [[line for line in log.splitlines() if line.startswith('error:')]
              for log in logs]
    assert len(errors[0]) == 1 and errors[0] == errors[1], errors
    for log in logs:  # no Python traceback (the launcher SIGTERMs the rank
        # that exits last, whose C++ handler may print its own)
        assert not re.search(r'^Traceback', log, re.M), log[-3000:]
    match = re.match(r'error: {} .*at iteration (\d+); .* The last good '
                     r'checkpoint .*is (\S+);'.format(what), errors[0][0])
    assert match, errors[0][0]
    assert int(match.group(1)) == iteration
    assert match.group(2) == str(save_dir / 'iter_{}'.format(last_good))
    good = list(range(2, last_good + 1, 2))
    assert [n for n, _ in complete_checkpoints(str(save_dir))] == good
    assert sorted(p.name for p in save_dir.glob('iter_*')) == [
        'iter_{}'.format(n) for n in good]  # nothing after the last good one
    for n in good:
        weights = paddle.load(str(save_dir / 'iter_{}'.format(n) /
                                  'model.pdparams'))
        assert all(np.isfinite(v.numpy()).all() for v in weights.values())


# -- every family ------------------------------------------------------------

AUGMENTATIONS = [
    {'type': 'RandomPaddingCrop', 'crop_size': [48, 48]},
    {'type': 'RandomHorizontalFlip'},
    {'type': 'Normalize'},
]
COEF = {'CtxISNet': [1, 0.4, 0.4]}  # main, aux; ISNet: stage 2, stage 1, aux


@pytest.fixture(scope='module')
def family_data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp('families') / 'data',
                     num_train=4, num_val=1)


@pytest.mark.parametrize('name', sorted(FAMILIES))
def test_every_family_trains_on_two_ranks(tmp_path, family_data, name):
    model = light_config(name, family_data['num_classes'])
    config = write_config(
        tmp_path / '{}.yml'.format(name), family_data, model=model,
        loss={'types': [{'type': 'CrossEntropyLoss'}],
              'coef': COEF.get(model['type'], [1, 0.4])},
        train_dataset=dict(write_config_dataset(family_data),
                           transforms=AUGMENTATIONS))
    save_dir = tmp_path / 'out'
    _, logs = launch(tmp_path / 'log', [
        '--config', config, '--device', 'cpu', '--save_dir', save_dir,
        '--iters', 2, '--batch_size', 2, '--save_interval', 2,
        '--log_iters', 1, '--num_workers', 0, '--save_rank_weights'])
    assert 'iter: 2/2' in logs[0], logs[0][-3000:]
    ends = [rank_weights(save_dir, rank) for rank in (0, 1)]
    start = {k: v.numpy() for k, v in paddle.load(str(
        save_dir / 'rank_weights' / 'rank0_start.pdparams')).items()}
    # (rank 0's end weights also hold the counters paddle.flops left)
    params = [k for k in ends[1] if not is_bn_statistic(k)]
    for key in params:  # in step
        np.testing.assert_array_equal(ends[0][key], ends[1][key], key)
    assert any(not np.array_equal(start[k], ends[0][k]) for k in params)
    state = read_state(str(save_dir / 'iter_2'))
    assert len(state['rng_ranks']) == 2


def write_config_dataset(data):
    """The training set of cli_utils.write_config, to change its transforms."""
    return {'type': 'Dataset', 'dataset_root': data['dataset_root'],
            'train_path': data['train_path'],
            'num_classes': data['num_classes'], 'mode': 'train'}


# -- a checkpoint of another process count ------------------------------------

def test_a_checkpoint_of_another_process_count_restores_rank_0s_state(
        monkeypatch):
    run = TrainingRun(paddle.nn.Linear(2, 2), 'unused', seed=0)  # one process
    ranks = [{'rank': 0}, {'rank': 1}]
    warnings = []
    monkeypatch.setattr(logger, 'warning', warnings.append)
    restored = run._own_rng_state('iter_4', {'rng': ranks[0],
                                             'rng_ranks': ranks})
    assert restored is ranks[0] and warnings == [
        'iter_4 holds the random state of 2 process(es), this run has 1 '
        'process(es): every process continues from rank 0\'s, so dropout '
        'and other random draws do not continue as they would have.']
    warnings.clear()
    assert run._own_rng_state('iter_4', {'rng': ranks[0],
                                         'rng_ranks': ranks[:1]}) is ranks[0]
    assert run._own_rng_state('iter_4', {'rng': ranks[1]}) is ranks[1]
    assert warnings == []  # one process, a checkpoint of one (or older)
