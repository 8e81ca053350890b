"""Batch size 1 trains as in PaddleSeg and PyTorch: BatchNorm normalises over
batch and space, so one image with feature maps larger than 1x1 is fine.  Only
the degenerate case, one value per channel (batch size 1 and a 1x1 map), is
refused: Paddle then passes the input through unnormalised and never updates
the statistics (PyTorch raises "Expected more than 1 value per channel")."""
import functools

import numpy as np
import paddle

from paddleseg_ctx.errors import UserError

__all__ = ['BatchNormSizeError', 'refuse_single_value_batch_norm']


class BatchNormSizeError(UserError, ValueError):
    """A BatchNorm layer got one value per channel while training."""


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
