"""Fixes that let PaddleSeg 2.8.0 train, evaluate and deploy on Paddle 3.x.

PaddleSeg 2.8 was written for Paddle 2.x, where ``int * float`` was promoted
implicitly and reductions returned shape-[1] tensors.  Each ``Fix`` below
replaces one PaddleSeg function, method or property, is applied only when a
small probe shows the original still breaks (so it switches itself off once
PaddleSeg/Paddle is fixed), and can be reverted::

    from paddleseg_ctx import compat
    compat.applied()                     # names of the active fixes, for logs
    compat.FIXES['metrics_0d_concat'].revert()

``pretrained_offline`` is not a version fix but our download policy: it routes
PaddleSeg's pretrained-weight loading through ``paddleseg_ctx.weights.fetch``;
nor is ``restricted_load``: PaddleSeg's ``resume`` and the ViT/CAE backbones'
``init_weight`` read with the restricted reader of
``paddleseg_ctx.weights.paddle_file``.
``apply_all()`` runs on ``import paddleseg_ctx``.
"""
import importlib
import os
import tempfile
import threading

import paddle
import paddle.nn.functional as F
from paddle.io.dataloader import dataloader_iter
from paddleseg.deploy.infer import DeployConfig
from paddleseg.models.losses import CrossEntropyLoss, OhemCrossEntropyLoss
from paddleseg.utils import metrics

from paddleseg_ctx.weights import fetch
from paddleseg_ctx.weights import load as weights_load

__all__ = ['Fix', 'FIXES', 'apply_all', 'applied', 'revert_all']

# `paddleseg.core.train` is the function (paddleseg/core/__init__.py re-exports it); we need the module.
_train_module = importlib.import_module('paddleseg.core.train')


class Fix:
    """Replace attributes of PaddleSeg objects while ``needed()`` says so.

    Args:
        name (str): Short id, reported by ``applied()``.
        why (str): One line: what breaks without the fix.
        needed (callable): Probe run against the original code; True if it
            still breaks.
        patches (list): ``(owner, attr, make)`` where ``make(original)``
            returns the replacement for ``owner.attr``.
    """

    def __init__(self, name, why, needed, patches):
        self.name = name
        self.why = why
        self.needed = needed
        self.patches = patches
        self._originals = None

    @property
    def active(self):
        return self._originals is not None

    def apply(self):
        if self.active:
            return
        self._originals = [getattr(owner, attr) for owner, attr, _ in self.patches]
        for (owner, attr, make), original in zip(self.patches, self._originals):
            setattr(owner, attr, make(original))

    def revert(self):
        if not self.active:
            return
        for (owner, attr, _), original in zip(self.patches, self._originals):
            setattr(owner, attr, original)
        self._originals = None


def _fails(probe):
    """True if calling ``probe`` raises."""
    try:
        probe()
    except Exception:  # noqa: BLE001  (any failure means the fix is needed)
        return True
    return False


# 1. CrossEntropyLoss: `mask * coef` / `label * mask` mix float32 and int64.

def _ce_loss_breaks():
    logit = paddle.zeros([1, 2, 1, 1])
    label = paddle.zeros([1, 1, 1], dtype='int64')
    return (_fails(lambda: CrossEntropyLoss()(logit, label)) or
            _fails(lambda: CrossEntropyLoss(weight=[1., 1.])(logit, label)))


def _ce_post_process_loss(self, logit, label, semantic_weights, loss):
    """Our minimal rewrite of ``CrossEntropyLoss._post_process_loss`` (same
    maths as PaddleSeg 2.8) with explicit int64/float32 casts."""
    label.stop_gradient = True
    if self.avg_non_ignore:
        mask = (label != self.ignore_index).astype('float32')
    else:
        mask = paddle.ones(label.shape, dtype='float32')
    if loss.ndim > mask.ndim:
        loss = loss.squeeze(-1)
    loss = loss * mask
    if semantic_weights is not None:
        loss = loss * semantic_weights
    if self.weight is None:
        coef = paddle.ones_like(mask)
    else:  # per-pixel class weight; ignored pixels look up class 0 as in PaddleSeg
        one_hot = F.one_hot(label * mask.astype(label.dtype), logit.shape[-1])
        coef = (one_hot * self.weight).sum(-1)
    if self.top_k_percent_pixels == 1.0:
        return loss.mean() / ((mask * coef).mean() + self.EPS)
    top_k = int(self.top_k_percent_pixels * loss.numel())
    loss, indices = paddle.topk(loss.flatten(), top_k)
    coef = paddle.gather(coef.flatten(), indices)
    return loss.mean() / (coef.mean() + self.EPS)


# 2. OhemCrossEntropyLoss adds an int64 mask to float32 probabilities.

def _ohem_loss_breaks():
    logit = paddle.zeros([1, 2, 1, 2])
    label = paddle.zeros([1, 1, 2], dtype='int64')
    return _fails(lambda: OhemCrossEntropyLoss(min_kept=1)(logit, label))


def _ohem_forward(self, logit, label):
    """Our minimal rewrite of ``OhemCrossEntropyLoss.forward`` (same maths as
    PaddleSeg 2.8): drop pixels whose true-class probability is above
    ``max(thresh, min_kept-th smallest probability)``, then average the cross
    entropy over the kept pixels."""
    n, c, h, w = logit.shape
    label = label.flatten().astype('int64')
    valid = label != self.ignore_index
    label = label * valid.astype('int64')  # ignored pixels read class 0, as in PaddleSeg
    if 0 < self.min_kept < int(valid.sum()):
        prob = F.softmax(logit, axis=1).transpose([1, 0, 2, 3]).reshape([c, -1])
        prob = (prob * F.one_hot(label, c).T).sum(0)
        prob = prob + (1 - valid.astype(prob.dtype))  # ignored pixels sort last
        kth = paddle.sort(prob)[min(prob.shape[0], self.min_kept) - 1]
        valid = valid & (prob < max(float(kth), self.thresh))
    label = paddle.where(valid, label, paddle.full_like(label, self.ignore_index))
    loss = F.cross_entropy(logit, label.reshape([n, 1, h, w]), reduction='none',
                           ignore_index=self.ignore_index, axis=1)
    return loss.mean() / (valid.astype('float32').mean() + self.EPS)


# 3. core/train.py logs `l[0]` of each loss's numpy value; Paddle 3 losses are 0-D.
#    (Shape [1] is what Paddle 2 returned; `float(loss)` on it only raises a NumPy DeprecationWarning.)

def _losses_are_0d():
    return paddle.ones([2]).mean().numpy().ndim == 0


def _one_element_losses(loss_computation):
    def wrapped(logits_list, labels, edges, losses):
        return [loss.reshape([1]) for loss in loss_computation(
            logits_list, labels, edges, losses)]
    wrapped.__doc__ = loss_computation.__doc__
    return wrapped


# 4. utils/metrics.py `paddle.concat`s per-class 0-D sums (first evaluation fails).

def _calculate_area_breaks():
    pred = paddle.zeros([1, 1, 2, 2], dtype='int64')
    return _fails(lambda: metrics.calculate_area(pred, pred, 2))


def _calculate_area(pred, label, num_classes, ignore_index=255):
    """Our minimal rewrite of ``metrics.calculate_area``: per-class
    (intersection, prediction, label) pixel counts, int64 ``[num_classes]``,
    counted with ``bincount`` over the non-ignored pixels."""
    if pred.ndim == 4:
        pred = pred.squeeze(1)
    if label.ndim == 4:
        label = label.squeeze(1)
    if pred.shape != label.shape:
        raise ValueError('Shape of `pred` and `label` should be equal, but '
                         'they are {} and {}.'.format(pred.shape, label.shape))
    valid = label != ignore_index
    pred = paddle.masked_select(pred.astype('int64'), valid)
    label = paddle.masked_select(label.astype('int64'), valid)

    def count(values):
        return paddle.bincount(values, minlength=num_classes)[:num_classes]

    return count(paddle.masked_select(label, pred == label)), count(pred), count(label)


# 5. deploy.yaml names `model.pdmodel`; Paddle 3 (PIR) `jit.save` writes `model.json`.

def _jit_save_skips_pdmodel():
    with tempfile.TemporaryDirectory() as tmp:
        spec = paddle.static.InputSpec([None, 1], 'float32')
        paddle.jit.save(paddle.nn.Linear(1, 1), os.path.join(tmp, 'probe'),
                        input_spec=[spec])
        return not os.path.isfile(os.path.join(tmp, 'probe.pdmodel'))


def _model_file_fallback(model_property):
    def model(self):
        path = model_property.fget(self)
        stem, ext = os.path.splitext(path)
        other = stem + {'.pdmodel': '.json', '.json': '.pdmodel'}.get(ext, ext)
        return other if not os.path.isfile(path) and os.path.isfile(other) else path
    return property(model, doc='Program file; falls back between '
                    '.pdmodel and .json (Paddle 3 writes .json).')


# 6. With num_workers=0 Paddle loads batches in a thread; an exception raised
#    while reading a sample ends that thread but leaves its queue open, so the
#    training or evaluation loop waits forever instead of failing.

class _FailingDataset(paddle.io.Dataset):
    def __len__(self):
        return 1

    def __getitem__(self, index):
        raise LookupError('probe')


def _loader_thread_hangs():
    hook = threading.excepthook
    threading.excepthook = lambda args: None  # the probe's own exception
    try:
        it = iter(paddle.io.DataLoader(_FailingDataset(), batch_size=1))
        it._thread.join(5)
        stuck = not it._thread_done_event.is_set()
        it._try_shutdown_all()
        return stuck
    finally:
        threading.excepthook = hook


def _thread_loop_reporting(thread_loop):
    def loop(self, *args):
        try:
            thread_loop(self, *args)
        except Exception as error:  # noqa: BLE001  (re-raised by __next__)
            self._sample_error = error
            self._exit_thread_unexpectedly()
    return loop


def _next_reraising(next_batch):
    def next_(self):
        try:
            return next_batch(self)
        except SystemError:  # "Blocking queue is killed because the data reader raises an exception."
            error = getattr(self, '_sample_error', None)
            if error is None:
                raise
            raise error.with_traceback(error.__traceback__) from None
    return next_


FIXES = {fix.name: fix for fix in [
    Fix('ce_loss_int_float',
        'CrossEntropyLoss multiplies float32 by int64 (no implicit promotion in Paddle 3)',
        _ce_loss_breaks,
        [(CrossEntropyLoss, '_post_process_loss', lambda _: _ce_post_process_loss)]),
    Fix('ohem_loss_int_float',
        'OhemCrossEntropyLoss adds an int64 mask to float32 probabilities',
        _ohem_loss_breaks,
        [(OhemCrossEntropyLoss, 'forward', lambda _: _ohem_forward)]),
    Fix('train_0d_loss_index',
        'core/train.py indexes each loss with l[0]; Paddle 3 losses are 0-D',
        _losses_are_0d,
        [(_train_module, 'loss_computation', _one_element_losses)]),
    Fix('metrics_0d_concat',
        'metrics.calculate_area concatenates 0-D per-class sums',
        _calculate_area_breaks,
        [(metrics, 'calculate_area', lambda _: _calculate_area)]),
    Fix('deploy_model_json',
        'deploy.yaml names model.pdmodel but Paddle 3 jit.save writes model.json',
        _jit_save_skips_pdmodel,
        [(DeployConfig, 'model', _model_file_fallback)]),
    Fix('loader_thread_error',
        'an exception in a sample leaves the single-process DataLoader waiting forever',
        _loader_thread_hangs,
        [(dataloader_iter._DataLoaderIterSingleProcess, '_thread_loop', _thread_loop_reporting),
         (dataloader_iter._DataLoaderIterSingleProcess, '__next__', _next_reraising)]),
    # Not a version fix but our download policy, so always on (see paddleseg_ctx.weights.fetch).
    Fix('pretrained_offline',
        'PaddleSeg downloads wait 15 s, leave .download.lock files and give no offline hint',
        lambda: True,
        fetch.PADDLESEG_PATCHES),
    # Not a version fix but our loading policy (see paddleseg_ctx.weights.paddle_file).
    Fix('restricted_load',
        "PaddleSeg's resume and ViT/CAE weights use paddle.load, which runs any code a file holds",
        lambda: True,
        weights_load.PADDLESEG_LOAD_PATCHES),
]}


def apply_all():
    """Apply every fix that the installed PaddleSeg/Paddle pair needs."""
    for fix in FIXES.values():
        if not fix.active and fix.needed():
            fix.apply()
    return applied()


def applied():
    """Names of the fixes currently applied."""
    return [name for name, fix in FIXES.items() if fix.active]


def revert_all():
    """Restore PaddleSeg's original code."""
    for fix in FIXES.values():
        fix.revert()
