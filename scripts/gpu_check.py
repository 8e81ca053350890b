"""GPU check (not part of CI): in a few minutes on a GPU machine, does every
model family train in float32 and under AMP, convert BatchNorm to SyncBN on
two ranks, export, and give dygraph's answer in Paddle Inference (TensorRT
where the build has it) and ONNX Runtime's CUDA provider, and how fast?

    bash scripts/gpu_check.sh [--out DIR] [--families ginet isnet] [--iters N]
    bash scripts/gpu_check.sh --dry_run     # plan and build every command, no GPU

For each family at its published crop (the config in ``PLAN`` below, on
synthetic images of that size, backbone without ImageNet weights): train
``--iters`` iterations (30) in fp32, AMP O1 and AMP O2 through
``python -m paddleseg_ctx.train`` (PaddleSeg 2.8's loop and flags); losses
finite and falling; iterations per second and peak GPU memory next to
PaddleSeg's own GINet/ISANet/GCNet on the same settings.  Two ranks
(``paddle.distributed.launch``, SyncBN) when two GPUs are visible.  Export
the fp32 weights (``python -m paddleseg_ctx.export``, logits out) and compare
Paddle Inference on GPU, TensorRT fp32/fp16, ONNX Runtime CUDA, and dygraph
under AMP fp16 and bf16 with the float32 dygraph model; eval images per
second for each.  bf16 *training* is not run: PaddleSeg 2.8's train takes
``--precision fp32|fp16`` only.

One table on stdout, everything in ``OUT/gpu_check.json``; exit status 1 if
any step failed (each failure says which command and where its log is).
"""
import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import time

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Family -> the config of its published crop, and the model section of
# PaddleSeg 2.8's own class on the same settings (None: PaddleSeg has none).
PLAN = {
    'ginet': {
        'config': 'configs/ginet/ginet_resnet50vd_os8_cityscapes_1024x512_80k.yml',
        'crop': [1024, 512],
        'paddleseg': {'type': 'GINet', 'backbone_indices': [0, 1, 2, 3],
                      'enable_auxiliary_loss': True, 'jpu': True,
                      'align_corners': True},
    },
    'isanet': {
        'config': 'configs/isanet/isanet_resnet50vd_os8_cityscapes_769x769_80k.yml',
        'crop': [769, 769],
        'paddleseg': {'type': 'ISANet', 'backbone_indices': [2, 3],
                      'isa_channels': 256, 'down_factor': [8, 8],
                      'enable_auxiliary_loss': True, 'align_corners': False},
    },
    'gcnet': {
        'config': 'configs/gcnet/gcnet_resnet50vd_os8_cityscapes_1024x512_80k.yml',
        'crop': [1024, 512],
        'paddleseg': {'type': 'GCNet', 'backbone_indices': [2, 3],
                      'gc_channels': 512, 'ratio': 0.25,
                      'enable_auxiliary_loss': True, 'align_corners': False},
    },
    'isnet': {
        'config': 'configs/isnet/isnet_resnet50v1c_os8_cityscapes_1024x512_81840.yml',
        'crop': [1024, 512],
        'paddleseg': None,
    },
}

TRAIN_MODES = {
    'fp32': [],
    'amp_o1': ['--precision', 'fp16', '--amp_level', 'O1'],
    'amp_o2': ['--precision', 'fp16', '--amp_level', 'O2'],
}
NUM_CLASSES = 6  # synthetic data set
BATCH_SIZE = 2  # per GPU, as the published Cityscapes recipes
PEAK = 'GPU_CHECK_PEAK_MB='
RESULT = 'GPU_CHECK_RESULT='
# Eval comparisons with float32 dygraph: (largest |logit difference| /
# largest |logit|, share of equal labels).
TOLERANCE = {'fp32': (1e-3, 0.999), 'half': (0.05, 0.99)}


def python():
    return [sys.executable]


def data_dir(out, crop):
    return os.path.join(out, 'data', '{}x{}'.format(*crop))


def write_config(out, family, entry, ours):
    """The derived config of one family: its published recipe on synthetic
    images of its crop; ``ours`` False: PaddleSeg's class instead."""
    root = data_dir(out, entry['crop'])
    dic = {
        '_base_': os.path.join(ROOT, entry['config']),
        'train_dataset': {
            '_inherited_': False, 'type': 'Dataset', 'dataset_root': root,
            'train_path': os.path.join(root, 'train.txt'),
            'num_classes': NUM_CLASSES, 'mode': 'train',
            'transforms': [
                {'type': 'RandomPaddingCrop', 'crop_size': entry['crop']},
                {'type': 'RandomHorizontalFlip'}, {'type': 'Normalize'}]},
        'val_dataset': {
            '_inherited_': False, 'type': 'Dataset', 'dataset_root': root,
            'val_path': os.path.join(root, 'val.txt'),
            'num_classes': NUM_CLASSES, 'mode': 'val',
            'transforms': [{'type': 'Normalize'}]},
        'export': {'_inherited_': False,
                   'transforms': [{'type': 'Normalize'}]},
        'batch_size': BATCH_SIZE,
    }
    if ours:
        dic['model'] = {'backbone': {'pretrained': None}}
    else:
        backbone = _backbone(entry['config'])
        dic['model'] = dict(entry['paddleseg'], _inherited_=False,
                            backbone=dict(backbone, pretrained=None))
    name = '{}{}.yml'.format(family, '' if ours else '_paddleseg')
    path = os.path.join(out, 'configs', name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        yaml.safe_dump(dic, f, sort_keys=False)
    return path


def _backbone(config):
    """The backbone section a config resolves to (through its _base_)."""
    from paddleseg_ctx.config import read_config
    return dict(read_config(os.path.join(ROOT, config)).dic['model']['backbone'])


def plan(out, families, iters, gpus, modes=tuple(TRAIN_MODES),
         paddleseg=True, tensorrt=True):
    """Every step: name, kind, command (argv), what it needs."""
    steps = []
    for crop in sorted({tuple(PLAN[f]['crop']) for f in families}):
        steps.append({
            'name': 'data {}x{}'.format(*crop), 'kind': 'data',
            'argv': python() + ['-m', 'paddleseg_ctx.datasets', '--root',
                                data_dir(out, crop), '--size', str(crop[0]),
                                str(crop[1]), '--num_train', '8',
                                '--num_val', '2', '--num_classes',
                                str(NUM_CLASSES)]})
    for family in families:
        entry = PLAN[family]
        configs = {'ours': write_config(out, family, entry, True)}
        if entry['paddleseg'] and paddleseg:
            configs['paddleseg'] = write_config(out, family, entry, False)
        for impl, config in configs.items():
            for mode in ('fp32', ) + tuple(m for m in modes if m != 'fp32'):
                flags = TRAIN_MODES[mode]
                save_dir = os.path.join(out, 'runs', family, impl, mode)
                steps.append({
                    'name': '{} {} train {}'.format(family, impl, mode),
                    'kind': 'train', 'family': family, 'impl': impl,
                    'mode': mode, 'config': config, 'save_dir': save_dir,
                    'argv': python() + [__file__, '--child', 'train', '--'] +
                    train_args(config, save_dir, iters) + flags})
        save_dir = os.path.join(out, 'runs', family, 'ours', 'two_ranks')
        steps.append({
            'name': '{} ours train fp32 2 ranks (SyncBN)'.format(family),
            'kind': 'train', 'family': family, 'impl': 'ours',
            'mode': 'fp32_2ranks', 'config': configs['ours'],
            'save_dir': save_dir, 'needs_gpus': 2,
            'argv': python() + ['-m', 'paddle.distributed.launch', '--gpus',
                                '0,1', '--log_dir',
                                os.path.join(save_dir, 'launch')] + python() +
            ['-m', 'paddleseg_ctx.train'] +
            train_args(configs['ours'], save_dir, iters)})
        weights = os.path.join(out, 'runs', family, 'ours', 'fp32',
                               'iter_{}'.format(iters), 'model.pdparams')
        export_dir = os.path.join(out, 'export', family)
        steps.append({
            'name': '{} export'.format(family), 'kind': 'export',
            'family': family,
            'argv': python() + ['-m', 'paddleseg_ctx.export', '--config',
                                configs['ours'], '--model_path', weights,
                                '--save_dir', export_dir, '--format', 'both',
                                '--output_op', 'none']})
        steps.append({
            'name': '{} eval backends'.format(family), 'kind': 'eval',
            'family': family,
            'argv': python() + [__file__, '--child', 'eval', '--config',
                                configs['ours'], '--model_path', weights,
                                '--export_dir', export_dir, '--crop'] +
            [str(v) for v in entry['crop']] +
            ([] if tensorrt else ['--no_tensorrt'])})
    for step in steps:
        needs = step.get('needs_gpus', 1)
        if gpus is not None and gpus < needs:
            step['skip'] = 'needs {} GPUs, {} visible'.format(needs, gpus)
    return steps


def train_args(config, save_dir, iters):
    # --keep_total_batch off: one iteration is one batch of 2 per GPU for
    # ours and PaddleSeg's class alike (no accumulation to a published total).
    return ['--config', config, '--device', 'gpu', '--iters', str(iters),
            '--keep_total_batch', 'off',
            '--save_interval', str(iters), '--log_iters', '1',
            '--num_workers', '2', '--seed', '0', '--save_dir', save_dir]


# --------------------------------------------------------------------------
# Running and reading the steps


def run_step(step, out):
    log = os.path.join(out, 'logs', re.sub(r'\W+', '_', step['name']) + '.log')
    os.makedirs(os.path.dirname(log), exist_ok=True)
    start = time.time()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (ROOT, os.environ.get('PYTHONPATH')) if p))
    with open(log, 'w') as f:
        proc = subprocess.run(step['argv'], stdout=f, stderr=subprocess.STDOUT,
                              cwd=ROOT, env=env, check=False)
    text = open(log, errors='replace').read()
    if step['kind'] == 'train' and step['mode'] == 'fp32_2ranks':
        workers = os.path.join(step['save_dir'], 'launch')
        for name in sorted(os.listdir(workers)) if os.path.isdir(workers) else ():
            text += open(os.path.join(workers, name), errors='replace').read()
    result = {'log': log, 'seconds': round(time.time() - start, 1),
              'returncode': proc.returncode}
    problem = None if proc.returncode == 0 else 'exit status {}'.format(
        proc.returncode)
    if problem is None and step['kind'] == 'train':
        problem = read_train(text, result)
    if problem is None and step['kind'] == 'eval':
        problem = read_eval(text, result)
    result['status'] = 'ok' if problem is None else 'FAILED: ' + problem
    return result


def read_train(text, result):
    """Losses and speed from PaddleSeg's [TRAIN] lines; the peak memory the
    child printed."""
    rows = re.findall(r'\[TRAIN\].*?iter: (\d+)/\d+, loss: ([-+0-9.naNinfINF]+)'
                      r'.*?batch_cost: ([0-9.]+)', text)
    if not rows:
        return 'no [TRAIN] line in the log'
    losses = [float(loss) for _, loss, _ in rows]
    costs = [float(cost) for _, _, cost in rows]
    result['losses'] = losses
    steady = costs[len(costs) // 3:] or costs  # past cuDNN autotuning
    result['iters_per_s'] = round(1 / statistics.median(steady), 3)
    peaks = re.findall(PEAK + r'([0-9.]+)', text)
    if peaks:
        result['peak_mb'] = max(float(p) for p in peaks)
    if not all(map(_finite, losses)):
        return 'a loss is not finite: {}'.format(losses)
    k = max(1, len(losses) // 5)
    first, last = statistics.mean(losses[:k]), statistics.mean(losses[-k:])
    if not last < first:
        return 'loss does not fall: mean of the first {k} {:.4f}, of the ' \
               'last {k} {:.4f}'.format(first, last, k=k)
    return None


def read_eval(text, result):
    lines = [line for line in text.splitlines() if line.startswith(RESULT)]
    if not lines:
        return 'the eval child printed no result'
    result['backends'] = json.loads(lines[-1][len(RESULT):])
    failed = [name for name, row in result['backends'].items()
              if row['status'] != 'ok' and not row['status'].startswith(
                  'skipped')]
    return 'backends failed: {}'.format(', '.join(failed)) if failed else None


def _finite(value):
    return value == value and abs(value) != float('inf')


# --------------------------------------------------------------------------
# Children (run in their own process by the steps)


def child_train(argv):
    """``python -m paddleseg_ctx.train`` in this process, then the peak GPU
    memory."""
    import paddle

    from paddleseg_ctx.cli.train import main
    from paddleseg_ctx.errors import run
    try:
        run(main, argv)
    finally:
        if paddle.device.is_compiled_with_cuda():
            print('{}{:.1f}'.format(
                PEAK, paddle.device.cuda.max_memory_allocated() / 2**20),
                flush=True)


def child_eval(config, model_path, export_dir, crop, tensorrt=True):
    """Every backend against float32 dygraph on one synthetic-size input;
    prints one JSON line."""
    import numpy as np
    import paddle
    from paddleseg.cvlibs import SegBuilder

    from paddleseg_ctx.config import read_config
    from paddleseg_ctx.deploy.backends import InferenceRunner, OnnxRunner
    from paddleseg_ctx.deploy.config import DeployConfig
    from paddleseg_ctx.weights import load_model_weights

    paddle.set_device('gpu')
    model = SegBuilder(read_config(config)).model
    load_model_weights(model, model_path)
    model.eval()
    x = np.random.RandomState(0).normal(size=(1, 3, crop[1], crop[0]))
    x = x.astype('float32')

    def dygraph(dtype=None):
        def forward(batch):
            with paddle.no_grad(), paddle.amp.auto_cast(
                    enable=dtype is not None, level='O1',
                    dtype=dtype or 'float16'):
                return model(paddle.to_tensor(batch))[0].astype(
                    'float32').numpy()
        return forward

    reference = dygraph()(x)
    deploy = DeployConfig(os.path.join(export_dir, 'deploy.yaml'))
    backends = {
        'dygraph fp32': ('fp32', dygraph),
        'dygraph AMP fp16': ('half', lambda: dygraph('float16')),
        'dygraph AMP bf16': ('half', lambda: dygraph('bfloat16')),
        'paddle inference gpu': (
            'fp32', lambda: InferenceRunner(deploy.model, deploy.params,
                                            device='gpu')),
        'paddle inference tensorrt fp32': (
            'fp32', lambda: _tensorrt(deploy, x.shape, half=False)),
        'paddle inference tensorrt fp16': (
            'half', lambda: _tensorrt(deploy, x.shape, half=True)),
        'onnxruntime cuda': (
            'fp32', lambda: OnnxRunner(deploy.onnx, device='gpu')),
    }
    rows = {}
    for name, (precision, make) in backends.items():
        skip = _unavailable(name)
        if 'tensorrt' in name and not tensorrt:
            skip = 'left out (--no_tensorrt)'
        if skip:
            rows[name] = {'status': 'skipped: ' + skip}
            continue
        try:
            runner = make()
            got = runner(x)
            for _ in range(3):
                runner(x)  # warm-up
            start, runs = time.time(), 10
            for _ in range(runs):
                runner(x)
            rate = runs / (time.time() - start)
        except Exception as err:  # noqa: BLE001  (reported in the table)
            rows[name] = {'status': '{}: {}'.format(type(err).__name__, err)}
            continue
        error = float(np.abs(got - reference).max() / np.abs(reference).max())
        agree = float((got.argmax(1) == reference.argmax(1)).mean())
        max_error, min_agree = TOLERANCE[precision]
        ok = error <= max_error and agree >= min_agree
        rows[name] = {
            'status': 'ok' if ok else 'differs from dygraph fp32 (allowed: '
                      'error {}, labels {})'.format(max_error, min_agree),
            'rel_error': round(error, 6), 'labels_equal': round(agree, 5),
            'images_per_s': round(rate, 2)}
    print(RESULT + json.dumps(rows), flush=True)


def _unavailable(name):
    import paddle
    if 'bf16' in name and not paddle.amp.is_bfloat16_supported():
        return 'this card has no bf16'
    if 'tensorrt' in name:
        from paddle import inference
        if tuple(inference.get_trt_runtime_version()) == (0, 0, 0):
            return 'no TensorRT runtime in this Paddle build/machine'
    if 'onnxruntime' in name:
        try:
            import onnxruntime
        except ImportError:
            return 'onnxruntime not installed'
        if 'CUDAExecutionProvider' not in onnxruntime.get_available_providers():
            return 'onnxruntime has no CUDA provider (install onnxruntime-gpu)'
    return None


def _tensorrt(deploy, shape, half):
    """A Paddle Inference predictor with TensorRT for one input shape (the
    export's input is ``x``, dynamic N/H/W)."""
    import numpy as np
    from paddle import inference
    config = inference.Config(deploy.model, deploy.params)
    config.enable_use_gpu(256, 0)
    config.enable_tensorrt_engine(
        workspace_size=1 << 30, max_batch_size=1, min_subgraph_size=3,
        precision_mode=(inference.PrecisionType.Half if half else
                        inference.PrecisionType.Float32),
        use_static=False, use_calib_mode=False)
    config.set_trt_dynamic_shape_info({'x': list(shape)}, {'x': list(shape)},
                                      {'x': list(shape)})
    config.disable_glog_info()
    predictor = inference.create_predictor(config)

    def run(batch):
        handle = predictor.get_input_handle(predictor.get_input_names()[0])
        handle.reshape(list(shape))
        handle.copy_from_cpu(np.ascontiguousarray(batch, dtype='float32'))
        predictor.run()
        return predictor.get_output_handle(
            predictor.get_output_names()[0]).copy_to_cpu()
    return run


# --------------------------------------------------------------------------
# The table


def table(steps, results):
    lines = ['| step | status | losses (first -> last) | it/s | peak MB | '
             'vs PaddleSeg (it/s, MB) |', '|---|---|---|---|---|---|']
    for step in steps:
        result = results.get(step['name'], {})
        status = result.get('status', step.get('skip', 'planned'))
        losses, speed, peak, versus = '', '', '', ''
        if result.get('losses'):
            losses = '{:.3f} -> {:.3f}'.format(result['losses'][0],
                                                result['losses'][-1])
        if 'iters_per_s' in result:
            speed = str(result['iters_per_s'])
        if 'peak_mb' in result:
            peak = '{:.0f}'.format(result['peak_mb'])
        if step['kind'] == 'train' and step.get('impl') == 'ours':
            theirs = results.get(step['name'].replace(' ours ', ' paddleseg '))
            if theirs and 'iters_per_s' in theirs:
                versus = '{}, {:.0f}'.format(theirs['iters_per_s'],
                                             theirs.get('peak_mb', 0))
        lines.append('| {} | {} | {} | {} | {} | {} |'.format(
            step['name'], status, losses, speed, peak, versus))
        for backend, row in result.get('backends', {}).items():
            lines.append('| {} {} | {} | error {}, labels {} | | | {} img/s |'
                         .format(step['family'], backend, row['status'],
                                 row.get('rel_error', ''),
                                 row.get('labels_equal', ''),
                                 row.get('images_per_s', '')))
    return '\n'.join(lines)


def environment(dry_run):
    import paddle
    info = {'date': time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()),
            'paddle': paddle.__version__, 'dry_run': dry_run}
    if not dry_run and paddle.device.is_compiled_with_cuda():
        info['gpus'] = paddle.device.cuda.device_count()
        info['card'] = paddle.device.cuda.get_device_name(0)
    return info


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog='scripts/gpu_check.sh', description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default=os.path.join(ROOT, 'output',
                                                      'gpu_check'),
                        help='Working and result directory. Default: '
                        'output/gpu_check.')
    parser.add_argument('--families', nargs='+', choices=sorted(PLAN),
                        default=list(PLAN))
    parser.add_argument('--iters', type=int, default=30,
                        help='Training iterations per run. Default: 30.')
    parser.add_argument('--modes', nargs='+', choices=list(TRAIN_MODES),
                        default=list(TRAIN_MODES),
                        help='Training precisions (fp32 always runs: export '
                        'and eval use its weights). Default: all.')
    parser.add_argument('--no_paddleseg', action='store_true',
                        help='Skip the runs of PaddleSeg\'s own classes.')
    parser.add_argument('--no_tensorrt', action='store_true',
                        help='Skip TensorRT (its engine builds take minutes).')
    parser.add_argument('--dry_run', action='store_true',
                        help='Plan every step, write the configs and check '
                        'them, print the commands; run nothing (no GPU).')
    parser.add_argument('--child', choices=('train', 'eval'),
                        help=argparse.SUPPRESS)
    parser.add_argument('--config', help=argparse.SUPPRESS)
    parser.add_argument('--model_path', help=argparse.SUPPRESS)
    parser.add_argument('--export_dir', help=argparse.SUPPRESS)
    parser.add_argument('--crop', type=int, nargs=2, help=argparse.SUPPRESS)
    parser.add_argument('rest', nargs=argparse.REMAINDER,
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child == 'train':
        rest = args.rest[1:] if args.rest[:1] == ['--'] else args.rest
        return child_train(rest)
    if args.child == 'eval':
        return child_eval(args.config, args.model_path, args.export_dir,
                          args.crop, tensorrt=not args.no_tensorrt)

    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    info = environment(args.dry_run)
    if not args.dry_run and not info.get('gpus'):
        raise SystemExit('gpu_check: no GPU visible to Paddle (needs '
                         'paddlepaddle-gpu and a GPU); --dry_run plans '
                         'without one.')
    steps = plan(out, args.families, args.iters, info.get('gpus'),
                 modes=args.modes, paddleseg=not args.no_paddleseg,
                 tensorrt=not args.no_tensorrt)
    start = time.time()
    results = {}
    from paddleseg_ctx.config import read_config
    for step in steps:
        if step['kind'] == 'train' and step.get('mode') == 'fp32':
            read_config(step['config'])  # a bad config fails before any run
    for step in steps:
        print('[gpu_check] {}: {}'.format(step['name'],
                                          shlex.join(step['argv'])),
              flush=True)
        if args.dry_run or 'skip' in step:
            continue
        results[step['name']] = run_step(step, out)
        print('[gpu_check]   -> {} ({} s, log {})'.format(
            results[step['name']]['status'],
            results[step['name']]['seconds'], results[step['name']]['log']),
            flush=True)
    report = table(steps, results)
    print(report)
    info['seconds'] = round(time.time() - start, 1)
    print('[gpu_check] {} steps in {} s'.format(len(results), info['seconds']))
    failed = [name for name, r in results.items() if r['status'] != 'ok']
    with open(os.path.join(out, 'gpu_check.json'), 'w') as f:
        json.dump({'environment': info,
                   'steps': [dict(step, **results.get(step['name'], {}))
                             for step in steps],
                   'failed': failed}, f, indent=1)
    print('[gpu_check] wrote {}'.format(os.path.join(out, 'gpu_check.json')))
    if failed:
        print('[gpu_check] FAILED: {}'.format('; '.join(failed)),
              file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
