"""Evaluation protocols as data: what produced each published mIoU column.

A :class:`Protocol` holds what varies between model-zoo rows and columns
(test-time resize, whole or sliding-window inference, scales, flip, what is
averaged, the mIoU rule); :data:`STEPS` holds what each codebase's test code
fixes (how a scale is made, where the softmax and the flip-back happen, how
many times the logits are resized).  :func:`protocol_for` builds the protocol
of one column of a ``configs/model_zoo.yml`` entry.

Sizes are ``(w, h)`` everywhere, like PaddleSeg's ``--crop_size``/``--stride``
and the zoo's ``crop_size``; mmseg and ssseg configs write windows as
``(h, w)``, so swap them when copying.
"""
from dataclasses import dataclass
from typing import Optional, Tuple

__all__ = [
    'COLUMNS', 'MERGES', 'MIOU_RULES', 'MODES', 'Protocol', 'SOURCES',
    'SOURCE_CHOICES', 'STEPS', 'Steps', 'TEST_RESIZES', 'describe',
    'paddleseg_flags', 'protocol_for', 'source_mismatches'
]

# CLI name of a column -> key of its number in a zoo entry's ``published``.
COLUMNS = {'single': 'miou', 'flip': 'miou_flip', 'ms_flip': 'miou_ms_flip'}

# The vocabulary of a protocol (configs/model_zoo.yml's schema uses it too).
SOURCES = ('paddleseg', 'mmseg', 'ssseg')
TEST_RESIZES = ('none', 'fit', 'squash')
MODES = ('whole', 'slide')
MERGES = ('logits', 'probs')
MIOU_RULES = ('empty_as_zero', 'nanmean')


@dataclass(frozen=True)
class Steps:
    """The order of test-time steps a codebase's code fixes.

    scale_by: how scale ``s`` is made.  ``size``: the normalised image
        resized bilinearly to int(L*s+0.5) (PaddleSeg ``aug_inference``);
        ``refit``: the original uint8 image fitted again into
        (int(W*s), int(H*s)) of img_scale (mmseg 0.x ``MultiScaleFlipAug``);
        ``factor``: the normalised tensor through
        ``F.interpolate(scale_factor=s)``, size floor(L*s) (ssseg).
    whole_resizes: whole-image mode.  2: logits resized to the network input
        inside the model, then to the original size; 1: the feature-resolution
        logits (``model.raw_logits``) resized once to the original size.
        Slide windows are always resized to the window first.
    softmax_at: with ``merge: probs``, ``output``: softmax of the network
        output (whole image, or each window before the windows are averaged;
        ssseg ``use_probs_before_resize``); ``original``: after the resize to
        the original size (mmseg ``inference``).
    flip_back_at: ``output``: a flipped run's output is flipped back (and its
        paired channels swapped) as the network returns it; ``original``:
        after the resize to the original size and the softmax (mmseg).
    out_of_range_ignored: ground-truth values outside [0, K) are ignored like
        ``ignore_index`` (ssseg ``test.py``); otherwise only ``ignore_index``
        is (PaddleSeg, mmseg: such pixels still count in the prediction area).
    """
    scale_by: str
    whole_resizes: int
    softmax_at: Optional[str]
    flip_back_at: str
    out_of_range_ignored: bool


STEPS = {
    # paddleseg/core/infer.py (inference, aug_inference, reverse_transform)
    'paddleseg': Steps('size', 2, None, 'output', False),
    # mmseg 0.x encoder_decoder.py (inference, aug_test), test_time_aug.py
    'mmseg': Steps('refit', 2, 'original', 'original', False),
    # ssseg segmentors/base/base.py (inference, auginference) + test.py
    'ssseg': Steps('factor', 1, 'output', 'output', True),
}

# What each codebase's test code always does, whatever its config says
# (ssseg configs choose logits or probs per row).
SOURCE_CHOICES = {
    'paddleseg': {'merge': 'logits', 'miou': 'empty_as_zero'},
    'mmseg': {'merge': 'probs', 'miou': 'nanmean'},
    'ssseg': {'miou': 'nanmean'},
}


def _size(value, what):
    if not (isinstance(value, (list, tuple)) and len(value) == 2 and
            all(isinstance(v, int) and v > 0 for v in value)):
        raise ValueError('{} must be (w, h), two positive integers, got '
                         '{!r}.'.format(what, value))
    return tuple(value)


def _choice(value, choices, what):
    if value not in choices:
        raise ValueError('{} must be one of {}, got {!r}.'.format(
            what, ', '.join(choices), value))


@dataclass(frozen=True)
class Protocol:
    """Everything that decides the mIoU of one column.

    Attributes:
        source: ``paddleseg`` | ``mmseg`` | ``ssseg``: whose test code to
            follow (see :data:`STEPS`).  ``paddleseg`` runs PaddleSeg's own
            ``paddleseg.core.evaluate`` on the config's val transforms.
        scales: test scales (1.0 alone for single and flip columns).
        flip: also run the horizontally flipped image.
        test_resize: before anything else, on the uint8 image: ``none``;
            ``fit``: keep the ratio, fit into ``img_scale``; ``squash``:
            resize to exactly ``img_scale``.
        img_scale: ``(w, h)`` of the test resize (also the box scaled by
            mmseg's ms ratios); None with ``test_resize: none``.
        mode: ``whole`` | ``slide``.
        slide_crop_size, slide_stride: window and step ``(w, h)``.
        slide_pad: zero-pad a window that is smaller than ``slide_crop_size``
            (image smaller than the window) to the window size before the
            network (mmseg 0.5.0; 0.6.0+ and ssseg run the small window).
        merge: ``logits`` | ``probs``: what flips and scales average.
        miou: ``empty_as_zero`` (PaddleSeg: a class absent from prediction
            and label has IoU 0) | ``nanmean`` (it is skipped).
        flip_pairs: output channels swapped on a flipped run (LIP's
            left/right classes); the dataset's ``FLIP_LABEL_PAIRS``.
    """
    source: str
    scales: Tuple[float, ...] = (1.0, )
    flip: bool = False
    test_resize: str = 'none'
    img_scale: Optional[Tuple[int, int]] = None
    mode: str = 'whole'
    slide_crop_size: Optional[Tuple[int, int]] = None
    slide_stride: Optional[Tuple[int, int]] = None
    slide_pad: bool = False
    merge: str = 'logits'
    miou: str = 'empty_as_zero'
    flip_pairs: Tuple[Tuple[int, int], ...] = ()

    def __post_init__(self):
        _choice(self.source, SOURCES, 'source')
        _choice(self.test_resize, TEST_RESIZES, 'test_resize')
        _choice(self.mode, MODES, 'mode')
        _choice(self.merge, MERGES, 'merge')
        _choice(self.miou, MIOU_RULES, 'miou')

        def set_(name, value):  # normalise a field of the frozen instance
            object.__setattr__(self, name, value)

        if not self.scales or any(s <= 0 for s in self.scales):
            raise ValueError('scales must be positive numbers, got {!r}.'
                             .format(self.scales))
        set_('scales', tuple(float(s) for s in self.scales))
        if (self.test_resize == 'none') != (self.img_scale is None):
            raise ValueError('img_scale goes with test_resize fit or squash '
                             '(got test_resize {!r}, img_scale {!r}).'.format(
                                 self.test_resize, self.img_scale))
        if self.img_scale is not None:
            set_('img_scale', _size(self.img_scale, 'img_scale'))
        slide_sizes = (self.slide_crop_size, self.slide_stride)
        if self.mode == 'slide':
            if None in slide_sizes:
                raise ValueError('mode slide needs slide_crop_size and '
                                 'slide_stride, (w, h) each.')
            set_('slide_crop_size', _size(self.slide_crop_size,
                                          'slide_crop_size'))
            set_('slide_stride', _size(self.slide_stride, 'slide_stride'))
        elif slide_sizes != (None, None) or self.slide_pad:
            raise ValueError('slide_crop_size, slide_stride and slide_pad '
                             'only apply to mode slide.')
        set_('flip_pairs', tuple(tuple(int(c) for c in p)
                                 for p in self.flip_pairs))
        if self.source == 'paddleseg':
            # PaddleSeg's evaluate can do none of these.
            unsupported = [
                what for what, used in (
                    ('test_resize (put the resize in the val transforms)',
                     self.test_resize != 'none'),
                    ('merge: probs', self.merge == 'probs'),
                    ('miou: nanmean', self.miou == 'nanmean'),
                    ('slide_pad', self.slide_pad),
                    ('flip_pairs', bool(self.flip_pairs and self.flip)))
                if used
            ]
            if unsupported:
                raise ValueError('PaddleSeg\'s evaluate does not support '
                                 + '; '.join(unsupported) + '.')

    @property
    def steps(self):
        return STEPS[self.source]


def source_mismatches(protocol):
    """What in ``protocol`` differs from what its source's test code does
    (a zoo row must follow its source); empty if nothing."""
    expected = SOURCE_CHOICES[protocol.source]
    return [
        '{}: {} ({}\'s test code uses {})'.format(key, getattr(protocol, key),
                                                 protocol.source, value)
        for key, value in expected.items() if getattr(protocol, key) != value
    ]


def protocol_for(entry, column, flip_pairs=()):
    """The :class:`Protocol` of ``column`` (``single`` | ``flip`` |
    ``ms_flip``) of a model-zoo ``entry``.

    The entry's ``eval`` block describes the single-scale column; its
    optional ``tta`` mapping overrides keys for the flip and ms+flip columns
    (ssseg configs keep a separate inference block for them).
    """
    _choice(column, tuple(COLUMNS), 'column')
    ev = dict(entry['eval'])
    ms_scales = ev.pop('ms_scales')
    tta = ev.pop('tta', {})
    if column != 'single':
        if tta.get('mode') == 'whole':  # the single column's windows go
            for key in ('slide_crop_size', 'slide_stride', 'slide_pad'):
                ev.pop(key, None)
        ev.update(tta)
    for key in ('img_scale', 'slide_crop_size', 'slide_stride'):
        if key in ev:
            ev[key] = tuple(ev[key])
    scales = tuple(ms_scales) if column == 'ms_flip' else (1.0, )
    return Protocol(
        source=entry['source'],
        scales=scales,
        flip=column != 'single',
        flip_pairs=tuple(flip_pairs) if column != 'single' else (),
        **ev)


def paddleseg_flags(protocol):
    """``paddleseg.core.evaluate`` keyword arguments of a ``paddleseg``
    protocol (PaddleSeg's own ``--aug_eval --scales --flip_horizontal
    --is_slide --crop_size --stride``)."""
    if protocol.source != 'paddleseg':
        raise ValueError('{} protocols do not run through PaddleSeg\'s '
                         'evaluate.'.format(protocol.source))
    flags = {}
    if protocol.flip or protocol.scales != (1.0, ):
        flags.update(aug_eval=True, scales=list(protocol.scales),
                     flip_horizontal=protocol.flip)
    if protocol.mode == 'slide':
        flags.update(is_slide=True, crop_size=list(protocol.slide_crop_size),
                     stride=list(protocol.slide_stride))
    return flags


_SOURCE_TEXT = {
    'paddleseg': 'PaddleSeg 2.8 evaluate on the val transforms of the config',
    'mmseg': 'mmsegmentation 0.x test',
    'ssseg': 'sssegmentation test',
}
_SCALE_TEXT = {
    'size': 'normalised image resized to int(L*s+0.5)',
    'refit': 'original image re-fitted into img_scale*s',
    'factor': 'normalised image through interpolate(scale_factor=s)',
}


def _wh(size):
    return '{}x{}'.format(*size)


def describe(protocol):
    """One line saying what ``protocol`` runs (for logs and the README)."""
    p, steps = protocol, protocol.steps
    parts = [_SOURCE_TEXT[p.source]]
    if p.test_resize == 'fit':
        parts.append('uint8 image fitted into {} keeping its ratio'.format(
            _wh(p.img_scale)))
    elif p.test_resize == 'squash':
        parts.append('uint8 image resized to {}'.format(_wh(p.img_scale)))
    if p.mode == 'slide':
        parts.append('slide window {} stride {} (w x h){}'.format(
            _wh(p.slide_crop_size), _wh(p.slide_stride),
            ', small windows zero-padded' if p.slide_pad else ''))
    else:
        parts.append('whole image')
    if p.scales != (1.0, ):
        parts.append('scales {} ({})'.format(
            ', '.join('{:g}'.format(s) for s in p.scales),
            _SCALE_TEXT[steps.scale_by]))
    if p.flip:
        parts.append('horizontal flip' + (
            ' (channels {} swapped)'.format(', '.join(
                '{}<->{}'.format(*pair) for pair in p.flip_pairs))
            if p.flip_pairs else ''))
    early_softmax = p.merge == 'probs' and steps.softmax_at == 'output'
    if len(p.scales) > 1 or p.flip or early_softmax:
        parts.append({
            'logits': 'logits averaged',
            'output': 'softmax (before the resize to the original size) '
            'averaged',
            'original': 'softmax (at the original size) averaged',
        }['logits' if p.merge == 'logits' else steps.softmax_at])
    if p.source != 'paddleseg':
        if p.mode == 'slide':
            parts.append('window logits resized to the window, then to the '
                         'original size')
        elif steps.whole_resizes == 1:
            parts.append('logits resized once from feature resolution')
        else:
            parts.append('logits resized to the network input, then to the '
                         'original size')
    parts.append('mIoU skips classes absent from prediction and label'
                 if p.miou == 'nanmean' else
                 'mIoU counts classes absent from prediction and label as 0')
    return '; '.join(parts)
