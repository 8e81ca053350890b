"""Install paddleseg_ctx: context-modelling scene-parsing models for PaddleSeg."""
import os

from setuptools import find_packages, setup

HERE = os.path.dirname(os.path.abspath(__file__))


def read_requirements(name):
    with open(os.path.join(HERE, name)) as f:
        return [
            line.strip() for line in f
            if line.strip() and not line.startswith('#')
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
    package_data={'paddleseg_ctx.converters': ['keymaps/*.yml']},
    install_requires=read_requirements('requirements.txt'),
    extras_require={
        'test': ['pytest>=7'],
        'onnx': ['paddle2onnx==2.1.0', 'onnxruntime>=1.17'],
    },
    license='Apache-2.0',
    classifiers=[
        'Programming Language :: Python :: 3',
        'Topic :: Scientific/Engineering :: Image Recognition',
    ], )
