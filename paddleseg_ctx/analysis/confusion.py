"""Confusion matrix over a validation split: pixel counts per (label class,
predicted class), normalised per label class, written as CSV and drawn as a
heat map.

Row ``i`` is label class ``i``, column ``j`` predicted class ``j``; a
normalised row is the share of class ``i``'s pixels predicted as each class
(its diagonal entry is the class's recall).  Pixels whose label is
``ignore_index`` or outside ``[0, num_classes)`` are not counted.
"""
import csv

import cv2
import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from paddleseg_ctx.deploy.visualize import write_file
from paddleseg_ctx.files import atomic_write

__all__ = ['confusion_counts', 'normalize_rows', 'write_csv',
           'heatmap_image', 'write_png']

ANNOTATE_MAX_CLASSES = 30  # print the percentage in each cell up to this


def confusion_counts(pred, label, num_classes, ignore_index):
    """[K, K] int64 pixel counts of one prediction/label pair (any equal
    shapes of integer class ids)."""
    k = num_classes
    valid = (label != ignore_index) & (label >= 0) & (label < k)
    pairs = label[valid].astype(np.int64) * k + pred[valid].astype(np.int64)
    return np.bincount(pairs, minlength=k * k).reshape(k, k)


def normalize_rows(counts):
    """Each row divided by its sum; NaN in rows without label pixels."""
    totals = counts.sum(axis=1, keepdims=True)
    out = np.full(counts.shape, np.nan)
    np.divide(counts, totals, out=out, where=totals > 0)
    return out


def write_csv(path, matrix, names, number_format):
    """``matrix`` with a header row and column of class ``names`` (row:
    label class, column: predicted class)."""

    def write(tmp):
        with open(tmp, 'w', newline='') as f:
            rows = csv.writer(f)
            rows.writerow(['label \\ prediction'] + list(names))
            for name, values in zip(names, matrix):
                rows.writerow([name] + [number_format.format(v)
                                        for v in values])

    atomic_write(path, write)


def heatmap_image(normalized, names, title):
    """The normalised matrix as an RGB uint8 image: a heat map with the
    class names on both axes, a colour bar, and the percentages in the
    cells when there are at most ``ANNOTATE_MAX_CLASSES`` classes."""
    k = len(names)
    cell = 0.45 if k <= ANNOTATE_MAX_CLASSES else 0.18
    font = 9 if k <= ANNOTATE_MAX_CLASSES else 6
    figure = Figure(figsize=(k * cell + 3.5, k * cell + 2.5), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    shown = np.ma.masked_invalid(normalized)
    # light grey: a row of a class without label pixels
    cmap = matplotlib.colormaps['Blues'].with_extremes(bad='lightgrey')
    heat = axes.imshow(shown, cmap=cmap, vmin=0, vmax=1,
                       interpolation='nearest')
    colorbar = figure.colorbar(heat, ax=axes, fraction=0.046, pad=0.04)
    colorbar.set_label('share of the label class\'s pixels (cells: %)')
    axes.set_xticks(range(k))
    axes.set_yticks(range(k))
    axes.set_xticklabels(names, rotation=90, fontsize=font)
    axes.set_yticklabels(names, fontsize=font)
    axes.set_xlabel('predicted class')
    axes.set_ylabel('label class')
    axes.set_title(title, fontsize=10)
    if k <= ANNOTATE_MAX_CLASSES:
        for i in range(k):
            for j in range(k):
                value = normalized[i, j]
                if np.isfinite(value) and value >= 0.005:
                    axes.text(j, i, '{:.0f}'.format(100 * value),
                              ha='center', va='center', fontsize=font - 1,
                              color='white' if value > 0.6 else 'black')
    figure.tight_layout()
    figure.canvas.draw()
    return np.asarray(figure.canvas.buffer_rgba())[:, :, :3].copy()


def write_png(path, rgb):
    """Write an RGB uint8 image as a PNG file."""
    ok, data = cv2.imencode('.png', np.ascontiguousarray(rgb[:, :, ::-1]))
    if not ok:
        raise OSError('Could not encode {} as PNG.'.format(path))
    write_file(path, data.tobytes())
