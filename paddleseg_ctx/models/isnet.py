"""ISNet: Jin et al., "ISNet: Integrate Image-Level and Semantic-Level Context
for Semantic Segmentation", ICCV 2021 (arXiv:2108.12382), as the authors built
it in sssegmentation (``ssseg/modules/models/segmentors/isnet/``).

Outputs and numerics follow sssegmentation.  Its semantic-level context loops
over images and classes in Python with boolean-mask indexing; here it is
vectorised (:func:`semantic_centres`), so the model trains at full speed and
exports with dynamic N/H/W.  Parameter names are PaddleSeg-style
(``ConvBNAct`` gives ``_conv``/``_batch_norm``); the sssegmentation → Paddle key
map is the converter's data.
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddleseg.cvlibs import manager

from paddleseg_ctx.models.base import ContextSegModel
from paddleseg_ctx.models.heads import (AttentionBlock, cast, conv_bn_act,
                                        fcn_head, float32_island, widen)
from paddleseg_ctx.registry import register

__all__ = [
    'CtxISNet', 'ISNetHead', 'ImageLevelContext', 'SemanticLevelContext',
    'class_centres', 'semantic_centres'
]


@register(manager.MODELS)
class CtxISNet(ContextSegModel):
    """ISNet: image-level then semantic-level context on C4, a stage-1 and a
    stage-2 decoder, an auxiliary FCN head on C3 and, for human parsing (LIP),
    a shortcut from C1 into the stage-2 decoder.

    Training returns ``[stage2, stage1, aux]`` logits (``[stage2, stage1]``
    without the aux head), each resized to the input: use a loss config with
    three (two) entries, sssegmentation weights them ``coef: [1, 0.4, 0.4]``.
    Evaluation and export return ``[stage2]`` only, as sssegmentation's
    test mode (``EXTRA_LOGITS_IN_EVAL`` False).

    Args:
        num_classes (int): Number of classes.
        backbone (nn.Layer): Backbone with ``feat_channels``, e.g. a ResNet
            with ``output_stride=8``.
        backbone_indices (sequence[int]): Four backbone outputs C1-C4
            (C1 feeds the shortcut, C3 the aux head, C4 the context head).
        feats_channels (int): Channels of the context features, decoders and
            aux head.
        transform_channels (int): Query/key/value channels of the attention.
        shortcut_channels (int|None): Channels of the C1 shortcut (48 in the
            LIP configs); 0 or None: no shortcut, stage-2 logits at C4's size.
        act (str): Activation of every head module (the backbone keeps its
            own): 'relu', or 'leakyrelu' (slope 0.01) as in the LIP configs.
        dropout (float): Channel dropout before each classifier.
        enable_auxiliary_loss (bool): Build the aux head and return its logits
            when training.
        align_corners (bool): ``align_corners`` of every bilinear resize.
        pretrained (str|None): Whole-model weights (path or URL).
    """

    BACKBONE_FEATURES = ('C1', 'C2', 'C3', 'C4')
    EXTRA_LOGITS_IN_EVAL = False

    def __init__(self, num_classes, backbone, backbone_indices=(0, 1, 2, 3),
                 feats_channels=512, transform_channels=256,
                 shortcut_channels=0, act='relu', dropout=0.1,
                 enable_auxiliary_loss=True, align_corners=False,
                 pretrained=None):
        super().__init__(num_classes, backbone,
                         backbone_indices=backbone_indices,
                         enable_auxiliary_loss=enable_auxiliary_loss,
                         align_corners=align_corners, pretrained=pretrained)
        self.head = ISNetHead(num_classes, self.in_channels, feats_channels,
                              transform_channels, shortcut_channels, act,
                              dropout, enable_auxiliary_loss, align_corners)
        self.init_weight()

    def decode(self, feats, extra):
        return self.head(*feats, extra=extra)


class ISNetHead(nn.Layer):
    """3x3 bottleneck on C4 -> feats; image-level context -> feats_il;
    stage-1 decoder on feats; semantic-level context (from the stage-1
    logits) -> (shortcut concat ->) stage-2 decoder."""

    def __init__(self, num_classes, in_channels, feats_channels,
                 transform_channels, shortcut_channels, act, dropout,
                 enable_auxiliary_loss, align_corners):
        super().__init__()
        c1_channels, _, c3_channels, c4_channels = in_channels
        self.align_corners = align_corners
        self.bottleneck = conv_bn_act(c4_channels, feats_channels, 3, act)
        self.ilc_net = ImageLevelContext(feats_channels, transform_channels,
                                         act)
        self.decoder_stage1 = fcn_head(
            feats_channels, num_classes, channels=feats_channels,
            kernel_size=1, act=act, dropout=dropout)
        self.slc_net = SemanticLevelContext(feats_channels, transform_channels,
                                            act)
        self.shortcut = None
        if shortcut_channels:
            # The shortcut conv keeps its bias, as in sssegmentation.
            self.shortcut = conv_bn_act(
                c1_channels, shortcut_channels, 1, act, bias=True)
            self.decoder_stage2 = fcn_head(
                feats_channels + shortcut_channels, num_classes,
                channels=feats_channels, kernel_size=1, act=act,
                dropout=dropout)
        else:
            self.decoder_stage2 = fcn_head(
                feats_channels, num_classes, dropout=dropout)
        self.aux = None
        if enable_auxiliary_loss:
            # sssegmentation's aux width (512) is feats_channels in its configs.
            self.aux = fcn_head(c3_channels, num_classes,
                                channels=feats_channels, act=act,
                                dropout=dropout)

    def forward(self, c1, c2, c3, c4, extra):
        feats = self.bottleneck(c4)
        feats_il = self.ilc_net(feats)
        logits_stage1 = self.decoder_stage1(feats)
        x = self.slc_net(feats, logits_stage1, feats_il)
        if self.shortcut is not None:
            shortcut = self.shortcut(c1)
            x = F.interpolate(
                x,
                paddle.shape(shortcut)[2:],
                mode='bilinear',
                align_corners=self.align_corners)
            x = paddle.concat([x, shortcut], axis=1)
        logits = [self.decoder_stage2(x)]
        if extra:
            logits.append(logits_stage1)
            if self.aux is not None:
                logits.append(self.aux(c3))
        return logits


class ImageLevelContext(nn.Layer):
    """Attention from every position (query) to [global average, features]
    (key/value), then a 3x3 bottleneck on [features, context]."""

    def __init__(self, channels, transform_channels, act):
        super().__init__()
        self.correlate_net = AttentionBlock(
            channels, 2 * channels, transform_channels, transform_channels,
            channels, act=act)
        self.bottleneck = conv_bn_act(2 * channels, channels, 3, act)

    def forward(self, x):
        # sssegmentation resizes the pooled 1x1 map bilinearly, which is this
        # broadcast.  (expand_as converts wrongly to ONNX; expand does not.)
        x_global = paddle.expand(
            x.mean(axis=[2, 3], keepdim=True), paddle.shape(x))
        context = self.correlate_net(x, paddle.concat([x_global, x], axis=1))
        return self.bottleneck(paddle.concat([x, context], axis=1))


class SemanticLevelContext(nn.Layer):
    """Attention from every position (query) to its class centre (key/value,
    :func:`semantic_centres`), then a 3x3 bottleneck on [image-level features,
    context]."""

    def __init__(self, channels, transform_channels, act):
        super().__init__()
        self.correlate_net = AttentionBlock(
            channels, channels, transform_channels, transform_channels,
            channels, act=act)
        self.bottleneck = conv_bn_act(2 * channels, channels, 3, act)

    def forward(self, x, logits, feats_il):
        context = self.correlate_net(x, semantic_centres(x, logits))
        return self.bottleneck(paddle.concat([feats_il, context], axis=1))


def semantic_centres(feats, logits):
    """:func:`class_centres` as a float32 island (its segment sums and
    softmax normalisers stop adding in float16 once a class covers 2048
    positions; :func:`heads.float32_island`), returned in ``feats``' dtype.
    """
    with float32_island():
        centres = class_centres(widen(feats), widen(logits))
    return cast(centres, feats.dtype)


def class_centres(feats, logits):
    """The class centre of every pixel (sssegmentation's semantic-level
    context): per image, the centre of class k is the mean of the features of
    the pixels whose argmax is k, weighted by the softmax of their class-k
    logits over those pixels; each pixel receives the centre of its class.

    Vectorised as segment sums over (image, class) ids: linear in N*H*W*C
    (a one-hot matmul would be K times that), no loop, dynamic shapes.

    Args:
        feats (Tensor): [N, C, H, W] features.
        logits (Tensor): [N, K, H, W] class logits (argmax ties go to the
            lowest class, as in torch).

    Returns:
        Tensor: [N, C, H, W], the centre of each pixel's class.
    """
    n, c, k = paddle.shape(feats)[0], feats.shape[1], logits.shape[1]
    logits = logits.flatten(2)  # [N, K, HW]
    label = logits.argmax(axis=1, keepdim=True)  # [N, 1, HW]
    # Segment id of every pixel: image * K + class.
    index = (label + k * paddle.arange(n).reshape([-1, 1, 1])).flatten()
    # Shift by the segment's largest logit (constant per softmax, so no
    # gradient); the finite fill keeps absent classes' rows finite.
    member = label == paddle.arange(k).unsqueeze(-1)  # [N, K, HW]
    lowest = paddle.full([1], paddle.finfo(logits.dtype).min, logits.dtype)
    class_max = paddle.where(member, logits, lowest).max(axis=2).flatten()
    score = paddle.take_along_axis(logits, label, axis=1).flatten()
    exp = paddle.exp(score - paddle.gather(class_max.detach(), index))
    # Segment sums with scatter_nd_add (ONNX ScatterND; index_add has no
    # paddle2onnx mapper).
    segments = index.unsqueeze(-1)
    norm = paddle.scatter_nd_add(
        paddle.zeros([n * k], exp.dtype), segments, exp)
    weight = exp / paddle.gather(norm, index)  # softmax within each segment
    rows = feats.flatten(2).transpose([0, 2, 1]).reshape([-1, c])
    centres = paddle.scatter_nd_add(
        paddle.zeros([n * k, c], rows.dtype), segments,
        rows * weight.unsqueeze(-1))  # [N*K, C], absent classes stay 0
    out = paddle.gather(centres, index)  # [N*HW, C]
    return out.reshape([n, -1, c]).transpose([0, 2, 1]).reshape(
        paddle.shape(feats))
