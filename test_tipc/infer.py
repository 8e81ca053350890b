"""Paddle Inference over an exported model, with the flags of PaddleSeg's
``deploy/python/infer.py`` that the TIPC runner passes.

Needs only ``paddle`` and ``paddleseg`` (for ``DeployConfig``, which builds
the preprocessing from ``deploy.yaml``): an exported model must run without
paddleseg_ctx installed, so this script deliberately does not import it.
Writes one palette PNG per image (pixel value = class id) to ``--save_dir``.

    python test_tipc/infer.py --config out/deploy.yaml \\
        --image_path test_tipc/data/synthetic/val.txt --save_dir out/results
"""
import argparse
import os
import time

import numpy as np
from paddle import inference
from paddleseg.deploy.infer import DeployConfig
from paddleseg.utils import get_image_list, logger
from paddleseg.utils.visualize import get_pseudo_color_map


def str2bool(text):
    if text not in ('True', 'False'):
        raise argparse.ArgumentTypeError(
            'expected True or False, got {!r}'.format(text))
    return text == 'True'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Segment images with an exported model (Paddle '
        'Inference).')
    parser.add_argument(
        '--config', required=True, help='deploy.yaml of the exported model.')
    parser.add_argument(
        '--image_path',
        required=True,
        help='An image, a directory of images, or a list file whose lines '
        'start with an image path relative to the list (e.g. val.txt).')
    parser.add_argument('--batch_size', type=int, default=1)
    parser.add_argument('--save_dir', default='./output/infer_results')
    parser.add_argument('--device', default='cpu', choices=('cpu', 'gpu'))
    parser.add_argument('--cpu_threads', type=int, default=1)
    parser.add_argument(
        '--enable_mkldnn',
        type=str2bool,
        default=False,
        help='Use oneDNN on CPU (True/False). Default False: with Paddle '
        '3.3.1 oneDNN breaks these models.')
    # Accepted so the runner's GPU branch works; only the plain path exists.
    parser.add_argument('--use_trt', type=str2bool, default=False,
                        choices=(False,))
    parser.add_argument('--precision', default='fp32', choices=('fp32',))
    parser.add_argument(
        '--benchmark',
        type=str2bool,
        default=False,
        help='Log the mean preprocess and inference time per batch.')
    parser.add_argument('--model_name', default='', help='Shown in logs.')
    return parser.parse_args(argv)


def create_predictor(deploy, args):
    config = inference.Config(deploy.model, deploy.params)
    if args.device == 'gpu':
        config.enable_use_gpu(100, 0)
    else:
        config.disable_gpu()
        config.set_cpu_math_library_num_threads(args.cpu_threads)
        if args.enable_mkldnn:
            config.enable_mkldnn()
        else:
            config.disable_mkldnn()
    config.disable_glog_info()
    return inference.create_predictor(config)


def main(args):
    deploy = DeployConfig(args.config)
    # PaddleSeg >= 2.8 records the op appended at export; older files lack it.
    output_op = deploy.dic['Deploy'].get('output_op', 'none')
    predictor = create_predictor(deploy, args)
    input_handle = predictor.get_input_handle(predictor.get_input_names()[0])
    output_handle = predictor.get_output_handle(
        predictor.get_output_names()[0])
    images, _ = get_image_list(args.image_path)
    os.makedirs(args.save_dir, exist_ok=True)

    preprocess_time = infer_time = 0.0
    for start in range(0, len(images), args.batch_size):
        paths = images[start:start + args.batch_size]
        tic = time.perf_counter()
        batch = np.stack([deploy.transforms({'img': p})['img'] for p in paths])
        preprocess_time += time.perf_counter() - tic

        tic = time.perf_counter()
        input_handle.reshape(batch.shape)
        input_handle.copy_from_cpu(batch)
        predictor.run()
        output = output_handle.copy_to_cpu()
        infer_time += time.perf_counter() - tic

        labels = output if output_op == 'argmax' else output.argmax(axis=1)
        if labels.shape != (len(paths), ) + batch.shape[2:]:
            raise RuntimeError(
                'Expected a label map per image of shape {}, got output of '
                'shape {} (output_op {!r} in {}).'.format(
                    batch.shape[2:], output.shape, output_op, args.config))
        for path, label in zip(paths, labels):
            name = os.path.splitext(os.path.basename(path))[0] + '.png'
            get_pseudo_color_map(label.astype('uint8')).save(
                os.path.join(args.save_dir, name))

    batches = -(-len(images) // args.batch_size)
    if args.benchmark:
        logger.info('{} batch_size {} threads {}: preprocess {:.1f} ms, '
                    'inference {:.1f} ms per batch'.format(
                        args.model_name, args.batch_size, args.cpu_threads,
                        1000 * preprocess_time / batches,
                        1000 * infer_time / batches))
    logger.info('Segmented {} images; results in {}'.format(
        len(images), args.save_dir))


if __name__ == '__main__':
    main(parse_args())
