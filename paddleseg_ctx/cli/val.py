"""``python -m paddleseg_ctx.val``: PaddleSeg 2.8 ``tools/val.py``.

Multi-scale + flip evaluation as in PaddleSeg model-zoo tables::

    python -m paddleseg_ctx.val --config x.yml --model_path m.pdparams \\
        --aug_eval --scales 0.75 1.0 1.25 --flip_horizontal
"""
from paddle.utils import strtobool
from paddleseg.core import evaluate
from paddleseg.utils import utils

from paddleseg_ctx.cli import common


def build_parser():
    parser = common.new_parser(
        'val', 'Evaluate a segmentation model on the val_dataset of a '
        'config (mIoU, accuracy, kappa, dice).')
    parser.add_argument(
        '--model_path', help='Trained weights (.pdparams file or URL).')
    common.add_num_workers(parser)
    common.add_device(parser, 'evaluation')
    common.add_test_aug(parser, 'aug_eval', 'evaluation')
    other = parser.add_argument_group('other')
    common.add_data_format(other)
    other.add_argument(
        '--auc_roc',
        type=lambda text: bool(strtobool(text)),
        default=False,
        metavar='BOOL',
        help='Also compute the area under the ROC curve (`--auc_roc True`). '
        'Default: False.')
    common.add_opts(other)
    return parser


def main(argv=None):
    """Returns PaddleSeg's ``(mIoU, acc, class_iou, class_precision,
    kappa)``."""
    parser = build_parser()
    args = common.parse_args(parser, argv)
    cfg, builder = common.load_config(parser, args)
    test_config = common.merge_test_config(cfg, args, 'aug_eval')
    if args.auc_roc:  # PaddleSeg 2.8 parses --auc_roc but never uses it
        test_config['auc_roc'] = True
    common.show_info(cfg)
    utils.set_device(args.device)
    common.apply_data_format(cfg, args.data_format)

    model = builder.model
    common.load_weights(model, args.model_path)
    return evaluate(
        model,
        builder.val_dataset,
        num_workers=args.num_workers,
        **test_config)


if __name__ == '__main__':
    common.run(main)
