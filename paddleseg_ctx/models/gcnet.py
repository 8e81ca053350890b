"""GCNet with PaddleSeg's head: Cao et al., "GCNet: Non-local Networks Meet
Squeeze-Excitation Networks and Beyond", ICCVW 2019 (arXiv:1904.11492).

State-dict keys are those of PaddleSeg 2.8's ``GCNet``, so its published
``.pdparams`` load strictly.
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddleseg.cvlibs import manager
from paddleseg.models import layers

from paddleseg_ctx.models.base import ContextSegModel, aux_layer
from paddleseg_ctx.registry import register

__all__ = ['CtxGCNet', 'GCNetHead', 'GlobalContextBlock']


@register(manager.MODELS)
class CtxGCNet(ContextSegModel):
    """GCNet: an FCN head with one global context (GC) block, on C4, plus an
    auxiliary FCN head on C3.

    Args:
        num_classes (int): Number of classes.
        backbone (nn.Layer): Backbone with ``feat_channels``, e.g. ResNet50_vd
            with ``output_stride=8``.
        backbone_indices (tuple[int]): Backbone outputs for (aux head, GC head).
        gc_channels (int): Channels of the GC head.
        ratio (float): Bottleneck channels of the GC block / ``gc_channels``.
        enable_auxiliary_loss (bool): Build the aux head and return its logits.
        align_corners (bool): ``align_corners`` of the final resize.
        pretrained (str|None): Whole-model weights (path or URL).
    """

    def __init__(self,
                 num_classes,
                 backbone,
                 backbone_indices=(2, 3),
                 gc_channels=512,
                 ratio=0.25,
                 enable_auxiliary_loss=True,
                 align_corners=False,
                 pretrained=None):
        super().__init__(num_classes, backbone, backbone_indices,
                         enable_auxiliary_loss, align_corners, 0, pretrained)
        self.head = GCNetHead(num_classes, self.in_channels, gc_channels, ratio,
                              enable_auxiliary_loss)
        self.init_weight()

    def decode(self, feats):
        return self.head(*feats)


class GCNetHead(nn.Layer):
    """3x3 conv -> GC block -> 3x3 conv -> concat with C4 -> 3x3 conv ->
    element-wise dropout -> 1x1 classifier; ``AuxLayer`` on C3.

    The 3x3 convs keep their bias and the dropout is ``nn.Dropout`` (not
    Dropout2D), as in PaddleSeg, whose published weights were trained so.
    """

    def __init__(self, num_classes, in_channels, gc_channels, ratio,
                 enable_auxiliary_loss):
        super().__init__()
        aux_channels, c4_channels = in_channels
        self.conv_bn_relu1 = layers.ConvBNReLU(c4_channels, gc_channels, 3)
        self.gc_block = GlobalContextBlock(gc_channels, ratio)
        self.conv_bn_relu2 = layers.ConvBNReLU(gc_channels, gc_channels, 3)
        self.conv_bn_relu3 = layers.ConvBNReLU(c4_channels + gc_channels,
                                               gc_channels, 3)
        self.dropout = nn.Dropout(p=0.1)
        self.conv = nn.Conv2D(gc_channels, num_classes, 1)
        self.auxlayer = aux_layer(
            aux_channels, num_classes,
            conv_bias=True) if enable_auxiliary_loss else None

    def forward(self, c3, c4):
        x = self.conv_bn_relu2(self.gc_block(self.conv_bn_relu1(c4)))
        x = self.conv_bn_relu3(paddle.concat([c4, x], axis=1))
        logits = [self.conv(self.dropout(x))]
        if self.auxlayer is not None:
            logits.append(self.auxlayer(c3))
        return logits


class GlobalContextBlock(nn.Layer):
    """GC block (GCNet paper, Fig. 4d): softmax attention pooling over all
    positions gives one context vector, transformed by a LayerNorm bottleneck
    and added to every position.

    Args:
        channels (int): Input and output channels.
        ratio (float): Bottleneck channels / ``channels``.
    """

    def __init__(self, channels, ratio):
        super().__init__()
        inter_channels = int(channels * ratio)
        self.conv_mask = nn.Conv2D(channels, 1, 1)
        self.channel_add_conv = nn.Sequential(
            nn.Conv2D(channels, inter_channels, 1),
            nn.LayerNorm([inter_channels, 1, 1]), nn.ReLU(),
            nn.Conv2D(inter_channels, channels, 1))

    def forward(self, x):
        # [N, 1, HW] attention over positions; context = x @ attention^T.
        attention = F.softmax(self.conv_mask(x).flatten(2), axis=-1)
        context = paddle.matmul(x.flatten(2), attention, transpose_y=True)
        return x + self.channel_add_conv(context.unsqueeze(-1))
