"""Tiny data set, config, weights and command runner shared by the CLI tests
(test_cli.py, test_distributed.py, test_aug_eval.py)."""
import os
import subprocess
import sys

import numpy as np
import paddle
import yaml
from PIL import Image
from paddleseg.cvlibs import Config, SegBuilder

from model_checks import randomize
from paddleseg_ctx.datasets.synthetic import make_synthetic_dataset

NUM_CLASSES = 4
IMAGE_SIZE = (64, 48)  # (width, height): not square, so w/h mix-ups show


def make_data(root, num_train=4, num_val=3, seed=0, size=IMAGE_SIZE):
    """Synthetic PaddleSeg-layout data set of ``size`` (w, h) images; returns
    make_synthetic_dataset's dict (dataset_root, train_path, val_path,
    num_classes)."""
    return make_synthetic_dataset(
        str(root), num_train, num_val, size, NUM_CLASSES, seed)


def write_config(path, data, **extra):
    """Write a PaddleSeg config: stock FCN on HRNet_W18_Small_V1 (fast, one
    logit), Normalize-only transforms, trained on ``data``."""

    def dataset(mode, list_key):
        return {
            'type': 'Dataset',
            'dataset_root': data['dataset_root'],
            list_key: data[list_key],
            'num_classes': data['num_classes'],
            'mode': mode,
            'transforms': [{'type': 'Normalize'}],
        }

    config = {
        'batch_size': 2,
        'iters': 4,
        'train_dataset': dataset('train', 'train_path'),
        'val_dataset': dataset('val', 'val_path'),
        'model': {
            'type': 'FCN',
            'backbone': {'type': 'HRNet_W18_Small_V1'},
            'backbone_indices': [-1],
        },
        'optimizer': {'type': 'SGD', 'momentum': 0.9, 'weight_decay': 4e-5},
        'lr_scheduler': {
            'type': 'PolynomialDecay',
            'learning_rate': 0.01,
            'power': 0.9,
        },
        'loss': {'types': [{'type': 'CrossEntropyLoss'}], 'coef': [1]},
    }
    config.update(extra)
    with open(path, 'w') as f:
        yaml.safe_dump(config, f)
    return str(path)


def build_model(config):
    """The model of ``config`` in eval mode, built in this process."""
    model = SegBuilder(Config(config)).model
    model.eval()
    return model


def save_random_weights(config, path, seed=0):
    """Random weights (incl. BN statistics) for ``config``'s model: unlike a
    few training steps, they give varied per-pixel predictions."""
    model = build_model(config)
    randomize(model, seed)
    paddle.save(model.state_dict(), str(path))
    return str(path)


def load_model(config, weights):
    model = build_model(config)
    model.set_state_dict(paddle.load(weights))
    return model


def val_samples(data):
    """``[(image path, label array)]`` of the val list."""
    root = data['dataset_root']
    with open(data['val_path']) as f:
        pairs = [line.split() for line in f if line.strip()]
    return [(os.path.join(root, image),
             np.array(Image.open(os.path.join(root, label))))
            for image, label in pairs]


def normalized_image(path):
    """PaddleSeg's ``Normalize`` (mean = std = 0.5) on an RGB image, as a
    float32 CHW array; written here with numpy."""
    rgb = np.asarray(Image.open(path).convert('RGB'), dtype='float32')
    return ((rgb / 255 - 0.5) / 0.5).transpose(2, 0, 1)


def logits(model, chw):
    """Main logit of ``model`` for one CHW image, as a CHW numpy array."""
    with paddle.no_grad():
        return model(paddle.to_tensor(chw[None].copy()))[0][0].numpy()


def mean_iou(preds, labels, num_classes, ignore_index=255):
    """Per-class IoU over all images (a class absent from both prediction
    and label scores 0, as in PaddleSeg) and their mean."""
    inter = np.zeros(num_classes)
    union = np.zeros(num_classes)
    for pred, label in zip(preds, labels):
        valid = label != ignore_index
        for c in range(num_classes):
            inter[c] += np.sum((pred == c) & (label == c) & valid)
            union[c] += np.sum(((pred == c) | (label == c)) & valid)
    iou = np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    return iou, iou.mean()


def run_cli(command, *args, timeout=300, check=True):
    """Run ``python -m paddleseg_ctx.<command> *args``; with ``check``, fail
    the test with the output tail if it exits non-zero.  Returns the
    CompletedProcess."""
    return run([sys.executable, '-m', 'paddleseg_ctx.' + command] +
               [str(a) for a in args], timeout=timeout, check=check)


def run(cmd, timeout=300, check=True):
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=timeout)
    assert not check or proc.returncode == 0, '{} exited with {}\n--- stdout\n{}\n' \
        '--- stderr\n{}'.format(' '.join(cmd[:4]), proc.returncode,
                                proc.stdout[-3000:], proc.stderr[-3000:])
    return proc
