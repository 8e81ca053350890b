"""Each model learns on the generated data with a light backbone, and the
configs without a published number (ISNet under PaddleSeg's recipes) train
through PaddleSeg's own loop.

Built from a PaddleSeg config through ``SegBuilder`` (model, loss, optimizer,
data set), trained for a few iterations on a fixed batch: the loss must fall
clearly, and every trainable parameter that feeds the logits must move.
"""
import os
import re

import numpy as np
import paddle
import pytest
import yaml
from paddleseg.cvlibs import Config, SegBuilder
from paddleseg.cvlibs.config import parse_from_yaml

import paddleseg_ctx  # noqa: F401  (registers the models)
from dataset_layouts import LAYOUTS
from paddleseg_ctx.datasets.synthetic import make_synthetic_dataset
from paddleseg_ctx.testing.families import FAMILIES
from paddleseg_ctx.zoo import REPO_ROOT, is_published, load_zoo

ITERS = 12
# GINet as PaddleSeg trains it: ``head.inp`` is frozen at zero, so the K class
# rows are identical, BatchNorm1D's batch output is 0 and the class-node
# branch passes zeros; ``gamma_vis`` (zero-initialised) then gets no gradient
# and nothing upstream of it does either
# (docs/reference/models.md#ginet-class-nodes). Only its weights
# move (by weight decay); its zero-initialised biases stay put.
STILL = {
    'CtxGINet': ('head.fc1.', 'head.fc2.', 'head.gloru.graph.word_gcn.',
                 'head.gloru.graph.transfer.', 'head.gloru.graph.gamma_'),
}
# Model type -> its options here (the family table's ``learns`` column).
MODELS = {f.type: f.learns for f in FAMILIES.values() if f.learns}
# Loss weights of each model's training outputs: [main, aux], and ISNet's
# [stage2, stage1, aux] (sssegmentation's 1, 0.4, 0.4).
COEF = {'CtxISNet': [1, 0.4, 0.4]}


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
        'loss': {'types': [{'type': 'CrossEntropyLoss'}],
                 'coef': COEF.get(model_type, [1, 0.4])},
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
        assert len(logits) == len(loss_cfg['coef']) == len(
            COEF.get(model_type, [1, 0.4]))
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


# ISNet configs under PaddleSeg's recipes (no published number): each recipe
# trains three iterations with `python -m paddleseg_ctx.train` in this
# process, on a generated copy of its dataset's layout.  Light overrides
# only: ResNet18_vd without ImageNet weights instead of R50/R101 (--opts; the
# R101 configs then equal the R50 ones, whose recipes test_configs.py
# compares, so the R50 ones run), crops divided by 16 (a derived config whose
# `_base_` is the real one).
UNPUBLISHED = [e for e in load_zoo(include_unpublished=True)
               if not is_published(e) and e['backbone'] == 'ResNet50_vd']
SHRINK = 16


def _derived_config(tmp_path, entry, root):
    config = os.path.join(REPO_ROOT, entry['config'])
    train = parse_from_yaml(config)['train_dataset']
    transforms = [
        dict(t, crop_size=[v // SHRINK for v in t['crop_size']])
        if 'crop_size' in t else t for t in train['transforms']
    ]
    path = tmp_path / 'config.yml'
    path.write_text(yaml.safe_dump({
        '_base_': config,
        'train_dataset': {'dataset_root': root, 'transforms': transforms},
    }))
    return str(path)


@pytest.mark.parametrize('entry', UNPUBLISHED,
                         ids=[os.path.basename(e['config'])
                              for e in UNPUBLISHED])
def test_unpublished_config_trains_through_paddleseg(tmp_path, entry, capsys):
    cli = pytest.importorskip('paddleseg_ctx.cli.train')
    dataset_type = parse_from_yaml(os.path.join(
        REPO_ROOT, entry['config']))['train_dataset']['type']
    root = LAYOUTS[dataset_type](str(tmp_path / 'data'),
                                 [(37, 61), (45, 29), (33, 40)])
    save_dir = tmp_path / 'output'
    cli.main([
        '--config', _derived_config(tmp_path, entry, root),
        '--opts', 'model.backbone.type=ResNet18_vd',
        'model.backbone.pretrained=None', '--iters', '3', '--batch_size',
        '2', '--save_interval', '3', '--log_iters', '1', '--num_workers',
        '0', '--seed', '0', '--save_dir', str(save_dir), '--device', 'cpu',
        '--save_rank_weights'
    ])
    out = capsys.readouterr().out
    losses = [float(x) for x in re.findall(r'\[TRAIN\].* loss: ([0-9.]+)',
                                           out)]
    assert len(losses) == 3 and np.isfinite(losses).all(), out[-2000:]
    assert (save_dir / 'iter_3' / 'model.pdparams').is_file()
    start = paddle.load(str(save_dir / 'rank_weights' /
                            'rank0_start.pdparams'))
    end = paddle.load(str(save_dir / 'rank_weights' / 'rank0_end.pdparams'))
    # ISNet's three heads (stage 2, stage 1, aux) all got gradients.
    for head in ('head.decoder_stage2.', 'head.decoder_stage1.', 'head.aux.'):
        weights = [k for k in start if k.startswith(head) and
                   k.endswith('weight')]
        assert weights and all(
            not np.array_equal(start[k].numpy(), end[k].numpy())
            for k in weights), head
