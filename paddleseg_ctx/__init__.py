"""paddleseg_ctx: GINet, GCNet, ISANet and ISNet as PaddleSeg components.

``import paddleseg_ctx`` is the only step needed: it applies the PaddleSeg-2.8
compatibility fixes (``paddleseg_ctx.compat``) and registers every component of
the package into PaddleSeg's managers under names that never shadow a stock
component.

``python -m paddleseg_ctx.infer`` is the exception: it runs exported models
with Paddle Inference or ONNX Runtime alone, so for it PaddleSeg and the
components are not loaded (``paddleseg_ctx.deploy``).

On AMD CPUs it also points Paddle's bundled MKL at its AVX-512/AVX2 code
(``paddleseg_ctx.mkl_dispatch``; 3-5x faster CPU matmuls and convolutions).
"""
import sys

from paddleseg_ctx import mkl_dispatch
from paddleseg_ctx.version import __version__

mkl_dispatch.use_vector_code_path()  # before Paddle runs any MKL routine

NO_PADDLE = '''paddleseg_ctx needs PaddlePaddle 3.x, which is not installed.
It does not install one itself, so that the build you choose stays in place:
  CPU:  python -m pip install paddlepaddle==3.3.1
  GPU:  python -m pip install paddlepaddle-gpu==3.3.1 -i https://www.paddlepaddle.org.cn/packages/stable/cu126/
        (cu118, cu126 or cu129: the CUDA version your driver supports; PyPI has no 3.x GPU build)'''


def _running_infer_command():
    """True while ``python -m paddleseg_ctx.infer`` imports this package
    (Python sets ``sys.argv[0]`` to '-m' until the module is found;
    ``sys.orig_argv``, Python >= 3.10, names the module)."""
    if sys.argv[:1] != ['-m']:
        return False
    argv = list(getattr(sys, 'orig_argv', []))
    for i, arg in enumerate(argv):
        if arg == '-m':
            return argv[i + 1:i + 2] == ['paddleseg_ctx.infer']
        if arg.startswith('-m'):
            return arg == '-mpaddleseg_ctx.infer'
    return False


if not _running_infer_command():
    try:
        import paddle  # noqa: F401
    except ModuleNotFoundError as err:
        if err.name != 'paddle':
            raise
        raise ImportError(NO_PADDLE) from None  # the only message needed

    from paddleseg_ctx import compat

    compat.apply_all()

    from paddleseg_ctx import (backbones, datasets, transforms, models)  # noqa: E402,F401  (registration)
