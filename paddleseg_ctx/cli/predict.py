"""``python -m paddleseg_ctx.predict``: PaddleSeg 2.8 ``tools/predict.py``.

Writes ``save_dir/pseudo_color_prediction/<name>.png`` (palette PNG whose
pixel indices are the class ids) and ``save_dir/added_prediction/<name>``
(the image blended with the colours) for every input image.  Grayscale and
RGBA images are read as RGB (alpha dropped), as PaddleSeg reads them;
``--model_path`` must fit the model exactly.
"""
from paddleseg.core import predict
from paddleseg.transforms import Compose
from paddleseg.utils import get_image_list, logger, utils

from paddleseg_ctx.cli import common
from paddleseg_ctx.datasets.checks import CheckedCompose
from paddleseg_ctx.errors import run
from paddleseg_ctx.deploy import exported
from paddleseg_ctx.weights import load_trained_weights

# test_config keys of val that paddleseg.core.predict does not accept.
_EVAL_ONLY_KEYS = ('aug_eval', 'auc_roc')


def build_parser():
    parser = common.new_parser(
        'predict', 'Predict images and save colour-coded results.')
    parser.add_argument(
        '--model_path', help='Trained weights (.pdparams file or URL).')
    parser.add_argument(
        '--image_path',
        required=True,
        help='An image, a directory of images, or a text file listing '
        'image paths (relative to the file\'s directory).')
    parser.add_argument(
        '--save_dir',
        default='./output/result',
        help='Output directory. Default: ./output/result.')
    parser.add_argument(
        '--backend', default=exported.default_backend(),
        choices=exported.BACKENDS, help=exported.backend_help())
    common.add_device(parser, 'prediction')
    common.add_test_aug(parser, 'aug_pred', 'prediction')
    other = parser.add_argument_group('other')
    other.add_argument(
        '--custom_color',
        nargs='+',
        type=int,
        metavar='V',
        help='Colour map as R G B values per class, e.g. `--custom_color 0 0 '
        '0 255 0 0` (default: PaddleSeg\'s colour map).')
    common.add_opts(other)  # paddleseg_ctx addition
    return parser


def main(argv=None):
    parser = build_parser()
    args = common.parse_args(parser, argv)
    cfg, builder = common.load_config(parser, args)
    test_config = common.merge_test_config(cfg, args, 'aug_pred')
    for key in _EVAL_ONLY_KEYS:
        test_config.pop(key, None)
    if args.custom_color:
        test_config['custom_color'] = args.custom_color
    common.show_info(cfg)
    utils.set_device(args.device)

    try:
        image_list, image_dir = get_image_list(args.image_path)
    except (OSError, RuntimeError) as err:  # e.g. a directory without images
        parser.error('--image_path {}: {}'.format(args.image_path, err))
    logger.info('The number of images: {}'.format(len(image_list)))
    model, load = builder.model, load_trained_weights
    if args.backend != 'dygraph':
        model = exported.load_model(builder, args.model_path, args.backend)
        load = _weights_in_program
    # Each image is checked as it is read: a file that is no image ends the
    # run with its name (PaddleSeg's reader fails with an AttributeError).
    transforms = CheckedCompose(Compose(builder.val_transforms), '--image_path')
    with common.entire_model_loading(load):
        predict(
            model,
            model_path=args.model_path,
            transforms=transforms,
            image_list=image_list,
            image_dir=image_dir,
            save_dir=args.save_dir,
            **test_config)


def _weights_in_program(model, model_path):
    """The exported program already holds ``--model_path``'s weights."""


if __name__ == '__main__':
    run(main)
