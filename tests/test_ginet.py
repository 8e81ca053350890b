"""CtxGINet vs PaddleSeg's own GINet; checkpoint load, export, training."""
import numpy as np
import paddle
import paddle.nn as nn
import pytest
from paddleseg.models import GINet
from paddleseg.models.backbones import ResNet18_vd, ResNet34_vd, ResNet50_vd

from model_checks import (PARITY_INPUTS, assert_eval_parity,
                          assert_export_matches,
                          assert_logits_close, randomize, run_eval)
from paddleseg_ctx.models import CtxGINet
from paddleseg_ctx.models.ginet import GIHead
from paddleseg_ctx.weights import check_state_dict

K = 5


def _paddleseg_pair(output_stride, jpu):
    """PaddleSeg's GINet with random weights and CtxGINet holding the same."""
    paddle.seed(0)
    reference = GINet(K, ResNet50_vd(output_stride=output_stride), jpu=jpu)
    state = randomize(reference)
    assert np.abs(state['head.inp']).min() > 0  # class branch must matter
    ours = CtxGINet(K, ResNet50_vd(output_stride=output_stride), jpu=jpu)
    check_state_dict(ours, state, source='PaddleSeg GINet')
    ours.set_state_dict(state)
    return reference, ours, state


@pytest.fixture(scope='module')
def published_pair():
    """The published configuration: ResNet50_vd, output stride 8, JPU."""
    return _paddleseg_pair(8, True)


def test_eval_parity_published(published_pair):
    reference, ours, _ = published_pair
    assert_eval_parity(reference, ours, PARITY_INPUTS)


def test_eval_parity_without_jpu():
    reference, ours, _ = _paddleseg_pair(16, False)
    assert_eval_parity(reference, ours, PARITY_INPUTS[1:])


def test_train_parity_uses_batch_statistics(published_pair):
    """Train mode (dropout off): BatchNorm1D normalises the K class rows with
    their batch statistics, as in PaddleSeg."""
    reference, ours, state = published_pair
    ours.eval()
    eval_nodes = ours.head.class_nodes().numpy()
    x = paddle.to_tensor(
        np.random.RandomState(2).uniform(-1, 1, (2, 3, 64, 64)), 'float32')
    outs = []
    for model in (reference, ours):
        model.train()
        for layer in model.sublayers():
            if isinstance(layer, nn.Dropout):
                layer.p = 0.0  # later tests run in eval mode only
        outs.append([o.numpy() for o in model(x)])
    train_nodes = ours.head.class_nodes().numpy()
    for model in (reference, ours):  # undo the running-statistics updates
        model.set_state_dict(state)
    for what, e, a in zip(('main', 'aux'), *outs):
        assert_logits_close(a, e, what='train ' + what)
    # The test can fail: running and batch statistics give other class nodes.
    assert not np.allclose(train_nodes, eval_nodes, atol=1e-3)


def test_strict_load_of_paddleseg_checkpoint(published_pair, tmp_path):
    reference, _, _ = published_pair
    path = str(tmp_path / 'model.pdparams')
    paddle.save(reference.state_dict(), path)
    ours = CtxGINet(K, ResNet50_vd(output_stride=8), pretrained=path)
    assert_eval_parity(reference, ours, PARITY_INPUTS[:1])


def test_export_dynamic_shapes(tmp_path):
    model = CtxGINet(K, ResNet18_vd())
    randomize(model)
    assert_export_matches(model, tmp_path, PARITY_INPUTS)


def test_train_step_keeps_inp_frozen():
    paddle.seed(0)
    model = CtxGINet(K, ResNet18_vd())
    randomize(model)
    model.train()
    x = paddle.uniform([2, 3, 64, 64], min=-1, max=1)
    label = paddle.randint(0, K, [2, 64, 64])
    main, aux = model(x)
    loss = (nn.functional.cross_entropy(main, label, axis=1) +
            0.4 * nn.functional.cross_entropy(aux, label, axis=1))
    assert np.isfinite(float(loss))
    loss.backward()

    assert model.head.inp.stop_gradient and model.head.inp.grad is None
    no_grad = {
        name
        for name, p in model.named_parameters()
        if not p.stop_gradient and p.grad is None
    }
    # value_conv_vis and gamma_word only feed the class-node output, which
    # PaddleSeg computes but gives to no loss.
    assert no_grad == {
        'head.gloru.graph.gamma_word',
        'head.gloru.graph.transfer.value_conv_vis.weight',
        'head.gloru.graph.transfer.value_conv_vis.bias'
    }

    inp = model.head.inp.numpy().copy()
    fc1 = model.head.fc1[0].weight.numpy().copy()
    optimizer = paddle.optimizer.Momentum(
        0.01,
        parameters=model.parameters(),
        weight_decay=paddle.regularizer.L2Decay(4e-5))
    optimizer.step()
    np.testing.assert_array_equal(model.head.inp.numpy(), inp)
    assert not np.array_equal(model.head.fc1[0].weight.numpy(), fc1)


@pytest.mark.parametrize('backbone', [ResNet18_vd, ResNet34_vd])
def test_builds_on_small_backbones(backbone):
    model = CtxGINet(K, backbone())
    _, outs = run_eval(model, (1, 3, 97, 129))
    assert [o.shape for o in outs] == [(1, K, 97, 129)] * 2
    assert model.head.conv5._conv.weight.shape == [512, 2048, 3, 3]
    assert model.auxlayer.conv_bn_relu._conv.weight.shape == [
        64, backbone().feat_channels[2], 3, 3
    ]


def _numpy_class_nodes(state, prefix, eps=1e-5):
    """fc2(fc1(inp)) in eval mode, in numpy, as [1, 256, K]."""
    x = state[prefix + 'inp']
    for fc in ('fc1', 'fc2'):
        p = prefix + fc + '.'
        x = x @ state[p + '0.weight'] + state[p + '0.bias']
        x = ((x - state[p + '1._mean']) /
             np.sqrt(state[p + '1._variance'] + eps) * state[p + '1.weight'] +
             state[p + '1.bias'])
        x = np.maximum(x, 0)
    return x.T[None]


def test_class_nodes_follow_weights_loaded_after_eval():
    """The class nodes depend only on parameters; they are recomputed on
    every forward (costs under a millisecond), so weights loaded or trained
    after an eval forward are always the ones used."""
    head = GIHead(16, K)
    head.eval()
    with paddle.no_grad():
        first = head.class_nodes().numpy()
    for seed in (1, 2):
        state = randomize(head, seed)
        head.eval()
        with paddle.no_grad():
            nodes = head.class_nodes().numpy()
        assert_logits_close(
            nodes, _numpy_class_nodes(state, ''),
            what='class nodes after loading seed {}'.format(seed))
        assert not np.allclose(nodes, first, atol=1e-3)
        first = nodes
    # A training step in between: eval uses the updated fc weights.
    head.train()
    x = paddle.uniform([2, 16, 9, 11], min=-1, max=1)
    head(x).mean().backward()
    paddle.optimizer.SGD(1.0, parameters=head.parameters()).step()
    head.eval()
    state = {k: v.numpy() for k, v in head.state_dict().items()}
    with paddle.no_grad():
        nodes = head.class_nodes().numpy()
    assert_logits_close(nodes, _numpy_class_nodes(state, ''),
                        what='class nodes after a training step')
    assert not np.allclose(nodes, first, atol=1e-4)
