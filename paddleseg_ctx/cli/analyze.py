"""``python -m paddleseg_ctx.analyze``: what a model costs and where it errs.

* ``flops``: multiply-adds (MACs), FLOPs (= 2 x MACs) and parameters per
  module group (backbone, context head, aux head, classifier)::

      python -m paddleseg_ctx.analyze flops --config x.yml \\
          --input_shape 1 3 512 512

* ``confusion``: the confusion matrix over the val set, normalised per label
  class, as CSV and PNG::

      python -m paddleseg_ctx.analyze confusion --config x.yml \\
          --model_path m.pdparams [--protocol ms_flip]

* ``images``: each val image's mIoU (CSV) and pictures of the worst ones
  (input | label | prediction)::

      python -m paddleseg_ctx.analyze images --config x.yml \\
          --model_path m.pdparams --worst 10

``confusion`` and ``images`` predict as ``val`` does: with the config's
``test_config``, or with ``--protocol`` the test procedure of a published
column of the config's ``configs/model_zoo.yml`` row.
"""
import csv
import heapq
import math
import os

import numpy as np
from paddleseg.utils import logger, utils

from paddleseg_ctx import analysis
from paddleseg_ctx import evaluation
from paddleseg_ctx.cli import common
from paddleseg_ctx.errors import ArgumentParser, add_debug
from paddleseg_ctx.files import atomic_write
from paddleseg_ctx.weights import load_trained_weights
from paddleseg_ctx.zoo import ZOO_FILE

__all__ = ['build_parser', 'main']

DEFAULT_SHAPE = (1, 3, 512, 512)


def build_parser():
    parser = ArgumentParser(
        prog='python -m paddleseg_ctx.analyze',
        description='Analysis tools: model cost (flops), confusion matrix '
        '(confusion) and the worst images (images) of a config\'s model.')
    commands = parser.add_subparsers(dest='command', metavar='COMMAND',
                                     required=True)
    flops = commands.add_parser(
        'flops', help='MACs, FLOPs and parameters per module group',
        description='Multiply-adds (MACs: Conv2D, Linear, matmul; '
        'element-wise operations are not counted), FLOPs = 2 x MACs, and '
        'parameters of the config\'s model per module group, for one eval '
        'forward. No weights are loaded: the counts do not depend on them.')
    _add_common(flops)
    flops.add_argument(
        '--input_shape', nargs=4, type=int, default=list(DEFAULT_SHAPE),
        metavar=('N', 'C', 'H', 'W'),
        help='Input shape. Default: {}.'.format(
            ' '.join(map(str, DEFAULT_SHAPE))))

    confusion = commands.add_parser(
        'confusion', help='confusion matrix over the val set (CSV, PNG)',
        description='Confusion matrix of the val set in one pass: '
        'confusion.csv (each row a label class, normalised to sum 1 over '
        'the predicted classes), confusion_counts.csv (pixels) and '
        'confusion.png (heat map) in --save_dir.')
    images = commands.add_parser(
        'images', help='per-image mIoU and pictures of the worst images',
        description='Per-image mIoU (mean over the classes in the image\'s '
        'label or prediction) and pixel accuracy of every val image '
        '(per_image.csv), and input | label | prediction pictures of the '
        '--worst N (worst/*.png), in --save_dir.')
    for sub, name in ((confusion, 'confusion'), (images, 'images')):
        _add_common(sub)
        sub.add_argument(
            '--model_path', required=True,
            help='Trained weights (.pdparams file or URL).')
        sub.add_argument(
            '--protocol', choices=tuple(evaluation.COLUMNS),
            help='Predict with the test procedure of that column of the '
            'config\'s row in configs/model_zoo.yml (as `val --protocol`). '
            'Default: the config\'s test_config.')
        sub.add_argument(
            '--save_dir', default=os.path.join('output', 'analysis', name),
            help='Output folder. Default: output/analysis/{}.'.format(name))
        common.add_num_workers(sub)
        common.add_device(sub, 'inference')
    images.add_argument(
        '--worst', type=int, default=10, metavar='N',
        help='How many of the lowest-mIoU images to draw. Default: 10.')
    return parser


def _add_common(parser):
    parser.add_argument(
        '--config', required=True, help='Path of the config file (.yml).')
    common.add_opts(parser)
    add_debug(parser)


def main(argv=None, zoo_file=ZOO_FILE):
    """``flops``: the rows of :func:`analysis.group_table`; ``confusion``:
    the [K, K] pixel counts; ``images``: the per-image rows."""
    parser = build_parser()
    args = common.parse_args(parser, argv)
    if args.command == 'flops':
        return flops(parser, args)
    if args.command == 'images' and args.worst < 0:
        parser.error('--worst {}: expected 0 or more images.'.format(
            args.worst))
    entry = (common.protocol_entry(
        parser, args, zoo_file, 'drop --protocol to predict with the '
        'config\'s test_config.') if args.protocol else None)
    cfg, builder = common.load_config(parser, args)
    utils.set_device(args.device)
    model = builder.model
    load_trained_weights(model, args.model_path)
    dataset = builder.val_dataset
    protocol = None
    if entry is not None:
        protocol = evaluation.protocol_for(
            entry, args.protocol,
            flip_pairs=getattr(dataset, 'FLIP_LABEL_PAIRS', ()))
    found = analysis.predictions(
        model, dataset, protocol=protocol, test_config=cfg.test_config,
        num_workers=args.num_workers)
    names = analysis.class_names(dataset)
    if args.command == 'confusion':
        return confusion(args, found, dataset, names)
    return images(args, found, dataset, names)




def flops(parser, args):
    if any(n <= 0 for n in args.input_shape):
        parser.error('--input_shape {}: every size must be positive.'.format(
            ' '.join(map(str, args.input_shape))))
    cfg, builder = common.load_config(parser, args)
    model_cfg = cfg.dic['model']
    for section in (model_cfg, model_cfg.get('backbone') or {}):
        if section.get('pretrained'):
            section['pretrained'] = None  # the counts need no weights
    model = builder.model
    table = analysis.group_table(model, tuple(args.input_shape))
    print(analysis.format_table(table, args.input_shape,
                                type(model).__name__))
    return table


def confusion(args, found, dataset, names):
    k = dataset.num_classes
    counts = np.zeros((k, k), np.int64)
    for _, pred, label in found:
        counts += analysis.confusion_counts(pred, label, k,
                                            dataset.ignore_index)
    normalized = analysis.normalize_rows(counts)
    paths = [os.path.join(args.save_dir, name) for name in
             ('confusion.csv', 'confusion_counts.csv', 'confusion.png')]
    analysis.write_csv(paths[0], normalized, names, '{:.6f}')
    analysis.write_csv(paths[1], counts, names, '{:d}')
    title = '{} on {} val images{}'.format(
        os.path.basename(args.config), len(dataset),
        ', protocol ' + args.protocol if args.protocol else '')
    analysis.write_png(paths[2], analysis.heatmap_image(normalized, names,
                                                        title))
    logger.info('Wrote {}.'.format(', '.join(paths)))
    return counts


def images(args, found, dataset, names):
    rows, worst = [], []  # worst: heap of (-mIoU, index, pred, label)
    files = getattr(dataset, 'file_list', None)
    for index, pred, label in found:
        scores = analysis.image_scores(pred, label, dataset.num_classes,
                                       dataset.ignore_index)
        name = files[index][0] if files else str(index)
        rows.append({'index': index, 'image': name, 'miou': scores['miou'],
                     'acc': scores['acc'],
                     'classes': ';'.join(names[c] for c in scores['classes'])})
        if args.worst and not math.isnan(scores['miou']):
            item = (-scores['miou'], -index, pred, label)
            if len(worst) < args.worst:
                heapq.heappush(worst, item)
            elif item[:2] > worst[0][:2]:
                heapq.heapreplace(worst, item)
    csv_path = os.path.join(args.save_dir, 'per_image.csv')
    _write_rows(csv_path, rows)
    worst = sorted(worst, key=lambda item: item[:2], reverse=True)
    for rank, (negative_miou, negative_index, pred, label) in enumerate(worst):
        index = -negative_index
        title = 'worst #{}: {} (val index {}), mIoU {:.3f}'.format(
            rank + 1, os.path.basename(rows[index]['image']), index,
            -negative_miou)
        picture = analysis.panel(analysis.raw_image(dataset, index), label,
                                 pred, names, dataset.ignore_index, title)
        analysis.write_png(os.path.join(
            args.save_dir, 'worst', '{:03d}_{}.png'.format(rank + 1, index)),
            picture)
    logger.info('Wrote {} and {} picture(s) in {}.'.format(
        csv_path, len(worst), os.path.join(args.save_dir, 'worst')))
    return rows


def _write_rows(path, rows):
    def write(tmp):
        with open(tmp, 'w', newline='') as f:
            writer = csv.DictWriter(
                f, fieldnames=['index', 'image', 'miou', 'acc', 'classes'])
            writer.writeheader()
            for row in rows:
                writer.writerow(dict(row, miou='{:.6f}'.format(row['miou']),
                                     acc='{:.6f}'.format(row['acc'])))

    atomic_write(path, write)
