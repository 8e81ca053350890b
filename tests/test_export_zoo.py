"""Every model-zoo config exports with ``--format both``, and the Paddle
program and the ONNX model agree (slow: full-size models; ``pytest -m slow``).

Weights are the config's own initialisation (the ImageNet backbone URL is
switched off: no network here).  Dygraph parity of each family's exported
models is in test_deploy.py; this checks that every published config, at its
real size, goes through the exporter and both runtimes.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
import yaml

from model_checks import assert_logits_close
from paddleseg_ctx.deploy import InferenceRunner, OnnxRunner
from paddleseg_ctx.zoo import REPO_ROOT, load_zoo

pytest.importorskip('paddle2onnx')
pytest.importorskip('onnxruntime')

CONFIGS = sorted({e['config'] for e in load_zoo(include_unpublished=True)})


@pytest.mark.slow
@pytest.mark.parametrize('config', CONFIGS)
def test_zoo_config_exports_to_paddle_and_onnx(tmp_path, config):
    result = subprocess.run(
        [sys.executable, '-m', 'paddleseg_ctx.export', '--config',
         os.path.join(REPO_ROOT, config), '--save_dir', str(tmp_path),
         '--format', 'both', '--output_op', 'none', '--opts',
         'model.backbone.pretrained=None'],
        capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(tmp_path / 'deploy.yaml') as f:
        deploy = yaml.safe_load(f)['Deploy']
    paddle_runner = InferenceRunner(str(tmp_path / deploy['model']),
                                    str(tmp_path / deploy['params']))
    onnx_runner = OnnxRunner(str(tmp_path / deploy['onnx']))
    x = np.random.RandomState(0).uniform(-1, 1, (1, 3, 97, 129)).astype('float32')
    assert_logits_close(onnx_runner(x), paddle_runner(x), rtol=1e-4,
                        what='{}: ONNX vs Paddle Inference'.format(config))
