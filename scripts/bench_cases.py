"""What ``scripts/benchmark.py`` times: the model families, how each
implementation of a family is built with the same weights, and the worker
process that runs one case on request.

Implementations of a family:

- ``dygraph``      ours (paddleseg_ctx), Paddle dygraph
- ``paddleseg``    PaddleSeg 2.8's class, Paddle dygraph, our weights loaded
- ``torch``        the PyTorch original (mmseg GCNet, sssegmentation ISNet),
                   eager; our weights are converted from its checkpoint
- ``paddle``       ours exported, Paddle Inference, with oneDNN where it
                   gives the plain output (as ``val --backend paddle``)
- ``onnxruntime``  ours exported, ONNX Runtime

Module level imports only the standard library: a worker imports what its
own case needs, so its memory baseline holds nothing else.
"""
import copy
import os
import resource
import shutil
import statistics
import subprocess
import tempfile
import time
import traceback
from typing import NamedTuple, Optional

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPTS = os.path.join(REPO, 'scripts')

DYGRAPH_IMPLS = ('dygraph', 'paddleseg', 'torch')
DEPLOYED_IMPLS = ('paddle', 'onnxruntime')
IMPLS = DYGRAPH_IMPLS + DEPLOYED_IMPLS


class Family(NamedTuple):
    # Our config of the published form (a row of configs/model_zoo.yml).
    config: str
    # PaddleSeg 2.8's class of the model, and the keys of our model config
    # it does not take (it fixes them).
    paddleseg: Optional[str] = None
    paddleseg_fixed: tuple = ()
    # The PyTorch original: (key of TORCH_BUILDERS, its name there).
    torch: Optional[tuple] = None
    # A small backbone for --quick, where PaddleSeg's class takes one.
    quick_backbone: Optional[dict] = None


FAMILIES = {
    'GINet': Family(
        'configs/ginet/ginet_resnet50vd_os8_cityscapes_1024x512_80k.yml',
        paddleseg='GINet'),  # PaddleSeg's heads hard-code ResNet50's widths
    'ISANet': Family(
        'configs/isanet/isanet_resnet50vd_os8_cityscapes_769x769_80k.yml',
        paddleseg='ISANet', paddleseg_fixed=('align_mode', )),
    'GCNet': Family(
        'configs/gcnet/gcnet_resnet50vd_os8_cityscapes_1024x512_80k.yml',
        paddleseg='GCNet',
        quick_backbone={'type': 'ResNet18_vd', 'output_stride': 8}),
    'GCNet-mmseg': Family(
        'configs/gcnet/gcnet_resnet50v1c_os8_cityscapes_1024x512_40k.yml',
        torch=('mmseg', 'gcnet_r50-d8_4xb2-40k_cityscapes-512x1024.py')),
    'ISNet-R50': Family(
        'configs/isnet/isnet_resnet50v1c_os8_ade20k_512x512_164190.yml',
        torch=('ssseg', 'R50-ADE20K')),
    'ISNet-S101': Family(
        'configs/isnet/isnet_resnest101_os8_ade20k_512x512_227340.yml',
        torch=('ssseg', 'S101-ADE20K')),
}


def has_impl(family, impl):
    """Whether ``family`` has an implementation ``impl`` at all."""
    if impl == 'paddleseg':
        return family.paddleseg is not None
    if impl == 'torch':
        return family.torch is not None
    return True


# -- memory -------------------------------------------------------------------

def memory_mb():
    """(current RSS, peak RSS = VmHWM) of this process in MiB."""
    values = {}
    with open('/proc/self/status') as f:
        for line in f:
            key, _, rest = line.partition(':')
            if key in ('VmRSS', 'VmHWM'):
                values[key] = int(rest.split()[0]) / 1024
    if 'VmHWM' not in values:  # not Linux: getrusage's peak (KiB on Linux)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        values = {'VmRSS': peak, 'VmHWM': peak}
    return values['VmRSS'], values['VmHWM']


# -- models -------------------------------------------------------------------

def _strip_pretrained(node):
    """The model dict without any ``pretrained`` (no downloads)."""
    if isinstance(node, dict):
        return {k: _strip_pretrained(v) for k, v in node.items()
                if k != 'pretrained'}
    return node


def load_config(family, quick):
    """Our config's ``model`` dict, without pretrained weights (--quick
    swaps in the family's small backbone), and its ``loss`` dict."""
    import paddleseg_ctx  # noqa: F401  (registers our components)
    from paddleseg.cvlibs import Config, SegBuilder
    cfg = Config(os.path.join(REPO, family.config))
    model = _strip_pretrained(cfg.dic['model'])
    # As SegBuilder does: the data set class knows the class count.
    model.setdefault('num_classes', getattr(
        SegBuilder(cfg).train_dataset_class, 'NUM_CLASSES', None))
    if quick and family.quick_backbone:
        model['backbone'] = dict(family.quick_backbone)
    return model, cfg.dic['loss']


def build_paddle(model):
    """A Paddle model from a config ``model`` dict."""
    import paddleseg_ctx  # noqa: F401
    from paddleseg.cvlibs import manager
    model = copy.deepcopy(model)
    backbone = model.pop('backbone')
    backbone = manager.BACKBONES[backbone.pop('type')](**backbone)
    return manager.MODELS[model.pop('type')](backbone=backbone, **model)


def paddleseg_dict(family, model):
    """Our model dict for PaddleSeg's class of the family."""
    theirs = {k: v for k, v in model.items()
              if k not in family.paddleseg_fixed}
    theirs['type'] = family.paddleseg
    return theirs


def build_mmseg(name, num_classes):
    from paddleseg_ctx.testing.references import mmseg_gcnet
    return mmseg_gcnet(name, num_classes)


def build_ssseg(name, num_classes):
    from paddleseg_ctx.testing.references import (SSSEG_ISNET_CASES,
                                                   ssseg_isnet)
    return ssseg_isnet(SSSEG_ISNET_CASES[name], num_classes)


TORCH_BUILDERS = {'mmseg': build_mmseg, 'ssseg': build_ssseg}


def build_torch(family, num_classes, checkpoint=None):
    """The PyTorch original with random weights, or those of ``checkpoint``
    (written by :func:`prepare`)."""
    import torch
    kind, name = family.torch
    model = TORCH_BUILDERS[kind](name, num_classes)
    if checkpoint:
        model.load_state_dict(torch.load(checkpoint)['state_dict'])
    return model


def torch_skip_reason():
    """Why the PyTorch originals cannot be imported here, or None."""
    from paddleseg_ctx.testing.references import (ReferenceUnavailable,
                                                   import_mmseg, import_ssseg)
    try:
        import_mmseg()
        import_ssseg()
    except ReferenceUnavailable as err:
        return str(err)
    return None


# -- multiply-adds ------------------------------------------------------------

def count_macs(model, shape):
    """Multiply-adds of one eval forward of ``model`` on ``shape``
    (``paddleseg_ctx.analysis.count_macs``: Conv2D, Linear, matmul/bmm),
    imported on use to keep this module's imports to the standard
    library."""
    from paddleseg_ctx.analysis import count_macs as count
    return count(model, shape)


# -- preparation (once per family, in its own process) ------------------------

def prepare(family_name, workdir, quick, sizes, export):
    """Write the family's shared weights (``weights.pdparams``, and
    ``torch.pth`` for a PyTorch original, from which ours are converted),
    our exported model, and count multiply-adds at each eval size.

    Returns a dict: ``model`` and ``loss`` (our config's dicts),
    ``num_classes``, ``macs`` {size: count}, ``skipped`` {impl: reason},
    ``onednn``: whether Paddle Inference uses oneDNN for our program, as
    ``val --backend paddle`` decides (where it gives the plain output).
    """
    import paddle
    from paddleseg_ctx.testing.random_weights import randomize
    from paddleseg_ctx.weights import check_state_dict, convert_checkpoint

    family = FAMILIES[family_name]
    model, loss = load_config(family, quick)
    ours = build_paddle(model)
    skipped, onednn = {}, False
    reason = torch_skip_reason() if family.torch else None
    if reason:
        skipped['torch'] = reason
    if family.torch and not reason:
        import torch
        original = build_torch(family, model['num_classes'])
        checkpoint = os.path.join(workdir, 'torch.pth')
        torch.save({'state_dict': original.state_dict()}, checkpoint)
        state = convert_checkpoint(checkpoint)
        check_state_dict(ours, state, source=checkpoint)  # every weight
        ours.set_state_dict(state)
    else:
        randomize(ours)
    paddle.save(ours.state_dict(), os.path.join(workdir, 'weights.pdparams'))
    macs = {size_name(s): count_macs(ours, (1, 3) + tuple(s)) for s in sizes}
    if export:
        skipped.update(export_ours(ours, workdir))
        if 'paddle' not in skipped:
            from paddleseg_ctx.deploy.backends import onednn_works
            from paddleseg_ctx.deploy.config import find_model_file
            save_dir = os.path.join(workdir, 'deploy')
            onednn, _ = onednn_works(find_model_file(save_dir),
                                     os.path.join(save_dir, 'model.pdiparams'))
    return {'model': model, 'loss': loss, 'num_classes': model['num_classes'],
            'macs': macs, 'skipped': skipped, 'onednn': onednn}


def export_ours(model, workdir):
    """Paddle Inference program and ONNX model of ``model`` in
    ``workdir/deploy``; returns {impl: reason} for what failed."""
    from paddleseg_ctx.deploy import export_onnx, save_inference_model
    save_dir = os.path.join(workdir, 'deploy')
    try:
        program, params = save_inference_model(model, save_dir,
                                               output_op='none')
    except Exception as err:  # noqa: BLE001  (reported as a skipped case)
        reason = 'export failed: {}: {}'.format(type(err).__name__, err)
        return {'paddle': reason, 'onnxruntime': reason}
    try:
        export_onnx(program, params, os.path.join(save_dir, 'model.onnx'))
    except Exception as err:  # noqa: BLE001
        return {'onnxruntime': 'ONNX export failed: {}: {}'.format(
            type(err).__name__, err)}
    return {}


def size_name(size):
    return '{}x{}'.format(*size)


# -- steps: what one case runs once -------------------------------------------

def _input(shape, seed=0):
    import numpy as np
    return np.random.RandomState(seed).uniform(-1, 1, shape).astype('float32')


def _label(shape, num_classes, seed=1):
    import numpy as np
    return np.random.RandomState(seed).randint(
        0, num_classes, shape).astype('int64')


def _paddle_model(spec):
    import paddle
    from paddleseg_ctx.weights import check_state_dict
    family = FAMILIES[spec['family']]
    model = spec['model']
    if spec['impl'] == 'paddleseg':
        model = paddleseg_dict(family, model)
    model = build_paddle(model)
    state = paddle.load(os.path.join(spec['workdir'], 'weights.pdparams'))
    check_state_dict(model, state, source='benchmark weights')  # same weights
    model.set_state_dict(state)
    return model


def paddle_step(spec):
    import paddle
    import paddle.nn.functional as F
    model = _paddle_model(spec)
    x = paddle.to_tensor(_input(spec['shape']))
    if spec['mode'] == 'eval':
        model.eval()

        def step():
            with paddle.no_grad():
                model(x)
        return step

    model.train()
    label = paddle.to_tensor(_label(
        [spec['shape'][0]] + list(spec['shape'][2:]), spec['num_classes']))
    optimizer = paddle.optimizer.Momentum(
        0.01, momentum=0.9, parameters=model.parameters(),
        weight_decay=paddle.regularizer.L2Decay(5e-4))

    def step():
        logits = model(x)
        loss = sum(coef * F.cross_entropy(logit, label, axis=1)
                   for coef, logit in zip(spec['loss_coefs'], logits))
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
    return step


def torch_step(spec):
    import torch
    import torch.nn.functional as F
    torch.set_num_threads(spec['threads'])
    kind = FAMILIES[spec['family']].torch[0]
    model = build_torch(FAMILIES[spec['family']], spec['num_classes'],
                        os.path.join(spec['workdir'], 'torch.pth'))
    x = torch.from_numpy(_input(spec['shape']))
    if spec['mode'] == 'eval':
        model.eval()
        forward = TORCH_EVAL[kind]

        def step():
            with torch.no_grad():
                F.interpolate(forward(model, x), x.shape[2:], mode='bilinear',
                              align_corners=False)
        return step

    model.train()
    label = torch.from_numpy(_label(
        [spec['shape'][0]] + list(spec['shape'][2:]), spec['num_classes']))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9,
                                weight_decay=5e-4)
    loss_of = TORCH_LOSS[kind]

    def step():
        loss_of(model, x, label, spec['loss_coefs']).backward()
        optimizer.step()
        optimizer.zero_grad()
    return step


def mmseg_eval(model, x):
    """Decode logits at feature resolution (mmseg's ``encode_decode``
    before its resize)."""
    return model.decode_head(model.extract_feat(x))


def mmseg_loss(model, x, label, coefs):
    """mmseg's training loss: decode and auxiliary logits resized to the
    label, cross-entropy weighted by ``coefs`` (``loss_by_feat`` of each
    head; mmseg's configs weigh them 1 and 0.4, as ours)."""
    import torch.nn.functional as F
    feats = model.extract_feat(x)
    return sum(
        coef * F.cross_entropy(
            F.interpolate(head(feats), label.shape[1:], mode='bilinear',
                          align_corners=False), label, ignore_index=255)
        for coef, head in zip(coefs,
                              (model.decode_head, model.auxiliary_head)))


def ssseg_eval(model, x):
    """Stage-2 logits at feature resolution (ISNet's TEST forward)."""
    from ssseg.modules.utils import SSSegInputStructure
    return model(SSSegInputStructure(images=x, mode='TEST')).seg_logits


def ssseg_loss(model, x, label, coefs):
    """ISNet's own TRAIN forward, which computes its three losses
    (cross-entropy weighted by ``coefs``: stage 2, stage 1, auxiliary)."""
    from ssseg.modules.utils import SSSegInputStructure
    model.mode = 'TRAIN'
    model.cfg['losses'] = {
        name: {'type': 'CrossEntropyLoss', 'scale_factor': coef,
               'ignore_index': 255, 'reduction': 'mean'}
        for name, coef in zip(
            ('loss_cls_stage2', 'loss_cls_stage1', 'loss_aux'), coefs)}
    return model(SSSegInputStructure(images=x, seg_targets=label,
                                     mode='TRAIN')).loss


TORCH_EVAL = {'mmseg': mmseg_eval, 'ssseg': ssseg_eval}
TORCH_LOSS = {'mmseg': mmseg_loss, 'ssseg': ssseg_loss}


def deployed_step(spec):
    save_dir = os.path.join(spec['workdir'], 'deploy')
    if spec['impl'] == 'paddle':
        from paddleseg_ctx.deploy import InferenceRunner
        from paddleseg_ctx.deploy.config import find_model_file
        runner = InferenceRunner(find_model_file(save_dir),
                                 os.path.join(save_dir, 'model.pdiparams'),
                                 cpu_threads=spec['threads'],
                                 enable_mkldnn=spec['onednn'])
    else:
        from paddleseg_ctx.deploy import OnnxRunner
        runner = OnnxRunner(os.path.join(save_dir, 'model.onnx'),
                            cpu_threads=spec['threads'])
    x = _input(spec['shape'])
    return lambda: runner(x)


STEPS = {'dygraph': paddle_step, 'paddleseg': paddle_step,
         'torch': torch_step, 'paddle': deployed_step,
         'onnxruntime': deployed_step}

# What a worker imports before its baseline RSS is read: the framework of
# its case, so that the baseline holds the libraries and the increase holds
# the model, its activations and the runtime's buffers.
FRAMEWORKS = {'dygraph': ('paddle', 'paddleseg', 'paddleseg_ctx'),
              'paddleseg': ('paddle', 'paddleseg', 'paddleseg_ctx'),
              'torch': ('torch', 'paddle', 'paddleseg_ctx'),
              'paddle': ('paddle.inference', ),
              'onnxruntime': ('onnxruntime', )}


# -- the worker ---------------------------------------------------------------

def serve(conn, spec):
    """Worker main: build the case, answer 'run' with the seconds one step
    took, and 'stop' with the memory figures (MiB)."""
    import importlib
    try:
        for name in FRAMEWORKS[spec['impl']]:
            importlib.import_module(name)
        if spec['impl'] == 'torch':
            from paddleseg_ctx.testing.references import (import_mmseg,
                                                           import_ssseg)
            (import_mmseg if FAMILIES[spec['family']].torch[0] == 'mmseg'
             else import_ssseg)()
        baseline, _ = memory_mb()
        step = STEPS[spec['impl']](spec)
    except BaseException as err:  # noqa: B902  (reported, not raised)
        conn.send({'error': _describe(err)})
        return
    conn.send({'ready': True})
    while True:
        command = conn.recv()
        if command == 'run':
            try:
                start = time.perf_counter()
                step()
                conn.send({'seconds': time.perf_counter() - start})
            except BaseException as err:  # noqa: B902
                conn.send({'error': _describe(err)})
                return
        else:
            rss, peak = memory_mb()
            conn.send({'baseline_mb': baseline, 'rss_mb': rss,
                       'peak_mb': peak, 'peak_increase_mb': peak - baseline})
            return


def _describe(err):
    text = '{}: {}'.format(type(err).__name__, err).strip()
    if not isinstance(err, (ImportError, MemoryError)):
        last = traceback.extract_tb(err.__traceback__)[-1:]
        if last:
            text += ' ({}:{})'.format(os.path.basename(last[0].filename),
                                      last[0].lineno)
    return text.splitlines()[0][:300]


# -- one-shot measurements (each in its own process) --------------------------

def gemm_peak(n, repeats, threads):
    """Best GFLOP/s of an n x n float32 matmul in numpy, Paddle and ONNX
    Runtime (whose own GEMM, MLAS, can beat numpy's BLAS); the peak is the
    best of them."""
    import numpy as np
    import paddle
    a = np.random.RandomState(0).standard_normal((n, n)).astype('float32')
    b = np.random.RandomState(1).standard_normal((n, n)).astype('float32')
    pa, pb = paddle.to_tensor(a), paddle.to_tensor(b)
    runs = {'numpy': lambda: a @ b, 'paddle': lambda: paddle.matmul(pa, pb)}
    session = _onnx_matmul(n, threads)
    if session is not None:
        runs['onnxruntime'] = lambda: session.run(None, {'a': a, 'b': b})
    result = {'n': n}
    for name, run in runs.items():
        run()  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
        result[name + '_gflops'] = 2 * n ** 3 / min(times) / 1e9
    result['peak_gflops'] = max(v for k, v in result.items()
                                if k.endswith('_gflops'))
    return result


def _onnx_matmul(n, threads):
    """An ONNX Runtime session of one n x n MatMul, or None without it."""
    try:
        import onnx
        import onnxruntime
    except ImportError:
        return None
    from onnx import helper

    def tensor(name):
        return helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT,
                                             [n, n])
    graph = helper.make_graph(
        [helper.make_node('MatMul', ['a', 'b'], ['c'])], 'gemm',
        [tensor('a'), tensor('b')], [tensor('c')])
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid('', 13)])
    model.ir_version = 8  # readable by every onnxruntime of the last years
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    return onnxruntime.InferenceSession(model.SerializeToString(), options,
                                        providers=['CPUExecutionProvider'])


def fma_peak(threads):
    """The machine's float32 FMA peak over ``threads`` cores: one copy of
    scripts/fma_peak.c per thread at once, built with the system's C compiler
    for this CPU.  No GEMM or convolution can run faster.  Without a
    compiler (or on a CPU without FMA) the result says why it is missing."""
    compiler = next(filter(None, map(shutil.which, ('cc', 'gcc', 'clang'))),
                    None)
    if compiler is None:
        return {'status': 'skipped', 'reason': 'no C compiler (cc) found'}
    with tempfile.TemporaryDirectory(prefix='fma_peak_') as tmp:
        exe = os.path.join(tmp, 'fma_peak')
        build = subprocess.run(
            [compiler, '-O2', '-march=native',
             os.path.join(SCRIPTS, 'fma_peak.c'), '-o', exe],
            capture_output=True, text=True)
        if build.returncode:
            lines = build.stderr.strip().splitlines() or ['no message']
            return {'status': 'skipped', 'reason': 'could not build '
                    'scripts/fma_peak.c: ' + lines[-1]}
        runs = [subprocess.Popen([exe], stdout=subprocess.PIPE, text=True)
                for _ in range(threads)]
        outputs = [run.communicate()[0].split() for run in runs]
    per_thread = [float(out[1]) for out in outputs]
    return {'status': 'ok', 'isa': outputs[0][0], 'threads': threads,
            'per_thread_gflops': per_thread, 'peak_gflops': sum(per_thread)}


def slc(size, num_classes, repeats):
    """bench_slc.py's comparison at one feature-map size, every class
    present (the loop's worst case) and a realistic 20."""
    import numpy as np
    from bench_slc import compare  # next to this file, like this module
    rng = np.random.RandomState(0)
    h, w = size
    return [compare(h, w, 512, num_classes, present, repeats, False, rng)
            for present in (0, 20)]


def median_ms(seconds):
    return statistics.median(seconds) * 1e3
