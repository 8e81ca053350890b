"""Head layers shared by the model families: conv+BN+act, the FCN head
(auxiliary heads and classifiers), the attention block, mmseg's
initialisation of a head, and the float32 islands of mixed precision.

Sublayer names are checkpoint key names, so each builder takes the layout its
callers' published weights use and nothing here renames a key.
"""
import math

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle.amp.auto_cast import amp_global_state
from paddleseg.models import layers

__all__ = ['AUX_LAYER', 'AttentionBlock', 'attend', 'cast', 'conv_bn_act',
           'dropout_layer', 'fcn_head', 'fill', 'float32_island',
           'init_mmseg_head', 'kaiming_normal', 'widen']

# Sublayer names of PaddleSeg's ``AuxLayer`` (keys ``conv_bn_relu.*``,
# ``conv.*``), for :func:`fcn_head`.
AUX_LAYER = ('conv_bn_relu', 'dropout', 'conv')


def conv_bn_act(in_channels, out_channels, kernel_size, act='relu',
                bias=False):
    """Conv ('same' padding) + BN + activation (keys ``_conv.*``,
    ``_batch_norm.*``, as ``layers.ConvBNReLU``'s)."""
    return layers.ConvBNAct(
        in_channels,
        out_channels,
        kernel_size,
        act_type=act,
        bias_attr=None if bias else False)


def dropout_layer(p, channel_wise):
    """Dropout2D (whole channels, mmseg/sssegmentation) or element-wise
    Dropout (PaddleSeg's ``AuxLayer`` and heads)."""
    return nn.Dropout2D(p) if channel_wise else nn.Dropout(p)


def fcn_head(in_channels, num_classes, *, channels=None, kernel_size=3,
             act='relu', conv_bias=False, dropout=0.1, channel_dropout=True,
             names=None):
    """[conv+BN+act ->] dropout -> 1x1 classifier, as a Sequential: the
    auxiliary FCN head of every family and the classifiers that end a head.

    Args:
        in_channels (int): Input channels.
        num_classes (int): Output channels.
        channels (int|None): Channels of the conv+BN+act; None: no conv,
            only dropout and classifier.
        kernel_size (int): Kernel size of that conv.
        act (str): Its activation ('relu', 'leakyrelu').
        conv_bias (bool): Whether that conv has a bias.
        dropout (float): Dropout probability.
        channel_dropout (bool): See :func:`dropout_layer`.
        names (sequence[str]|None): Sublayer names (key prefixes), one per
            layer, e.g. :data:`AUX_LAYER`; None: numbered like any
            Sequential.
    """
    head = []
    if channels:
        head.append(conv_bn_act(in_channels, channels, kernel_size, act,
                                conv_bias))
        in_channels = channels
    head += [dropout_layer(dropout, channel_dropout),
             nn.Conv2D(in_channels, num_classes, 1)]
    if names is None:
        return nn.Sequential(*head)
    return nn.Sequential(*zip(names, head))


class AttentionBlock(nn.Layer):
    """Non-local attention from a query map to a key map: query and key each
    go through two 1x1 conv+BN+act, the value through one 1x1 projection;
    every query position takes the softmax(q.k / sqrt(channels))-weighted sum
    of the values (:func:`attend`), and a 1x1 conv+BN+act projects it out.

    The sublayers carry the names of PaddleSeg's ``AttentionBlock``
    (``key_project``, ``query_project``, ``value_project``), created in its
    order, plus the output projection named ``out_name``.

    Args:
        query_in_channels (int): Channels of the query input.
        key_in_channels (int): Channels of the key/value input.
        channels (int): Query/key channels.
        value_channels (int): Value channels.
        out_channels (int): Output channels.
        act (str): Activation after each BN.
        value_norm (bool): Value projection conv+BN+act (sssegmentation's
            ISNet); False: a plain conv with bias (PaddleSeg's ISANet).
        out_name (str): Name (key prefix) of the output projection:
            'out_project' (sssegmentation) or 'output_project' (PaddleSeg's
            ISANet).
    """

    def __init__(self, query_in_channels, key_in_channels, channels,
                 value_channels, out_channels, *, act='relu', value_norm=True,
                 out_name='out_project'):
        super().__init__()
        self.scale = channels**-0.5
        self.key_project = nn.Sequential(
            conv_bn_act(key_in_channels, channels, 1, act),
            conv_bn_act(channels, channels, 1, act))
        self.query_project = nn.Sequential(
            conv_bn_act(query_in_channels, channels, 1, act),
            conv_bn_act(channels, channels, 1, act))
        if value_norm:
            self.value_project = conv_bn_act(key_in_channels, value_channels,
                                             1, act)
        else:
            self.value_project = nn.Conv2D(key_in_channels, value_channels, 1)
        self.out_name = out_name
        self.add_sublayer(out_name,
                          conv_bn_act(value_channels, out_channels, 1, act))

    def forward(self, query_feats, key_feats):
        context = attend(
            self.query_project(query_feats), self.key_project(key_feats),
            self.value_project(key_feats), self.scale)
        return getattr(self, self.out_name)(context)


def attend(query, key, value, scale):
    """Scaled dot-product attention between feature maps: each query position
    takes the softmax(scale * q.k)-weighted sum of the values over the key
    positions.

    Same result as PaddleSeg's ``AttentionBlock`` without its three
    transposes: the matmuls read [N, C, HW] maps through their transpose
    flags, and the scale goes on the query (C x HW) rather than the
    similarity map (HW x HW).  The logits and their softmax are a float32
    island (:func:`float32_island`); the weighted sum of the values runs in
    the values' precision.

    Args:
        query (Tensor): [N, Ck, Hq, Wq].
        key (Tensor): [N, Ck, Hk, Wk].
        value (Tensor): [N, Cv, Hk, Wk].
        scale (float): Factor of the dot products.

    Returns:
        Tensor: [N, Cv, Hq, Wq].
    """
    size = paddle.shape(query)
    with float32_island():
        sim = paddle.matmul(  # [N, HWq, HWk]
            (widen(query) * scale).flatten(2),
            widen(key).flatten(2),
            transpose_x=True)
        attention = F.softmax(sim, axis=-1)
    context = paddle.matmul(  # [N, Cv, HWq]
        value.flatten(2), cast(attention, value.dtype), transpose_y=True)
    return context.reshape([0, 0, size[2], size[3]])


class float32_island:  # noqa: N801  (used like a function: ``with``)
    """Automatic mixed precision off inside the block, so the ops in it run
    in the dtype of their inputs: give them float32 inputs (:func:`cast`) for
    the reductions half precision gets wrong (softmax normalisers, segment
    and spatial sums, LayerNorm statistics, attention logits; see
    docs/reference/models.md, "Mixed precision").

    Holds under AMP O1 and O2, float16 and bfloat16, in dygraph and in the
    to_static program (the block is traced like any Python code).  In a
    float32 model without AMP nothing changes: no op is added.
    """

    def __enter__(self):
        # auto_cast(enable=False) leaves 'float32' in Paddle's global AMP
        # state (read when PIR builds a backward with master grads): keep
        # the enclosing dtype to put back.
        self._amp_dtype = amp_global_state().amp_dtype
        self._off = paddle.amp.auto_cast(enable=False)
        self._off.__enter__()

    def __exit__(self, *exc_info):
        self._off.__exit__(*exc_info)
        amp_global_state().amp_dtype = self._amp_dtype


def widen(x):
    """``x`` in float32 where it is in half precision (float16, bfloat16),
    else ``x`` itself (float32 and float64 stay as they are): the input of a
    float32 island."""
    if x.dtype in (paddle.float16, paddle.bfloat16):
        return x.astype(paddle.float32)
    return x


def cast(x, dtype):
    """``x`` in ``dtype`` (a paddle dtype, e.g. ``paddle.float32``); ``x``
    itself, no cast op, when it already is."""
    return x if x.dtype == dtype else x.astype(dtype)


def init_mmseg_head(conv_bns, classifiers):
    """mmseg's initialisation of a head: conv+BN+act blocks as mmcv's
    ConvModule (conv Kaiming-normal, fan_out, ReLU gain; BN weight 1, bias
    0), classifiers N(0, 0.01) with zero bias."""
    for conv_bn in conv_bns:
        kaiming_normal(conv_bn._conv, fan_mode='out')
        fill(conv_bn._batch_norm.weight, 1.0)
        fill(conv_bn._batch_norm.bias, 0.0)
    for conv in classifiers:
        conv.weight.set_value(paddle.normal(0, 0.01, conv.weight.shape))
        fill(conv.bias, 0.0)


def kaiming_normal(conv, fan_mode):
    """N(0, sqrt(2 / fan)) weights (ReLU gain) and zero bias; ``fan_mode``
    'in' or 'out'."""
    out_channels, in_channels, k_h, k_w = conv.weight.shape
    fan = (out_channels if fan_mode == 'out' else in_channels) * k_h * k_w
    conv.weight.set_value(
        paddle.normal(0, math.sqrt(2.0 / fan), conv.weight.shape))
    fill(conv.bias, 0.0)


def fill(param, value):
    """Set ``param`` (None: no-op) to ``value`` everywhere."""
    if param is not None:
        param.set_value(paddle.full(param.shape, value, param.dtype))
