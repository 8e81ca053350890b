"""Per-image scores and pictures of the worst images (PaddleSeg's
``tools/analyse.py`` idea): ``input | label | prediction``, the label and
the prediction blended over the input in PaddleSeg's class colours, with a
legend of the classes shown.

An image's mIoU is the mean IoU over the classes present in its label or
its prediction (on pixels whose label is a class: ``ignore_index`` and
out-of-range pixels are left out); NaN for an image without such pixels.
"""
import cv2
import numpy as np

from paddleseg_ctx.analysis.confusion import confusion_counts
from paddleseg_ctx.deploy.visualize import color_map

__all__ = ['image_scores', 'panel']

PANEL_MAX_SIDE = 512  # larger images are shrunk to this (longer side)
PANEL_MIN_SIDE = 256  # smaller ones are enlarged by a whole factor
CAPTION_HEIGHT = 24
LEGEND_ROW = 20
GAP = 6
FONT = cv2.FONT_HERSHEY_SIMPLEX


def image_scores(pred, label, num_classes, ignore_index):
    """``{'miou', 'acc', 'classes'}`` of one image: mean IoU over the
    classes present (label or prediction), pixel accuracy, and the
    present class ids."""
    counts = confusion_counts(pred, label, num_classes, ignore_index)
    inter = np.diag(counts)
    union = counts.sum(axis=0) + counts.sum(axis=1) - inter
    present = np.flatnonzero(union)
    total = counts.sum()
    return {
        'miou': float(np.mean(inter[present] / union[present]))
        if len(present) else float('nan'),
        'acc': float(inter.sum() / total) if total else float('nan'),
        'classes': [int(c) for c in present],
    }


def _blend(image, ids, colors, valid, weight=0.5):
    """``image`` with ``colors[ids]`` blended in where ``valid``."""
    out = image.copy()
    mixed = weight * image + (1 - weight) * colors[ids]
    out[valid] = mixed[valid].round().astype(np.uint8)
    return out


def _caption(width, text):
    bar = np.full((CAPTION_HEIGHT, width, 3), 255, np.uint8)
    cv2.putText(bar, text, (4, CAPTION_HEIGHT - 8), FONT, 0.45, (0, 0, 0), 1,
                cv2.LINE_AA)
    return bar


def _legend(width, class_ids, names, colors):
    """Rows of colour swatches with class names, as many per row as fit."""
    entries = [(colors[c], '{} {}'.format(c, names[c])) for c in class_ids]
    rows, row, used = [], [], 0
    for colour, text in entries:
        size = 16 + 4 + cv2.getTextSize(text, FONT, 0.42, 1)[0][0] + 14
        if row and used + size > width:
            rows.append(row)
            row, used = [], 0
        row.append((colour, text, used))
        used += size
    if row:
        rows.append(row)
    legend = np.full((LEGEND_ROW * max(len(rows), 1) + 4, width, 3), 255,
                     np.uint8)
    for r, entries_of_row in enumerate(rows):
        top = 4 + r * LEGEND_ROW
        for colour, text, left in entries_of_row:
            legend[top:top + 14, left + 4:left + 18] = colour
            cv2.putText(legend, text, (left + 22, top + 12), FONT, 0.42,
                        (0, 0, 0), 1, cv2.LINE_AA)
    return legend


def panel(image, label, pred, names, ignore_index, title):
    """One RGB uint8 picture: ``title`` above ``input | label |
    prediction`` (the class maps blended over the input; ignored label
    pixels left uncoloured) and a legend of the classes they show.

    Args:
        image (np.ndarray): uint8 RGB [H, W, 3], the label's size.
        label, pred (np.ndarray): [H, W] class ids.
        names (list[str]): Class names.
        ignore_index (int): Label value of unlabelled pixels.
        title (str): Caption text (image name and score).
    """
    num_classes = len(names)
    colors = color_map()[:max(num_classes, 1)].astype(np.float64)
    h, w = label.shape
    scale = min(1.0, PANEL_MAX_SIDE / max(h, w))
    if max(h, w) < PANEL_MIN_SIDE:
        scale = float(PANEL_MIN_SIDE // max(h, w))
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if image.shape[:2] != (h, w) or scale != 1:
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA
                           if scale < 1 else cv2.INTER_NEAREST)
    if scale != 1:
        label = cv2.resize(label.astype(np.int32), size,
                           interpolation=cv2.INTER_NEAREST)
        pred = cv2.resize(pred.astype(np.int32), size,
                          interpolation=cv2.INTER_NEAREST)
    in_range = (label >= 0) & (label < num_classes) & (label != ignore_index)
    panels = [
        image,
        _blend(image, np.where(in_range, label, 0), colors, in_range),
        _blend(image, np.clip(pred, 0, num_classes - 1), colors,
               np.ones_like(in_range)),
    ]
    gap = np.full((size[1], GAP, 3), 255, np.uint8)
    strip = np.concatenate([panels[0], gap, panels[1], gap, panels[2]],
                           axis=1)
    width = strip.shape[1]
    heads = np.concatenate([
        _caption(size[0], 'input'), _caption(GAP, ''),
        _caption(size[0], 'label'), _caption(GAP, ''),
        _caption(size[0], 'prediction')], axis=1)
    shown = sorted(set(np.unique(label[in_range]).tolist()) |
                   set(np.unique(pred).tolist()) & set(range(num_classes)))
    return np.concatenate([
        _caption(width, title), heads, strip,
        _legend(width, shown, names, colors.astype(np.uint8))], axis=0)
