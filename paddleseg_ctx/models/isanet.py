"""ISANet with PaddleSeg's head: Huang et al., "Interlaced Sparse
Self-Attention for Semantic Segmentation", arXiv:1907.12273 (2019).

State-dict keys are those of PaddleSeg 2.8's ``ISANet``, so its published
``.pdparams`` load strictly.  Unlike PaddleSeg's, the interlacing has no
tensor-valued ``if``: it always pads and crops, so the model exports with
dynamic N/H/W.
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddleseg.cvlibs import manager

from paddleseg_ctx.models.base import ContextSegModel
from paddleseg_ctx.models.heads import AttentionBlock, conv_bn_act, fcn_head
from paddleseg_ctx.registry import register

__all__ = ['CtxISANet', 'ISAHead']


@register(manager.MODELS)
class CtxISANet(ContextSegModel):
    """ISANet: long-range then short-range sparse self-attention on C4, plus
    an auxiliary FCN head on C3.

    Args:
        num_classes (int): Number of classes.
        backbone (nn.Layer): Backbone with ``feat_channels``, e.g. ResNet50_vd
            with ``output_stride=8``.
        backbone_indices (tuple[int]): Backbone outputs for (aux, ISA) heads.
        isa_channels (int): Query/key channels of both attention blocks.
        down_factor (tuple[int]): Block size (P_h, P_w) of the interlacing.
        enable_auxiliary_loss (bool): Return the aux head's logits (the aux
            head is built either way, as in PaddleSeg's checkpoints).
        align_corners (bool): ``align_corners`` of the final resize.
        align_mode (int): ``align_mode`` of the final resize; PaddleSeg's
            ISANet uses 1 and its published numbers depend on it.
        pretrained (str|None): Whole-model weights (path or URL).
    """

    BACKBONE_FEATURES = ('C3', 'C4')

    def __init__(self, num_classes, backbone, backbone_indices=(2, 3),
                 isa_channels=256, down_factor=(8, 8),
                 enable_auxiliary_loss=True, align_corners=False,
                 align_mode=1, pretrained=None):
        super().__init__(num_classes, backbone,
                         backbone_indices=backbone_indices,
                         enable_auxiliary_loss=enable_auxiliary_loss,
                         align_corners=align_corners, align_mode=align_mode,
                         pretrained=pretrained)
        self.head = ISAHead(num_classes, self.in_channels, isa_channels,
                            down_factor)
        self.init_weight()

    def decode(self, feats, extra):
        return self.head(*feats, aux=extra and self.enable_auxiliary_loss)


class ISAHead(nn.Layer):
    """3x3 conv to C4/4 channels -> interlaced attention -> concat with its
    input -> 1x1 conv -> Dropout2D -> classifier; aux FCN head on C3."""

    def __init__(self, num_classes, in_channels, isa_channels, down_factor):
        super().__init__()
        aux_channels, c4_channels = in_channels
        self.channels = c4_channels // 4
        self.down_factor = tuple(down_factor)
        self.in_conv = conv_bn_act(c4_channels, self.channels, 3)
        self.global_relation = self_attention(self.channels, isa_channels)
        self.local_relation = self_attention(self.channels, isa_channels)
        self.out_conv = conv_bn_act(2 * self.channels, self.channels, 1)
        self.cls = fcn_head(self.channels, num_classes)
        # 256 wide as PaddleSeg's (which hard-codes ResNet50/101's 1024 C3
        # channels as input); its checkpoints hold this head either way.
        self.aux = fcn_head(aux_channels, num_classes, channels=256)

    def forward(self, c3, c4, aux):
        x = self.in_conv(c4)
        x = self.out_conv(paddle.concat([self.interlaced_attention(x), x], 1))
        logits = [self.cls(x)]
        if aux:
            logits.append(self.aux(c3))
        return logits

    def interlaced_attention(self, x):
        """Split the map into P_h x P_w blocks (zero-padded symmetrically);
        attend among pixels at the same offset in every block (long range),
        then among the pixels of each block (short range); crop back."""
        c = self.channels
        p_h, p_w = self.down_factor
        size = paddle.shape(x)
        h, w = size[2], size[3]
        q_h, q_w = (h + p_h - 1) // p_h, (w + p_w - 1) // p_w
        top, left = (q_h * p_h - h) // 2, (q_w * p_w - w) // 2
        # A zero pad/crop is a no-op; doing it always keeps export graph-only.
        # One int32 tensor of pads: Paddle 3.0's to_static rejects a list of
        # shape tensors here.
        pads = [left, q_w * p_w - w - left, top, q_h * p_h - h - top]
        x = F.pad(x, paddle.concat([p.reshape([1]).astype('int32') for p in pads]))

        x = x.reshape([0, c, q_h, p_h, q_w, p_w]).transpose([0, 3, 5, 1, 2, 4])
        x = x.reshape([-1, c, q_h, q_w])
        x = self.global_relation(x, x)
        x = x.reshape([-1, p_h, p_w, c, q_h, q_w]).transpose([0, 4, 5, 3, 1, 2])
        x = x.reshape([-1, c, p_h, p_w])
        x = self.local_relation(x, x)
        x = x.reshape([-1, q_h, q_w, c, p_h, p_w]).transpose([0, 3, 1, 4, 2, 5])
        x = x.reshape([0, c, q_h * p_h, q_w * p_w])
        return paddle.slice(
            x, axes=[2, 3], starts=[top, left], ends=[top + h, left + w])


def self_attention(channels, key_channels):
    """Self-attention as PaddleSeg's ISANet builds it: value a biased 1x1
    conv of width ``channels``, output projection named ``output_project``."""
    return AttentionBlock(channels, channels, key_channels, channels, channels,
                          value_norm=False, out_name='output_project')
