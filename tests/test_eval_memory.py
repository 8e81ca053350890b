"""Eval peak memory of our models against PaddleSeg 2.8's classes.

Host memory is counted by Paddle's allocator statistics, which do not
depend on machine load.  Both models get the same weights and input.
"""
import paddle
import pytest
from paddle.base import core
from paddleseg.models import GCNet, GINet, ISANet
from paddleseg.models.backbones import ResNet50_vd

from paddleseg_ctx.models import CtxGCNet, CtxGINet, CtxISANet

K = 5


def _eval_peak(model, x):
    """Bytes allocated above the resting state during an eval forward."""
    model.eval()
    with paddle.no_grad():
        model(x)  # warm-up
        resting = core.host_memory_stat_current_value('Allocated', 0)
        core.host_memory_stat_reset_peak_value('Allocated', 0)
        model(x)
    return core.host_memory_stat_peak_value('Allocated', 0) - resting


@pytest.mark.parametrize('ours_cls, theirs_cls',
                         [(CtxGCNet, GCNet), (CtxGINet, GINet),
                          (CtxISANet, ISANet)])
def test_eval_peak_memory_at_most_paddleseg(ours_cls, theirs_cls):
    """Backbone stages, JPU inputs and concatenated maps a head no longer
    needs are freed before its large convolutions (whose im2col buffers set
    the peak), as in PaddleSeg."""
    paddle.seed(0)
    theirs = theirs_cls(K, ResNet50_vd(output_stride=8))
    ours = ours_cls(K, ResNet50_vd(output_stride=8))
    ours.set_state_dict(theirs.state_dict())
    x = paddle.uniform([1, 3, 161, 193], min=-1, max=1)
    assert _eval_peak(ours, x) <= _eval_peak(theirs, x)
