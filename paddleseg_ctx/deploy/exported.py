"""``--backend`` of val and predict: the network in Paddle Inference or ONNX
Runtime, everything around it unchanged.

An :class:`ExportedModel` takes the dygraph model's place, so PaddleSeg's
evaluate and predict and the mmseg/ssseg protocols (test-time resize, slide
windows, scales, flips, merge) run the same code for every backend.  The
program is either an export directory given as ``--model_path`` (logits,
``--output_op none``, dynamic input shape), or the config's model with its
weights, exported on first use into ``<SEG_HOME>/exported/<key>`` (default
``~/.paddleseg``), the key hashing the model config, the weights and the
model's source code, so that later runs reuse it.  On CPU, Paddle Inference
uses oneDNN when a check in a child process finds that it gives the plain
output for the program (not for every model on Paddle 3.3.1).

``--backend auto`` (the default) runs dygraph on a GPU.  On CPU it tries
ONNX Runtime and Paddle Inference: each that is installed, exports and gives
the dygraph answer on a probe image (the same label everywhere and logits
within :data:`PROBE_RTOL` of the logit range) is timed on a
:data:`TIMING_SHAPE` image, and the faster one runs: which is faster depends
on the model and the CPU (README "Speed").  Verdict and time are kept with
the export, the time per machine.  Failing both, it runs dygraph.  The log
says which backend runs and why the others did not.
"""
import hashlib
import importlib.util
import inspect
import os
import shutil
import sys
import tempfile
import time

import numpy as np
import paddle
import paddle.nn.functional as F
import yaml
from paddleseg.cvlibs import manager
from paddleseg.utils import logger
from paddleseg.utils.env import seg_env

from paddleseg_ctx.deploy.backends import (InferenceRunner, OnnxRunner,
                                           cpu_cores, create_runner,
                                           onednn_works)
from paddleseg_ctx.deploy.config import DeployConfig, find_model_file
from paddleseg_ctx.deploy.export import export_onnx, save_inference_model
from paddleseg_ctx.errors import UserError
from paddleseg_ctx.files import atomic_write
from paddleseg_ctx.mkl_dispatch import cpu_info
from paddleseg_ctx.version import __version__
from paddleseg_ctx.weights import load_trained_weights

__all__ = ['BACKENDS', 'BACKEND_ENV', 'BackendError', 'ExportedModel',
           'ExportedRawModel', 'backend_help', 'default_backend',
           'load_model']

BACKENDS = ('auto', 'dygraph', 'paddle', 'onnxruntime')
# Tried by ``auto`` on CPU; the first wins a tie.
CPU_PREFERENCE = ('onnxruntime', 'paddle')
# The environment variable that changes the default of --backend.
BACKEND_ENV = 'PADDLESEG_CTX_BACKEND'
# Probe of ``auto``: size of its image and its logit tolerance, relative to
# the largest |logit| of dygraph.
PROBE_SHAPE = (1, 3, 160, 224)
PROBE_RTOL = 1e-3
# ``auto`` times each correct backend on this input: big enough that the
# convolutions, not the per-call overhead, decide (about 1 s for ResNet-50).
TIMING_SHAPE = (1, 3, 256, 256)
TIMING_RUNS = 2  # after one warm-up run; the faster run counts
# What exporting for a backend needs besides paddle: (module, pip package).
_NEEDS = {
    'onnxruntime': (('onnxruntime', 'onnxruntime'),
                    ('paddle2onnx', 'paddle2onnx==2.1.0'), ('onnx', 'onnx')),
    'paddle': (),
}


class BackendError(UserError):
    """The model cannot run on the chosen backend; the message says why and
    what to do."""


class ExportedModel(paddle.nn.Layer):
    """An exported program in the place of a segmentation model.

    ``model(x)`` is ``[logits]`` at the input size, a Tensor, for a float32
    ``[N, 3, H, W]`` Tensor or array ``x`` (any N, H, W).

    Args:
        runner: ``InferenceRunner`` or ``OnnxRunner`` of logits.
        align_corners (bool): The model's ``align_corners`` (protocols resize
            its logits with it).
    """

    def __init__(self, runner, align_corners):
        super().__init__()
        self.runner = runner
        self.align_corners = align_corners

    def _run(self, x):
        return paddle.to_tensor(
            self.runner(x.numpy() if isinstance(x, paddle.Tensor) else x))

    def forward(self, x):
        return [self._run(x)]


class ExportedRawModel(ExportedModel):
    """An exported ``model.raw_logits`` (logits at feature resolution):
    ``raw_logits(x)`` for protocols that resize them once, and ``model(x)``
    resized to the input as ``ContextSegModel.forward`` does, so one program
    serves both.

    Args:
        align_mode (int): The model's ``align_mode``.
    """

    def __init__(self, runner, align_corners, align_mode):
        super().__init__(runner, align_corners)
        self.align_mode = align_mode

    def raw_logits(self, x):
        return [self._run(x)]

    def forward(self, x):
        return [
            F.interpolate(
                self._run(x),
                x.shape[2:],
                mode='bilinear',
                align_corners=self.align_corners,
                align_mode=self.align_mode)
        ]


class _RawLogits(paddle.nn.Layer):
    """``model.raw_logits`` as a forward, for export."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model.raw_logits(x)


def default_backend():
    """``--backend``'s default: $PADDLESEG_CTX_BACKEND, else auto."""
    backend = os.environ.get(BACKEND_ENV) or 'auto'
    if backend not in BACKENDS:
        raise BackendError('{}={!r} is not a backend; use one of {}.'.format(
            BACKEND_ENV, backend, ', '.join(BACKENDS)))
    return backend


def backend_help():
    return (
        'What runs the network: auto (default; on CPU the fastest of '
        'onnxruntime and paddle whose output equals dygraph\'s on a probe '
        'image, else dygraph; dygraph on GPU), dygraph (the trained Paddle '
        'model), paddle (Paddle Inference) or onnxruntime (ONNX Runtime), on '
        'the model exported once into <SEG_HOME>/exported (or an export '
        'directory as --model_path); every protocol step around it is '
        'unchanged. ${} sets another default. Now: {}.'.format(
            BACKEND_ENV, default_backend()))


def load_model(builder, model_path, backend, cpu_threads=None, cache_dir=None):
    """The model val and predict run.

    Args:
        builder (SegBuilder): Of ``--config``.
        model_path (str|None): ``--model_path``: weights, or (not with
            dygraph) an export directory or its ``deploy.yaml``.
        backend (str): One of :data:`BACKENDS`.
        cpu_threads (int|None): Backend threads on CPU; None: one per core.
        cache_dir (str|None): Export cache; None:
            ``<SEG_HOME>/exported``.

    Returns:
        ``builder.model`` with the weights (dygraph), else an
        :class:`ExportedModel`.

    Raises:
        BackendError: The backend is not installed, the export failed, or
            the export directory does not fit.
    """
    if backend not in BACKENDS:
        raise BackendError('--backend must be one of {}, got {!r}.'.format(
            ', '.join(BACKENDS), backend))
    deploy_yaml = _deploy_yaml(model_path)
    if deploy_yaml and backend == 'dygraph':
        raise BackendError(
            '--model_path {} is an exported model; run it with --backend '
            'paddle or onnxruntime, or give the trained .pdparams for '
            'dygraph.'.format(model_path))
    if deploy_yaml:
        if backend == 'auto':
            backend = _export_dir_backend(deploy_yaml)
        return _from_export_dir(builder, deploy_yaml, backend, cpu_threads)
    model = builder.model
    load_trained_weights(model, model_path)
    if backend == 'dygraph':
        return model
    if backend == 'auto':
        return _fastest_correct(model, builder, cpu_threads, cache_dir)
    missing = _missing_package(backend)
    if missing:
        raise BackendError(missing)
    return _exported(model, builder, backend, cpu_threads, cache_dir)[0]


def _missing_package(backend):
    """What ``backend`` needs and is not installed, as a message, or None."""
    for module, package in _NEEDS[backend]:
        if importlib.util.find_spec(module) is None:
            return ('--backend {} needs {}, which is not installed (pip '
                    'install {}); or use --backend paddle or dygraph.'.format(
                        backend, module, package))
    return None


def _exported(model, builder, backend, cpu_threads, cache_dir):
    """``(ExportedModel, export directory)`` of ``model`` on ``backend``."""
    if getattr(model, 'data_format', 'NCHW') != 'NCHW':
        raise BackendError('--backend {} runs NCHW models only; drop '
                           '--data_format NHWC.'.format(backend))
    raw = hasattr(model, 'raw_logits')
    fmt = 'onnx' if backend == 'onnxruntime' else 'paddle'
    key = _cache_key(model, builder.config.model_cfg, fmt, raw)
    save_dir = _export_to_cache(model, raw, fmt,
                                os.path.join(cache_dir or _cache_root(), key))
    device = _device()
    try:
        if fmt == 'onnx':
            runner = OnnxRunner(
                os.path.join(save_dir, 'model.onnx'), cpu_threads, device)
        else:
            program = find_model_file(save_dir)
            params = os.path.join(save_dir, 'model.pdiparams')
            runner = InferenceRunner(
                program, params, cpu_threads,
                _use_onednn(program, params, device, save_dir), device)
    except Exception as err:  # noqa: BLE001  (said with the cause)
        raise BackendError('{} cannot load the export in {}: {}'.format(
            backend, save_dir, err)) from err
    align_corners = bool(getattr(model, 'align_corners', False))
    if raw:
        return ExportedRawModel(runner, align_corners,
                                getattr(model, 'align_mode', 0)), save_dir
    return ExportedModel(runner, align_corners), save_dir


def _fastest_correct(model, builder, cpu_threads, cache_dir):
    """``--backend auto`` for weights: see the module docstring."""
    if _device() != 'cpu':
        logger.info('--backend auto: dygraph (on GPU).')
        return model
    correct = []  # (ms, backend, model) of each backend giving its answer
    for backend in CPU_PREFERENCE:
        why = _missing_package(backend)
        if why is None:
            try:
                candidate, save_dir = _exported(model, builder, backend,
                                                cpu_threads, cache_dir)
                why = _differs_from_dygraph(model, candidate, save_dir)
            except BackendError as err:
                why = str(err)
        if why is None:
            correct.append((_forward_ms(backend, candidate, save_dir,
                                        cpu_threads or cpu_cores()),
                            backend, candidate))
        else:
            logger.info('--backend auto: not {}: {}'.format(backend, why))
    if not correct:
        logger.info('--backend auto: dygraph, as no faster backend gives its '
                    'answer here.')
        return model
    ms, backend, candidate = min(correct, key=lambda c: c[0])  # stable
    others = ''.join('; {} {:.0f} ms'.format(b, t) for t, b, _ in correct
                     if b != backend)
    logger.info('--backend auto: {} ({:.0f} ms per {}x{} image{}; its output '
                'equals dygraph\'s; --backend dygraph runs the trained model '
                'itself).'.format(backend, ms, TIMING_SHAPE[2],
                                  TIMING_SHAPE[3], others))
    return candidate


def _forward_ms(backend, candidate, memo_dir, threads):
    """Milliseconds of ``candidate`` (running on ``threads`` threads) on a
    :data:`TIMING_SHAPE` input, kept in ``memo_dir`` per CPU and thread
    count."""
    memo = os.path.join(memo_dir, 'speed.yaml')
    times = _read_memo(memo, lambda data: isinstance(data, dict) and all(
        isinstance(ms, (int, float)) for ms in data.values())) or {}
    machine = '{}, {} thread(s)'.format(cpu_info().model, threads)
    if machine not in times:
        logger.info('--backend auto: timing {} once on this machine...'.format(
            backend))
        times[machine] = _time_forward(candidate)
        atomic_write(memo, lambda tmp: _dump_yaml(times, tmp))
    return times[machine]


def _time_forward(candidate):
    x = np.random.RandomState(0).uniform(-2, 2, TIMING_SHAPE).astype(
        'float32')
    candidate(x)  # warm-up: the runtimes set up their kernels on first use
    best = float('inf')
    for _ in range(TIMING_RUNS):
        start = time.perf_counter()
        candidate(x)
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def _differs_from_dygraph(model, candidate, memo_dir):
    """None where ``candidate`` gives ``model``'s labels and logits on the
    probe image, else what differs (kept in ``memo_dir``: the export is of
    these weights only)."""
    memo = os.path.join(memo_dir, 'probe.yaml')
    kept = _read_memo(memo, lambda data: isinstance(data, dict) and (
        'differs' in data and isinstance(data['differs'], (str, type(None)))))
    if kept is not None:
        return kept['differs']
    x = np.random.RandomState(0).uniform(-2, 2, PROBE_SHAPE).astype('float32')
    raw = isinstance(candidate, ExportedRawModel)
    model.eval()
    with paddle.no_grad():
        expected = (model.raw_logits if raw else model)(paddle.to_tensor(x))
    expected = expected[0].numpy()
    actual = (candidate.raw_logits if raw else candidate)(x)[0].numpy()
    differs = logits_differ(actual, expected)
    atomic_write(memo, lambda tmp: _dump_yaml({'differs': differs}, tmp))
    return differs


def logits_differ(actual, expected, rtol=PROBE_RTOL):
    """None when ``actual`` has ``expected``'s shape and per-pixel labels
    and its logits are within ``rtol`` x the largest |expected|; else what
    differs, in words."""
    if actual.shape != expected.shape:
        return 'shape {} instead of {}'.format(list(actual.shape),
                                               list(expected.shape))
    flipped = float(np.mean(actual.argmax(1) != expected.argmax(1)))
    if flipped:
        return '{:.3%} of the probe\'s labels differ'.format(flipped)
    scale = max(float(np.abs(expected).max()), 1e-12)
    err = float(np.abs(actual - expected).max()) / scale
    if err > rtol:
        return 'logits differ by {:.2g} of their range (> {:g})'.format(
            err, rtol)
    return None


def _export_dir_backend(deploy_yaml):
    """``--backend auto`` for an export directory: ONNX Runtime where the
    export has an ONNX model and it is installed, else Paddle Inference
    (no dygraph to compare with: the export is what the user made)."""
    try:
        onnx = DeployConfig(deploy_yaml).onnx
    except ValueError:
        onnx = None  # _from_export_dir says what is wrong with the file
    backend = ('onnxruntime' if onnx and os.path.isfile(onnx) and
               importlib.util.find_spec('onnxruntime') else 'paddle')
    logger.info('--backend auto: {} for the export {}.'.format(
        backend, deploy_yaml))
    return backend


def _deploy_yaml(model_path):
    """``deploy.yaml`` of an export directory ``model_path`` (or the file
    itself), None for weights (checked when they are loaded)."""
    if not model_path or '://' in model_path:
        return None
    path = os.path.join(model_path, 'deploy.yaml')
    if os.path.isfile(path):
        return path
    return model_path if model_path.endswith(('.yml', '.yaml')) else None


def _from_export_dir(builder, deploy_yaml, backend, cpu_threads):
    try:
        deploy = DeployConfig(deploy_yaml)
        with open(deploy_yaml) as f:
            output_op = yaml.safe_load(f)['Deploy'].get('output_op', 'none')
    except (ValueError, OSError) as err:
        raise BackendError(str(err)) from err
    if output_op != 'none':
        raise BackendError(
            '{} was exported with --output_op {}; evaluation needs the '
            'logits: export again with --output_op none.'.format(
                deploy_yaml, output_op))
    if any(d is not None for d in deploy.input_shape[2:]):
        raise BackendError(
            '{} has the fixed input shape {}; evaluation feeds varying sizes: '
            'export again without --input_shape.'.format(
                deploy_yaml, deploy.input_shape))
    device = _device()
    onednn = (backend == 'paddle' and deploy.model is not None and
              _use_onednn(deploy.model, deploy.params, device))
    try:
        runner = create_runner(deploy, backend, device, cpu_threads, onednn)
        # PaddleSeg's exports may not say their output op: look at one.
        out = runner(np.zeros([1, 3, 33, 47], 'float32'))
    except Exception as err:  # noqa: BLE001  (said with the cause)
        raise BackendError('{} cannot run {}: {}'.format(
            backend, deploy_yaml, err)) from err
    if out.ndim != 4 or out.dtype.kind != 'f':
        raise BackendError(
            '{} returns {} {} instead of [N, C, H, W] logits; export again '
            'with --output_op none.'.format(deploy_yaml, out.dtype,
                                            list(out.shape)))
    logger.info('Running {} in {}.'.format(deploy_yaml, backend))
    return ExportedModel(runner, _config_align_corners(builder.config))


def _config_align_corners(cfg):
    """``align_corners`` of the config's model without building it: the
    config's value, else the model class's default."""
    model_cfg = cfg.model_cfg
    if 'align_corners' in model_cfg:
        return bool(model_cfg['align_corners'])
    model_class = manager.MODELS[model_cfg['type']]
    parameter = inspect.signature(model_class).parameters.get('align_corners')
    return bool(parameter is not None and parameter.default is True)


def _use_onednn(program, params, device, memo_dir=None):
    """Whether Paddle Inference may use oneDNN for this program on
    ``device``: only on CPU and where it gives the plain output (the answer
    is kept in ``memo_dir``)."""
    if device != 'cpu':
        return False
    memo = memo_dir and os.path.join(memo_dir, 'onednn.yaml')
    kept = memo and _read_memo(memo, lambda data: isinstance(
        data, list) and len(data) == 2 and isinstance(data[0], bool))
    if kept:
        works, why = kept
    else:
        logger.info('Checking whether oneDNN runs this program correctly...')
        works, why = onednn_works(program, params)
        if memo:
            atomic_write(memo, lambda tmp: _dump_yaml([works, why], tmp))
    logger.info('Paddle Inference runs with oneDNN.' if works else
                'Paddle Inference runs without oneDNN, which fails on this '
                'program here: {}'.format(why))
    return works


def _read_memo(memo, valid):
    """What the YAML file ``memo`` keeps, where ``valid(data)``; None when
    it is missing or damaged (then the caller works it out again)."""
    if not os.path.isfile(memo):
        return None
    try:
        with open(memo) as f:
            data = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as err:
        data = err
    if not isinstance(data, Exception) and valid(data):
        return data
    logger.warning('{} is damaged ({:.80}); checking again.'.format(
        memo, str(data).replace('\n', ' ')))
    return None


def _dump_yaml(data, path):
    with open(path, 'w') as f:
        yaml.safe_dump(data, f)


def _device():
    return 'gpu' if paddle.get_device().startswith('gpu') else 'cpu'


def _cache_root():
    return os.path.join(seg_env.SEG_HOME, 'exported')


def _cache_key(model, model_cfg, fmt, raw):
    """Hash of what decides the exported program: the model config, the
    weights, the source files of the model's layers, and the versions."""
    digest = hashlib.sha256()
    digest.update(yaml.safe_dump({
        'model': model_cfg,
        'format': fmt,
        'raw_logits': raw,
        'paddle': paddle.__version__,
        'paddleseg_ctx': __version__,
    }, sort_keys=True).encode())
    modules = sorted({type(layer).__module__
                      for layer in model.sublayers(include_self=True)})
    for name in modules:
        source = getattr(sys.modules.get(name), '__file__', None)
        if source and os.path.isfile(source):
            with open(source, 'rb') as f:
                digest.update(f.read())
    for name, value in model.state_dict().items():
        digest.update(name.encode())
        digest.update(value.numpy().tobytes())
    return digest.hexdigest()[:20]


def _export_to_cache(model, raw, fmt, save_dir):
    """Export ``model`` (its ``raw_logits`` with ``raw``) to ``save_dir``
    unless it is there; written in a temporary directory renamed into
    place, so ``save_dir`` is complete or absent."""
    if os.path.isdir(save_dir):
        logger.info('Reusing the exported model in {}.'.format(save_dir))
        return save_dir
    runtime = 'ONNX Runtime' if fmt == 'onnx' else 'Paddle Inference'
    logger.info('Exporting the model for {} to {} (once for these '
                'weights)...'.format(runtime, save_dir))
    root = os.path.dirname(save_dir)
    os.makedirs(root, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=os.path.basename(save_dir) + '.',
                           suffix='.tmp', dir=root)
    try:
        program, params = save_inference_model(
            _RawLogits(model) if raw else model, tmp, output_op='none')
        if fmt == 'onnx':
            export_onnx(program, params, os.path.join(tmp, 'model.onnx'))
            for path in os.listdir(tmp):
                if not path.endswith('.onnx'):
                    os.remove(os.path.join(tmp, path))
        try:
            os.replace(tmp, save_dir)
        except OSError:
            if not os.path.isdir(save_dir):  # else another run was first
                raise
    except Exception as err:  # noqa: BLE001  (said with the cause)
        raise BackendError(
            'Could not export the model for {}: {}: {}. Use --backend '
            'dygraph, or export it yourself (python -m paddleseg_ctx.export '
            '--output_op none) and pass that directory as --model_path.'
            .format(fmt, type(err).__name__, err)) from err
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return save_dir
