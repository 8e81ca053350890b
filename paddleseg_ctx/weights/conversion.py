"""Convert a PyTorch checkpoint into Paddle weights, without PyTorch::

    from paddleseg_ctx.weights import convert_checkpoint, save_converted
    state = convert_checkpoint('gcnet_r50-d8_..._4b0fd17b.pth', config='x.yml')
    save_converted(state, 'gcnet_r50.pdparams')

or ``python -m paddleseg_ctx.convert SRC.pth DST.pdparams [--config C]``.
``torch_file`` reads the checkpoint's state dict (unwrapping mmseg
``state_dict`` and ssseg ``model`` containers, stripping a ``module.``
prefix); the key map that recognises its keys (``keymaps``) renames it; with
a config the result is checked against the model.  ``--model_path`` and
``pretrained`` accept ``.pth`` files and URLs directly (converted once,
cached; see ``fetch``).
"""
from typing import List, NamedTuple, Optional, Tuple

import paddle
from paddleseg.cvlibs import Config, SegBuilder
from paddleseg.cvlibs import config_checker
from paddleseg.cvlibs.config import parse_from_yaml
from paddleseg.utils import logger

from paddleseg_ctx.errors import ConversionError
from paddleseg_ctx.files import atomic_write
from paddleseg_ctx.weights.keymaps import KeyMap, load_keymaps
from paddleseg_ctx.weights.paddle_file import check_state_dict
from paddleseg_ctx.weights.torch_file import read_torch_state_dict

__all__ = ['Conversion', 'build_without_weights', 'convert', 'convert_checkpoint',
           'save_converted', 'find_keymap']


class Conversion(NamedTuple):
    state: dict  # Paddle name -> float32 array
    source: str  # the kind of container the state dict came from
    keymap: KeyMap
    pairs: List[Tuple[str, Optional[str]]]  # (torch key, Paddle name or None if dropped)
    config: Optional[str]  # the config the names and shapes were checked against


def find_keymap(state, path, keymaps=None):
    """The one key map whose ``detect`` patterns fit the keys of ``state``."""
    keymaps = load_keymaps() if keymaps is None else keymaps
    found = [m for m in keymaps if m.matches(list(state))]
    if len(found) > 1:
        raise ConversionError('{} fits several key maps ({}); their detect patterns must '
                              'exclude each other.'.format(
                                  path, ', '.join(m.path for m in found)))
    if not found:
        prefixes = list(dict.fromkeys(k.split('.')[0] for k in state))
        raise ConversionError(
            '{} is a checkpoint of an architecture no key map recognises (known: {}); its '
            'keys start with {}.'.format(path, ', '.join(m.name for m in keymaps),
                                        ', '.join(prefixes[:8])))
    return found[0]


def convert(src, config=None, keymaps=None):
    """Read ``src`` and rename its tensors with the key map that recognises
    it; with ``config`` (a PaddleSeg config file), also require names and
    shapes to fill that config's model (or its backbone, for a map with
    ``target: backbone``) exactly.  Returns a :class:`Conversion`; raises
    :class:`ConversionError` (a ``WeightsError``) naming what is wrong."""
    source, state = read_torch_state_dict(src)
    keymap = find_keymap(state, src, keymaps)
    converted, pairs = keymap.apply(state)
    if config is not None:
        layer = _build_target(config, keymap.target)
        check_state_dict(layer, converted,
                         source='{} (converted with key map {})'.format(src, keymap.name),
                         advice='Is the config the one this checkpoint was trained with '
                         '(backbone depth, num_classes, head options)?')
    return Conversion(converted, source, keymap, pairs, config)


def convert_checkpoint(src, config=None):
    """Paddle weights (name -> float32 numpy array) of the PyTorch checkpoint
    ``src``; see :func:`convert`."""
    result = convert(src, config)
    logger.info('Converted {} ({}, key map {}, {} tensors){}.'.format(
        src, result.source, result.keymap.name, len(result.state),
        ', checked against ' + config if config else ''))
    return result.state


def save_converted(state, dst):
    """Write ``state`` to the ``.pdparams`` file ``dst`` atomically: an
    interrupted or failed write leaves no partial ``dst``."""
    atomic_write(dst, lambda part: paddle.save(state, part))


def _build_target(config, target):
    """The model of ``config`` (or its backbone), built without weights."""
    return build_without_weights(config, target, 'to check the converted weights')


def build_without_weights(config, target='model', why=''):
    """The model of the config file ``config`` (or, with ``target=
    'backbone'``, its backbone), built without any ``pretrained`` weights;
    ``ConversionError`` naming the config (and ``why`` it was built) if it
    cannot be built."""
    try:
        # Only the model matters: a config holding just `model:` is enough
        # (with datasets, SegBuilder takes num_classes from them as usual).
        has_data = 'train_dataset' in parse_from_yaml(config)
        cfg = Config(config, checker=None if has_data else config_checker.ConfigChecker([]))
        model_cfg = cfg.dic.get('model', {})
        model_cfg.pop('pretrained', None)  # the weights are what is being made here
        if isinstance(model_cfg.get('backbone'), dict):
            model_cfg['backbone'].pop('pretrained', None)
        builder = SegBuilder(cfg)
        model = builder.model if has_data else builder.build_component(model_cfg)
    except Exception as error:  # noqa: BLE001  (any failure: the config is unusable here)
        raise ConversionError('Cannot build the model of {}{}: {}: {}'.format(
            config, ' ' + why if why else '', type(error).__name__, error)) from None
    return model.backbone if target == 'backbone' else model
