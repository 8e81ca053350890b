"""Trained ISNet gives dygraph's labels in Paddle Inference and ONNX Runtime.

ISNet's semantic-level context takes the argmax of its stage-1 logits: a
backend that sums in another order can rank a near-tie the other way, and the
pixel then takes another class centre (issue 21).  Random weights leave many
near-ties; this checks the weights users deploy, trained ones.  Measured on
the models trained here: the smallest stage-1 gap between the two best
classes is about 1e-3 of the largest logit, a thousand times the backends'
stage-1 error (at most 1.3e-6, oneDNN); with random weights it is 1 to 20
times (ResNet-50, 150 classes: 4.6e-6 against 3.7e-6).

Each light ISNet form of the family table (plain and LIP) trains for a few
hundred iterations through PaddleSeg's loop (``paddleseg_ctx.train``) on the
generated data set; ``val``'s backends (``deploy.exported.load_model``: the
export, oneDNN where its check passes) must then give the dygraph logits
within rounding (tight enough to see one stage-1 label flip, which the test
checks) and every label of the dygraph model on the validation images, at
their size and at 512x512, but where dygraph's own two best logits tie within
rounding.

Trains 300 iterations per form: minutes on two cores, so ``-m slow``.
"""
import os

import cv2
import numpy as np
import paddle
import pytest
import yaml
from paddleseg.cvlibs import Config, SegBuilder
from PIL import Image

from paddleseg_ctx.datasets.synthetic import make_synthetic_dataset
from paddleseg_ctx.deploy.exported import load_model
from paddleseg_ctx.testing.families import light_config

pytest.importorskip('paddle2onnx')
pytest.importorskip('onnxruntime')

NUM_CLASSES = 6  # every class of the generator: the most chances of a tie
IMAGE_SIZE = (64, 64)  # (w, h) of the generated images
CROP = [32, 32]  # training crops, small so that training is quick
ITERS = 300
LARGE = (512, 512)  # the size the issue found ONNX Runtime's labels flip at
BACKENDS = ('paddle', 'onnxruntime')
# A backend's logits differ from dygraph's by rounding: up to 3.4e-6 of the
# largest logit here.  One stage-1 label taken the other way moved them by
# 1e-4 to 2e-2 (assert_stage1_flip_shows checks that this tolerance sees it).
LOGIT_RTOL = 2e-5
# The output's own argmax: where dygraph's two best logits are this close,
# rounding alone ranks them either way, in any model and backend (oneDNN's
# Paddle Inference flipped a pixel with a gap of 2e-7 on a class border of the
# 512x512 upsampled logits).
TIE_RTOL = 1e-5


def write_config(path, data, form):
    """A PaddleSeg config training the light model of row ``form``."""
    dataset = {
        'type': 'Dataset', 'dataset_root': data['dataset_root'],
        'train_path': data['train_path'], 'val_path': data['val_path'],
        'num_classes': NUM_CLASSES, 'mode': 'train',
        'transforms': [{'type': 'RandomPaddingCrop', 'crop_size': CROP},
                       {'type': 'RandomHorizontalFlip'},
                       {'type': 'Normalize'}],
    }
    path.write_text(yaml.safe_dump({
        'batch_size': 4, 'iters': ITERS, 'train_dataset': dataset,
        'val_dataset': dict(dataset, mode='val',
                            transforms=[{'type': 'Normalize'}]),
        'model': light_config(form, NUM_CLASSES),
        'optimizer': {'type': 'SGD', 'momentum': 0.9, 'weight_decay': 4e-5},
        'lr_scheduler': {'type': 'PolynomialDecay', 'learning_rate': 0.01,
                         'end_lr': 0, 'power': 0.9},
        # ISNet's [stage2, stage1, aux] as sssegmentation weights them.
        'loss': {'types': [{'type': 'CrossEntropyLoss'}],
                 'coef': [1, 0.4, 0.4]},
    }))
    return str(path)


def val_pairs(data):
    """``[(image path, label path)]`` of the validation list."""
    with open(data['val_path']) as f:
        return [[os.path.join(data['dataset_root'], name)
                 for name in line.split()] for line in f if line.strip()]


def val_images(data):
    """The validation images, normalised (mean = std = 0.5) here with numpy:
    float32 [1, 3, H, W] each, at their size and resized to ``LARGE``."""
    images = []
    for path, _ in val_pairs(data):
        rgb = np.asarray(Image.open(path).convert('RGB'), dtype='float32')
        for image in (rgb, cv2.resize(rgb, LARGE,
                                      interpolation=cv2.INTER_LINEAR)):
            chw = ((image / 255 - 0.5) / 0.5).transpose(2, 0, 1)
            images.append(chw[None].copy())
    return images


def logits(model, image):
    with paddle.no_grad():
        return model(paddle.to_tensor(image))[0].numpy()


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    return make_synthetic_dataset(
        str(tmp_path_factory.mktemp('data')), num_train=16, num_val=4,
        size=IMAGE_SIZE, num_classes=NUM_CLASSES, seed=0)


@pytest.mark.slow
@pytest.mark.parametrize('form', ['isnet', 'isnet_lip'])
def test_trained_isnet_deployed_gives_dygraph_labels(tmp_path, data, form):
    from paddleseg_ctx.cli import train
    config = write_config(tmp_path / 'config.yml', data, form)
    save_dir = tmp_path / 'output'
    train.main([
        '--config', config, '--save_interval', str(ITERS), '--log_iters',
        '50', '--num_workers', '0', '--seed', '0', '--save_dir',
        str(save_dir), '--device', 'cpu'
    ])
    weights = str(save_dir / 'iter_{}'.format(ITERS) / 'model.pdparams')

    builder = SegBuilder(Config(config))
    dygraph = load_model(builder, weights, 'dygraph')
    dygraph.eval()
    images = val_images(data)
    expected = [logits(dygraph, image) for image in images]
    # Trained: the model has learnt the data (so its logits are a trained
    # model's, not a barely moved initialisation's).
    accuracy = np.mean([
        np.mean(ref[0].argmax(0) == np.array(Image.open(label)))
        for ref, (_, label) in zip(expected[::2], val_pairs(data))])
    assert accuracy > 0.6, accuracy

    for image, ref in zip(images, expected):
        assert_stage1_flip_shows(dygraph, image, ref)

    for backend in BACKENDS:
        model = load_model(SegBuilder(Config(config)), weights, backend,
                           cache_dir=str(tmp_path / 'exported'))
        for image, ref in zip(images, expected):
            assert_same_answer(logits(model, image), ref, '{} at {}x{}'.format(
                backend, *image.shape[2:]))


def assert_same_answer(actual, expected, what):
    """``actual`` logits are ``expected``'s within ``LOGIT_RTOL``, and so
    are their labels, except where ``expected``'s two best classes are
    within ``TIE_RTOL`` (both relative to the largest |expected|)."""
    assert actual.shape == expected.shape, what
    scale = np.abs(expected).max()
    err = np.abs(actual - expected).max() / scale
    assert err <= LOGIT_RTOL, '{}: logits differ by {:.2e}'.format(what, err)
    top2 = np.sort(expected, axis=1)[:, -2:]
    tie = top2[:, 1] - top2[:, 0] <= TIE_RTOL * scale
    differ = actual.argmax(1) != expected.argmax(1)
    assert not (differ & ~tie).any(), '{}: {} of {} labels differ'.format(
        what, (differ & ~tie).sum(), differ.size)


def assert_stage1_flip_shows(model, image, expected):
    """The check above sees one stage-1 label taken the other way: at the
    stage-1 near-tie a backend would rank differently first (the smallest
    gap between the two best classes), the runner-up is made to win by a
    hair, and the logits must move by more than ``LOGIT_RTOL``."""

    def flip_closest_tie(layer, inputs, output):
        stage1 = output.numpy()
        top2 = np.sort(stage1, axis=1)[:, -2:]
        n, y, x = np.unravel_index(np.argmin(top2[:, 1] - top2[:, 0]),
                                   top2[:, 0].shape)
        runner_up = np.argsort(stage1[n, :, y, x])[-2]
        stage1[n, runner_up, y, x] = np.nextafter(top2[n, 1, y, x],
                                                  np.float32(np.inf))
        return paddle.to_tensor(stage1)

    hook = model.head.decoder_stage1.register_forward_post_hook(
        flip_closest_tie)
    try:
        flipped = logits(model, image)
    finally:
        hook.remove()
    moved = np.abs(flipped - expected).max() / np.abs(expected).max()
    assert moved > LOGIT_RTOL, moved
