"""Static-graph export and Paddle Inference, shared by the CLI and the tests.

An exported model is ``<save_dir>/model.{json|pdmodel}`` + ``model.pdiparams``
(Paddle 3 with PIR writes ``model.json``; older Paddle ``model.pdmodel``) and
runs without paddleseg_ctx installed.
"""
import os

import numpy as np
import paddle
import yaml

__all__ = ['OutputOp', 'to_static', 'save_inference_model', 'find_model_file',
           'write_deploy_yaml', 'InferenceRunner']


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


def find_model_file(save_dir, prefix='model'):
    """The program file ``paddle.jit.save`` wrote for ``prefix``."""
    for ext in ('.json', '.pdmodel'):
        path = os.path.join(save_dir, prefix + ext)
        if os.path.isfile(path):
            return path
    raise FileNotFoundError(
        'No exported program {0}.json or {0}.pdmodel in {1}. Export the '
        'model first (python -m paddleseg_ctx.export).'.format(prefix,
                                                               save_dir))


def save_inference_model(model, save_dir, input_shape=None,
                         output_op='argmax'):
    """Export ``model``; return ``(program_file, params_file)``."""
    os.makedirs(save_dir, exist_ok=True)
    static = to_static(model, input_shape, output_op)
    prefix = os.path.join(save_dir, 'model')
    paddle.jit.save(static, prefix)
    return find_model_file(save_dir), prefix + '.pdiparams'


def write_deploy_yaml(save_dir, model_file, params_file, transforms,
                      input_shape=None, output_op='argmax'):
    """Write PaddleSeg's ``deploy.yaml`` next to an exported model.

    ``paddleseg.deploy.infer.DeployConfig`` reads it; ``Deploy.model`` names
    the program file really written (``model.json`` under Paddle 3, where
    PaddleSeg 2.8 always writes ``model.pdmodel``).

    Args:
        save_dir (str): Export directory.
        model_file, params_file (str): Paths from :func:`save_inference_model`.
        transforms (list[dict]): Preprocessing, PaddleSeg transform configs.
        input_shape (list|None): Fixed input shape, None for dynamic.
        output_op (str): 'argmax', 'softmax' or 'none'.

    Returns:
        str: Path of ``deploy.yaml``.
    """
    deploy = {
        'model': os.path.basename(model_file),
        'params': os.path.basename(params_file),
        'transforms': transforms,
        'input_shape': _input_shape(input_shape),
        'output_op': output_op,
        'output_dtype': 'int32' if output_op == 'argmax' else 'float32',
    }
    path = os.path.join(save_dir, 'deploy.yaml')
    with open(path, 'w') as f:
        yaml.dump({'Deploy': deploy}, f)
    return path


class InferenceRunner:
    """Run an exported program with Paddle Inference on CPU.

    Args:
        model_file (str): ``model.json`` / ``model.pdmodel``.
        params_file (str): ``model.pdiparams``.
        cpu_threads (int): Math library threads.
        enable_mkldnn (bool): Use oneDNN kernels.
    """

    def __init__(self, model_file, params_file, cpu_threads=1,
                 enable_mkldnn=False):
        from paddle import inference
        config = inference.Config(model_file, params_file)
        config.disable_gpu()
        config.set_cpu_math_library_num_threads(cpu_threads)
        if enable_mkldnn:
            config.enable_mkldnn()
        else:
            config.disable_mkldnn()
        config.disable_glog_info()
        self.predictor = inference.create_predictor(config)

    def __call__(self, image):
        """``image``: float32 array [N, 3, H, W]; returns the first output."""
        predictor = self.predictor
        handle = predictor.get_input_handle(predictor.get_input_names()[0])
        image = np.ascontiguousarray(image, dtype='float32')
        handle.reshape(image.shape)
        handle.copy_from_cpu(image)
        predictor.run()
        out = predictor.get_output_handle(predictor.get_output_names()[0])
        return out.copy_to_cpu()
