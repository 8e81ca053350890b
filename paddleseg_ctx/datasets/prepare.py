"""``python -m paddleseg_ctx.datasets prepare NAME --src DIR --dst DIR``:
the five published data sets from their official downloads, in the layout
our configs' ``dataset_root`` reads (see docs/datasets.md).

Steps, each restartable: every archive in ``--src`` (or its already
extracted folder) is extracted into ``DST.partial/.extract``; images are
hard-linked (or copied) and labels converted into ``DST.partial``; the
result is verified (official image count per split, every image with its
label, label values in range, image and label of one size); only then
``DST.partial`` becomes ``DST``.  An interrupted run leaves ``DST.partial``,
which the next run continues (``--fresh`` starts it over).

The facts (split sizes, archive names, the Cityscapes id -> train id table)
are data: ``official.yml`` next to this file.
"""
import glob
import os
import shutil
import time

import numpy as np
import yaml
from PIL import Image

from paddleseg_ctx.datasets.archives import (PrepareError, extract, locate,
                                             parallel, place)
from paddleseg_ctx.files import atomic_write, atomic_write_text

__all__ = ['OFFICIAL_FILE', 'PrepareError', 'list_pairs', 'official',
           'prepare', 'read_label', 'read_mat', 'sbd_label', 'verify']

OFFICIAL_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                             'official.yml')
STAMP = '.prepared.yml'
VOC_SETS = os.path.join('VOC2012', 'ImageSets', 'Segmentation')


def official(name=None):
    """``official.yml``: all data sets, or the entry of ``name``."""
    with open(OFFICIAL_FILE, encoding='utf-8') as f:
        table = yaml.safe_load(f)
    if name is None:
        return table
    if name not in table:
        raise PrepareError('unknown data set {!r}; choose one of {}.'.format(
            name, ', '.join(table)))
    return table[name]


# ------------------------------------------------------------------ reading
def read_mat(path, variable, struct=False):
    """Variable ``variable`` of the MATLAB v5 file ``path`` (scipy's reader,
    which only decodes data); ``struct``: a struct, as an object with one
    attribute per field.  v7.3 files (HDF5) are refused: the releases
    are v5, and h5py is not used."""
    from scipy.io import loadmat
    from scipy.io.matlab import matfile_version
    try:
        major, _ = matfile_version(path)
    except Exception as err:  # noqa: BLE001  (scipy raises several kinds)
        raise PrepareError('{} is not a MATLAB .mat file or it is truncated '
                           '({}).'.format(path, err)) from None
    if major == 2:
        raise PrepareError(
            '{} is a MATLAB v7.3 (HDF5) file; only v5 .mat files are read '
            '(as released; h5py is not used). Use the file from the official '
            'archive, or re-save it in MATLAB with save(..., \'-v7\').'.format(
                path))
    try:
        data = loadmat(path, variable_names=[variable], squeeze_me=struct,
                       struct_as_record=not struct)
    except Exception as err:  # noqa: BLE001
        raise PrepareError('{} cannot be read as a .mat file ({}); it is '
                           'truncated or damaged.'.format(path, err)) from None
    if variable not in data:
        raise PrepareError('{} has no variable "{}"; is it the file of the '
                           'official release?'.format(path, variable))
    return data[variable]


def sbd_label(path):
    """Class ids of an SBD ``cls/*.mat``: ``GTcls.Segmentation`` (0..20);
    the boundaries stored next to it are not used."""
    gt = read_mat(path, 'GTcls', struct=True)
    if not hasattr(gt, 'Segmentation'):
        raise PrepareError('{}: GTcls has no field Segmentation; is it an SBD '
                           'cls/*.mat file?'.format(path))
    return np.asarray(gt.Segmentation).astype(np.uint8)


def read_label(path):
    """A label file as its stored values: PNG class ids (a palette PNG gives
    its palette indices), or a COCO-Stuff ``.mat``'s ``S``."""
    if path.endswith('.mat'):
        return np.asarray(read_mat(path, 'S'))
    try:
        with Image.open(path) as image:
            if image.mode not in ('L', 'P', 'I', 'I;16'):
                raise PrepareError(
                    '{} is a {} image; a label must hold class ids (PNG mode '
                    'L or P), not colours.'.format(path, image.mode))
            return np.asarray(image)
    except (OSError, SyntaxError, ValueError) as err:
        raise PrepareError('{} cannot be read as an image ({}); it is '
                           'truncated or damaged.'.format(path, err)) from None


def _image_size(path):
    """(width, height) from the file header, without decoding it."""
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, SyntaxError, ValueError) as err:
        raise PrepareError('{} cannot be read as an image ({}).'.format(
            path, err)) from None


# --------------------------------------------------------------- converting
def _write_png(path, label, tmp_dir):
    atomic_write(path, lambda tmp: Image.fromarray(label, mode='L').save(
        tmp, format='PNG'), tmp_dir=tmp_dir)


def _convert(job):
    """One label file: ``(kind, source, target, tmp_dir, table)``; kind
    'train_ids' (Cityscapes labelIds through ``table``), 'palette' (VOC
    palette PNG as indices) or 'sbd' (SBD .mat)."""
    kind, source, target, tmp_dir, table = job
    if kind == 'sbd':
        label = sbd_label(source)
    else:
        label = read_label(source)
        if label.dtype != np.uint8:
            raise PrepareError('{}: expected 8-bit class ids, found {} '
                               'values.'.format(source, label.dtype))
        if kind == 'train_ids':
            label = table[label]
    _write_png(target, np.ascontiguousarray(label, np.uint8), tmp_dir)


def _train_id_table(info):
    table = np.full(256, info['ignore'], np.uint8)
    for label_id, train_id in info['train_ids'].items():
        table[int(label_id)] = train_id
    return table


def _read_ids(path):
    with open(path) as f:
        return [line.split()[0] for line in f if line.strip()]


def _write_ids(path, ids, tmp_dir):
    atomic_write_text(path, ''.join(i + '\n' for i in ids), tmp_dir=tmp_dir)


def _stem(path, suffix):
    return os.path.basename(path)[:-len(suffix)]


def _cityscapes(roots, out, tmp, info, workers):
    jobs = []
    table = _train_id_table(info)
    for split in info['splits']:
        pattern = os.path.join(split, '*', '*')
        for image in sorted(_glob(roots['images'], 'leftImg8bit', pattern +
                                  '_leftImg8bit.png')):
            rel = os.path.relpath(image, roots['images'])
            place(image, os.path.join(out, rel), tmp)
        for label in sorted(_glob(roots['labels'], 'gtFine', pattern +
                                  '_gtFine_labelIds.png')):
            rel = os.path.relpath(label, roots['labels'])
            target = os.path.join(out, rel[:-len('labelIds.png')] +
                                  'labelTrainIds.png')
            if not os.path.exists(target):
                jobs.append(('train_ids', label, target, tmp, table))
    parallel(_convert, jobs, workers, 'labelIds -> labelTrainIds')


def _voc12aug(roots, out, tmp, info, workers):
    voc = os.path.join(roots['voc'], 'VOC2012')
    sets = os.path.join(roots['voc'], VOC_SETS)
    train = _read_ids(os.path.join(sets, 'train.txt'))
    val = _read_ids(os.path.join(sets, 'val.txt'))
    sbd = _read_ids(os.path.join(roots['sbd'], 'train.txt')) + _read_ids(
        os.path.join(roots['sbd'], 'val.txt'))
    excluded = set(train) | set(val)
    aug = sorted(set(sbd) - excluded)
    out_sets = os.path.join(out, VOC_SETS)
    for name, ids in (('train', train), ('val', val), ('trainval',
                                                       train + val),
                      ('aug', aug), ('trainaug', train + aug)):
        _write_ids(os.path.join(out_sets, name + '.txt'), ids, tmp)
    jobs = []
    out_voc = os.path.join(out, 'VOC2012')
    for i in train + val + aug:
        image = os.path.join(voc, 'JPEGImages', i + '.jpg')
        if not os.path.exists(image):  # not in VOC 2012: SBD has it
            image = os.path.join(roots['sbd'], 'img', i + '.jpg')
        place(image, os.path.join(out_voc, 'JPEGImages', i + '.jpg'), tmp)
        target = os.path.join(out_voc, 'SegmentationClassAug', i + '.png')
        if i in excluded:
            label = os.path.join(voc, 'SegmentationClass', i + '.png')
            place(label, os.path.join(out_voc, 'SegmentationClass',
                                      i + '.png'), tmp)
            job = ('palette', label, target, tmp, None)
        else:
            job = ('sbd', os.path.join(roots['sbd'], 'cls', i + '.mat'),
                   target, tmp, None)
        if not os.path.exists(target):
            if not os.path.exists(job[1]):
                raise PrepareError(
                    '{} is listed but {} does not exist: the download is '
                    'incomplete'.format(i, job[1]))
            jobs.append(job)
    parallel(_convert, jobs, workers, 'VOC/SBD -> SegmentationClassAug')


def _ade20k(roots, out, tmp, info, workers):
    root = roots['all']
    for pattern in ('images/*/*.jpg', 'annotations/*/*.png', '*.txt'):
        for path in sorted(_glob(root, pattern)):
            place(path, os.path.join(out, os.path.relpath(path, root)), tmp)


def _cocostuff10k(roots, out, tmp, info, workers):
    root = roots['all']
    for name in ('train.txt', 'test.txt'):
        ids = _read_ids(os.path.join(root, 'imageLists', name))
        _write_ids(os.path.join(out, 'imageLists', name), ids, tmp)
        for i in ids:
            for rel in ('images/{}.jpg', 'annotations/{}.mat'):
                rel = rel.format(i)
                place(os.path.join(root, rel), os.path.join(out, rel), tmp)


def _lip(roots, out, tmp, info, workers):
    for split in info['splits']:
        labels = os.path.join(roots['labels'], split + '_segmentations')
        ids_file = locate(roots['images'], [split + '_id.txt'], depth=1)
        if ids_file is not None:
            ids = _read_ids(os.path.join(ids_file, split + '_id.txt'))
        else:  # no list in the download: the annotated images
            ids = sorted(_stem(p, '.png') for p in _glob(labels, '*.png'))
        _write_ids(os.path.join(out, split + '_id.txt'), ids, tmp)
        for i in ids:
            place(os.path.join(roots['images'], split + '_images', i + '.jpg'),
                  os.path.join(out, split + '_images', i + '.jpg'), tmp)
            place(os.path.join(labels, i + '.png'),
                  os.path.join(out, split + '_segmentations', i + '.png'),
                  tmp)


BUILDERS = {
    'cityscapes': _cityscapes,
    'voc12aug': _voc12aug,
    'ade20k': _ade20k,
    'cocostuff10k': _cocostuff10k,
    'lip': _lip,
}


def _glob(*parts):
    return glob.glob(os.path.join(*parts))


# ------------------------------------------------------------- verification
def list_pairs(name, root):
    """``({split: [(image, label), ...]}, [problems])`` of a prepared
    ``root``: the files each split's dataset class reads, paired as it pairs
    them, and the files it would pair wrongly or not find."""
    info = official(name)
    pairs, problems = {}, []

    def from_list(split, list_file, image_of, label_of):
        path = os.path.join(root, list_file)
        if not os.path.isfile(path):
            problems.append('{}: the list {} does not exist.'.format(
                split, path))
            return []
        return [(os.path.join(root, image_of(i)),
                 os.path.join(root, label_of(i))) for i in _read_ids(path)]

    def from_folders(split, images, labels, label_of):
        found = sorted(_glob(root, images))
        expected = {label_of(i) for i in found}
        for label in sorted(set(_glob(root, labels)) - expected):
            problems.append('{}: label {} has no image.'.format(split, label))
        return [(i, label_of(i)) for i in found]

    def voc(split, label_dir):
        return from_list(split, os.path.join(VOC_SETS, split + '.txt'),
                         lambda i: 'VOC2012/JPEGImages/{}.jpg'.format(i),
                         lambda i: 'VOC2012/{}/{}.png'.format(label_dir, i))

    for split in info['splits']:
        if name == 'cityscapes':
            pairs[split] = from_folders(
                split, 'leftImg8bit/{}/*/*_leftImg8bit.png'.format(split),
                'gtFine/{}/*/*_gtFine_labelTrainIds.png'.format(split),
                lambda i: os.path.join(root, 'gtFine', os.path.relpath(
                    i, os.path.join(root, 'leftImg8bit'))[:-len(
                        'leftImg8bit.png')] + 'gtFine_labelTrainIds.png'))
        elif name == 'ade20k':
            folder = {'train': 'training', 'val': 'validation'}[split]
            pairs[split] = from_folders(
                split, 'images/{}/*.jpg'.format(folder),
                'annotations/{}/*.png'.format(folder),
                lambda i, f=folder: os.path.join(
                    root, 'annotations', f, _stem(i, '.jpg') + '.png'))
        elif name == 'voc12aug':  # as PascalVOC reads each mode
            pairs[split] = voc(split, 'SegmentationClass') if (
                split != 'trainaug') else (
                    voc('train', 'SegmentationClass') +
                    voc('aug', 'SegmentationClassAug'))
        elif name == 'cocostuff10k':
            pairs[split] = from_list(
                split, 'imageLists/{}.txt'.format(split),
                lambda i: 'images/{}.jpg'.format(i),
                lambda i: 'annotations/{}.mat'.format(i))
        elif name == 'lip':
            pairs[split] = from_list(
                split, split + '_id.txt',
                lambda i, s=split: '{}_images/{}.jpg'.format(s, i),
                lambda i, s=split: '{}_segmentations/{}.png'.format(s, i))
    return pairs, problems


def _check_pair(job):
    """None, or the problem of one (image, label) pair."""
    image, label, low, high, ignore = job
    for path in (image, label):
        if not os.path.isfile(path):
            return '{} does not exist.'.format(path)
    try:
        values = read_label(label)
        size = _image_size(image)
    except PrepareError as err:
        return str(err)
    if values.ndim != 2:
        return '{} has shape {}; a label has one channel.'.format(
            label, list(values.shape))
    if values.shape[::-1] != size:
        return 'image {} is {}x{} but its label {} is {}x{} (WxH).'.format(
            image, size[0], size[1], label, values.shape[1], values.shape[0])
    bad = (values < low) | (values > high)
    if ignore is not None:
        bad &= values != ignore
    if bad.any():
        shown = ', '.join(str(v) for v in np.unique(values[bad])[:8])
        return '{} holds values {} outside {}..{}{}.'.format(
            label, shown, low, high,
            '' if ignore is None else ' and {}'.format(ignore))
    return None


def verify(name, root, counts=None, workers=1, download=''):
    """Check a prepared ``root``: the split sizes (``counts``, default the
    official ones), every image with a readable label of its size, label
    values in range.  Raises PrepareError listing what is wrong, then
    ``download`` (what to do about it)."""
    info = official(name)
    counts = counts or info['splits']
    pairs, problems = list_pairs(name, root)
    for split, expected in counts.items():
        found = len(pairs.get(split, []))
        if found != expected:
            problems.insert(0, '{} split: {} images, but the official split '
                            'has {}.'.format(split, found, expected))
    low, high = info['label_values']
    jobs = [(i, l, low, high, info['ignore']) for split in pairs
            for i, l in pairs[split]]
    problems += sorted(parallel(_check_pair, jobs, workers, 'verify'))
    if problems:
        shown = problems[:10]
        if len(problems) > 10:
            shown.append('... and {} more.'.format(len(problems) - 10))
        raise PrepareError('{} in {}: {} problem(s):\n  {}{}'.format(
            name, root, len(problems), '\n  '.join(shown),
            '\n' + download if download else ''))
    return {split: len(p) for split, p in pairs.items()}


# ------------------------------------------------------------------ prepare
def _download_hint(info, parts):
    """'download A and B from PAGE' for ``parts`` (grouped by page)."""
    pages = {}
    for part in parts:
        pages.setdefault(part.get('page', info['page']), []).append(
            part['archive'])
    return '; '.join('download {} from {}'.format(' and '.join(names), page)
                     for page, names in pages.items())


def _find_part(name, info, part_name, part, src, extract_dir):
    """The folder of one part: extracted from its archive in ``src``, or
    found already extracted in ``src``."""
    archive = os.path.join(src, part['archive'])
    hint = _download_hint(info, [part])
    if os.path.isfile(archive):
        out = os.path.join(extract_dir, part_name)
        extract(archive, out, part['extract'], hint)
        root = locate(out, part['marker'])
        if root is None:
            raise PrepareError(
                '{}: archive {} does not hold {}; it is not the official '
                'archive or it is incomplete: {} again.'.format(
                    name, archive, ', '.join(part['marker']), hint))
        return root
    root = locate(src, part['marker'])
    if root is None:
        raise PrepareError(
            '{}: --src {} has neither {} nor an extracted folder holding {}; '
            '{} into {}.'.format(name, src, part['archive'],
                                 ', '.join(part['marker']), hint, src))
    return root


def prepare(name, src, dst, workers=None, counts=None, fresh=False):
    """Lay out data set ``name`` at ``dst`` from the downloads in ``src``
    (see the module docstring); returns the image count per split.
    ``counts`` replaces the official split sizes (a deliberate subset)."""
    info = official(name)
    workers = workers or min(8, os.cpu_count() or 1)
    src, dst = os.path.abspath(src), os.path.abspath(dst.rstrip('/\\'))
    stamp = os.path.join(dst, STAMP)
    if os.path.exists(stamp):
        with open(stamp) as f:
            done = yaml.safe_load(f)
        if done.get('dataset') != name:
            raise PrepareError('--dst {} holds the prepared {}, not {}; '
                               'choose another --dst.'.format(
                                   dst, done.get('dataset'), name))
        print('{} is already prepared ({}); nothing to do. `check --config` '
              'reads it through again.'.format(dst, STAMP))
        return done['splits']
    if os.path.exists(dst) and os.listdir(dst):
        raise PrepareError(
            '--dst {} exists and was not written by prepare (it has no {}); '
            'move it away or choose another --dst.'.format(dst, STAMP))
    if not os.path.isdir(src):
        raise PrepareError('--src {} is not a folder; it must hold the '
                           'downloads: {}.'.format(src, ', '.join(
                               p['archive'] for p in info['parts'].values())))
    partial = dst + '.partial'
    if fresh:
        shutil.rmtree(partial, ignore_errors=True)
    extract_dir = os.path.join(partial, '.extract')
    tmp = os.path.join(partial, '.tmp')
    start = time.time()
    roots = {part_name: _find_part(name, info, part_name, part, src,
                                   extract_dir)
             for part_name, part in info['parts'].items()}
    again = '{} again and run with --fresh'.format(
        _download_hint(info, info['parts'].values()))
    try:
        BUILDERS[name](roots, partial, tmp, info, workers)
    except PrepareError as err:
        raise PrepareError('{}: {}; if a download is incomplete, {}.'.format(
            name, str(err).rstrip('.'), again)) from None
    found = verify(name, partial, counts, workers,
                   download='If a download is incomplete, {}.'.format(again))
    shutil.rmtree(extract_dir, ignore_errors=True)
    shutil.rmtree(tmp, ignore_errors=True)
    with open(os.path.join(partial, STAMP), 'w') as f:
        yaml.safe_dump({'dataset': name, 'splits': found}, f,
                       default_flow_style=False)
    if os.path.isdir(dst):
        os.rmdir(dst)  # empty, checked above
    os.replace(partial, dst)
    print('{}: {} in {} ({:.0f} s)'.format(name, ', '.join(
        '{} {}'.format(k, v) for k, v in found.items()), dst,
        time.time() - start))
    return found
