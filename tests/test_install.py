"""Installation: the wheel leaves the user's Paddle build alone, and
``import paddleseg_ctx`` without PaddlePaddle says what to install."""
import os
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='module')
def wheel_metadata(tmp_path_factory):
    """METADATA of a wheel built with pip from a copy of the sources."""
    tmp = tmp_path_factory.mktemp('wheel')
    src = tmp / 'src'
    shutil.copytree(os.path.join(ROOT, 'paddleseg_ctx'), src / 'paddleseg_ctx',
                    ignore=shutil.ignore_patterns('__pycache__'))
    for name in ('setup.py', 'README.md'):
        shutil.copy(os.path.join(ROOT, name), src)
    proc = subprocess.run(
        [sys.executable, '-m', 'pip', 'wheel', '--no-deps', '-q', '-w',
         str(tmp / 'dist'), str(src)], capture_output=True, text=True,
        timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (wheel, ) = (tmp / 'dist').glob('paddleseg_ctx-*.whl')
    with zipfile.ZipFile(wheel) as archive:
        (name, ) = [n for n in archive.namelist()
                    if n.endswith('.dist-info/METADATA')]
        return archive.read(name).decode()


def requirements(metadata):
    """``{name: (specifier, marker)}`` of the Requires-Dist lines."""
    found = {}
    for line in re.findall(r'^Requires-Dist: (.+)$', metadata, re.M):
        requirement, _, marker = line.partition(';')
        name, spec = re.match(r'([A-Za-z0-9_.-]+)\s*(.*)',
                              requirement.strip()).groups()
        found[name.lower().replace('_', '-')] = (spec.strip('() '),
                                                 marker.strip())
    return found


def test_wheel_requires_no_paddle_build(wheel_metadata):
    required = requirements(wheel_metadata)
    assert not {'paddlepaddle', 'paddlepaddle-gpu'} & set(required)
    # Ranges, not pins; numpy 1.x for PaddleSeg 2.8's OpenCV.
    assert required['paddleseg'][0] == '<2.9,>=2.8'
    assert required['numpy'][0] == '<2,>=1.21'
    assert not any('==' in spec for spec, _ in required.values())
    # The ONNX tools only with the [onnx] extra.
    assert 'extra == "onnx"' in required['paddle2onnx'][1]
    assert 'extra == "onnx"' in required['onnxruntime'][1]


def test_requirements_txt_keeps_the_tested_paddle():
    # The README's commands (scripts/test.sh, scripts/demo.sh) install it.
    with open(os.path.join(ROOT, 'requirements.txt')) as f:
        pins = [line.strip() for line in f if not line.startswith('#')]
    assert 'paddlepaddle==3.3.1' in pins


NO_PADDLE = '''
import importlib.abc, sys


class NoPaddle(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] == 'paddle':
            raise ModuleNotFoundError("No module named 'paddle'", name='paddle')


sys.meta_path.insert(0, NoPaddle())
import paddleseg_ctx
'''


def test_import_without_paddle_names_the_package_to_install():
    proc = subprocess.run([sys.executable, '-c', NO_PADDLE],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    err = proc.stderr
    assert 'ImportError: paddleseg_ctx needs PaddlePaddle 3.x' in err
    assert 'pip install paddlepaddle==' in err
    assert ('pip install paddlepaddle-gpu==3.3.1 -i '
            'https://www.paddlepaddle.org.cn/packages/stable/cu' in err)
    # One message: not chained to the ModuleNotFoundError.
    assert err.count('Traceback') == 1
