"""Checks of a config before anything is built, so that a config that cannot
work ends a command with one message naming the file and key (and what to
do) instead of a traceback from deep inside PaddleSeg's builder.

:func:`read_config` checks, in order: each file (``--config`` and its
``_base_`` files) exists and holds a YAML mapping; every ``type`` names a
registered component (else the closest registered names are suggested) and
gets only arguments it takes; model and data sets agree on ``num_classes``;
then PaddleSeg's own checks.  :class:`Builder` reports what still fails
while building, and makes the data sets check each sample as they read it.
"""
import difflib
import inspect
import os

import yaml
from paddleseg.cvlibs import Config, SegBuilder
from paddleseg.cvlibs.config_checker import ConfigChecker
from paddleseg.utils.utils import CachedProperty as cached_property

from paddleseg_ctx.datasets.checks import check_samples
from paddleseg_ctx.errors import UserError, user_error

__all__ = ['ConfigError', 'read_config', 'Builder']

# The managers SegBuilder looks a `type` up in, in its order.
MANAGERS = tuple(SegBuilder(None).comp_list)


class ConfigError(UserError, ValueError):
    """The config cannot be used; the message names the file or key."""


def read_config(path, opts=None, **overrides):
    """PaddleSeg's ``Config`` of ``path`` with ``opts`` (``--opts``) and
    ``overrides`` applied, or ``ConfigError`` naming what is wrong."""
    try:
        check_config_files(path)
        # PaddleSeg's checks run after ours, which name keys more precisely.
        cfg = Config(path, opts=opts, checker=ConfigChecker([]), **overrides)
        check_components(cfg.dic)
        check_num_classes(cfg.dic)
        Config._build_default_checker().apply_all_rules(cfg)
    except ConfigError:
        raise
    except (AssertionError, KeyError, ValueError, RuntimeError,
            yaml.YAMLError) as err:
        raise ConfigError(str(_innermost(err))) from err
    return cfg


def _innermost(error):
    """The error to report for ``error``: the first user error in its chain,
    else the root of the chain (PaddleSeg re-raises the useful exception as
    a ``RuntimeError`` around a long explanation)."""
    found = user_error(error)
    if found is not None:
        return found
    while error.__cause__ or (error.__context__ and
                              not error.__suppress_context__):
        error = error.__cause__ or error.__context__
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
        except UserError:
            raise
        except RuntimeError as err:  # SegBuilder's wrapper of the real error
            cause = err.__context__
            if isinstance(cause, UserError) or not isinstance(
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
