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
from model_checks import assert_logits_close
from reference_imports import import_ssseg, import_torch

NUM_CLASSES = 7
RELU = {'type': 'ReLU', 'inplace': True}
LEAKY = {'type': 'LeakyReLU', 'negative_slope': 0.01, 'inplace': True}
# ssseg configs/isnet/isnet_{resnet50,resnest101}os8_{ade20k,lip}.py: backbone
# and head settings (everything else as in configs/_base_/segmentors/isnet.py).
CASES = {
    'R50-ADE20K': dict(
        backbone={'type': 'ResNet', 'depth': 50,
                  'structure_type': 'resnet50conv3x3stem', 'outstride': 8,
                  'use_conv3x3_stem': True},
        act=RELU, shortcut=False, ours_backbone='ResNet50_v1c'),
    'R50-LIP': dict(
        backbone={'type': 'ResNet', 'depth': 50,
                  'structure_type': 'resnet50conv3x3stem', 'outstride': 8,
                  'use_conv3x3_stem': True},
        act=LEAKY, shortcut=True, ours_backbone='ResNet50_v1c'),
    'S101-ADE20K': dict(
        backbone={'type': 'ResNeSt', 'depth': 101,
                  'structure_type': 'resnest101', 'outstride': 8},
        act=RELU, shortcut=False, ours_backbone='ResNeSt101'),
}

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


def ssseg_isnet(case, num_classes=NUM_CLASSES):
    """sssegmentation's ISNet with a real backbone, BN instead of SyncBN,
    random weights; eval mode."""
    import_ssseg()
    torch = import_torch()
    from ssseg.modules.models.segmentors.isnet import ISNet
    cfg = {
        'num_classes': num_classes,
        'align_corners': False,
        'norm_cfg': {'type': 'BatchNorm2d'},
        'act_cfg': case['act'],
        'backbone': dict(case['backbone'], pretrained=False,
                         selected_indices=(0, 1, 2, 3)),
        'head': {
            'in_channels': 2048, 'feats_channels': 512,
            'transform_channels': 256, 'concat_input': True, 'dropout': 0.1,
            'shortcut': {'is_on': case['shortcut'], 'in_channels': 256,
                         'feats_channels': 48},
        },
        'auxiliary': {'in_channels': 1024, 'out_channels': 512,
                      'dropout': 0.1},
    }
    model = ISNet(cfg, mode='TEST')
    rng = np.random.RandomState(0)
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if name.endswith('num_batches_tracked'):
                value.fill_(11)
                continue
            if name.endswith('running_var'):
                arr = rng.uniform(0.5, 1.5, value.shape)
            elif name.endswith('running_mean'):
                arr = rng.normal(0, 0.1, value.shape)
            elif value.dim() <= 1:
                arr = rng.normal(0, 0.1, value.shape) + (
                    1.0 if name.endswith('weight') else 0.0)
            else:
                fan_in = int(np.prod(value.shape[1:]))
                arr = rng.normal(0, 1.0 / np.sqrt(fan_in), value.shape)
            value.copy_(torch.from_numpy(arr.astype('float32')))
        # Sharpen the stage-1 classifier: the argmax that picks each pixel's
        # class centre must not be flipped by float noise between frameworks.
        model.decoder_stage1[4].weight.mul_(20.0)
    return model.eval()


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
