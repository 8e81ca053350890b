"""CtxISNet: the vectorised semantic-level context against a per-image,
per-class loop; the head against sssegmentation's ISNet (the authors' code);
export and training."""
import re

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest
from paddleseg.cvlibs import manager
from paddleseg.models.backbones import ResNet18_vd

import paddleseg_ctx  # noqa: F401  (registers CtxISNet)
from paddleseg_ctx.deploy import export_onnx, save_inference_model
from paddleseg_ctx.models.isnet import CtxISNet, semantic_centres
from paddleseg_ctx.weights import check_state_dict
from model_checks import (PARITY_INPUTS, assert_export_matches,
                          assert_gradients_reach, assert_logits_close,
                          randomize, run_eval, train_step)
from reference_imports import import_ssseg

NUM_CLASSES = 5

# The two head forms of the published configs.
PLAIN = dict(shortcut_channels=0, act='relu')  # ADE20K, Cityscapes, COCO-Stuff
LIP = dict(shortcut_channels=48, act='leakyrelu')


def test_registered():
    assert manager.MODELS['CtxISNet'] is CtxISNet


# --- semantic-level context --------------------------------------------------


def loop_centres(feats, logits):
    """sssegmentation's semantic-level centres written directly: per image,
    per class present, boolean masks.  Labels come from numpy's argmax
    (documented to return the first maximum)."""
    n, c, h, w = feats.shape
    k = logits.shape[1]
    labels = np.argmax(logits.numpy().reshape(n, k, h * w), axis=1)
    images = []
    for b in range(n):
        feats_b = feats[b].reshape([c, h * w]).transpose([1, 0])  # [HW, C]
        logits_b = logits[b].reshape([k, h * w]).transpose([1, 0])  # [HW, K]
        out = paddle.zeros([h * w, c], feats.dtype)
        for cls in range(k):
            if not (labels[b] == cls).any():
                continue
            mask = paddle.to_tensor(labels[b] == cls)
            weight = F.softmax(logits_b[:, cls][mask], axis=0)
            centre = (feats_b[mask] * weight.unsqueeze(-1)).sum(0)
            out = paddle.where(mask.unsqueeze(-1), centre.expand_as(out), out)
        images.append(out.transpose([1, 0]).reshape([c, h, w]))
    return paddle.stack(images)


def slc_inputs(kind, seed=0):
    """(feats [2,8,7,9], logits [2,6,7,9]) as numpy arrays."""
    rng = np.random.RandomState(seed)
    feats = rng.normal(size=(2, 8, 7, 9)).astype('float32')
    if kind == 'ties':
        # Few distinct values: most pixels have tied maxima.
        logits = rng.randint(0, 3, size=(2, 6, 7, 9)).astype('float32')
    else:
        logits = (3 * rng.normal(size=(2, 6, 7, 9))).astype('float32')
    # Absent classes: 4 in image 0, 5 in both images (below every other).
    logits[0, 4] -= 100
    logits[:, 5] = -50
    # Image 1: one class holds a single pixel.
    logits[1, 3] -= 100
    logits[1, 3, 2, 4] = 100
    return feats, logits


def test_argmax_ties_go_to_the_lowest_index():
    # Both the loop (numpy) and sssegmentation (torch) take the first max.
    rng = np.random.RandomState(0)
    logits = rng.randint(0, 3, size=(2, 150, 4099)).astype('float32')
    expected = np.argmax(logits, axis=1)
    np.testing.assert_array_equal(
        paddle.argmax(paddle.to_tensor(logits), axis=1).numpy(), expected)


@pytest.mark.parametrize('kind', ['ties', 'random'])
def test_semantic_centres_match_the_loop(kind):
    feats_np, logits_np = slc_inputs(kind)
    labels = np.argmax(logits_np.reshape(2, 6, -1), axis=1)
    assert not (labels[0] == 4).any() and not (labels == 5).any()
    assert (labels[1] == 3).sum() == 1
    if kind == 'ties':
        top2 = np.sort(logits_np, axis=1)[:, -2:]
        assert (top2[:, 0] == top2[:, 1]).mean() > 0.3

    cotangent = paddle.to_tensor(
        np.random.RandomState(1).normal(size=feats_np.shape).astype('float32'))
    results = []
    for fn in (semantic_centres, loop_centres):
        feats = paddle.to_tensor(feats_np, stop_gradient=False)
        logits = paddle.to_tensor(logits_np, stop_gradient=False)
        out = fn(feats, logits)
        (out * cotangent).sum().backward()
        results.append((out.numpy(), feats.grad.numpy(), logits.grad.numpy()))

    for what, ours, ref in zip(('centres', 'd/dfeats', 'd/dlogits'),
                               *results):
        assert np.isfinite(ours).all(), what
        np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-6,
                                   err_msg=what)


# --- image-level context ------------------------------------------------------


@pytest.mark.parametrize('align_corners', [False, True])
def test_global_context_broadcast_equals_bilinear_resize(align_corners):
    # sssegmentation resizes the pooled 1x1 map; ours expands it.  Bilinear
    # weights sum to 1 up to rounding, hence a 1-ulp tolerance.
    x = paddle.to_tensor(
        np.random.RandomState(0).normal(size=(2, 4, 7, 9)).astype('float32'))
    pooled = x.mean(axis=[2, 3], keepdim=True)
    resized = F.interpolate(
        pooled, [7, 9], mode='bilinear', align_corners=align_corners)
    np.testing.assert_allclose(resized.numpy(), pooled.expand_as(x).numpy(),
                               rtol=2e-7, atol=0)


# --- parity with sssegmentation ----------------------------------------------

# sssegmentation ISNet keys -> ours.  Applied in order, first match wins; the
# stage-2 decoder's indices differ between the two forms, hence two tails.
SSSEG_RULES = [
    (r'^backbone_net\.', 'backbone.'),
    (r'^bottleneck\.0\.', 'head.bottleneck._conv.'),
    (r'^bottleneck\.1\.', 'head.bottleneck._batch_norm.'),
    (r'^(ilc_net|slc_net)\.bottleneck\.0\.', r'head.\1.bottleneck._conv.'),
    (r'^(ilc_net|slc_net)\.bottleneck\.1\.',
     r'head.\1.bottleneck._batch_norm.'),
    (r'^(ilc_net|slc_net)\.correlate_net\.(key|query)_project\.([01])\.0\.',
     r'head.\1.correlate_net.\2_project.\3._conv.'),
    (r'^(ilc_net|slc_net)\.correlate_net\.(key|query)_project\.([01])\.1\.',
     r'head.\1.correlate_net.\2_project.\3._batch_norm.'),
    (r'^(ilc_net|slc_net)\.correlate_net\.(value|out)_project\.0\.',
     r'head.\1.correlate_net.\2_project._conv.'),
    (r'^(ilc_net|slc_net)\.correlate_net\.(value|out)_project\.1\.',
     r'head.\1.correlate_net.\2_project._batch_norm.'),
    (r'^decoder_stage1\.0\.', 'head.decoder_stage1.0._conv.'),
    (r'^decoder_stage1\.1\.', 'head.decoder_stage1.0._batch_norm.'),
    (r'^decoder_stage1\.4\.', 'head.decoder_stage1.2.'),
    (r'^auxiliary_decoder\.0\.', 'head.aux.0._conv.'),
    (r'^auxiliary_decoder\.1\.', 'head.aux.0._batch_norm.'),
    (r'^auxiliary_decoder\.4\.', 'head.aux.2.'),
]
SSSEG_RULES_PLAIN = [(r'^decoder_stage2\.1\.', 'head.decoder_stage2.1.')]
SSSEG_RULES_SHORTCUT = [
    (r'^shortcut\.0\.', 'head.shortcut._conv.'),
    (r'^shortcut\.1\.', 'head.shortcut._batch_norm.'),
    (r'^decoder_stage2\.0\.', 'head.decoder_stage2.0._conv.'),
    (r'^decoder_stage2\.1\.', 'head.decoder_stage2.0._batch_norm.'),
    (r'^decoder_stage2\.4\.', 'head.decoder_stage2.2.'),
]
BN_SUFFIXES = [(r'\.running_mean$', '._mean'), (r'\.running_var$',
                                                   '._variance')]


def ssseg_to_paddle(torch_state, shortcut):
    """Rename a sssegmentation ISNet state dict to ours (numpy values)."""
    rules = SSSEG_RULES + (SSSEG_RULES_SHORTCUT
                           if shortcut else SSSEG_RULES_PLAIN)
    out = {}
    for key, value in torch_state.items():
        if key.endswith('num_batches_tracked'):
            continue
        new = next((re.sub(p, r, key) for p, r in rules if re.match(p, key)),
                   None)
        assert new is not None, 'no rule for ' + key
        for pattern, repl in BN_SUFFIXES:
            new = re.sub(pattern, repl, new)
        out[new] = value.detach().numpy()
    return out


def backbone_features(batch=2, seed=0):
    """C1-C4 as ResNet-50 OS8 gives them for a 97x129 input."""
    rng = np.random.RandomState(seed)
    shapes = [(256, 25, 33), (512, 13, 17), (1024, 13, 17), (2048, 13, 17)]
    return [
        rng.uniform(0, 1, (batch, ) + s).astype('float32') for s in shapes
    ]


class FixedFeatures(paddle.nn.Layer):
    """Paddle stand-in backbone returning fixed feature maps."""

    def __init__(self, arrays):
        super().__init__()
        self.arrays = arrays
        self.feat_channels = [a.shape[1] for a in arrays]

    def forward(self, x):
        return [paddle.to_tensor(a) for a in self.arrays]


def ssseg_isnet(num_classes, shortcut, act_cfg, arrays):
    """sssegmentation's ISNet (head settings of its ISNet base config, BN
    instead of SyncBN) on a stand-in backbone returning ``arrays``, with
    random weights and BN statistics."""
    import_ssseg()
    import torch
    from ssseg.modules.models.segmentors.isnet import ISNet

    class TorchFixedFeatures(torch.nn.Module):
        def forward(self, x):
            return [torch.from_numpy(a.copy()) for a in arrays]

    cfg = {
        'num_classes': num_classes,
        'align_corners': False,
        'norm_cfg': {'type': 'BatchNorm2d'},
        'act_cfg': act_cfg,
        'head': {
            'in_channels': 2048, 'feats_channels': 512,
            'transform_channels': 256, 'concat_input': True, 'dropout': 0.1,
            'shortcut': {'is_on': shortcut, 'in_channels': 256,
                         'feats_channels': 48},
        },
        'auxiliary': {'in_channels': 1024, 'out_channels': 512,
                      'dropout': 0.1},
    }
    model = ISNet(cfg, mode='TEST')  # no 'backbone' key: none is built
    cfg['backbone'] = {'selected_indices': (0, 1, 2, 3)}  # read in forward
    model.backbone_net = TorchFixedFeatures()

    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith('num_batches_tracked'):
                continue
            if name.endswith('running_var'):
                t.uniform_(0.5, 1.5, generator=gen)
            elif name.endswith('running_mean'):
                t.normal_(0, 0.1, generator=gen)
            elif t.dim() == 1:
                t.normal_(1.0 if name.endswith('weight') else 0.0, 0.1,
                          generator=gen)
            else:
                t.normal_(0, t[0].numel()**-0.5, generator=gen)
    return model.eval()


@pytest.mark.parametrize('form, act_cfg', [
    (PLAIN, {'type': 'ReLU', 'inplace': True}),
    (LIP, {'type': 'LeakyReLU', 'negative_slope': 0.01, 'inplace': True}),
])
def test_head_matches_sssegmentation(form, act_cfg):
    import_ssseg()
    import torch
    from ssseg.modules.utils import SSSegInputStructure

    num_classes = 7
    arrays = backbone_features()
    ref = ssseg_isnet(num_classes, form['shortcut_channels'] > 0, act_cfg,
                      arrays)
    with torch.no_grad():
        # Class 6 never wins the stage-1 argmax: an absent class.
        ref.decoder_stage1[4].bias[6] -= 1e3
    state = ssseg_to_paddle(ref.state_dict(), form['shortcut_channels'] > 0)

    ours = CtxISNet(num_classes, FixedFeatures(arrays), **form)
    check_state_dict(ours, state, source='sssegmentation ISNet')
    ours.set_state_dict(state)
    ours.eval()

    # Also catch the stage-1 logits and the class centres (the key/value
    # input of the semantic-level attention) on both sides.
    seen = {}
    ref.decoder_stage1.register_forward_hook(
        lambda module, inputs, output: seen.update(stage1=output.numpy()))
    ref.slc_net.correlate_net.register_forward_pre_hook(
        lambda module, inputs: seen.update(ref_centres=inputs[1].numpy()))
    ours.head.slc_net.correlate_net.register_forward_pre_hook(
        lambda layer, inputs: seen.update(centres=inputs[1].numpy()))
    image = torch.zeros(2, 3, 97, 129)
    with torch.no_grad():
        expected = ref(SSSegInputStructure(images=image,
                                           mode='TEST')).seg_logits.numpy()
    with paddle.no_grad():
        actual = ours.raw_logits(paddle.zeros([2, 3, 97, 129]))

    # The stage-1 argmax picks each pixel's class centre: keep it away from
    # ties, so float noise between frameworks cannot flip it.
    top2 = np.sort(seen['stage1'], axis=1)[:, -2:]
    assert (top2[:, 1] - top2[:, 0]).min() > 1e-4 * np.abs(top2).max()
    assert len(np.unique(seen['stage1'].argmax(1))) > 3  # several classes
    assert_logits_close(seen['centres'], seen['ref_centres'], rtol=1e-4,
                        what='class centres')

    assert len(actual) == 1
    expected_hw = (25, 33) if form['shortcut_channels'] else (13, 17)
    assert expected.shape == (2, num_classes) + expected_hw
    assert_logits_close(actual[0].numpy(), expected, rtol=1e-3,
                        what='stage-2 logits')


# --- export and training ------------------------------------------------------


@pytest.mark.parametrize('form', [PLAIN, LIP], ids=['plain', 'lip'])
def test_export_matches_dygraph(tmp_path, form):
    model = CtxISNet(NUM_CLASSES, ResNet18_vd(output_stride=8), **form)
    randomize(model)
    assert_export_matches(model, tmp_path, PARITY_INPUTS)


@pytest.mark.parametrize('form', [PLAIN, LIP], ids=['plain', 'lip'])
def test_onnx_matches_dygraph(tmp_path, form):
    """Also checks our fix of paddle2onnx 2.1.0's LeakyReLU slope (LIP)."""
    pytest.importorskip('paddle2onnx')
    ort = pytest.importorskip('onnxruntime')
    model = CtxISNet(NUM_CLASSES, ResNet18_vd(output_stride=8), **form)
    randomize(model)
    program, params = save_inference_model(
        model, str(tmp_path), input_shape=None, output_op='none')
    onnx_file = export_onnx(program, params, str(tmp_path / 'model.onnx'))
    session = ort.InferenceSession(
        onnx_file, providers=['CPUExecutionProvider'])
    for shape in PARITY_INPUTS:
        x, outs = run_eval(model, shape)
        actual = session.run(None, {session.get_inputs()[0].name: x})[0]
        assert_logits_close(actual, outs[0], rtol=1e-4,
                            what='ONNX logits {}'.format(shape))


@pytest.mark.parametrize('form, aux', [(PLAIN, True), (LIP, False)],
                         ids=['plain', 'lip-noaux'])
def test_train_step_reaches_every_head_parameter(form, aux):
    model = CtxISNet(NUM_CLASSES, ResNet18_vd(output_stride=8),
                     enable_auxiliary_loss=aux, **form)
    logits, loss = train_step(model, NUM_CLASSES, shape=(2, 3, 61, 75))
    # [stage2, stage1, aux]: loss `types` of length 3, coef [1, 0.4, 0.4].
    assert len(logits) == (3 if aux else 2)
    assert all(logit.shape == [2, NUM_CLASSES, 61, 75] for logit in logits)
    assert np.isfinite(loss)
    assert_gradients_reach(model.head)

    model.eval()
    with paddle.no_grad():
        assert len(model(paddle.zeros([1, 3, 61, 75]))) == 1
