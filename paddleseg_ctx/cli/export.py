"""``python -m paddleseg_ctx.export``: PaddleSeg 2.8 ``tools/export.py``.

Writes to ``--save_dir``, by ``--format``: ``model.json`` (``model.pdmodel``
before Paddle 3) + ``model.pdiparams`` for Paddle Inference, ``model.onnx``
(paddle2onnx), and ``deploy.yaml`` naming the files written and the
preprocessing.  ``python -m paddleseg_ctx.infer`` runs the result, and so do
``paddleseg.deploy.infer.DeployConfig`` + Paddle Inference, without the
training code.  ``--layout paddlex`` writes ``inference.json`` +
``inference.pdiparams`` + ``inference.yml`` instead, the directory PaddleX
3.x's semantic-segmentation predictor loads (``infer`` runs it too).
"""
import os

from paddleseg.utils import logger

from paddleseg_ctx.cli import common
from paddleseg_ctx.config import ConfigError
from paddleseg_ctx.deploy.config import Compose
from paddleseg_ctx.deploy.export import (FORMATS, LAYOUTS, export_model,
                                         paddlex_transforms)
from paddleseg_ctx.errors import run
from paddleseg_ctx.weights import load_trained_weights


def build_parser():
    parser = common.new_parser('export', 'Export an inference model.')
    parser.add_argument(
        '--model_path', help='Trained weights (.pdparams file or URL).')
    parser.add_argument(
        '--save_dir',
        default='./output/inference_model',
        help='Output directory. Default: ./output/inference_model.')
    parser.add_argument(
        '--input_shape',
        nargs=4,
        type=int,
        metavar=('N', 'C', 'H', 'W'),
        help='Fixed input shape, e.g. `--input_shape 1 3 512 1024` '
        '(default: dynamic [None, 3, None, None]).')
    parser.add_argument(
        '--output_op',
        default='argmax',
        choices=('argmax', 'softmax', 'none'),
        help='Op appended to the main logit: argmax (int32 label map), '
        'softmax (probabilities) or none (logits). Default: argmax.')
    # paddleseg_ctx additions
    parser.add_argument(
        '--format',
        default='paddle',
        choices=FORMATS,
        help='paddle (Paddle Inference), onnx (needs paddle2onnx) or both. '
        'Default: paddle.')
    parser.add_argument(
        '--opset_version',
        type=int,
        default=11,
        help='ONNX opset; paddle2onnx raises it when an op needs a newer one. '
        'Default: 11.')
    parser.add_argument(
        '--layout',
        default='paddleseg',
        choices=sorted(LAYOUTS),
        help='paddleseg: model.* + deploy.yaml (PaddleSeg 2.8); paddlex: '
        'inference.* + inference.yml, for PaddleX 3.x (needs --output_op '
        'argmax; the transforms must be Resize/ResizeByLong and Normalize). '
        'Default: paddleseg.')
    parser.add_argument(
        '--paddlex_model_name',
        help='Global.model_name of inference.yml (--layout paddlex). '
        'Default: the model\'s type, e.g. CtxGINet, which PaddleX serves once '
        'registered (see the README); a name from PaddleX\'s segmentation '
        'model list is served without registration.')
    common.add_opts(parser)
    return parser


def deploy_transforms(cfg):
    """Preprocessing for ``deploy.yaml``: ``export.transforms`` (PaddleSeg
    <= 2.7, still in TIPC configs) or else the val transforms (2.8)."""
    transforms = cfg.dic.get('export', {}).get('transforms')
    if transforms is None:
        transforms = cfg.val_dataset_cfg.get('transforms')
    if transforms is None:
        raise ConfigError(
            'The config has neither `export.transforms` nor '
            '`val_dataset.transforms`; add one so deploy.yaml knows how to '
            'preprocess images.')
    return transforms


def main(argv=None):
    parser = build_parser()
    args = common.parse_args(parser, argv)
    if args.layout == 'paddlex' and args.output_op != 'argmax':
        parser.error('--layout paddlex needs --output_op argmax: PaddleX '
                     'reads the output as a label map.')
    if args.paddlex_model_name and args.layout != 'paddlex':
        parser.error('--paddlex_model_name applies to --layout paddlex only.')
    # Makes layers.SyncBatchNorm build plain BatchNorm2D (exportable).
    os.environ['PADDLESEG_EXPORT_STAGE'] = 'True'
    cfg, builder = common.load_config(parser, args)
    common.show_info(cfg)
    transforms = deploy_transforms(cfg)
    try:
        Compose(transforms, args.config)
    except ValueError as err:
        logger.warning('python -m paddleseg_ctx.infer will not run this '
                       'export: {}'.format(err))

    if args.layout == 'paddlex':
        try:
            paddlex_transforms(transforms, args.config)
        except ValueError as err:
            raise ConfigError(str(err)) from err

    model = builder.model
    load_trained_weights(model, args.model_path)
    yaml_file = export_model(model, args.save_dir, transforms, args.format,
                             args.input_shape, args.output_op,
                             args.opset_version, layout=args.layout,
                             model_name=args.paddlex_model_name)
    with open(yaml_file) as f:
        logger.info('Deploy information ({}):\n{}'.format(yaml_file, f.read()))
    logger.info('The inference model is saved in {}'.format(args.save_dir))


if __name__ == '__main__':
    run(main)
