"""CtxGCNet against PaddleSeg 2.8's GCNet (the published-weights layout)."""
import numpy as np
import paddle
import paddle.nn.functional as F
import pytest
from paddleseg.cvlibs import manager
from paddleseg.models import GCNet
from paddleseg.models.backbones import ResNet18_vd, ResNet50_vd

import paddleseg_ctx  # noqa: F401  (registers CtxGCNet)
from paddleseg_ctx.models.gcnet import CtxGCNet
from paddleseg_ctx.weights import WeightsError, check_state_dict
from model_checks import (PARITY_INPUTS, assert_export_matches,
                          assert_logits_close, randomize, run_eval)

NUM_CLASSES = 5


def reference_and_ours(backbone, align_corners=False):
    """PaddleSeg's GCNet with random weights, and ours holding the same."""
    ref = GCNet(NUM_CLASSES, backbone(output_stride=8),
                align_corners=align_corners)
    state = randomize(ref)
    ours = CtxGCNet(NUM_CLASSES, backbone(output_stride=8),
                    align_corners=align_corners)
    check_state_dict(ours, state, source='PaddleSeg GCNet')
    ours.set_state_dict(state)
    return ref, ours


def test_registered_without_replacing_paddleseg_gcnet():
    assert manager.MODELS['CtxGCNet'] is CtxGCNet
    assert manager.MODELS['GCNet'] is GCNet


@pytest.mark.parametrize('backbone, align_corners', [
    (ResNet50_vd, False),  # the published Cityscapes/VOC configs
    (ResNet18_vd, True),
])
def test_matches_paddleseg_gcnet(backbone, align_corners):
    ref, ours = reference_and_ours(backbone, align_corners)
    for shape in PARITY_INPUTS:
        _, expected = run_eval(ref, shape)
        _, actual = run_eval(ours, shape)
        assert len(actual) == len(expected) == 2
        for name, a, e in zip(('main', 'aux'), actual, expected):
            assert_logits_close(a, e, what='{} logits {}'.format(name, shape))


def test_strict_load_of_paddleseg_weights(tmp_path):
    ref = GCNet(NUM_CLASSES, ResNet18_vd(output_stride=8))
    randomize(ref)
    path = str(tmp_path / 'model.pdparams')
    paddle.save(ref.state_dict(), path)

    ours = CtxGCNet(NUM_CLASSES, ResNet18_vd(output_stride=8), pretrained=path)
    expected = ref.state_dict()
    for key, value in ours.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), expected[key].numpy())

    with pytest.raises(WeightsError, match='head.auxlayer'):
        CtxGCNet(NUM_CLASSES, ResNet18_vd(output_stride=8),
                 enable_auxiliary_loss=False, pretrained=path)


def test_export_matches_dygraph(tmp_path):
    model = CtxGCNet(NUM_CLASSES, ResNet18_vd(output_stride=8))
    randomize(model)
    assert_export_matches(model, tmp_path, PARITY_INPUTS)


@pytest.mark.parametrize('aux', [True, False])
def test_train_step_reaches_every_head_parameter(aux):
    paddle.seed(0)
    model = CtxGCNet(NUM_CLASSES, ResNet18_vd(output_stride=8),
                     enable_auxiliary_loss=aux)
    model.train()
    x = paddle.uniform([2, 3, 64, 64], min=-1, max=1)
    label = paddle.randint(0, NUM_CLASSES, [2, 64, 64])
    logits = model(x)
    assert len(logits) == (2 if aux else 1)
    loss = sum(
        F.cross_entropy(logit, label, axis=1).mean() for logit in logits)
    assert np.isfinite(float(loss))
    loss.backward()
    for name, param in model.head.named_parameters():
        if not param.stop_gradient:
            assert param.grad is not None, name
            assert np.isfinite(param.grad.numpy()).all(), name
