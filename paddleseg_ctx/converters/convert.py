"""Convert a PyTorch checkpoint into Paddle weights (see the package docstring)."""
import os
import tempfile
from typing import List, NamedTuple, Optional, Tuple
from urllib.parse import unquote, urlparse

import numpy as np
import paddle
from paddleseg.cvlibs import Config, SegBuilder
from paddleseg.cvlibs import config_checker
from paddleseg.cvlibs.config import parse_from_yaml
from paddleseg.utils import logger

from paddleseg_ctx import zoo
from paddleseg_ctx.converters import torch_pickle
from paddleseg_ctx.converters.keymaps import ConversionError, KeyMap, load_keymaps, shown
from paddleseg_ctx.weights import check_state_dict

__all__ = ['Conversion', 'convert', 'convert_checkpoint', 'save_converted',
           'read_state_dict', 'find_keymap', 'zoo_config']

# Checkpoint containers: the field holding the state dict, and what it says.
CONTAINERS = (('state_dict', "OpenMMLab/mmseg checkpoint ('state_dict')"),
              ('model', "sssegmentation checkpoint ('model')"))


class Conversion(NamedTuple):
    state: dict  # Paddle name -> float32 array
    source: str  # the kind of container the state dict came from
    keymap: KeyMap
    pairs: List[Tuple[str, Optional[str]]]  # (torch key, Paddle name or None if dropped)
    config: Optional[str]  # the config the names and shapes were checked against


def read_state_dict(path):
    """``(source, state_dict)`` of the PyTorch checkpoint at ``path``:
    unwraps mmseg (``state_dict``) and ssseg (``model``) containers and
    strips a DataParallel ``module.`` prefix."""
    obj = torch_pickle.load(path)
    source, state = 'state dict', obj
    if isinstance(obj, dict):
        for field, description in CONTAINERS:
            if isinstance(obj.get(field), dict):
                source, state = description, obj[field]
                break
    if not (isinstance(state, dict) and state and
            all(isinstance(k, str) and isinstance(v, np.ndarray) for k, v in state.items())):
        top = sorted(map(str, obj)) if isinstance(obj, dict) else [type(obj).__name__]
        raise ConversionError(
            '{} holds no state dict: expected a dict of tensors, bare or under '
            "'state_dict' (mmseg) or 'model' (sssegmentation); found {}.".format(
                path, ', '.join(top[:10])))
    stripped = {k[len('module.'):] if k.startswith('module.') else k: v
                for k, v in state.items()}
    if len(stripped) != len(state):
        twice = [k for k in state if k.startswith('module.') and k[len('module.'):] in state]
        raise ConversionError('{} has keys both with and without the DataParallel prefix '
                              "'module.': {}.".format(path, shown(twice)))
    return source, stripped


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
    source, state = read_state_dict(src)
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
    folder = os.path.dirname(os.path.abspath(dst))
    os.makedirs(folder, exist_ok=True)
    fd, part = tempfile.mkstemp(dir=folder, suffix='.part')
    os.close(fd)
    try:
        paddle.save(state, part)
        os.replace(part, dst)
    finally:
        if os.path.exists(part):
            os.remove(part)


def zoo_config(checkpoint):
    """The config of the ``configs/model_zoo.yml`` entry whose published
    weights file has the name of ``checkpoint``, or None."""
    name = os.path.basename(checkpoint)
    try:
        entries = zoo.load_zoo()
    except (OSError, zoo.ZooError):  # e.g. an installed package without configs/
        return None
    configs = [e['config'] for e in entries
               if unquote(urlparse(e['weights']).path).split('/')[-1] == name]
    return os.path.join(zoo.REPO_ROOT, configs[0]) if len(configs) == 1 else None


def _build_target(config, target):
    """The model of ``config`` (or its backbone), built without weights."""
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
        raise ConversionError('Cannot build the model of {} to check the converted weights: '
                              '{}: {}'.format(config, type(error).__name__, error)) from None
    return model.backbone if target == 'backbone' else model
