"""Training that survives kills: exact resume after SIGKILL, atomic
checkpoints, a clean stop at a NaN loss, clear --resume_model errors.

The end-to-end runs (training_runs.py) are real ``python -m
paddleseg_ctx.train`` processes killed with SIGKILL; the reference is the
uninterrupted run of the same seed.
"""
import os
import random
import re
import signal
import subprocess
import sys
import time

import numpy as np
import paddle
import pytest
from paddle.io import DistributedBatchSampler

import training_runs as runs
from cli_utils import build_model, make_data, write_config
from paddleseg_ctx.cli import train
from paddleseg_ctx.training.checkpoints import (checkpoint_problem,
                                                complete_checkpoints,
                                                read_state)
from paddleseg_ctx.training.data import ResumableBatchSampler, SeededDataset
from paddleseg_ctx.training.hooks import TrainingRun, TrainingStopped
from paddleseg_ctx.weights import load_model_weights


@pytest.fixture(scope='module')
def base(tmp_path_factory):
    return str(tmp_path_factory.getbasetemp() / 'training_runs')


def assert_same_tensors(a, b, rtol=1e-4):
    """Every tensor of state dict ``b`` equals ``a``'s within ``rtol`` of the
    tensor's scale."""
    assert sorted(a) == sorted(b)
    for key in a:
        if key == 'LR_Scheduler':
            assert a[key] == b[key]
            continue
        x, y = np.asarray(a[key].numpy()), np.asarray(b[key].numpy())
        scale = max(float(np.abs(x).max()), 1e-3)
        assert float(np.abs(x - y).max()) <= rtol * scale, key


@pytest.mark.parametrize('num_workers,kill_after,resume_from', [
    (0, 30, 20),  # mid-epoch (20 = 3 epochs of 6 + 2); steps 25, 30 already logged
    (2, 30, 30),  # at an epoch end, loader workers
])
def test_killed_run_resumes_to_the_uninterrupted_weights(
        base, num_workers, kill_after, resume_from):
    reference = runs.uninterrupted(base)
    save_dir, status, _ = runs.killed_and_resumed(
        base, num_workers, kill_after, resume_from, '--keep_checkpoint_max', 2)
    assert status == -signal.SIGKILL

    end = 'iter_{}'.format(runs.ITERS)
    for name in ('model.pdparams', 'model.pdopt'):  # weights, momentum, lr schedule
        assert_same_tensors(paddle.load(str(reference / end / name)),
                            paddle.load(str(save_dir / end / name)))
    # Best-model tracking went on across the kill.
    assert (save_dir / 'best_model' / 'record.json').read_text() == (
        reference / 'best_model' / 'record.json').read_text()
    assert_same_tensors(
        paddle.load(str(reference / 'best_model' / 'model.pdparams')),
        paddle.load(str(save_dir / 'best_model' / 'model.pdparams')))


def test_keep_checkpoint_max_counts_checkpoints_from_before_the_resume(base):
    save_dir, _, _ = runs.killed_and_resumed(base, 0, 30, 20,
                                             '--keep_checkpoint_max', 2)
    iters = [n for n, _ in complete_checkpoints(str(save_dir))]
    assert iters == [30, 40]
    assert sorted(p.name for p in save_dir.glob('iter_*')) == ['iter_30',
                                                               'iter_40']
    assert (save_dir / 'best_model' / 'model.pdparams').is_file()


# A child process that trains and blocks half-way through writing `target`
# (a file of the checkpoint being saved), so that the parent can SIGKILL it
# mid-write.  Both paddle.save and the state file write through pickle.dump.
BLOCKED_WRITER = '''
import os, pickle, sys, time
target, marker = sys.argv[1], sys.argv[2]
dump = pickle.dump

def half_dump(obj, f, *args, **kwargs):
    path = getattr(f, 'name', '')
    if (isinstance(path, str) and os.path.dirname(path) == os.path.dirname(target)
            and os.path.basename(path).startswith('.' + os.path.basename(target) + '.')):
        data = pickle.dumps(obj, *args, **kwargs)
        f.write(data[:len(data) // 2])
        f.flush()
        open(marker, 'w').close()
        time.sleep(600)
    return dump(obj, f, *args, **kwargs)

pickle.dump = half_dump
from paddleseg_ctx.cli import train
from paddleseg_ctx.errors import run
run(train.main, sys.argv[3:])
'''


@pytest.mark.parametrize('blocked', ['model.pdopt', 'train_state.pkl'])
def test_kill_while_saving_leaves_the_previous_checkpoint_loadable(
        tmp_path, blocked, capsys):
    data = make_data(tmp_path / 'data', num_train=4, num_val=2)
    config = write_config(tmp_path / 'fcn.yml', data)
    save_dir = tmp_path / 'out'
    target = save_dir / 'iter_4' / blocked
    marker = tmp_path / 'blocked'
    proc = subprocess.Popen(
        [sys.executable, '-c', BLOCKED_WRITER, str(target), str(marker),
         '--config', config, '--device', 'cpu', '--save_dir', str(save_dir),
         '--iters', '6', '--save_interval', '2', '--do_eval', '--seed', '0'],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not marker.exists():
        assert proc.poll() is None and time.time() < deadline, 'no blocked write'
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL

    # The kill hit a real write: a truncated temporary file is left ...
    partial = list(target.parent.glob('.{}.*.tmp'.format(blocked)))
    assert len(partial) == 1
    with pytest.raises(Exception):
        paddle.load(str(partial[0]))
    # ... but no file under its final name is truncated, and iter_4 is not
    # complete.
    for path in target.parent.iterdir():
        if not path.name.startswith('.'):
            paddle.load(str(path))
    assert not (target.parent / 'train_state.pkl').exists()
    assert [n for n, _ in complete_checkpoints(str(save_dir))] == [2]

    # The previous checkpoint and the best model load.
    assert read_state(str(save_dir / 'iter_2'))['iter'] == 2
    load_model_weights(build_model(config), str(save_dir / 'iter_2' /
                                                 'model.pdparams'))
    paddle.load(str(save_dir / 'iter_2' / 'model.pdopt'))
    load_model_weights(build_model(config), str(save_dir / 'best_model' /
                                                 'model.pdparams'))

    if blocked == 'model.pdopt':  # iter_4 cannot be resumed; the CLI says why
        assert 'no model.pdopt' in checkpoint_problem(str(target.parent))
        with pytest.raises(SystemExit) as exit_info:
            train.main(['--config', config, '--resume_model',
                        str(target.parent)])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert 'has no model.pdopt' in err and 'iter_2' in err, err


def test_nan_loss_stops_with_one_message_and_keeps_the_last_checkpoint(
        tmp_path):
    # A sane learning rate for 4 steps, then one that blows the weights up:
    # the loss of step 6 is the first non-finite one.
    data = make_data(tmp_path / 'data', num_train=4, num_val=1)
    config = write_config(tmp_path / 'fcn.yml', data, lr_scheduler={
        'type': 'PiecewiseDecay', 'boundaries': [4], 'values': [0.01, 1e30]})
    save_dir = tmp_path / 'out'
    proc = subprocess.run(
        [sys.executable, '-m', 'paddleseg_ctx.train', '--config', config,
         '--device', 'cpu', '--save_dir', str(save_dir), '--iters', '20',
         '--save_interval', '2', '--seed', '0'],
        capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines()
              if line.startswith('error:')]
    assert len(errors) == 1, proc.stderr[-3000:]
    match = re.match(r'error: The loss became (NaN|inf) .* at iteration '
                     r'(\d+); .* The last good checkpoint .*is (\S+);', errors[0])
    assert match, errors[0]
    assert int(match.group(2)) == 6
    assert match.group(3) == str(save_dir / 'iter_4')
    for hint in ('--learning_rate', '--precision fp32', 'num_classes'):
        assert hint in errors[0]

    assert [n for n, _ in complete_checkpoints(str(save_dir))] == [2, 4]
    assert sorted(p.name for p in save_dir.glob('iter_*')) == [
        'iter_2', 'iter_4']  # nothing after it
    for path in save_dir.glob('iter_*'):
        state = paddle.load(str(path / 'model.pdparams'))
        assert all(np.isfinite(v.numpy()).all() for v in state.values())


def test_weights_with_nan_are_not_saved(tmp_path):
    layer = paddle.nn.Linear(2, 2)
    run = TrainingRun(layer, str(tmp_path), seed=0)
    checkpoint = tmp_path / 'iter_3'
    checkpoint.mkdir()
    weights = {'w': paddle.to_tensor([1.0, float('nan')])}
    with run.installed():
        with pytest.raises(TrainingStopped, match='NaN or inf .* at iteration'):
            paddle.save(weights, str(checkpoint / 'model.pdparams'))
        paddle.save(weights, str(tmp_path / 'other.pdparams'))  # not a checkpoint
    assert not checkpoint.exists()
    assert (tmp_path / 'other.pdparams').is_file()


@pytest.mark.parametrize('case', ['missing', 'file', 'best_model'])
def test_resume_model_errors_are_usage_errors(tmp_path, case, capsys):
    data = make_data(tmp_path / 'data', num_train=2, num_val=1)
    config = write_config(tmp_path / 'fcn.yml', data)
    path = tmp_path / 'out' / {'missing': 'iter_8', 'file': 'iter_8',
                               'best_model': 'best_model'}[case]
    expected = 'no such directory'
    if case == 'file':
        path.parent.mkdir()
        path.write_text('')
        expected = 'is a file; give the checkpoint directory'
    elif case == 'best_model':
        path.mkdir(parents=True)
        paddle.save({'w': paddle.ones([1])}, str(path / 'model.pdparams'))
        expected = 'has no model.pdopt (best_model/ holds weights only'
    with pytest.raises(SystemExit) as exit_info:
        train.main(['--config', config, '--resume_model', str(path)])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert '--resume_model {}: {}'.format(path, expected) in err, err


def test_truncated_resume_file_is_one_message(tmp_path, capsys):
    # PaddleSeg's resume dies in pickle with a traceback.
    data = make_data(tmp_path / 'data', num_train=2, num_val=1)
    config = write_config(tmp_path / 'fcn.yml', data)
    checkpoint = tmp_path / 'out' / 'iter_8'
    checkpoint.mkdir(parents=True)
    model = build_model(config)
    paddle.save(model.state_dict(), str(checkpoint / 'model.pdparams'))
    full = str(tmp_path / 'full.pdopt')
    paddle.save({'w': paddle.ones([1000])}, full)
    with open(full, 'rb') as f:
        (checkpoint / 'model.pdopt').write_bytes(f.read()[:200])
    with pytest.raises(SystemExit) as exit_info:
        train.main(['--config', config, '--device', 'cpu', '--save_dir',
                    str(tmp_path / 'out'), '--resume_model', str(checkpoint)])
    message = str(exit_info.value.code)
    assert message.startswith('error: {} cannot be read'.format(
        checkpoint / 'model.pdopt')), message
    assert 'Resume from another checkpoint' in message


class Indices(paddle.io.Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, index):
        return index, np.random.randint(1 << 30), random.random()


def test_sampler_resumes_at_any_iteration_in_paddles_order():
    dataset = SeededDataset(Indices(11), seed=5)  # 11 / 3: 3 batches per epoch
    paddle_order = []
    reference = DistributedBatchSampler(dataset, batch_size=3, shuffle=True,
                                        drop_last=True)
    for epoch in range(4):
        paddle_order += [[(i, epoch) for i in batch] for batch in reference]

    def stream(start_iter, count):
        dataset.start_iter = start_iter
        sampler = ResumableBatchSampler(dataset, batch_size=3, shuffle=True,
                                        drop_last=True)
        batches = []
        while len(batches) < count:
            batches += list(sampler)
        return batches[:count]

    assert stream(0, 12) == paddle_order
    for start in (1, 3, 7):
        assert stream(start, 12 - start) == paddle_order[start:]
    # Another dataset is sampled exactly as by Paddle's sampler.
    plain = ResumableBatchSampler(Indices(11), batch_size=3, shuffle=True)
    assert list(plain) == list(DistributedBatchSampler(
        Indices(11), batch_size=3, shuffle=True))


def test_seeded_samples_repeat_and_leave_the_global_generators_alone():
    dataset = SeededDataset(Indices(4), seed=1)
    random.seed(3)
    np.random.seed(3)
    before = random.random(), np.random.rand()
    random.seed(3)
    np.random.seed(3)
    first = dataset[(2, 0)]
    assert dataset[(2, 0)] == first  # same sample, same epoch: same draws
    assert dataset[(2, 1)][1:] != first[1:]  # next epoch: new draws
    assert dataset[(3, 0)][1:] != first[1:]
    assert (random.random(), np.random.rand()) == before
