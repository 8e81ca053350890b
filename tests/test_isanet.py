"""CtxISANet against PaddleSeg 2.8's ISANet (the published-weights layout)."""
import numpy as np
import paddle
import pytest
from paddleseg.cvlibs import manager
from paddleseg.models import ISANet, layers
from paddleseg.models.backbones import ResNet18_vd, ResNet50_vd

import paddleseg_ctx  # noqa: F401  (registers CtxISANet)
from paddleseg_ctx.models.isanet import CtxISANet
from paddleseg_ctx.weights import check_state_dict
from model_checks import (PARITY_INPUTS, assert_eval_parity,
                          assert_export_matches, assert_gradients_reach,
                          randomize, train_step)

NUM_CLASSES = 5


def paddleseg_isanet(backbone, align_corners=False):
    """PaddleSeg's ISANet with random weights.  Its aux conv hard-codes 1024
    input channels (ResNet50/101 C3); for lighter backbones it is rebuilt
    with the backbone's C3 channels, as ours does."""
    ref = ISANet(NUM_CLASSES, backbone, align_corners=align_corners)
    c3_channels = backbone.feat_channels[2]
    if c3_channels != 1024:
        ref.head.aux[0] = layers.ConvBNReLU(
            c3_channels, 256, 3, bias_attr=False)
    randomize(ref)
    return ref


def test_registered_without_replacing_paddleseg_isanet():
    assert manager.MODELS['CtxISANet'] is CtxISANet
    assert manager.MODELS['ISANet'] is ISANet


@pytest.mark.parametrize('backbone, align_corners', [
    (ResNet50_vd, False),  # Cityscapes configs (align_mode=1 matters here)
    (ResNet18_vd, True),  # VOC configs
])
def test_matches_paddleseg_isanet(backbone, align_corners):
    # 97x129 -> 13x17 features: padded to 16x24, i.e. uneven pad on each side.
    ref = paddleseg_isanet(backbone(output_stride=8), align_corners)
    ours = CtxISANet(NUM_CLASSES, backbone(output_stride=8),
                     align_corners=align_corners)
    check_state_dict(ours, ref.state_dict(), source='PaddleSeg ISANet')
    ours.set_state_dict(ref.state_dict())
    assert_eval_parity(ref, ours)


@pytest.mark.parametrize('aux', [True, False])
def test_strict_load_of_paddleseg_weights(tmp_path, aux):
    # head.aux.* is in PaddleSeg's checkpoints even when aux is disabled.
    ref = paddleseg_isanet(ResNet18_vd(output_stride=8))
    path = str(tmp_path / 'model.pdparams')
    paddle.save(ref.state_dict(), path)

    ours = CtxISANet(NUM_CLASSES, ResNet18_vd(output_stride=8),
                     enable_auxiliary_loss=aux, pretrained=path)
    expected = ref.state_dict()
    assert sorted(ours.state_dict()) == sorted(expected)
    for key, value in ours.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), expected[key].numpy())


def test_export_matches_dygraph(tmp_path):
    # PaddleSeg's own ISANet fails to export here (tensor `if` + 0-D concat).
    model = CtxISANet(NUM_CLASSES, ResNet18_vd(output_stride=8))
    randomize(model)
    assert_export_matches(model, tmp_path, PARITY_INPUTS)


@pytest.mark.parametrize('aux', [True, False])
def test_train_step_reaches_every_head_parameter(aux):
    model = CtxISANet(NUM_CLASSES, ResNet18_vd(output_stride=8),
                      enable_auxiliary_loss=aux)
    logits, loss = train_step(model, NUM_CLASSES)
    assert len(logits) == (2 if aux else 1)
    assert np.isfinite(loss)
    assert_gradients_reach(model.head, () if aux else ('aux.',))
