"""Paddle Inference and ONNX Runtime behind one call, ``runner(batch)``.

:func:`create_runner` picks what an exported model can run on here, fastest
first: a GPU before the CPU, and on each device ONNX Runtime before Paddle
Inference (faster on CPU for these models; see the README).  Each runner is
set up in the fastest configuration that gives the dygraph logits on CPU
(measured on ResNet-50 models at 1x3x512x512): one thread per core, full
graph optimisation, sequential ONNX Runtime.  oneDNN makes Paddle Inference
4-5x faster than its own CPU kernels but does not run every program
correctly on Paddle 3.3.1 (see ``InferenceRunner``); :func:`onednn_works`
tries it on a program.  Neither backend is imported before it is needed.
"""
import importlib.metadata
import importlib.util
import os
import subprocess
import sys

import numpy as np

__all__ = ['BACKENDS', 'DEVICES', 'InferenceRunner', 'OnnxRunner',
           'create_runner', 'cpu_cores', 'onednn_works', 'onnx_options',
           'unavailable']

BACKENDS = ('onnxruntime', 'paddle')
DEVICES = ('gpu', 'cpu')
# Input shapes whose oneDNN primitives Paddle Inference keeps.  Each holds
# about one more copy of the weights (+200 MB per shape for GCNet R50), and
# unbounded (Paddle's default) it keeps every image size of a data set.  4
# holds the window sizes of one slide scale (inner, right, bottom, corner),
# which PaddleSeg's and our protocols run one scale at a time.
ONEDNN_CACHE_CAPACITY = 4


def cpu_cores():
    """CPU cores this process may run on (the default number of threads)."""
    if hasattr(os, 'sched_getaffinity'):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class InferenceRunner:
    """An exported Paddle program in Paddle Inference.

    Args:
        model_file (str): ``model.json`` / ``model.pdmodel``.
        params_file (str): ``model.pdiparams``.
        cpu_threads (int): Math library threads on CPU; None: one per core.
        enable_mkldnn (bool): oneDNN kernels on CPU.  On Paddle 3.3.1 right
            for GCNet, ISANet and ISNet (ResNet), but GINet fails
            ("Broadcast dimension mismatch" after a oneDNN Conv1D) and ISNet's
            LeakyReLU form crashes (SIGSEGV), with or without IR passes;
            check a program with :func:`onednn_works`.
        device (str): 'cpu' or 'gpu' (the first visible GPU).
        verbose (bool): Keep Paddle's GLOG messages.
    """
    name = 'paddle'

    def __init__(self, model_file, params_file, cpu_threads=None,
                 enable_mkldnn=False, device='cpu', verbose=False):
        from paddle import inference
        config = inference.Config(model_file, params_file)
        config.switch_ir_optim(True)
        if device == 'gpu':
            config.enable_use_gpu(256, 0)  # initial memory pool in MB, GPU id
        else:
            config.disable_gpu()
            config.set_cpu_math_library_num_threads(cpu_threads or cpu_cores())
            if enable_mkldnn:
                config.enable_mkldnn()
                config.set_mkldnn_cache_capacity(ONEDNN_CACHE_CAPACITY)
                # The placement pass moves every op with a oneDNN kernel to
                # oneDNN, but Paddle 3.3's oneDNN executor cannot take a
                # list-of-double attribute (bilinear_interp's `scale`):
                # "ConvertPirAttribute2RuntimeAttribute not support
                # [pir::ArrayAttribute<pir::DoubleAttribute>]".  Without it
                # convolutions (with their fused BN, bias, residual add and
                # activation) still run in oneDNN: the speed-up.
                config.delete_pass('onednn_placement_pass')
            else:
                config.disable_mkldnn()
        # No config.enable_memory_optim(): on Paddle 3.x create_predictor then
        # stops with "Not find predictor_id 0 and pass_name memory_optimize_pass".
        if not verbose:
            config.disable_glog_info()
        self.device = device
        self.predictor = inference.create_predictor(config)

    def __call__(self, batch):
        """``batch``: float32 [N, 3, H, W]; returns the first output."""
        predictor = self.predictor
        handle = predictor.get_input_handle(predictor.get_input_names()[0])
        batch = np.ascontiguousarray(batch, dtype='float32')
        handle.reshape(batch.shape)
        handle.copy_from_cpu(batch)
        predictor.run()
        out = predictor.get_output_handle(predictor.get_output_names()[0])
        return out.copy_to_cpu()


def onnx_options(cpu_threads=None):
    """ONNX Runtime's session options of :class:`OnnxRunner` (also what
    scripts/bench_ops.py profiles); ``cpu_threads`` None: one per core."""
    import onnxruntime
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = cpu_threads or cpu_cores()
    # One op at a time, each on all threads: parallel op execution was
    # slower for these chain-shaped networks.
    options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = (
        onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL)
    # paddle2onnx leaves unused initializers; skip a warning for each.
    options.log_severity_level = 3
    return options


class OnnxRunner:
    """An exported ONNX model in ONNX Runtime.

    Args:
        onnx_file (str): ``model.onnx``.
        cpu_threads (int): Intra-op threads on CPU; None: one per core.
        device (str): 'cpu', or 'gpu' for the CUDA provider (onnxruntime-gpu).
    """
    name = 'onnxruntime'

    def __init__(self, onnx_file, cpu_threads=None, device='cpu'):
        import onnxruntime
        options = onnx_options(cpu_threads)
        providers = ['CPUExecutionProvider']
        if device == 'gpu':
            providers.insert(0, 'CUDAExecutionProvider')
        self.session = onnxruntime.InferenceSession(
            onnx_file, options, providers=providers)
        # Without its CUDA/cuDNN libraries the CUDA provider drops out silently.
        if self.session.get_providers()[0] != providers[0]:
            raise RuntimeError(
                'ONNX Runtime could not start its CUDA provider (are the CUDA '
                'and cuDNN libraries onnxruntime-gpu needs installed?); '
                'running on {}.'.format(self.session.get_providers()))
        self.device = device
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, batch):
        """``batch``: float32 [N, 3, H, W]; returns the first output."""
        batch = np.ascontiguousarray(batch, dtype='float32')
        return self.session.run(None, {self.input_name: batch})[0]


def onednn_works(model_file, params_file):
    """``(True, None)`` if Paddle Inference gives the same output with oneDNN
    as without it for this program (on a random input, in a child process),
    else ``(False, why)``."""
    # A child process, since oneDNN can fail by crashing; it runs this file
    # as a script, which imports neither paddleseg nor this package.
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), model_file, params_file],
        capture_output=True, text=True, check=False)
    if proc.returncode == 0:
        return True, None
    if proc.returncode < 0:
        return False, 'it crashed (signal {})'.format(-proc.returncode)
    lines = [line.strip() for line in proc.stderr.splitlines()
             if line.strip()]
    errors = [line for line in lines if 'Error: ' in line] or lines
    return False, errors[-1][:300] if errors else 'exit code {}'.format(
        proc.returncode)


def _paddle_has_gpu():
    # A CPU build says so by its distribution name; importing paddle to ask
    # takes seconds.
    try:
        importlib.metadata.version('paddlepaddle-gpu')
    except importlib.metadata.PackageNotFoundError:
        return False
    import paddle
    return (paddle.device.is_compiled_with_cuda() and
            paddle.device.cuda.device_count() > 0)


def unavailable(backend, device, deploy):
    """Why ``backend`` cannot run ``deploy`` (a DeployConfig) on ``device``
    here, or None if it can."""
    if backend == 'onnxruntime':
        if deploy.onnx is None:
            return ('{} names no ONNX model (export with --format onnx or '
                    'both)'.format(deploy.path))
        if not os.path.isfile(deploy.onnx):
            return '{} does not exist'.format(deploy.onnx)
        if importlib.util.find_spec('onnxruntime') is None:
            return 'onnxruntime is not installed (pip install onnxruntime)'
        import onnxruntime
        if (device == 'gpu' and 'CUDAExecutionProvider' not in
                onnxruntime.get_available_providers()):
            return ('this onnxruntime has no CUDA provider (pip install '
                    'onnxruntime-gpu)')
        return None
    if deploy.model is None:
        return ('{} names no Paddle program (export with --format paddle or '
                'both)'.format(deploy.path))
    for path in (deploy.model, deploy.params):
        if not os.path.isfile(path):
            return '{} does not exist'.format(path)
    if importlib.util.find_spec('paddle') is None:
        return 'paddlepaddle is not installed (pip install paddlepaddle)'
    if device == 'gpu' and not _paddle_has_gpu():
        return ('no GPU for Paddle here (needs a visible GPU and '
                'paddlepaddle-gpu from Paddle\'s package index)')
    return None


def create_runner(deploy, backend=None, device=None, cpu_threads=None,
                  enable_mkldnn=False, verbose=False):
    """A runner for ``deploy`` (a DeployConfig).

    ``backend`` ('onnxruntime' | 'paddle') and ``device`` ('gpu' | 'cpu')
    default to the fastest that works, tried in the order of ``DEVICES`` x
    ``BACKENDS``.  The runner's ``name`` and ``device`` say what was chosen.

    Raises:
        RuntimeError: Nothing can run the model; the message says why for
            each combination tried.
    """
    chosen = [(b, d) for d in ((device, ) if device else DEVICES)
              for b in ((backend, ) if backend else BACKENDS)]
    reasons = []
    for b, d in chosen:
        reason = unavailable(b, d, deploy)
        if reason is None:
            try:
                if b == 'onnxruntime':
                    return OnnxRunner(deploy.onnx, cpu_threads, d)
                return InferenceRunner(deploy.model, deploy.params,
                                       cpu_threads, enable_mkldnn, d, verbose)
            except Exception as err:  # noqa: BLE001  (reported below)
                if len(chosen) == 1:
                    raise
                reason = '{}: {}'.format(type(err).__name__, err)
        reasons.append('{} on {}: {}'.format(b, d, reason))
    raise RuntimeError('Cannot run {}:\n  {}'.format(deploy.path,
                                                     '\n  '.join(reasons)))


def _compare_onednn(model_file, params_file):
    """The child of :func:`onednn_works`: exit 0 if oneDNN gives the plain
    output, else with the difference."""
    x = np.random.RandomState(0).uniform(-1, 1, (1, 3, 65, 97))
    plain = InferenceRunner(model_file, params_file)(x)
    fast = InferenceRunner(model_file, params_file, enable_mkldnn=True)(x)
    error = np.abs(fast - plain).max() / max(np.abs(plain).max(), 1e-12)
    if not error < 1e-4:
        sys.exit('RuntimeError: its output differs by {:.1e} (relative)'
                 .format(error))


if __name__ == '__main__':
    _compare_onednn(*sys.argv[1:])
