"""CtxGCNet in mmsegmentation's form against mmseg's own GCHead + FCNHead.

The head is compared on fixed feature maps (a stub backbone feeds both), so
this test does not depend on the backbone; the whole-model parity through the
checkpoint converter is in test_mmseg_parity.py.
"""
import re

import numpy as np
import paddle
import pytest

import paddleseg_ctx  # noqa: F401
from paddleseg_ctx.models.gcnet import CtxGCNet
from model_checks import assert_logits_close
from reference_imports import import_mmseg, import_torch

NUM_CLASSES = 5
C3, C4, GC = 64, 128, 32  # small stand-ins for 1024, 2048, 512

# mmseg key -> our key, written from docs/reference/models.md#gcnet-mmseg-form (independent of the
# converter's key map).
KEY_MAP = [
    (r'decode_head\.convs\.0\.conv\.', 'head.conv_bn_relu1._conv.'),
    (r'decode_head\.convs\.0\.bn\.', 'head.conv_bn_relu1._batch_norm.'),
    (r'decode_head\.convs\.1\.conv\.', 'head.conv_bn_relu2._conv.'),
    (r'decode_head\.convs\.1\.bn\.', 'head.conv_bn_relu2._batch_norm.'),
    (r'decode_head\.conv_cat\.conv\.', 'head.conv_bn_relu3._conv.'),
    (r'decode_head\.conv_cat\.bn\.', 'head.conv_bn_relu3._batch_norm.'),
    (r'decode_head\.gc_block\.', 'head.gc_block.'),
    (r'decode_head\.conv_seg\.', 'head.conv.'),
    (r'auxiliary_head\.convs\.0\.conv\.', 'head.auxlayer.conv_bn_relu._conv.'),
    (r'auxiliary_head\.convs\.0\.bn\.',
     'head.auxlayer.conv_bn_relu._batch_norm.'),
    (r'auxiliary_head\.conv_seg\.', 'head.auxlayer.conv.'),
]


class StubBackbone(paddle.nn.Layer):
    """Returns the feature maps it was given (4 stages, like a ResNet)."""

    feat_channels = [16, 32, C3, C4]

    def __init__(self):
        super().__init__()
        self.feats = None

    def forward(self, x):
        return self.feats


def mmseg_heads(align_corners, random_weights=True):
    """mmseg's decode and aux heads; random weights with non-trivial BN
    statistics, or mmseg's own initialisation."""
    import_mmseg()
    torch = import_torch()
    from mmseg.models.decode_heads import FCNHead, GCHead
    torch.manual_seed(0)
    norm = dict(type='BN', requires_grad=True)
    decode = GCHead(
        in_channels=C4, in_index=3, channels=GC, ratio=1 / 4.,
        pooling_type='att', fusion_types=('channel_add', ), dropout_ratio=0.1,
        num_classes=NUM_CLASSES, norm_cfg=norm, align_corners=align_corners)
    aux = FCNHead(
        in_channels=C3, in_index=2, channels=C3 // 4, num_convs=1,
        concat_input=False, dropout_ratio=0.1, num_classes=NUM_CLASSES,
        norm_cfg=norm, align_corners=align_corners)
    heads = torch.nn.ModuleDict(dict(decode_head=decode, auxiliary_head=aux))
    if not random_weights:
        decode.init_weights()
        aux.init_weights()
        return heads.eval()
    rng = np.random.RandomState(0)
    with torch.no_grad():
        for name, value in heads.state_dict().items():
            if name.endswith('num_batches_tracked'):
                continue
            if name.endswith('running_var'):
                arr = rng.uniform(0.5, 1.5, value.shape)
            elif value.dim() <= 1 or name.endswith('gc_block.channel_add_conv'
                                                   '.1.weight'):
                arr = rng.normal(0, 0.3, value.shape) + (
                    1.0 if name.endswith('weight') and 'bn' in name else 0.0)
            else:
                fan_in = int(np.prod(value.shape[1:]))
                arr = rng.normal(0, 1.5 / np.sqrt(fan_in), value.shape)
            value.copy_(torch.from_numpy(arr.astype('float32')))
    return heads.eval()


def to_paddle_state(torch_state):
    state = {}
    for name, value in torch_state.items():
        if name.endswith('num_batches_tracked'):
            continue
        target = name
        for pattern, replacement in KEY_MAP:
            target = re.sub('^' + pattern, replacement, target)
        target = re.sub(r'running_mean$', '_mean', target)
        target = re.sub(r'running_var$', '_variance', target)
        arr = value.numpy()
        if 'channel_add_conv.1.' in target:
            arr = arr.reshape(-1)  # LayerNorm [C,1,1] -> [C]
        state[target] = arr
    return state


def ours_mmseg_form(align_corners):
    return CtxGCNet(
        NUM_CLASSES, StubBackbone(), gc_channels=GC, head_conv_bias=False,
        channel_dropout=True, head_init='mmseg', align_corners=align_corners)


@pytest.mark.parametrize('align_corners', [False, True])
@pytest.mark.parametrize('size', [(1, 13, 17), (2, 8, 8)])
def test_head_matches_mmseg(align_corners, size):
    torch = import_torch()
    heads = mmseg_heads(align_corners)
    ours = ours_mmseg_form(align_corners)
    state = to_paddle_state(heads.state_dict())
    assert sorted(state) == sorted(ours.state_dict())
    ours.set_state_dict(state)
    ours.eval()

    batch, h, w = size
    rng = np.random.RandomState(1)
    feats = [
        rng.normal(0, 1, (batch, c, h, w)).astype('float32')
        for c in StubBackbone.feat_channels
    ]
    with torch.no_grad():
        t_feats = [torch.from_numpy(f) for f in feats]
        expected_main = heads['decode_head'](t_feats)
        expected_aux = heads['auxiliary_head'](t_feats)
        # mmseg's whole inference: logits resized to the network input size.
        image_size = (8 * h - 3, 8 * w + 1)
        expected_resized = torch.nn.functional.interpolate(
            expected_main, image_size, mode='bilinear',
            align_corners=align_corners)

    ours.backbone.feats = [paddle.to_tensor(f) for f in feats]
    with paddle.no_grad():
        main, aux = ours.raw_logits(None)
        resized = ours(paddle.zeros([batch, 3] + list(image_size)))[0]
    assert_logits_close(main.numpy(), expected_main.numpy(), rtol=1e-4,
                        what='main logits')
    assert_logits_close(aux.numpy(), expected_aux.numpy(), rtol=1e-4,
                        what='aux logits')
    assert_logits_close(resized.numpy(), expected_resized.numpy(), rtol=1e-4,
                        what='resized main logits')


def test_mmseg_form_has_no_conv_bias_and_channel_dropout():
    ours = ours_mmseg_form(False)
    keys = ours.state_dict()
    assert not [k for k in keys if re.search(r'conv_bn_relu\d?\._conv\.bias', k)]
    assert isinstance(ours.head.dropout, paddle.nn.Dropout2D)
    assert isinstance(ours.head.auxlayer.dropout, paddle.nn.Dropout2D)

    # Dropout2D zeroes whole channels: every (n, c) plane is all-zero or not.
    ours.train()
    x = paddle.ones([2, 64, 5, 5])
    planes = ours.head.dropout(x).numpy().reshape(2 * 64, -1)
    assert set(np.unique((planes == 0).mean(axis=1))) <= {0.0, 1.0}


def test_mmseg_init_matches_mmseg_statistics():
    """mmseg's head initialisation: zero last GC conv (the block starts as
    the identity), classifiers N(0, 0.01), ConvModules Kaiming fan_out."""
    heads = mmseg_heads(False, random_weights=False)
    reference = {k: v.numpy() for k, v in heads.state_dict().items()}
    paddle.seed(0)
    ours = {k: v.numpy() for k, v in ours_mmseg_form(False).state_dict().items()}

    last = ours['head.gc_block.channel_add_conv.3.weight']
    assert not last.any()
    assert not ours['head.gc_block.channel_add_conv.3.bias'].any()
    assert not reference['decode_head.gc_block.channel_add_conv.3.weight'].any()
    for ours_key, ref_key in [
        ('head.conv.weight', 'decode_head.conv_seg.weight'),
        ('head.conv_bn_relu1._conv.weight', 'decode_head.convs.0.conv.weight'),
        ('head.conv_bn_relu3._conv.weight', 'decode_head.conv_cat.conv.weight'),
        ('head.gc_block.conv_mask.weight', 'decode_head.gc_block.conv_mask.weight'),
    ]:
        # Same distribution: sample mean and std within 4 standard errors.
        n, ref_std = ours[ours_key].size, reference[ref_key].std()
        assert abs(ours[ours_key].mean()) < 4 * ref_std / np.sqrt(n), ours_key
        assert abs(ours[ours_key].std() - ref_std) < (
            4 * ref_std / np.sqrt(2 * n)), ours_key
