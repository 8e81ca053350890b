"""Static-graph export to Paddle Inference and ONNX, and ``deploy.yaml``.

An exported directory holds ``model.json`` (``model.pdmodel`` before Paddle 3)
+ ``model.pdiparams`` and/or ``model.onnx``, and ``deploy.yaml`` naming them;
it runs without paddleseg_ctx's training code (``paddleseg_ctx.infer``,
or PaddleSeg's ``DeployConfig`` + Paddle Inference).  The ``paddlex`` layout
names the same files ``inference.*`` and the yaml ``inference.yml``, with
``Global.model_name`` and the preprocessing in the two transforms PaddleX
3.x's semantic-segmentation predictor knows (:func:`paddlex_transforms`).
ONNX is converted by paddle2onnx from the saved program:
``paddle.onnx.export`` on the dygraph model fails for these models
("forward() requires x").
"""
import os
import tempfile

import numpy as np
import paddle
import yaml

from paddleseg_ctx.deploy.config import find_model_file
from paddleseg_ctx.files import atomic_write

__all__ = ['FORMATS', 'LAYOUTS', 'OutputOp', 'to_static',
           'save_inference_model', 'export_onnx', 'export_model',
           'write_deploy_yaml', 'paddlex_transforms']

FORMATS = ('paddle', 'onnx', 'both')
# Layout of an export directory: file prefix and yaml name.  'paddlex' is
# what PaddleX 3.x's predictors load (PaddleSeg >= 2.9 writes it with
# --for_fd): inference.json + inference.pdiparams + inference.yml.
LAYOUTS = {
    'paddleseg': ('model', 'deploy.yaml'),
    'paddlex': ('inference', 'inference.yml'),
}


class OutputOp(paddle.nn.Layer):
    """Keep the main logit and optionally post-process it for deployment.

    Args:
        model (nn.Layer): Segmentation model returning a list of logits.
        output_op (str): 'argmax' (int32 label map), 'softmax' or 'none'.
    """

    def __init__(self, model, output_op='argmax'):
        super().__init__()
        if output_op not in ('argmax', 'softmax', 'none'):
            raise ValueError('output_op must be argmax, softmax or none, got '
                             '{!r}'.format(output_op))
        self.model = model
        self.output_op = output_op

    def forward(self, x):
        logit = self.model(x)[0]
        if self.output_op == 'argmax':
            return paddle.argmax(logit, axis=1, dtype='int32')
        if self.output_op == 'softmax':
            return paddle.nn.functional.softmax(logit, axis=1)
        return logit


def _input_shape(input_shape):
    """``input_shape`` as a list; None means dynamic ``[None, 3, None, None]``."""
    return list(input_shape) if input_shape else [None, 3, None, None]


def to_static(model, input_shape=None, output_op='argmax'):
    """Wrap ``model`` (put in eval mode) for ``paddle.jit.save``.

    ``input_shape`` None means dynamic ``[None, 3, None, None]``.
    """
    model.eval()
    spec = paddle.static.InputSpec(
        shape=_input_shape(input_shape), dtype='float32', name='x')
    return paddle.jit.to_static(
        OutputOp(model, output_op), input_spec=[spec], full_graph=True)


def save_inference_model(model, save_dir, input_shape=None,
                         output_op='argmax', prefix='model'):
    """Export ``model`` to ``save_dir/<prefix>.*``; return
    ``(program_file, params_file)``."""
    os.makedirs(save_dir, exist_ok=True)
    static = to_static(model, input_shape, output_op)
    paddle.jit.save(static, os.path.join(save_dir, prefix))
    return (find_model_file(save_dir, prefix),
            os.path.join(save_dir, prefix + '.pdiparams'))


def _onnx_tools():
    try:
        import onnx
        import paddle2onnx
    except ImportError as err:
        raise ImportError(
            'ONNX export needs paddle2onnx: pip install paddle2onnx==2.1.0 '
            '(or pip install paddleseg_ctx[onnx]).') from err
    return onnx, paddle2onnx


def export_onnx(model_file, params_file, save_file, opset_version=11):
    """Convert an exported Paddle program to ONNX with paddle2onnx.

    Nothing is installed at run time: paddle2onnx 2.1.0 is asked for the
    model bytes (``save_file=None``), which skips its optional optimisation
    step, whose default (polygraphy) sets ``POLYGRAPHY_AUTOINSTALL_DEPS=1``
    and pip-installs packages (it upgraded numpy to 2.x, breaking OpenCV).

    Returns:
        str: ``save_file``.
    """
    onnx, paddle2onnx = _onnx_tools()
    try:
        model_bytes = paddle2onnx.export(
            model_file, params_file, save_file=None,
            opset_version=opset_version, enable_onnx_checker=True)
    except Exception as err:  # noqa: BLE001  paddle2onnx logs the cause
        raise RuntimeError('paddle2onnx could not convert {} (its error is '
                           'logged above).'.format(model_file)) from err
    onnx_model = onnx.load_from_string(model_bytes)
    _restore_program_attributes(onnx_model, model_file)
    atomic_write(save_file, lambda tmp: onnx.save(onnx_model, tmp))
    return save_file


def _set_pad_value(graph, node, value):
    """An ONNX ``Pad``'s constant is its third input."""
    from onnx import numpy_helper
    if len(node.input) < 3 or not node.input[2]:
        return
    fixed = node.output[0] + '.pad_value'
    graph.initializer.append(
        numpy_helper.from_array(np.array(value, np.float32), fixed))
    node.input[2] = fixed


def _set_alpha(graph, node, value):
    for attribute in node.attribute:
        if attribute.name == 'alpha':
            attribute.f = value


# Paddle op, its attribute, and how to write it into the ONNX node made from
# it.  paddle2onnx 2.1.0 writes garbage for these under Paddle 3.x PIR:
# pad3d's pad_value became a double in Paddle 3.3 (PR 75970; e.g. ISANet then
# pads with huge values), and leaky_relu's slope is read from an `alpha`
# attribute the PIR op does not have (ISNet's LIP form gets slopes of 0 or NaN).
_PROGRAM_ATTRIBUTES = (
    ('pad3d', 'pad_value', _set_pad_value),
    ('leaky_relu', 'negative_slope', _set_alpha),
)


def _restore_program_attributes(onnx_model, model_file):
    """Write the attributes of ``_PROGRAM_ATTRIBUTES`` from the Paddle program
    into the ONNX nodes converted from those ops.  paddle2onnx names such a
    node's output ``p2o.pd_op.<op>.<k>.0``, k counting that op in program
    order; writing the program's value is right for every Paddle version."""
    layer = paddle.jit.load(os.path.splitext(model_file)[0])
    program = layer.program()  # keep `layer` alive while its ops are read
    ops = program.global_block().ops
    for op_name, attribute, write in _PROGRAM_ATTRIBUTES:
        values = [op.attrs()[attribute] for op in ops
                  if op.name() == 'pd_op.' + op_name]
        for node in onnx_model.graph.node:
            name = node.output[0].split('.') if node.output else []
            if name[:3] == ['p2o', 'pd_op', op_name]:
                write(onnx_model.graph, node, values[int(name[3])])


# PaddleX 3.x's SegPredictor (paddlex/inference/models/semantic_segmentation/
# predictor.py) builds its preprocessing from `Deploy.transforms` with two
# types only, and always runs: read as RGB uint8, Resize, Normalize, to CHW.
# Its Resize defaults differ from PaddleSeg's (keep_ratio=True,
# size_divisor=32), so every argument is written out; its Normalize computes
# (x / 255 - mean) / std with 3-element mean and std.
_RESIZE_DEFAULTS = {'target_size': [512, 512], 'keep_ratio': False,
                    'size_divisor': None, 'interp': 'LINEAR'}
# PaddleSeg's interpolation names and PaddleX's (cv2 backend) for each.
_PADDLEX_INTERP = {'NEAREST': 'NEAREST', 'LINEAR': 'LINEAR',
                   'CUBIC': 'BICUBIC', 'BICUBIC': 'BICUBIC', 'AREA': 'AREA',
                   'LANCZOS4': 'LANCZOS4'}


def _three(values, key, source):
    values = list(values) if isinstance(values, (list, tuple)) else [values]
    if len(values) == 1:
        values = values * 3
    if len(values) != 3:
        raise ValueError('{}: Normalize {} must have 1 or 3 values for '
                         'PaddleX, got {!r}.'.format(source, key, values))
    return [float(v) for v in values]


def _paddlex_resize(config, source):
    unknown = sorted(set(config) - set(_RESIZE_DEFAULTS))
    if unknown:
        raise ValueError('{}: Resize arguments {} have no PaddleX '
                         'equivalent.'.format(source, unknown))
    resize = dict(_RESIZE_DEFAULTS, **config)
    if resize['interp'] not in _PADDLEX_INTERP:
        raise ValueError(
            '{}: Resize interp {!r} has no PaddleX equivalent; use one of '
            '{}.'.format(source, resize['interp'], sorted(_PADDLEX_INTERP)))
    return {'type': 'Resize',
            'target_size': [int(v) for v in resize['target_size']],
            'keep_ratio': bool(resize['keep_ratio']),
            'size_divisor': resize['size_divisor'],
            'interp': _PADDLEX_INTERP[resize['interp']]}


def paddlex_transforms(transforms, source):
    """``transforms`` (PaddleSeg configs) as PaddleX's ``Deploy.transforms``.

    PaddleX's segmentation predictor knows ``Resize`` and ``Normalize`` only
    and applies at most one of each, resize first.  ``Resize`` is written
    with all its arguments, ``ResizeByLong`` as a keep-ratio ``Resize`` into
    a square of its long side (the same size: both round ``side * scale``),
    ``Normalize`` with 3-element mean and std; a config without
    ``Normalize`` gets mean 0 and std 1/255 (raw pixel values).  Resize and
    Normalize commute (a bilinear resize is a weighted mean), so their order
    in the config does not matter.

    Args:
        transforms (list[dict]): PaddleSeg transform configs.
        source (str): Where they come from, for error messages.

    Returns:
        list[dict]: ``[Resize, Normalize]`` or ``[Normalize]``.

    Raises:
        ValueError: A transform PaddleX cannot express, naming it.
    """
    resizes, normalizes = [], []
    for config in transforms:
        config = dict(config)
        name = config.pop('type', None)
        if name == 'Resize':
            resizes.append(_paddlex_resize(config, source))
        elif name == 'ResizeByLong' and set(config) == {'long_size'}:
            side = int(config['long_size'])
            resizes.append(_paddlex_resize(
                {'target_size': [side, side], 'keep_ratio': True}, source))
        elif name == 'Normalize':
            normalizes.append({
                'type': 'Normalize',
                'mean': _three(config.pop('mean', 0.5), 'mean', source),
                'std': _three(config.pop('std', 0.5), 'std', source)})
            if config:
                raise ValueError('{}: Normalize arguments {} have no PaddleX '
                                 'equivalent.'.format(source, sorted(config)))
        else:
            raise ValueError(
                '{}: transform {!r} cannot be written for PaddleX, whose '
                'segmentation predictor knows only Resize (target_size, '
                'keep_ratio, size_divisor, interp) and Normalize (mean, std); '
                'export with the default --layout paddleseg, or change the '
                'config\'s export.transforms.'.format(source, name))
    if len(resizes) > 1 or len(normalizes) > 1:
        raise ValueError('{}: PaddleX applies one Resize and one Normalize; '
                         'the transforms have {} resizes and {} Normalize.'
                         .format(source, len(resizes), len(normalizes)))
    if not normalizes:
        normalizes = [{'type': 'Normalize', 'mean': [0.0] * 3,
                       'std': [1 / 255.0] * 3}]
    return resizes + normalizes


def write_deploy_yaml(save_dir, transforms, model_file=None,
                      params_file=None, onnx_file=None, input_shape=None,
                      output_op='argmax', layout='paddleseg', model_name=None):
    """Write ``deploy.yaml`` (``inference.yml`` in the paddlex layout) for
    the files exported to ``save_dir``.

    PaddleSeg's ``DeployConfig`` reads it (``Deploy.model``/``params``/
    ``transforms``); ``Deploy.model`` names the program file really written
    (``model.json`` under Paddle 3, where PaddleSeg 2.8 writes
    ``model.pdmodel``), and ``Deploy.onnx`` the ONNX model.  Keys of a format
    that was not exported are left out.  The paddlex layout adds
    ``Global.model_name``, which PaddleX uses to pick its predictor.

    Args:
        save_dir (str): Export directory.
        transforms (list[dict]): Preprocessing, PaddleSeg transform configs
            (in the paddlex layout, already :func:`paddlex_transforms`).
        model_file, params_file, onnx_file (str|None): Files written.
        input_shape (list|None): Fixed input shape, None for dynamic.
        output_op (str): 'argmax', 'softmax' or 'none'.
        layout (str): A key of :data:`LAYOUTS`.
        model_name (str|None): ``Global.model_name`` (paddlex layout).

    Returns:
        str: Path of the yaml file.
    """
    deploy = {}
    for key, path in (('model', model_file), ('params', params_file),
                      ('onnx', onnx_file)):
        if path:
            deploy[key] = os.path.basename(path)
    deploy.update({
        'transforms': transforms,
        'input_shape': _input_shape(input_shape),
        'output_op': output_op,
        'output_dtype': 'int32' if output_op == 'argmax' else 'float32',
    })
    content = {'Deploy': deploy}
    if layout == 'paddlex':
        content['Global'] = {'model_name': model_name}
    path = os.path.join(save_dir, LAYOUTS[layout][1])

    def write(tmp):
        with open(tmp, 'w') as f:
            yaml.safe_dump(content, f, sort_keys=False)

    atomic_write(path, write)
    return path


def export_model(model, save_dir, transforms, formats='paddle',
                 input_shape=None, output_op='argmax', opset_version=11,
                 layout='paddleseg', model_name=None):
    """Export ``model`` to ``save_dir`` and write its ``deploy.yaml``.

    Args:
        model (nn.Layer): Segmentation model returning a list of logits.
        save_dir (str): Output directory.
        transforms (list[dict]): Preprocessing for ``deploy.yaml``.
        formats (str): 'paddle', 'onnx' or 'both'.  ONNX is converted from a
            saved Paddle program, kept only with 'both'.
        input_shape (list|None): Fixed ``[N, 3, H, W]``; None for dynamic.
        output_op (str): 'argmax', 'softmax' or 'none'.
        opset_version (int): ONNX opset (paddle2onnx raises it if needed).
        layout (str): 'paddleseg' (``model.*`` + ``deploy.yaml``) or
            'paddlex' (``inference.*`` + ``inference.yml``, for PaddleX 3.x;
            needs output_op 'argmax').
        model_name (str|None): ``Global.model_name`` of the paddlex layout;
            None: the model's class name.

    Returns:
        str: Path of the yaml file.
    """
    if formats not in FORMATS:
        raise ValueError('formats must be one of {}, got {!r}'.format(
            FORMATS, formats))
    if layout not in LAYOUTS:
        raise ValueError('layout must be one of {}, got {!r}'.format(
            sorted(LAYOUTS), layout))
    if layout == 'paddlex':
        if output_op != 'argmax':
            raise ValueError(
                'The paddlex layout needs output_op argmax: PaddleX\'s '
                'segmentation predictor reads the output as a label map '
                '(got {!r}).'.format(output_op))
        transforms = paddlex_transforms(transforms, 'the export transforms')
        model_name = model_name or type(model).__name__
    if formats != 'paddle':
        _onnx_tools()  # fail before the slow part
    os.makedirs(save_dir, exist_ok=True)
    prefix = LAYOUTS[layout][0]
    files = {}
    with tempfile.TemporaryDirectory() as tmp:
        paddle_dir = tmp if formats == 'onnx' else save_dir
        model_file, params_file = save_inference_model(
            model, paddle_dir, input_shape, output_op, prefix)
        if formats != 'onnx':
            files.update(model_file=model_file, params_file=params_file)
        if formats != 'paddle':
            files['onnx_file'] = export_onnx(
                model_file, params_file,
                os.path.join(save_dir, prefix + '.onnx'), opset_version)
    return write_deploy_yaml(save_dir, transforms, input_shape=input_shape,
                             output_op=output_op, layout=layout,
                             model_name=model_name, **files)
