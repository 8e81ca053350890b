"""Where one eval forward's time goes, per operator group: ours in Paddle
dygraph, the PyTorch original in eager mode and our exported model in ONNX
Runtime, each under its own profiler (paddle.profiler, torch.profiler, ONNX
Runtime's session profiling), same weights and input as the benchmark.

Also the convolutions split by kind (1x1, kxk, kxk dilated), timed with
forward hooks on every convolution layer in Paddle and PyTorch (a layer's
time: its convolution and, in Paddle, the separate bias add), with their
multiply-adds and GFLOP/s, which tells whether a gap is the convolution
kernels themselves or everything around them.

Called by scripts/benchmark.py (``--cases ops``), one process per case;
like bench_cases, it imports nothing heavy at module level.
"""
import json
import os
import re
import time

import bench_cases as bc

# Operator names of the three runtimes (lower case, without "aten::" or
# " dygraph") to groups, first match wins: "addmm" is a matmul, not an add;
# "resize_" (PyTorch's in-place storage resize) is not an interpolation.
OP_GROUPS = (
    ('convolution', r'conv'),
    ('matmul', r'matmul|^mm$|bmm|addmm|^linear$|gemm|einsum|^fc$'),
    ('batch norm', r'batch_?norm'),
    ('layer norm', r'layer_?norm'),
    ('softmax', r'softmax'),
    ('layout, copies', r'resize_$|reshape|transpose|permute|concat|^cat$|'
                       r'split|slice|copy|contiguous|view|flatten|squeeze|'
                       r'expand|gather|scatter|index|stack|cast|^to$|pad|'
                       r'fill|zeros|empty|full|clone|as_strided|assign|'
                       r'shape|memcpy'),
    ('interpolation', r'interp|upsample|resize'),
    ('activation', r'relu|sigmoid|tanh|gelu|hardswish|clip|clamp'),
    ('pooling', r'pool'),
    ('reduction', r'sum|mean|^max|^min|argmax|reduce|norm'),
    ('elementwise', r'add|sub|mul|div|scale|pow|sqrt|exp|where|neg|rsqrt|'
                    r'sign|abs|equal|less|greater|not|and|^or'),
)
OTHER = 'other'
OUTSIDE = 'outside operators'
GROUP_ORDER = tuple(g for g, _ in OP_GROUPS) + (OTHER, OUTSIDE)
CONV_KINDS = ('1x1', 'kxk', 'kxk dilated')


def op_group(name):
    """The group of an operator name of any of the three runtimes."""
    name = name.lower().replace('aten::', '').replace(' dygraph', '').strip()
    for group, pattern in OP_GROUPS:
        if re.search(pattern, name):
            return group
    return OTHER


def conv_kind(kernel, dilation):
    if tuple(kernel) == (1, 1):
        return '1x1'
    return 'kxk dilated' if max(dilation) > 1 else 'kxk'


def _add(table, key, value):
    table[key] = table.get(key, 0.0) + value


# -- Paddle dygraph ------------------------------------------------------------

def _paddle_groups(model, x):
    import paddle
    import paddle.profiler as profiler
    step = profiler.TracerEventType.Operator
    prof = profiler.Profiler(targets=[profiler.ProfilerTarget.CPU],
                             on_trace_ready=lambda _: None)
    with paddle.no_grad():
        prof.start()
        start = time.perf_counter()
        model(x)
        wall_ms = (time.perf_counter() - start) * 1e3
        prof.stop()
    groups = {}

    def walk(node):
        if node.type == step:
            inner = sum(c.end_ns - c.start_ns for c in node.children_node
                        if c.type == step)
            _add(groups, op_group(node.name),
                 (node.end_ns - node.start_ns - inner) / 1e6)
        for child in node.children_node:
            walk(child)

    for root in prof.profiler_result.get_data().values():
        walk(root)
    return wall_ms, groups


def _hook_convs(layers, is_conv, describe, forward):
    """Time every convolution layer of one ``forward()`` with pre/post hooks
    (Paddle's and PyTorch's layers alike); ``describe(layer, output)`` ->
    (kind, multiply-adds)."""
    convs, started, hooks = {}, {}, []

    def pre(layer, inputs):
        started[id(layer)] = time.perf_counter()

    def post(layer, inputs, output):
        ms = (time.perf_counter() - started.pop(id(layer))) * 1e3
        kind, macs = describe(layer, output)
        entry = convs.setdefault(kind, {'ms': 0.0, 'macs': 0, 'layers': 0})
        entry['ms'] += ms
        entry['macs'] += macs
        entry['layers'] += 1

    for layer in layers:
        if is_conv(layer):
            hooks.append(layer.register_forward_pre_hook(pre))
            # Paddle: register_forward_post_hook; PyTorch: register_forward_hook
            post_hook = getattr(layer, 'register_forward_post_hook', None)
            hooks.append((post_hook or layer.register_forward_hook)(post))
    try:
        forward()
    finally:
        for hook in hooks:
            hook.remove()
    return convs


def _paddle_convs(model, x):
    import numpy as np
    import paddle

    def describe(layer, output):
        kh, kw = layer.weight.shape[2:]
        macs = int(np.prod(output.shape)) * layer.weight.shape[1] * kh * kw
        return conv_kind((kh, kw), layer._dilation), macs

    def forward():
        with paddle.no_grad():
            model(x)
    return _hook_convs(model.sublayers(),
                       lambda m: isinstance(m, paddle.nn.Conv2D), describe,
                       forward)


def dygraph(spec):
    import paddle
    model = bc._paddle_model(spec)
    model.eval()
    x = paddle.to_tensor(bc._input(spec['shape']))
    with paddle.no_grad():
        model(x)  # warm-up
    wall_ms, groups = _paddle_groups(model, x)
    return {'wall_ms': wall_ms, 'groups': groups,
            'convs': _paddle_convs(model, x)}


# -- the PyTorch original ------------------------------------------------------

def torch_original(spec):
    import torch
    import torch.nn.functional as F
    from torch.profiler import ProfilerActivity, profile
    torch.set_num_threads(spec['threads'])
    family = bc.FAMILIES[spec['family']]
    model = bc.build_torch(family, spec['num_classes'],
                           os.path.join(spec['workdir'], 'torch.pth'))
    model.eval()
    x = torch.from_numpy(bc._input(spec['shape']))
    head = bc.TORCH_EVAL[family.torch[0]]

    def forward():
        with torch.no_grad():
            F.interpolate(head(model, x), x.shape[2:], mode='bilinear',
                          align_corners=False)

    forward()  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        start = time.perf_counter()
        forward()
        wall_ms = (time.perf_counter() - start) * 1e3
    groups = {}
    for event in prof.key_averages():
        _add(groups, op_group(event.key), event.self_cpu_time_total / 1e3)

    def describe(layer, output):
        kh, kw = layer.weight.shape[2:]
        macs = output.numel() * layer.weight.shape[1] * kh * kw
        return conv_kind((kh, kw), layer.dilation), macs
    convs = _hook_convs(model.modules(),
                        lambda m: isinstance(m, torch.nn.Conv2d), describe,
                        forward)
    return {'wall_ms': wall_ms, 'groups': groups, 'convs': convs}


# -- ONNX Runtime --------------------------------------------------------------

def onnxruntime(spec):
    import onnxruntime as ort
    from paddleseg_ctx.deploy.backends import onnx_options
    save_dir = os.path.join(spec['workdir'], 'deploy')
    options = onnx_options(spec['threads'])  # the deployed session's
    options.enable_profiling = True
    options.profile_file_prefix = os.path.join(save_dir, 'ort_profile')
    session = ort.InferenceSession(os.path.join(save_dir, 'model.onnx'),
                                   options,
                                   providers=['CPUExecutionProvider'])
    feed = {session.get_inputs()[0].name: bc._input(spec['shape'])}
    session.run(None, feed)  # warm-up
    start = time.perf_counter()
    session.run(None, feed)
    wall_ms = (time.perf_counter() - start) * 1e3
    path = session.end_profiling()
    with open(path) as f:
        events = json.load(f)
    os.remove(path)
    runs = [e for e in events if e.get('name') == 'model_run']
    last = runs[-1]
    groups = {}
    for event in events:
        if (event.get('cat') == 'Node' and
                event['name'].endswith('_kernel_time') and
                last['ts'] <= event['ts'] <= last['ts'] + last['dur']):
            _add(groups, op_group(event['args']['op_name']),
                 event['dur'] / 1e3)
    return {'wall_ms': wall_ms, 'groups': groups, 'convs': {}}


PROFILERS = {'dygraph': dygraph, 'torch': torch_original,
             'onnxruntime': onnxruntime}


def profile(spec):
    """One case's profile: ``wall_ms`` (the profiled forward), ``groups``
    {group: ms} (with the time outside any operator), ``convs`` {kind:
    {ms, macs, layers}}; or {'error': why}."""
    try:
        result = PROFILERS[spec['impl']](spec)
    except Exception as err:  # noqa: BLE001  (reported as skipped)
        return {'error': bc._describe(err)}
    inside = sum(result['groups'].values())
    result['groups'][OUTSIDE] = max(result['wall_ms'] - inside, 0.0)
    return result


# -- printing ------------------------------------------------------------------

def format_profile(name, size, profiles):
    """The table of one family: ms per operator group in each runtime, and
    the convolutions by kind (ms, GFLOP/s)."""
    impls = [i for i in PROFILERS if i in profiles]
    ok = [i for i in impls if 'error' not in profiles[i]]
    lines = ['{}: where an eval forward {} goes, ms under each runtime\'s '
             'profiler'.format(name, size)]
    for impl in impls:
        if impl not in ok:
            lines.append('  {}: skipped: {}'.format(impl,
                                                    profiles[impl]['error']))
    if not ok:
        return '\n'.join(lines)
    ratio = 'dygraph' in ok and 'torch' in ok
    lines.append('  {:18s}'.format('operator group') + ''.join(
        '{:>13s}'.format(i) for i in ok) + ('  dygraph/torch' if ratio else ''))

    def row(label, values):
        text = '  {:18s}'.format(label) + ''.join(
            '{:13.1f}'.format(v) for v in values)
        if ratio and values[ok.index('torch')] > 0:
            text += '  {:13.2f}'.format(values[ok.index('dygraph')] /
                                        values[ok.index('torch')])
        return text

    for group in GROUP_ORDER:
        values = [profiles[i]['groups'].get(group, 0.0) for i in ok]
        if any(v >= 0.05 for v in values):
            lines.append(row(group, values))
    lines.append(row('total', [profiles[i]['wall_ms'] for i in ok]))
    hooked = [i for i in ok if profiles[i]['convs']]
    if hooked:
        lines.append('  convolution layers by kind (forward hooks): ms, '
                     'GFLOP/s')
        for kind in CONV_KINDS:
            cells = []
            for impl in hooked:
                entry = profiles[impl]['convs'].get(kind)
                if entry:
                    cells.append('{} {:.1f} ms, {:.1f} GFLOP/s ({} layers)'
                                 .format(impl, entry['ms'],
                                         2 * entry['macs'] / entry['ms'] / 1e6,
                                         entry['layers']))
            if cells:
                lines.append('    {:12s} {}'.format(kind, '; '.join(cells)))
    return '\n'.join(lines)
