"""The engine behind ``python -m paddleseg_ctx.infer``: read images,
preprocess them as ``deploy.yaml`` says, run them through a backend in
batches, and write what PaddleSeg's predict writes, at each image's own size:
``save_dir/pseudo_color_prediction/<name>.png`` (palette PNG whose pixel
values are the class ids) and ``save_dir/added_prediction/<name>`` (the image
blended with the class colours).

Needs numpy, OpenCV and PyYAML only (plus the backend the runner wraps);
tqdm is used for progress when installed.
"""
import os
import sys
import time

import cv2
import numpy as np

from paddleseg_ctx.deploy.config import restore
from paddleseg_ctx.deploy.visualize import overlay, palette_png, write_file
from paddleseg_ctx.errors import UserError

__all__ = ['IMAGE_SUFFIXES', 'InputError', 'Predictor', 'list_images',
           'predict_all']

# PaddleSeg's get_image_list suffixes.
IMAGE_SUFFIXES = ('.jpeg', '.jpg', '.bmp', '.png')


class InputError(UserError, ValueError):
    """An input image cannot be segmented; the message names it."""


def read_image(path):
    """``path`` as a BGR uint8 array, or ``InputError`` naming it.  Grayscale
    and RGBA files (also 16-bit ones) become 3-channel BGR with the alpha
    dropped, as PaddleSeg reads them."""
    if not os.path.isfile(path):
        raise InputError('--image_path: image {} does not exist.'.format(path))
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(
            '--image_path: {} cannot be read as an image: it is not an image '
            'file (JPEG, PNG, BMP, ...) or it is truncated. Replace it or '
            'remove it from --image_path.'.format(path))
    return image


def list_images(image_path):
    """``(paths, root)`` for an image, a directory or a list file (as
    PaddleSeg's ``get_image_list``); outputs are named by their path
    relative to ``root`` (None: by file name)."""
    if os.path.isdir(image_path):
        paths = sorted(
            os.path.join(folder, name)
            for folder, _, names in os.walk(image_path)
            if '.ipynb_checkpoints' not in folder for name in names
            if name.lower().endswith(IMAGE_SUFFIXES) and
            not name.startswith('.'))
        root = image_path
    elif image_path.lower().endswith(IMAGE_SUFFIXES):
        if not os.path.isfile(image_path):
            raise FileNotFoundError('--image_path {}: no such image.'.format(
                image_path))
        return [image_path], None
    elif os.path.isfile(image_path):
        root = os.path.dirname(image_path)
        try:
            with open(image_path, encoding='utf-8') as f:
                paths = [os.path.join(root, line.split()[0]) for line in f
                         if line.strip()]
        except UnicodeDecodeError:
            raise ValueError(
                '--image_path {}: neither an image ({}) nor a list file of '
                'image paths (text).'.format(
                    image_path, ' '.join(IMAGE_SUFFIXES))) from None
    else:
        raise FileNotFoundError(
            '--image_path {}: no such image, directory or list file.'.format(
                image_path))
    if not paths:
        raise ValueError('--image_path {}: no images ({}) found.'.format(
            image_path, ' '.join(IMAGE_SUFFIXES)))
    return paths, root


def output_name(path, root):
    name = os.path.relpath(path, root) if root else os.path.basename(path)
    return os.path.basename(path) if name.startswith('..') else name


def to_label(output, info):
    """One image's model output -> uint8 class ids at the image's size.
    Integer outputs are label maps (--output_op argmax), float outputs
    scores [C, H, W], resized back before the argmax as PaddleSeg does."""
    if np.issubdtype(output.dtype, np.integer):
        label = restore(output.reshape(output.shape[-2:]), info)
    else:
        label = restore(output, info).argmax(axis=0)
    return label.astype(np.uint8)


class Counter:
    """Progress on stderr when tqdm is not installed: one updating line on a
    terminal, else a line per tenth of the images."""

    def __init__(self, total):
        self.total, self.done, self.shown = total, 0, -1
        self.tty = sys.stderr.isatty()

    def update(self, n):
        self.done += n
        tenth = 10 * self.done // self.total
        if self.tty or tenth > self.shown:
            sys.stderr.write('{}{}/{} images{}'.format(
                '\r' if self.tty else '', self.done, self.total,
                '' if self.tty else '\n'))
            sys.stderr.flush()
            self.shown = tenth

    def close(self):
        if self.tty:
            sys.stderr.write('\n')


def progress(total):
    try:
        from tqdm import tqdm
    except ImportError:
        return Counter(total)
    return tqdm(total=total, unit='img', file=sys.stderr)


class Predictor:
    """Preprocess, run and save batches of images.

    Args:
        deploy (DeployConfig): The exported model.
        runner: ``runner(batch) -> output`` (see ``deploy.backends``).
        save_dir (str): Output directory.
        colors (np.ndarray): [256, 3] colour map.
    """

    def __init__(self, deploy, runner, save_dir, colors):
        self.deploy = deploy
        self.runner = runner
        self.save_dir = save_dir
        self.colors = colors
        n, _, h, w = deploy.input_shape
        self.fixed_batch = n
        self.fixed_size = (h, w) if h and w else None
        self.seconds = {'preprocess': 0.0, 'inference': 0.0, 'save': 0.0}

    def __call__(self, paths, root):
        tic = time.perf_counter()
        images, inputs, infos = [], [], []
        for path in paths:
            image = read_image(path)
            x, info = self.deploy.transforms(image)
            if self.fixed_size and x.shape[1:] != self.fixed_size:
                raise InputError(
                    '{} is preprocessed to {}x{}, but the model was exported '
                    'for {}x{} inputs (--input_shape); add a Resize to the '
                    'export transforms or export without --input_shape.'.
                    format(path, x.shape[1], x.shape[2], *self.fixed_size))
            images.append(image)
            inputs.append(x)
            infos.append(info)
        preprocessed = time.perf_counter()
        outputs = self.run(inputs)
        inferred = time.perf_counter()
        for path, image, output, info in zip(paths, images, outputs, infos):
            self.save(output_name(path, root), image, to_label(output, info))
        self.seconds['preprocess'] += preprocessed - tic
        self.seconds['inference'] += inferred - preprocessed
        self.seconds['save'] += time.perf_counter() - inferred

    def run(self, inputs):
        """Model outputs for ``inputs``; same-sized inputs run together."""
        groups = {}
        for i, x in enumerate(inputs):
            groups.setdefault(x.shape, []).append(i)
        outputs = [None] * len(inputs)
        for members in groups.values():
            batch = np.stack([inputs[i] for i in members])
            if self.fixed_batch and len(batch) < self.fixed_batch:
                extra = np.repeat(batch[-1:], self.fixed_batch - len(batch), 0)
                batch = np.concatenate([batch, extra])
            for i, output in zip(members, self.runner(batch)):
                outputs[i] = output
        return outputs

    def save(self, name, image, label):
        stem, ext = os.path.splitext(name)
        write_file(
            os.path.join(self.save_dir, 'pseudo_color_prediction',
                         stem + '.png'), palette_png(label, self.colors))
        ok, data = cv2.imencode(ext or '.png',
                                overlay(image, label, self.colors))
        if not ok:
            raise ValueError('Cannot encode {} as {}.'.format(name, ext))
        write_file(os.path.join(self.save_dir, 'added_prediction', name),
                   data.tobytes())


def predict_all(predictor, paths, root, batch_size):
    """Run ``predictor`` over ``paths`` in chunks of ``batch_size`` images,
    showing progress on stderr."""
    bar = progress(len(paths))
    try:
        for start in range(0, len(paths), batch_size):
            chunk = paths[start:start + batch_size]
            predictor(chunk, root)
            bar.update(len(chunk))
    finally:
        bar.close()
