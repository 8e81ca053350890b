"""Flags and setup shared by the paddleseg_ctx.{train,val,predict,export} CLIs.

The flags, defaults and behaviour follow PaddleSeg 2.8's ``tools/*.py``, so
PaddleSeg commands and TIPC scripts carry over by swapping the entry point.
The work itself is done by PaddleSeg (``Config``, ``SegBuilder``,
``paddleseg.core``); importing this package first registers our components
and applies the compatibility fixes (``paddleseg_ctx/__init__.py``).

Bad input ends a command with one message naming the file, key or value and
what to do (``paddleseg_ctx.errors``), without a traceback unless ``--debug``
is given: argument and config problems as usage errors (exit status 2, found
by :func:`parse_args` and :func:`load_config` before anything is built),
problems found later (weights, data samples, a model that cannot be built)
as a ``UserError`` (exit status 1).
"""
import contextlib
import os

from paddleseg.utils import logger, utils
from paddleseg.utils import utils as paddleseg_utils

from paddleseg_ctx.config import Builder, ConfigError, read_config
from paddleseg_ctx.errors import ArgumentParser, add_debug
from paddleseg_ctx.evaluation.protocol import COLUMNS
from paddleseg_ctx.zoo import ZooError, find_entry

DEVICES = ('cpu', 'gpu', 'xpu', 'npu', 'mlu')


def new_parser(command, description):
    """An ``ArgumentParser`` for ``python -m paddleseg_ctx.<command>`` with
    the ``--config`` and ``--debug`` flags every command has."""
    parser = ArgumentParser(
        prog='python -m paddleseg_ctx.' + command, description=description)
    parser.add_argument(
        '--config', required=True, help='Path of the config file (.yml).')
    add_debug(parser)
    return parser


def add_device(parser, purpose):
    parser.add_argument(
        '--device',
        default='gpu',
        choices=DEVICES,
        help='Device for {}; falls back to cpu when it is not available. '
        'Default: gpu.'.format(purpose))


def add_num_workers(parser):
    parser.add_argument(
        '--num_workers',
        type=int,
        default=0,
        help='Data loader worker processes. Default: 0 (load in the main '
        'process).')


def add_data_format(parser):
    parser.add_argument(
        '--data_format',
        default='NCHW',
        choices=('NCHW', 'NHWC'),
        help='Input layout; NHWC is supported by DeepLabV3P only. '
        'Default: NCHW.')


def add_opts(parser):
    parser.add_argument(
        '--opts',
        nargs='+',
        default=None,
        metavar='KEY=VALUE',
        help='Override config entries, e.g. `--opts batch_size=4 '
        'model.backbone.pretrained=None`. Values are parsed as Python '
        'literals when possible.')


def add_test_aug(parser, switch, purpose):
    """Multi-scale/flip and sliding-window flags; ``switch`` is
    ``'aug_eval'`` (val) or ``'aug_pred'`` (predict)."""
    aug = parser.add_argument_group('multi-scale and flip augmentation')
    aug.add_argument(
        '--' + switch,
        action='store_true',
        help='Average the logits over --scales and the chosen flips for '
        '{}. --scales/--flip_* take effect only with this flag.'.format(
            purpose))
    aug.add_argument(
        '--scales',
        nargs='+',
        type=float,
        default=1.0,
        help='Input scales, e.g. `--scales 0.75 1.0 1.25`. Default: 1.0.')
    aug.add_argument(
        '--flip_horizontal',
        action='store_true',
        help='Add horizontally flipped inputs.')
    aug.add_argument(
        '--flip_vertical',
        action='store_true',
        help='Add vertically flipped inputs.')
    slide = parser.add_argument_group('sliding-window inference')
    slide.add_argument(
        '--is_slide',
        action='store_true',
        help='Infer in crop_size windows moved by stride.')
    slide.add_argument(
        '--crop_size',
        nargs=2,
        type=int,
        metavar=('W', 'H'),
        help='Window size, width then height, e.g. `--crop_size 512 512`.')
    slide.add_argument(
        '--stride',
        nargs=2,
        type=int,
        metavar=('W', 'H'),
        help='Window step, width then height, e.g. `--stride 384 384`.')


def parse_args(parser, argv=None):
    """Parse ``argv`` and reject mistakes PaddleSeg would only report deep
    inside a run (missing files, malformed --opts, half-set slide flags)."""
    args = parser.parse_args(argv)
    if not os.path.isfile(args.config):
        parser.error('--config {}: no such file.'.format(args.config))
    if not args.config.endswith(('.yml', '.yaml')):
        parser.error('--config {}: expected a .yml/.yaml file.'.format(
            args.config))
    image_path = getattr(args, 'image_path', None)
    if image_path and not os.path.exists(image_path):
        parser.error('--image_path {}: no such image, directory or list '
                     'file.'.format(image_path))
    for item in getattr(args, 'opts', None) or []:
        if item.count('=') != 1:
            parser.error('--opts {}: expected KEY=VALUE, e.g. '
                         'batch_size=4.'.format(item))
    if getattr(args, 'is_slide', False) and not (args.crop_size and
                                                 args.stride):
        parser.error('--is_slide needs --crop_size W H and --stride W H.')
    return args


def load_config(parser, args, **overrides):
    """``(Config, Builder)`` for ``args.config`` with ``--opts`` and
    ``overrides`` (e.g. ``iters``) applied.  A config that cannot work (a
    file that is missing or no YAML mapping, also among its ``_base_``
    files; an unknown component type or argument; models and data sets
    disagreeing on ``num_classes``; what PaddleSeg's own checks reject) ends
    the command with a message naming the file and key."""
    try:
        cfg = read_config(args.config, getattr(args, 'opts', None),
                          **overrides)
    except ConfigError as err:
        if getattr(args, 'debug', False):
            raise
        parser.error('--config {}: {}'.format(args.config, err))
    return cfg, Builder(cfg, args.config)


def show_info(cfg):
    utils.show_env_info()
    utils.show_cfg_info(cfg)


def apply_data_format(cfg, data_format):
    """Switch the model and losses to NHWC (DeepLabV3P only), as PaddleSeg
    does; must run before ``builder.model`` is first used."""
    if data_format == 'NCHW':
        return
    if cfg.dic['model']['type'] != 'DeepLabV3P':
        raise ValueError('--data_format NHWC is supported by DeepLabV3P only, '
                         'the config builds {}.'.format(cfg.dic['model'][
                             'type']))
    cfg.dic['model']['data_format'] = data_format
    cfg.dic['model']['backbone']['data_format'] = data_format
    for loss in cfg.dic['loss']['types']:
        loss['data_format'] = data_format


def merge_test_config(cfg, args, switch):
    """The config's ``test_config`` updated with the augmentation and
    sliding-window flags (``switch``: 'aug_eval' or 'aug_pred')."""
    test_config = cfg.test_config
    if getattr(args, switch):
        test_config.update({
            switch: True,
            'scales': args.scales,
            'flip_horizontal': args.flip_horizontal,
            'flip_vertical': args.flip_vertical
        })
    elif args.flip_horizontal or args.flip_vertical or args.scales not in (
            1.0, [1.0]):
        logger.warning('--scales/--flip_horizontal/--flip_vertical are '
                       'ignored without --{}.'.format(switch))
    if args.is_slide:
        test_config.update({
            'is_slide': True,
            'crop_size': args.crop_size,
            'stride': args.stride
        })
    return test_config


@contextlib.contextmanager
def entire_model_loading(loader):
    """Within the block, PaddleSeg's ``load_entire_model`` (which
    ``paddleseg.core.predict`` calls on ``--model_path``) is ``loader``, e.g.
    :func:`paddleseg_ctx.weights.load_trained_weights`: strict, and loaded
    once, instead of skipping mismatched tensors with a warning."""
    original = paddleseg_utils.load_entire_model
    paddleseg_utils.load_entire_model = loader
    try:
        yield
    finally:
        paddleseg_utils.load_entire_model = original


def protocol_entry(parser, args, zoo_file, no_row_advice):
    """The zoo entry of ``args.config`` whose column ``args.protocol``
    names; a usage error when there is none (``no_row_advice`` says what to
    do instead when the config has no row)."""
    try:
        entry = find_entry(args.config, zoo_file)
    except ZooError as err:
        parser.error('--protocol: {}'.format(err))
    if entry is None:
        parser.error('--protocol: {} has no row in {}, so there is no '
                     'published protocol to run; {}'.format(
                         args.config, zoo_file, no_row_advice))
    key = COLUMNS[args.protocol]
    if entry['published'][key] is None:
        available = [
            column for column, k in COLUMNS.items()
            if entry['published'][k] is not None
        ]
        parser.error('--protocol {}: the row of {} in {} publishes no such '
                     'number (published.{} is null); choose one of: '
                     '{}.'.format(args.protocol, args.config, zoo_file, key,
                                  ', '.join(available)))
    return entry
