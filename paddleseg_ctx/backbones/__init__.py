"""Backbones registered into ``paddleseg.cvlibs.manager.BACKBONES``."""
from paddleseg_ctx.backbones.resnet_v1c import (ResNetV1c, ResNet18_v1c,
                                                ResNet50_v1c, ResNet101_v1c)
from paddleseg_ctx.backbones.resnest import ResNeSt, ResNeSt50, ResNeSt101
