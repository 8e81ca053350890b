"""Loading whole-model weights strictly, from a local file or a URL: the
one way the package loads weights into a model.

``PADDLESEG_LOAD_PATCHES`` make PaddleSeg's ``resume`` (``core.train`` calls
it on ``resume_model``) and the ViT and CAE backbones' ``init_weight`` (which
call ``paddle.load`` on ``pretrained``) read with the restricted reader
(``paddle_file``); ``paddleseg_ctx.compat`` applies them on import.
"""
import importlib
import os

import paddleseg
from paddleseg.models.backbones import cae, vision_transformer
from paddleseg.utils import logger
from paddleseg.utils import utils as paddleseg_utils

from paddleseg_ctx.errors import WeightsError
from paddleseg_ctx.weights.fetch import local_file
from paddleseg_ctx.weights.paddle_file import (check_state_dict, read_paddle_state_dict,
                                               restricted_paddle_load)

__all__ = ['load_model_weights', 'load_trained_weights', 'resolve_weights',
           'PADDLESEG_LOAD_PATCHES']


def resolve_weights(path_or_url):
    """Return a local .pdparams file for ``path_or_url`` (downloading URLs,
    unpacking archives, converting PyTorch checkpoints once; see
    ``paddleseg_ctx.weights.fetch``).  The one check of ``--model_path``."""
    path = local_file(path_or_url)
    if os.path.isdir(path):
        raise WeightsError(
            'Weights "{}" is a directory; point `pretrained` / `--model_path` '
            'at the weights file in it (e.g. {}), or, for val and predict, at '
            'a directory written by python -m paddleseg_ctx.export.'.format(
                path_or_url, os.path.join(path_or_url, 'model.pdparams')))
    if not os.path.isfile(path):
        raise WeightsError(
            'Weights file "{}" does not exist. Point `pretrained` / '
            '`--model_path` at an existing .pdparams or PyTorch .pth file.'.format(
                path_or_url))
    return path


def load_model_weights(model, path_or_url, strict=True):
    """Load whole-model weights into ``model``.

    Args:
        model (nn.Layer): The model.
        path_or_url (str): ``.pdparams`` or PyTorch ``.pth`` file (converted
            on first use), an archive holding a ``.pdparams``, or a URL of one.
        strict (bool): Require identical keys and shapes (default). With
            ``strict=False`` only matching entries are loaded.
    """
    path = resolve_weights(path_or_url)
    source = path if path == path_or_url else '{} (as {})'.format(path_or_url, path)
    state_dict = read_paddle_state_dict(path, source)
    if strict:
        check_state_dict(model, state_dict, source=source)
    else:
        own = model.state_dict()
        state_dict = {
            k: v
            for k, v in state_dict.items()
            if k in own and list(v.shape) == list(own[k].shape)
        }
    model.set_state_dict(state_dict)
    return model


def load_trained_weights(model, model_path):
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


def _restricted_resume(original):
    def resume(model, optimizer, resume_model):
        with restricted_paddle_load():
            return original(model, optimizer, resume_model)
    resume.__doc__ = original.__doc__
    return resume


def _restricted_init_weight(original):
    def init_weight(self):
        with restricted_paddle_load():
            return original(self)
    init_weight.__doc__ = original.__doc__
    return init_weight


# (owner, attribute, make(original)) for paddleseg_ctx.compat.Fix: every name
# under which PaddleSeg's code finds `resume` (core/train.py imports it), and
# the backbones that call paddle.load on `pretrained` themselves (after
# load_pretrained_model, which fetch.PADDLESEG_PATCHES already restricts).
PADDLESEG_LOAD_PATCHES = [
    (paddleseg_utils, 'resume', _restricted_resume),
    (paddleseg.utils, 'resume', _restricted_resume),
    (importlib.import_module('paddleseg.core.train'), 'resume', _restricted_resume),
    (vision_transformer.VisionTransformer, 'init_weight', _restricted_init_weight),
    (cae.CAE, 'init_weight', _restricted_init_weight),
]
