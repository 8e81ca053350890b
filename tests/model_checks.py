"""Helpers shared by the model tests: random weights, parity and export checks."""
import os

import numpy as np
import paddle

from paddleseg_ctx.deploy import (InferenceRunner, OnnxRunner, export_onnx,
                                  save_inference_model)
from paddleseg_ctx.testing.random_weights import randomize  # noqa: F401

# Odd sizes, not multiples of 8 (exercise padding / resize paths).
PARITY_INPUTS = ((1, 3, 97, 129), (2, 3, 64, 64))


def assert_logits_close(actual, expected, rtol=1e-5, what='logits'):
    """Max abs difference within ``rtol`` x the largest |expected| value."""
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    assert actual.shape == expected.shape, '{}: shape {} != {}'.format(
        what, actual.shape, expected.shape)
    scale = max(float(np.abs(expected).max()), 1e-12)
    err = float(np.abs(actual - expected).max())
    assert err <= rtol * scale, '{}: max diff {:.3g} > {:.1g} x {:.3g}'.format(
        what, err, rtol, scale)


def run_eval(model, shape, seed=1):
    """Eval-mode forward on a random input; returns (input, [np logits])."""
    x = paddle.to_tensor(
        np.random.RandomState(seed).uniform(-1, 1, shape).astype('float32'))
    model.eval()
    with paddle.no_grad():
        outs = model(x)
    return x.numpy(), [o.numpy() for o in outs]


def assert_export_matches(model, tmp_dir, shapes, rtol=1e-4, onnx=False):
    """Export with a dynamic InputSpec and check Paddle Inference (and, with
    ``onnx``, ONNX Runtime) against dygraph on each input shape (raw main
    logits)."""
    program, params = save_inference_model(
        model, str(tmp_dir), input_shape=None, output_op='none')
    runners = {'Paddle Inference': InferenceRunner(program, params)}
    if onnx:
        onnx_file = export_onnx(program, params, os.path.join(str(tmp_dir), 'model.onnx'))
        runners['ONNX Runtime'] = OnnxRunner(onnx_file)
    for shape in shapes:
        x, outs = run_eval(model, shape)
        for name, runner in runners.items():
            assert_logits_close(runner(x), outs[0], rtol=rtol,
                                what='{} logits {}'.format(name, shape))


def assert_eval_parity(reference, ours, shapes=PARITY_INPUTS):
    """Eval-mode main and aux logits of ``ours`` equal ``reference``'s."""
    for shape in shapes:
        _, expected = run_eval(reference, shape)
        _, actual = run_eval(ours, shape)
        assert len(actual) == len(expected) == 2
        for what, a, e in zip(('main', 'aux'), actual, expected):
            assert_logits_close(a, e, what='{} logits {}'.format(what, shape))


def train_step(model, num_classes, shape=(2, 3, 64, 64)):
    """One train-mode forward/backward with cross entropy on every logit;
    returns (logits, loss value)."""
    paddle.seed(0)
    model.train()
    x = paddle.uniform(shape, min=-1, max=1)
    label = paddle.randint(0, num_classes, [shape[0]] + list(shape[2:]))
    logits = model(x)
    loss = sum(
        paddle.nn.functional.cross_entropy(logit, label, axis=1).mean()
        for logit in logits)
    loss.backward()
    return logits, float(loss)


def assert_gradients_reach(layer, skip_prefixes=()):
    """Every trainable parameter of ``layer`` (except names starting with
    ``skip_prefixes``) got a finite gradient from the last backward."""
    for name, param in layer.named_parameters():
        if param.stop_gradient or name.startswith(tuple(skip_prefixes)):
            continue
        assert param.grad is not None, name
        assert np.isfinite(param.grad.numpy()).all(), name
