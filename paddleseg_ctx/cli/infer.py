"""``python -m paddleseg_ctx.infer``: segment images with an exported model.

Takes the flags of PaddleSeg's ``deploy/python/infer.py`` (its commands carry
over by swapping the script) plus ``--backend``, and writes what PaddleSeg's
predict writes, at each image's own size:
``save_dir/pseudo_color_prediction/<name>.png`` (palette PNG whose pixel
values are the class ids) and ``save_dir/added_prediction/<name>`` (the image
blended with the class colours).

Runs with numpy, OpenCV, PyYAML and Paddle Inference or ONNX Runtime only:
neither PaddleSeg nor this package's training code is imported
(``paddleseg_ctx/__init__.py`` skips them for this command).
"""
import argparse
import os
import sys
import time

import cv2
import numpy as np

from paddleseg_ctx.deploy.backends import BACKENDS, DEVICES, create_runner
from paddleseg_ctx.deploy.config import DeployConfig, restore
from paddleseg_ctx.deploy.visualize import (color_map, overlay, palette_png,
                                            write_file)
from paddleseg_ctx.errors import ArgumentParser, UserError, run

# PaddleSeg's get_image_list suffixes.
IMAGE_SUFFIXES = ('.jpeg', '.jpg', '.bmp', '.png')


class InputError(UserError, ValueError):
    """An input image cannot be segmented; the message names it."""


def str2bool(text):
    """True/False as PaddleSeg's ``type=eval`` flags take them."""
    if text.lower() in ('true', '1'):
        return True
    if text.lower() in ('false', '0'):
        return False
    raise argparse.ArgumentTypeError('expected True or False, got {!r}'.format(
        text))


def build_parser():
    parser = ArgumentParser(
        prog='python -m paddleseg_ctx.infer',
        description='Segment images with an exported model (Paddle Inference '
        'or ONNX Runtime) and save colour-coded results.')
    parser.add_argument(
        '--config', required=True,
        help='deploy.yaml of the exported model (python -m '
        'paddleseg_ctx.export, or PaddleSeg\'s export).')
    parser.add_argument(
        '--image_path', required=True,
        help='An image, a directory of images (searched recursively), or a '
        'list file whose lines start with an image path relative to the '
        'list file.')
    parser.add_argument(
        '--save_dir', default='./output',
        help='Output directory. Default: ./output.')
    parser.add_argument(
        '--batch_size', type=int, default=1,
        help='Images per model run; images whose preprocessed sizes differ '
        'run separately. Default: 1.')
    parser.add_argument(
        '--backend', choices=BACKENDS,
        help='Default: onnxruntime when deploy.yaml names an ONNX model and '
        'onnxruntime is installed, else paddle (Paddle Inference).')
    parser.add_argument(
        '--device', choices=DEVICES,
        help='Default: gpu when the backend can use one, else cpu.')
    parser.add_argument(
        '--cpu_threads', type=int, default=os.cpu_count() or 1,
        help='Threads on CPU. Default: the number of CPUs.')
    parser.add_argument(
        '--enable_mkldnn', type=str2bool, default=False,
        help='True: use oneDNN (paddle backend on CPU; 4-5x faster for GCNet, '
        'ISANet and ISNet\'s ResNet form). Default False: on Paddle 3.3.1 '
        'it fails on GINet and crashes on ISNet\'s LIP form.')
    parser.add_argument(
        '--custom_color', nargs='+', type=int, metavar='V',
        help='Colour map as R G B values per class, e.g. `--custom_color 0 0 '
        '0 255 0 0` (default: PaddleSeg\'s colour map).')
    parser.add_argument(
        '--debug', action='store_true',
        help='Show the traceback of an error (by default a problem with the '
        'input ends the command with one message).')
    paddleseg = parser.add_argument_group(
        'accepted for PaddleSeg deploy/python/infer.py commands')
    paddleseg.add_argument(
        '--benchmark', type=str2bool, default=False,
        help='True: log the mean preprocessing, inference and saving time.')
    paddleseg.add_argument(
        '--model_name', default='', help='Name shown with --benchmark.')
    paddleseg.add_argument(
        '--print_detail', type=str2bool, default=False,
        help='True: show Paddle Inference\'s GLOG messages.')
    paddleseg.add_argument(
        '--with_argmax', action='store_true',
        help='No effect: score outputs (--output_op softmax/none) are always '
        'reduced with argmax.')
    paddleseg.add_argument(
        '--use_trt', type=str2bool, default=False, choices=(False, ),
        help='TensorRT is not supported: False only.')
    paddleseg.add_argument(
        '--precision', default='fp32', choices=('fp32', ),
        help='fp32 only.')
    return parser


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


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.cpu_threads < 1:
        parser.error('--batch_size and --cpu_threads must be at least 1.')
    try:
        deploy = DeployConfig(args.config)
        paths, root = list_images(args.image_path)
        runner = create_runner(deploy, args.backend, args.device,
                               args.cpu_threads, args.enable_mkldnn,
                               args.print_detail)
    except (OSError, ValueError, RuntimeError) as err:
        if args.debug:
            raise
        parser.error(str(err))
    batch_size = deploy.input_shape[0] or args.batch_size
    if batch_size != args.batch_size:
        print('[infer] the model was exported for batches of {} '
              '(--input_shape); using --batch_size {}'.format(
                  batch_size, batch_size))
    threads = ', {} threads'.format(args.cpu_threads) if (
        runner.device == 'cpu') else ''
    print('[infer] {} images, backend {} on {}{}, model {}'.format(
        len(paths), runner.name, runner.device, threads,
        deploy.onnx if runner.name == 'onnxruntime' else deploy.model),
        flush=True)

    predictor = Predictor(deploy, runner, args.save_dir,
                          color_map(args.custom_color))
    bar = progress(len(paths))
    try:
        for start in range(0, len(paths), batch_size):
            chunk = paths[start:start + batch_size]
            predictor(chunk, root)
            bar.update(len(chunk))
    finally:
        bar.close()

    if args.benchmark:
        print('[infer] {}{} ms per image: preprocess {:.1f}, inference {:.1f}, '
              'save {:.1f} (batch size {})'.format(
                  args.model_name + ' ' if args.model_name else '',
                  runner.name, *(1000 * predictor.seconds[k] / len(paths)
                                 for k in ('preprocess', 'inference', 'save')),
                  batch_size))
    print('[infer] results in {} (pseudo_color_prediction/, '
          'added_prediction/)'.format(args.save_dir))


if __name__ == '__main__':
    run(main)
