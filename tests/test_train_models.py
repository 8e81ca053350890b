"""Each model learns on the generated data with a light backbone.

Built from a PaddleSeg config through ``SegBuilder`` (model, loss, optimizer,
data set), trained for a few iterations on a fixed batch: the loss must fall
clearly, and every trainable parameter that feeds the logits must move.
"""
import numpy as np
import paddle
import pytest
import yaml
from paddleseg.cvlibs import Config, SegBuilder

import paddleseg_ctx  # noqa: F401  (registers the models)
from paddleseg_ctx.datasets.synthetic import make_synthetic_dataset

ITERS = 12
# GINet as PaddleSeg trains it: ``head.inp`` is frozen at zero, so the K class
# rows are identical, BatchNorm1D's batch output is 0 and the class-node
# branch passes zeros; ``gamma_vis`` (zero-initialised) then gets no gradient
# and nothing upstream of it does either (MODELS_SPEC 3.4). Only its weights
# move (by weight decay); its zero-initialised biases stay put.
STILL = {
    'CtxGINet': ('head.fc1.', 'head.fc2.', 'head.gloru.graph.word_gcn.',
                 'head.gloru.graph.transfer.', 'head.gloru.graph.gamma_'),
}
MODELS = {
    'CtxGINet': {'align_corners': True, 'jpu_width': 64},
    'CtxISANet': {'isa_channels': 32, 'down_factor': [4, 4]},
    'CtxGCNet': {'gc_channels': 64},
}


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp('synthetic')
    return make_synthetic_dataset(str(root), num_train=4, num_val=2,
                                  size=(72, 56), num_classes=5, seed=3)


def build(tmp_path, data, model_type, extra):
    dataset = {
        'type': 'Dataset', 'dataset_root': data['dataset_root'],
        'train_path': data['train_path'], 'num_classes': 5, 'mode': 'train',
        'transforms': [{'type': 'RandomPaddingCrop', 'crop_size': [64, 48]},
                       {'type': 'Normalize'}],
    }
    config = {
        'batch_size': 4, 'iters': ITERS, 'train_dataset': dataset,
        'model': dict({'type': model_type,
                       'backbone': {'type': 'ResNet18_vd',
                                    'output_stride': 8}}, **extra),
        'optimizer': {'type': 'SGD', 'momentum': 0.9, 'weight_decay': 4e-5},
        'lr_scheduler': {'type': 'PolynomialDecay', 'learning_rate': 0.01,
                         'end_lr': 0, 'power': 0.9},
        'loss': {'types': [{'type': 'CrossEntropyLoss'}], 'coef': [1, 0.4]},
    }
    path = tmp_path / 'config.yml'
    path.write_text(yaml.safe_dump(config))
    return SegBuilder(Config(str(path)))


@pytest.mark.parametrize('model_type', sorted(MODELS))
def test_model_learns_on_generated_data(tmp_path, data, model_type):
    paddle.seed(0)
    builder = build(tmp_path, data, model_type, MODELS[model_type])
    model, optimizer, loss_cfg = builder.model, builder.optimizer, builder.loss
    samples = [builder.train_dataset[i] for i in range(4)]
    images = paddle.to_tensor(np.stack([s['img'] for s in samples]))
    labels = paddle.to_tensor(
        np.stack([s['label'] for s in samples]).astype('int64'))
    before = {p.name: p.numpy().copy() for p in model.parameters()
              if not p.stop_gradient}

    model.train()
    losses = []
    for _ in range(ITERS):
        logits = model(images)
        assert len(logits) == len(loss_cfg['coef']) == 2
        loss = sum(coef * fn(logit, labels) for logit, fn, coef in zip(
            logits, loss_cfg['types'], loss_cfg['coef']))
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()
        builder.optimizer._learning_rate.step()
        losses.append(float(loss))

    assert np.isfinite(losses).all(), losses
    assert np.mean(losses[-3:]) < 0.7 * np.mean(losses[:3]), losses
    names = {p.name: n for n, p in model.named_parameters()}
    still = sorted(names[k] for k, p in ((p.name, p) for p in model.parameters())
                   if k in before and np.array_equal(before[k], p.numpy()))
    assert all(n.startswith(STILL.get(model_type, ())) for n in still), still
