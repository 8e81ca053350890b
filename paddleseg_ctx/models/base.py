"""What every model of this package shares.

``ContextSegModel`` selects the backbone stages a head needs, runs the head,
resizes every logit map to the input size and loads weights.  A model only
writes its context head (``decode``).  State-dict key names follow the
checkpoints each model must load, which is why the auxiliary head is attached
by each model at its own attribute path, built by :func:`aux_layer` or
:func:`fcn_classifier`.
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddleseg.models import layers

from paddleseg_ctx.weights import load_model_weights

__all__ = ['ContextSegModel', 'attend', 'aux_layer', 'fcn_classifier']


class ContextSegModel(nn.Layer):
    """Backbone + context head (+ auxiliary FCN head), logits resized to input.

    Args:
        num_classes (int): Number of classes.
        backbone (nn.Layer): Backbone exposing ``feat_channels``.
        backbone_indices (sequence[int]): Backbone outputs given to ``decode``;
            their channels are in ``self.in_channels``.
        enable_auxiliary_loss (bool): Return auxiliary logits after the main
            one (in eval mode too, like PaddleSeg; evaluation uses the first).
        align_corners (bool): ``align_corners`` of the final bilinear resize.
        align_mode (int): ``align_mode`` of that resize when
            ``align_corners`` is False (0: half-pixel, 1: asymmetric).
        pretrained (str|None): Path or URL of whole-model weights.
    """

    def __init__(self, num_classes, backbone, backbone_indices,
                 enable_auxiliary_loss, align_corners, align_mode, pretrained):
        super().__init__()
        self.num_classes = num_classes
        self.backbone = backbone
        self.backbone_indices = list(backbone_indices)
        self.in_channels = [
            backbone.feat_channels[i] for i in self.backbone_indices
        ]
        self.enable_auxiliary_loss = enable_auxiliary_loss
        self.align_corners = align_corners
        self.align_mode = align_mode
        self.pretrained = pretrained

    def decode(self, feats):
        """Map the selected backbone features to ``[main_logit, aux...]``.

        ``feats`` is a list of the head's own; emptying it frees the features
        the head no longer needs before its large convolutions run.
        """
        raise NotImplementedError

    def raw_logits(self, x):
        """``[main_logit, aux...]`` at feature resolution, before the resize
        to the input size (protocols that resize once from low resolution,
        like sssegmentation's, start from these)."""
        feats = self.backbone(x)
        # Rebinding frees the stages no head reads (eval peak memory).
        feats = [feats[i] for i in self.backbone_indices]
        return self.decode(feats)

    def forward(self, x):
        logits = self.raw_logits(x)
        size = paddle.shape(x)[2:]
        return [
            F.interpolate(
                logit,
                size,
                mode='bilinear',
                align_corners=self.align_corners,
                align_mode=self.align_mode) for logit in logits
        ]

    def init_weight(self):
        """Load ``pretrained`` (call at the end of a subclass ``__init__``)."""
        if self.pretrained is not None:
            load_model_weights(self, self.pretrained)


def aux_layer(in_channels, num_classes, conv_bias):
    """PaddleSeg's ``AuxLayer`` (keys ``conv_bn_relu.*``, ``conv.*``):
    3x3 ConvBNReLU to in/4 channels, element-wise dropout 0.1, 1x1 classifier."""
    return layers.AuxLayer(
        in_channels,
        in_channels // 4,
        num_classes,
        bias_attr=None if conv_bias else False)


def fcn_classifier(in_channels, num_classes, dropout):
    """``[dropout, 1x1 conv]`` as a Sequential (classifier keys ``1.*``)."""
    return nn.Sequential(dropout, nn.Conv2D(in_channels, num_classes, 1))


def attend(query, key, value, scale):
    """Scaled dot-product attention between feature maps: each query position
    takes the softmax(scale * q.k)-weighted sum of the values over the key
    positions.

    Same result as PaddleSeg's ``AttentionBlock`` without its three
    transposes: the matmuls read [N, C, HW] maps through their transpose
    flags, and the scale goes on the query (C x HW) rather than the
    similarity map (HW x HW).

    Args:
        query (Tensor): [N, Ck, Hq, Wq].
        key (Tensor): [N, Ck, Hk, Wk].
        value (Tensor): [N, Cv, Hk, Wk].
        scale (float): Factor of the dot products.

    Returns:
        Tensor: [N, Cv, Hq, Wq].
    """
    size = paddle.shape(query)
    sim = paddle.matmul(  # [N, HWq, HWk]
        (query * scale).flatten(2), key.flatten(2), transpose_x=True)
    context = paddle.matmul(  # [N, Cv, HWq]
        value.flatten(2), F.softmax(sim, axis=-1), transpose_y=True)
    return context.reshape([0, 0, size[2], size[3]])
