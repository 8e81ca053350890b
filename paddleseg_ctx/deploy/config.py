"""``deploy.yaml`` of an exported model, read without PaddleSeg.

It is PaddleSeg's file (``paddleseg.deploy.infer.DeployConfig`` reads it
too): ``Deploy.model``/``params`` name the Paddle program, ``Deploy.onnx``
(our addition) the ONNX model, ``Deploy.transforms`` the preprocessing as
PaddleSeg transform configs.  PaddleSeg's transforms cannot be imported
without its training code, so the deterministic ones are re-done here with
OpenCV and numpy, operation for operation (PaddleSeg 2.8
``transforms/transforms.py`` and ``functional.py``), together with the
reverse of their resizes and paddings (``core/infer.py reverse_transform``).
"""
import inspect
import math
import os

import cv2
import numpy as np
import yaml

__all__ = ['DeployConfig', 'Compose', 'find_model_file', 'restore']

_INTERP = {
    'NEAREST': cv2.INTER_NEAREST,
    'LINEAR': cv2.INTER_LINEAR,
    'CUBIC': cv2.INTER_CUBIC,
    'BICUBIC': cv2.INTER_CUBIC,  # PaddleX's name (paddlex layout)
    'AREA': cv2.INTER_AREA,
    'LANCZOS4': cv2.INTER_LANCZOS4,
}


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


def _program_file(path):
    """``path``, or its .json/.pdmodel twin when only that exists: PaddleSeg
    2.8's own export names ``model.pdmodel``, Paddle 3 writes ``model.json``."""
    stem, ext = os.path.splitext(path)
    twin = stem + {'.pdmodel': '.json', '.json': '.pdmodel'}.get(ext, ext)
    return twin if not os.path.isfile(path) and os.path.isfile(twin) else path


class DeployConfig:
    """An exported model as described by its ``deploy.yaml``.

    Attributes:
        path (str): The yaml file.
        model, params, onnx (str|None): Paths of the files it names (None
            for a format that was not exported).
        transforms (Compose): The preprocessing.
        input_shape (list): ``[N, C, H, W]``, None for a dynamic size.
    """

    def __init__(self, path):
        try:
            with open(path) as f:
                dic = yaml.safe_load(f)
        except (OSError, yaml.YAMLError) as err:
            raise ValueError('Cannot read {}: {}'.format(path, err)) from err
        deploy = dic.get('Deploy') if isinstance(dic, dict) else None
        if not isinstance(deploy, dict):
            raise ValueError(
                '{} has no `Deploy` section; pass the deploy.yaml written by '
                'python -m paddleseg_ctx.export (or PaddleSeg\'s export).'.format(
                    path))
        self.path = path
        root = os.path.dirname(os.path.abspath(path))

        def named(key):
            return os.path.join(root, deploy[key]) if deploy.get(key) else None

        self.model = _program_file(named('model')) if named('model') else None
        self.params = named('params')
        self.onnx = named('onnx')
        if not (self.model or self.onnx):
            raise ValueError('{} names no model (`Deploy.model` or '
                             '`Deploy.onnx`).'.format(path))
        self.transforms = Compose(deploy.get('transforms') or [], path)
        shape = deploy.get('input_shape') or [None, 3, None, None]
        # Dynamic dims: None here, None or -1 in the files of various exports.
        self.input_shape = [d if isinstance(d, int) and d > 0 else None
                            for d in shape]


class Compose:
    """PaddleSeg's ``Compose`` of deterministic transforms, on arrays.

    Args:
        configs (list[dict]): Transform configs (``type`` + arguments).
        source (str): Where they come from, for error messages.
    """

    def __init__(self, configs, source):
        self.ops = []
        for config in configs:
            config = dict(config)
            name = config.pop('type', None)
            if name not in TRANSFORMS:
                raise ValueError(
                    '{}: transform {!r} is not supported for inference; '
                    'supported: {}.'.format(source, name,
                                            ', '.join(sorted(TRANSFORMS))))
            try:
                inspect.signature(TRANSFORMS[name]).bind(None, None, **config)
            except TypeError as err:
                raise ValueError('{}: {}: {}'.format(source, name,
                                                     err)) from err
            self.ops.append((TRANSFORMS[name], config))

    def __call__(self, image):
        """``image``: uint8 BGR array as ``cv2.imread`` returns.

        Returns:
            tuple: float32 CHW network input, and the list of
            ``('resize'|'padding', (h, w))`` steps that :func:`restore`
            undoes.
        """
        img = cv2.cvtColor(image.astype('float32'), cv2.COLOR_BGR2RGB)
        info = []
        for op, kwargs in self.ops:
            img = op(img, info, **kwargs)
        return np.transpose(img, (2, 0, 1)), info


def restore(output, info):
    """Undo the resizes and paddings of ``info`` on one model output: a
    label map ``[H, W]`` (nearest neighbour) or scores ``[C, H, W]``
    (bilinear, like PaddleSeg's ``reverse_transform`` on logits)."""
    for kind, (h, w) in reversed(info):
        if kind == 'padding':
            output = output[..., :h, :w]
        elif output.ndim == 2:
            rows = np.arange(h) * output.shape[0] // h
            cols = np.arange(w) * output.shape[1] // w
            output = output[rows[:, None], cols]
        else:
            # cv2.resize takes at most 512 channels at a time.
            output = np.concatenate([
                cv2.resize(np.ascontiguousarray(part.transpose(1, 2, 0)),
                           (w, h)).reshape(h, w, -1).transpose(2, 0, 1)
                for part in np.split(output, range(512, len(output), 512))
            ])
    return output


# Transforms: f(img HWC float32, info, **config) -> img, recording in info
# the steps to undo.  Argument names and defaults are PaddleSeg's.

def _resize_to(img, w, h, interp=cv2.INTER_LINEAR):
    return cv2.resize(img, (int(w), int(h)), interpolation=interp)


def _resize_long(img, long_size):
    h, w = img.shape[:2]
    scale = float(long_size) / max(h, w)
    return _resize_to(img, round(w * scale), round(h * scale))


def normalize(img, info, mean=(0.5, ), std=(0.5, )):
    if np.prod(std) == 0:
        raise ValueError('Normalize: std must not contain 0, got {}'.format(
            std))
    img = img.astype(np.float32, copy=False) / 255.0
    img -= np.array(mean)
    img /= np.array(std)
    return img


def resize(img, info, target_size=(512, 512), keep_ratio=False,
           size_divisor=None, interp='LINEAR'):
    if interp not in _INTERP:
        raise ValueError('Resize: interp must be one of {} for inference, '
                         'got {!r}'.format(sorted(_INTERP), interp))
    info.append(('resize', img.shape[:2]))
    w, h = target_size
    if keep_ratio:
        img_h, img_w = img.shape[:2]
        scale = min(max(w, h) / max(img_w, img_h),
                    min(w, h) / min(img_w, img_h))
        w, h = round(img_w * scale), round(img_h * scale)
    if size_divisor:
        w, h = (math.ceil(s / size_divisor) * size_divisor for s in (w, h))
    return _resize_to(img, w, h, _INTERP[interp])


def resize_by_long(img, info, long_size):
    info.append(('resize', img.shape[:2]))
    return _resize_long(img, long_size)


def resize_by_short(img, info, short_size, max_size=1e10):
    if isinstance(short_size, list):
        raise ValueError('ResizeByShort: a list of short sizes is random; '
                         'give one size for inference')
    info.append(('resize', img.shape[:2]))
    h, w = img.shape[:2]
    if short_size / min(h, w) * max(h, w) > max_size:
        short_size = int(max_size / max(h, w) * min(h, w))
    scale = float(short_size) / min(h, w)
    return _resize_to(img, round(w * scale), round(h * scale))


def limit_long(img, info, max_long=None, min_long=None):
    info.append(('resize', img.shape[:2]))
    long_edge = max(img.shape[:2])
    target = long_edge
    if max_long is not None and long_edge > max_long:
        target = max_long
    elif min_long is not None and long_edge < min_long:
        target = min_long
    return img if target == long_edge else _resize_long(img, target)


def padding(img, info, target_size, im_padding_value=127.5,
            label_padding_value=255):
    info.append(('padding', img.shape[:2]))
    if isinstance(target_size, int):
        target_size = (target_size, target_size)
    h, w = img.shape[:2]
    pad_h, pad_w = target_size[1] - h, target_size[0] - w
    if pad_h < 0 or pad_w < 0:
        raise ValueError(
            'Padding: the image ({}x{}) is larger than target_size {}x{}'.
            format(w, h, *target_size))
    return cv2.copyMakeBorder(img, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT,
                              value=(im_padding_value, ) * img.shape[2])


def padding_by_aspect_ratio(img, info, aspect_ratio=1,
                            im_padding_value=127.5, label_padding_value=255):
    h, w = img.shape[:2]
    if w / h == aspect_ratio:
        return img
    if w / h > aspect_ratio:
        h = int(w / aspect_ratio)
    else:
        w = int(h * aspect_ratio)
    return padding(img, info, (w, h), im_padding_value, label_padding_value)


TRANSFORMS = {
    'Normalize': normalize,
    'Resize': resize,
    'ResizeByLong': resize_by_long,
    'ResizeByShort': resize_by_short,
    'LimitLong': limit_long,
    'Padding': padding,
    'PaddingByAspectRatio': padding_by_aspect_ratio,
}
