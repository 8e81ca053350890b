"""What the VisualDL log adds to PaddleSeg's: per-class IoU, sample images,
and one continuous log across resumes.

At each evaluation: ``Evaluate/IoU/<class>`` (zero-padded class index),
``Evaluate/Sample/<val index>``, an image of ``input | label | prediction``
(label and prediction in PaddleSeg's pseudo-colour palette) for a few fixed
validation samples, and ``Evaluate/Confusion``, the confusion matrix of the
evaluation normalised per label class (``paddleseg_ctx.analysis``).  On
resume, the run's log is rewritten to end at the resume iteration and
appended to, so every step appears once.
"""
import contextlib
import os
import struct
import types

import cv2
import numpy as np
import paddle
from paddleseg.utils import metrics
from paddleseg.utils.visualize import get_color_map_list
from visualdl.proto import record_pb2

from paddleseg_ctx import analysis
from paddleseg_ctx.files import atomic_write

__all__ = ['continue_log', 'find_log', 'truncate_log', 'sample_indices',
           'sample_images', 'colorize', 'sample_strip', 'counting_confusion',
           'log_evaluation']

PANEL_MAX_SIDE = 512  # keep the log small for large images
PANEL_GAP = 4  # white pixels between the panels of a sample image


def _records(path):
    """``(bytes, Record)`` of each complete record of a VisualDL log (a record
    torn by a kill is dropped).  Format: little-endian uint64 length, then the
    serialized ``Record`` (visualdl/writer/record_writer.py)."""
    with open(path, 'rb') as f:
        while True:
            header = f.read(8)
            if len(header) < 8:
                return
            (size,) = struct.unpack('<Q', header)
            data = f.read(size)
            if len(data) < size:
                return
            record = record_pb2.Record()
            record.ParseFromString(data)
            yield header + data, record


def _is_meta(record):
    return any(v.WhichOneof('one_value') == 'meta_data' for v in record.values)


def find_log(directory):
    """The most recently written VisualDL log in ``directory`` that holds
    data (other processes' logs of a multi-process run are empty), or None."""
    if not directory or not os.path.isdir(directory):
        return None
    logs = [os.path.join(directory, name) for name in os.listdir(directory)
            if 'vdlrecords' in name and not name.startswith('.')]
    for path in sorted(logs, key=os.path.getmtime, reverse=True):
        if any(not _is_meta(record) for _, record in _records(path)):
            return path
    return None


def truncate_log(source, step, target):
    """Write to ``target`` the records of ``source`` up to ``step``, without
    its meta record (the next ``LogWriter`` writes its own)."""

    def write(path):
        with open(path, 'wb') as f:
            for raw, record in _records(source):
                if not _is_meta(record) and all(value.id <= step
                                                for value in record.values):
                    f.write(raw)

    atomic_write(target, write, fsync=True)


def continue_log(save_dir, step, other_dir=None):
    """File name (in ``save_dir``) of the log a run resumed at ``step`` appends
    to: the latest log of ``save_dir`` (else of ``other_dir``, the resumed
    checkpoint's directory), rewritten to end at ``step``.  None if there is
    no log to continue."""
    source = find_log(save_dir) or find_log(other_dir)
    if source is None:
        return None
    target = os.path.join(save_dir, os.path.basename(source))
    truncate_log(source, step, target)
    return os.path.basename(target)


def sample_indices(num_samples, count):
    """``count`` fixed indices spread over a data set of ``num_samples``."""
    if count <= 0 or num_samples <= 0:
        return []
    return sorted({int(i) for i in np.linspace(0, num_samples - 1, count).round()})


def colorize(labels):
    """Class-id map -> RGB image in PaddleSeg's pseudo-colour palette
    (``ignore_index`` 255 gets the palette's colour 255)."""
    palette = np.array(get_color_map_list(256), 'uint8').reshape(-1, 3)
    return palette[np.asarray(labels, 'int64') % 256]


def sample_strip(image, label, pred):
    """``input | label | prediction`` side by side, shrunk to at most
    ``PANEL_MAX_SIDE`` pixels per panel side, as one HWC uint8 image."""
    h, w = label.shape
    scale = min(1.0, PANEL_MAX_SIDE / max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if image.shape[:2] != (h, w) or scale < 1:
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    panels = [image]
    for ids in (label, pred):
        if scale < 1:
            ids = cv2.resize(ids.astype('uint8'), size,
                             interpolation=cv2.INTER_NEAREST)
        panels.append(colorize(ids))
    gap = np.full((size[1], PANEL_GAP, 3), 255, 'uint8')
    return np.concatenate([panels[0], gap, panels[1], gap, panels[2]], axis=1)


def _input_image(dataset, index, normalized):
    """The RGB image file of sample ``index``; without one, the network input
    stretched to 0-255."""
    file_list = getattr(dataset, 'file_list', None)
    if file_list:
        image = cv2.imread(file_list[index][0], cv2.IMREAD_COLOR)
        if image is not None:
            return image[:, :, ::-1]
    chw = normalized.numpy()[0]
    chw = (chw - chw.min()) / max(float(chw.max() - chw.min()), 1e-6) * 255
    return np.ascontiguousarray(chw[:3].transpose(1, 2, 0)).astype('uint8')


def sample_images(model, dataset, indices, test_config=None):
    """``[(index, input | label | prediction image)]`` for ``indices`` of the
    validation ``dataset``, predicted as PaddleSeg's ``evaluate`` does with
    ``test_config`` (multi-scale/flip, sliding window); ``model`` in eval
    mode."""
    loader = paddle.io.DataLoader(
        paddle.io.Subset(dataset, indices), batch_size=1, return_list=True)
    strips = []
    with paddle.no_grad():
        for index, data in zip(indices, loader):
            pred = analysis.paddleseg_prediction(model, data, test_config)
            label = data['label'].numpy().reshape(data['label'].shape[-2:])
            pred = pred.numpy().reshape(pred.shape[-2:])
            image = _input_image(dataset, index, data['img'])
            strips.append((index, sample_strip(image, label, pred)))
    return strips


@contextlib.contextmanager
def counting_confusion(dataset):
    """Within the block, each image PaddleSeg's ``evaluate`` scores (through
    ``metrics.calculate_area``) is also counted into the yielded object's
    ``counts`` ([K, K] pixels, label class x predicted class) and
    ``images``; ``names`` are the class names.  In a multi-process run,
    each process counts the images it evaluates."""
    k = dataset.num_classes
    confusion = types.SimpleNamespace(
        names=analysis.class_names(dataset),
        counts=np.zeros((k, k), 'int64'), images=0)
    original = metrics.calculate_area

    def calculate_area(pred, label, num_classes, ignore_index=255):
        confusion.counts += analysis.confusion_counts(
            pred.numpy(), label.numpy(), k, dataset.ignore_index)
        confusion.images += 1
        return original(pred, label, num_classes, ignore_index=ignore_index)

    metrics.calculate_area = calculate_area
    try:
        yield confusion
    finally:
        metrics.calculate_area = original


def log_evaluation(writer, step, class_iou, samples, confusion=None):
    """Per-class IoU scalars, sample images and (given a
    :func:`counting_confusion` result) the confusion-matrix heat map of one
    evaluation."""
    width = len(str(len(class_iou) - 1))
    for c, iou in enumerate(class_iou):
        writer.add_scalar('Evaluate/IoU/{:0{}d}'.format(c, width), float(iou),
                          step)
    for index, strip in samples:
        writer.add_image('Evaluate/Sample/{}'.format(index), strip, step)
    if confusion is not None and confusion.images:
        title = 'iter {}: {} val images'.format(step, confusion.images)
        writer.add_image('Evaluate/Confusion', analysis.heatmap_image(
            analysis.normalize_rows(confusion.counts), confusion.names,
            title), step)
