"""Hooks into PaddleSeg 2.8's own training loop (``paddleseg.core.train``)
that make it resume exactly, survive a kill, stop at a NaN loss and log more
to VisualDL, without copying the loop.

``TrainingRun.installed()`` replaces, for one ``train()`` call, what the loop
calls (each a revertible ``compat.Fix``):

* ``resume``: checks the checkpoint, restores weights, optimizer (with the
  learning-rate schedule), iteration, run seed, best-model record, and this
  process's random state, which is set back right before the first step;
* ``paddle.io.DistributedBatchSampler``: starts at the resumed iteration and
  seeds every sample (``training.data``); with several processes, rank 0's
  run seed becomes every rank's (the loop has set up the ranks by then);
* ``paddle.save``: every file atomic; a checkpoint is completed by its state
  file once the loop moves on to the next step (after all of PaddleSeg's
  writes for it); ``best_model/`` follows our record, which survives resumes;
  weights with NaN/inf are never saved;
* ``evaluate``: remembers mIoU and per-class IoU, logs them and sample images;
* ``loss_computation`` (and a model's own): stops at the first non-finite loss
  of any rank;
* ``init_ema_params``: restores the EMA weights on resume;
* ``paddle.amp.GradScaler``: restores the fp16 loss scaling on resume;
* ``visualdl.LogWriter``: continues the run's log after a resume;
* ``logger``: PaddleSeg's best-model line counts from the process start; ours
  from the run start.

A forward pre-hook on the model marks each training step.  Retention of
``iter_N`` checkpoints (``keep_checkpoint_max``) is done here, after a newer
checkpoint is complete, so PaddleSeg's own must be off (``0``).

Several processes (``paddle.distributed.launch``): PaddleSeg saves from rank 0
only.  At every step boundary (the pre-hook, and the end of ``train``) rank 0
tells the others whether it wrote a checkpoint during the last step; if so,
every rank's random state (Python, numpy, Paddle's CPU generator and its own
device's) is gathered into the one state file, and each rank restores its own
on resume.  Weights with NaN/inf found at a save stop every rank at that
boundary with the same message; a non-finite loss on any rank stops all of
them at that step (the losses are gathered).  No rank is left waiting in a
collective.
"""
import contextlib
import importlib
import json
import math
import os
import random

import paddle
from paddleseg.utils import logger

from paddleseg_ctx.compat import Fix
from paddleseg_ctx.errors import UserError, WeightsError
from paddleseg_ctx.files import atomic_write
from paddleseg_ctx.training import vdl
from paddleseg_ctx.training.checkpoints import (
    EMA_FILE, MODEL_FILE, OPTIMIZER_FILE, checkpoint_iter,
    checkpoint_problem, clear_checkpoint, complete_checkpoints, read_state,
    remove_checkpoint, write_state)
from paddleseg_ctx.training.data import (ResumableBatchSampler, SeededDataset,
                                         rng_state, set_rng_state)
from paddleseg_ctx.version import __version__
from paddleseg_ctx.weights import check_state_dict, load_paddle_file

__all__ = ['TrainingRun', 'TrainingStopped']

# `paddleseg.core.train` is the function (paddleseg/core/__init__.py re-exports it); we need the module.
_train_module = importlib.import_module('paddleseg.core.train')

RECORD_FILE = 'record.json'  # next to best_model/model.pdparams
BEST_DIRS = {'best_model': ('model', MODEL_FILE),
             'ema_best_model': ('ema', EMA_FILE)}
TRY_NEXT = ('Try a lower learning rate (--learning_rate), --precision fp32 if '
            'you train in fp16, and check that the label values are class '
            'ids below num_classes or the ignore index (255 by default).')


class TrainingStopped(UserError, RuntimeError):
    """Training cannot go on; the message says why and what to do."""


def _load(path):
    """``paddle.load(path)`` by the restricted reader: a checkpoint file that
    refers to code is refused, a damaged one is one message."""
    try:
        return load_paddle_file(path, advice=' Resume from another checkpoint.')
    except WeightsError as err:
        raise TrainingStopped(str(err)) from None


def _nonfinite(state_dict):
    return [key for key, value in state_dict.items()
            if isinstance(value, paddle.Tensor) and value.dtype in (
                paddle.float16, paddle.float32, paddle.float64, paddle.bfloat16)
            and not bool(paddle.isfinite(value).all())]


class _BestModelLogger:
    """PaddleSeg's logger for the loop, but its best-model lines report our
    record (PaddleSeg's restarts at -1 in every process)."""

    LINES = {'model': '[EVAL] The model with the best validation mIoU',
             'ema': '[EVAL] The EMA model with the best validation mIoU'}

    def __init__(self, paddleseg_logger, run):
        self._logger = paddleseg_logger
        self._run = run

    def info(self, message=''):
        for which, line in self.LINES.items():
            best = self._run.best.get(which)
            if message.startswith(line) and best is not None:
                message = '{} ({:.4f}) was saved at iter {}.'.format(
                    line, best['mIoU'], best['iter'])
        self._logger.info(message)

    def __getattr__(self, name):
        return getattr(self._logger, name)


class TrainingRun:
    """State shared by the hooks of one ``paddleseg.core.train`` call.

    Args:
        model (nn.Layer): The model given to ``train``.
        save_dir (str): ``save_dir`` given to ``train``.
        seed (int|None): Run seed (``--seed``); random if None (rank 0's
            draw, with several processes).  A resumed run continues with its
            checkpoint's seed.
        keep_checkpoint_max (int): Keep this many latest complete ``iter_N``
            checkpoints (0: all).  Pass 0 to ``train`` itself.
        vdl_samples (int): Validation samples shown in VisualDL.
    """

    def __init__(self, model, save_dir, seed=None, keep_checkpoint_max=5,
                 vdl_samples=3):
        self.model = model
        self.save_dir = os.path.abspath(save_dir)
        self.requested_seed = seed
        self.seed = seed if seed is not None else random.SystemRandom(
        ).randrange(2**31)
        self.keep_checkpoint_max = keep_checkpoint_max
        self.vdl_samples = vdl_samples
        env = paddle.distributed.ParallelEnv()
        self.nranks, self.local_rank = env.nranks, env.local_rank  # local_rank: the rank among all processes
        self.data = None
        self.iter = 0
        self.start_iter = 0
        self.resumed_from = None
        self.ema_model = None
        self.scaler = None  # fp16 GradScaler
        self.writer = None
        self.checkpoints = []  # complete iter_N of this run in save_dir, oldest first
        self.best = {}  # 'model'/'ema' -> {'iter', 'mIoU', 'Acc', 'class_IoU'}
        self.last_eval = {}  # same, of the latest evaluation
        self._restore = None  # random state to set before the next step
        self._stop = None  # rank 0: message that stops every rank at the next step boundary
        self._scaler_state = None  # GradScaler state to resume
        self._open = None  # iter_N directory being written

    def dataset(self, train_dataset):
        """``train_dataset`` as given to ``train``: sampled resumably with
        per-sample seeds."""
        self.data = SeededDataset(train_dataset, self.seed)
        return self.data

    @contextlib.contextmanager
    def installed(self):
        """Install the hooks for one ``train`` call."""
        fixes = self._fixes()
        for fix in fixes:
            fix.apply()
        handle = self.model.register_forward_pre_hook(self._before_step)
        try:
            yield self
            self._step_boundary()  # completes the last checkpoint
        finally:
            handle.remove()
            for fix in reversed(fixes):
                fix.revert()
            if self.writer is not None:
                self.writer.close()

    def _fixes(self):
        import visualdl  # noqa: PLC0415  (patched only while training)

        def fix(name, why, owner, attr, make):
            return Fix(name, why, lambda: True, [(owner, attr, make)])

        fixes = [
            fix('resume', 'resume everything, with clear errors',
                _train_module, 'resume', lambda _: self._resume),
            fix('sampler', 'resumable data order, per-sample seeds, one run '
                'seed on all ranks', paddle.io, 'DistributedBatchSampler',
                lambda _: self._sampler),
            fix('save', 'atomic checkpoints, best model by our record', paddle,
                'save', self._wrap_save),
            fix('evaluate', 'per-class IoU and images, best-model record',
                _train_module, 'evaluate', self._wrap_evaluate),
            fix('loss', 'stop at a non-finite loss', _train_module,
                'loss_computation', self._wrap_loss),
            fix('ema', 'resume the EMA weights', _train_module,
                'init_ema_params', self._wrap_init_ema),
            fix('logger', 'best-model line from our record', _train_module,
                'logger', lambda original: _BestModelLogger(original, self)),
            fix('visualdl', 'continue the log after a resume', visualdl,
                'LogWriter', self._wrap_log_writer),
            fix('grad_scaler', 'resume the fp16 loss scaling', paddle.amp,
                'GradScaler', self._wrap_grad_scaler),
        ]
        if hasattr(self.model, 'loss_computation'):  # used instead of the module's
            fixes.append(fix('model_loss', 'stop at a non-finite loss',
                             self.model, 'loss_computation', self._wrap_loss))
        return fixes

    # -- steps and checkpoints ------------------------------------------------

    def _before_step(self, layer, inputs):
        if not layer.training:  # evaluation, FLOPs count
            return None
        self._step_boundary()
        if self._restore is not None:
            set_rng_state(self._restore)
            self._restore = None
        self.iter += 1
        return None

    def _step_boundary(self):
        """Before each training step and after the last, on every rank:
        stop every rank if rank 0 found NaN/inf weights at its last save,
        else complete the checkpoint rank 0 wrote during the last step."""
        # 0: nothing, 1: a checkpoint to complete, 2: stop (rank 0's view)
        news = 2 if self._stop else int(self._open is not None)
        if self.nranks > 1:
            flag = paddle.to_tensor([news])
            paddle.distributed.broadcast(flag, src=0)
            news = int(flag.item())
        if news == 2:
            message = [self._stop]
            if self.nranks > 1:
                paddle.distributed.broadcast_object_list(message, src=0)
            raise TrainingStopped(message[0])
        if news == 1:
            states, path = [rng_state()], [self._open]
            if self.nranks > 1:
                states = []
                paddle.distributed.all_gather_object(states, rng_state())
                paddle.distributed.broadcast_object_list(path, src=0)
            self._complete_checkpoint(path[0], states)

    def _complete_checkpoint(self, path, rng_states):
        """Rank 0: write the state file of the checkpoint ``path`` written
        during the last step, with the random state of every rank
        (``rng_states``, by rank).  Every rank: note it as the latest, and
        apply ``keep_checkpoint_max`` (rank 0 deletes)."""
        self._open = None
        if self.local_rank == 0:
            self._write_state(path, rng_states)
        self.checkpoints = [p for p in self.checkpoints if p != path] + [path]
        while 0 < self.keep_checkpoint_max < len(self.checkpoints):
            old = self.checkpoints.pop(0)
            if self.local_rank == 0:
                remove_checkpoint(old)

    def _write_state(self, path, rng_states):
        if self.writer is not None:
            with contextlib.suppress(OSError):  # closed at the end of train()
                self.writer.flush()  # its records up to this step are kept on resume
        write_state(path, {
            'iter': checkpoint_iter(path),
            'seed': self.seed,
            'batches_per_epoch': self.data and self.data.batches_per_epoch,
            'best': self.best,
            'rng': rng_states[0],  # rank 0's, as before there were 'rng_ranks'
            'rng_ranks': rng_states,
            'grad_scaler': self.scaler and self.scaler.state_dict(),
            'paddleseg_ctx': __version__,
        })

    def _kind(self, path):
        """'checkpoint' for save_dir/iter_N/*, 'model' or 'ema' for the best
        model files, else None."""
        directory, name = os.path.split(path)
        if os.path.dirname(directory) != self.save_dir:
            return None
        folder = os.path.basename(directory)
        if checkpoint_iter(folder) is not None:
            return 'checkpoint'
        which, file_name = BEST_DIRS.get(folder, (None, None))
        return which if name == file_name else None

    def _wrap_save(self, save):
        def atomic_save(obj, path, *args, **kwargs):
            if not isinstance(path, (str, os.PathLike)):  # a buffer
                return save(obj, path, *args, **kwargs)
            path = os.path.abspath(path)
            kind = self._kind(path)
            if kind is not None and self._stop:  # nothing more of this run
                return None
            if kind == 'checkpoint':
                if not self._begin_checkpoint(path, obj):
                    return None
            elif kind is not None and not self._is_new_best(kind):
                return None
            atomic_write(path, lambda tmp: save(obj, tmp, *args, **kwargs), fsync=True)
            if kind in ('model', 'ema'):
                self._write_record(os.path.dirname(path), kind)
            return None

        return atomic_save

    def _begin_checkpoint(self, path, obj):
        """Open (or go on writing) the checkpoint of ``path``; False (and
        the checkpoint removed) if ``obj`` is weights with NaN/inf."""
        directory, name = os.path.split(path)
        if name in (MODEL_FILE, EMA_FILE):
            bad = _nonfinite(obj)
            if bad:
                if self._open == directory:  # the model's file, then the EMA's
                    self._open = None
                    clear_checkpoint(directory)
                with contextlib.suppress(OSError):
                    os.rmdir(directory)  # created by the loop
                message = self._stop_message(
                    'The weights became NaN or inf ({} tensors, e.g. {})'
                    .format(len(bad), bad[0]))
                if self.nranks == 1:
                    raise TrainingStopped(message)
                self._stop = message  # the other ranks learn it at the next step boundary
                return False
        if self._open != directory:
            clear_checkpoint(directory)  # left over from an earlier run
            self._open = directory
        return True

    def _is_new_best(self, which):
        """PaddleSeg asks to save the best model whenever the mIoU beats its
        own record, which restarts on resume; decide by ours."""
        current, best = self.last_eval.get(which), self.best.get(which)
        if current is None:
            return True
        if best is not None and current['mIoU'] <= best['mIoU']:
            return False
        self.best[which] = current
        return True

    def _write_record(self, directory, which):
        if which not in self.best:  # no evaluation seen (not from train())
            return
        record = json.dumps(self.best[which], indent=1)

        def write(path):
            with open(path, 'w') as f:
                f.write(record + '\n')

        atomic_write(os.path.join(directory, RECORD_FILE), write, fsync=True)

    # -- wrapped PaddleSeg functions -------------------------------------------

    def _resume(self, model, optimizer, resume_model):
        path = os.path.normpath(resume_model)
        problem = checkpoint_problem(path)
        if problem:
            raise TrainingStopped('--resume_model {}: {}'.format(
                resume_model, problem))
        logger.info('Resume model from {}'.format(path))
        params = _load(os.path.join(path, MODEL_FILE))
        check_state_dict(model, params, source=os.path.join(path, MODEL_FILE))
        model.set_state_dict(params)
        optimizer.set_state_dict(_load(os.path.join(path, OPTIMIZER_FILE)))
        try:
            state = read_state(path)
        except WeightsError as err:
            raise TrainingStopped('{}: its training state cannot be read: {}'
                                  .format(path, err)) from None
        if state is None:
            start = checkpoint_iter(path)
            logger.warning(
                '{} has no training state (written by PaddleSeg, or the run '
                'stopped before completing it): weights, optimizer and '
                'iteration resume, but data order, random state and the '
                'best-model record start afresh.'.format(path))
        else:
            start = state['iter']
            if self.requested_seed not in (None, state['seed']):
                logger.warning('--seed {} is ignored: a resumed run keeps its '
                               'seed ({}).'.format(self.requested_seed,
                                                   state['seed']))
            self.seed, self.best = state['seed'], state['best']
            self._restore = self._own_rng_state(path, state)
            self._scaler_state = state.get('grad_scaler')
            if self.data is not None:
                self.data.seed = state['seed']
                self.data.batches_per_epoch = state['batches_per_epoch']
        if self.data is not None:
            self.data.start_iter = start
        self.iter = self.start_iter = start
        self.resumed_from = path
        self.checkpoints = [p for n, p in complete_checkpoints(self.save_dir)
                            if n <= start]
        return start

    def _own_rng_state(self, path, state):
        """This rank's random state in ``state`` (rank 0's, with a warning,
        if the checkpoint was written by another number of processes)."""
        ranks = state.get('rng_ranks')
        if ranks is not None and len(ranks) == self.nranks:
            return ranks[self.local_rank]
        if self.nranks > 1 or ranks is not None:
            logger.warning(
                '{} holds the random state of {}, this run has {} '
                'process(es): every process continues from rank 0\'s, so '
                'dropout and other random draws do not continue as they would '
                'have.'.format(path, '{} process(es)'.format(len(ranks))
                               if ranks is not None else
                               'rank 0 only (an older checkpoint)',
                               self.nranks))
        return state['rng']

    def _sampler(self, dataset, batch_size, num_replicas=None, rank=None,
                 shuffle=False, drop_last=False):
        """``paddle.io.DistributedBatchSampler`` as the loop creates it;
        for the training set, after the ranks agree on rank 0's run seed."""
        if dataset is self.data:
            if self.nranks > 1:
                seed = [self.seed]
                paddle.distributed.broadcast_object_list(seed, src=0)
                self.seed = dataset.seed = seed[0]
            logger.info('Run seed (data order and augmentations): {}'.format(
                self.seed))
        return ResumableBatchSampler(
            dataset, batch_size=batch_size, num_replicas=num_replicas,
            rank=rank, shuffle=shuffle, drop_last=drop_last)

    def _wrap_init_ema(self, init_ema_params):
        def init(ema_model, model):
            self.ema_model = ema_model
            path = self.resumed_from and os.path.join(self.resumed_from,
                                                      EMA_FILE)
            if path and os.path.isfile(path):
                ema_model.set_state_dict(_load(path))
            else:
                init_ema_params(ema_model, model)

        return init

    def _wrap_grad_scaler(self, grad_scaler):
        run = self

        class ResumableGradScaler(grad_scaler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **kwargs)
                run.scaler = self
                if run._scaler_state:
                    self.load_state_dict(run._scaler_state)

        return ResumableGradScaler

    def _wrap_evaluate(self, evaluate):
        def evaluate_and_log(model, eval_dataset, *args, **kwargs):
            with vdl.counting_confusion(eval_dataset) as confusion:
                result = evaluate(model, eval_dataset, *args, **kwargs)
            miou, acc, class_iou = result[:3]
            which = 'ema' if model is self.ema_model else 'model'
            self.last_eval[which] = {
                'iter': self.iter, 'mIoU': float(miou), 'Acc': float(acc),
                'class_IoU': [float(iou) for iou in class_iou]}
            if which == 'model' and self.writer is not None:
                indices = vdl.sample_indices(len(eval_dataset), self.vdl_samples)
                samples = vdl.sample_images(model, eval_dataset, indices, kwargs)
                vdl.log_evaluation(self.writer, self.iter, class_iou, samples,
                                   confusion)
            return result

        return evaluate_and_log

    def _wrap_loss(self, loss_computation):
        def checked(*args, **kwargs):
            losses = loss_computation(*args, **kwargs)
            self._check_loss(losses)
            return losses

        return checked

    def _check_loss(self, losses):
        values = [float(loss.item()) if isinstance(loss, paddle.Tensor) else
                  float(loss) for loss in losses]
        by_rank = [values]
        if self.nranks > 1:  # every rank stops at the same step, with the same message
            gathered = []
            paddle.distributed.all_gather(
                gathered, paddle.to_tensor(values, dtype='float64'))
            by_rank = [t.numpy().tolist() for t in gathered]
        for rank, terms in enumerate(by_rank):
            if not all(math.isfinite(v) for v in terms):
                raise TrainingStopped(self._stop_message(
                    'The loss became {}{} (loss terms: {})'.format(
                        'NaN' if any(math.isnan(v) for v in terms) else 'inf',
                        ' on rank {}'.format(rank) if self.nranks > 1 else '',
                        ', '.join('{:.4g}'.format(v) for v in terms))))

    def _stop_message(self, what):
        last = self.checkpoints[-1] if self.checkpoints else self.resumed_from
        where = ('The last good checkpoint (finite weights) is {0}; continue '
                 'from it with --resume_model {0} once the cause is fixed.'
                 .format(last)
                 if last else 'No checkpoint had been saved yet.')
        return '{} at iteration {}; training stopped without saving these ' \
            'weights. {} {}'.format(what, self.iter, where, TRY_NEXT)

    def _wrap_log_writer(self, log_writer):
        def open_log(logdir=None, *args, **kwargs):
            main = self.local_rank == 0
            if main and self.resumed_from is not None and logdir and not kwargs.get(
                    'file_name'):
                name = vdl.continue_log(logdir, self.start_iter,
                                        os.path.dirname(self.resumed_from))
                if name:
                    logger.info('Continuing the VisualDL log {} after step '
                                '{}.'.format(name, self.start_iter))
                    kwargs['file_name'] = name
            writer = log_writer(logdir, *args, **kwargs)
            if main:
                self.writer = writer
            return writer

        return open_log
