"""scripts/benchmark.py: a --quick run writes JSON whose ratios, GFLOP/s,
goals and per-operator profiles follow from its own measured times; the
multiply-add counter, the operator groups and the ISA name against hand
checks."""
import json
import os
import statistics
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(REPO, 'scripts')
REPEATS = 2


@pytest.fixture(scope='module')
def report(tmp_path_factory):
    path = str(tmp_path_factory.mktemp('benchmark') / 'out.json')
    done = subprocess.run(
        [sys.executable, os.path.join(REPO, 'scripts', 'benchmark.py'),
         '--quick', '--families', 'GCNet', '--cases', 'dygraph', 'paddleseg',
         'train', 'slc', 'ops', '--repeats', str(REPEATS), '--threads', '1',
         '--json', path],
        capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PYTHONPATH=REPO))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert 'Goals, on ' in done.stdout
    assert 'where an eval forward' in done.stdout
    assert 'all convolutions: dygraph ' in done.stdout
    with open(path) as f:
        return json.load(f)


def test_every_case_ran_interleaved_repeats(report):
    assert report['machine']['threads'] == 1
    assert report['machine']['isa'] != 'unknown' or not os.path.exists(
        '/proc/cpuinfo')
    gemm = report['gemm']
    assert gemm['peak_gflops'] == max(
        gemm['numpy_gflops'], gemm['paddle_gflops'], gemm['onnxruntime_gflops'])
    fma = report['fma']
    if fma['status'] == 'ok':  # needs a C compiler; CI has one
        assert fma['threads'] == 1 and fma['isa'] in ('avx512', 'avx2')
        assert fma['peak_gflops'] == pytest.approx(
            sum(fma['per_thread_gflops']))
    cases = report['families']['GCNet']['cases']
    assert sorted((c['impl'], c['mode']) for c in cases) == [
        ('dygraph', 'eval'), ('dygraph', 'train'),
        ('paddleseg', 'eval'), ('paddleseg', 'train')]
    for case in cases:
        assert case['status'] == 'ok', case
        assert len(case['times_ms']) == REPEATS
        assert case['median_ms'] == pytest.approx(
            statistics.median(case['times_ms']))
        memory = case['memory']
        assert memory['peak_mb'] >= memory['rss_mb'] > 0
        assert memory['peak_increase_mb'] == pytest.approx(
            memory['peak_mb'] - memory['baseline_mb'])
    assert {c['batch'] for c in cases if c['mode'] == 'train'} == {2}


def test_ratios_come_from_the_measured_times(report):
    result = report['families']['GCNet']
    cases = {(c['impl'], c['mode']): c for c in result['cases']}
    for mode in ('eval', 'train'):
        ours, theirs = cases['dygraph', mode], cases['paddleseg', mode]
        assert ours['vs_paddleseg'] == pytest.approx(
            statistics.median(theirs['times_ms']) /
            statistics.median(ours['times_ms']))
        assert ours['memory_vs_paddleseg'] == pytest.approx(
            ours['memory']['peak_increase_mb'] /
            theirs['memory']['peak_increase_mb'])
        assert theirs['vs_paddleseg'] == pytest.approx(1.0)
        assert ours['vs_torch'] is None  # PaddleSeg's GCNet has no original
    eval_case = cases['dygraph', 'eval']
    macs = result['macs'][eval_case['size']]
    assert eval_case['gflops'] == pytest.approx(
        2 * macs / (statistics.median(eval_case['times_ms']) / 1e3) / 1e9)
    assert cases['dygraph', 'train']['gflops'] is None


def test_goals_follow_from_the_ratios(report):
    goals = {g['goal']: g for g in report['goals']}
    cases = {(c['impl'], c['mode']): c
             for c in report['families']['GCNet']['cases']}
    speed = goals['GCNet eval {}: dygraph speed vs PaddleSeg'.format(
        cases['dygraph', 'eval']['size'])]
    assert speed['measured'] == cases['dygraph', 'eval']['vs_paddleseg']
    assert speed['met'] is (speed['measured'] >= 1.0)
    memory = goals['GCNet train {}: dygraph peak memory / PaddleSeg'.format(
        cases['dygraph', 'train']['size'])]
    assert memory['met'] is (memory['measured'] <= 1.0)
    # No deployed case ran: the goal says so instead of passing or failing.
    deployed = [g for g in report['goals'] if 'best deployed' in g['goal']]
    assert deployed and all(g['met'] is None for g in deployed)
    for row in report['slc']:
        assert row['ratio'] == pytest.approx(
            row['loop_ms'] / row['vectorised_ms'])
        assert row['max_diff'] < 1e-4


def test_operator_profiles_add_up(report):
    result = report['families']['GCNet']
    ops = result['ops']
    size = ops['size']
    assert size == [c['size'] for c in result['cases']
                    if c['mode'] == 'eval'][0]
    profiles = ops['profiles']
    assert set(profiles) == {'dygraph', 'onnxruntime'}  # no PyTorch GCNet
    for impl, profile in profiles.items():
        assert 'error' not in profile, (impl, profile)
        groups = profile['groups']
        # the time outside operators is what the profiled wall time leaves
        assert sum(groups.values()) >= profile['wall_ms'] - 1e-6
        assert max(groups, key=groups.get) == 'convolution', groups
    # Every multiply-add of this GCNet but the GC block's small context
    # matmul is in a convolution layer, each timed once by the hooks.
    convs = profiles['dygraph']['convs']
    conv_macs = sum(entry['macs'] for entry in convs.values())
    assert 0.99 * result['macs'][size] <= conv_macs <= result['macs'][size]
    assert set(convs) == {'1x1', 'kxk', 'kxk dilated'}
    # Each runtime's convolutions as a whole, against the FMA peak.
    rates = ops['convolutions']
    assert set(rates) == set(profiles)
    fma = report['fma'].get('peak_gflops')
    for impl, rate in rates.items():
        conv_s = profiles[impl]['groups']['convolution'] / 1e3
        assert rate['gflops'] == pytest.approx(2 * conv_macs / conv_s / 1e9)
        if fma:
            assert rate['share_of_fma'] == pytest.approx(rate['gflops'] / fma)
            assert rate['vs_fma_time'] == pytest.approx(
                conv_s / (2 * result['macs'][size] / (fma * 1e9)))


# Run where the benchmark runs (scripts/ on the path), not in this process:
# the multiply-adds bench_cases.count_macs finds for a conv, a grouped
# strided conv and an attention matmul.
COUNT_MACS = """
import json
import paddle
from bench_cases import count_macs

class Attention(paddle.nn.Layer):
    def forward(self, x):
        return paddle.matmul(x[:, :, :7], x[:, :3, :7], transpose_y=True)

print(json.dumps([
    count_macs(paddle.nn.Conv2D(3, 8, 3, padding=1, groups=1), (1, 3, 17, 19)),
    count_macs(paddle.nn.Conv2D(4, 6, (3, 1), stride=2, groups=2),
               (2, 4, 15, 9)),
    count_macs(Attention(), (2, 5, 9))]))
"""


def run_in_scripts(code):
    """The JSON that ``code`` prints last, run with scripts/ on the path."""
    done = subprocess.run(
        [sys.executable, '-c', code], capture_output=True, text=True,
        timeout=300, env=dict(os.environ, PYTHONPATH=os.pathsep.join(
            [SCRIPTS, REPO, os.environ.get('PYTHONPATH', '')])))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_macs_of_a_conv_and_a_matmul_by_hand():
    conv, grouped, attention = run_in_scripts(COUNT_MACS)
    assert conv == 17 * 19 * 8 * 3 * 9
    # output 2x6x7x5 (H: (15-3)/2+1, W: (9-1)/2+1), each 2 in-channels x 3 taps
    assert grouped == 2 * 6 * 7 * 5 * 6
    # [2, 5, 7] x [2, 3, 7]^T -> [2, 5, 3], 7 products each
    assert attention == 2 * 5 * 3 * 7


NAMES = """
import json
from benchmark import cpu_isa
from bench_ops import op_group

names = ['aten::mkldnn_convolution', 'conv2d dygraph', 'FusedConv',
         'aten::addmm', 'matmul_v2', 'MatMul', 'aten::resize_', 'Resize',
         'bilinear_interp dygraph', 'aten::upsample_bilinear2d',
         'BatchNormalization', 'aten::native_layer_norm', 'aten::_softmax',
         'aten::relu_', 'aten::max_pool2d_with_indices', 'ReduceMean',
         'elementwise_add', 'aten::add_', 'Transpose', 'scatter_nd_add',
         'top_k']
print(json.dumps([[op_group(n) for n in names], [cpu_isa(f) for f in (
    ['avx2', 'fma'], ['avx2', 'fma', 'avx512f', 'avx512_bf16', 'amx_tile'],
    ['sse4_2'])]]))
"""


def test_operator_groups_and_isa_names_by_hand():
    groups, isas = run_in_scripts(NAMES)
    assert groups == (
        ['convolution'] * 3 + ['matmul'] * 3 + ['layout, copies'] +
        ['interpolation'] * 3 + ['batch norm', 'layer norm', 'softmax',
                                 'activation', 'pooling', 'reduction'] +
        ['elementwise'] * 2 + ['layout, copies'] * 2 + ['other'])
    assert isas == ['AVX2+FMA', 'AVX-512 (+avx512_bf16, amx_tile)',
                    'no AVX2/FMA']
