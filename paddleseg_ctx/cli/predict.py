"""``python -m paddleseg_ctx.predict``: PaddleSeg 2.8 ``tools/predict.py``.

Writes ``save_dir/pseudo_color_prediction/<name>.png`` (palette PNG whose
pixel indices are the class ids) and ``save_dir/added_prediction/<name>``
(the image blended with the colours) for every input image.
"""
from paddleseg.core import predict
from paddleseg.transforms import Compose
from paddleseg.utils import get_image_list, logger, utils

from paddleseg_ctx.cli import common
from paddleseg_ctx.evaluation import exported

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
        '--backend', default='dygraph', choices=exported.BACKENDS,
        help=exported.BACKEND_HELP)
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

    image_list, image_dir = get_image_list(args.image_path)
    logger.info('The number of images: {}'.format(len(image_list)))
    model, model_path = builder.model, args.model_path
    if args.backend != 'dygraph':  # the weights are in the exported program
        try:
            model, model_path = exported.load_model(
                builder, model_path, args.backend, common.load_weights), None
        except exported.BackendError as err:
            raise SystemExit('error: {}'.format(err))
    predict(
        model,
        model_path=model_path,
        transforms=Compose(builder.val_transforms),
        image_list=image_list,
        image_dir=image_dir,
        save_dir=args.save_dir,
        **test_config)


if __name__ == '__main__':
    common.run(main)
