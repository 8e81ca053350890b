"""Whole-model parity with mmsegmentation's GCNet through the converter.

mmseg builds the model from its own published config (ResNetV1c-D8 + GCHead +
auxiliary FCNHead), random weights with non-trivial BN statistics are saved
with ``torch.save`` in mmseg's checkpoint layout (``meta`` + ``state_dict``),
converted by our converter (which does not import torch), and loaded into
``CtxGCNet`` in mmseg form.  Logits of both heads, resized to the input as
mmseg's whole inference does, must agree within 1e-3 of the largest logit.
"""
import os
import subprocess
import sys

import numpy as np
import paddle
import pytest
import yaml

import paddleseg_ctx  # noqa: F401
from paddleseg_ctx.backbones import ResNet50_v1c, ResNet101_v1c
from paddleseg_ctx.models.gcnet import CtxGCNet
from paddleseg_ctx.testing import references
from paddleseg_ctx.weights import convert_checkpoint
from model_checks import PARITY_INPUTS, assert_logits_close
from reference_imports import import_mmseg, import_torch

NUM_CLASSES = 7
CONFIGS = references.MMSEG_GCNET_CONFIGS  # (depth, align_corners) -> name
BACKBONES = {50: ResNet50_v1c, 101: ResNet101_v1c}


def mmseg_gcnet(config_name):
    import_mmseg()  # skips the test without it
    return references.mmseg_gcnet(config_name, NUM_CLASSES)


def save_mmseg_checkpoint(model, path, legacy):
    """``torch.save`` in the layout of mmseg's published files."""
    torch = import_torch()
    checkpoint = {
        'meta': {'mmseg_version': '0.5.0', 'config': 'model = dict(...)',
                 'CLASSES': tuple('c{}'.format(i) for i in range(NUM_CLASSES)),
                 'PALETTE': [[i, i, i] for i in range(NUM_CLASSES)],
                 'iter': 40000},
        'state_dict': model.state_dict(),
    }
    torch.save(checkpoint, path, _use_new_zipfile_serialization=not legacy)


def mmseg_logits(model, x, align_corners):
    """Decode and aux logits resized to the input, as mmseg's whole
    inference resizes them (``EncoderDecoder.encode_decode``)."""
    torch = import_torch()
    with torch.no_grad():
        feats = model.extract_feat(torch.from_numpy(x))
        return [
            torch.nn.functional.interpolate(
                head(feats), x.shape[2:], mode='bilinear',
                align_corners=align_corners).numpy()
            for head in (model.decode_head, model.auxiliary_head)
        ]


def ours_mmseg_form(depth, align_corners):
    return CtxGCNet(NUM_CLASSES, BACKBONES[depth](), head_conv_bias=False,
                    channel_dropout=True, head_init='mmseg',
                    align_corners=align_corners)


@pytest.mark.parametrize('depth, align_corners', sorted(CONFIGS))
def test_converted_gcnet_matches_mmseg(tmp_path, depth, align_corners):
    reference = mmseg_gcnet(CONFIGS[depth, align_corners])
    assert reference.decode_head.align_corners is align_corners
    checkpoint = str(tmp_path / 'gcnet.pth')
    save_mmseg_checkpoint(reference, checkpoint, legacy=depth == 50)

    ours = ours_mmseg_form(depth, align_corners)
    ours.set_state_dict(convert_checkpoint(checkpoint))
    ours.eval()
    for shape in PARITY_INPUTS:
        x = np.random.RandomState(1).uniform(-2, 2, shape).astype('float32')
        expected = mmseg_logits(reference, x, align_corners)
        with paddle.no_grad():
            actual = [t.numpy() for t in ours(paddle.to_tensor(x))]
        for what, a, e in zip(('main', 'aux'), actual, expected):
            assert_logits_close(a, e, rtol=1e-3, what='R{} {} logits {}'.format(
                depth, what, shape))


def test_convert_cli_checks_against_config_and_loads_strictly(tmp_path):
    """``python -m paddleseg_ctx.convert`` (a process where torch cannot be
    imported) writes weights that a config of the mmseg form loads strictly
    and that give mmseg's logits."""
    reference = mmseg_gcnet(CONFIGS[50, False])
    checkpoint = str(tmp_path / 'gcnet_r50.pth')
    save_mmseg_checkpoint(reference, checkpoint, legacy=True)
    config = tmp_path / 'gcnet_mmseg.yml'
    config.write_text(yaml.safe_dump({
        'model': {
            'type': 'CtxGCNet', 'num_classes': NUM_CLASSES,
            'backbone': {'type': 'ResNet50_v1c'},
            'head_conv_bias': False, 'channel_dropout': True,
            'head_init': 'mmseg',
        }
    }))
    converted = str(tmp_path / 'gcnet_r50.pdparams')
    block_torch = ('import sys\n'
                   'class Block:\n'
                   '    def find_spec(self, name, path=None, target=None):\n'
                   '        if name == "torch" or name.startswith("torch."):\n'
                   '            raise ImportError("torch is blocked")\n'
                   'sys.meta_path.insert(0, Block())\n'
                   'import runpy\n'
                   'sys.argv = ["convert"] + sys.argv[1:]\n'
                   'runpy.run_module("paddleseg_ctx.convert", run_name="__main__")\n')
    result = subprocess.run(
        [sys.executable, '-c', block_torch, checkpoint, converted, '--config',
         str(config)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert os.path.isfile(converted)

    ours = ours_mmseg_form(50, False)
    paddleseg_ctx.weights.load_model_weights(ours, converted)  # strict
    ours.eval()
    x = np.random.RandomState(2).uniform(-2, 2, (1, 3, 97, 129)).astype('float32')
    with paddle.no_grad():
        actual = ours(paddle.to_tensor(x))[0].numpy()
    assert_logits_close(actual, mmseg_logits(reference, x, False)[0], rtol=1e-3)
