"""ResNetV1c: ResNet with a deep stem (three 3x3 convs), from He et al.,
"Bag of Tricks for Image Classification with Convolutional Neural Networks",
CVPR 2019 (arXiv:1812.01187); the "R-50-D8 / R-101-D8" backbone of
mmsegmentation and sssegmentation's ``resnet{50,101}conv3x3stem``.

The parameter tree mirrors the PyTorch one (``stem.0``, ``stem.1``, ...,
``layer1.0.conv1``, ``layer1.0.bn1``, ``layer1.0.downsample.0``, ...), so the
OpenMMLab ImageNet weights and whole-model checkpoints convert by renaming
BatchNorm statistics only (``running_mean`` -> ``_mean``, ``running_var`` ->
``_variance``, drop ``num_batches_tracked``).  PaddleSeg 2.8 has no such
backbone.
"""
import math

import paddle.nn as nn
from paddleseg.cvlibs import manager, param_init
from paddleseg.models import layers

from paddleseg_ctx.registry import register
from paddleseg_ctx.weights import load_model_weights

__all__ = ['DeepStemResNet', 'ResNetV1c', 'BasicBlock', 'Bottleneck',
           'ResNet18_v1c', 'ResNet50_v1c', 'ResNet101_v1c']

# output_stride -> (strides, dilations) of the four stages; the values of
# mmsegmentation's D8/D16 configs and sssegmentation's `outstride`.
STAGE_SETTINGS = {
    8: ((1, 2, 1, 1), (1, 1, 2, 4)),
    16: ((1, 2, 2, 1), (1, 1, 1, 2)),
    32: ((1, 2, 2, 2), (1, 1, 1, 1)),
}


def conv_bn(in_channels, out_channels, kernel_size, stride=1, dilation=1):
    """[bias-free conv, BN]; 'same' padding for odd kernels."""
    return [
        nn.Conv2D(in_channels, out_channels, kernel_size, stride,
                  padding=dilation * (kernel_size // 2), dilation=dilation,
                  bias_attr=False),
        layers.SyncBatchNorm(out_channels),
    ]


class BasicBlock(nn.Layer):
    """3x3 conv (stride, dilation) -> 3x3 conv, both with BN; as in the
    references, the second conv is never dilated."""
    expansion = 1

    def __init__(self, inplanes, planes, stride, dilation, downsample):
        super().__init__()
        self.conv1, self.bn1 = conv_bn(inplanes, planes, 3, stride, dilation)
        self.conv2, self.bn2 = conv_bn(planes, planes, 3)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


class Bottleneck(nn.Layer):
    """1x1 -> 3x3 (stride and dilation here: "pytorch" style) -> 1x1 (x4),
    each with BN."""
    expansion = 4

    def __init__(self, inplanes, planes, stride, dilation, downsample):
        super().__init__()
        self.conv1, self.bn1 = conv_bn(inplanes, planes, 1)
        self.conv2, self.bn2 = conv_bn(planes, planes, 3, stride, dilation)
        self.conv3, self.bn3 = conv_bn(planes, planes * self.expansion, 1)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(out + identity)


def shortcut(in_channels, out_channels, stride, avg_down):
    """Projection shortcut: [1x1 conv with the stride, BN] or, with
    ``avg_down``, [AvgPool(stride, ceil, padding excluded), 1x1 conv, BN]."""
    if not avg_down:
        return nn.Sequential(*conv_bn(in_channels, out_channels, 1, stride))
    # At stride 1 the references' pool is 1x1, i.e. the identity.
    pool = nn.AvgPool2D(stride, stride, ceil_mode=True,
                        exclusive=True) if stride > 1 else nn.Identity()
    return nn.Sequential(pool, *conv_bn(in_channels, out_channels, 1))


class DeepStemResNet(nn.Layer):
    """Deep stem + 3x3/2 max pool + four stages of residual blocks; returns
    the four stage outputs.  The body shared by ResNetV1c and ResNeSt.

    Args:
        block (callable): ``block(inplanes, planes, stride, dilation,
            downsample)`` builds one residual block.
        expansion (int): Output channels of a block / ``planes``.
        stage_blocks (sequence[int]): Blocks per stage.
        stem_channels (int): Output channels of the stem (its first two convs
            have half as many).
        avg_down (bool): Average-pool shortcuts (see :func:`shortcut`).
        output_stride (int): 8, 16 or 32.
        contract_dilation (bool): The first block of a dilated stage uses
            half the stage's dilation.
        in_channels (int): Input image channels.
        pretrained (str|None): Whole-backbone weights (path or URL).
    """

    def __init__(self, block, expansion, stage_blocks, stem_channels,
                 avg_down, output_stride, contract_dilation, in_channels,
                 pretrained):
        super().__init__()
        if output_stride not in STAGE_SETTINGS:
            raise ValueError(
                'output_stride must be one of {}, got {!r}.'.format(
                    sorted(STAGE_SETTINGS), output_stride))
        half = stem_channels // 2
        self.stem = nn.Sequential(
            *conv_bn(in_channels, half, 3, stride=2), nn.ReLU(),
            *conv_bn(half, half, 3), nn.ReLU(),
            *conv_bn(half, stem_channels, 3), nn.ReLU())
        self.maxpool = nn.MaxPool2D(3, 2, padding=1)

        stages = []
        inplanes = stem_channels
        for i, (num_blocks, stride, dilation) in enumerate(
                zip(stage_blocks, *STAGE_SETTINGS[output_stride])):
            planes = 64 * 2**i
            outplanes = planes * expansion
            downsample = None
            if stride != 1 or inplanes != outplanes:
                downsample = shortcut(inplanes, outplanes, stride, avg_down)
            first_dilation = dilation // 2 if (contract_dilation and
                                               dilation > 1) else dilation
            blocks = [block(inplanes, planes, stride, first_dilation,
                            downsample)]
            blocks += [
                block(outplanes, planes, 1, dilation, None)
                for _ in range(1, num_blocks)
            ]
            stages.append(nn.Sequential(*blocks))
            inplanes = outplanes
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.feat_channels = [64 * 2**i * expansion for i in range(4)]
        self.pretrained = pretrained
        self.init_weight()

    def forward(self, x):
        c1 = self.layer1(self.maxpool(self.stem(x)))
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        return [c1, c2, c3, c4]

    def init_weight(self):
        """Load ``pretrained``, or initialise as mmsegmentation's ResNet:
        convs Kaiming-normal (fan_out, ReLU gain) with zero bias, BN weight 1
        and bias 0 (Paddle's default), and the last BN of every
        BasicBlock/Bottleneck residual branch zero (``zero_init_residual``:
        each block starts as the identity; mmsegmentation's ResNeSt blocks
        keep 1)."""
        if self.pretrained is not None:
            load_model_weights(self, self.pretrained)
            return
        for layer in self.sublayers():
            if isinstance(layer, nn.Conv2D):
                out_channels, _, kh, kw = layer.weight.shape
                fan_out = out_channels * kh * kw
                param_init.normal_init(layer.weight,
                                       std=math.sqrt(2.0 / fan_out))
                if layer.bias is not None:
                    param_init.constant_init(layer.bias, value=0.0)
            elif isinstance(layer, BasicBlock):
                param_init.constant_init(layer.bn2.weight, value=0.0)
            elif isinstance(layer, Bottleneck):
                param_init.constant_init(layer.bn3.weight, value=0.0)


class ResNetV1c(DeepStemResNet):
    """ResNetV1c: deep stem 32-32-64, strided 1x1-conv shortcuts (no
    average pooling), stride on the 3x3 conv.

    Args:
        depth (int): 18, 34, 50, 101 or 152.
        output_stride (int): 8 (strides 1,2,1,1, dilations 1,1,2,4), 16 or 32.
        contract_dilation (bool): The first block of a dilated stage uses
            half the dilation (mmsegmentation's D8 configs and sssegmentation
            set True).
        in_channels (int): Input image channels.
        pretrained (str|None): Whole-backbone weights (path or URL).
    """
    arch_settings = {
        18: (BasicBlock, (2, 2, 2, 2)),
        34: (BasicBlock, (3, 4, 6, 3)),
        50: (Bottleneck, (3, 4, 6, 3)),
        101: (Bottleneck, (3, 4, 23, 3)),
        152: (Bottleneck, (3, 8, 36, 3)),
    }

    def __init__(self,
                 depth=50,
                 output_stride=8,
                 contract_dilation=True,
                 in_channels=3,
                 pretrained=None):
        if depth not in self.arch_settings:
            raise ValueError(
                'ResNetV1c depth must be one of {}, got {!r}.'.format(
                    sorted(self.arch_settings), depth))
        block, stage_blocks = self.arch_settings[depth]
        super().__init__(block, block.expansion, stage_blocks,
                         stem_channels=64, avg_down=False,
                         output_stride=output_stride,
                         contract_dilation=contract_dilation,
                         in_channels=in_channels, pretrained=pretrained)


@register(manager.BACKBONES)
def ResNet18_v1c(output_stride=8, contract_dilation=True, in_channels=3,
                 pretrained=None):
    return ResNetV1c(18, output_stride, contract_dilation, in_channels,
                     pretrained)


@register(manager.BACKBONES)
def ResNet50_v1c(output_stride=8, contract_dilation=True, in_channels=3,
                 pretrained=None):
    return ResNetV1c(50, output_stride, contract_dilation, in_channels,
                     pretrained)


@register(manager.BACKBONES)
def ResNet101_v1c(output_stride=8, contract_dilation=True, in_channels=3,
                  pretrained=None):
    return ResNetV1c(101, output_stride, contract_dilation, in_channels,
                     pretrained)
