"""Loading whole-model weights strictly, from a local file or a URL."""
import os

import paddle

from paddleseg_ctx.errors import UserError

__all__ = ['WeightsError', 'load_model_weights', 'check_state_dict',
           'resolve_weights', 'read_state_dict']


class WeightsError(UserError, RuntimeError):
    """Weights could not be found, fetched or matched to a model."""


def resolve_weights(path_or_url):
    """Return a local .pdparams file for ``path_or_url`` (downloading URLs,
    unpacking archives, converting PyTorch checkpoints once; see
    ``paddleseg_ctx.pretrained``)."""
    from paddleseg_ctx.pretrained import local_file  # lazy: pretrained imports this module
    path = local_file(path_or_url)
    if os.path.isdir(path):
        raise WeightsError(
            'Weights "{}" is a directory; point `pretrained` / `--model_path` '
            'at the weights file in it (e.g. {}).'.format(
                path_or_url, os.path.join(path_or_url, 'model.pdparams')))
    if not os.path.isfile(path):
        raise WeightsError(
            'Weights file "{}" does not exist. Point `pretrained` / '
            '`--model_path` at an existing .pdparams or PyTorch .pth file.'.format(
                path_or_url))
    return path


def read_state_dict(path, source=None):
    """``paddle.load(path)`` as a dict of tensors, or ``WeightsError`` when
    the file is truncated, damaged or holds something else.  ``source``
    names the file in the message (default: ``path``)."""
    source = source or path
    try:
        state_dict = paddle.load(path)
    except Exception as err:  # noqa: BLE001  (paddle.load raises pickle, EOF, value errors, ...)
        raise WeightsError(
            'Weights in {} cannot be read: the file is truncated, damaged or '
            'not a Paddle weights file (.pdparams). Download or copy it '
            'again, or point `pretrained` / `--model_path` at another '
            'file.'.format(source)) from err
    if not isinstance(state_dict, dict):
        raise WeightsError(
            '{} holds a {}, not a dict of named weights (a .pdparams file '
            'written by paddle.save(model.state_dict(), ...)).'.format(
                source, type(state_dict).__name__))
    return state_dict


def check_state_dict(model, state_dict, source='<state dict>', advice=None):
    """Raise ``WeightsError`` unless ``state_dict`` matches ``model`` exactly
    (same keys, same shapes); the message lists the first ten offending keys
    of each kind, their count, and ``advice``."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    wrong_shape = [
        '{}: file {} vs model {}'.format(k, list(state_dict[k].shape),
                                          list(own[k].shape)) for k in own
        if k in state_dict and list(state_dict[k].shape) != list(own[k].shape)
    ]
    problems = []
    for title, keys in (('missing', missing), ('unexpected', unexpected),
                        ('shape mismatch', wrong_shape)):
        if keys:
            shown = ', '.join(keys[:10]) + (' ...' if len(keys) > 10 else '')
            problems.append('{} {} key(s): {}'.format(len(keys), title, shown))
    if problems:
        raise WeightsError('Weights in {} do not fit {}:\n  {}\n{}'.format(
            source, type(model).__name__, '\n  '.join(problems), advice or
            'Is it a checkpoint of this model with the same backbone and num_classes?'))


def load_model_weights(model, path_or_url, strict=True):
    """Load whole-model weights into ``model``.

    Args:
        model (nn.Layer): The model.
        path_or_url (str): ``.pdparams`` or PyTorch ``.pth`` file, or URL of one.
        strict (bool): Require identical keys and shapes (default). With
            ``strict=False`` only matching entries are loaded.
    """
    path = resolve_weights(path_or_url)
    source = path if path == path_or_url else '{} (as {})'.format(path_or_url, path)
    state_dict = read_state_dict(path, source)
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
