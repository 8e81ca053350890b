"""``python -m paddleseg_ctx.datasets``: ``prepare`` a published data set
from its downloads, ``check`` a config's data sets, or write the
``synthetic`` demo data set.  A first argument that is an option (the
original ``--root DIR ...`` command line) means ``synthetic``."""
import sys

from paddleseg_ctx.errors import ArgumentParser, add_debug

__all__ = ['main']

NAMES = ('cityscapes', 'voc12aug', 'ade20k', 'cocostuff10k', 'lip')


def _count(text):
    split, sep, number = text.partition('=')
    if not sep or not number.isdigit():
        raise ValueError(text)
    return split, int(number)


def build_parser():
    parser = ArgumentParser(
        prog='python -m paddleseg_ctx.datasets',
        description='Prepare and check the data sets (README, Data).')
    commands = parser.add_subparsers(dest='command', metavar='COMMAND')
    prepare = commands.add_parser(
        'prepare', help='lay out a published data set from its downloads',
        description='Extract, convert and verify a published data set into '
        'the layout the configs read (docs/datasets.md).')
    prepare.add_argument('name', choices=NAMES)
    prepare.add_argument('--src', required=True,
                         help='folder with the downloaded archives (or their '
                         'extracted folders)')
    prepare.add_argument('--dst', required=True,
                         help="the configs' dataset_root, e.g. data/cityscapes")
    prepare.add_argument('--workers', type=int,
                         help='processes for converting and verifying '
                         '(default: the CPU count, at most 8)')
    prepare.add_argument('--expect', type=_count, nargs='+',
                         metavar='SPLIT=N',
                         help='split sizes to expect instead of the official '
                         'ones (a deliberate subset)')
    prepare.add_argument('--fresh', action='store_true',
                         help='discard DST.partial of an interrupted run')
    check = commands.add_parser(
        'check', help="read a config's train and val sets through once",
        description='Counts, class frequencies, out-of-range label values, '
        'size mismatches and unreadable files of the data sets a config '
        'reads; exit status 1 when a problem is found.')
    check.add_argument('--config', required=True)
    check.add_argument('--workers', type=int,
                       help='reading processes (default: the CPU count, at '
                       'most 8)')
    check.add_argument('--opts', nargs='+', metavar='KEY=VALUE',
                       help='config overrides as for train, e.g. '
                       'train_dataset.dataset_root=/data/cityscapes')
    commands.add_parser('synthetic', add_help=False,
                        help='write the synthetic demo data set (--root DIR '
                        '...; `synthetic --help` lists the flags)')
    for sub in (prepare, check):
        add_debug(sub)
    return parser


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == 'synthetic':
        argv = argv[1:]
    elif argv and argv[0].startswith('-') and argv[0] not in ('-h', '--help'):
        pass  # the original command line: synthetic
    else:
        return _main(build_parser().parse_args(argv))
    from paddleseg_ctx.datasets.synthetic import main as synthetic
    return synthetic(argv)


def _main(args):
    if args.command == 'prepare':
        from paddleseg_ctx.datasets.prepare import prepare
        prepare(args.name, args.src, args.dst, workers=args.workers,
                counts=dict(args.expect) if args.expect else None,
                fresh=args.fresh)
    elif args.command == 'check':
        from paddleseg_ctx.datasets.survey import check_config
        if check_config(args.config, workers=args.workers, opts=args.opts):
            raise SystemExit(1)
    else:
        build_parser().print_help()
        raise SystemExit(2)
    return 0
