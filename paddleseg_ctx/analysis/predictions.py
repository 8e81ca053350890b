"""The class map of every validation image, predicted as ``val`` predicts it:
PaddleSeg's inference with the config's ``test_config`` (or a paddleseg
protocol's flags), or an mmseg/ssseg :class:`Protocol`."""
import os
import time

import numpy as np
import paddle
from paddleseg.core import infer
from paddleseg.utils import logger, progbar

from paddleseg_ctx.evaluation.protocol import describe, paddleseg_flags
# evaluate()'s own reading of raw samples, so both see the same pixels.
from paddleseg_ctx.evaluation.val import RawSamples, protocol_predictions

__all__ = ['paddleseg_prediction', 'predictions', 'raw_image',
           'class_names']


def paddleseg_prediction(model, data, test_config):
    """Class map ([1, 1, H, W] tensor) of one batch of a PaddleSeg val
    loader, as ``paddleseg.core.evaluate`` computes it with
    ``test_config`` (``aug_eval``, ``scales``, ``flip_*``, ``is_slide``,
    ``crop_size``, ``stride``)."""
    config = dict(test_config or {})
    slide = {key: config.get(key) for key in ('stride', 'crop_size')}
    slide['is_slide'] = config.get('is_slide', False)
    if config.get('aug_eval'):
        pred, _ = infer.aug_inference(
            model, data['img'], trans_info=data['trans_info'],
            scales=config.get('scales', 1.0),
            flip_horizontal=config.get('flip_horizontal', False),
            flip_vertical=config.get('flip_vertical', False), **slide)
    else:
        pred, _ = infer.inference(
            model, data['img'], trans_info=data['trans_info'], **slide)
    return pred


def predictions(model, dataset, protocol=None, test_config=None,
                num_workers=0):
    """Yield ``(index, prediction, label)`` for each image of ``dataset``
    (int64 [H, W] arrays at the label's size), with a progress bar.

    Args:
        model (nn.Layer): The model with its weights (put in eval mode).
        dataset: The config's ``val_dataset``.
        protocol (Protocol|None): A model-zoo column's test procedure; None:
            PaddleSeg's inference with ``test_config``.
        test_config (dict|None): The config's ``test_config``; used without
            a protocol.
        num_workers (int): Data loader worker processes.
    """
    model.eval()
    if protocol is not None:
        logger.info('Protocol: ' + describe(protocol))
    if protocol is not None and protocol.source != 'paddleseg':
        pairs = protocol_predictions(model, dataset, protocol, num_workers)
    else:
        if protocol is not None:
            test_config = paddleseg_flags(protocol)
        pairs = _paddleseg_predictions(model, dataset, test_config,
                                       num_workers)
    bar = progbar.Progbar(target=len(dataset), verbose=1)
    start = time.time()
    for index, (pred, label) in enumerate(pairs):
        label = label.reshape(label.shape[-2:]).astype(np.int64)
        yield index, pred.reshape(label.shape).astype(np.int64), label
        bar.update(index + 1, [('batch_cost',
                                (time.time() - start) / (index + 1))])


def _paddleseg_predictions(model, dataset, test_config, num_workers):
    """``(prediction, label)`` arrays as PaddleSeg's evaluate infers them."""
    loader = paddle.io.DataLoader(
        dataset, batch_size=1, num_workers=num_workers, return_list=True)
    with paddle.no_grad():
        for data in loader:
            yield (paddleseg_prediction(model, data, test_config).numpy(),
                   data['label'].numpy())


def raw_image(dataset, index):
    """The uint8 HWC image of sample ``index`` as the data set reads it
    (RGB for PaddleSeg's default), before any transform."""
    return RawSamples(dataset)[index][0]


def class_names(dataset):
    """Class names of ``dataset``: the lines of ``labels.txt`` in its
    ``dataset_root`` (PaddleSeg's layout; the demo data set writes one) when
    it holds one name per class, else the class ids."""
    num_classes = dataset.num_classes
    root = getattr(dataset, 'dataset_root', None)
    path = root and os.path.join(root, 'labels.txt')
    if path and os.path.isfile(path):
        with open(path) as f:
            names = [line.strip() for line in f if line.strip()]
        if len(names) == num_classes:
            return names
        logger.warning('{} has {} names for {} classes; using class ids.'
                       .format(path, len(names), num_classes))
    return [str(c) for c in range(num_classes)]
