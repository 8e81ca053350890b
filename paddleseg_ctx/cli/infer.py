"""``python -m paddleseg_ctx.infer``: segment images with an exported model.

Takes the flags of PaddleSeg's ``deploy/python/infer.py`` (its commands carry
over by swapping the script) plus ``--backend``, and writes what PaddleSeg's
predict writes (``paddleseg_ctx.deploy.predictor`` does the work).

Runs with numpy, OpenCV, PyYAML and Paddle Inference or ONNX Runtime only:
neither PaddleSeg nor this package's training code is imported
(``paddleseg_ctx/__init__.py`` skips them for this command).
"""
import argparse
import os

from paddleseg_ctx.deploy.backends import BACKENDS, DEVICES, create_runner
from paddleseg_ctx.deploy.config import DeployConfig
from paddleseg_ctx.deploy.predictor import Predictor, list_images, predict_all
from paddleseg_ctx.deploy.visualize import color_map
from paddleseg_ctx.errors import ArgumentParser, add_debug, run


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
    add_debug(parser)
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
    predict_all(predictor, paths, root, batch_size)

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
