"""``python -m paddleseg_ctx.train``: PaddleSeg 2.8 ``tools/train.py``.

PaddleSeg's own loop (``paddleseg.core.train``) runs with the hooks of
``paddleseg_ctx.training``: ``--resume_model`` continues a run exactly (data
order, random state, best model, VisualDL log), checkpoints are written
atomically, a NaN/inf loss stops the run with one message, and the VisualDL
log adds per-class IoU and sample images.

A config with a row in ``configs/model_zoo.yml`` trains with the row's
published total batch (GPUs x per-GPU batch) on any number of processes:
gradient accumulation or a larger per-process batch
(``--keep_total_batch``, ``paddleseg_ctx.training.accumulate``).

Multi-process data parallel: ``launch`` runs an executable, not ``-m``, so
pass the interpreter (on a CPU-only Paddle build it picks the gloo backend);
every rank shares the run seed, saves and restores its own random state and
stops with the others (``paddleseg_ctx.training.hooks``)::

    python -m paddle.distributed.launch --nproc_per_node 2 \\
        $(which python) -m paddleseg_ctx.train --config x.yml --device cpu
"""
import os
import re

import paddle
from paddleseg.core import train
from paddleseg.utils import logger, utils

from paddleseg_ctx.cli import common
from paddleseg_ctx.config import ConfigError
from paddleseg_ctx.datasets.survey import startup_check
from paddleseg_ctx.errors import run
from paddleseg_ctx.training.accumulate import (MODES, Accumulation,
                                               TotalBatchError,
                                               plan_total_batch)
from paddleseg_ctx.training.batch_norm import refuse_single_value_batch_norm
from paddleseg_ctx.training.checkpoints import checkpoint_problem
from paddleseg_ctx.training.hooks import TrainingRun, TrainingStopped
from paddleseg_ctx.zoo import ZOO_FILE, ZooError, load_zoo


def build_parser():
    parser = common.new_parser('train', 'Train a segmentation model.')
    common.add_device(parser, 'training')
    parser.add_argument(
        '--save_dir',
        default='./output',
        help='Directory for checkpoints, best_model/ and the VisualDL log. '
        'Default: ./output.')
    common.add_num_workers(parser)
    parser.add_argument(
        '--do_eval',
        action='store_true',
        help='Evaluate on val_dataset at every save and keep best_model/.')
    parser.add_argument(
        '--use_vdl',
        action='store_true',
        help='Write a VisualDL log to --save_dir (with --do_eval also '
        'per-class IoU and --vdl_samples validation images).')
    parser.add_argument(
        '--use_ema',
        action='store_true',
        help='Also keep an exponential moving average of the weights.')

    schedule = parser.add_argument_group('schedule')
    schedule.add_argument(
        '--resume_model',
        help='Checkpoint directory (save_dir/iter_N) to resume from: '
        'weights, optimizer, learning rate, iteration, data order, random '
        'state, best model and VisualDL log continue.')
    schedule.add_argument('--iters', type=int, help='Overrides config `iters`.')
    schedule.add_argument(
        '--batch_size',
        type=int,
        help='Batch size per device; overrides config `batch_size`.')
    schedule.add_argument(
        '--keep_total_batch',
        choices=MODES,
        help='Keep the published total batch (GPUs x per-GPU batch of the '
        'config\'s row in configs/model_zoo.yml, or --total_batch) on the '
        'processes this run has: `accumulate` sums the gradients of several '
        'micro-batches of --batch_size images per optimizer step, `batch` '
        'gives each process total / processes images, `off` keeps nothing '
        '(one warning). Default: accumulate when processes x batch size is '
        'smaller than the total, batch when larger. Learning rate, iters, '
        'save_interval and log_iters count optimizer steps either way.')
    schedule.add_argument(
        '--total_batch',
        type=int,
        help='Total batch to keep (images per optimizer step over all '
        'processes) for a config without a row in configs/model_zoo.yml or '
        'to override the row\'s.')
    schedule.add_argument(
        '--learning_rate',
        type=float,
        help='Overrides config `lr_scheduler.learning_rate`.')
    schedule.add_argument(
        '--save_interval',
        type=int,
        default=1000,
        help='Save (and evaluate with --do_eval) every N iterations. '
        'Default: 1000.')
    schedule.add_argument(
        '--log_iters',
        type=int,
        default=10,
        help='Log loss, lr, speed and ETA every N iterations. Default: 10.')
    schedule.add_argument(
        '--keep_checkpoint_max',
        type=int,
        default=5,
        help='Keep the N latest iter_* checkpoints (0: all); best_model/ is '
        'kept apart. Default: 5.')

    other = parser.add_argument_group('other')
    other.add_argument(
        '--seed',
        type=int,
        help='Random seed: seeds Python, numpy and Paddle in every process, '
        'and is the run seed of the data order and augmentations. Without '
        'it, rank 0 draws the run seed and every process uses it. A resumed '
        'run keeps its checkpoint\'s.')
    other.add_argument(
        '--precision',
        default='fp32',
        choices=('fp32', 'fp16'),
        help='fp16 trains with automatic mixed precision. Default: fp32.')
    other.add_argument(
        '--amp_level',
        default='O1',
        choices=('O1', 'O2'),
        help='AMP level with --precision fp16: O1 casts per op, O2 runs '
        'almost everything in fp16. Default: O1.')
    other.add_argument(
        '--profiler_options',
        help='Enable the train profiler, see '
        'paddleseg/utils/train_profiler.py.')
    common.add_data_format(other)
    other.add_argument(
        '--repeats',
        type=int,
        default=1,
        help='Repeat the training samples N times per epoch. Default: 1.')
    common.add_opts(other)

    ours = parser.add_argument_group('paddleseg_ctx additions')
    ours.add_argument(
        '--save_rank_weights',
        action='store_true',
        help='Each process also saves its weights before and after training '
        'to save_dir/rank_weights/rank<R>_{start,end}.pdparams (PaddleSeg '
        'saves from rank 0 only), to check that all ranks agree.')
    ours.add_argument(
        '--vdl_samples',
        type=int,
        default=3,
        help='Validation samples shown (input | label | prediction) in '
        'VisualDL at each evaluation. Default: 3.')
    return parser


def save_rank_weights(model, save_dir, tag):
    """Save this process's weights as ``rank<R>_<tag>.pdparams``."""
    path = os.path.join(save_dir, 'rank_weights', 'rank{}_{}.pdparams'.format(
        paddle.distributed.get_rank(), tag))
    paddle.save(model.state_dict(), path)
    logger.info('Saved this rank\'s weights to {}'.format(path))


def published_total_batch(config, zoo_file=ZOO_FILE):
    """``(total, where)`` of the published run of ``config``'s zoo row:
    total is GPUs x per-GPU batch, None when the source did not record the
    GPUs; ``(None, None)`` for a config without a row."""
    try:
        entries = load_zoo(zoo_file, include_unpublished=True)
    except (OSError, ZooError):  # e.g. an installed package without configs/
        return None, None
    root = os.path.dirname(os.path.dirname(os.path.abspath(zoo_file)))
    target = os.path.realpath(config)
    for entry in entries:
        if os.path.realpath(os.path.join(root, entry['config'])) == target:
            gpus, per_gpu = entry['gpus'], entry['batch_size_per_gpu']
            where = '{} GPUs x {} images, {}'.format(
                gpus if gpus is not None else 'unrecorded', per_gpu,
                os.path.relpath(zoo_file))
            return (gpus * per_gpu if gpus is not None else None), where
    return None, None


def batch_plan(args, cfg, zoo_file=ZOO_FILE):
    """The run's :class:`BatchPlan` (how the total batch is kept), logged;
    ends the command with a message when it cannot be kept as asked."""
    ranks = paddle.distributed.ParallelEnv().nranks
    if args.total_batch is not None:
        total, where = args.total_batch, '--total_batch'
    else:
        total, where = published_total_batch(args.config, zoo_file)
    if total is None and args.keep_total_batch not in (None, 'off'):
        raise TotalBatchError(
            '--keep_total_batch {}: {} has no published total batch ({}); '
            'pass --total_batch N.'.format(
                args.keep_total_batch, args.config,
                'its row does not record the GPUs' if where else
                'no row in configs/model_zoo.yml'))
    plan = plan_total_batch(total, ranks, cfg.batch_size,
                            mode=args.keep_total_batch, source=where)
    if plan.how == 'off':
        logger.warning(
            'The published total batch is {} ({}) but this run trains with '
            '{} ({} process(es) x {} images): --keep_total_batch off gives a '
            'different recipe.'.format(total, where, plan.total, ranks,
                                       plan.batch_size))
    elif where is not None:
        logger.info('Batch: ' + plan.describe())
    if plan.steps > 1 and cfg.to_static_training:
        raise TotalBatchError(
            '--config {}: gradient accumulation runs the model in dynamic '
            'mode; set `to_static_training: False` or pass --keep_total_batch '
            'batch.'.format(args.config))
    return plan


def main(argv=None, zoo_file=ZOO_FILE):
    """``zoo_file``: the model zoo the config's published total batch is
    looked up in."""
    parser = build_parser()
    args = common.parse_args(parser, argv)
    if args.resume_model:
        problem = checkpoint_problem(args.resume_model)
        if problem:
            parser.error('--resume_model {}: {}'.format(args.resume_model,
                                                       problem))
    cfg, builder = common.load_config(
        parser,
        args,
        learning_rate=args.learning_rate,
        iters=args.iters,
        batch_size=args.batch_size)
    common.show_info(cfg)
    utils.set_seed(args.seed)
    utils.set_device(args.device)
    utils.set_cv2_num_threads(args.num_workers)
    common.apply_data_format(cfg, args.data_format)
    plan = batch_plan(args, cfg, zoo_file)

    model = utils.convert_sync_batchnorm(builder.model, args.device)
    refuse_single_value_batch_norm(model)
    train_dataset = builder.train_dataset
    startup_check(args.config, train_dataset,
                  builder.val_dataset if args.do_eval else None)
    if args.repeats > 1:
        train_dataset.file_list *= args.repeats
    if args.save_rank_weights:
        save_rank_weights(model, args.save_dir, 'start')
    training = TrainingRun(
        model,
        args.save_dir,
        seed=args.seed,
        keep_checkpoint_max=args.keep_checkpoint_max,
        vdl_samples=args.vdl_samples)
    accumulation = Accumulation(model, plan.steps, builder.loss,
                                grad_scaler=lambda: training.scaler)
    try:
        with training.installed(), accumulation.installed():
            train(
                model,
                training.dataset(train_dataset),
                val_dataset=builder.val_dataset if args.do_eval else None,
                optimizer=builder.optimizer,
                save_dir=args.save_dir,
                iters=cfg.iters,
                batch_size=plan.loader_batch_size,
                resume_model=args.resume_model,
                save_interval=args.save_interval,
                log_iters=args.log_iters,
                num_workers=args.num_workers,
                use_vdl=args.use_vdl,
                use_ema=args.use_ema,
                losses=builder.loss,
                keep_checkpoint_max=0,  # `training` deletes old ones once a newer one is complete
                test_config=cfg.test_config,
                precision=args.precision,
                amp_level=args.amp_level,
                profiler_options=args.profiler_options,
                to_static_training=cfg.to_static_training)
    except TrainingStopped as err:
        if args.debug:
            raise
        raise SystemExit('error: {}'.format(err)) from None
    except RuntimeError as err:  # PaddleSeg's check, found at the first step
        counts = re.match(r'The length of logits_list should equal to the '
                          r'types of loss config: (\d+) != (\d+)', str(err))
        if counts is None:
            raise
        raise ConfigError(
            '--config {}: `loss.types` has {} entries but the model returns {} '
            'logits while training (main and auxiliary heads); give '
            '`loss.types` and `loss.coef` one entry per logit, or set '
            '`model.enable_auxiliary_loss: False`.'.format(
                args.config, counts.group(2), counts.group(1))) from err
    if args.save_rank_weights:
        save_rank_weights(model, args.save_dir, 'end')
    return plan


if __name__ == '__main__':
    run(main)
