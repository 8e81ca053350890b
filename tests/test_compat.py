"""paddleseg_ctx.compat: each fix is needed (reverting it brings back PaddleSeg's
real error), correct (checked against numpy), and PaddleSeg's train/evaluate
loop runs end to end with the fixes."""
import contextlib
import importlib
import os

import cv2
import numpy as np
import paddle
import paddleseg
import paddleseg.transforms as T
import pytest
import yaml
from paddleseg.core import evaluate, train
from paddleseg.deploy.infer import DeployConfig
from paddleseg.models.losses import CrossEntropyLoss, OhemCrossEntropyLoss
from paddleseg.utils import metrics

from paddleseg_ctx import compat
from paddleseg_ctx.deploy import InferenceRunner

NUM_CLASSES = 3
IGNORE = 255


@contextlib.contextmanager
def without(name):
    """Run the block with fix ``name`` reverted (PaddleSeg's original code)."""
    fix = compat.FIXES[name]
    assert fix.active, '{} is not applied: {}'.format(name, compat.applied())
    fix.revert()
    try:
        yield
    finally:
        fix.apply()


def random_batch(seed=0, shape=(2, NUM_CLASSES, 9, 11)):
    """Logits and int64 labels with ~15 % ignored pixels."""
    rng = np.random.RandomState(seed)
    logit = rng.normal(0, 2, shape).astype('float32')
    label = rng.randint(0, shape[1], (shape[0], ) + shape[2:]).astype('int64')
    label[rng.uniform(size=label.shape) < 0.15] = IGNORE
    return logit, label


def np_log_softmax(logit):
    shifted = logit - logit.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def np_nll(logit, label):
    """Per-pixel -log p(label), 0 on ignored pixels; shape of ``label``."""
    valid = label != IGNORE
    picked = np.take_along_axis(
        np_log_softmax(logit), np.where(valid, label, 0)[:, None], axis=1)[:, 0]
    return np.where(valid, -picked, 0.0)


def np_cross_entropy(logit, label, weight, avg_non_ignore, top_k):
    """PaddleSeg's CrossEntropyLoss, re-derived in numpy."""
    valid = label != IGNORE
    mask = valid if avg_non_ignore else np.ones_like(valid)
    class_weight = np.ones(NUM_CLASSES) if weight is None else np.array(weight)
    # Weighted per-pixel loss; the normaliser weighs ignored pixels like class 0.
    loss = np_nll(logit, label) * class_weight[np.where(valid, label, 0)] * mask
    coef = (np.ones(label.shape) if weight is None else
            class_weight[np.where(mask, label, 0) * mask])
    if top_k == 1.0:
        return loss.mean() / ((mask * coef).mean() + 1e-8)
    order = np.argsort(-loss.ravel(), kind='stable')[:int(top_k * loss.size)]
    return loss.ravel()[order].mean() / (coef.ravel()[order].mean() + 1e-8)


def test_every_fix_is_applied_on_import():
    """On the pinned Paddle 3.3.1 + PaddleSeg 2.8.0 every probe says 'needed'."""
    assert compat.applied() == list(compat.FIXES)
    assert all(fix.why for fix in compat.FIXES.values())


@pytest.mark.parametrize('name, upstream_fixed', [
    ('ce_loss_int_float', (CrossEntropyLoss, '_post_process_loss',
                           compat._ce_post_process_loss)),
    ('ohem_loss_int_float', (OhemCrossEntropyLoss, 'forward',
                             compat._ohem_forward)),
    ('metrics_0d_concat', (metrics, 'calculate_area', compat._calculate_area)),
])
def test_probe_switches_fix_off_once_paddleseg_is_fixed(name, upstream_fixed,
                                                        monkeypatch):
    fix = compat.FIXES[name]
    with without(name):
        assert fix.needed()  # PaddleSeg 2.8 on Paddle 3 still breaks
        monkeypatch.setattr(*upstream_fixed)  # pretend upstream fixed it
        assert not fix.needed()
        monkeypatch.undo()


# 1. CrossEntropyLoss ---------------------------------------------------------

def test_cross_entropy_fails_without_fix():
    logit, label = map(paddle.to_tensor, random_batch())
    with without('ce_loss_int_float'):
        with pytest.raises(TypeError, match='Type promotion'):
            CrossEntropyLoss()(logit, label)
        with pytest.raises(TypeError, match='Type promotion'):
            CrossEntropyLoss(weight=[1., 2., 3.])(logit, label)


@pytest.mark.parametrize('weight, avg_non_ignore, top_k', [
    (None, True, 1.0),
    ([0.5, 2.0, 1.5], True, 1.0),
    (None, False, 1.0),
    (None, True, 0.3),
    ([0.5, 2.0, 1.5], True, 0.3),
])
def test_cross_entropy_matches_numpy(weight, avg_non_ignore, top_k):
    logit, label = random_batch(seed=1)
    loss = CrossEntropyLoss(weight=weight, avg_non_ignore=avg_non_ignore,
                            top_k_percent_pixels=top_k)(
                                paddle.to_tensor(logit), paddle.to_tensor(label))
    expected = np_cross_entropy(logit, label, weight, avg_non_ignore, top_k)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)


# 2. OhemCrossEntropyLoss ------------------------------------------------------

def np_ohem(logit, label, thresh, min_kept):
    """PaddleSeg's OhemCrossEntropyLoss, re-derived in numpy."""
    valid = label != IGNORE
    if 0 < min_kept < valid.sum():
        prob = np.exp(np_log_softmax(logit))
        true_prob = np.take_along_axis(
            prob, np.where(valid, label, 0)[:, None], axis=1)[:, 0]
        true_prob = np.where(valid, true_prob, true_prob + 1)
        kth = np.sort(true_prob.ravel())[min(true_prob.size, min_kept) - 1]
        valid &= true_prob < max(kth, thresh)
    loss = np_nll(logit, np.where(valid, label, IGNORE))
    return loss.mean() / (valid.mean() + 1e-5)


def test_ohem_fails_without_fix():
    logit, label = map(paddle.to_tensor, random_batch())
    with without('ohem_loss_int_float'):
        with pytest.raises(TypeError, match='Type promotion'):
            OhemCrossEntropyLoss(min_kept=10)(logit, label)


@pytest.mark.parametrize('thresh, min_kept', [
    (0.5, 10),  # threshold = thresh
    (0.2, 150),  # threshold = probability of the min_kept-th hardest pixel
    (0.7, 0),  # no mining
    (0.7, 10 ** 6),  # fewer valid pixels than min_kept: no mining
])
def test_ohem_matches_numpy(thresh, min_kept):
    logit, label = random_batch(seed=2)
    loss = OhemCrossEntropyLoss(thresh=thresh, min_kept=min_kept)(
        paddle.to_tensor(logit), paddle.to_tensor(label))
    np.testing.assert_allclose(
        float(loss), np_ohem(logit, label, thresh, min_kept), rtol=1e-5)


# 3. core/train.py `l[0]` on 0-D losses ------------------------------------------

def test_loss_computation_returns_one_element_losses():
    logit, label = map(paddle.to_tensor, random_batch())
    ce = CrossEntropyLoss()
    loss_computation = importlib.import_module('paddleseg.core.train').loss_computation
    losses = loss_computation(
        [logit, logit * 2], label, None, {'types': [ce, ce], 'coef': [1, 0.4]})
    assert [list(loss.shape) for loss in losses] == [[1], [1]]
    np.testing.assert_allclose(losses[1].item(), 0.4 * ce(logit * 2, label).item(),
                               rtol=1e-6)


# 4. metrics.calculate_area ------------------------------------------------------

def test_calculate_area_fails_without_fix():
    _, label = random_batch()
    label = paddle.to_tensor(label)
    with without('metrics_0d_concat'):
        with pytest.raises(ValueError, match='axis'):
            metrics.calculate_area(label, label, NUM_CLASSES)


def test_calculate_area_matches_numpy():
    logit, label = random_batch(seed=3)
    pred = logit.argmax(1)
    label[label == 2] = IGNORE  # an absent class must count 0
    areas = metrics.calculate_area(paddle.to_tensor(pred[:, None]),
                                   paddle.to_tensor(label[:, None]), NUM_CLASSES)
    valid = label != IGNORE
    classes = np.arange(NUM_CLASSES)[:, None, None, None]
    expected = (((pred == classes) & (label == classes) & valid).sum((1, 2, 3)),
                ((pred == classes) & valid).sum((1, 2, 3)),
                (label == classes).sum((1, 2, 3)))
    for got, want in zip(areas, expected):
        assert got.dtype == paddle.int64 and list(got.shape) == [NUM_CLASSES]
        np.testing.assert_array_equal(got.numpy(), want)
    with pytest.raises(ValueError, match='should be equal'):
        metrics.calculate_area(paddle.to_tensor(pred[:1]),
                               paddle.to_tensor(label), NUM_CLASSES)


# 5. deploy.yaml model file ----------------------------------------------------------

@pytest.fixture(scope='module')
def exported(tmp_path_factory):
    """A tiny conv net saved with PaddleSeg's tools/export.py conventions."""
    save_dir = str(tmp_path_factory.mktemp('export'))
    paddle.seed(0)
    net = paddle.nn.Conv2D(3, NUM_CLASSES, 3, padding=1)
    net.eval()
    spec = paddle.static.InputSpec([None, 3, None, None], 'float32')
    paddle.jit.save(paddle.jit.to_static(net, input_spec=[spec], full_graph=True),
                    os.path.join(save_dir, 'model'))
    deploy = {'Deploy': {'model': 'model.pdmodel', 'params': 'model.pdiparams',
                         'transforms': [{'type': 'Normalize'}]}}
    with open(os.path.join(save_dir, 'deploy.yaml'), 'w') as file:
        yaml.dump(deploy, file)
    return os.path.join(save_dir, 'deploy.yaml'), net


def test_deploy_config_fails_without_fix(exported):
    with without('deploy_model_json'):
        config = DeployConfig(exported[0])
        with pytest.raises(RuntimeError, match='Cannot open file'):
            InferenceRunner(config.model, config.params)


def test_deploy_config_finds_exported_program(exported):
    config = DeployConfig(exported[0])
    runner = InferenceRunner(config.model, config.params)
    x = np.random.RandomState(0).uniform(-1, 1, (1, 3, 20, 24)).astype('float32')
    with paddle.no_grad():
        expected = exported[1](paddle.to_tensor(x)).numpy()
    np.testing.assert_allclose(runner(x), expected, rtol=1e-5, atol=1e-5)


# 3b and end to end: PaddleSeg's own train + evaluate loop ------------------------------

@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    """Four random 64x64 images with labels (some ignored) and a file list."""
    root = tmp_path_factory.mktemp('data')
    rng = np.random.RandomState(0)
    lines = []
    for i in range(4):
        image = rng.randint(0, 256, (64, 64, 3)).astype('uint8')
        label = rng.randint(0, NUM_CLASSES, (64, 64)).astype('uint8')
        label[:5] = IGNORE
        cv2.imwrite(str(root / 'image{}.png'.format(i)), image)
        cv2.imwrite(str(root / 'label{}.png'.format(i)), label)
        lines.append('image{0}.png label{0}.png\n'.format(i))
    (root / 'list.txt').write_text(''.join(lines))
    return str(root)


def make_dataset(data_root, mode):
    return paddleseg.datasets.Dataset(
        mode=mode, dataset_root=data_root, num_classes=NUM_CLASSES,
        transforms=[T.Normalize()], train_path=os.path.join(data_root, 'list.txt'),
        val_path=os.path.join(data_root, 'list.txt'))


def run_training(data_root, save_dir, iters, with_eval):
    paddle.seed(0)
    model = paddleseg.models.BiSeNetV2(num_classes=NUM_CLASSES, lambd=0.25)
    optimizer = paddle.optimizer.Momentum(0.01, parameters=model.parameters())
    losses = {'types': [CrossEntropyLoss()] * 4 + [OhemCrossEntropyLoss(min_kept=100)],
              'coef': [1, 1, 1, 1, 1]}
    train(model, make_dataset(data_root, 'train'),
          make_dataset(data_root, 'val') if with_eval else None,
          optimizer=optimizer, save_dir=str(save_dir), iters=iters, batch_size=2,
          save_interval=iters, log_iters=1, use_vdl=with_eval, losses=losses)
    return model


def test_train_fails_without_fix(data_root, tmp_path):
    with without('train_0d_loss_index'):
        with pytest.raises(IndexError, match='0-dimensional'):
            run_training(data_root, tmp_path, iters=1, with_eval=False)


def np_miou(model, dataset):
    """mIoU from a numpy confusion matrix over the model's argmax."""
    confusion = np.zeros((NUM_CLASSES, NUM_CLASSES), dtype='int64')
    model.eval()
    with paddle.no_grad():
        for sample in dataset:
            pred = model(paddle.to_tensor(sample['img'][None]))[0].argmax(1)
            label = sample['label'].reshape(-1)
            valid = label != IGNORE
            np.add.at(confusion, (label[valid], pred.numpy().reshape(-1)[valid]), 1)
    union = confusion.sum(0) + confusion.sum(1) - np.diag(confusion)
    return np.mean(np.diag(confusion) / np.maximum(union, 1))


def test_train_and_evaluate_end_to_end(data_root, tmp_path):
    model = run_training(data_root, tmp_path, iters=3, with_eval=True)
    assert (tmp_path / 'iter_3' / 'model.pdparams').is_file()
    assert (tmp_path / 'best_model' / 'model.pdparams').is_file()
    assert any(name.startswith('vdlrecords') for name in os.listdir(tmp_path))
    val = make_dataset(data_root, 'val')
    miou, acc = evaluate(model, val, print_detail=False)[:2]
    assert 0 <= acc <= 1
    np.testing.assert_allclose(miou, np_miou(model, val), rtol=1e-6)


# 6. Single-process DataLoader and a sample that raises -------------------------

class RaisingAt(paddle.io.Dataset):
    """Samples 0, 1, ...; reading sample ``bad`` raises LookupError."""

    def __init__(self, bad):
        self.bad = bad

    def __len__(self):
        return 4

    def __getitem__(self, index):
        if index == self.bad:
            raise LookupError('sample {} is broken'.format(index))
        return np.float32(index)


def test_loader_waits_forever_without_fix():
    with without('loader_thread_error'):
        assert compat._loader_thread_hangs()


def test_loader_raises_the_error_of_the_sample():
    batches = []
    with pytest.raises(LookupError, match='sample 2 is broken'):
        for batch in paddle.io.DataLoader(RaisingAt(2), batch_size=1):
            batches.append(float(batch))
    # Batches read ahead of the broken one may be dropped: the run ends.
    assert batches == [0.0, 1.0][:len(batches)]
