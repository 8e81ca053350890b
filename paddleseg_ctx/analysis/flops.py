"""Multiply-adds and parameters of a model, per module group.

What is counted: every ``nn.Conv2D`` and ``nn.Linear`` layer (output
elements x products per output element, grouped convolutions included) and
every ``paddle.matmul`` / ``paddle.bmm`` call (attention).  Element-wise
work (batch norm, activations, resizes, softmax, bias additions) is left
out: it is not GEMM work and small beside it.  One multiply-add (MAC) is two
floating-point operations, so FLOPs = 2 x MACs.

Parameters are the trainable ones: batch norm's running statistics (which
Paddle keeps as parameters too) and other fixed tensors are not counted.

Groups (``module_groups.yml``): backbone, context head, auxiliary head,
classifier.  A matmul counts in the layer that calls it.
"""
import os

import numpy as np
import paddle
import paddle.nn as nn
import yaml

__all__ = ['GROUPS_FILE', 'count_macs', 'macs_by_layer', 'module_groups',
           'group_of', 'group_table', 'format_table']

GROUPS_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                           'module_groups.yml')
CONTEXT_HEAD = 'context_head'
GROUP_ORDER = ('backbone', CONTEXT_HEAD, 'aux_head', 'classifier')


def macs_by_layer(model, shape):
    """``{layer name: multiply-adds}`` of one eval forward of ``model`` on a
    zero tensor of ``shape`` (e.g. ``(1, 3, 512, 512)``).  Names are those
    of ``model.named_sublayers()``; ``''`` is the model itself."""
    totals = {}
    running = []  # names of the layers whose forward is running

    def add(name, macs):
        totals[name] = totals.get(name, 0) + macs

    def enter(name):
        def hook(layer, inputs):
            running.append(name)
        return hook

    def leave(name):
        def hook(layer, inputs, output):
            running.pop()
            if isinstance(layer, nn.Conv2D):
                kh, kw = layer.weight.shape[2:]
                per_output = layer.weight.shape[1] * kh * kw  # in/groups
                add(name, int(np.prod(output.shape)) * per_output)
            elif isinstance(layer, nn.Linear):
                add(name, int(np.prod(output.shape)) * layer.weight.shape[0])
        return hook

    def matmul(x, y, transpose_x=False, transpose_y=False, name=None):
        out = original_matmul(x, y, transpose_x, transpose_y, name)
        inner = x.shape[-2] if transpose_x else x.shape[-1]
        add(running[-1], int(np.prod(out.shape)) * inner)
        return out

    def bmm(x, y, name=None):
        out = original_bmm(x, y, name)
        add(running[-1], int(np.prod(out.shape)) * x.shape[-1])
        return out

    hooks = []
    for name, layer in model.named_sublayers(include_self=True):
        hooks.append(layer.register_forward_pre_hook(enter(name)))
        hooks.append(layer.register_forward_post_hook(leave(name)))
    original_matmul, original_bmm = paddle.matmul, paddle.bmm
    paddle.matmul, paddle.bmm = matmul, bmm
    try:
        model.eval()
        with paddle.no_grad():
            model(paddle.zeros(shape))
    finally:
        paddle.matmul, paddle.bmm = original_matmul, original_bmm
        for hook in hooks:
            hook.remove()
    return totals


def count_macs(model, shape):
    """Multiply-adds of one eval forward of ``model`` on ``shape``."""
    return sum(macs_by_layer(model, shape).values())


def module_groups(model):
    """``{group: [attribute path, ...]}`` of ``model``'s type from
    ``module_groups.yml``; for a type not listed there, ``backbone`` and
    one group per other top-level sub-layer."""
    with open(GROUPS_FILE) as f:
        table = yaml.safe_load(f)
    groups = table.get(type(model).__name__)
    if groups is not None:
        return groups
    return {name: [name] for name, _ in model.named_children()}


def group_of(name, groups):
    """The group whose path is the longest prefix of the layer or parameter
    ``name``; :data:`CONTEXT_HEAD` when none is."""
    best, found = -1, CONTEXT_HEAD
    for group, paths in groups.items():
        for path in paths:
            if (name == path or name.startswith(path + '.')) and \
                    len(path) > best:
                best, found = len(path), group
    return found


def group_table(model, shape):
    """Rows ``{'group', 'params', 'macs', 'flops'}``, one per group in
    :data:`GROUP_ORDER` (then any other), and a last ``total`` row."""
    groups = module_groups(model)
    rows = {}

    def row(group):
        return rows.setdefault(group, {'group': group, 'params': 0,
                                       'macs': 0})

    for name, param in model.named_parameters():
        if param.trainable:  # not batch norm's running statistics
            row(group_of(name, groups))['params'] += int(np.prod(param.shape))
    for name, macs in macs_by_layer(model, shape).items():
        row(group_of(name, groups))['macs'] += macs
    order = [g for g in GROUP_ORDER if g in rows]
    order += sorted(g for g in rows if g not in GROUP_ORDER)
    table = [rows[g] for g in order]
    table.append({'group': 'total',
                  'params': sum(r['params'] for r in table),
                  'macs': sum(r['macs'] for r in table)})
    for r in table:
        r['flops'] = 2 * r['macs']
    return table


def format_table(table, shape, model_name):
    """``table`` (:func:`group_table`) as text for a terminal."""
    total = table[-1]
    lines = [
        '{} on input {}: MACs = multiply-adds of Conv2D, Linear and matmul '
        '(element-wise operations not counted); FLOPs = 2 x MACs; params = '
        'trainable parameters.'.format(
            model_name, 'x'.join(map(str, shape))),
        '{:<14} {:>12} {:>10} {:>10} {:>8}'.format(
            'group', 'params (M)', 'GMACs', 'GFLOPs', 'MACs %'),
    ]
    for row in table:
        share = 100 * row['macs'] / total['macs'] if total['macs'] else 0
        lines.append('{:<14} {:>12.3f} {:>10.3f} {:>10.3f} {:>8.1f}'.format(
            row['group'], row['params'] / 1e6, row['macs'] / 1e9,
            row['flops'] / 1e9, share))
    return '\n'.join(lines)
