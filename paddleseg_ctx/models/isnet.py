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
from paddleseg.models import layers

from paddleseg_ctx.models.base import (ContextSegModel, attend,
                                       fcn_classifier)
from paddleseg_ctx.registry import register

__all__ = [
    'CtxISNet', 'ISNetHead', 'ImageLevelContext', 'SemanticLevelContext',
    'SelfAttentionBlock', 'semantic_centres'
]


@register(manager.MODELS)
class CtxISNet(ContextSegModel):
    """ISNet: image-level then semantic-level context on C4, a stage-1 and a
    stage-2 decoder, an auxiliary FCN head on C3 and, for human parsing (LIP),
    a shortcut from C1 into the stage-2 decoder.

    Training returns ``[stage2, stage1, aux]`` logits (``[stage2, stage1]``
    without the aux head), each resized to the input: use a loss config with
    three (two) entries, sssegmentation weights them ``coef: [1, 0.4, 0.4]``.
    Evaluation and export return ``[stage2]`` only.

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

    def __init__(self,
                 num_classes,
                 backbone,
                 backbone_indices=(0, 1, 2, 3),
                 feats_channels=512,
                 transform_channels=256,
                 shortcut_channels=0,
                 act='relu',
                 dropout=0.1,
                 enable_auxiliary_loss=True,
                 align_corners=False,
                 pretrained=None):
        if len(backbone_indices) != 4:
            raise ValueError(
                'CtxISNet needs four backbone_indices (C1, C2, C3, C4), got '
                '{}.'.format(list(backbone_indices)))
        super().__init__(num_classes, backbone, backbone_indices,
                         enable_auxiliary_loss, align_corners, 0, pretrained)
        self.head = ISNetHead(num_classes, self.in_channels, feats_channels,
                              transform_channels, shortcut_channels, act,
                              dropout, enable_auxiliary_loss, align_corners)
        self.init_weight()

    def decode(self, feats):
        return self.head(*feats)


def conv_bn_act(in_channels, out_channels, kernel_size, act):
    """Bias-free conv ('same' padding) + BN + activation."""
    return layers.ConvBNAct(
        in_channels, out_channels, kernel_size, act_type=act, bias_attr=False)


def conv_classifier(in_channels, channels, num_classes, kernel_size, act,
                    dropout):
    """[conv+BN+act, Dropout2D, 1x1 classifier] as a Sequential."""
    return nn.Sequential(
        conv_bn_act(in_channels, channels, kernel_size, act),
        nn.Dropout2D(dropout), nn.Conv2D(channels, num_classes, 1))


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
        self.decoder_stage1 = conv_classifier(feats_channels, feats_channels,
                                              num_classes, 1, act, dropout)
        self.slc_net = SemanticLevelContext(feats_channels, transform_channels,
                                            act)
        if shortcut_channels:
            # The shortcut conv keeps its bias, as in sssegmentation.
            self.shortcut = layers.ConvBNAct(
                c1_channels, shortcut_channels, 1, act_type=act)
            self.decoder_stage2 = conv_classifier(
                feats_channels + shortcut_channels, feats_channels,
                num_classes, 1, act, dropout)
        else:
            self.shortcut = None
            self.decoder_stage2 = fcn_classifier(feats_channels, num_classes,
                                                 nn.Dropout2D(dropout))
        self.aux = None
        if enable_auxiliary_loss:
            # sssegmentation's aux width (512) is feats_channels in its configs.
            self.aux = conv_classifier(c3_channels, feats_channels,
                                       num_classes, 3, act, dropout)

    def forward(self, c1, c2, c3, c4):
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
        if self.training:
            logits.append(logits_stage1)
            if self.aux is not None:
                logits.append(self.aux(c3))
        return logits


class ImageLevelContext(nn.Layer):
    """Attention from every position (query) to [global average, features]
    (key/value), then a 3x3 bottleneck on [features, context]."""

    def __init__(self, channels, transform_channels, act):
        super().__init__()
        self.correlate_net = SelfAttentionBlock(2 * channels, channels,
                                                transform_channels, channels,
                                                act)
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
        self.correlate_net = SelfAttentionBlock(channels, channels,
                                                transform_channels, channels,
                                                act)
        self.bottleneck = conv_bn_act(2 * channels, channels, 3, act)

    def forward(self, x, logits, feats_il):
        context = self.correlate_net(x, semantic_centres(x, logits))
        return self.bottleneck(paddle.concat([feats_il, context], axis=1))


def semantic_centres(feats, logits):
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


class SelfAttentionBlock(layers.AttentionBlock):
    """sssegmentation's attention block as used by ISNet: query and key each
    two 1x1 conv+BN+act, value and output projections one each, scaled
    dot-product softmax over keys.

    PaddleSeg's ``AttentionBlock`` reshapes the context to ``out_channels``,
    which breaks its own ``with_out`` option when the value width differs; so
    the base is built without it at ``transform_channels`` and the output
    projection is attached here.  The attention is :func:`attend`.

    Args:
        key_in_channels (int): Channels of the key/value input.
        query_in_channels (int): Channels of the query input.
        transform_channels (int): Query/key/value channels.
        out_channels (int): Output channels.
        act (str): Activation after each BN.
    """

    def __init__(self, key_in_channels, query_in_channels, transform_channels,
                 out_channels, act):
        self.act = act  # read by build_project during the base __init__
        super().__init__(
            key_in_channels=key_in_channels,
            query_in_channels=query_in_channels,
            channels=transform_channels,
            out_channels=transform_channels,
            share_key_query=False,
            query_downsample=None,
            key_downsample=None,
            key_query_num_convs=2,
            value_out_num_convs=1,
            key_query_norm=True,
            value_out_norm=True,
            matmul_norm=True,
            with_out=False)
        self.out_project = conv_bn_act(transform_channels, out_channels, 1, act)

    def forward(self, query_feats, key_feats):
        context = attend(
            self.query_project(query_feats), self.key_project(key_feats),
            self.value_project(key_feats), self.channels**-0.5)
        return self.out_project(context)

    def build_project(self, in_channels, channels, num_convs, use_conv_module):
        # Every projection here is conv+BN+act (use_conv_module is True).
        convs = [conv_bn_act(in_channels, channels, 1, self.act)]
        convs += [
            conv_bn_act(channels, channels, 1, self.act)
            for _ in range(num_convs - 1)
        ]
        return nn.Sequential(*convs) if num_convs > 1 else convs[0]
