"""Training-step parity with the original toolboxes: the first two optimizer
steps of our training equal mmsegmentation 1.2.2's (GCNet rows) and
sssegmentation's (ISNet rows).

Both sides start from the same weights (the reference's random weights,
converted by our converter) and train on the same already-augmented batch
(2 images of 40x40, exactly 1/8 of the label pixels ignored), dropout off on both sides.

* Ours goes through our config (PaddleSeg ``Config``/``SegBuilder``: model,
  ``loss`` types and coefficients, ``optimizer``, ``lr_scheduler``) and one
  iteration as ``paddleseg.core.train`` runs it: its ``loss_computation``,
  ``sum``, ``backward``, ``optimizer.step()``, ``lr_scheduler.step()``,
  ``clear_gradients()``.
* mmsegmentation: its model's own ``train_step`` (decode + auxiliary losses,
  ``parse_losses``, ``OptimWrapper.update_params``; a plain data
  preprocessor, since the batch is already normalised) with the
  ``OptimWrapper`` its published config's ``optim_wrapper`` builds (SGD,
  momentum 0.9, weight decay 5e-4).  The learning rate is set on that
  optimizer before each step to the closed form
  ``(0.01 - 1e-4) * (1 - it / iters) ** 0.9 + 1e-4`` of mmcv 0.x, which trained
  the published checkpoints; mmengine 1.x's chained ``PolyLR`` sits about half
  an iteration off it, and our configs keep the closed form.
* sssegmentation: the loop body of its ``train.py`` (``updatelr``,
  ``zero_grad``, the segmentor's TRAIN forward and ``calculatelosses``,
  ``backward``, ``scheduler.step``) with the optimizer and ``PolyScheduler``
  its ISNet config builds.  Its data sets mark ignored pixels -100 where ours
  use 255.

The schedule starts in its middle (iteration ``iters // 2``), where neither
the base nor the final learning rate hides a wrong formula.

Compared in float64 on both sides, two steps (the second is where momentum
shows): with random weights in train mode the gradients are ill-conditioned,
and the reference's own float32 and float64 runs differ by 3-60% of the weight
update after two or three steps, so float32 could not tell a bug from noise.
Crops are 40x40, a multiple of 8 like the real ones: Paddle's bilinear resize
computes its source coordinates in float32 even on float64 tensors, exact
only where the scale is a power of two (5 -> 40 is; at 65x65 the logits
already differ by 1e-6 and the updates by 0.2%).  Tolerances (the largest
differences measured over the four rows in brackets):

* each loss term within 1e-8 relative (3e-10);
* each parameter's update over the two steps (``w2 - w0``) within 1e-6 of
  that parameter's largest reference update (6e-8: float64 noise amplified by
  train-mode BatchNorm on tiny maps);
* BatchNorm running statistics within 1e-6 of the largest reference value
  (means 3e-7, variances 8e-8): Paddle's kernel applies the momentum 0.9 as a
  float32 (0.9 - 2.4e-8), an error of 2.4e-8 x (batch - running) per step.
  Running variances: Paddle updates them with the biased batch variance and
  PyTorch with the unbiased one, a factor N / (N - 1) for N values per
  channel (large on these tiny maps, 1e-4 of the value at real crop sizes).
  The test multiplies our increment over the two steps (``var2 - 0.81
  var0``) by that factor, N recorded from each layer's input, and compares
  it with the reference's.
"""
import contextlib
import os

import numpy as np
import paddle
import pytest
from paddleseg.core.train import loss_computation
from paddleseg.cvlibs import Config, SegBuilder

import paddleseg_ctx  # noqa: F401  (registers the models)
from paddleseg_ctx.testing.references import (SSSEG_ISNET_CASES as SSSEG_CASES,
                                              mmseg_gcnet, ssseg_isnet)
from paddleseg_ctx.weights import convert
from paddleseg_ctx.zoo import REPO_ROOT
from reference_imports import import_mmseg, import_ssseg, import_torch

BATCH, SIZE = 2, 40
BN_MOMENTUM = 0.1  # both frameworks' default: new = 0.9 old + 0.1 batch
LOSS_RTOL = 1e-8
UPDATE_RTOL = 1e-6
STATS_RTOL = 1e-6

GCNET = {
    'R50-Cityscapes': dict(
        ours='configs/gcnet/gcnet_resnet50v1c_os8_cityscapes_1024x512_40k.yml',
        mmseg='gcnet_r50-d8_4xb2-40k_cityscapes-512x1024.py',
        num_classes=19),
    'R50-ADE20K': dict(
        ours='configs/gcnet/gcnet_resnet50v1c_os8_ade20k_512x512_80k.yml',
        mmseg='gcnet_r50-d8_4xb4-80k_ade20k-512x512.py',
        num_classes=150),
}
# sssegmentation's ssseg/configs/isnet/isnet_resnet50os8_{ade20k,lip}.py:
# epochs x iterations per epoch (from the data set size and total batch), lr,
# weight decay (min_lr is left to its default, 1% of lr).
ISNET = {
    'R50-ADE20K': dict(
        ours='configs/isnet/isnet_resnet50v1c_os8_ade20k_512x512_164190.yml',
        case=SSSEG_CASES['R50-ADE20K'], num_classes=150, max_epochs=130,
        iters_per_epoch=1263),
    'R50-LIP': dict(
        ours='configs/isnet/isnet_resnet50v1c_os8_lip_473x473_142800.yml',
        case=SSSEG_CASES['R50-LIP'], num_classes=20, max_epochs=150,
        iters_per_epoch=952),
}
# ssseg/configs/_base_/segmentors/isnet.py
SSSEG_ISNET_LOSSES = {
    'loss_aux': {'type': 'CrossEntropyLoss', 'scale_factor': 0.4,
                 'ignore_index': -100, 'reduction': 'mean'},
    'loss_cls_stage1': {'type': 'CrossEntropyLoss', 'scale_factor': 0.4,
                        'ignore_index': -100, 'reduction': 'mean'},
    'loss_cls_stage2': {'type': 'CrossEntropyLoss', 'scale_factor': 1.0,
                        'ignore_index': -100, 'reduction': 'mean'},
}
SSSEG_ISNET_OPTIMIZER = {'type': 'SGD', 'lr': 0.01, 'momentum': 0.9,
                         'weight_decay': 5e-4, 'params_rules': {}}


def make_batch(num_classes, seed=0):
    """Normalised images and labels: a few classes in blocks (so that every
    class term is smooth) and exactly 1/8 of each image ignored (255).

    Exactly 1/8: PaddleSeg's CrossEntropyLoss divides by ``mean(mask) +
    1e-8`` computed in float32, which is exact for this fraction; another
    fraction scales the loss by ~1e-8, and the ill-conditioned second step
    amplifies that to 1e-3 of the update."""
    rng = np.random.RandomState(seed)
    images = rng.normal(0, 1, (BATCH, 3, SIZE, SIZE))
    blocks = rng.randint(0, min(num_classes, 6), (BATCH, 5, 5))
    labels = np.kron(blocks, np.ones((8, 8), "int64")).astype("int64")
    for label in labels.reshape(BATCH, -1):
        label[rng.permutation(label.size)[:label.size // 8]] = 255
    return images, labels


@contextlib.contextmanager
def paddle_float64():
    previous = paddle.get_default_dtype()
    paddle.set_default_dtype('float64')
    try:
        yield
    finally:
        paddle.set_default_dtype(previous)


def convert_reference(torch, reference, path, container):
    """Our converter on the reference's float32 weights: (Paddle state dict,
    [(torch key, Paddle name)])."""
    torch.save({container: reference.state_dict()}, path)
    conversion = convert(path)
    return conversion.state, [(k, n) for k, n in conversion.pairs if n]


def ours_two_steps(config, state, images, labels, iters):
    """Two iterations of ``paddleseg.core.train`` on the model, loss,
    optimizer and schedule of our ``config``, from the middle of the
    schedule (``iters``: the reference's schedule length, which the config
    must have).  Returns (per-step loss terms, initial state, final
    state)."""
    with paddle_float64():
        cfg = Config(os.path.join(REPO_ROOT, config),
                     opts=['model.backbone.pretrained=None'])
        assert cfg.iters == iters, config
        builder = SegBuilder(cfg)
        model = builder.model
        model.set_state_dict({k: v.astype('float64')
                              for k, v in state.items()})
        model.train()
        for layer in model.sublayers():
            if isinstance(layer, (paddle.nn.Dropout, paddle.nn.Dropout2D)):
                layer.eval()
        optimizer, schedule = builder.optimizer, builder.lr_scheduler
        assert optimizer._learning_rate is schedule
        schedule.step(cfg.iters // 2)
        start = {k: v.numpy().copy() for k, v in model.state_dict().items()}
        images = paddle.to_tensor(images)
        labels = paddle.to_tensor(labels)
        losses = []
        for _ in range(2):
            logits_list = model(images)
            loss_list = loss_computation(logits_list=logits_list,
                                         labels=labels, edges=None,
                                         losses=builder.loss)
            loss = sum(loss_list)
            loss.backward()
            optimizer.step()
            schedule.step()
            model.clear_gradients()
            losses.append([float(t) for t in loss_list])
        end = {k: v.numpy() for k, v in model.state_dict().items()}
    return losses, start, end


def train_mode_without_dropout(torch, model):
    model.double().train()
    for module in model.modules():
        if isinstance(module, (torch.nn.Dropout, torch.nn.Dropout2d)):
            module.eval()


def record_batch_norm_sizes(torch, model):
    """Values per channel each BatchNorm layer normalises, by name."""
    sizes = {}

    def hook(name, module, inputs, output):
        sizes[name] = inputs[0].numel() // inputs[0].shape[1]

    for name, module in model.named_modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.register_forward_hook(
                lambda m, i, o, name=name: hook(name, m, i, o))
    return sizes


def assert_same_training(ours, ref_losses, ref_start, ref_end, pairs,
                         bn_sizes):
    our_losses, our_start, our_end = ours
    for step, (actual, expected) in enumerate(zip(our_losses, ref_losses)):
        np.testing.assert_allclose(
            actual, expected, rtol=LOSS_RTOL,
            err_msg='loss terms at step {}'.format(step + 1))
    assert sorted(n for _, n in pairs) == sorted(our_end)
    problems = []
    for key, name in pairs:
        shape = our_end[name].shape
        w0 = np.reshape(ref_start[key], shape)
        np.testing.assert_array_equal(our_start[name], w0)  # same start
        ref, act = np.reshape(ref_end[key], shape), our_end[name]
        if key.endswith('running_mean'):
            err = np.abs(act - ref).max()
            bound = STATS_RTOL * np.abs(ref).max()
        elif key.endswith('running_var'):
            n = bn_sizes[key[:-len('.running_var')]]
            carried = (1 - BN_MOMENTUM) ** 2 * w0
            err = np.abs((act - carried) * n / (n - 1) - (ref - carried)).max()
            bound = STATS_RTOL * np.abs(ref).max()
        else:
            update = ref - w0
            err = np.abs((act - w0) - update).max()
            bound = UPDATE_RTOL * np.abs(update).max()
            assert np.abs(update).max() > 0, key
        if not err <= bound:
            problems.append('{} ({}): {:.3g} > {:.3g}'.format(
                name, key, err, bound))
    assert not problems, '{} of {} tensors differ:\n'.format(
        len(problems), len(pairs)) + '\n'.join(problems[:20])


def closed_form_poly(it, iters, base=0.01, end=1e-4, power=0.9):
    """mmcv 0.x's poly learning rate (what our configs and sssegmentation
    use)."""
    return (base - end) * (1 - it / iters) ** power + end


@pytest.mark.parametrize('name', sorted(GCNET))
def test_gcnet_training_steps_match_mmsegmentation(tmp_path, name):
    mmseg = import_mmseg()
    torch = import_torch()
    from mmengine.config import Config as MMConfig
    from mmengine.optim import build_optim_wrapper
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    row = GCNET[name]
    published = MMConfig.fromfile(os.path.join(
        os.path.dirname(mmseg.__file__), '.mim', 'configs', 'gcnet',
        row['mmseg']))
    reference = mmseg_gcnet(row['mmseg'], num_classes=row['num_classes'])
    state, pairs = convert_reference(torch, reference,
                                     str(tmp_path / 'gcnet.pth'),
                                     'state_dict')
    iters = published.train_cfg.max_iters
    images, labels = make_batch(row['num_classes'])
    ours = ours_two_steps(row['ours'], state, images, labels, iters)

    train_mode_without_dropout(torch, reference)
    bn_sizes = record_batch_norm_sizes(torch, reference)
    optim_wrapper = build_optim_wrapper(reference, published.optim_wrapper)
    assert [s.type for s in published.param_scheduler] == ['PolyLR']
    start_iter = iters // 2
    ref_start = {k: v.numpy().copy()
                 for k, v in reference.state_dict().items()}
    ref_losses = []
    for step in range(2):
        for group in optim_wrapper.param_groups:
            group['lr'] = closed_form_poly(start_iter + step, iters)
        samples = [SegDataSample(gt_sem_seg=PixelData(
            data=torch.from_numpy(label[None]))) for label in labels]
        log_vars = reference.train_step(
            {'inputs': torch.from_numpy(images), 'data_samples': samples},
            optim_wrapper)
        ref_losses.append([log_vars['decode.loss_ce'].item(),
                           log_vars['aux.loss_ce'].item()])
    ref_end = {k: v.numpy() for k, v in reference.state_dict().items()}
    assert_same_training(ours, ref_losses, ref_start, ref_end, pairs,
                         bn_sizes)


@pytest.mark.parametrize('name', sorted(ISNET))
def test_isnet_training_steps_match_sssegmentation(tmp_path, name):
    import_ssseg()
    torch = import_torch()
    from ssseg.modules import (BuildOptimizer, BuildScheduler,
                               SSSegInputStructure)
    row = ISNET[name]
    reference = ssseg_isnet(row['case'], num_classes=row['num_classes'])
    with torch.no_grad():
        # Undo the helper's sharpening of the stage-1 classifier (float32
        # argmax safety): its logits then span more than 64, where Paddle's
        # softmax clips (x - max >= -64, so no pixel loses more than 64)
        # and PyTorch's does not.  Trained logits are far from that.
        reference.decoder_stage1[4].weight.div_(20.0)
    state, pairs = convert_reference(torch, reference,
                                     str(tmp_path / 'isnet.pth'), 'model')
    images, labels = make_batch(row['num_classes'])
    ours = ours_two_steps(row['ours'], state, images, labels,
                          row['max_epochs'] * row['iters_per_epoch'])

    reference.cfg['losses'] = SSSEG_ISNET_LOSSES
    train_mode_without_dropout(torch, reference)
    bn_sizes = record_batch_norm_sizes(torch, reference)
    optimizer = BuildOptimizer(reference, SSSEG_ISNET_OPTIMIZER)
    scheduler = BuildScheduler(optimizer=optimizer, scheduler_cfg={
        'type': 'PolyScheduler', 'max_epochs': row['max_epochs'],
        'power': 0.9, 'optimizer': SSSEG_ISNET_OPTIMIZER,
        'lr': SSSEG_ISNET_OPTIMIZER['lr'],
        'iters_per_epoch': row['iters_per_epoch'], 'params_rules': {}})
    scheduler.cur_iter = scheduler.max_iters // 2
    ref_start = {k: v.numpy().copy()
                 for k, v in reference.state_dict().items()}
    targets = torch.from_numpy(np.where(labels == 255, -100, labels))
    ref_losses = []
    for _ in range(2):
        scheduler.updatelr()
        optimizer.zero_grad()
        loss, log = reference(SSSegInputStructure(
            mode='TRAIN', images=torch.from_numpy(images),
            seg_targets=targets)).getsetvariables().values()
        loss.backward()
        scheduler.step()
        ref_losses.append([log['loss_cls_stage2'], log['loss_cls_stage1'],
                           log['loss_aux']])
    ref_end = {k: v.numpy() for k, v in reference.state_dict().items()}
    assert_same_training(ours, ref_losses, ref_start, ref_end, pairs,
                         bn_sizes)
