"""``python -m paddleseg_ctx.val``: PaddleSeg 2.8 ``tools/val.py``, plus
``--protocol`` to re-measure a published model-zoo number.

The procedure behind a column of the config's ``configs/model_zoo.yml`` row
(PaddleSeg, mmsegmentation or sssegmentation test protocol)::

    python -m paddleseg_ctx.val --config x.yml --model_path m.pdparams \\
        --protocol ms_flip

Without ``--protocol`` the flags keep their PaddleSeg meaning, e.g.
multi-scale + flip evaluation as in PaddleSeg model-zoo tables::

    python -m paddleseg_ctx.val --config x.yml --model_path m.pdparams \\
        --aug_eval --scales 0.75 1.0 1.25 --flip_horizontal
"""
from paddle.utils import strtobool
from paddleseg.core import evaluate
from paddleseg.utils import logger, utils

from paddleseg_ctx import evaluation
from paddleseg_ctx.cli import common
from paddleseg_ctx.deploy import exported
from paddleseg_ctx.errors import run
from paddleseg_ctx.zoo import ZOO_FILE

# PaddleSeg's own test-time flags, which --protocol replaces.
AUG_FLAGS = ('aug_eval', 'scales', 'flip_horizontal', 'flip_vertical',
             'is_slide', 'crop_size', 'stride')


def build_parser():
    parser = common.new_parser(
        'val', 'Evaluate a segmentation model on the val_dataset of a '
        'config (mIoU, accuracy, kappa, dice).')
    parser.add_argument(
        '--model_path', help='Trained weights (.pdparams file or URL).')
    parser.add_argument(
        '--protocol',
        choices=tuple(evaluation.COLUMNS),
        help='Re-measure a published number: run the test procedure behind '
        'that column (mIoU, flip, ms+flip) of the config\'s row in '
        'configs/model_zoo.yml (PaddleSeg, mmsegmentation or '
        'sssegmentation protocol). Replaces the augmentation and '
        'sliding-window flags.')
    parser.add_argument(
        '--backend', default=exported.default_backend(),
        choices=exported.BACKENDS, help=exported.backend_help())
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


def main(argv=None, zoo_file=ZOO_FILE):
    """Returns PaddleSeg's ``(mIoU, acc, class_iou, class_precision,
    kappa)``.  ``zoo_file``: the model zoo ``--protocol`` looks the config
    up in."""
    parser = build_parser()
    args = common.parse_args(parser, argv)
    entry = _zoo_entry(parser, args, zoo_file) if args.protocol else None
    cfg, builder = common.load_config(parser, args)
    common.show_info(cfg)
    utils.set_device(args.device)
    common.apply_data_format(cfg, args.data_format)

    model = exported.load_model(builder, args.model_path, args.backend)
    if entry is None:
        test_config = common.merge_test_config(cfg, args, 'aug_eval')
        if args.auc_roc:  # PaddleSeg 2.8 parses --auc_roc but never uses it
            test_config['auc_roc'] = True
        return evaluate(
            model,
            builder.val_dataset,
            num_workers=args.num_workers,
            **test_config)

    if cfg.test_config:
        logger.warning('--protocol ignores the config\'s test_config {}.'
                       .format(cfg.test_config))
    dataset = builder.val_dataset
    protocol = evaluation.protocol_for(
        entry, args.protocol, flip_pairs=getattr(dataset, 'FLIP_LABEL_PAIRS', ()))
    published = entry['published'][evaluation.COLUMNS[args.protocol]]
    logger.info('Re-measuring the published {} mIoU {:.2f} of {} ({} '
                'protocol).'.format(args.protocol, published, args.config,
                                    protocol.source))
    return evaluation.evaluate(
        model,
        dataset,
        protocol,
        num_workers=args.num_workers,
        auc_roc=args.auc_roc)


def _zoo_entry(parser, args, zoo_file):
    """The zoo entry of ``--config`` for ``--protocol``; ends the command
    with a message when flags conflict or there is nothing to re-measure."""
    given = [
        '--' + name for name in AUG_FLAGS
        if getattr(args, name) != parser.get_default(name)
    ]
    if given:
        parser.error('--protocol runs the published test procedure and '
                     'cannot be combined with {}; drop them, or drop '
                     '--protocol to use PaddleSeg\'s flags.'.format(
                         ', '.join(given)))
    return common.protocol_entry(
        parser, args, zoo_file, 'use PaddleSeg\'s flags (--aug_eval, '
        '--is_slide, ...) instead.')


if __name__ == '__main__':
    run(main)
