"""scripts/gpu_check.sh --dry_run: every step of the GPU check is planned and
its command built and accepted by the command it runs, without a GPU; and
the reading of PaddleSeg's training log that judges a run."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from paddleseg_ctx.cli import export as export_cli
from paddleseg_ctx.cli import train as train_cli
from paddleseg_ctx.config import read_config

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'scripts', 'gpu_check.sh')


def _load_driver():
    spec = importlib.util.spec_from_file_location(
        'gpu_check', os.path.join(ROOT, 'scripts', 'gpu_check.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp('gpu_check')
    proc = subprocess.run(['bash', SCRIPT, '--dry_run', '--out', str(out)],
                          capture_output=True, text=True, cwd=ROOT,
                          check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    with open(out / 'gpu_check.json') as f:
        return json.load(f), proc.stdout


def _after(argv, marker):
    return argv[argv.index(marker) + 1:]


def test_every_step_is_planned(dry_run):
    report, stdout = dry_run
    steps = {step['name']: step for step in report['steps']}
    assert report['environment']['dry_run'] is True
    assert report['failed'] == []
    for family in ('ginet', 'isanet', 'gcnet', 'isnet'):
        for mode in ('fp32', 'amp_o1', 'amp_o2'):
            assert '{} ours train {}'.format(family, mode) in steps
            if family != 'isnet':  # PaddleSeg has no ISNet
                assert '{} paddleseg train {}'.format(family, mode) in steps
        for name in ('ours train fp32 2 ranks (SyncBN)', 'export',
                     'eval backends'):
            assert '{} {}'.format(family, name) in steps
    assert not any(name.startswith('isnet paddleseg') for name in steps)
    # One table row per step, each planned.
    rows = [line for line in stdout.splitlines() if line.startswith('| ')]
    assert len(rows) == len(steps) + 1
    assert all('| planned |' in row for row in rows[1:])


def test_commands_are_accepted_by_our_entry_points(dry_run):
    report, _ = dry_run
    for step in report['steps']:
        argv = step['argv']
        if step['kind'] == 'train':
            args = argv[argv.index('--') + 1:] if '--child' in argv else \
                _after(argv, 'paddleseg_ctx.train')
            parsed = train_cli.build_parser().parse_args(args)
            assert parsed.device == 'gpu' and parsed.iters == 30
            assert parsed.save_interval == 30 and parsed.log_iters == 1
            precision = {'fp32': 'fp32', 'fp32_2ranks': 'fp32',
                         'amp_o1': 'fp16', 'amp_o2': 'fp16'}[step['mode']]
            assert parsed.precision == precision
            if step['mode'].startswith('amp'):
                assert parsed.amp_level == step['mode'][-2:].upper()
            if step['mode'] == 'fp32_2ranks':
                assert argv[1:5] == ['-m', 'paddle.distributed.launch',
                                     '--gpus', '0,1']
        elif step['kind'] == 'export':
            parsed = export_cli.build_parser().parse_args(
                _after(argv, 'paddleseg_ctx.export'))
            assert parsed.format == 'both' and parsed.output_op == 'none'
            assert parsed.model_path.endswith('fp32/iter_30/model.pdparams')


def test_derived_configs_are_valid_and_compare_like_with_like(dry_run):
    report, _ = dry_run
    configs = {}
    for step in report['steps']:
        if step['kind'] == 'train' and step['mode'] == 'fp32':
            configs[(step['family'], step['impl'])] = read_config(
                step['config']).dic
    for (family, impl), dic in configs.items():
        model = dic['model']
        assert model['backbone']['pretrained'] is None
        if impl == 'paddleseg':
            assert not model['type'].startswith('Ctx')
            ours = configs[(family, 'ours')]
            assert model['backbone'] == ours['model']['backbone']
            assert dic['train_dataset'] == ours['train_dataset']
            assert dic['batch_size'] == ours['batch_size']
            assert dic['loss'] == ours['loss']
        else:
            assert model['type'].startswith('Ctx')


def test_read_train_judges_losses_speed_and_memory():
    driver = _load_driver()
    line = ('2026-12-07 02:03:55 [INFO]\t[TRAIN] epoch: 1, iter: {i}/6, '
            'loss: {loss:.4f}, lr: 0.050000, batch_cost: {cost}, reader_cost: '
            '0.02603, ips: 4.2 samples/sec | ETA 00:00:01')
    falling = '\n'.join(line.format(i=i + 1, loss=3 - 0.4 * i, cost=0.5)
                        for i in range(6)) + '\n' + driver.PEAK + '1234.5'
    result = {}
    assert driver.read_train(falling, result) is None
    assert result['iters_per_s'] == 2.0 and result['peak_mb'] == 1234.5
    flat = '\n'.join(line.format(i=i + 1, loss=2.0, cost=0.5)
                     for i in range(6))
    assert 'does not fall' in driver.read_train(flat, {})
    nan = falling.replace('loss: 1.0000', 'loss: nan').replace(
        'loss: 1.4000', 'loss: nan')
    assert 'not finite' in driver.read_train(nan, {})
    assert 'no [TRAIN] line' in driver.read_train('Traceback ...', {})


def test_without_a_gpu_it_stops_with_a_message(tmp_path):
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, 'scripts', 'gpu_check.py'),
         '--out', str(tmp_path)], capture_output=True, text=True, cwd=ROOT,
        env=dict(os.environ, CUDA_VISIBLE_DEVICES=''), check=False)
    assert proc.returncode != 0
    assert 'no GPU visible to Paddle' in proc.stderr


def test_options_trim_the_plan(tmp_path):
    driver = _load_driver()
    steps = driver.plan(str(tmp_path), ['isanet'], 30, gpus=1,
                        modes=['amp_o2'], paddleseg=False, tensorrt=False)
    names = [step['name'] for step in steps]
    assert names == ['data 769x769', 'isanet ours train fp32',
                     'isanet ours train amp_o2',
                     'isanet ours train fp32 2 ranks (SyncBN)',
                     'isanet export', 'isanet eval backends']
    assert steps[3]['skip'] == 'needs 2 GPUs, 1 visible'
    assert '--no_tensorrt' in steps[-1]['argv']
