"""``python -m paddleseg_ctx.reproduce ROW --data_root DIR --save_dir DIR``:
from a data set to a published-vs-reproduced report for one model-zoo row.

``ROW`` is a row of ``configs/model_zoo.yml``: its config name as in the
README's model tables (e.g. ``gcnet_resnet50v1c_os8_cityscapes_1024x512_40k``)
or the config's path.  The command

1. checks the data set under ``--data_root`` (every sample read once, as
   ``python -m paddleseg_ctx.datasets check``);
2. trains the row's config with ``train``, keeping the published total batch
   (``--keep_total_batch``), on the processes it is started with (also under
   ``paddle.distributed.launch``); run again on the same ``--save_dir`` it
   resumes from the last complete checkpoint;
3. evaluates the final model with the protocol of every published column
   (``val --protocol``);
4. writes ``report.md`` and ``report.json`` to ``--save_dir``: published and
   reproduced mIoU per column and their difference, the environment (Paddle,
   CUDA, GPUs), the total batch and how it was kept, the training time and
   the paths of the VisualDL log and the checkpoints.
"""
import argparse
import difflib
import json
import os
import platform
import time

import paddle
from paddleseg.utils import logger

from paddleseg_ctx import evaluation
from paddleseg_ctx.cli import train as train_command
from paddleseg_ctx.cli import val as val_command
from paddleseg_ctx.errors import UserError, add_debug, run
from paddleseg_ctx.files import atomic_write_text
from paddleseg_ctx.training.accumulate import MODES
from paddleseg_ctx.training.checkpoints import MODEL_FILE, complete_checkpoints
from paddleseg_ctx.version import __version__
from paddleseg_ctx.zoo import ZOO_FILE, is_published, load_zoo

__all__ = ['main', 'find_row']

STATE_FILE = 'reproduce.json'  # in --save_dir: data check, training time


class ReproduceError(UserError, ValueError):
    """The row cannot be reproduced as asked; the message says why."""


def build_parser():
    parser = argparse.ArgumentParser(
        prog='python -m paddleseg_ctx.reproduce',
        description='Train a model-zoo row with its published recipe and '
        'total batch, evaluate every published column with its protocol, '
        'and write report.md and report.json.')
    parser.add_argument(
        'row', metavar='ROW',
        help='Config name of a configs/model_zoo.yml row (as in the README '
        'model tables) or the path of its config.')
    parser.add_argument(
        '--data_root', required=True,
        help='The data set (as made by `python -m paddleseg_ctx.datasets '
        'prepare`); replaces the config\'s dataset_root.')
    parser.add_argument(
        '--save_dir', required=True,
        help='Checkpoints, the VisualDL log and the report. Run again on the '
        'same directory to resume.')
    parser.add_argument(
        '--iters', type=int,
        help='Train this many iterations instead of the published schedule '
        '(a short trial; the report says so).')
    parser.add_argument(
        '--batch_size', type=int,
        help='Images per process (micro-batch with accumulation). Default: '
        'the config\'s, the published per-GPU batch.')
    parser.add_argument(
        '--keep_total_batch', choices=MODES,
        help='How the published total batch is kept (see `train --help`). '
        'Default: accumulate when fewer images per step, batch when more.')
    parser.add_argument(
        '--device', default='gpu', choices=('cpu', 'gpu'),
        help='Device to train and evaluate on. Default: gpu.')
    parser.add_argument(
        '--num_workers', type=int, default=4,
        help='Data loader worker processes. Default: 4.')
    parser.add_argument(
        '--save_interval', type=int, default=1000,
        help='Save a checkpoint every N iterations (a rerun resumes from '
        'the last). Default: 1000.')
    parser.add_argument(
        '--log_iters', type=int, default=50,
        help='Log every N iterations. Default: 50.')
    parser.add_argument('--seed', type=int, default=0,
                        help='Run seed. Default: 0.')
    add_debug(parser)
    return parser


def find_row(row, zoo_file=ZOO_FILE):
    """``(entry, config path)`` of the published zoo row named ``row``."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(zoo_file)))
    entries = load_zoo(zoo_file, include_unpublished=True)

    def name(entry):
        return os.path.splitext(os.path.basename(entry['config']))[0]

    wanted = os.path.realpath(row) if os.path.isfile(row) else None
    for entry in entries:
        path = os.path.join(root, entry['config'])
        if row in (name(entry), entry['config']) or (
                wanted and os.path.realpath(path) == wanted):
            if not is_published(entry):
                raise ReproduceError(
                    '{}: this row publishes no number to reproduce ({}). '
                    'Train it with `python -m paddleseg_ctx.train`.'.format(
                        row, entry['note'].rstrip('.')))
            return entry, path
    close = difflib.get_close_matches(row, [name(e) for e in entries
                                            if is_published(e)], n=3)
    raise ReproduceError(
        '{} is no row of {}{}; ROW is the config name of a row of the model '
        'tables in the README.'.format(
            row, zoo_file, ' (did you mean {}?)'.format(' or '.join(close))
            if close else ''))


def _read_state(save_dir):
    path = os.path.join(save_dir, STATE_FILE)
    if not os.path.isfile(path):
        return {}
    with open(path) as f:
        return json.load(f)


def _write_json(path, value):
    atomic_write_text(path, json.dumps(value, indent=1, sort_keys=True) + '\n')


def _update_state(save_dir, **values):
    state = _read_state(save_dir)
    state.update(values)
    _write_json(os.path.join(save_dir, STATE_FILE), state)
    return state


def check_data(config, opts, save_dir, workers, rank, trial):
    """Read every sample once (rank 0; the others wait for its verdict);
    done once per ``save_dir``.  A full run (not ``trial``) refuses split
    sizes other than the published row's."""
    if _read_state(save_dir).get('data_checked'):
        return
    if rank != 0:
        while not _read_state(save_dir).get('data_checked'):
            time.sleep(5)  # rank 0 ends the run with the problems if any
        return
    from paddleseg_ctx.datasets.survey import check_config  # noqa: PLC0415
    problems = check_config(config, workers=workers, opts=opts,
                            official_splits=not trial)
    if problems:
        raise ReproduceError(
            'the data set under --data_root has {} problem(s), e.g. {} '
            '(all listed above); fix them (README, Data) and run again.'
            .format(len(problems), problems[0]))
    _update_state(save_dir, data_checked=True)


def train_row(args, config, opts, zoo_file):
    """Train (or resume, or nothing when the last checkpoint is the final
    one); returns ``(BatchPlan or None, final iteration, checkpoint of the
    final model)``."""
    cfg_iters = args.iters
    argv = ['--config', config, '--save_dir', args.save_dir, '--device',
            args.device, '--num_workers', str(args.num_workers), '--use_vdl',
            '--seed', str(args.seed), '--save_interval',
            str(args.save_interval), '--log_iters', str(args.log_iters)]
    if cfg_iters is not None:
        argv += ['--iters', str(cfg_iters)]
    if args.batch_size is not None:
        argv += ['--batch_size', str(args.batch_size)]
    if args.keep_total_batch is not None:
        argv += ['--keep_total_batch', args.keep_total_batch]
    iters = cfg_iters if cfg_iters is not None else _config_iters(config)
    earlier = _read_state(args.save_dir).get('iters')
    if earlier not in (None, iters):
        raise ReproduceError(
            '--save_dir {} holds a run of {} iterations, this one asks for '
            '{} (the learning-rate schedule differs); use another '
            '--save_dir.'.format(args.save_dir, earlier, iters))
    done = complete_checkpoints(args.save_dir)
    if done and done[-1][0] >= iters:
        logger.info('{} is complete; not training again.'.format(done[-1][1]))
        return None, done[-1][0], done[-1][1]
    if done:
        argv += ['--resume_model', done[-1][1]]
    if paddle.distributed.ParallelEnv().local_rank == 0:
        _update_state(args.save_dir, iters=iters)
    start = time.time()
    plan = train_command.main(argv + ['--opts'] + opts, zoo_file=zoo_file)
    if paddle.distributed.ParallelEnv().local_rank == 0:
        state = _read_state(args.save_dir)
        _update_state(args.save_dir, train_seconds=state.get(
            'train_seconds', 0) + time.time() - start, batch={
                'published_total': plan.published_total,
                'total': plan.total, 'per_process': plan.batch_size,
                'accumulation_steps': plan.steps, 'processes': plan.ranks,
                'kept_by': plan.how})
    final = os.path.join(args.save_dir, 'iter_{}'.format(iters))
    return plan, iters, final


def _config_iters(config):
    from paddleseg_ctx.config import read_config  # noqa: PLC0415
    return read_config(config).iters


class _OneProcess:
    """Evaluation in rank 0 of a launched run sees one process (the
    mmseg/ssseg protocols run in one process; PaddleSeg's then evaluates
    every image itself)."""

    KEYS = {'PADDLE_TRAINERS_NUM': '1', 'PADDLE_TRAINER_ID': '0'}

    def __enter__(self):
        self._saved = {key: os.environ.get(key) for key in self.KEYS}
        os.environ.update(self.KEYS)

    def __exit__(self, *exc):
        for key, value in self._saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def evaluate_row(entry, config, model_path, args, opts, zoo_file):
    """``{column: mIoU in percent}`` of ``model_path`` under every
    published column's protocol."""
    measured = {}
    for column, key in evaluation.COLUMNS.items():
        if entry['published'][key] is None:
            continue
        with _OneProcess():
            result = val_command.main(
                ['--config', config, '--model_path', model_path,
                 '--protocol', column, '--device', args.device,
                 '--num_workers', str(args.num_workers), '--opts'] + opts,
                zoo_file=zoo_file)
        measured[column] = 100 * float(result[0])
    return measured


def environment():
    """Paddle, CUDA and GPUs of this run."""
    cuda = paddle.version.cuda()
    gpus = []
    if paddle.device.is_compiled_with_cuda():
        gpus = [paddle.device.cuda.get_device_name(i)
                for i in range(paddle.device.cuda.device_count())]
    return {
        'paddle': paddle.__version__,
        'paddleseg': __import__('paddleseg').__version__,
        'paddleseg_ctx': __version__,
        'cuda': cuda if cuda not in (None, 'False') else None,
        'cudnn': str(paddle.version.cudnn()) if cuda not in (None, 'False')
        else None,
        'gpus': gpus,
        'device': paddle.get_device(),
        'processes': paddle.distributed.ParallelEnv().nranks,
        'python': platform.python_version(),
        'host': platform.node(),
    }


def _fmt(value, sign=False):
    if value is None:
        return '-'
    return ('{:+.2f}' if sign else '{:.2f}').format(value)


def render_markdown(report):
    """``report.md`` from the report dict."""
    lines = ['# Reproduced: {}'.format(report['row']), '',
             'Config: `{}` ({} row, {} on {}).'.format(
                 report['config'], report['source'], report['model'],
                 report['dataset']), '']
    if report['iters'] != report['published_iters']:
        lines += ['**Trial run: {} iterations instead of the published {}; '
                  'the numbers are not comparable with the published '
                  'ones.**'.format(report['iters'], report['published_iters']),
                  '']
    lines += ['| Column | Published mIoU | Reproduced mIoU | Difference |',
              '|---|---|---|---|']
    for column in report['columns']:
        lines.append('| {} | {} | {} | {} |'.format(
            column['column'], _fmt(column['published']),
            _fmt(column['reproduced']), _fmt(column['difference'], sign=True)))
    batch, env = report['batch'], report['environment']
    lines += ['', '## Run', '']
    if batch:
        lines.append('- Total batch: {} ({} process(es) x {} images x {} '
                     'accumulated micro-batch(es)); published: {}; kept by: '
                     '{}.'.format(batch['total'], batch['processes'],
                                  batch['per_process'],
                                  batch['accumulation_steps'],
                                  batch['published_total'] or 'not recorded',
                                  batch['kept_by']))
    seconds = report['training_seconds']
    lines += [
        '- Iterations: {} (published: {}), seed {}.'.format(
            report['iters'], report['published_iters'], report['seed']),
        '- Training time: {}.'.format(
            '{:.0f} s ({:.2f} h)'.format(seconds, seconds / 3600)
            if seconds is not None else 'unknown'),
        '- Final model: `{}`.'.format(report['final_model']),
        '- Checkpoints: {}.'.format(', '.join(
            '`{}`'.format(p) for p in report['checkpoints']) or 'none'),
        '- VisualDL log: {} (`visualdl --logdir {}`).'.format(
            ', '.join('`{}`'.format(p) for p in report['visualdl_logs'])
            or 'none', report['save_dir']),
        '', '## Environment', '',
        '- Paddle {}, PaddleSeg {}, paddleseg_ctx {}, Python {}.'.format(
            env['paddle'], env['paddleseg'], env['paddleseg_ctx'],
            env['python']),
        '- CUDA {}, cuDNN {}; device {}; {} process(es).'.format(
            env['cuda'] or '-', env['cudnn'] or '-', env['device'],
            env['processes']),
        '- GPUs: {}.'.format(', '.join(env['gpus']) or 'none'),
    ]
    return '\n'.join(lines) + '\n'


def main(argv=None, zoo_file=ZOO_FILE):
    """Returns the report (a dict; None in processes other than rank 0)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    entry, config = find_row(args.row, zoo_file)
    if not os.path.isdir(args.data_root):
        parser.error('--data_root {}: no such directory.'.format(
            args.data_root))
    args.save_dir = os.path.abspath(args.save_dir)
    os.makedirs(args.save_dir, exist_ok=True)
    data_root = os.path.abspath(args.data_root)
    opts = ['train_dataset.dataset_root=' + data_root,
            'val_dataset.dataset_root=' + data_root]
    rank = paddle.distributed.ParallelEnv().local_rank
    check_data(config, opts, args.save_dir, args.num_workers, rank,
               trial=args.iters is not None)
    _, iters, final = train_row(args, config, opts, zoo_file)
    if rank != 0:
        return None
    model_path = os.path.join(final, MODEL_FILE)
    measured = evaluate_row(entry, config, model_path, args, opts, zoo_file)
    state = _read_state(args.save_dir)
    columns = []
    for column, key in evaluation.COLUMNS.items():
        published = entry['published'][key]
        if published is None:
            continue
        reproduced = measured[column]
        columns.append({'column': column, 'published': published,
                        'reproduced': round(reproduced, 4),
                        'difference': round(reproduced - published, 4)})
    report = {
        'row': os.path.splitext(os.path.basename(entry['config']))[0],
        'config': entry['config'], 'source': entry['source'],
        'model': entry['model'], 'dataset': entry['dataset'],
        'published_iters': entry['iters'], 'iters': iters, 'seed': args.seed,
        'columns': columns, 'batch': state.get('batch'),
        'training_seconds': state.get('train_seconds'),
        'environment': environment(), 'save_dir': args.save_dir,
        'final_model': model_path,
        'checkpoints': [p for _, p in complete_checkpoints(args.save_dir)],
        'visualdl_logs': sorted(
            os.path.join(args.save_dir, n) for n in os.listdir(args.save_dir)
            if 'vdlrecords' in n),
    }
    _write_json(os.path.join(args.save_dir, 'report.json'), report)
    markdown = render_markdown(report)
    atomic_write_text(os.path.join(args.save_dir, 'report.md'), markdown)
    logger.info('Report: {}\n{}'.format(
        os.path.join(args.save_dir, 'report.md'), markdown))
    return report


if __name__ == '__main__':
    run(main)
