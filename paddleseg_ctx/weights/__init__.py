"""Weights: from a path or URL to a model, strictly.

:func:`load_model_weights` is the way in: it resolves a local file, an
archive or a URL (``fetch``: downloaded once into PaddleSeg's cache),
converts a PyTorch checkpoint on first use (``conversion``) and loads the
result, requiring every key and shape to match the model.  The modules, each
importing only those before it:

* ``pickled_data``: the globals of plain data both restricted readers allow;
* ``paddle_file``: the restricted reader of the files ``paddle.save`` writes
  (:func:`read_pickle`, :func:`load_paddle_file`: nothing in a file is ever
  run), :func:`read_paddle_state_dict` (a ``.pdparams`` file) and
  :func:`check_state_dict` (a state dict against a model);
* ``torch_file``: :func:`read_torch_state_dict` (a ``torch.save`` file, read
  without PyTorch by a restricted unpickler);
* ``keymaps``: one YAML key map per architecture (``keymaps/*.yml``), which
  renames PyTorch keys to Paddle names;
* ``conversion``: a PyTorch checkpoint to Paddle weights
  (``python -m paddleseg_ctx.convert``);
* ``fetch``: URLs, archives and the download cache; also routes PaddleSeg's
  own ``pretrained`` loading through them (``fetch.PADDLESEG_PATCHES``);
* ``load``: :func:`load_model_weights`, and :func:`load_trained_weights` for
  ``--model_path``.

The errors (:class:`WeightsError` and its kinds) are in
``paddleseg_ctx.errors``.
"""
from paddleseg_ctx.errors import (ConversionError, PretrainedDownloadError, TorchReadError,
                                  WeightsError)
from paddleseg_ctx.weights.conversion import (Conversion, build_without_weights, convert,
                                           convert_checkpoint, find_keymap, save_converted)
from paddleseg_ctx.weights.keymaps import KeyMap, load_keymaps
from paddleseg_ctx.weights.load import (load_model_weights, load_trained_weights,
                                        resolve_weights)
from paddleseg_ctx.weights.paddle_file import (check_state_dict, load_paddle_file,
                                               read_paddle_state_dict, read_pickle,
                                               restricted_paddle_load)
from paddleseg_ctx.weights.torch_file import is_torch_checkpoint, read_torch_state_dict

__all__ = ['Conversion', 'ConversionError', 'build_without_weights', 'KeyMap', 'PretrainedDownloadError',
           'TorchReadError', 'WeightsError', 'check_state_dict', 'convert',
           'convert_checkpoint', 'find_keymap', 'is_torch_checkpoint', 'load_keymaps',
           'load_model_weights', 'load_paddle_file', 'load_trained_weights',
           'read_paddle_state_dict', 'read_pickle', 'read_torch_state_dict',
           'resolve_weights', 'restricted_paddle_load', 'save_converted']
