"""Key maps: how one architecture's PyTorch keys become Paddle names.

A key map is a YAML file (``keymaps/<name>.yml``, format below).
:func:`load_keymaps` reads the packaged maps plus those in the directories
listed in ``$PADDLESEG_CTX_KEYMAPS``; :meth:`KeyMap.apply` renames a state
dict.

Key map format
--------------
One YAML file per architecture in ``weights/keymaps/`` (the file name is
the map's name); more folders can be listed in ``$PADDLESEG_CTX_KEYMAPS``
(``os.pathsep``-separated).  Every pattern is a Python regular expression
matched against a whole key (``re.fullmatch``)::

    description: one line, shown in listings
    target: model            # model | backbone: what the Paddle names fill,
                             # checked against the config's model or its backbone
    detect:                  # the map applies to a checkpoint whose keys...
      all: [pattern, ...]    #   match each of these (each by one key at least)
      none: [pattern, ...]   #   match none of these (optional)
    drop: [pattern, ...]     # source keys to leave out (optional)
    rename:                  # ordered; the first pattern matching a source key
      - [pattern, replacement]   # gives its Paddle name (re.Match.expand: \\1, \\g<name>)
    reshape:                 # optional, on Paddle names: new shape (one -1 allowed);
      - [pattern, [-1]]      # the element count must stay the same

Applied by every map (docs/reference/key_maps.md#generic-rules): ``*.num_batches_tracked`` is
dropped; a Paddle name ending in ``.running_mean`` / ``.running_var`` ends
in ``._mean`` / ``._variance`` instead; values become float32.  A source key
that is neither dropped nor renamed, two keys renamed to one name, or a
reshape changing the element count is an error, as is any missing,
unexpected or mis-shaped key against the config's model.
"""
import os
import re

import numpy as np
import yaml

from paddleseg_ctx.errors import ConversionError, shown

__all__ = ['KeyMap', 'load_keymaps', 'KEYMAP_DIR', 'KEYMAPS_ENV']

KEYMAP_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'keymaps')
KEYMAPS_ENV = 'PADDLESEG_CTX_KEYMAPS'
TARGETS = ('model', 'backbone')
_FIELDS = ('description', 'target', 'detect', 'drop', 'rename', 'reshape')

# Generic torch -> Paddle rules, applied by every map (docs/reference/key_maps.md#generic-rules).
GENERIC_DROP = re.compile(r'(.+\.)?num_batches_tracked')
GENERIC_SUFFIXES = (('.running_mean', '._mean'), ('.running_var', '._variance'))


class KeyMap:
    """One architecture's map (see the module docstring for the fields)."""

    def __init__(self, name, spec, path):
        self.name, self.path = name, path
        where = '{}: '.format(path)
        if not isinstance(spec, dict) or set(spec) - set(_FIELDS):
            raise ConversionError(where + 'expected a mapping with keys among {}'.format(
                ', '.join(_FIELDS)))
        self.description = spec.get('description', '')
        self.target = spec.get('target', 'model')
        if self.target not in TARGETS:
            raise ConversionError(where + 'target must be one of ' + ', '.join(TARGETS))
        detect = spec.get('detect') or {}
        if (not isinstance(detect, dict) or set(detect) - {'all', 'none'} or
                not detect.get('all')):
            raise ConversionError(where + 'detect needs `all:` (a list of patterns) and may '
                              'have `none:`')
        self.detect_all = [self._compile(p, where) for p in detect['all']]
        self.detect_none = [self._compile(p, where) for p in detect.get('none') or []]
        self.drop = [self._compile(p, where) for p in spec.get('drop') or []]
        self.rename = [(self._compile(p, where), r)
                       for p, r in self._pairs(spec.get('rename'), 'rename', where, str)]
        self.reshape = [(self._compile(p, where), s)
                        for p, s in self._pairs(spec.get('reshape'), 'reshape', where, list)]

    @staticmethod
    def _compile(pattern, where):
        try:
            return re.compile(pattern)
        except (re.error, TypeError) as error:
            raise ConversionError('{}invalid pattern {!r}: {}'.format(where, pattern, error)) from None

    @staticmethod
    def _pairs(items, field, where, kind):
        items = items or []
        if not all(isinstance(i, list) and len(i) == 2 and isinstance(i[1], kind)
                   for i in items):
            raise ConversionError('{}{} must be a list of [pattern, {}] pairs'.format(
                where, field, 'replacement' if kind is str else 'shape'))
        return items

    def matches(self, keys):
        """True if ``keys`` (source keys) look like this architecture."""
        return (all(any(p.fullmatch(k) for k in keys) for p in self.detect_all) and
                not any(p.fullmatch(k) for p in self.detect_none for k in keys))

    def target_name(self, key):
        """The Paddle name of source ``key``; None if it is dropped, and
        KeyError if no rule maps it."""
        if GENERIC_DROP.fullmatch(key) or any(p.fullmatch(key) for p in self.drop):
            return None
        for pattern, replacement in self.rename:
            match = pattern.fullmatch(key)
            if match:
                name = match.expand(replacement)
                for torch_suffix, paddle_suffix in GENERIC_SUFFIXES:
                    if name.endswith(torch_suffix):
                        name = name[:-len(torch_suffix)] + paddle_suffix
                return name
        raise KeyError(key)

    def apply(self, state):
        """``(converted, pairs)``: ``converted`` maps Paddle names to float32
        arrays; ``pairs`` lists ``(source key, Paddle name or None)``.
        Raises :class:`ConversionError` for unmapped keys, two keys mapped to one
        name, or a reshape that changes the element count."""
        converted, pairs, unmapped, sources = {}, [], [], {}
        for key, value in state.items():
            try:
                name = self.target_name(key)
            except KeyError:
                unmapped.append(key)
                continue
            pairs.append((key, name))
            if name is None:
                continue
            if name in sources:
                raise ConversionError('Key map {} maps both {} and {} to {}.'.format(
                    self.path, sources[name], key, name))
            sources[name] = key
            converted[name] = self._reshaped(name, np.asarray(value, np.float32))
        if unmapped:
            raise ConversionError(
                '{} key(s) of this {} checkpoint are mapped by no rule of {}: {}. Is it a '
                'checkpoint of another variant? (If the keys are expected, add rename or '
                'drop rules to the map.)'.format(len(unmapped), self.name, self.path,
                                                 shown(unmapped)))
        return converted, pairs

    def _reshaped(self, name, value):
        for pattern, shape in self.reshape:
            if pattern.fullmatch(name):
                if -1 in shape:
                    known = int(np.prod([n for n in shape if n != -1]))
                    shape = [value.size // known if n == -1 else n for n in shape]
                if int(np.prod(shape)) != value.size:
                    raise ConversionError('{}: cannot reshape {} of shape {} to {} ({}).'.format(
                        self.path, name, list(value.shape), shape, 'element counts differ'))
                return value.reshape(shape)
        return value


def load_keymaps(dirs=None):
    """All key maps: ``dirs`` (default: the packaged ``keymaps/`` folder,
    then the folders in ``$PADDLESEG_CTX_KEYMAPS``, ``os.pathsep``-separated).
    A later map with the same name replaces an earlier one."""
    if dirs is None:
        extra = os.environ.get(KEYMAPS_ENV, '')
        dirs = [KEYMAP_DIR] + [d for d in extra.split(os.pathsep) if d]
    maps = {}
    for folder in dirs:
        if not os.path.isdir(folder):
            raise ConversionError('Key map folder {} (from ${}) does not exist.'.format(
                folder, KEYMAPS_ENV))
        for file in sorted(os.listdir(folder)):
            if file.endswith(('.yml', '.yaml')):
                path = os.path.join(folder, file)
                with open(path, encoding='utf-8') as f:
                    try:
                        spec = yaml.safe_load(f)
                    except yaml.YAMLError as error:
                        raise ConversionError('{}: invalid YAML: {}'.format(path, error)) from None
                name = os.path.splitext(file)[0]
                maps[name] = KeyMap(name, spec, path)
    return list(maps.values())
