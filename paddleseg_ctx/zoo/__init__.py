"""The model zoo file, ``configs/model_zoo.yml``: load it and check its schema.

The file is a YAML list with one entry per published result (see the comment
at its top for the fields), plus *unpublished* entries: configs with no
published number (e.g. ISNet under PaddleSeg's recipes), marked by
``published: null`` and ``weights: null`` and explained by a required
``note``.  :func:`load_zoo` returns the entries as plain dicts after checking
every field (the unpublished ones only when asked), and raises
:class:`ZooError` listing all problems found (unknown or missing keys, wrong
types or values, config files that do not exist).
"""
import difflib
import os
import re
from typing import Callable, NamedTuple, Union
from urllib.parse import unquote, urlparse

import yaml

from paddleseg_ctx.evaluation.protocol import (COLUMNS, MERGES, MIOU_RULES,
                                               MODES, SOURCES, TEST_RESIZES,
                                               protocol_for, source_mismatches)
from paddleseg_ctx.errors import UserError
from paddleseg_ctx.weights import build_without_weights, fetch, load_model_weights

__all__ = ['DATASET_NAMES', 'MODELS', 'ZOO_FILE', 'ZooError', 'create_model',
           'download_row', 'find_entry', 'get_row', 'is_published', 'list_models',
           'load_zoo', 'row_id', 'validate_zoo', 'weights_path', 'zoo_config']

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ZOO_FILE = os.path.join(REPO_ROOT, 'configs', 'model_zoo.yml')

MODELS = ('GINet', 'GCNet', 'ISANet', 'ISNet')
# Data set names of the zoo file -> their names in the README.
DATASET_NAMES = {
    'cityscapes': 'Cityscapes',
    'voc12aug': 'VOC12 + aug',
    'ade20k': 'ADE20K',
    'cocostuff10k': 'COCO-Stuff-10k',
    'lip': 'LIP',
}


class ZooError(UserError, ValueError):
    """The model zoo file is malformed; the message lists every problem."""


class Field(NamedTuple):
    expected: str  # what a valid value looks like, quoted in error messages
    check: Union[Callable, dict]  # predicate, or the fields of a sub-mapping
    required: bool = True


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_size(v):
    return (isinstance(v, list) and len(v) == 2 and
            all(_is_int(x) and x > 0 for x in v))


def _one_of(choices):
    return Field('one of ' + ', '.join(choices), lambda v: v in choices)


_SIZE = Field('[width, height], two positive integers', _is_size)
_PERCENT = Field('a mIoU in percent (0-100), or null if not published',
                 lambda v: v is None or (_is_number(v) and 0 <= v <= 100))

_SCALES = Field(
    'a non-empty list of positive numbers (the scales behind ms+flip)',
    lambda v: isinstance(v, list) and v and
    all(_is_number(s) and s > 0 for s in v))
_BOOL = Field('true or false', lambda v: isinstance(v, bool), required=False)
_OPTIONAL_SIZE = _SIZE._replace(required=False)

# Keys of ``eval`` that the flip and ms+flip columns may override (``tta``).
TTA_FIELDS = {
    'mode': _one_of(MODES)._replace(required=False),
    'slide_crop_size': _OPTIONAL_SIZE,
    'slide_stride': _OPTIONAL_SIZE,
    'slide_pad': _BOOL,
    'merge': _one_of(MERGES)._replace(required=False),
}

# Protocol of the published numbers; paddleseg_ctx.evaluation.Protocol
# documents each key.
EVAL_FIELDS = {
    'test_resize': _one_of(TEST_RESIZES),
    'img_scale': _OPTIONAL_SIZE,  # fit / squash target, [w, h]
    'mode': _one_of(MODES),
    'slide_crop_size': _OPTIONAL_SIZE,  # slide window [w, h]
    'slide_stride': _OPTIONAL_SIZE,  # slide step [w, h]
    'slide_pad': _BOOL,  # zero-pad windows larger than the image (mmseg 0.5)
    'ms_scales': _SCALES,
    'merge': _one_of(MERGES),  # what flip/ms TTA averages
    'miou': _one_of(MIOU_RULES),  # classes with no pixels
    'tta': Field('a mapping', TTA_FIELDS, required=False),
}

ENTRY_FIELDS = {
    'config': Field('a repo-relative path to a .yml file',
                    lambda v: isinstance(v, str) and v.endswith('.yml')),
    'model': _one_of(MODELS),
    'source': _one_of(SOURCES),
    'backbone': Field('a registered backbone type name',
                      lambda v: isinstance(v, str) and v != ''),
    'dataset': _one_of(tuple(DATASET_NAMES)),
    'crop_size': _SIZE,
    'iters': Field('a positive integer', lambda v: _is_int(v) and v > 0),
    'gpus': Field('a positive integer, or null if the source did not record it',
                  lambda v: v is None or (_is_int(v) and v > 0)),
    'batch_size_per_gpu': Field('a positive integer',
                                lambda v: _is_int(v) and v > 0),
    'published': Field('a mapping', {
        'miou': _PERCENT,
        'miou_flip': _PERCENT,
        'miou_ms_flip': _PERCENT,
    }),
    'weights': Field('an http(s) URL',
                     lambda v: isinstance(v, str) and
                     v.startswith(('http://', 'https://'))),
    'eval': Field('a mapping', EVAL_FIELDS),
    'note': Field('a string', lambda v: isinstance(v, str), required=False),
    'sha256': Field('the SHA-256 of the weights file, 64 lower-case hex digits',
                    lambda v: isinstance(v, str) and re.fullmatch('[0-9a-f]{64}', v) is not None,
                    required=False),
}

# An entry without published numbers: nothing to re-measure (no `eval`), no
# weights, and a note saying why the config exists.
UNPUBLISHED_FIELDS = dict(
    {k: v for k, v in ENTRY_FIELDS.items() if k not in ('eval', 'sha256')},
    published=Field('null', lambda v: v is None),
    weights=Field('null (nothing was released)', lambda v: v is None),
    note=Field(
        'a sentence saying what the config is for (required when nothing '
        'is published)', lambda v: isinstance(v, str) and v.strip() != ''),
)


def is_published(entry):
    """False for an entry marked ``published: null`` (no published number)."""
    return not (isinstance(entry, dict) and 'published' in entry and
                entry['published'] is None)


def _check_mapping(value, fields, where, errors):
    if not isinstance(value, dict):
        errors.append('{}: expected a mapping, got {!r}'.format(where, value))
        return
    for key in value:
        if key not in fields:
            errors.append('{}: unknown key {!r} (allowed: {})'.format(
                where, key, ', '.join(fields)))
    for key, field in fields.items():
        path = '{}.{}'.format(where, key)
        if key not in value:
            if field.required:
                errors.append('{}: missing (expected {})'.format(
                    path, field.expected))
        elif isinstance(field.check, dict):
            _check_mapping(value[key], field.check, path, errors)
        elif not field.check(value[key]):
            errors.append('{}: expected {}, got {!r}'.format(
                path, field.expected, value[key]))


def _check_entry(entry, where, root, errors):
    errors_before = len(errors)
    if not is_published(entry):
        if 'eval' in entry:
            errors.append('{}.eval: an entry with `published: null` has no '
                          'number to re-measure; remove `eval`'.format(where))
            entry = {k: v for k, v in entry.items() if k != 'eval'}
        _check_mapping(entry, UNPUBLISHED_FIELDS, where, errors)
    else:
        _check_mapping(entry, ENTRY_FIELDS, where, errors)
    if not isinstance(entry, dict):
        return
    config = entry.get('config')
    if isinstance(config, str) and not os.path.isfile(
            os.path.join(root, config)):
        errors.append('{}.config: {} does not exist (paths are relative to '
                      '{})'.format(where, config, root))
    if not is_published(entry):
        return
    published = entry.get('published')
    if isinstance(published, dict) and all(
            published.get(k) is None for k in ENTRY_FIELDS['published'].check):
        errors.append('{}.published: at least one mIoU must be a number'.format(
            where))
    if len(errors) > errors_before:
        return  # protocols need well-formed fields
    problems = {}  # message -> columns it applies to
    for column, key in COLUMNS.items():
        if entry['published'][key] is None:
            continue
        try:
            found = source_mismatches(protocol_for(entry, column))
        except ValueError as err:
            found = [str(err)]
        for problem in found:
            problems.setdefault(problem, []).append(column)
    errors.extend('{}.eval ({} column{}): {}'.format(
        where, ', '.join(columns), 's' if len(columns) > 1 else '', problem)
                  for problem, columns in problems.items())


def validate_zoo(entries, root=REPO_ROOT, source='model zoo'):
    """Check parsed zoo ``entries``; raise :class:`ZooError` on any problem.

    ``root`` is the directory the ``config`` paths are relative to;
    ``source`` names the file in error messages.
    """
    if not isinstance(entries, list) or not entries:
        raise ZooError('{}: expected a non-empty YAML list of entries'.format(
            source))
    errors = []
    seen = {}
    for i, entry in enumerate(entries):
        name = entry.get('config') if isinstance(entry, dict) else None
        where = 'entry {}'.format(i) + (' ({})'.format(name) if name else '')
        _check_entry(entry, where, root, errors)
        if isinstance(name, str) and name in seen:
            errors.append('{}: same config as entry {}'.format(
                where, seen[name]))
        seen.setdefault(name, i)
    if errors:
        raise ZooError('{} is invalid:\n  '.format(source) + '\n  '.join(errors)
                       + '\nSee the field list at the top of '
                       'configs/model_zoo.yml.')


def load_zoo(path=ZOO_FILE, include_unpublished=False):
    """Read and validate the zoo file; return its entries (list of dicts):
    the published ones, and with ``include_unpublished`` all of them in file
    order.

    ``config`` paths are resolved against the parent of the directory that
    holds the zoo file (the repository root for ``configs/model_zoo.yml``).
    """
    with open(path, encoding='utf-8') as f:
        entries = yaml.safe_load(f)
    root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    validate_zoo(entries, root, source=path)
    if include_unpublished:
        return entries
    return [e for e in entries if is_published(e)]


def find_entry(config, path=ZOO_FILE):
    """The entry of the zoo file at ``path`` whose ``config`` is the file
    ``config`` (any path to it), or None.  Raises :class:`ZooError` if that
    entry publishes no number (there is no published protocol to run)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    target = os.path.realpath(config)
    for entry in load_zoo(path, include_unpublished=True):
        if os.path.realpath(os.path.join(root, entry['config'])) != target:
            continue
        if not is_published(entry):
            raise ZooError(
                '{} has no published number in {} ({}); evaluate it with '
                'PaddleSeg\'s flags (--aug_eval, --is_slide, ...) '
                'instead.'.format(entry['config'], path,
                                  entry['note'].rstrip('.')))
        return entry
    return None


def zoo_config(checkpoint):
    """The config of the ``configs/model_zoo.yml`` entry whose published
    weights file has the name of ``checkpoint``, or None."""
    name = os.path.basename(checkpoint)
    try:
        entries = load_zoo()
    except (OSError, ZooError):  # e.g. an installed package without configs/
        return None
    configs = [e['config'] for e in entries
               if unquote(urlparse(e['weights']).path).split('/')[-1] == name]
    return os.path.join(REPO_ROOT, configs[0]) if len(configs) == 1 else None


def row_id(entry):
    """The id of a zoo entry: its config's file name without ``.yml``."""
    return os.path.splitext(os.path.basename(entry['config']))[0]


def _matches(value, wanted, names=None):
    wanted = wanted.lower()
    return value.lower() == wanted or (names or {}).get(value, '').lower() == wanted


def list_models(model=None, dataset=None, path=ZOO_FILE, include_unpublished=False):
    """Row ids of the zoo (file order), optionally only those of ``model``
    (GINet, GCNet, ISANet, ISNet) and ``dataset`` (a zoo name such as
    ``cityscapes`` or its README name), case-insensitively."""
    entries = load_zoo(path, include_unpublished=include_unpublished)
    return [row_id(e) for e in entries
            if (model is None or _matches(e['model'], model)) and
            (dataset is None or _matches(e['dataset'], dataset, DATASET_NAMES))]


def get_row(row, path=ZOO_FILE):
    """The zoo entry (a dict, as in the file) whose id is ``row`` (also
    accepted: its config path); ``ZooError`` naming the closest ids if
    there is none."""
    entries = load_zoo(path, include_unpublished=True)
    by_id = {row_id(e): e for e in entries}
    found = by_id.get(row_id({'config': row}))
    if found is None:
        close = difflib.get_close_matches(row, list(by_id), n=3, cutoff=0.5)
        raise ZooError('{} is no row of {}{}; `python -m paddleseg_ctx.zoo list` lists '
                       'them.'.format(row, path, ' (did you mean {}?)'.format(
                           ', '.join(close)) if close else ''))
    return found


def weights_path(entry, dest=None):
    """Where :func:`download_row` puts ``entry``'s weights: in ``dest``
    under the published file name, or the download cache that
    ``--model_path URL`` and ``pretrained: URL`` use."""
    if dest is not None:
        return os.path.join(dest, fetch.download_target(entry['weights']).rsplit(os.sep, 1)[-1])
    return fetch.download_target(entry['weights'])


def download_row(row, dest=None, path=ZOO_FILE, progress=True):
    """Download the weights of zoo row ``row`` (resumably, verified; see
    ``paddleseg_ctx.weights.fetch.download_resumable``) unless a verified
    copy is there; return ``(file, sha256)``."""
    entry = get_row(row, path)
    if not entry['weights']:
        raise ZooError('{} has no published weights ({}).'.format(row, entry['note']))
    target = weights_path(entry, dest)
    if os.path.isfile(target):
        return target, fetch.verify(target, entry['weights'], entry.get('sha256'),
                                    label='{} ({})'.format(entry['weights'], target))
    return target, fetch.download_resumable(entry['weights'], target, entry.get('sha256'),
                                            progress=progress)


def create_model(row, pretrained=True, path=ZOO_FILE):
    """The model of zoo row ``row`` in eval mode: built from its config
    without the config's ``pretrained`` weights and, with ``pretrained``,
    with the row's published weights (downloaded and verified once,
    converted from PyTorch once, loaded strictly)."""
    entry = get_row(row, path)
    root = os.path.dirname(os.path.dirname(os.path.abspath(path)))
    model = build_without_weights(os.path.join(root, entry['config']),
                                  why='(zoo row {})'.format(row_id(entry)))
    if pretrained:
        load_model_weights(model, download_row(row, path=path)[0])
    model.eval()
    return model

