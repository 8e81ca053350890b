"""Confusion areas accumulated over a split, and the numbers PaddleSeg
reports from them (mIoU with either rule for empty classes, accuracy,
precision, recall, kappa, dice)."""
import numpy as np
import paddle
from paddleseg.utils import logger, metrics

__all__ = ['Areas', 'log_summary', 'summarize']


class Areas:
    """Per-class intersection, prediction and label pixel counts over a split.

    Args:
        num_classes (int): K.
        ignore_index (int): Label value that is never counted.
        out_of_range_ignored (bool): Also ignore label values outside [0, K)
            (ssseg); otherwise their pixels still count in the prediction
            area, as in PaddleSeg and mmseg.
    """

    def __init__(self, num_classes, ignore_index, out_of_range_ignored):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.out_of_range_ignored = out_of_range_ignored
        self.intersect = np.zeros(num_classes, np.int64)
        self.pred = np.zeros(num_classes, np.int64)
        self.label = np.zeros(num_classes, np.int64)

    def add(self, pred, label):
        """Count one image: ``pred`` and ``label`` are (H, W) integer maps."""
        if pred.shape != label.shape:
            raise ValueError('prediction {} and label {} differ in size.'
                             .format(pred.shape, label.shape))
        k = self.num_classes
        in_range = (label >= 0) & (label < k)
        valid = label != self.ignore_index
        if self.out_of_range_ignored:
            valid &= in_range
        pred, label, in_range = pred[valid], label[valid], in_range[valid]
        self.pred += np.bincount(pred, minlength=k)[:k]
        self.label += np.bincount(label[in_range], minlength=k)
        self.intersect += np.bincount(pred[pred == label], minlength=k)[:k]


def _ratio(numerator, denominator, empty):
    """numerator / denominator per class, ``empty`` where denominator is 0."""
    out = np.full(len(numerator), empty, dtype=np.float64)
    np.divide(numerator, denominator, out=out, where=denominator > 0)
    return out


def summarize(areas, miou_rule):
    """Dict of PaddleSeg's numbers: miou, acc, kappa, mdice, class_iou,
    class_precision, class_recall, class_dice.

    ``miou_rule`` ``empty_as_zero``: a class absent from prediction and label
    has IoU (and dice) 0 and counts in the mean (PaddleSeg); ``nanmean``: it
    is NaN and skipped (mmseg, ssseg).  Accuracy, precision, recall and kappa
    are PaddleSeg's.
    """
    empty = 0.0 if miou_rule == 'empty_as_zero' else np.nan
    union = areas.pred + areas.label - areas.intersect
    class_iou = _ratio(areas.intersect, union, empty)
    class_dice = _ratio(2 * areas.intersect, areas.pred + areas.label, empty)
    tensors = [
        paddle.to_tensor(a)
        for a in (areas.intersect, areas.pred, areas.label)
    ]
    acc, class_precision, class_recall = metrics.class_measurement(*tensors)
    mean = np.mean if miou_rule == 'empty_as_zero' else np.nanmean
    return {
        'miou': float(mean(class_iou)),
        'acc': float(acc),
        'kappa': float(metrics.kappa(*tensors)),
        'mdice': float(mean(class_dice)),
        'class_iou': class_iou,
        'class_precision': class_precision,
        'class_recall': class_recall,
        'class_dice': class_dice,
    }


def log_summary(summary, num_images):
    """PaddleSeg's ``[EVAL]`` lines (``paddleseg.core.val.evaluate``)."""
    logger.info('[EVAL] #Images: {} mIoU: {:.4f} Acc: {:.4f} Kappa: {:.4f} '
                'Dice: {:.4f}'.format(num_images, summary['miou'],
                                      summary['acc'], summary['kappa'],
                                      summary['mdice']))
    for title, key in (('Class IoU', 'class_iou'),
                       ('Class Precision', 'class_precision'),
                       ('Class Recall', 'class_recall')):
        logger.info('[EVAL] {}: \n{}'.format(title, np.round(summary[key], 4)))
