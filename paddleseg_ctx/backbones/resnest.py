"""ResNeSt: Zhang et al., "ResNeSt: Split-Attention Networks",
arXiv:2004.08955 (2020); the "S-101-D8" backbone of sssegmentation's ISNet (the
same network as mmsegmentation's ``ResNeSt`` with ``stem_channels=128``).

The parameter tree mirrors the PyTorch one (``layer1.0.conv2.conv``,
``conv2.bn0``, ``conv2.fc1``, ``conv2.bn1``, ``conv2.fc2``, ``downsample.1``
(conv) / ``downsample.2`` (BN) after the parameter-free pool at index 0, ...),
so the OpenMMLab ``resnest*_d2`` ImageNet weights convert by renaming
BatchNorm statistics only.  PaddleSeg 2.8 has no ResNeSt.
"""
import functools

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddleseg.cvlibs import manager
from paddleseg.models import layers

from paddleseg_ctx.backbones.resnet_v1c import DeepStemResNet, conv_bn
from paddleseg_ctx.registry import register

__all__ = ['ResNeSt', 'SplitAttentionBottleneck', 'SplitAttentionConv2D',
           'ResNeSt50', 'ResNeSt101']


class SplitAttentionConv2D(nn.Layer):
    """Split attention: a grouped 3x3 conv makes ``radix`` feature splits;
    their sum, globally pooled, goes through ``fc1``-BN-ReLU-``fc2`` to one
    weight per split and channel (softmax over the splits), and the output
    is the weighted sum of the splits.

    Args:
        channels (int): Input and output channels.
        stride, dilation (int): Of the 3x3 conv (padding = dilation).
        radix (int): Splits per cardinal group (1: sigmoid gating).
        cardinality (int): Cardinal groups.
        reduction_factor (int): Attention bottleneck is
            ``max(channels * radix // reduction_factor, 32)`` channels.
    """

    def __init__(self, channels, stride, dilation, radix, cardinality,
                 reduction_factor):
        super().__init__()
        inter_channels = max(channels * radix // reduction_factor, 32)
        self.channels = channels
        self.radix = radix
        self.cardinality = cardinality
        self.conv = nn.Conv2D(channels, channels * radix, 3, stride,
                              padding=dilation, dilation=dilation,
                              groups=cardinality * radix, bias_attr=False)
        self.bn0 = layers.SyncBatchNorm(channels * radix)
        self.fc1 = nn.Conv2D(channels, inter_channels, 1, groups=cardinality)
        self.bn1 = layers.SyncBatchNorm(inter_channels)
        self.fc2 = nn.Conv2D(inter_channels, channels * radix, 1,
                             groups=cardinality)
        self.relu = nn.ReLU()

    def forward(self, x):
        x = self.relu(self.bn0(self.conv(x)))
        splits = paddle.split(x, self.radix, axis=1)  # radix-major channels
        gap = paddle.add_n(splits).mean(axis=[2, 3], keepdim=True)
        atten = self.fc2(self.relu(self.bn1(self.fc1(gap))))
        if self.radix == 1:
            return x * F.sigmoid(atten)
        # r-softmax: fc2's channels are [cardinality, radix, c]; softmax over
        # radix, then radix-major like the splits.  0 keeps N symbolic; the
        # channel sizes stay literal (paddle2onnx cannot split a -1 axis).
        per_group = self.channels // self.cardinality
        atten = atten.reshape([0, self.cardinality, self.radix, per_group])
        atten = F.softmax(atten.transpose([0, 2, 1, 3]), axis=1)
        atten = atten.reshape([0, self.channels * self.radix, 1, 1])
        attens = paddle.split(atten, self.radix, axis=1)
        # Map first, [N, C, 1, 1] weights second: the same products, but
        # Paddle 3.3's CPU broadcast kernel is 4-5x slower the other way
        # round (README, Speed: 6% of ResNeSt-101's dygraph eval).
        return paddle.add_n([s * a for a, s in zip(attens, splits)])


class SplitAttentionBottleneck(nn.Layer):
    """1x1 conv-BN-ReLU -> split-attention 3x3 -> [avd pool] -> 1x1 conv
    (x4)-BN, plus shortcut.  No BN after the split-attention conv.

    Args:
        inplanes, planes (int): Input channels; output is ``4 * planes``.
        stride, dilation (int): Of the block.
        downsample (nn.Layer|None): Shortcut projection.
        radix, cardinality, reduction_factor: See ``SplitAttentionConv2D``.
        base_width (int): Width per cardinal group for ``planes == 64``
            (ignored when ``cardinality == 1``: the width is ``planes``).
        avd (bool): With stride > 1, run the split-attention conv at stride
            1 and downsample after it by a 3x3 average pool (padding counted,
            as PyTorch's ``count_include_pad=True``).
    """
    expansion = 4

    def __init__(self, inplanes, planes, stride, dilation, downsample, radix,
                 cardinality, base_width, reduction_factor, avd):
        super().__init__()
        width = planes if cardinality == 1 else (
            planes * base_width // 64) * cardinality
        avd = avd and stride > 1
        self.conv1, self.bn1 = conv_bn(inplanes, width, 1)
        self.conv2 = SplitAttentionConv2D(width, 1 if avd else stride,
                                          dilation, radix, cardinality,
                                          reduction_factor)
        self.avd_layer = nn.AvgPool2D(
            3, stride, padding=1, exclusive=False) if avd else None
        self.conv3, self.bn3 = conv_bn(width, planes * self.expansion, 1)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        out = self.conv2(self.relu(self.bn1(self.conv1(x))))
        if self.avd_layer is not None:
            out = self.avd_layer(out)
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class ResNeSt(DeepStemResNet):
    """ResNeSt: deep stem 64-64-128, split-attention bottlenecks, average-pool
    shortcuts (``avg_down``) and avd.  Defaults are ResNeSt-101 as
    sssegmentation's ISNet builds it.

    Args:
        depth (int): 50, 101, 152 or 200.
        output_stride (int): 8 (strides 1,2,1,1, dilations 1,1,2,4), 16 or 32.
        contract_dilation (bool): The first block of a dilated stage uses
            half the dilation.
        in_channels (int): Input image channels.
        radix (int): Splits per cardinal group.
        cardinality (int): Cardinal groups (the references' ``groups``).
        base_width (int): Width per group (used when ``cardinality > 1``).
        reduction_factor (int): Of the attention bottleneck.
        avd (bool): Downsample strided blocks by a 3x3 average pool after the
            split-attention conv.
        pretrained (str|None): Whole-backbone weights (path or URL).
    """
    arch_settings = {
        50: (3, 4, 6, 3),
        101: (3, 4, 23, 3),
        152: (3, 8, 36, 3),
        200: (3, 24, 36, 3),
    }

    def __init__(self,
                 depth=101,
                 output_stride=8,
                 contract_dilation=True,
                 in_channels=3,
                 radix=2,
                 cardinality=1,
                 base_width=4,
                 reduction_factor=4,
                 avd=True,
                 pretrained=None):
        if depth not in self.arch_settings:
            raise ValueError(
                'ResNeSt depth must be one of {}, got {!r}.'.format(
                    sorted(self.arch_settings), depth))
        block = functools.partial(
            SplitAttentionBottleneck, radix=radix, cardinality=cardinality,
            base_width=base_width, reduction_factor=reduction_factor, avd=avd)
        super().__init__(block, SplitAttentionBottleneck.expansion,
                         self.arch_settings[depth], stem_channels=128,
                         avg_down=True, output_stride=output_stride,
                         contract_dilation=contract_dilation,
                         in_channels=in_channels, pretrained=pretrained)


@register(manager.BACKBONES)
def ResNeSt50(output_stride=8, contract_dilation=True, in_channels=3,
              pretrained=None):
    return ResNeSt(50, output_stride, contract_dilation, in_channels,
                   pretrained=pretrained)


@register(manager.BACKBONES)
def ResNeSt101(output_stride=8, contract_dilation=True, in_channels=3,
               pretrained=None):
    return ResNeSt(101, output_stride, contract_dilation, in_channels,
                   pretrained=pretrained)
