"""paddleseg_ctx.mkl_dispatch: which MKL code path each CPU gets, that the
user's setting wins, that ``import paddleseg_ctx`` makes MKL itself run the
path (asked from MKL), and that results on it match numpy and MKL's generic
path."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from paddleseg_ctx import mkl_dispatch

ZEN4 = ('fpu sse sse2 ssse3 sse4_1 sse4_2 avx fma avx2 avx512f avx512dq '
        'avx512cd avx512bw avx512vl avx512_bf16')
ZEN2 = 'fpu sse sse2 ssse3 sse4_1 sse4_2 avx fma avx2'
OLD = 'fpu sse sse2 ssse3 sse4_1 sse4_2 avx'


def cpuinfo(vendor, flags, processors=2):
    block = 'processor\t: {}\nvendor_id\t: {}\nmodel name\t: x\nflags\t\t: {}\n'
    return '\n'.join(block.format(i, vendor, flags) for i in range(processors))


@pytest.mark.parametrize('vendor, flags, expected', [
    ('AuthenticAMD', ZEN4, '7'),
    ('AuthenticAMD', ZEN2, '5'),
    ('AuthenticAMD', OLD, None),
    ('AuthenticAMD', 'avx2 avx512f', None),  # AVX-512 without BW/DQ/VL: no 7, no FMA: no 5
    ('GenuineIntel', ZEN4, None),  # MKL already picks Intel's best path
    ('HygonGenuine', ZEN2, None),
])
def test_code_path_for_each_cpu(vendor, flags, expected):
    assert mkl_dispatch.code_path_for(cpuinfo(vendor, flags)) == expected


def test_the_users_value_is_kept_even_empty(tmp_path):
    info = tmp_path / 'cpuinfo'
    info.write_text(cpuinfo('AuthenticAMD', ZEN4))
    for value in ('5', ''):
        env = {'MKL_DEBUG_CPU_TYPE': value}
        assert mkl_dispatch.use_vector_code_path(env, str(info)) == value
        assert env == {'MKL_DEBUG_CPU_TYPE': value}
    env = {}
    assert mkl_dispatch.use_vector_code_path(env, str(info)) == '7'
    assert env == {'MKL_DEBUG_CPU_TYPE': '7'}
    env = {}
    assert mkl_dispatch.use_vector_code_path(
        env, str(tmp_path / 'missing')) is None
    assert env == {}


PROBE = r'''
import ctypes, json, os, sys
import numpy as np
import paddleseg_ctx  # noqa: F401  (sets the code path)
import paddle
import paddle.nn.functional as F

rng = np.random.RandomState(0)
a, b = rng.standard_normal((2, 193, 257)).astype('float32')
x = rng.standard_normal((1, 16, 23, 29)).astype('float32')
w = rng.standard_normal((8, 16, 3, 3)).astype('float32')
out = {
    'matmul': paddle.matmul(paddle.to_tensor(a), paddle.to_tensor(b.T)).numpy(),
    'conv': F.conv2d(paddle.to_tensor(x), paddle.to_tensor(w), padding=1).numpy(),
    'softmax': F.softmax(paddle.to_tensor(a * 4), axis=-1).numpy(),
    'exp': paddle.exp(paddle.to_tensor(a * 8)).numpy(),
    'tanh': paddle.tanh(paddle.to_tensor(a)).numpy(),
}
np.savez(sys.argv[1], **out)
lib = os.path.join(os.path.dirname(paddle.__file__), 'libs', 'libmklml_intel.so')
cpu_type = (ctypes.CDLL(lib).mkl_serv_get_cpu_type(0) if os.path.exists(lib)
            else None)
print(json.dumps({'variable': os.environ.get('MKL_DEBUG_CPU_TYPE'),
                  'mkl_cpu_type': cpu_type}))
'''


def probe(tmp_path, name, variable):
    env = {k: v for k, v in os.environ.items() if k != 'MKL_DEBUG_CPU_TYPE'}
    if variable is not None:
        env['MKL_DEBUG_CPU_TYPE'] = variable
    path = str(tmp_path / (name + '.npz'))
    done = subprocess.run([sys.executable, '-c', PROBE, path], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1]), np.load(path)


def test_import_makes_mkl_run_the_path_with_the_same_results(tmp_path):
    with open('/proc/cpuinfo') as f:
        expected = mkl_dispatch.code_path_for(f.read())
    tuned, ours = probe(tmp_path, 'tuned', None)
    assert tuned['variable'] == expected
    if tuned['mkl_cpu_type'] is not None and expected is not None:
        assert tuned['mkl_cpu_type'] == int(expected)  # MKL's own answer
    generic, theirs = probe(tmp_path, 'generic', '')  # MKL's own choice
    if generic['mkl_cpu_type'] is not None and expected is not None:
        assert generic['mkl_cpu_type'] != tuned['mkl_cpu_type']

    rng = np.random.RandomState(0)  # the probe's inputs, in float64
    a, b = rng.standard_normal((2, 193, 257)).astype('float32').astype('float64')
    np.testing.assert_allclose(ours['matmul'], a @ b.T, rtol=1e-5, atol=1e-4)
    logits = a * 4
    soft = np.exp(logits - logits.max(-1, keepdims=True))
    np.testing.assert_allclose(ours['softmax'], soft / soft.sum(-1, keepdims=True),
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(ours['exp'], np.exp(a.astype('float32') * 8.0),
                               rtol=1e-6)
    np.testing.assert_allclose(ours['tanh'], np.tanh(a), rtol=1e-6, atol=1e-7)
    # Convolution against MKL's generic path (an independent kernel).
    np.testing.assert_allclose(ours['conv'], theirs['conv'], rtol=1e-5, atol=1e-4)
