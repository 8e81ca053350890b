"""Whole-model parity with sssegmentation's ISNet through the converter CLI.

sssegmentation builds ISNet with its real backbone (ResNetV1c-50 or
ResNeSt-101) and the head settings of its published configs; random weights
with non-trivial BN statistics are saved with ``torch.save`` in its checkpoint
layout (``model`` + ``optimizer`` + epoch counters), converted by
``python -m paddleseg_ctx.convert`` in a process where torch cannot be
imported, checked against a config of ours and loaded strictly.  The stage-2
logits at feature resolution (what sssegmentation's TEST forward returns) must
agree within 1e-3 of the largest logit.
"""
import subprocess
import sys

import numpy as np
import paddle
import pytest
import yaml

import paddleseg_ctx  # noqa: F401
from paddleseg_ctx.weights import load_model_weights
from paddleseg.cvlibs import Config, SegBuilder
from paddleseg.cvlibs.config_checker import ConfigChecker
from paddleseg_ctx.testing import references
from model_checks import assert_logits_close
from reference_imports import import_ssseg, import_torch

NUM_CLASSES = 7
CASES = references.SSSEG_ISNET_CASES

BLOCK_TORCH_AND_CONVERT = '''
import runpy, sys
class BlockTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this process")
sys.meta_path.insert(0, BlockTorch())
sys.argv = ["convert"] + sys.argv[1:]
runpy.run_module("paddleseg_ctx.convert", run_name="__main__")
'''


def ssseg_isnet(case):
    import_ssseg()  # skips the test without it
    return references.ssseg_isnet(case, NUM_CLASSES)


def ours_config(path, case):
    path.write_text(yaml.safe_dump({
        'model': {
            'type': 'CtxISNet', 'num_classes': NUM_CLASSES,
            'backbone': {'type': case['ours_backbone'], 'output_stride': 8},
            'shortcut_channels': 48 if case['shortcut'] else 0,
            'act': 'leakyrelu' if case['shortcut'] else 'relu',
        }
    }))
    return str(path)


@pytest.mark.parametrize('name', sorted(CASES))
def test_converted_isnet_matches_sssegmentation(tmp_path, name):
    torch = import_torch()
    case = CASES[name]
    reference = ssseg_isnet(case)
    from ssseg.modules.utils import SSSegInputStructure
    checkpoint = str(tmp_path / 'isnet.pth')
    torch.save({'model': reference.state_dict(), 'optimizer': {},
                'cur_epoch': 130, 'cur_iter': 164190}, checkpoint)

    config = ours_config(tmp_path / 'isnet.yml', case)
    converted = str(tmp_path / 'isnet.pdparams')
    result = subprocess.run(
        [sys.executable, '-c', BLOCK_TORCH_AND_CONVERT, checkpoint, converted,
         '--config', config], capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    keymap = 'ssseg_isnet_lip' if case['shortcut'] else 'ssseg_isnet'
    assert keymap in result.stdout + result.stderr

    cfg = Config(config, checker=ConfigChecker([]))  # a model-only config
    ours = SegBuilder(cfg).build_component(cfg.dic['model'])
    load_model_weights(ours, converted)  # strict: every key and shape
    ours.eval()

    stage1 = {}
    reference.decoder_stage1.register_forward_hook(
        lambda module, inputs, output: stage1.update(logits=output.numpy()))
    for shape in ((1, 3, 97, 129), (2, 3, 64, 64)):
        x = np.random.RandomState(1).uniform(-2, 2, shape).astype('float32')
        with torch.no_grad():
            expected = reference(SSSegInputStructure(
                images=torch.from_numpy(x), mode='TEST')).seg_logits.numpy()
        top2 = np.sort(stage1['logits'], axis=1)[:, -2:]
        # 1e-6 is the float noise between the frameworks here.
        assert (top2[:, 1] - top2[:, 0]).min() > 2e-5 * np.abs(top2).max()
        with paddle.no_grad():
            actual = ours.raw_logits(paddle.to_tensor(x))
        assert len(actual) == 1
        assert_logits_close(actual[0].numpy(), expected, rtol=1e-3,
                            what='{} stage-2 logits {}'.format(name, shape))
