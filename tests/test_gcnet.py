"""CtxGCNet against PaddleSeg 2.8's GCNet (the published-weights layout)."""
import numpy as np
import paddle
import pytest
from paddleseg.cvlibs import manager
from paddleseg.models import GCNet
from paddleseg.models.backbones import ResNet18_vd, ResNet50_vd

import paddleseg_ctx  # noqa: F401  (registers CtxGCNet)
from paddleseg_ctx.models.gcnet import CtxGCNet
from paddleseg_ctx.weights import WeightsError, check_state_dict
from model_checks import (PARITY_INPUTS, assert_eval_parity,
                          assert_export_matches, assert_gradients_reach,
                          randomize, train_step)

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
    assert_eval_parity(*reference_and_ours(backbone, align_corners))


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
    model = CtxGCNet(NUM_CLASSES, ResNet18_vd(output_stride=8),
                     enable_auxiliary_loss=aux)
    logits, loss = train_step(model, NUM_CLASSES)
    assert len(logits) == (2 if aux else 1)
    assert np.isfinite(loss)
    assert_gradients_reach(model.head)
