"""Flags and setup shared by the paddleseg_ctx.{train,val,predict,export} CLIs.

The flags, defaults and behaviour follow PaddleSeg 2.8's ``tools/*.py``, so
PaddleSeg commands and TIPC scripts carry over by swapping the entry point.
The work itself is done by PaddleSeg (``Config``, ``SegBuilder``,
``paddleseg.core``); importing this package first registers our components
and applies the compatibility fixes (``paddleseg_ctx/__init__.py``).

Bad input ends a command with one message naming the file, key or value and
what to do, without a traceback unless ``--debug`` is given: argument and
config problems as usage errors (exit status 2, found by :func:`parse_args`
and :func:`load_config` before anything is built), problems found later
(weights, data samples, a model that cannot be built) through :func:`run`
(exit status 1).
"""
import argparse
import contextlib
import difflib
import functools
import inspect
import os
import sys

import numpy as np
import paddle
import yaml
from paddleseg.cvlibs import Config, SegBuilder
from paddleseg.cvlibs.config_checker import ConfigChecker
from paddleseg.utils import logger, utils
from paddleseg.utils import utils as paddleseg_utils
from paddleseg.utils.utils import CachedProperty as cached_property

from paddleseg_ctx.datasets.checks import SampleError, check_samples
from paddleseg_ctx.weights import WeightsError, load_model_weights

DEVICES = ('cpu', 'gpu', 'xpu', 'npu', 'mlu')
# The managers SegBuilder looks a `type` up in, in its order.
MANAGERS = tuple(SegBuilder(None).comp_list)


class ConfigError(ValueError):
    """The config cannot be used; the message names the file or key."""


class BatchNormSizeError(ValueError):
    """A BatchNorm layer got one value per channel while training."""


# Ended by `run` with their message alone (with --debug: with a traceback).
USER_ERRORS = (WeightsError, ConfigError, SampleError, BatchNormSizeError)


def new_parser(command, description):
    """An ``ArgumentParser`` for ``python -m paddleseg_ctx.<command>`` with
    the ``--config`` and ``--debug`` flags every command has."""
    parser = argparse.ArgumentParser(
        prog='python -m paddleseg_ctx.' + command, description=description)
    parser.add_argument(
        '--config', required=True, help='Path of the config file (.yml).')
    add_debug(parser)
    return parser


def add_debug(parser):
    parser.add_argument(
        '--debug',
        action='store_true',
        help='Show the traceback of an error (by default a problem with the '
        'input ends the command with one message).')


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
    model_path = getattr(args, 'model_path', None)
    if model_path and '://' not in model_path and not os.path.exists(
            model_path):
        parser.error('--model_path {}: no such file.'.format(model_path))
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
        check_config_files(args.config)
        # PaddleSeg's checks run after ours, which name keys more precisely.
        cfg = Config(args.config, opts=getattr(args, 'opts', None),
                     checker=ConfigChecker([]), **overrides)
        check_components(cfg.dic)
        check_num_classes(cfg.dic)
        Config._build_default_checker().apply_all_rules(cfg)
    except (ConfigError, AssertionError, KeyError, ValueError, RuntimeError,
            yaml.YAMLError) as err:
        if getattr(args, 'debug', False):
            raise
        parser.error('--config {}: {}'.format(args.config, innermost(err)))
    return cfg, Builder(cfg, args.config)


def innermost(error):
    """The error to report for ``error``: the first user error in its chain,
    else the root of the chain (PaddleSeg re-raises the useful exception as
    a ``RuntimeError`` around a long explanation)."""
    while not isinstance(error, USER_ERRORS):
        inner = error.__cause__ or (None if error.__suppress_context__ else
                                    error.__context__)
        if inner is None:
            break
        error = inner
    return error


def check_config_files(path, chain=()):
    """Raise ``ConfigError`` unless ``path`` and the ``_base_`` files it
    names (recursively) exist and each hold a YAML mapping."""
    referrer = chain[-1] if chain else None
    if referrer and not os.path.isfile(path):
        raise ConfigError(
            '{} names `_base_` {}, which does not exist (a `_base_` path is '
            'relative to the file that names it).'.format(referrer, path))
    if os.path.abspath(path) in map(os.path.abspath, chain):
        raise ConfigError('{} is its own `_base_` (through {}).'.format(
            path, ' -> '.join(chain)))
    try:
        with open(path, encoding='utf-8') as f:
            dic = yaml.load(f, Loader=yaml.FullLoader)  # PaddleSeg's loader
    except UnicodeDecodeError:
        raise ConfigError('{} is not a text (YAML) file.'.format(path)) from None
    except yaml.YAMLError as err:
        mark = getattr(err, 'problem_mark', None)
        where = ' (line {}, column {})'.format(
            mark.line + 1, mark.column + 1) if mark else ''
        problem = getattr(err, 'problem', None) or str(err)
        raise ConfigError('{} is not valid YAML: {}{}.'.format(
            path, problem, where)) from None
    if not isinstance(dic, dict):
        raise ConfigError(
            '{} must hold a mapping of config keys (model:, train_dataset:, '
            '...), but it holds {}.'.format(
                path, 'nothing' if dic is None else 'a YAML ' + type(dic).__name__))
    bases = dic.get('_base_', [])
    bases = [bases] if isinstance(bases, str) else bases
    if not isinstance(bases, list) or not all(
            isinstance(base, str) for base in bases):
        raise ConfigError('{}: `_base_` must be a file name or a list of file '
                          'names, not {!r}.'.format(path, dic['_base_']))
    for base in bases:
        check_config_files(os.path.join(os.path.dirname(path), base),
                           chain + (path, ))


# Config sections SegBuilder builds components from (lr_scheduler is built
# from paddle.optimizer.lr, not from a manager).
COMPONENT_SECTIONS = ('model', 'train_dataset', 'val_dataset', 'optimizer')
LOSS_SECTIONS = ('loss', 'distill_loss')


def check_components(dic):
    """Raise ``ConfigError`` for a ``type`` no manager holds (suggesting the
    closest registered names) or an argument its component does not take,
    walking the config as ``SegBuilder.build_component`` does."""
    for key in COMPONENT_SECTIONS:
        _check_component(dic.get(key), key)
    for key in LOSS_SECTIONS:
        section = dic.get(key)
        if isinstance(section, dict):
            for i, item in enumerate(section.get('types') or []):
                _check_component(item, '{}.types[{}]'.format(key, i))


def _is_component(value):  # SegBuilder.is_meta_type
    return isinstance(value, dict) and 'type' in value


def _component_class(name):
    for component_manager in MANAGERS:
        if name in component_manager.components_dict:
            return component_manager[name]
    return None


def _close(name, names):
    """Up to three of ``names`` closest to ``name``, ignoring case."""
    by_lower = {n.lower(): n for n in names}
    close = difflib.get_close_matches(str(name).lower(), by_lower, 3, 0.6)
    return [by_lower[n] for n in close]


def _did_you_mean(names):
    if not names:
        return ''
    return ' Did you mean {}?'.format(' or '.join(
        [', '.join(names[:-1]), names[-1]] if len(names) > 1 else names))


def _check_component(cfg, key):
    if not _is_component(cfg):
        return
    name = cfg['type']
    if key == 'optimizer':  # SegBuilder.optimizer's renames
        name = {'sgd': 'SGD', 'adam': 'Adam'}.get(name, name)
        if name == 'SGD' and 'momentum' in cfg:
            name = 'Momentum'
    component = _component_class(name)
    if component is None:
        registered = [n for m in MANAGERS for n in m.components_dict]
        raise ConfigError(
            '{}.type: no component is registered as {!r}.{} Check the '
            'spelling: `type` names a registered model, backbone, dataset, '
            'transform, loss or optimizer.'.format(
                key, name, _did_you_mean(_close(name, registered))))
    arguments = [k for k in cfg if k != 'type']
    try:
        parameters = inspect.signature(component).parameters
    except (TypeError, ValueError):  # no signature to check against
        parameters = None
    if parameters is not None and not any(
            p.kind == p.VAR_KEYWORD for p in parameters.values()):
        for argument in arguments:
            if argument not in parameters:
                raise ConfigError(
                    '{}.{}: {} takes no argument {!r}.{} Its arguments: '
                    '{}.'.format(key, argument, name, argument,
                                 _did_you_mean(_close(argument, parameters)),
                                 ', '.join(parameters)))
    for argument in arguments:
        value = cfg[argument]
        if isinstance(value, list):
            for i, item in enumerate(value):
                _check_component(item, '{}.{}[{}]'.format(key, argument, i))
        else:
            _check_component(value, '{}.{}'.format(key, argument))


def check_num_classes(dic):
    """Raise ``ConfigError`` when the model and the data sets name different
    class counts (a data set type other than ``Dataset`` has its own
    ``NUM_CLASSES``)."""
    found = []
    model = dic.get('model')
    if isinstance(model, dict) and 'num_classes' in model:
        found.append(('model.num_classes', model['num_classes']))
    for key in ('train_dataset', 'val_dataset'):
        section = dic.get(key)
        if not _is_component(section):
            continue
        if 'num_classes' in section:
            found.append(('{}.num_classes'.format(key),
                          section['num_classes']))
            continue
        count = getattr(_component_class(section['type']), 'NUM_CLASSES',
                        None)
        if count is not None:
            found.append(('{} ({} has {} classes)'.format(
                key, section['type'], count), count))
    if len({value for _, value in found}) > 1:
        raise ConfigError(
            'the model and the data sets disagree on num_classes: {}. Set '
            'the same value everywhere (the model takes it from '
            'train_dataset when model.num_classes is not set).'.format(
                ', '.join('{} = {}'.format(k, v) if '(' not in k else k
                          for k, v in found)))


class Builder(SegBuilder):
    """PaddleSeg's ``SegBuilder`` whose model and data sets, when they cannot
    be built from the config, say why in one message (``ConfigError``), and
    whose data sets check each sample as they read it
    (``paddleseg_ctx.datasets.checks``).

    Args:
        config (Config): The config.
        path (str): Its file, named in messages.
    """

    def __init__(self, config, path):
        super().__init__(config)
        self.path = path

    def build_component(self, cfg):
        try:
            return super().build_component(cfg)
        except USER_ERRORS:
            raise
        except RuntimeError as err:  # SegBuilder's wrapper of the real error
            cause = err.__context__
            if isinstance(cause, USER_ERRORS) or not isinstance(
                    cause, (ValueError, OSError, AssertionError)):
                raise
            raise ConfigError('{} cannot be built: {}'.format(
                cfg.get('type'), cause)) from err

    @cached_property
    def model(self):
        return self._built('model', SegBuilder.model.func)

    @cached_property
    def train_dataset(self):
        return check_samples(
            self._built('train_dataset', SegBuilder.train_dataset.func),
            'train_dataset')

    @cached_property
    def val_dataset(self):
        return check_samples(
            self._built('val_dataset', SegBuilder.val_dataset.func),
            'val_dataset')

    def _built(self, key, build):
        try:
            return build(self)
        except (ConfigError, AssertionError) as err:
            hint = ''
            if key.endswith('_dataset'):
                hint = ' (Relative paths start from the working directory, ' \
                    '{}.)'.format(os.getcwd())
            raise ConfigError('--config {}: {}: {}{}'.format(
                self.path, key, err, hint)) from err


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


def refuse_single_value_batch_norm(model):
    """Make the BatchNorm layers of ``model`` raise ``BatchNormSizeError``
    when they get one value per channel while training (batch size 1 and a
    1x1 feature map): Paddle then returns the input unchanged, without
    normalising it, updating the statistics or training scale and shift,
    where PyTorch raises.  Install after ``convert_sync_batchnorm``."""
    norms = (paddle.nn.BatchNorm, paddle.nn.BatchNorm1D, paddle.nn.BatchNorm2D,
             paddle.nn.BatchNorm3D, paddle.nn.SyncBatchNorm)
    for name, layer in model.named_sublayers():
        if isinstance(layer, norms):
            layer.register_forward_pre_hook(
                functools.partial(_check_batch_norm_input, name))
    return model


def _check_batch_norm_input(name, layer, inputs):
    if not layer.training:
        return
    shape = list(inputs[0].shape)
    if min(shape) < 0:  # static graph: unknown until run
        return
    if isinstance(layer, paddle.nn.SyncBatchNorm) and (
            paddle.distributed.get_world_size() > 1):
        return  # statistics over all processes' samples
    if int(np.prod(shape)) == layer._mean.shape[0]:
        raise BatchNormSizeError(
            '{} ({}) gets one value per channel while training (input shape '
            '{}): Paddle then passes it through unnormalised and never '
            'updates its statistics. Train with a batch size of at least 2, '
            'or with larger crops (crop_size) so that no feature map is '
            '1x1.'.format(name, type(layer).__name__, shape))


@contextlib.contextmanager
def strict_entire_model_loading():
    """Within the block, PaddleSeg's ``load_entire_model`` (which
    ``paddleseg.core.predict`` calls on ``--model_path``) is
    :func:`load_weights`: strict, and loaded once, instead of skipping
    mismatched tensors with a warning."""
    original = paddleseg_utils.load_entire_model
    paddleseg_utils.load_entire_model = load_weights
    try:
        yield
    finally:
        paddleseg_utils.load_entire_model = original


def load_weights(model, model_path):
    """Load ``--model_path`` into ``model`` strictly: unlike PaddleSeg's
    loader, which skips mismatched tensors with a warning (and an evaluation
    then reports a meaningless mIoU), every key and shape must match.  Warn
    loudly when no weights are given."""
    if model_path:
        load_model_weights(model, model_path)
        logger.info('Loaded trained weights from {}.'.format(model_path))
    else:
        logger.warning('No --model_path given: using the weights the config '
                       'builds (random or pretrained backbone only).')


def run(main, argv=None):
    """Run a command's ``main`` (``main()``, or ``main(argv)`` if given).
    Problems with the input (``USER_ERRORS``: weights, data samples, config
    contents found while building) end it with their own message and exit
    status 1 instead of a traceback, also when PaddleSeg or a data loader
    has re-raised them; ``--debug`` keeps the traceback."""
    debug = '--debug' in (sys.argv[1:] if argv is None else argv)
    try:
        return main() if argv is None else main(argv)
    except Exception as err:  # noqa: BLE001  (re-raised unless a user error)
        cause = err
        while cause is not None and not isinstance(cause, USER_ERRORS):
            cause = cause.__cause__ or cause.__context__
        if cause is None or debug:
            raise
        raise SystemExit('error: {}'.format(_message(cause)))


def _message(error):
    """``error``'s message; an error re-raised from a DataLoader worker
    process carries the worker's traceback, of which the last line counts."""
    text = str(error)
    if text.startswith('DataLoader worker('):
        text = text.rsplit('{}: '.format(type(error).__name__), 1)[-1]
    return text.strip()
