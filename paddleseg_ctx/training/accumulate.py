"""The published total batch on any number of GPUs.

A published row was trained with a total batch of GPUs x per-GPU batch.
:func:`plan_total_batch` decides how a run on ``ranks`` processes with a
per-process ``batch_size`` keeps that total:

* ``accumulate``: each optimizer step sums the gradients of ``steps``
  micro-batches of ``batch_size`` images per process;
* ``batch``: a per-process batch of total / ranks images;
* ``off``: nothing is kept; one warning names both totals.

:class:`Accumulation` does the accumulation inside PaddleSeg's own loop
(``paddleseg.core.train``) without copying it.  The loop is given a data
batch of ``steps`` x ``batch_size`` images per process, so one loop
iteration stays one optimizer step: learning rate, schedule length,
``save_interval``, logging and checkpoint names count optimizer steps as
published.  A forward pre-hook on the model runs the first ``steps - 1``
micro-batches (forward, loss, backward with the loss divided by ``steps``)
and hands the loop only the last one; the loop's loss call gets that
micro-batch's labels, and its loss terms are divided by ``steps`` too, plus
the (detached) values of the earlier micro-batches, so the logged loss is the
mean over the whole batch.  The loop's ``loss.backward()``,
``optimizer.step()``, learning-rate step and ``clear_gradients()`` then act
once per step.  Under data parallel the earlier micro-batches run the inner
model (no gradient synchronisation) and the last one runs through the
``DataParallel`` wrapper, whose backward all-reduces the accumulated
gradients once.

What this cannot reproduce: BatchNorm normalises over each micro-batch (and
updates its running statistics once per micro-batch), not over the
published per-GPU batch or, with SyncBN, the published total.
"""
import contextlib
import importlib
from typing import NamedTuple

import paddle

from paddleseg_ctx.compat import Fix
from paddleseg_ctx.errors import UserError

__all__ = ['MODES', 'Accumulation', 'BatchPlan', 'TotalBatchError',
           'plan_total_batch']

_train_module = importlib.import_module('paddleseg.core.train')

MODES = ('accumulate', 'batch', 'off')


class TotalBatchError(UserError, ValueError):
    """The published total batch cannot be kept as asked."""


class BatchPlan(NamedTuple):
    batch_size: int  # images per process per micro-batch
    steps: int  # micro-batches per optimizer step (1: no accumulation)
    ranks: int
    published_total: int  # None: the source did not record it
    how: str  # 'accumulate' | 'batch' | 'off' | 'as published' | 'unknown'

    @property
    def total(self):
        """Images per optimizer step over all processes."""
        return self.batch_size * self.steps * self.ranks

    @property
    def loader_batch_size(self):
        """Images per process per loop iteration (the loop's batch_size)."""
        return self.batch_size * self.steps

    def describe(self):
        if self.published_total is None:
            return ('total batch {} ({} process{} x {}); the published total '
                    'is not recorded'.format(self.total, self.ranks,
                                             'es' if self.ranks > 1 else '',
                                             self.batch_size))
        text = 'total batch {} = {} process{} x {} images'.format(
            self.total, self.ranks, 'es' if self.ranks > 1 else '',
            self.batch_size)
        if self.steps > 1:
            text += ' x {} accumulated micro-batches'.format(self.steps)
        return text + ' (published: {}; kept by: {})'.format(
            self.published_total, self.how)


def plan_total_batch(published_total, ranks, batch_size, mode=None,
                     source='the published run'):
    """How to keep the published total batch.

    Args:
        published_total (int|None): Images per optimizer step of the
            published run (GPUs x per-GPU batch); None if the source did not
            record it (nothing to keep).
        ranks (int): Processes this run has.
        batch_size (int): Images per process asked for (config or
            ``--batch_size``).
        mode (str|None): ``accumulate``, ``batch`` or ``off``; None picks
            ``accumulate`` when ``ranks x batch_size`` is smaller than the
            published total and ``batch`` when it is larger.
        source (str): Where ``published_total`` comes from, for messages.

    Returns:
        BatchPlan.  Raises :class:`TotalBatchError` when the total cannot
        be kept that way, saying what to change.
    """
    if mode not in (None,) + MODES:
        raise TotalBatchError('--keep_total_batch {}: choose one of {}.'
                              .format(mode, ', '.join(MODES)))
    if published_total is None:
        return BatchPlan(batch_size, 1, ranks, None, 'unknown')
    actual = ranks * batch_size
    what = 'the published total batch {} ({})'.format(published_total, source)
    if mode == 'off' or (actual == published_total and mode is None):
        return BatchPlan(batch_size, 1, ranks, published_total,
                         'as published' if actual == published_total else 'off')
    if mode is None:
        mode = 'accumulate' if actual < published_total else 'batch'
    if mode == 'batch':
        if published_total % ranks:
            raise TotalBatchError(
                '{} cannot be split evenly over {} processes; run on a number '
                'of processes that divides {}, or pass --keep_total_batch '
                'off.'.format(what, ranks, published_total))
        return BatchPlan(published_total // ranks, 1, ranks, published_total,
                         'batch')
    if actual > published_total or published_total % actual:
        fits = [b for b in range(batch_size, 0, -1)
                if published_total % (ranks * b) == 0]
        hint = ('pass --batch_size {} (accumulating {} micro-batches)'.format(
            fits[0], published_total // (ranks * fits[0])) if fits else
                'run on a number of processes that divides {}'.format(
                    published_total))
        raise TotalBatchError(
            'gradient accumulation cannot make {} from {} process{} x {} '
            'images: it must be a whole multiple of {}; {}, or pass '
            '--keep_total_batch batch or off.'.format(
                what, ranks, 'es' if ranks > 1 else '', batch_size, actual,
                hint))
    return BatchPlan(batch_size, published_total // actual, ranks,
                     published_total, 'accumulate')


def _part(value, start, stop, full):
    """Rows ``start:stop`` of a batched tensor; anything else as it is."""
    if isinstance(value, paddle.Tensor) and value.ndim > 0 and \
            value.shape[0] == full:
        return value[start:stop]
    return value


class Accumulation:
    """Gradient accumulation over ``steps`` micro-batches inside one
    ``paddleseg.core.train`` call (see the module docstring).

    Args:
        model (nn.Layer): The model given to ``train``.
        steps (int): Micro-batches per optimizer step.
        losses (dict): ``losses`` given to ``train``.
        grad_scaler (callable): Returns the fp16 ``GradScaler`` of the run,
            or None (fp32).
    """

    def __init__(self, model, steps, losses, grad_scaler=lambda: None):
        self.model = model
        self.steps = steps
        self.losses = losses
        self.grad_scaler = grad_scaler
        self._batch = None  # the data batch the loop is about to use
        self._earlier = None  # loss terms of the earlier micro-batches (floats)
        self._size = None  # (full batch, micro-batch) of the current step

    @contextlib.contextmanager
    def installed(self):
        """Install for one ``train`` call; use inside
        ``TrainingRun.installed()`` so that its step hook runs first."""
        if self.steps == 1:
            yield self
            return

        def fix(name, owner, attr, make):
            return Fix(name, 'gradient accumulation', lambda: True,
                       [(owner, attr, make)])

        fixes = [
            fix('accumulate_loader', paddle.io, 'DataLoader',
                self._wrap_loader),
            fix('accumulate_loss', _train_module, 'loss_computation',
                self._wrap_loss),
        ]
        if hasattr(self.model, 'loss_computation'):
            fixes.append(fix('accumulate_model_loss', self.model,
                             'loss_computation', self._wrap_model_loss))
        for one in fixes:
            one.apply()
        handle = self.model.register_forward_pre_hook(self._before_forward)
        try:
            yield self
        finally:
            handle.remove()
            for one in reversed(fixes):
                one.revert()

    # -- the loop's data loader: remember the batch it hands out ------------

    def _wrap_loader(self, data_loader):
        accumulation = self

        class RecordingLoader:
            def __init__(self, *args, **kwargs):
                self._loader = data_loader(*args, **kwargs)

            def __len__(self):
                return len(self._loader)

            def __iter__(self):
                for data in self._loader:
                    if accumulation.model.training:  # not an evaluation's
                        accumulation._batch = data
                    yield data

        return RecordingLoader

    # -- the model: run the earlier micro-batches ----------------------------

    def _before_forward(self, layer, inputs):
        if not layer.training or self._batch is None:
            return None
        data, self._batch = self._batch, None
        images = inputs[0]
        full = images.shape[0]
        if full % self.steps:
            raise TotalBatchError(
                'gradient accumulation over {} micro-batches got a batch of {} '
                'images, not a multiple of {}.'.format(self.steps, full,
                                                        self.steps))
        micro = full // self.steps
        self._size = (full, micro)
        scaler = self.grad_scaler()
        self._earlier = []
        for k in range(self.steps - 1):
            start, stop = k * micro, (k + 1) * micro
            logits_list = layer.forward(images[start:stop], *inputs[1:])
            part = {key: _part(value, start, stop, full)
                    for key, value in data.items()}
            loss_list = self._micro_loss(layer, logits_list, part)
            loss = sum(loss_list) / self.steps
            (scaler.scale(loss) if scaler is not None else loss).backward()
            self._earlier.append([float(term) for term in loss_list])
        return (images[full - micro:],) + tuple(inputs[1:])

    def _micro_loss(self, layer, logits_list, data):
        """The loss terms the loop would compute for ``data``."""
        if hasattr(layer, 'loss_computation'):
            return self._model_loss(logits_list, self.losses, data)
        edges = data['edge'].astype('int64') if 'edge' in data else None
        return self._module_loss(
            logits_list=logits_list, labels=data['label'].astype('int64'),
            edges=edges, losses=self.losses)

    # -- the loop's loss call: the last micro-batch --------------------------

    def _combine(self, loss_list):
        """Each term / steps (the gradient of the last micro-batch) plus the
        earlier micro-batches' values / steps (constants): its value is the
        mean over the whole batch."""
        earlier = self._earlier or []
        return [(term + sum(terms[i] for terms in earlier)) / self.steps
                if earlier else term / self.steps
                for i, term in enumerate(loss_list)]

    def _last(self, value):
        full, micro = self._size
        return _part(value, full - micro, full, full)

    def _wrap_loss(self, loss_computation):
        self._module_loss = loss_computation

        def last_micro_batch(logits_list, labels, edges, losses):
            if self._size is None:  # not a training step of this run
                return loss_computation(logits_list, labels, edges, losses)
            return self._combine(loss_computation(
                logits_list, self._last(labels),
                None if edges is None else self._last(edges), losses))

        return last_micro_batch

    def _wrap_model_loss(self, loss_computation):
        self._model_loss = loss_computation

        def last_micro_batch(logits_list, losses, data):
            if self._size is None:
                return loss_computation(logits_list, losses, data)
            return self._combine(loss_computation(
                logits_list, losses,
                {key: self._last(value) for key, value in data.items()}))

        return last_micro_batch
