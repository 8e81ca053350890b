"""Cross-entropy averaged over all pixels (mmseg's default ``avg_non_ignore=False``).

PaddleSeg 2.8's own ``CrossEntropyLoss(avg_non_ignore=False)`` already computes
it (with ``paddleseg_ctx.compat``'s dtype fix on Paddle 3, applied on import),
so configs use that; these tests pin the semantics against hand-checked values,
an independent numpy computation and mmseg's loss itself.
"""
import math

import numpy as np
import paddle
import pytest
from paddleseg.models.losses import CrossEntropyLoss

import paddleseg_ctx  # noqa: F401  (applies the compat fixes)
from reference_imports import import_mmseg


def _numpy_ce(logit, label, ignore=255):
    """Per-pixel cross entropy, 0 at ignored pixels (logit NCHW, label NHW)."""
    top = logit.max(1, keepdims=True)
    log_z = np.log(np.exp(logit - top).sum(1)) + top[:, 0]
    safe = np.where(label == ignore, 0, label)
    picked = np.take_along_axis(logit, safe[:, None], 1)[:, 0]
    return np.where(label == ignore, 0.0, log_z - picked)


def _random_case(seed=0):
    rs = np.random.RandomState(seed)
    logit = rs.randn(2, 5, 7, 9).astype(np.float32)
    label = rs.randint(0, 5, (2, 7, 9))
    label[0, :3] = 255
    label[1, :, :2] = 255
    return logit, label


def _loss(logit, label, **kwargs):
    return float(CrossEntropyLoss(**kwargs)(paddle.to_tensor(logit),
                                            paddle.to_tensor(label)))


def test_all_pixel_average_hand_checked():
    # Equal logits: every labelled pixel costs ln 2; one of three is ignored.
    logit = np.zeros((1, 2, 1, 3), np.float32)
    label = np.array([[[0, 1, 255]]])
    assert _loss(logit, label, avg_non_ignore=False) == pytest.approx(2 * math.log(2) / 3)
    assert _loss(logit, label) == pytest.approx(math.log(2))  # PaddleSeg's default


def test_all_pixel_average_matches_numpy():
    logit, label = _random_case()
    ce = _numpy_ce(logit, label)
    assert _loss(logit, label, avg_non_ignore=False) == pytest.approx(ce.mean(), rel=1e-6)
    assert _loss(logit, label) == pytest.approx(ce.sum() / (label != 255).sum(), rel=1e-6)


def test_all_ignored_gives_zero_not_nan():
    logit, label = _random_case()
    label[:] = 255
    assert _loss(logit, label, avg_non_ignore=False) == 0.0
    assert _loss(logit, label) == 0.0


def test_gradient_is_one_over_all_pixels_and_zero_where_ignored():
    logit, label = _random_case()
    x = paddle.to_tensor(logit, stop_gradient=False)
    CrossEntropyLoss(avg_non_ignore=False)(x, paddle.to_tensor(label)).backward()
    grad = x.grad.numpy()
    e = np.exp(logit - logit.max(1, keepdims=True))
    softmax = e / e.sum(1, keepdims=True)
    one_hot = np.eye(5)[np.where(label == 255, 0, label)].transpose(0, 3, 1, 2)
    expected = (softmax - one_hot) * (label != 255)[:, None] / label.size
    np.testing.assert_allclose(grad, expected, atol=1e-7)


def test_matches_mmseg_cross_entropy_loss():
    import_mmseg()
    import torch
    from mmseg.models.losses import CrossEntropyLoss as MmsegCE
    for seed in range(3):
        logit, label = _random_case(seed)
        args = torch.tensor(logit), torch.tensor(label)
        ref_all = float(MmsegCE()(*args, ignore_index=255))  # mmseg's default
        ref_valid = float(MmsegCE(avg_non_ignore=True)(*args, ignore_index=255))
        assert _loss(logit, label, avg_non_ignore=False) == pytest.approx(ref_all, rel=1e-6)
        assert _loss(logit, label) == pytest.approx(ref_valid, rel=1e-6)
