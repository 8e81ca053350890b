"""Paddle weights files (``.pdparams``): reading one, and checking a state
dict against a model."""
import paddle

from paddleseg_ctx.errors import WeightsError

__all__ = ['read_paddle_state_dict', 'check_state_dict']


def read_paddle_state_dict(path, source=None):
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
