"""Every model family takes odd input sizes and trains at batch size 1;
grayscale and RGBA images go through predict and infer (issue 9, item 4).

The families (paddleseg_ctx/testing/families.yml) with the smallest
backbones the package has: ResNet18_vd for the PaddleSeg forms, ResNet18_v1c
for the mmseg / sssegmentation forms, and narrow heads.  Findings: in eval mode every family runs down to 1x1 inputs;
at batch size 1 training works whenever the output-stride-8 feature maps are
larger than 1x1 (inputs with H or W >= 9); smaller inputs give a BatchNorm
one value per channel, which Paddle would pass through unnormalised, and are
refused with a message (``training.batch_norm``).
"""
import numpy as np
import paddle
import pytest
from PIL import Image

from cli_utils import (load_model, logits, make_data, save_random_weights,
                       write_config)
from paddleseg_ctx.cli import export, infer, predict, train
from paddleseg_ctx.errors import run
from paddleseg_ctx.models import CtxGINet
from paddleseg_ctx.testing.families import FAMILIES, build_light
from paddleseg_ctx.training.batch_norm import (BatchNormSizeError,
                                               refuse_single_value_batch_norm)

K = 5


@pytest.fixture(scope='module', params=sorted(FAMILIES))
def model(request):
    paddle.seed(0)
    return refuse_single_value_batch_norm(build_light(request.param, K))


# GINet's class-node BatchNorm1Ds see K identical rows (``head.inp`` is
# frozen at zero, docs/reference/models.md#ginet-class-nodes),
# so their running mean stays 0 anyway.
CONSTANT_INPUT = ('head.fc1.1', 'head.fc2.1')


def batch_norms(model):
    return [layer for name, layer in model.named_sublayers()
            if isinstance(layer, paddle.nn.layer.norm._BatchNormBase) and
            not (isinstance(model, CtxGINet) and name in CONSTANT_INPUT)]


@pytest.mark.parametrize('shape', [(1, 3, 33, 47), (2, 3, 13, 9),
                                   (1, 3, 1, 1), (1, 3, 1, 17)])
def test_eval_forward_at_odd_sizes(model, shape):
    model.eval()
    x = paddle.uniform(shape, min=-1, max=1)
    with paddle.no_grad():
        out = model(x)
    assert list(out[0].shape) == [shape[0], K] + list(shape[2:])
    assert np.isfinite(out[0].numpy()).all()


@pytest.mark.parametrize('shape', [(1, 3, 33, 47), (1, 3, 9, 9)])
def test_training_step_at_batch_size_1(model, shape):
    model.train()
    means = {id(bn): bn._mean.numpy().copy() for bn in batch_norms(model)}
    x = paddle.uniform(shape, min=-1, max=1)
    label = paddle.randint(0, K, [shape[0]] + list(shape[2:]))
    out = model(x)
    for logit in out:
        assert list(logit.shape[2:]) == list(shape[2:])
    loss = sum(paddle.nn.functional.cross_entropy(logit, label, axis=1).mean()
               for logit in out)
    loss.backward()
    assert np.isfinite(float(loss))
    # Every BatchNorm that ran normalised: its running mean moved (Paddle
    # leaves it alone when it passes an input through).
    ran = [bn for bn in batch_norms(model)
           if not np.array_equal(means[id(bn)], bn._mean.numpy())]
    assert len(ran) == len(means), (len(ran), len(means))
    grads = [p.grad for p in model.parameters() if not p.stop_gradient]
    assert sum(g is not None and bool((g != 0).any()) for g in grads) > \
        0.5 * len(grads)
    model.clear_gradients()


@pytest.mark.parametrize('shape', [(1, 3, 8, 8), (1, 3, 2, 2)])
def test_one_value_per_channel_is_refused(model, shape):
    model.train()
    with pytest.raises(BatchNormSizeError,
                       match=r'gets one value per channel while training '
                       r'\(input shape \[1, \d+, 1, 1\]\).*batch size of at '
                       r'least 2.*crop_size'):
        model(paddle.uniform(shape, min=-1, max=1))
    # Two images of that size have two values per channel: fine.
    model(paddle.uniform((2, ) + shape[1:], min=-1, max=1))


def test_paddle_passes_one_value_per_channel_through():
    # Why the refusal: Paddle's BatchNorm neither normalises nor learns here.
    bn = paddle.nn.BatchNorm2D(3)
    bn.train()
    x = paddle.uniform([1, 3, 1, 1], min=1, max=2)
    assert np.allclose(bn(x).numpy(), x.numpy())
    assert np.array_equal(bn._mean.numpy(), np.zeros(3))


# --- the commands ------------------------------------------------------------


@pytest.fixture(scope='module')
def work(tmp_path_factory):
    """GCNet (PaddleSeg form) with random weights, and a grayscale and an
    RGBA image of odd size."""
    root = tmp_path_factory.mktemp('shapes')
    data = make_data(root / 'data', num_train=2, num_val=1, size=(47, 33))
    config = write_config(root / 'gcnet.yml', data, model={
        'type': 'CtxGCNet', 'gc_channels': 32,
        'backbone': {'type': 'ResNet18_vd', 'output_stride': 8}}, loss={
            'types': [{'type': 'CrossEntropyLoss'}] * 2, 'coef': [1, 0.4]})
    weights = save_random_weights(config, root / 'random.pdparams')
    rng = np.random.RandomState(0)
    images = {
        'gray': Image.fromarray(rng.randint(0, 256, (33, 47), np.uint8), 'L'),
        'rgba': Image.fromarray(rng.randint(0, 256, (33, 47, 4), np.uint8),
                                'RGBA'),
    }
    paths = {}
    for kind, image in images.items():
        paths[kind] = root / 'images' / (kind + '.png')
        paths[kind].parent.mkdir(exist_ok=True)
        image.save(paths[kind])
    return root, config, weights, paths


def reference_labels(config, weights, path):
    """Argmax of the model run here on PIL's RGB conversion of the image
    (grey replicated, alpha dropped), normalised in numpy."""
    rgb = np.asarray(Image.open(path).convert('RGB'), dtype='float32')
    chw = ((rgb / 255 - 0.5) / 0.5).transpose(2, 0, 1)
    return logits(load_model(config, weights), chw)


def assert_argmax_of(label, logit, rtol=1e-4):
    """``label`` is the argmax of ``logit`` except at near-ties."""
    assert label.shape == logit.shape[1:]
    top2 = np.sort(logit, axis=0)[-2:]
    tie = top2[1] - top2[0] <= rtol * np.abs(logit).max()
    assert len(np.unique(logit.argmax(0))) > 1, 'a constant map proves little'
    assert not ((label != logit.argmax(axis=0)) & ~tie).any()


def test_gray_and_rgba_through_predict_and_infer(work, tmp_path):
    # The reading path (cv2.IMREAD_COLOR in predict's checked Compose and in
    # infer) comes before, and does not depend on, the model family.
    root, config, weights, paths = work
    run(predict.main, ['--config', config, '--model_path', weights,
                       '--image_path', str(root / 'images'), '--device',
                       'cpu', '--save_dir', str(tmp_path / 'predict')])
    run(export.main, ['--config', config, '--model_path', weights,
                      '--save_dir', str(tmp_path / 'export'),
                      '--output_op', 'argmax'])
    run(infer.main, ['--config', str(tmp_path / 'export' / 'deploy.yaml'),
                     '--image_path', str(root / 'images'), '--backend',
                     'paddle', '--device', 'cpu', '--save_dir',
                     str(tmp_path / 'infer')])
    for kind, path in paths.items():
        expected = reference_labels(config, weights, path)
        for command in ('predict', 'infer'):
            label = np.array(Image.open(
                tmp_path / command / 'pseudo_color_prediction' /
                (kind + '.png')))
            assert_argmax_of(label, expected)
            added = Image.open(tmp_path / command / 'added_prediction' /
                               (kind + '.png'))
            assert added.size == (47, 33) and added.mode == 'RGB'


def test_train_command_at_batch_size_1(work, tmp_path, capsys):
    root, config, _, _ = work
    run(train.main, ['--config', config, '--device', 'cpu', '--iters', '2',
                     '--batch_size', '1', '--save_dir', str(tmp_path / 'ok')])
    with pytest.raises(SystemExit) as exit_info:
        run(train.main, ['--config', config, '--device', 'cpu', '--iters',
                         '1', '--batch_size', '1', '--save_dir',
                         str(tmp_path / 'small'), '--opts',
                         'train_dataset.transforms=[{"type": "Resize", '
                         '"target_size": [8, 8]}, {"type": "Normalize"}]'])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert 'Traceback' not in err
    assert 'gets one value per channel while training' in err, err
