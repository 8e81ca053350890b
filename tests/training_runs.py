"""Training runs shared by test_training.py and test_visualdl.py.

A run takes seconds, so each is made once per pytest session (cached by its
directory under the session's base temp) and reused by both files.  The model
is a tiny CtxGCNet on HRNet_W18_Small_V1 (it has dropout) trained with random
augmentations (scale, crop, flip, distort), so data order, Python/numpy
random state and Paddle's generator all matter for the weights.
"""
import functools
import os
import pathlib
import signal
import subprocess
import sys
import time
import types

import yaml

from cli_utils import make_data, write_config

ITERS = 40
SAVE_INTERVAL = 10
LOG_ITERS = 5
NUM_TRAIN = 12  # batch 2: 6 iterations per epoch, so iter_20 is mid-epoch, iter_30 an epoch end
IMAGE_SIZE = (61, 47)
AUGMENTATIONS = [
    {'type': 'ResizeStepScaling', 'min_scale_factor': 0.75,
     'max_scale_factor': 1.25, 'scale_step_size': 0.25},
    {'type': 'RandomPaddingCrop', 'crop_size': [45, 39]},
    {'type': 'RandomHorizontalFlip'},
    {'type': 'RandomDistort'},
    {'type': 'Normalize'},
]


@functools.lru_cache(maxsize=None)
def setup(base):
    """Data set and config under ``base``."""
    root = pathlib.Path(base)
    data = make_data(root / 'data', num_train=NUM_TRAIN, num_val=3,
                     size=IMAGE_SIZE)
    config = write_config(
        root / 'gcnet.yml', data,
        model={'type': 'CtxGCNet', 'backbone': {'type': 'HRNet_W18_Small_V1'},
               'backbone_indices': [0, 0], 'gc_channels': 16},
        loss={'types': [{'type': 'CrossEntropyLoss'}], 'coef': [1, 0.4]})
    with open(config) as f:
        cfg = yaml.safe_load(f)
    cfg['train_dataset']['transforms'] = AUGMENTATIONS
    with open(config, 'w') as f:
        yaml.safe_dump(cfg, f)
    return types.SimpleNamespace(root=root, data=data, config=config)


def command(config, save_dir, *flags):
    return [sys.executable, '-m', 'paddleseg_ctx.train', '--config', config,
            '--device', 'cpu', '--save_dir', str(save_dir), '--iters',
            str(ITERS), '--save_interval', str(SAVE_INTERVAL), '--log_iters',
            str(LOG_ITERS), '--seed', '0', '--do_eval', '--use_vdl'] + [
                str(f) for f in flags]


def _tail(log):
    return pathlib.Path(log).read_text()[-3000:]


def train(config, save_dir, *flags, timeout=300):
    """Run training to its end (output in ``<save_dir>.log``)."""
    log = str(save_dir) + '.log'
    with open(log, 'w') as out:
        code = subprocess.run(command(config, save_dir, *flags), stdout=out,
                              stderr=subprocess.STDOUT, timeout=timeout).returncode
    assert code == 0, 'training exited with {}:\n{}'.format(code, _tail(log))


def train_until_killed(config, save_dir, after, *flags, timeout=300):
    """Start training, SIGKILL it as soon as ``iter_<after>`` is complete;
    returns the exit status (-SIGKILL)."""
    log = str(save_dir) + '.killed.log'
    marker = pathlib.Path(save_dir) / 'iter_{}'.format(after) / 'train_state.pkl'
    with open(log, 'w') as out:
        proc = subprocess.Popen(command(config, save_dir, *flags), stdout=out,
                                stderr=subprocess.STDOUT)
    deadline = time.time() + timeout
    while not marker.exists():
        if proc.poll() is not None or time.time() > deadline:
            proc.kill()
            raise AssertionError('training ended ({}) before iter_{} was '
                                 'complete:\n{}'.format(proc.wait(), after,
                                                        _tail(log)))
        time.sleep(0.02)
    assert proc.poll() is None, 'training finished before it could be killed'
    proc.send_signal(signal.SIGKILL)
    return proc.wait()


@functools.lru_cache(maxsize=None)
def uninterrupted(base):
    """save_dir of the uninterrupted reference run."""
    run = setup(base)
    save_dir = run.root / 'uninterrupted'
    train(run.config, save_dir)
    return save_dir


@functools.lru_cache(maxsize=None)
def killed_and_resumed(base, num_workers, kill_after, resume_from, *flags):
    """Train, SIGKILL once ``iter_<kill_after>`` is complete, resume from
    ``iter_<resume_from>`` to the end.  Returns the save_dir, the killed
    process's exit status and the steps of Train/loss on disk at the kill."""
    from visualdl import LogReader  # noqa: PLC0415

    run = setup(base)
    save_dir = run.root / 'resumed_{}_{}_{}'.format(num_workers, kill_after,
                                                    resume_from)
    flags = ('--num_workers', num_workers) + flags
    status = train_until_killed(run.config, save_dir, kill_after, *flags)
    logs = [name for name in os.listdir(save_dir) if 'vdlrecords' in name]
    reader = LogReader(file_path=str(save_dir / logs[0]))
    killed_steps = [r.id for r in reader.get_data('scalar', 'Train/loss')]
    train(run.config, save_dir, '--resume_model',
          save_dir / 'iter_{}'.format(resume_from), *flags)
    return save_dir, status, killed_steps
