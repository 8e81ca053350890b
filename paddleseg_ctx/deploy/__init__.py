"""Export for deployment, and the runtime that serves exported models.

``export`` (needs paddle; paddle2onnx for ONNX) writes an inference
directory: ``model.json`` + ``model.pdiparams`` (Paddle Inference) and/or
``model.onnx``, plus ``deploy.yaml`` naming them and the preprocessing.
The runtime modules read that directory with numpy, OpenCV and PyYAML only,
plus Paddle Inference or ONNX Runtime:

- ``config``: ``deploy.yaml`` and PaddleSeg's deterministic transforms
- ``backends``: Paddle Inference and ONNX Runtime behind one call
- ``visualize``: palette PNGs and overlays like PaddleSeg's predict
- ``predictor``: the engine behind ``python -m paddleseg_ctx.infer``: image
  lists in, palette PNGs and overlays out

``exported`` (paddle and PaddleSeg) puts an exported program in the place of
the dygraph model for ``val`` and ``predict --backend``, exporting it once
into a cache.

Names below are imported on first use, so that reading the runtime part
never imports paddle (an ONNX Runtime machine need not have it).
"""
import importlib

_NAMES = {
    'export': ('OutputOp', 'to_static', 'save_inference_model',
               'export_onnx', 'export_model', 'write_deploy_yaml',
               'paddlex_transforms'),
    'config': ('DeployConfig', 'find_model_file'),
    'backends': ('InferenceRunner', 'OnnxRunner', 'create_runner'),
}
_MODULE_OF = {name: module for module, names in _NAMES.items()
              for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(
            'module {!r} has no attribute {!r}'.format(__name__, name))
    return getattr(importlib.import_module(__name__ + '.' + module), name)
