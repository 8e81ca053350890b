"""Install paddleseg_ctx: context-modelling scene-parsing models for PaddleSeg."""
import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))

# Compatible ranges, and no PaddlePaddle: the CPU (paddlepaddle) and GPU
# (paddlepaddle-gpu, from Paddle's own index) builds are different packages,
# so the user installs the one for the machine, as for PaddleSeg (README).
# The exact set the tests run with is requirements.txt + constraints.txt.
INSTALL_REQUIRES = [
    # compat.py patches PaddleSeg 2.8's code; 2.9 is untested.
    'paddleseg>=2.8,<2.9',
    # PaddleSeg 2.8 caps opencv-python at 4.6, whose wheels need numpy 1.x.
    'numpy>=1.21,<2',
    'opencv-python>=4.5',
    # analysis/confusion.py draws heat maps (already there through visualdl).
    'matplotlib>=3.4',
    'pyyaml>=5.1',
    'requests>=2.20',
]


def read_version():
    scope = {}
    with open(os.path.join(HERE, 'paddleseg_ctx', 'version.py')) as f:
        exec(f.read(), scope)
    return scope['__version__']


setup(
    name='paddleseg_ctx',
    version=read_version(),
    description='GINet, GCNet, ISANet and ISNet for PaddleSeg, '
    'weight-compatible with their published checkpoints',
    long_description=open(os.path.join(HERE, 'README.md')).read(),
    long_description_content_type='text/markdown',
    python_requires='>=3.8',
    packages=find_packages(include=['paddleseg_ctx', 'paddleseg_ctx.*']),
    package_data={'paddleseg_ctx.weights': ['keymaps/*.yml'],
                  'paddleseg_ctx.datasets': ['official.yml'],
                  'paddleseg_ctx.testing': ['families.yml'],
                  'paddleseg_ctx.analysis': ['module_groups.yml']},
    install_requires=INSTALL_REQUIRES,
    extras_require={
        'test': ['pytest>=7'],
        # paddleseg_ctx.deploy.export works around paddle2onnx 2.1's pad bug.
        'onnx': ['paddle2onnx>=2.1,<2.2', 'onnx>=1.16', 'onnxruntime>=1.17'],
    },
    license='Apache-2.0',
    classifiers=[
        'Programming Language :: Python :: 3',
        'Topic :: Scientific/Engineering :: Image Recognition',
    ], )
