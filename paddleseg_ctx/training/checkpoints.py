"""Checkpoints that a kill at any moment cannot break.

* Every file is written under a temporary name in its own directory, synced
  and renamed over the final name, so a file is either the old or the new one,
  never a truncated one.
* ``iter_N/train_state.pkl`` (iteration, run seed, random states, best-model
  record) is written after everything else of ``iter_N``: a checkpoint is
  complete when it has this file, and rewriting one starts by removing it.
  It is a pickle of data only, read back by the restricted unpickler that
  reads weights (nothing a crafted state file refers to is run).
* A checkpoint is deleted by renaming it to a hidden name first.
"""
import contextlib
import os
import pickle
import re
import shutil
import uuid

from paddleseg_ctx.errors import WeightsError
from paddleseg_ctx.files import atomic_write
from paddleseg_ctx.weights.paddle_file import read_pickle

__all__ = ['STATE_FILE', 'MODEL_FILE', 'OPTIMIZER_FILE', 'EMA_FILE',
           'write_state', 'read_state', 'checkpoint_iter',
           'complete_checkpoints', 'checkpoint_problem', 'clear_checkpoint',
           'remove_checkpoint']

STATE_FILE = 'train_state.pkl'
MODEL_FILE = 'model.pdparams'
OPTIMIZER_FILE = 'model.pdopt'
EMA_FILE = 'ema_model.pdparams'

_ITER_DIR = re.compile(r'iter_(\d+)$')


def _pickle_to(obj):
    def write(path):
        with open(path, 'wb') as f:
            pickle.dump(obj, f, protocol=4)
    return write


def write_state(directory, state):
    """Write ``state`` as ``directory/train_state.pkl`` (completes the
    checkpoint)."""
    atomic_write(os.path.join(directory, STATE_FILE), _pickle_to(state), fsync=True)


def read_state(directory):
    """The training state of a checkpoint, or None if it has none.  Read by
    the restricted unpickler of ``paddleseg_ctx.weights.paddle_file``
    (data, numpy arrays and Paddle's random-generator states only): raises
    ``WeightsError`` for a file that refers to anything else or is
    damaged."""
    path = os.path.join(directory, STATE_FILE)
    if not os.path.isfile(path):
        return None
    state = read_pickle(path, advice=' Resume from another checkpoint.')
    if not (isinstance(state, dict) and isinstance(state.get('iter'), int)):
        raise WeightsError('{} holds no training state (a dict with the iteration, '
                           'seed and random states). Resume from another '
                           'checkpoint.'.format(path))
    return state


def checkpoint_iter(path):
    """N for a directory named ``iter_N``, else None."""
    match = _ITER_DIR.match(os.path.basename(os.path.normpath(path)))
    return int(match.group(1)) if match else None


def complete_checkpoints(save_dir):
    """``[(N, path)]`` of the complete ``iter_N`` checkpoints in
    ``save_dir``, oldest first."""
    if not os.path.isdir(save_dir):
        return []
    found = []
    for name in os.listdir(save_dir):
        path = os.path.join(save_dir, name)
        if checkpoint_iter(name) is not None and os.path.isfile(
                os.path.join(path, STATE_FILE)):
            found.append((checkpoint_iter(name), path))
    return sorted(found)


def checkpoint_problem(path):
    """Why training cannot resume from ``path`` (one sentence with what to do
    instead), or None if it can."""
    if not os.path.exists(path):
        return 'no such directory.'
    if not os.path.isdir(path):
        return ('is a file; give the checkpoint directory (e.g. '
                'output/iter_1000), which holds {} and {}.'.format(
                    MODEL_FILE, OPTIMIZER_FILE))
    missing = [name for name in (MODEL_FILE, OPTIMIZER_FILE)
               if not os.path.isfile(os.path.join(path, name))]
    if missing:
        if os.path.basename(os.path.normpath(path)) == 'best_model':
            why = 'best_model/ holds weights only (no optimizer state)'
        elif checkpoint_iter(path) is not None:
            why = 'the run was probably stopped while writing it'
        else:
            why = 'it is not a checkpoint written by training'
        complete = complete_checkpoints(os.path.dirname(
            os.path.abspath(path)))
        hint = ('; complete checkpoints next to it: {}'.format(', '.join(
            os.path.basename(p) for _, p in complete)) if complete else '')
        return 'has no {} ({}). Resume from an iter_N directory with both '\
            'files{}.'.format(' and no '.join(missing), why, hint)
    if checkpoint_iter(path) is None and not os.path.isfile(
            os.path.join(path, STATE_FILE)):
        return ('cannot tell at which iteration to resume: the directory is '
                'not named iter_N and has no {}.'.format(STATE_FILE))
    return None


def clear_checkpoint(path):
    """Empty the checkpoint directory ``path`` (state file first) so that it
    can be written anew."""
    with contextlib.suppress(FileNotFoundError):
        os.remove(os.path.join(path, STATE_FILE))
    for name in os.listdir(path):
        entry = os.path.join(path, name)
        if os.path.isdir(entry):
            shutil.rmtree(entry)
        else:
            os.remove(entry)


def remove_checkpoint(path):
    """Delete a checkpoint: rename it away (atomic), then remove it, and any
    left by an earlier run killed while deleting."""
    parent, name = os.path.split(os.path.abspath(path))
    os.replace(path, os.path.join(parent, '.{}.{}.deleted'.format(
        name, uuid.uuid4().hex[:12])))
    for entry in os.listdir(parent):
        if entry.startswith('.iter_') and entry.endswith('.deleted'):
            shutil.rmtree(os.path.join(parent, entry), ignore_errors=True)
