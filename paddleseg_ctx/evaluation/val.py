"""Evaluate a model on a PaddleSeg dataset under a :class:`Protocol`.

``paddleseg`` protocols are PaddleSeg's own ``paddleseg.core.evaluate`` with
the matching flags.  ``mmseg`` and ``ssseg`` protocols read each image once
as uint8 and do their own test-time resize (the config's val transforms
contribute only ``Normalize``'s mean/std and the dataset's label decoding);
the label stays at its original size.
"""
import copy
import time

import numpy as np
import paddle
from paddleseg.core import evaluate as paddleseg_evaluate
from paddleseg.transforms import Compose, Normalize
from paddleseg.utils import logger, progbar

from paddleseg_ctx.evaluation.inference import predict
from paddleseg_ctx.evaluation.metrics import Areas, log_summary, summarize
from paddleseg_ctx.evaluation.protocol import describe, paddleseg_flags
from paddleseg_ctx.transforms.test_time import ResizeByImgScale

__all__ = ['evaluate']


def evaluate(model, dataset, protocol, num_workers=0, auc_roc=False):
    """Run ``protocol`` over ``dataset`` and log PaddleSeg's ``[EVAL]`` lines.

    Args:
        model (nn.Layer): Segmentation model (put in eval mode here).
        dataset (paddleseg.datasets.Dataset): The config's ``val_dataset``.
        protocol (Protocol): What to run.
        num_workers (int): Data loader worker processes.
        auc_roc (bool): Also compute the ROC AUC (paddleseg protocols only).

    Returns:
        PaddleSeg's ``(miou, acc, class_iou, class_precision, kappa)``; with
        ``miou: nanmean`` the IoU of a class absent from prediction and
        label is NaN.
    """
    logger.info('[EVAL] Protocol: ' + describe(protocol))
    if protocol.source == 'paddleseg':
        return paddleseg_evaluate(
            model, dataset, num_workers=num_workers, auc_roc=auc_roc,
            **paddleseg_flags(protocol))
    if auc_roc:
        raise ValueError('auc_roc is computed by PaddleSeg\'s evaluate only, '
                         'not under {} protocols.'.format(protocol.source))
    if paddle.distributed.ParallelEnv().nranks > 1:
        raise RuntimeError('{} protocols run in one process; start the '
                           'evaluation without paddle.distributed.launch.'
                           .format(protocol.source))
    areas = Areas(dataset.num_classes, dataset.ignore_index,
                  protocol.steps.out_of_range_ignored)
    logger.info('Start evaluating (total_samples: {})...'.format(
        len(dataset)))
    bar = progbar.Progbar(target=len(dataset), verbose=1)
    start = time.time()
    for i, (prediction, label) in enumerate(
            protocol_predictions(model, dataset, protocol, num_workers)):
        areas.add(prediction, label)
        bar.update(i + 1, [('batch_cost', (time.time() - start) / (i + 1))])
    summary = summarize(areas, protocol.miou)
    log_summary(summary, len(dataset))
    return (summary['miou'], summary['acc'], summary['class_iou'],
            summary['class_precision'], summary['kappa'])


def protocol_predictions(model, dataset, protocol, num_workers=0):
    """Yield ``(prediction, label)`` arrays for each image of ``dataset``
    under an mmseg/sssegmentation ``protocol``, starting from the uint8
    image as the data set reads it (``model`` is put in eval mode)."""
    mean, std = _normalize_parameters(dataset)
    model.eval()
    loader = paddle.io.DataLoader(
        RawSamples(dataset), batch_size=1, num_workers=num_workers,
        collate_fn=lambda batch: batch[0])
    with paddle.no_grad():
        for image, label in loader:
            # the loader hands out tensors; the protocol starts from uint8
            image, label = image.numpy(), label.numpy()
            yield predict(model, image, protocol, mean, std), label


def _normalize_parameters(dataset):
    """``(mean, std)`` of the ``Normalize`` in the dataset's transforms;
    warn about transforms the protocol replaces."""
    found, replaced = None, []
    for op in dataset.transforms.transforms:
        if isinstance(op, Normalize):
            found = (op.mean, op.std)
        elif not isinstance(op, ResizeByImgScale):
            replaced.append(type(op).__name__)
    if found is None:
        raise ValueError('The val_dataset transforms have no Normalize; '
                         'mmseg/ssseg protocols take its mean/std from there.')
    if replaced:
        logger.warning('The protocol does its own test-time resizing; the '
                       'val_dataset transforms {} are not applied.'.format(
                           ', '.join(replaced)))
    return found


class RawSamples(paddle.io.Dataset):
    """``(uint8 HWC image, int64 HxW label)`` of a PaddleSeg dataset: the
    image as its ``Compose`` reads it (RGB by default), the label as the
    dataset decodes it (e.g. ADE20K's shift), no other transform."""

    def __init__(self, dataset):
        self.dataset = copy.copy(dataset)
        self.dataset.transforms = Compose(
            [],
            to_rgb=dataset.transforms.to_rgb,
            img_channels=dataset.transforms.img_channels)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        data = self.dataset[index]
        image = data['img'].transpose(1, 2, 0).astype(np.uint8)
        label = np.asarray(data['label']).astype(np.int64)
        return image, label.reshape(label.shape[-2:])
