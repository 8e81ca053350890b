"""The published total batch on any number of processes
(paddleseg_ctx.training.accumulate, ``train --keep_total_batch``).

Gradient accumulation runs inside PaddleSeg's own loop; the reference for one
accumulated step is the same loop given the whole batch at once, without
accumulation installed (PaddleSeg's step: one forward, one backward).
"""
import os
import re
import signal
import sys
import types

import numpy as np
import paddle
import pytest
from paddleseg.core import train
from paddleseg.models.losses import CrossEntropyLoss

import training_runs as runs
from cli_utils import make_data, run, write_config
from paddleseg_ctx.cli import train as train_command
from paddleseg_ctx.training.accumulate import (Accumulation, TotalBatchError,
                                               plan_total_batch)
from paddleseg_ctx.training.hooks import TrainingRun

NUM_CLASSES = 3


class TinyData(paddle.io.Dataset):
    """Random 3x8x8 images and labels with no ignored pixel: PaddleSeg's
    cross-entropy averages over the non-ignored pixels of a batch, so the
    mean of micro-batch losses equals the whole batch's loss exactly only
    when every micro-batch has as many of them (as every GPU of a published
    run averaged over its own images)."""

    def __init__(self, n=8):
        rng = np.random.RandomState(0)
        self.images = rng.rand(n, 3, 8, 8).astype('float32')
        self.labels = rng.randint(0, NUM_CLASSES, (n, 8, 8)).astype('int64')

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {'img': self.images[i], 'label': self.labels[i]}


class TinyNet(paddle.nn.Layer):
    """Conv, BatchNorm, ReLU and two heads (main and auxiliary logits)."""

    def __init__(self, frozen_bn):
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 8, 3, padding=1, bias_attr=False)
        # use_global_stats: normalise with the running statistics and never
        # update them, also in train mode (a frozen BatchNorm)
        self.bn = paddle.nn.BatchNorm2D(8, use_global_stats=frozen_bn or None)
        self.head = paddle.nn.Conv2D(8, NUM_CLASSES, 1)
        self.aux = paddle.nn.Conv2D(8, NUM_CLASSES, 1)

    def forward(self, x):
        feature = paddle.nn.functional.relu(self.bn(self.conv(x)))
        return [self.head(feature), self.aux(feature)]


def train_tiny(save_dir, batch_size, steps, frozen_bn, iters=2):
    """Weights after ``iters`` optimizer steps of PaddleSeg's loop with
    ``steps`` micro-batches of ``batch_size`` images each."""
    paddle.seed(0)
    model = TinyNet(frozen_bn)
    with paddle.no_grad():  # BatchNorm statistics other than 0 and 1
        model.bn._mean.set_value(paddle.full([8], 0.1))
        model.bn._variance.set_value(paddle.full([8], 0.5))
    start = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    schedule = paddle.optimizer.lr.PolynomialDecay(0.1, iters, end_lr=0.0)
    optimizer = paddle.optimizer.Momentum(
        learning_rate=schedule, momentum=0.9, parameters=model.parameters(),
        weight_decay=1e-3)
    losses = {'types': [CrossEntropyLoss(), CrossEntropyLoss()],
              'coef': [1, 0.4]}
    training = TrainingRun(model, str(save_dir), seed=0, keep_checkpoint_max=0)
    accumulation = Accumulation(model, steps, losses)
    with training.installed(), accumulation.installed():
        train(model, training.dataset(TinyData()), optimizer=optimizer,
              save_dir=str(save_dir), iters=iters,
              batch_size=batch_size * steps, save_interval=iters, log_iters=1,
              losses=losses, keep_checkpoint_max=0)
    end = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    return start, end


def max_relative_update_difference(start, a, b, keys):
    """max over ``keys`` of |a - b| / max|a - start|: the difference of two
    runs' results relative to the size of the update (at least a thousandth
    of the largest update: a bias before a BatchNorm hardly moves)."""
    updates = {k: float(np.abs(a[k] - start[k]).max()) for k in keys}
    floor = 1e-3 * max(updates.values())
    return max(float(np.abs(a[k] - b[k]).max()) / max(updates[k], floor)
               for k in keys)


def logged_losses(out):
    """The loss of each ``[TRAIN]`` line PaddleSeg's loop logged."""
    return re.findall(r'\[TRAIN\].* iter: (\d+)/\d+, loss: ([0-9.]+)', out)


def test_accumulated_steps_equal_whole_batch_steps_with_frozen_batch_norm(
        tmp_path, capsys):
    start, whole = train_tiny(tmp_path / 'whole', 4, 1, frozen_bn=True)
    whole_log = logged_losses(capsys.readouterr().out)
    _, accumulated = train_tiny(tmp_path / 'acc', 1, 4, frozen_bn=True)
    # one loop iteration per optimizer step, logging the whole batch's loss
    assert logged_losses(capsys.readouterr().out) == whole_log
    assert [step for step, _ in whole_log] == ['1', '2']
    params = [k for k in whole if not k.endswith(('_mean', '_variance'))]
    assert max_relative_update_difference(
        start, whole, accumulated, params) < 1e-4
    for key in ('bn._mean', 'bn._variance'):  # frozen: never updated
        np.testing.assert_array_equal(accumulated[key], start[key])
    # the runs trained: a different batch (2 instead of 4) is far off
    _, other = train_tiny(tmp_path / 'half', 1, 2, frozen_bn=True)
    assert max_relative_update_difference(start, whole, other, params) > 0.05


# BatchNorm in train mode normalises over each micro-batch of one image,
# not over the four: on these 8x8 random maps the two-step weights differ by
# up to this share of their update (measured: 15%; with micro-batches of 2
# images 7%).  The published GPUs each normalised over their own images, or
# with SyncBN over all of them (README, Reproduce a published row).
BATCH_NORM_TOLERANCE = 0.25


def test_accumulated_steps_with_batch_norm_stay_within_the_stated_tolerance(
        tmp_path):
    start, whole = train_tiny(tmp_path / 'whole', 4, 1, frozen_bn=False)
    _, accumulated = train_tiny(tmp_path / 'acc', 1, 4, frozen_bn=False)
    params = [k for k in whole if not k.endswith(('_mean', '_variance'))]
    difference = max_relative_update_difference(start, whole, accumulated,
                                                params)
    assert 0 < difference < BATCH_NORM_TOLERANCE
    # running statistics: updated once per micro-batch
    assert not np.allclose(accumulated['bn._mean'], whole['bn._mean'])


@pytest.mark.parametrize('total,ranks,batch,mode,expected', [
    (8, 1, 2, None, (2, 4, 'accumulate')),
    (8, 2, 2, None, (2, 2, 'accumulate')),
    (8, 4, 2, None, (2, 1, 'as published')),
    (8, 8, 2, None, (1, 1, 'batch')),  # more processes: smaller batch each
    (8, 1, 2, 'batch', (8, 1, 'batch')),
    (8, 2, 2, 'off', (2, 1, 'off')),
    (None, 1, 2, None, (2, 1, 'unknown')),  # GPUs not recorded
    (32, 1, 8, None, (8, 4, 'accumulate')),
])
def test_plan_keeps_the_published_total(total, ranks, batch, mode, expected):
    plan = plan_total_batch(total, ranks, batch, mode=mode)
    assert (plan.batch_size, plan.steps, plan.how) == expected
    if total is not None and mode != 'off':
        assert plan.total == total


@pytest.mark.parametrize('total,ranks,batch,mode,message', [
    (8, 1, 3, None, r'--batch_size 2 \(accumulating 4'),
    (8, 3, 2, 'batch', 'cannot be split evenly over 3'),
    (8, 16, 1, 'accumulate', 'whole multiple of 16'),
    (8, 1, 2, 'sometimes', 'choose one of accumulate, batch, off'),
])
def test_plan_errors_say_what_to_change(total, ranks, batch, mode, message):
    with pytest.raises(TotalBatchError, match=message):
        plan_total_batch(total, ranks, batch, mode=mode)


def test_zoo_rows_give_their_published_total():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    mmseg = os.path.join(
        root, 'configs/gcnet/gcnet_resnet50v1c_os8_cityscapes_1024x512_40k.yml')
    ssseg = os.path.join(
        root, 'configs/isnet/isnet_resnest101_os8_lip_473x473_114150.yml')
    paddleseg = os.path.join(
        root, 'configs/ginet/ginet_resnet50vd_os8_cityscapes_1024x512_80k.yml')
    assert train_command.published_total_batch(mmseg)[0] == 4 * 2
    assert train_command.published_total_batch(ssseg)[0] == 4 * 10
    total, where = train_command.published_total_batch(paddleseg)
    assert total is None and 'unrecorded GPUs x 2 images' in where
    assert train_command.published_total_batch(__file__) == (None, None)


def test_off_warns_once_with_both_totals(capsys):
    args = types.SimpleNamespace(total_batch=8, config='x.yml',
                                 keep_total_batch='off')
    cfg = types.SimpleNamespace(batch_size=2, to_static_training=False)
    plan = train_command.batch_plan(args, cfg)
    assert (plan.total, plan.steps, plan.how) == (2, 1, 'off')
    out = capsys.readouterr().out
    assert out.count('WARNING') == 1
    assert 'The published total batch is 8 (--total_batch) but this run ' \
        'trains with 2 (1 process(es) x 2 images)' in out


def train_argv(config, save_dir, *flags):
    return ['-m', 'paddleseg_ctx.train', '--config', config, '--device',
            'cpu', '--save_dir', str(save_dir), '--iters', '2',
            '--batch_size', '1', '--total_batch', '4', '--save_interval',
            '2', '--log_iters', '1', '--seed', '0', '--save_rank_weights'] + [
                str(f) for f in flags]


def test_one_and_two_gloo_ranks_train_with_the_total_batch(tmp_path):
    """4 images, total batch 4 of 1-image micro-batches: 1 rank accumulates
    4, 2 ranks accumulate 2 each; every step sees all four images, each
    normalised alone, so the parameters agree."""
    data = make_data(tmp_path / 'data', num_train=4, num_val=1)
    config = write_config(tmp_path / 'fcn.yml', data)
    one = run([sys.executable] + train_argv(config, tmp_path / 'one'),
              timeout=240)
    assert 'total batch 4 = 1 process x 1 images x 4 accumulated ' \
        'micro-batches (published: 4; kept by: accumulate)' in one.stdout + one.stderr
    run([sys.executable, '-m', 'paddle.distributed.launch', '--nproc_per_node',
         '2', '--log_dir', str(tmp_path / 'log'), sys.executable] +
        train_argv(config, tmp_path / 'two'), timeout=240)
    log0 = (tmp_path / 'log' / 'workerlog.0').read_text()
    assert 'total batch 4 = 2 processes x 1 images x 2 accumulated ' \
        'micro-batches' in log0, log0[-2000:]
    assert 'iter: 2/2' in log0, log0[-2000:]

    def weights(save_dir, rank, tag):
        return paddle.load(str(save_dir / 'rank_weights' /
                               'rank{}_{}.pdparams'.format(rank, tag)))

    start = {k: v.numpy() for k, v in
             weights(tmp_path / 'one', 0, 'start').items()}
    ends = [{k: v.numpy() for k, v in weights(save_dir, rank, 'end').items()}
            for save_dir, rank in ((tmp_path / 'one', 0),
                                   (tmp_path / 'two', 0),
                                   (tmp_path / 'two', 1))]
    params = [k for k in start if not k.endswith(('_mean', '_variance'))]
    for end in ends[1:]:
        assert max_relative_update_difference(start, ends[0], end,
                                              params) < 1e-3


def test_resumed_accumulated_run_equals_the_uninterrupted_one(tmp_path):
    """training_runs' augmented, dropout-using run with 2 micro-batches of 2
    images per step, SIGKILLed after iter_30 and resumed from iter_20."""
    setup = runs.setup(str(tmp_path))
    flags = ('--total_batch', 4)
    reference = tmp_path / 'uninterrupted'
    runs.train(setup.config, reference, *flags)
    log = (str(reference) + '.log')
    assert re.search(r'x 2 accumulated micro-batches', open(log).read())
    resumed = tmp_path / 'resumed'
    status = runs.train_until_killed(setup.config, resumed, 30, *flags)
    assert status == -signal.SIGKILL
    runs.train(setup.config, resumed, '--resume_model', resumed / 'iter_20',
               *flags)
    a = paddle.load(str(reference / 'iter_40' / 'model.pdparams'))
    b = paddle.load(str(resumed / 'iter_40' / 'model.pdparams'))
    assert sorted(a) == sorted(b)
    for key in a:  # as test_training's resume check: 1e-4 of the scale
        x, y = a[key].numpy(), b[key].numpy()
        scale = max(float(np.abs(x).max()), 1e-3)
        assert float(np.abs(x - y).max()) <= 1e-4 * scale, key
