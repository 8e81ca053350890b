"""GINet: Wu et al., "GINet: Graph Interaction Network for Scene Parsing",
ECCV 2020 (arXiv:2009.06160), as laid out by PaddleSeg 2.8's ``GINet``.

State-dict keys and shapes are those of PaddleSeg's ``GINet``, so its published
``.pdparams`` load strictly. Unlike PaddleSeg's, this model exports to Paddle
Inference with a dynamic batch size (see :meth:`GIHead.class_nodes`).
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddleseg.cvlibs import manager
from paddleseg.models import layers

from paddleseg_ctx.models.base import ContextSegModel
from paddleseg_ctx.models.heads import (AUX_LAYER, cast, conv_bn_act,
                                        fcn_head, float32_island, widen)
from paddleseg_ctx.registry import register

__all__ = ['CtxGINet', 'GIHead', 'GlobalReasonUnit']

EMBED_DIM = 300  # width of the class embeddings ``head.inp``
NUM_STATE = 256  # feature width of every graph node
NUM_NODE = 84  # number of visual nodes


@register(manager.MODELS)
class CtxGINet(ContextSegModel):
    """GINet: JPU on C2-C4, graph-interaction head, auxiliary FCN head on C3.

    Args:
        num_classes (int): Number of classes.
        backbone (nn.Layer): Backbone with ``feat_channels``, e.g. ResNet50_vd
            with ``output_stride=8`` (the published weights).
        backbone_indices (sequence[int]): Four backbone outputs C1-C4.
        enable_auxiliary_loss (bool): Build the aux head and return its logits.
        align_corners (bool): ``align_corners`` of the final resize.
        jpu (bool): Apply Joint Pyramid Upsampling to C2-C4 before the head.
        pretrained (str|None): Whole-model weights (path or URL).
        jpu_width (int): Channels of each JPU branch; the head gets 4x this.
    """

    BACKBONE_FEATURES = ('C1', 'C2', 'C3', 'C4')

    def __init__(self, num_classes, backbone, backbone_indices=(0, 1, 2, 3),
                 enable_auxiliary_loss=True, align_corners=True, jpu=True,
                 pretrained=None, jpu_width=512):
        super().__init__(num_classes, backbone,
                         backbone_indices=backbone_indices,
                         enable_auxiliary_loss=enable_auxiliary_loss,
                         align_corners=align_corners, pretrained=pretrained)
        _, c2, c3, c4 = self.in_channels
        self.jpu = layers.JPU([c2, c3, c4], jpu_width) if jpu else None
        self.head = GIHead(4 * jpu_width if jpu else c4, num_classes)
        if enable_auxiliary_loss:
            self.auxlayer = fcn_head(c3, num_classes, channels=c3 // 4,
                                     channel_dropout=False, names=AUX_LAYER)
        self.init_weight()

    def decode(self, feats, extra):
        c3 = feats[2]
        c4 = self.jpu(*feats)[-1] if self.jpu is not None else feats[3]
        feats.clear()  # C1, C2, raw C4 freed before the head, as PaddleSeg
        logits = [self.head(c4)]
        if extra and self.enable_auxiliary_loss:
            logits.append(self.auxlayer(c3))  # raw C3, as in PaddleSeg
        return logits


class GIHead(nn.Layer):
    """3x3 ConvBNReLU -> graph interaction (:class:`GlobalReasonUnit`) with
    class nodes -> element-wise dropout -> 1x1 classifier.

    The paper's class nodes are word embeddings of the class names. PaddleSeg
    replaces them with ``inp``: a frozen (never trained), zero-initialised
    [K, 300] parameter, passed through ``fc1`` and ``fc2`` (Linear +
    BatchNorm1D + ReLU, the K rows forming the BatchNorm batch).
    """

    def __init__(self, in_channels, num_classes):
        super().__init__()
        inter_channels = in_channels // 4
        self.inp = self.create_parameter(
            [num_classes, EMBED_DIM],
            default_initializer=nn.initializer.Constant(0.0))
        self.inp.stop_gradient = True
        self.fc1 = nn.Sequential(
            nn.Linear(EMBED_DIM, 128), nn.BatchNorm1D(128), nn.ReLU())
        self.fc2 = nn.Sequential(
            nn.Linear(128, NUM_STATE), nn.BatchNorm1D(NUM_STATE), nn.ReLU())
        self.conv5 = conv_bn_act(in_channels, inter_channels, 3)
        self.gloru = GlobalReasonUnit(inter_channels, num_classes)
        self.conv6 = fcn_head(inter_channels, num_classes,
                              channel_dropout=False)

    def class_nodes(self):
        """``fc2(fc1(inp))`` as [1, NUM_STATE, K].

        In eval mode ``fc1``/``fc2`` are evaluated as plain arithmetic:
        Paddle Inference's constant folding fails on a ``batch_norm`` op fed
        only by parameters. Computed on every call, so weights loaded at any
        time are used.
        """
        x = self.inp
        for fc in (self.fc1, self.fc2):
            x = fc(x) if self.training else _eval_fc(fc, x)
        return x.T.unsqueeze(0)

    def forward(self, x):
        return self.conv6(self.gloru(self.conv5(x), self.class_nodes()))


def _eval_fc(fc, x):
    """Eval-mode ``Sequential(Linear, BatchNorm1D, ReLU)`` without a
    ``batch_norm`` op: (xW + b - mean) / sqrt(var + eps) * gamma + beta."""
    linear, bn, relu = fc
    scale = bn.weight * paddle.rsqrt(bn._variance + bn._epsilon)
    return relu((linear(x) - bn._mean) * scale + bn.bias)


class GlobalReasonUnit(nn.Layer):
    """Graph interaction on projected features (GloRe, Chen et al., CVPR 2019,
    arXiv:1811.12814, extended with class nodes by GINet).

    Pixels are projected onto ``NUM_NODE`` visual nodes, the visual and class
    graphs are reasoned on and interact (:class:`GraphLayer`), the visual
    nodes are projected back to pixels and added residually.

    The projection onto the nodes, a mean over all pixels whose sum
    overflows float16, is a float32 island (:func:`heads.float32_island`).
    """

    def __init__(self, in_channels, num_classes):
        super().__init__()
        self.conv_theta = nn.Conv2D(in_channels, NUM_NODE, 1)
        self.conv_phi = nn.Conv2D(in_channels, NUM_STATE, 1)
        self.graph = GraphLayer(num_classes)
        self.extend_dim = nn.Conv2D(
            NUM_STATE, in_channels, 1, bias_attr=False)
        self.bn = layers.SyncBatchNorm(in_channels)

    def forward(self, x, class_nodes):
        size = paddle.shape(x)
        proj = self.conv_theta(x).flatten(2)  # [N, NUM_NODE, HW]
        feats = self.conv_phi(x).flatten(2)  # [N, NUM_STATE, HW]
        area = (size[2] * size[3]).astype('float32')
        with float32_island():
            nodes = paddle.matmul(
                widen(feats), widen(proj),
                transpose_y=True) / area
        nodes = self.graph(class_nodes, cast(nodes, feats.dtype))
        y = paddle.matmul(nodes, proj).reshape([0, 0, size[2], size[3]])
        return x + self.bn(self.extend_dim(y))


class GraphLayer(nn.Layer):
    """Reason on each graph (GCN), then pass class-node information to the
    visual nodes by attention (``transfer``).

    Class nodes are [1, NUM_STATE, K] and broadcast over the batch in the
    matmuls, so no shape is built from the batch size. PaddleSeg also
    computes updated class nodes (``transfer.value_conv_vis``,
    ``gamma_word``) for the paper's semantic-context loss, but returns them to
    no loss; they do not affect the logits, so they are kept only as
    parameters for checkpoint compatibility.
    """

    def __init__(self, num_classes):
        super().__init__()
        self.vis_gcn = GCN(NUM_NODE)
        self.word_gcn = GCN(num_classes)
        self.transfer = GraphTransfer()
        zeros = nn.initializer.Constant(0.0)
        self.gamma_vis = self.create_parameter(
            [NUM_NODE], default_initializer=zeros)
        self.gamma_word = self.create_parameter(
            [num_classes], default_initializer=zeros)

    def forward(self, class_nodes, vis_nodes):
        vis_nodes = self.vis_gcn(vis_nodes)
        messages = self.transfer(self.word_gcn(class_nodes), vis_nodes)
        return self.gamma_vis * messages + vis_nodes


class GCN(nn.Layer):
    """Graph convolution: mix nodes (1x1 conv over the node axis, residual,
    ReLU), then mix states (bias-free 1x1 conv)."""

    def __init__(self, num_node):
        super().__init__()
        self.conv1 = nn.Conv1D(num_node, num_node, 1)
        self.relu = nn.ReLU()
        self.conv2 = nn.Conv1D(NUM_STATE, NUM_STATE, 1, bias_attr=False)

    def forward(self, x):  # [N, NUM_STATE, num_node]
        mixed = self.conv1(x.transpose([0, 2, 1])).transpose([0, 2, 1])
        return self.conv2(self.relu(mixed + x))


class GraphTransfer(nn.Layer):
    """Attention between class and visual nodes; returns, for every visual
    node, the attention-weighted sum of the class nodes' values.  The
    logits and softmax are a float32 island (:func:`heads.float32_island`).
    """

    def __init__(self):
        super().__init__()
        self.query_conv = nn.Conv1D(NUM_STATE, NUM_STATE // 2, 1)
        self.key_conv = nn.Conv1D(NUM_STATE, NUM_STATE // 2, 1)
        self.value_conv_vis = nn.Conv1D(NUM_STATE, NUM_STATE, 1)  # unused
        self.value_conv_word = nn.Conv1D(NUM_STATE, NUM_STATE, 1)

    def forward(self, class_nodes, vis_nodes):
        query = self.query_conv(class_nodes)
        key = self.key_conv(vis_nodes)
        with float32_island():
            energy = paddle.matmul(  # [N, K, NUM_NODE]
                widen(query), widen(key),
                transpose_x=True)
            attention = F.softmax(energy, axis=1)  # over the classes
        value = self.value_conv_word(class_nodes)
        return paddle.matmul(value, cast(attention, value.dtype))
