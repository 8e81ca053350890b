"""A config's data sets read through once before training: ``python -m
paddleseg_ctx.datasets check --config C`` (:func:`check_config`), and the
cheap start-up part ``train`` runs (:func:`startup_check`).

``check`` reads every sample of the train and val sets the way the run
reads them (the data set's own ``__getitem__``: file lists, ADE20K's shift,
COCO-Stuff's ``.mat`` decoding), with the transforms replaced by reading
alone, and reports counts, class frequencies, label values out of range,
image/label size mismatches and unreadable files, one line per problem.
"""
import multiprocessing
import os

import cv2
import numpy as np
from paddleseg.utils import logger

from paddleseg_ctx.datasets.archives import parallel
from paddleseg_ctx.datasets.checks import SampleError, _read_label, read_image

__all__ = ['check_config', 'published_sizes', 'startup_check', 'survey']

_DATASET = None  # the data set the worker processes read (fork)


class _ReadOnly:
    """Stands in for a data set's ``Compose``: reads image and label as
    ``Compose`` does (BGR image, label as stored) and transforms nothing."""

    def __init__(self, read_flag, where):
        self.read_flag = read_flag
        self.where = where
        self.to_rgb = True

    def __call__(self, data):
        image_path = data['img']
        if isinstance(image_path, str):
            data['img'] = read_image(image_path, self.read_flag, self.where)
        if isinstance(data.get('label'), str):
            data['label'] = _read_label(data['label'], image_path, self.where)
        return data


def _read_sample(index):
    """``(index, pixel counts per label value, [problems])`` of a sample of
    ``_DATASET``."""
    dataset = _DATASET
    image_path = dataset.file_list[index][0]
    try:
        data = dataset[index]
    except Exception as err:  # noqa: BLE001  (reported, the pass goes on)
        text = str(err).strip().splitlines()[-1] if str(err).strip() else \
            type(err).__name__
        return index, None, ['unreadable: {} ({})'.format(image_path, text)]
    label = np.asarray(data['label'])
    if label.ndim == 3 and label.shape[0] == 1:
        label = label[0]
    if label.ndim != 2:
        return index, None, ['label of {} has shape {}: not single-channel '
                             'class ids.'.format(image_path,
                                                 list(label.shape))]
    problems = []
    height, width = data['img'].shape[:2]
    if label.shape != (height, width):
        problems.append('size mismatch: image {} is {}x{} but its label is '
                        '{}x{} (WxH).'.format(image_path, width, height,
                                              label.shape[1], label.shape[0]))
    values, counts = np.unique(label, return_counts=True)
    bad = [int(v) for v in values
           if (v < 0 or v >= dataset.num_classes) and
           v != dataset.ignore_index]
    if bad:
        problems.append(
            'out of range: label of {} holds {} (class ids are 0..{}, ignore '
            '{}).'.format(image_path, ', '.join(map(str, bad[:8])),
                          dataset.num_classes - 1, dataset.ignore_index))
    return index, (values.astype(np.int64), counts), problems


def survey(dataset, where, workers=1):
    """Read all of ``dataset`` (see the module docstring); returns
    ``(pixels per class id (num_classes + 1: the last is ignored), list of
    problems)``."""
    global _DATASET
    transforms, edge = dataset.transforms, getattr(dataset, 'edge', False)
    dataset.transforms = _ReadOnly(
        getattr(transforms, 'read_flag', cv2.IMREAD_COLOR), where)
    dataset.edge = False
    _DATASET = dataset
    try:
        results = parallel(_read_sample, list(range(len(dataset.file_list))),
                           workers, where)
    finally:
        dataset.transforms, dataset.edge, _DATASET = transforms, edge, None
    pixels = np.zeros(dataset.num_classes + 1, np.int64)
    problems = []
    for _, counted, found in sorted(results, key=lambda r: r[0]):
        problems += ['{}: {}'.format(where, p) for p in found]
        if counted is None:
            continue
        values, counts = counted
        inside = (values >= 0) & (values < dataset.num_classes)
        np.add.at(pixels, values[inside], counts[inside])
        pixels[-1] += counts[values == dataset.ignore_index].sum()
    return pixels, problems


def _frequency_lines(pixels):
    total = pixels.sum()
    if not total:
        return ['  no labelled pixels']
    shares = ['{:>3}: {:6.2%}'.format(i, p / total)
              for i, p in enumerate(pixels[:-1])]
    lines = ['  ' + '   '.join(shares[i:i + 6])
             for i in range(0, len(shares), 6)]
    absent = [str(i) for i, p in enumerate(pixels[:-1]) if not p]
    lines.append('  ignored: {:.2%}{}'.format(
        pixels[-1] / total, '; classes never present: ' +
        ', '.join(absent) if absent else ''))
    return lines


def _dataset_root_problem(dic, where, config):
    root = dic.get('dataset_root')
    if root is None or os.path.isdir(root):
        return None
    return ('--config {}: {}.dataset_root {} does not exist (relative to {}); '
            'make it with `python -m paddleseg_ctx.datasets prepare NAME '
            '--src DOWNLOADS --dst {}` (README, Data).'.format(
                config, where, root, os.getcwd(), root))


def check_config(config, workers=None, opts=None, official_splits=False):
    """Read the train and val sets of ``config`` through once, print what
    was found; returns the list of problems (empty: all readable).  Split
    sizes other than a published row's are a printed warning, or a problem
    with ``official_splits`` (a run meant to reproduce the row)."""
    from paddleseg_ctx.config import Builder, read_config
    workers = workers or min(8, multiprocessing.cpu_count())
    cfg = read_config(config, opts)
    builder = Builder(cfg, config)
    problems = []
    sets = {}
    for where in ('train_dataset', 'val_dataset'):
        dic = cfg.dic.get(where)
        if not dic:
            continue
        missing = _dataset_root_problem(dic, where, config)
        if missing:
            raise SampleError(missing)
        sets[where] = getattr(builder, where)
    for where, dataset in sets.items():
        files = dataset.file_list
        print('{}: {} (mode {}), {} images in {}'.format(
            where, type(dataset).__name__, getattr(dataset, 'mode', '?'),
            len(files), getattr(dataset, 'dataset_root', '?')))
        if not files:
            problems.append('{}: no images.'.format(where))
            continue
        print('  first: {}\n  last:  {}'.format(' '.join(files[0]),
                                                 ' '.join(files[-1])))
        pixels, found = survey(dataset, where, workers)
        problems += found
        print('  share of the pixels per class id:')
        print('\n'.join(_frequency_lines(pixels)))
    warning = _size_warning(config, published_sizes(config), {
        where: len(dataset.file_list) for where, dataset in sets.items()})
    if warning and official_splits:
        problems.append(warning)
    elif warning:
        print('warning: ' + warning)
    if problems:
        print('{} problem(s):'.format(len(problems)))
        for line in problems:
            print('  ' + line)
    else:
        print('no problems found.')
    return problems


# ---------------------------------------------------------------- start-up
def published_sizes(config):
    """``(dataset name, {'train_dataset': n, 'val_dataset': n})``: the
    official split sizes of the data set of ``config``'s row in the model
    zoo, or None for a config that is no published row."""
    from paddleseg_ctx import zoo
    from paddleseg_ctx.datasets.prepare import official
    try:
        entry = zoo.find_entry(config)
    except zoo.ZooError:  # a row without a published number
        return None
    if entry is None:
        return None
    info = official(entry['dataset'])
    return entry['dataset'], {
        where: info['splits'][info['config_splits'][key]]
        for where, key in (('train_dataset', 'train'), ('val_dataset', 'val'))
    }


def _size_warning(config, sizes, counts):
    """One line when ``counts`` (data set -> images) differ from the
    official split sizes of ``config``'s published row, else None."""
    if sizes is None:
        return None
    name, official = sizes
    wrong = [where for where in counts if counts[where] != official[where]]
    if not wrong:
        return None
    return ('{}: the published {} result used the official splits {}, but '
            'this run reads {}; it will not reproduce the published number '
            '(README, Data).'.format(
                config, name, ', '.join('{} {}'.format(w, official[w])
                                        for w in counts),
                ', '.join('{} {}'.format(w, counts[w]) for w in counts)))


def startup_check(config, train_dataset, val_dataset=None):
    """What ``train`` checks before its first step: each data set has
    images, its first and last files exist, and a published row's config
    reads data sets of the official split sizes (else one warning)."""
    sizes, counts = published_sizes(config), {}
    for where, dataset in (('train_dataset', train_dataset),
                           ('val_dataset', val_dataset)):
        files = getattr(dataset, 'file_list', None)
        if files is None:
            continue
        if not files:
            raise SampleError(
                '{}: {} at {} has no images; check `dataset_root` and the '
                'lists with `python -m paddleseg_ctx.datasets check --config '
                '{}`.'.format(where, type(dataset).__name__,
                              getattr(dataset, 'dataset_root', '?'), config))
        for pair in (files[0], files[-1]):
            for path in pair:
                if isinstance(path, str) and not os.path.isfile(path):
                    raise SampleError(
                        '{}: {} does not exist; the data set is incomplete. '
                        'Run `python -m paddleseg_ctx.datasets check --config '
                        '{}`.'.format(where, path, config))
        logger.info('{}: {} images; first {}, last {}'.format(
            where, len(files), files[0][0], files[-1][0]))
        counts[where] = len(files)
    warning = _size_warning(config, sizes, counts)
    if warning:
        logger.warning(warning)
