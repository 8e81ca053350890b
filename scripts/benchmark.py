"""Speed and memory of every model family, side by side in one run: ours in
dygraph against PaddleSeg 2.8's class and the PyTorch original (same
weights), and our exported model in Paddle Inference and ONNX Runtime.

For each family and each comparison (eval forward 1x3xHxW at every size,
training step: forward + backward + SGD at batch 2) every case runs in its
own long-lived worker process; after one warm-up round, rounds in which each
case runs once are repeated (order reversed every other round) and medians
reported, so machine load hits all cases alike.  Peak memory is the
worker's VmHWM minus its RSS after importing its framework (the model, its
activations and the runtime's buffers).  Multiply-adds are counted on our
dygraph model (convolutions, linear layers, matmuls); GFLOP/s = 2 x MACs /
time, against the machine's GEMM peak (the best of a 4096x4096 float32
matmul in numpy, Paddle and ONNX Runtime) and its FMA peak (what the cores'
vector units can do at all: scripts/fma_peak.c, one copy per thread).
Also: ``val`` over a generated data set with each backend (``python -m paddleseg_ctx.val --backend``),
ISNet's vectorised semantic-level context against the per-class loop
(scripts/bench_slc.py) at 150 classes, and where an eval forward's time goes
per operator group in dygraph, PyTorch and ONNX Runtime (scripts/bench_ops.py,
``--cases ops``).  Prints a table per family and the goals of issues 10 and
21 (met / short), each headed by the CPU, its ISA and the date, and writes
everything as JSON.

    python scripts/benchmark.py --json benchmark.json
    python scripts/benchmark.py --families GCNet ISNet-R50 --threads 2
    python scripts/benchmark.py --quick          # small sizes, one repeat

Ratios: ``vs PaddleSeg`` / ``vs torch`` = their median time / this case's
(above 1: this case is faster); ``mem/PS`` = this case's peak-memory
increase / PaddleSeg's.

A full run is long.  On one core each of an AMD EPYC (Zen 5), all six
families at 512x512 with --threads 1: eval of the five implementations at 3
repeats took 18 minutes; the training step (--sizes with no value, --cases
dygraph paddleseg torch train) at 2 repeats 47 minutes; ``val`` over 8
images with the deployed evals (--cases paddle onnxruntime val slc) at 2
repeats 43 minutes.  The default (every case, 512x512 and the published
crops, 5 repeats) takes about 4 hours; split it into such commands and run
one per core.  On one core of an Intel Xeon (AVX-512), eval of the five
implementations plus the operator profiles (--cases dygraph paddleseg torch
paddle onnxruntime ops --sizes 512x512 --repeats 3) took 13-15 minutes.  A
training worker peaks at 4 GiB (ISNet-S101: 10 GiB); at
most five workers are alive at once.
"""
import argparse
import importlib.metadata
import importlib.util
import json
import multiprocessing
import os
import platform
import re
import subprocess
import sys
import tempfile
import time

import yaml

import bench_cases as bc
import bench_ops

VAL_BACKENDS = ('dygraph', 'paddle', 'onnxruntime')
EXTRA_CASES = ('train', 'val', 'slc', 'ops')
CASES = bc.IMPLS + EXTRA_CASES


def _load_mkl_dispatch():
    """paddleseg_ctx/mkl_dispatch.py (MKL's code path, /proc/cpuinfo) by
    file: importing the package would load Paddle in this process."""
    spec = importlib.util.spec_from_file_location(
        'mkl_dispatch',
        os.path.join(bc.REPO, 'paddleseg_ctx', 'mkl_dispatch.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


mkl_dispatch = _load_mkl_dispatch()
PACKAGES = ('paddlepaddle', 'paddleseg', 'numpy', 'onnxruntime', 'paddle2onnx',
            'torch', 'mmsegmentation', 'sssegmentation')


# -- command line -------------------------------------------------------------

def parse_size(text):
    if text == 'crop':
        return text
    try:
        h, w = (int(v) for v in text.split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(
            'a size is HxW (e.g. 512x1024) or "crop", got {!r}'.format(text))
    return h, w


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--families', nargs='+', default=list(bc.FAMILIES),
                        choices=list(bc.FAMILIES))
    parser.add_argument(
        '--cases', nargs='+', default=list(CASES), choices=CASES,
        help='implementations to time ({}), and "train" (training step of '
        'the dygraph ones), "val" (val with each backend), "slc" (ISNet '
        'context, vectorised vs loop), "ops" (per-operator profile of an eval '
        'forward at the first size: dygraph, PyTorch, ONNX Runtime). '
        'Default: all.'.format(
            ', '.join(bc.IMPLS)))
    parser.add_argument(
        '--sizes', nargs='*', type=parse_size, default=None,
        help='eval input sizes HxW; "crop" is the family\'s published crop; '
        'none: no eval timing. Default: 512x512 crop (--quick: 49x65).')
    parser.add_argument('--train_size', type=parse_size, default=None,
                        help='HxW of the training step, batch 2. Default: '
                        '512x512 (--quick: 49x65).')
    parser.add_argument('--repeats', type=int, default=None,
                        help='timed rounds after the warm-up (default 5, '
                        '--quick 1)')
    parser.add_argument('--threads', type=int, default=os.cpu_count(),
                        help='threads of every backend and of torch '
                        '(default: all cores, %(default)s)')
    parser.add_argument('--val_images', type=int, default=None,
                        help='images of the generated val set (default 8, '
                        '--quick 2)')
    parser.add_argument('--json', help='write the results to this file')
    parser.add_argument('--quick', action='store_true',
                        help='smoke run: small sizes, one repeat, small '
                        'backbones where the family allows')
    args = parser.parse_args(argv)
    quick = args.quick
    if args.sizes is None:
        args.sizes = [(49, 65)] if quick else [(512, 512), 'crop']
    if args.train_size is None:
        args.train_size = (49, 65) if quick else (512, 512)
    if args.train_size == 'crop':
        parser.error('--train_size needs HxW')
    if args.repeats is None:
        args.repeats = 1 if quick else 5
    if args.val_images is None:
        args.val_images = 2 if quick else 8
    return args


# -- processes ----------------------------------------------------------------

def worker_environment(threads):
    """Every worker inherits these: Paddle's and numpy's math libraries read
    the thread counts at start-up (the runners and torch are also told
    explicitly); MKL's code path as ``import paddleseg_ctx`` sets it, so
    PaddleSeg's class runs on the same one as ours (``MKL_DEBUG_CPU_TYPE=``,
    empty, times MKL's own choice); the libraries' warnings would bury the
    progress lines.  Returns the MKL code path in effect."""
    for name in ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS'):
        os.environ[name] = str(threads)
    os.environ.setdefault('GLOG_minloglevel', '2')
    os.environ.setdefault('PYTHONWARNINGS', 'ignore')
    return mkl_dispatch.use_vector_code_path()


def run_once(ctx, fn, *args):
    """``fn(*args)`` in a fresh process; its return value."""
    pool = ctx.Pool(1)
    try:
        return pool.apply(fn, args)
    finally:
        pool.close()  # let the process end by itself: Paddle reports SIGTERM
        pool.join()


class Worker:
    """A case in its own process (bench_cases.serve), run on request."""

    def __init__(self, ctx, spec):
        self.spec = spec
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=bc.serve, args=(child, spec),
                                   daemon=True)
        self.process.start()
        child.close()
        self.times = []
        self.error = None
        self.memory = None

    def wait_ready(self):
        self.error = self._receive().get('error')

    def run(self):
        answer = self._ask('run')
        if 'error' in answer:
            self.error = answer['error']
        else:
            return answer['seconds']

    def stop(self):
        if self.error is None:
            self.memory = self._ask('stop')
        self.process.join(timeout=60)
        if self.process.is_alive():
            self.process.kill()

    def _ask(self, command):
        self.conn.send(command)
        return self._receive()

    def _receive(self):
        try:
            return self.conn.recv()
        except EOFError:  # the worker died (out of memory, a crash)
            return {'error': 'worker exited with code {}'.format(
                self.process.exitcode)}


def interleave(workers, repeats):
    """One warm-up round, then ``repeats`` timed rounds; every live worker
    runs once per round, order reversed every other round."""
    for worker in workers:
        worker.wait_ready()
    for round_index in range(repeats + 1):
        live = [w for w in workers if w.error is None]
        for worker in (live if round_index % 2 else live[::-1]):
            seconds = worker.run()
            if seconds is not None and round_index > 0:
                worker.times.append(seconds)
    for worker in workers:
        worker.stop()


# -- one family ---------------------------------------------------------------

def zoo_crop(family):
    """The family's published crop as (h, w), from configs/model_zoo.yml."""
    with open(os.path.join(bc.REPO, 'configs', 'model_zoo.yml')) as f:
        for entry in yaml.safe_load(f):
            if entry['config'] == family.config:
                w, h = entry['crop_size']
                return h, w
    raise SystemExit('{} has no row in configs/model_zoo.yml'.format(
        family.config))


def eval_sizes(family, sizes):
    resolved = []
    for size in sizes:
        size = zoo_crop(family) if size == 'crop' else size
        if size not in resolved:
            resolved.append(size)
    return resolved


def comparisons(name, args, impls, sizes):
    """Groups of (impl, mode, shape) compared with each other: eval at each
    size, and the training step."""
    family = bc.FAMILIES[name]
    impls = [i for i in impls if bc.has_impl(family, i)]
    groups = [[(impl, 'eval', (1, 3) + size) for impl in impls]
              for size in sizes]
    if 'train' in args.cases:
        groups.append([(impl, 'train', (2, 3) + args.train_size)
                       for impl in impls if impl in bc.DYGRAPH_IMPLS])
    return [g for g in groups if g]


def bench_family(ctx, name, args, workdir):
    family = bc.FAMILIES[name]
    sizes = eval_sizes(family, args.sizes)
    impls = [c for c in args.cases if c in bc.IMPLS]
    export = 'ops' in args.cases or any(i in bc.DEPLOYED_IMPLS for i in impls)
    print('{}: preparing weights{}...'.format(
        name, ' and export' if export else ''), flush=True)
    info = run_once(ctx, bc.prepare, name, workdir, args.quick, sizes, export)
    cases = []
    for group in comparisons(name, args, impls, sizes):
        print('{}: timing {} {}'.format(name, group[0][1], bc.size_name(
            group[0][2][2:])), flush=True)
        cases.extend(time_group(ctx, name, group, info, args, workdir))
    result = {'config': family.config, 'model': info['model'],
              'loss': info['loss'], 'num_classes': info['num_classes'],
              'macs': info['macs'],
              'cases': cases}
    add_ratios(result)
    if 'ops' in args.cases and sizes:
        result['ops'] = profile_ops(ctx, name, sizes[0], info, args, workdir)
    return result


def profile_ops(ctx, name, size, info, args, workdir):
    """Per-operator profiles of one eval forward at ``size`` in each
    runtime the family has (bench_ops.py), each in a fresh process."""
    print('{}: profiling operators {}'.format(name, bc.size_name(size)),
          flush=True)
    profiles = {}
    for impl in bench_ops.PROFILERS:
        if not bc.has_impl(bc.FAMILIES[name], impl):
            continue
        if impl in info['skipped']:
            profiles[impl] = {'error': info['skipped'][impl]}
            continue
        spec = case_spec(name, impl, 'eval', (1, 3) + tuple(size), info,
                         args, workdir)
        profiles[impl] = run_once(ctx, bench_ops.profile, spec)
    return {'size': bc.size_name(size), 'profiles': profiles}


def case_spec(name, impl, mode, shape, info, args, workdir):
    """What a worker needs to build one case (bench_cases.serve,
    bench_ops.profile)."""
    return {'family': name, 'impl': impl, 'mode': mode, 'shape': shape,
            'workdir': workdir, 'threads': args.threads,
            'model': info['model'], 'num_classes': info['num_classes'],
            'loss_coefs': info['loss']['coef'], 'onednn': info['onednn']}


def time_group(ctx, name, group, info, args, workdir):
    workers, cases = [], []
    for impl, mode, shape in group:
        case = {'impl': impl, 'mode': mode, 'size': bc.size_name(shape[2:]),
                'batch': shape[0]}
        if impl == 'paddle':
            case['onednn'] = info['onednn']
        cases.append(case)
        if impl in info['skipped']:
            case.update(status='skipped', reason=info['skipped'][impl])
            continue
        workers.append((case, Worker(ctx, case_spec(
            name, impl, mode, shape, info, args, workdir))))
    interleave([w for _, w in workers], args.repeats)
    for case, worker in workers:
        if worker.error or not worker.times:
            case.update(status='skipped', reason=worker.error or 'no run')
        else:
            case.update(status='ok', times_ms=[t * 1e3 for t in worker.times],
                        median_ms=bc.median_ms(worker.times),
                        memory=worker.memory)
    return cases


def add_ratios(result):
    """Speed-ups against PaddleSeg's class and the PyTorch original in the
    same comparison, memory against PaddleSeg's, and GFLOP/s of eval."""
    def key(case):
        return case['mode'], case['size']

    def reference(impl, case):
        for other in result['cases']:
            if (other['impl'] == impl and key(other) == key(case) and
                    other['status'] == 'ok'):
                return other
        return None

    for case in result['cases']:
        if case['status'] != 'ok':
            continue
        for impl, label in (('paddleseg', 'vs_paddleseg'),
                            ('torch', 'vs_torch')):
            ref = reference(impl, case)
            case[label] = ref['median_ms'] / case['median_ms'] if ref else None
        ref = reference('paddleseg', case)
        case['memory_vs_paddleseg'] = (
            case['memory']['peak_increase_mb'] /
            ref['memory']['peak_increase_mb'] if ref else None)
        macs = result['macs'].get(case['size']) if case['mode'] == 'eval' \
            else None
        case['gflops'] = (2 * macs / (case['median_ms'] / 1e3) / 1e9
                          if macs else None)


# -- val with each backend ----------------------------------------------------

def val_accepts_backend():
    help_text = subprocess.run(
        [sys.executable, '-m', 'paddleseg_ctx.val', '--help'],
        capture_output=True, text=True).stdout
    return '--backend' in help_text


def write_val_config(path, data, model, loss):
    def dataset(mode, key):
        return {'type': 'Dataset', 'dataset_root': data['dataset_root'],
                key: data[key], 'num_classes': data['num_classes'],
                'mode': mode, 'transforms': [{'type': 'Normalize'}]}

    # PaddleSeg's Config wants a complete training setup even for val.
    config = {'batch_size': 1, 'iters': 1, 'model': model,
              'train_dataset': dataset('train', 'train_path'),
              'val_dataset': dataset('val', 'val_path'),
              'optimizer': {'type': 'SGD', 'momentum': 0.9},
              'lr_scheduler': {'type': 'PolynomialDecay',
                               'learning_rate': 0.01},
              'loss': loss}
    with open(path, 'w') as f:
        yaml.safe_dump(config, f)
    return path


def make_val_data(root, num_images, size, num_classes):
    """A generated data set whose labels use the first few of the model's
    ``num_classes`` (the generator draws at most six)."""
    from paddleseg_ctx.datasets.synthetic import (CLASSES,
                                                  make_synthetic_dataset)
    data = make_synthetic_dataset(root, 1, num_images, size,
                                  min(num_classes, len(CLASSES)), 0)
    data['num_classes'] = num_classes
    return data


def bench_val(ctx, name, result, args, workdir):
    """Wall time and mIoU of ``python -m paddleseg_ctx.val`` with each
    backend, interleaved, on a generated data set of --val_images images
    at the first eval size (--train_size without one)."""
    h, w = (eval_sizes(bc.FAMILIES[name], args.sizes) or [args.train_size])[0]
    data = run_once(ctx, make_val_data, os.path.join(workdir, 'val_data'),
                    args.val_images, (w, h), result['num_classes'])
    config = write_val_config(os.path.join(workdir, 'val.yml'), data,
                              result['model'], result['loss'])
    weights = os.path.join(workdir, 'weights.pdparams')
    backends = [b for b in VAL_BACKENDS if b == 'dygraph' or b in args.cases]
    runs = {b: {'backend': b, 'times_s': [], 'miou': None, 'acc': None}
            for b in backends}
    if not val_accepts_backend():
        for backend in backends[1:]:
            runs[backend].update(status='skipped',
                                 reason='--backend not available')
        backends = backends[:1]
    # The exports land in the run's temporary directory, not the user's
    # cache; the first run of a deployed backend exports (the others reuse).
    env = dict(os.environ, SEG_HOME=os.path.join(workdir, 'seg_home'))
    for _ in range(args.repeats):
        for backend in backends:
            command = [sys.executable, '-m', 'paddleseg_ctx.val', '--config',
                       config, '--model_path', weights]
            if backend != 'dygraph':
                command += ['--backend', backend]
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True,
                                  env=env)
            seconds = time.perf_counter() - start
            # PaddleSeg's evaluate: "[EVAL] #Images: 8 mIoU: 0.1234 Acc: ..."
            metrics = re.findall(r'mIoU: ([0-9.]+) Acc: ([0-9.]+)',
                                 done.stdout + done.stderr)
            run = runs[backend]
            if done.returncode or not metrics:
                run.update(status='skipped', reason='val failed: ' + (
                    done.stderr.strip().splitlines() or ['no output'])[-1])
                continue
            run['times_s'].append(seconds)
            run['miou'], run['acc'] = (float(v) for v in metrics[-1])
    for run in runs.values():
        if run['times_s'] and run.get('status') != 'skipped':
            run.update(status='ok',
                       median_s=bc.median_ms(run['times_s']) / 1e3)
    dygraph = runs['dygraph']
    for run in runs.values():
        ok = run.get('status') == 'ok' and dygraph.get('status') == 'ok'
        run['vs_dygraph'] = dygraph['median_s'] / run['median_s'] if ok \
            else None
        # Acc too: a random model's mIoU is near 0 whatever it predicts.
        for metric in ('miou', 'acc'):
            run[metric + '_diff'] = (abs(run[metric] - dygraph[metric])
                                     if ok else None)
    return {'images': args.val_images, 'size': bc.size_name((h, w)),
            'runs': list(runs.values())}


# -- goals --------------------------------------------------------------------

def goal(text, measured, target, higher_is_better=True):
    if measured is None:
        met = None
    else:
        met = measured >= target if higher_is_better else measured <= target
    return {'goal': text, 'measured': measured, 'target': target,
            'higher_is_better': higher_is_better, 'met': met}


def find(cases, impl, mode, size=None):
    for case in cases:
        if (case['impl'] == impl and case['mode'] == mode and
                case['status'] == 'ok' and size in (None, case['size'])):
            return case
    return None


def best(cases, impls, size):
    found = [find(cases, impl, 'eval', size) for impl in impls]
    found = [c for c in found if c]
    return min(found, key=lambda c: c['median_ms']) if found else None


def field(case, name):
    return case.get(name) if case else None


def paddleseg_goals(name, cases):
    """Dygraph: at least PaddleSeg's speed, at most its peak memory."""
    for mode, size in sorted({(c['mode'], c['size']) for c in cases}):
        ours = find(cases, 'dygraph', mode, size)
        where = '{} {} {}: dygraph'.format(name, mode, size)
        yield goal(where + ' speed vs PaddleSeg',
                   field(ours, 'vs_paddleseg'), 1.0)
        yield goal(where + ' peak memory / PaddleSeg',
                   field(ours, 'memory_vs_paddleseg'), 1.0, False)


# Issue 21: the deployed forward within 10% of the FMA-peak time.
FMA_GOAL = 1.1


def peak_time_ms(macs, gflops):
    """Milliseconds of ``macs`` multiply-adds at ``gflops`` (None: no
    peak measured)."""
    return gflops and 2 * macs / (gflops * 1e9) * 1e3


def deployed_goals(name, result, size, peak_gflops, fma_gflops):
    """Best deployed backend: 4x PaddleSeg's dygraph class, and within 10%
    of the time the GEMM peak (issue 10) and the FMA peak (issue 21) allow
    for the model's multiply-adds."""
    cases = result['cases']
    deployed = best(cases, bc.DEPLOYED_IMPLS, size)
    where = '{} eval {}: best deployed ({})'.format(
        name, size, field(deployed, 'impl'))
    if bc.FAMILIES[name].paddleseg:
        ps = find(cases, 'paddleseg', 'eval', size)
        yield goal(where + ' speed vs PaddleSeg dygraph',
                   ps['median_ms'] / deployed['median_ms']
                   if ps and deployed else None, 4.0)
    ideal_ms = peak_time_ms(result['macs'][size], peak_gflops)
    yield goal(where + ' time / GEMM-peak time',
               field(deployed, 'median_ms') and
               deployed['median_ms'] / ideal_ms, 1.1, False)
    fma_ms = peak_time_ms(result['macs'][size], fma_gflops)
    yield goal(where + ' time / FMA-peak time',
               field(deployed, 'median_ms') and fma_ms and
               deployed['median_ms'] / fma_ms, FMA_GOAL, False)


def torch_goals(name, cases, sizes):
    """Our best path at least 2x the PyTorch original in eager mode (issue
    10), our dygraph at least as fast as it (issue 21)."""
    for size in sizes:
        yield goal('{} eval {}: dygraph vs PyTorch eager'.format(name, size),
                   field(find(cases, 'dygraph', 'eval', size), 'vs_torch'),
                   1.0)
        ours = best(cases, ('dygraph', ) + bc.DEPLOYED_IMPLS, size)
        yield goal('{} eval {}: our best ({}) vs PyTorch eager'.format(
            name, size, field(ours, 'impl')), field(ours, 'vs_torch'), 2.0)
    if any(c['mode'] == 'train' for c in cases):
        ours = find(cases, 'dygraph', 'train')
        yield goal('{} train: dygraph vs PyTorch eager'.format(name),
                   field(ours, 'vs_torch'), 2.0)


def family_goals(name, result, peak_gflops, fma_gflops):
    cases = result['cases']
    family = bc.FAMILIES[name]
    sizes = sorted({c['size'] for c in cases if c['mode'] == 'eval'})
    if family.paddleseg:
        yield from paddleseg_goals(name, cases)
    for size in sizes:
        yield from deployed_goals(name, result, size, peak_gflops,
                                  fma_gflops)
    if family.torch:
        yield from torch_goals(name, cases, sizes)


def val_goals(name, val):
    ort = {r['backend']: r for r in val['runs']}.get('onnxruntime', {})
    yield goal('{} val: onnxruntime vs dygraph (wall time)'.format(name),
               ort.get('vs_dygraph'), 3.0)
    for metric, label in (('miou', 'mIoU'), ('acc', 'Acc')):
        yield goal('{} val: |{} onnxruntime - dygraph|'.format(name, label),
                   ort.get(metric + '_diff'), 1e-4, False)


def slc_goals(slc):
    for row in slc:
        yield goal('ISNet SLC {} at 150 classes, {} present: vectorised vs '
                   'loop'.format(row['size'], row['present']),
                   row['ratio'], 5.0)


def conv_rates(result, fma_gflops):
    """Each profiled runtime's convolutions as a whole: ``gflops`` over
    the layers' multiply-adds (counted by the forward hooks),
    ``share_of_fma`` and ``vs_fma_time``, their time over the whole model's
    FMA-peak time: the forward's ratio if every other operator took no time
    (what the FMA-peak goal compares with :data:`FMA_GOAL`)."""
    ops = result['ops']
    hooked = [p['convs'] for p in ops['profiles'].values() if p.get('convs')]
    if not hooked:
        return {}
    macs = sum(entry['macs'] for entry in hooked[0].values())
    fma_ms = peak_time_ms(result['macs'][ops['size']], fma_gflops)
    rates = {}
    for impl, profile in ops['profiles'].items():
        ms = profile.get('groups', {}).get('convolution')
        if ms:
            gflops = 2 * macs / ms / 1e6
            rates[impl] = {'gflops': gflops,
                           'share_of_fma': fma_gflops and gflops / fma_gflops,
                           'vs_fma_time': fma_ms and ms / fma_ms}
    return rates


def all_goals(report):
    peak = report['gemm']['peak_gflops']
    fma = report['fma'].get('peak_gflops')
    goals = []
    for name, result in report['families'].items():
        goals.extend(family_goals(name, result, peak, fma))
    for name, val in report['val'].items():
        goals.extend(val_goals(name, val))
    goals.extend(slc_goals(report['slc']))
    return goals


# -- machine ------------------------------------------------------------------

# Instruction-set extensions that decide which kernels the libraries run.
ISA_FLAGS = ('avx2', 'fma', 'avx512f', 'avx512_vnni', 'avx512_bf16',
             'avx512_fp16', 'amx_tile', 'amx_bf16')


def cpu_isa(flags):
    """A short name of the vector ISA from /proc/cpuinfo's flags: the widest
    FMA path, then the extensions present (e.g. "AVX-512 (+avx512_bf16,
    amx_tile)")."""
    flags = set(flags)
    if 'avx512f' in flags:
        base = 'AVX-512'
    elif {'avx2', 'fma'} <= flags:
        base = 'AVX2+FMA'
    else:
        base = 'no AVX2/FMA'
    extra = [f for f in ISA_FLAGS[3:] if f in flags]
    return base + (' (+{})'.format(', '.join(extra)) if extra else '')


def machine_info(threads):
    cpu = mkl_dispatch.cpu_info()
    flags = cpu.flags
    versions = {}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {'cpu': cpu.model, 'isa': cpu_isa(flags) if flags else 'unknown',
            'isa_flags': [f for f in ISA_FLAGS if f in flags],
            'cores': os.cpu_count(), 'threads': threads,
            'python': platform.python_version(), 'os': platform.platform(),
            'date': time.strftime('%Y-%m-%d'), 'versions': versions}


# -- printing -----------------------------------------------------------------

def fmt(value, spec='{:.2f}'):
    return '-' if value is None else spec.format(value)


def case_label(case):
    return case['impl'] + ('+onednn' if case.get('onednn') else '')


def print_family(name, result, peak_gflops, fma_gflops, where):
    macs = ', '.join('{} {:.1f}'.format(size, n / 1e9)
                     for size, n in result['macs'].items())
    print('\n{} ({}, {} classes; GMACs per image: {}) on {}'.format(
        name, result['config'], result['num_classes'], macs, where))
    print('{:13s} {:5s} {:>9s} {:>9s} {:>8s} {:>8s} {:>9s} {:>6s} {:>8s} '
          '{:>6s} {:>5s}'.format('case', 'mode', 'size', 'ms', 'vs PS',
                                 'vs torch', 'mem MiB', 'mem/PS', 'GFLOP/s',
                                 '%peak', '%FMA'))
    for case in result['cases']:
        if case['status'] != 'ok':
            print('{:13s} {:5s} {:>9s}  skipped: {}'.format(
                case_label(case), case['mode'], case['size'], case['reason']))
            continue
        gflops = case['gflops']
        print('{:13s} {:5s} {:>9s} {:9.1f} {:>8s} {:>8s} {:9.0f} {:>6s} '
              '{:>8s} {:>6s} {:>5s}'.format(
                  case_label(case), case['mode'], case['size'],
                  case['median_ms'],
                  fmt(case['vs_paddleseg']), fmt(case['vs_torch']),
                  case['memory']['peak_increase_mb'],
                  fmt(case['memory_vs_paddleseg']), fmt(gflops, '{:.1f}'),
                  fmt(gflops and 100 * gflops / peak_gflops, '{:.0f}%'),
                  fmt(gflops and fma_gflops and 100 * gflops / fma_gflops,
                      '{:.0f}%')))


def print_report(report):
    machine = report['machine']
    versions = ', '.join('{} {}'.format(k, v)
                         for k, v in machine['versions'].items() if v)
    # Every table names the CPU and its ISA: the ratios hold for that only.
    where = '{}, {}, {} thread(s), {}'.format(
        machine['cpu'], machine['isa'], machine['threads'], machine['date'])
    print('\nMachine: {} ({} cores), ISA {}, {} threads, {}; {}'.format(
        machine['cpu'], machine['cores'], machine['isa'], machine['threads'],
        machine['date'], versions))
    print('MKL code path (MKL_DEBUG_CPU_TYPE): {}'.format(
        machine.get('mkl_code_path') or "MKL's own choice"))
    gemm = report['gemm']
    print('GEMM peak ({0}x{0} float32 matmul, GFLOP/s): {1}'.format(
        gemm['n'], ', '.join('{} {:.1f}'.format(k[:-len('_gflops')], v)
                             for k, v in gemm.items()
                             if k.endswith('_gflops') and k != 'peak_gflops')))
    fma = report['fma']
    if fma['status'] == 'ok':
        print('FMA peak (float32, scripts/fma_peak.c, {} thread(s), {}): '
              '{:.1f} GFLOP/s'.format(fma['threads'], fma['isa'],
                                      fma['peak_gflops']))
    else:
        print('FMA peak: skipped:', fma['reason'])
    if report['families']:
        print('ms: median of {} interleaved runs; vs PS / vs torch: their ms / '
              'this ms; mem: peak RSS above the worker\'s RSS after its '
              'imports; %peak, %FMA: of the GEMM peak, of the FMA peak'.format(
                  report['settings']['repeats']))
    for name, result in report['families'].items():
        print_family(name, result, gemm['peak_gflops'],
                     report['fma'].get('peak_gflops'), where)
        if result.get('ops'):
            print(bench_ops.format_profile(name, result['ops']['size'],
                                           result['ops']['profiles']))
            print_conv_rates(result['ops']['convolutions'])
    for name, val in report['val'].items():
        print('\n{} val over {} generated {} images (wall time of the '
              'command, start-up included) on {}:'.format(
                  name, val['images'], val['size'], where))
        for run in val['runs']:
            if run.get('status') != 'ok':
                print('  {:12s} skipped: {}'.format(run['backend'],
                                                    run.get('reason')))
                continue
            print('  {:12s} {:7.1f} s  mIoU {:.4f}  Acc {:.4f}  vs dygraph '
                  '{:>5s}'.format(run['backend'], run['median_s'], run['miou'],
                                  run['acc'], fmt(run['vs_dygraph'])))
    if report['slc']:
        print('\nISNet semantic-level context, 150 classes, 512 channels, '
              'on {}:'.format(where))
    for row in report['slc']:
        print('  {} feature map, {:3d} classes present: vectorised {:.1f} ms, '
              'loop {:.1f} ms, {:.1f}x'.format(
                  row['size'], row['present'], row['vectorised_ms'],
                  row['loop_ms'], row['ratio']))
    print('\nGoals, on {}:'.format(where))
    for g in report['goals']:
        state = {True: 'met', False: 'SHORT', None: 'no data'}[g['met']]
        print('  {:8s} {} = {} (target {} {})'.format(
            state, g['goal'], fmt(g['measured'], '{:.4g}'),
            '>=' if g['higher_is_better'] else '<=', g['target']))
    rates = [r['ops']['convolutions'] for r in report['families'].values()
             if r.get('ops')]
    bounds = [r['onnxruntime']['vs_fma_time'] for r in rates
              if 'onnxruntime' in r]
    if any(bounds):
        print('  FMA-peak time: ONNX Runtime\'s convolutions alone take '
              '{:.2f}-{:.2f}x it (profiles above).'.format(min(bounds),
                                                           max(bounds)))


def print_conv_rates(rates):
    """The line under a profile: each runtime's convolutions as a whole."""
    if rates:
        print('  all convolutions: ' + '; '.join(
            '{} {:.1f} GFLOP/s ({}% of the FMA peak, {}x the model\'s '
            'FMA-peak time)'.format(impl, r['gflops'],
                                    fmt(r['share_of_fma'] and
                                        100 * r['share_of_fma'], '{:.0f}'),
                                    fmt(r['vs_fma_time'], '{:.2f}'))
            for impl, r in rates.items()))


# -- main ---------------------------------------------------------------------

def write_json(path, report):
    tmp = '{}.{}.tmp'.format(path, os.getpid())
    with open(tmp, 'w') as f:
        json.dump(report, f, indent=1)
    os.replace(tmp, path)


def main(argv=None):
    args = parse_args(argv)
    mkl_code_path = worker_environment(args.threads)
    ctx = multiprocessing.get_context('spawn')
    started = time.time()
    report = {'machine': dict(machine_info(args.threads),
                              mkl_code_path=mkl_code_path or None),
              'settings': {k: v for k, v in vars(args).items() if k != 'json'},
              'families': {}, 'val': {}, 'slc': []}
    n = 1024 if args.quick else 4096
    report['gemm'] = run_once(ctx, bc.gemm_peak, n, 5, args.threads)
    report['fma'] = bc.fma_peak(args.threads)
    with tempfile.TemporaryDirectory(prefix='benchmark_') as tmp:
        for name in args.families:
            workdir = os.path.join(tmp, name)
            os.makedirs(workdir)
            result = bench_family(ctx, name, args, workdir)
            report['families'][name] = result
            if 'val' in args.cases:
                print('{}: val with each backend'.format(name), flush=True)
                report['val'][name] = bench_val(ctx, name, result, args,
                                                workdir)
    if 'slc' in args.cases:
        size = (16, 16) if args.quick else (64, 64)
        report['slc'] = run_once(ctx, bc.slc, size, 150, args.repeats)
    for result in report['families'].values():
        if result.get('ops'):
            result['ops']['convolutions'] = conv_rates(
                result, report['fma'].get('peak_gflops'))
    report['goals'] = all_goals(report)
    report['seconds'] = time.time() - started
    print_report(report)
    if args.json:
        write_json(args.json, report)
        print('\nwrote', args.json)


if __name__ == '__main__':
    main()
