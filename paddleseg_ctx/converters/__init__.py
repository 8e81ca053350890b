"""PyTorch checkpoints (mmsegmentation, sssegmentation, ImageNet backbones)
to Paddle weights, without PyTorch.

``torch_pickle`` reads ``torch.save`` files into numpy arrays; ``convert``
unwraps the container (mmseg ``state_dict``, ssseg ``model``, or a bare state
dict; a ``module.`` prefix is stripped), picks the key map that recognises
the keys, renames, and with a config checks the result against the model::

    from paddleseg_ctx.converters import convert_checkpoint, save_converted
    state = convert_checkpoint('gcnet_r50-d8_..._4b0fd17b.pth', config='x.yml')
    save_converted(state, 'gcnet_r50.pdparams')

or ``python -m paddleseg_ctx.convert SRC.pth DST.pdparams [--config C]``.
``--model_path`` and ``pretrained`` accept ``.pth`` files and URLs directly
(converted once, cached; see ``paddleseg_ctx.pretrained``).

Key map format
--------------
One YAML file per architecture in ``converters/keymaps/`` (the file name is
the map's name); more folders can be listed in ``$PADDLESEG_CTX_KEYMAPS``
(``os.pathsep``-separated).  Every pattern is a Python regular expression
matched against a whole key (``re.fullmatch``)::

    description: one line, shown in listings
    target: model            # model | backbone: what the Paddle names fill,
                             # checked against the config's model or its backbone
    detect:                  # the map applies to a checkpoint whose keys...
      all: [pattern, ...]    #   match each of these (each by one key at least)
      none: [pattern, ...]   #   match none of these (optional)
    drop: [pattern, ...]     # source keys to leave out (optional)
    rename:                  # ordered; the first pattern matching a source key
      - [pattern, replacement]   # gives its Paddle name (re.Match.expand: \\1, \\g<name>)
    reshape:                 # optional, on Paddle names: new shape (one -1 allowed);
      - [pattern, [-1]]      # the element count must stay the same

Applied by every map (MODELS_SPEC §1.1): ``*.num_batches_tracked`` is
dropped; a Paddle name ending in ``.running_mean`` / ``.running_var`` ends
in ``._mean`` / ``._variance`` instead; values become float32.  A source key
that is neither dropped nor renamed, two keys renamed to one name, or a
reshape changing the element count is an error, as is any missing,
unexpected or mis-shaped key against the config's model.
"""
from paddleseg_ctx.converters.convert import (Conversion, convert, convert_checkpoint,
                                              find_keymap, read_state_dict, save_converted,
                                              zoo_config)
from paddleseg_ctx.converters.keymaps import ConversionError, KeyMap, load_keymaps
from paddleseg_ctx.converters.torch_pickle import TorchReadError, is_torch_checkpoint

__all__ = ['Conversion', 'ConversionError', 'KeyMap', 'TorchReadError', 'convert',
           'convert_checkpoint', 'find_keymap', 'is_torch_checkpoint', 'load_keymaps',
           'read_state_dict', 'save_converted', 'zoo_config']
