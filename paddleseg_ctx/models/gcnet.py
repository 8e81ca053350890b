"""GCNet: Cao et al., "GCNet: Non-local Networks Meet Squeeze-Excitation
Networks and Beyond", ICCVW 2019 (arXiv:1904.11492).

One head, two published forms.  State-dict keys are those of PaddleSeg 2.8's
``GCNet`` in both, so PaddleSeg's ``.pdparams`` load strictly and
mmsegmentation's checkpoints convert by renaming only:

* PaddleSeg form (defaults): the 3x3 head convs carry a bias, element-wise
  dropout before the classifiers, Paddle's default initialisation;
* mmsegmentation form (``head_conv_bias=False, channel_dropout=True,
  head_init='mmseg'``; ``configs/_base_/models/gcnet_mmseg.yml``): bias-free
  convs, Dropout2D, mmseg's initialisation (zero last conv of the GC block,
  classifiers N(0, 0.01)).
"""
import math

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddleseg.cvlibs import manager

from paddleseg_ctx.models.base import ContextSegModel
from paddleseg_ctx.models.heads import (AUX_LAYER, cast, conv_bn_act,
                                        dropout_layer, fcn_head, fill,
                                        float32_island, init_mmseg_head,
                                        kaiming_normal, widen)
from paddleseg_ctx.registry import register

__all__ = ['CtxGCNet', 'GCNetHead', 'GlobalContextBlock']

HEAD_INITS = ('paddle', 'mmseg')


@register(manager.MODELS)
class CtxGCNet(ContextSegModel):
    """GCNet: an FCN head with one global context (GC) block, on C4, plus an
    auxiliary FCN head on C3.

    Args:
        num_classes (int): Number of classes.
        backbone (nn.Layer): Backbone with ``feat_channels``, e.g. ResNet50_vd
            or ResNet50_v1c with ``output_stride=8``.
        backbone_indices (tuple[int]): Backbone outputs for (aux head, GC head).
        gc_channels (int): Channels of the GC head.
        ratio (float): Bottleneck channels of the GC block / ``gc_channels``.
        head_conv_bias (bool): Bias in the 3x3 convs of both heads (PaddleSeg:
            True; mmseg: False).
        channel_dropout (bool): Drop whole channels (Dropout2D, mmseg) before
            the classifiers instead of single elements (PaddleSeg).
        head_init (str): 'paddle' (Paddle's defaults) or 'mmseg' (mmseg's
            initialisation of both heads, for training with its recipe).
        enable_auxiliary_loss (bool): Build the aux head and return its logits.
        align_corners (bool): ``align_corners`` of the final resize.
        pretrained (str|None): Whole-model weights (path or URL).
    """

    BACKBONE_FEATURES = ('C3', 'C4')

    def __init__(self, num_classes, backbone, backbone_indices=(2, 3),
                 gc_channels=512, ratio=0.25, head_conv_bias=True,
                 channel_dropout=False, head_init='paddle',
                 enable_auxiliary_loss=True, align_corners=False,
                 pretrained=None):
        if head_init not in HEAD_INITS:
            raise ValueError('CtxGCNet: head_init must be one of {}, got '
                             '{!r}.'.format(', '.join(HEAD_INITS), head_init))
        super().__init__(num_classes, backbone,
                         backbone_indices=backbone_indices,
                         enable_auxiliary_loss=enable_auxiliary_loss,
                         align_corners=align_corners, pretrained=pretrained)
        self.head = GCNetHead(num_classes, self.in_channels, gc_channels, ratio,
                              head_conv_bias, channel_dropout,
                              enable_auxiliary_loss)
        if head_init == 'mmseg':
            self.head.init_mmseg()
        self.init_weight()

    def decode(self, feats, extra):
        return self.head(*feats, aux=extra)


class GCNetHead(nn.Layer):
    """3x3 conv -> GC block -> 3x3 conv -> concat with C4 -> 3x3 conv ->
    dropout -> 1x1 classifier; an FCN aux head (3x3 conv to C3/4 channels,
    dropout, 1x1 classifier) on C3."""

    def __init__(self, num_classes, in_channels, gc_channels, ratio,
                 conv_bias, channel_dropout, enable_auxiliary_loss):
        super().__init__()
        aux_channels, c4_channels = in_channels
        self.conv_bn_relu1 = conv_bn_act(
            c4_channels, gc_channels, 3, bias=conv_bias)
        self.gc_block = GlobalContextBlock(gc_channels, ratio)
        self.conv_bn_relu2 = conv_bn_act(
            gc_channels, gc_channels, 3, bias=conv_bias)
        self.conv_bn_relu3 = conv_bn_act(
            c4_channels + gc_channels, gc_channels, 3, bias=conv_bias)
        self.dropout = dropout_layer(0.1, channel_dropout)
        self.conv = nn.Conv2D(gc_channels, num_classes, 1)
        self.auxlayer = None
        if enable_auxiliary_loss:
            self.auxlayer = fcn_head(
                aux_channels, num_classes, channels=aux_channels // 4,
                conv_bias=conv_bias, channel_dropout=channel_dropout,
                names=AUX_LAYER)

    def forward(self, c3, c4, aux):
        x = self.conv_bn_relu2(self.gc_block(self.conv_bn_relu1(c4)))
        # One name rebound step by step: each input is freed before the next
        # conv runs (its im2col buffer sets the eval peak).
        x = paddle.concat([c4, x], axis=1)
        x = self.conv_bn_relu3(x)
        x = self.dropout(x)
        logits = [self.conv(x)]
        if aux and self.auxlayer is not None:
            logits.append(self.auxlayer(c3))
        return logits

    def init_mmseg(self):
        """mmseg's initialisation: :func:`init_mmseg_head`, and the GC block
        as mmcv's ContextBlock."""
        conv_bns = [self.conv_bn_relu1, self.conv_bn_relu2, self.conv_bn_relu3]
        classifiers = [self.conv]
        if self.auxlayer is not None:
            conv_bns.append(self.auxlayer.conv_bn_relu)
            classifiers.append(self.auxlayer.conv)
        init_mmseg_head(conv_bns, classifiers)
        self.gc_block.init_mmcv()


class GlobalContextBlock(nn.Layer):
    """GC block (GCNet paper, Fig. 4d): softmax attention pooling over all
    positions gives one context vector, transformed by a LayerNorm bottleneck
    and added to every position.

    Under mixed precision the softmax, the pooling sum over positions and
    the LayerNorm run in float32 (:func:`heads.float32_island`; the
    LayerNorm keeps float32 weights under AMP O2 too).

    Args:
        channels (int): Input and output channels.
        ratio (float): Bottleneck channels / ``channels``.
    """

    def __init__(self, channels, ratio):
        super().__init__()
        inter_channels = int(channels * ratio)
        self.conv_mask = nn.Conv2D(channels, 1, 1)
        # LayerNorm over [C, 1, 1] like mmcv; Paddle stores its weight as [C].
        self.channel_add_conv = nn.Sequential(
            nn.Conv2D(channels, inter_channels, 1),
            nn.LayerNorm([inter_channels, 1, 1]), nn.ReLU(),
            nn.Conv2D(inter_channels, channels, 1))
        # What paddle.amp.decorate(excluded_layers=...) sets: O2 leaves this
        # layer's weights in float32 (its input is float32, see forward).
        self.channel_add_conv[1]._cast_to_low_precision = False

    def forward(self, x):
        mask = self.conv_mask(x).flatten(2)
        with float32_island():
            # [N, 1, HW] attention over positions; context = x @ attention^T.
            attention = F.softmax(widen(mask), axis=-1)
            context = paddle.matmul(
                widen(x).flatten(2), attention,
                transpose_y=True)
        conv_in, norm, relu, conv_out = self.channel_add_conv
        y = conv_in(cast(context, x.dtype).unsqueeze(-1))
        with float32_island():
            y = norm(widen(y))
        return x + conv_out(relu(cast(y, x.dtype)))

    def init_mmcv(self):
        """mmcv ContextBlock's ``reset_parameters``: ``conv_mask``
        Kaiming-normal (fan_in), last conv zero (the block starts as the
        identity), the first conv PyTorch's default uniform init."""
        kaiming_normal(self.conv_mask, fan_mode='in')
        first, last = self.channel_add_conv[0], self.channel_add_conv[3]
        bound = 1 / math.sqrt(first.weight.shape[1])
        for param in (first.weight, first.bias):
            param.set_value(paddle.uniform(param.shape, min=-bound, max=bound))
        fill(last.weight, 0.0)
        fill(last.bias, 0.0)
