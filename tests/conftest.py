import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault('GLOG_minloglevel', '2')
# val/predict default to --backend auto, which exports each model before it
# runs (tests/test_backends.py tests it); elsewhere the suite evaluates the
# dygraph model without an export per test.
os.environ.setdefault('PADDLESEG_CTX_BACKEND', 'dygraph')

# The part of the suite each test module belongs to (pytest -m unit, ...):
#   unit         one piece at a time, in this process, small inputs; the
#                whole part runs in under two minutes
#   parity       our models, backbones, weights and test-time code against
#                PaddleSeg's classes and the PyTorch originals (these need
#                requirements-parity.txt, else they skip)
#   integration  commands and chains end to end: subprocesses, exports,
#                training runs, installs, the benchmark
SUITES = {
    'test_accumulate.py': 'integration',
    'test_amp.py': 'parity',
    'test_analyze.py': 'integration',
    'test_aug_eval.py': 'parity',
    'test_backbones.py': 'parity',
    'test_backends.py': 'integration',
    'test_benchmark.py': 'integration',
    'test_cli.py': 'integration',
    'test_compat.py': 'integration',
    'test_config_pipelines.py': 'integration',
    'test_configs.py': 'unit',
    'test_converter.py': 'parity',
    'test_datasets.py': 'unit',
    'test_datasets_prepare.py': 'integration',
    'test_demo_config.py': 'integration',
    'test_deploy.py': 'integration',
    'test_distributed.py': 'integration',
    'test_errors.py': 'integration',
    'test_docs.py': 'unit',
    'test_eval_memory.py': 'integration',
    'test_export_zoo.py': 'integration',
    'test_gcnet.py': 'parity',
    'test_gcnet_mmseg.py': 'parity',
    'test_ginet.py': 'parity',
    'test_gpu_check.py': 'integration',
    'test_imports.py': 'unit',
    'test_install.py': 'integration',
    'test_isanet.py': 'parity',
    'test_isnet.py': 'parity',
    'test_isnet_deploy.py': 'integration',
    'test_losses.py': 'unit',
    'test_mkl_dispatch.py': 'unit',
    'test_mmseg_parity.py': 'parity',
    'test_model_outputs.py': 'parity',
    'test_model_zoo.py': 'unit',
    'test_paddlex_export.py': 'integration',
    'test_pretrained.py': 'unit',
    'test_protocols.py': 'parity',
    'test_ranks.py': 'integration',
    'test_registry.py': 'unit',
    'test_reproduce.py': 'integration',
    'test_safe_load.py': 'integration',
    'test_shapes.py': 'integration',
    'test_ssseg_parity.py': 'parity',
    'test_synthetic.py': 'unit',
    'test_tipc.py': 'integration',
    'test_train_models.py': 'integration',
    'test_train_parity.py': 'parity',
    'test_training.py': 'integration',
    'test_transform_parity.py': 'parity',
    'test_transforms.py': 'unit',
    'test_visualdl.py': 'integration',
    'test_zoo_cli.py': 'integration',
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        name = os.path.basename(str(item.fspath))
        if name not in SUITES:
            raise pytest.UsageError(
                '{} is in no part of the suite: add it to SUITES in '
                'tests/conftest.py (unit, parity or integration).'.format(name))
        item.add_marker(SUITES[name])
