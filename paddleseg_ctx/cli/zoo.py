"""``python -m paddleseg_ctx.zoo``: the model zoo (``configs/model_zoo.yml``)
as a command::

    python -m paddleseg_ctx.zoo list [--model GCNet] [--dataset cityscapes]
    python -m paddleseg_ctx.zoo show ROW
    python -m paddleseg_ctx.zoo download ROW [--dest DIR]

``list`` prints one line per row: its id (the config's file name), config,
published mIoU (single scale, flip, ms+flip) and GPUs x batch per GPU.
``show`` prints a row's recipe, the protocol behind each published column and
the command lines that train, download and evaluate it.  ``download`` puts
the row's weights where ``--model_path URL`` finds them (the download cache,
or ``--dest``), resumably and verified (see ``paddleseg_ctx.zoo``).  The
Python API is in ``paddleseg_ctx.zoo``.
"""
import os

from paddleseg_ctx import zoo
from paddleseg_ctx.errors import ArgumentParser, add_debug
from paddleseg_ctx.evaluation.protocol import COLUMNS, describe, protocol_for
from paddleseg_ctx.weights import fetch

COLUMN_TITLES = {'single': 'mIoU', 'flip': 'flip', 'ms_flip': 'ms+flip'}


def build_parser():
    parser = ArgumentParser(
        prog='python -m paddleseg_ctx.zoo',
        description='List, show and download the rows of the model zoo '
        '(configs/model_zoo.yml).')
    parser.add_argument('--zoo', default=zoo.ZOO_FILE,
                        help='Zoo file (default: configs/model_zoo.yml of this package).')
    commands = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
    listing = commands.add_parser('list', help='One line per row.')
    listing.add_argument('--model', help='Only rows of this model: ' + ', '.join(zoo.MODELS))
    listing.add_argument('--dataset', help='Only rows of this data set: ' +
                         ', '.join(zoo.DATASET_NAMES))
    listing.add_argument('--all', action='store_true',
                         help='Also the configs without published numbers.')
    show = commands.add_parser('show', help='A row: recipe, protocols, command lines.')
    show.add_argument('row', metavar='ROW', help='Row id, as `list` prints it.')
    download = commands.add_parser(
        'download', help="Download and verify a row's weights (resumable).")
    download.add_argument('row', metavar='ROW', help='Row id, as `list` prints it.')
    download.add_argument('--dest', help='Folder for the file. Default: the download cache '
                          'that --model_path URL reads ($SEG_HOME/pretrained_model).')
    download.add_argument('--quiet', action='store_true', help='No progress bar.')
    for sub in (listing, show, download):
        add_debug(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == 'list':
        datasets = list(zoo.DATASET_NAMES) + list(zoo.DATASET_NAMES.values())
        for flag, value, choices in (('--model', args.model, zoo.MODELS),
                                     ('--dataset', args.dataset, datasets)):
            if value is not None and value.lower() not in [c.lower() for c in choices]:
                parser.error('{} {}: expected one of {}'.format(flag, value, ', '.join(choices)))
        print(table(args.zoo, args.model, args.dataset, args.all))
    elif args.command == 'show':
        print(show(args.zoo, args.row))
    else:
        path, digest = zoo.download_row(args.row, args.dest, args.zoo,
                                        progress=not args.quiet)
        print('{}\nSHA-256 {} (verified against {})'.format(
            path, digest, _verified_by(zoo.get_row(args.row, args.zoo))))
    return 0


def _miou(value):
    return '-' if value is None else '{:.2f}'.format(value)


def _gpus(entry):
    return '{} x {}'.format(entry['gpus'] or '?', entry['batch_size_per_gpu'])


def table(path, model=None, dataset=None, include_unpublished=False):
    """The ``list`` table (text)."""
    rows = set(zoo.list_models(model, dataset, path, include_unpublished))
    entries = [e for e in zoo.load_zoo(path, include_unpublished=True) if zoo.row_id(e) in rows]
    header = ['row', 'config'] + [COLUMN_TITLES[c] for c in COLUMNS] + ['GPUs x batch']
    lines = [[zoo.row_id(e), e['config']] +
             [_miou((e['published'] or {}).get(key)) for key in COLUMNS.values()] +
             [_gpus(e)] for e in entries]
    widths = [max(len(r[i]) for r in [header] + lines) for i in range(len(header))]
    text = ['  '.join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip()
            for r in [header] + lines]
    text.append('{} row(s). `python -m paddleseg_ctx.zoo show ROW` for one.'.format(len(lines)))
    return '\n'.join(text)


def _verified_by(entry):
    digest, where = fetch.expected_digest(entry['weights'] or '', entry.get('sha256'))
    return '{} {}'.format(where, digest) if digest else 'nothing (no digest known: record ' \
        'it as `sha256` in the zoo once the file is checked by hand)'


def show(path, row):
    """The ``show`` text of ``row``."""
    entry = zoo.get_row(row, path)
    config = entry['config']
    lines = [
        'row        {}'.format(zoo.row_id(entry)),
        'config     {}'.format(config),
        'model      {} on {} ({})'.format(entry['model'], entry['backbone'],
                                         zoo.DATASET_NAMES[entry['dataset']]),
        'recipe     {} ({} iterations, crop {} x {}, {} GPUs x {} images)'.format(
            {'paddleseg': 'PaddleSeg', 'mmseg': 'mmsegmentation',
             'ssseg': 'sssegmentation'}[entry['source']], entry['iters'],
            entry['crop_size'][0], entry['crop_size'][1], entry['gpus'] or '?',
            entry['batch_size_per_gpu']),
    ]
    if entry.get('note'):
        lines.append('note       {}'.format(entry['note']))
    if not zoo.is_published(entry):
        lines += ['published  nothing', '', 'train:',
                  '  python -m paddleseg_ctx.train --config {}'.format(config)]
        return '\n'.join(lines)
    lines.append('published')
    for column, key in COLUMNS.items():
        value = entry['published'][key]
        if value is not None:
            lines.append('  {:8s} {:6.2f}  {}'.format(
                COLUMN_TITLES[column], value, describe(protocol_for(entry, column))))
    target = zoo.weights_path(entry)
    lines += [
        'weights    {}'.format(entry['weights']),
        'cache      {}{}'.format(target, '' if os.path.isfile(target) else ' (not downloaded)'),
        'verified   by {}'.format(_verified_by(entry)),
        '',
        'download:',
        '  python -m paddleseg_ctx.zoo download {}'.format(zoo.row_id(entry)),
        'evaluate (each published column):',
    ]
    lines += ['  python -m paddleseg_ctx.val --config {} --model_path {} --protocol {}'.format(
        config, entry['weights'], column) for column, key in COLUMNS.items()
        if entry['published'][key] is not None]
    lines += ['train:', '  python -m paddleseg_ctx.train --config {}'.format(config)]
    return '\n'.join(lines)
