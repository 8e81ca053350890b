"""Multi-scale/flip evaluation (``val --aug_eval``) against an independent
numpy version of PaddleSeg's protocol.

Protocol (paddleseg/core/infer.py ``aug_inference``): for each scale ``s``
resize the input bilinearly (align_corners=False) to ``int(h*s+0.5) x
int(w*s+0.5)``; for each flip, flip the input, run the model, flip the logit
back; resize the logit bilinearly to the input size; average the LOGITS over
all scale x flip runs; argmax.  mIoU averages all classes, a class absent
from both prediction and label counting as 0.
"""
import numpy as np
import pytest

from cli_utils import (load_model, logits, make_data, mean_iou,
                       normalized_image, save_random_weights, val_samples,
                       write_config)
from paddleseg_ctx.cli import val


def bilinear_resize(chw, height, width):
    """Bilinear resize of a CHW array with half-pixel centres
    (align_corners=False) and no antialiasing, like F.interpolate."""

    def taps(out_size, in_size):
        src = (np.arange(out_size) + 0.5) * (in_size / out_size) - 0.5
        src = np.clip(src, 0, in_size - 1)
        low = np.floor(src).astype(int)
        high = np.minimum(low + 1, in_size - 1)
        return low, high, src - low

    y0, y1, wy = taps(height, chw.shape[1])
    x0, x1, wx = taps(width, chw.shape[2])
    rows = chw[:, y0] * (1 - wy)[:, None] + chw[:, y1] * wy[:, None]
    return rows[:, :, x0] * (1 - wx) + rows[:, :, x1] * wx


def reference_prediction(model, chw, scales, flip_horizontal):
    height, width = chw.shape[1:]
    total, runs = 0.0, 0
    for scale in scales:
        scaled = bilinear_resize(chw, int(height * scale + 0.5),
                                 int(width * scale + 0.5)).astype('float32')
        for flip in [False, True] if flip_horizontal else [False]:
            image = scaled[:, :, ::-1] if flip else scaled
            logit = logits(model, image)
            logit = logit[:, :, ::-1] if flip else logit
            total = total + bilinear_resize(logit, height, width)
            runs += 1
    return (total / runs).argmax(0)


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp('aug_eval')
    # 70x50: at scales 0.75/1.25 the sizes end in .5, so the rounding counts.
    data = make_data(root / 'data', num_train=1, num_val=3, seed=3,
                     size=(70, 50))
    config = write_config(root / 'fcn.yml', data)
    weights = save_random_weights(config, root / 'random.pdparams', seed=5)
    return data, config, weights, load_model(config, weights)


def reference_class_iou(setup, scales, flip_horizontal):
    data, _, _, model = setup
    samples = val_samples(data)
    preds = [
        reference_prediction(model, normalized_image(image), scales,
                             flip_horizontal) for image, _ in samples
    ]
    return mean_iou(preds, [label for _, label in samples],
                    data['num_classes'])[0]


@pytest.mark.parametrize('scales,flip', [
    ([1.0], True),
    ([0.75, 1.0, 1.25], False),
    ([0.75, 1.0, 1.25], True),
])
def test_aug_eval_matches_numpy_protocol(setup, scales, flip):
    _, config, weights, _ = setup
    argv = ['--config', config, '--device', 'cpu', '--model_path', weights,
            '--aug_eval', '--scales'] + [str(s) for s in scales]
    if flip:
        argv.append('--flip_horizontal')
    miou, _, class_iou, _, _ = val.main(argv)

    expected = reference_class_iou(setup, scales, flip)
    # The augmentation must matter here, or this test could not fail.
    assert not np.allclose(expected, reference_class_iou(setup, [1.0], False))
    np.testing.assert_allclose(class_iou, expected, atol=1e-9)
    assert miou == pytest.approx(expected.mean(), abs=1e-9)
