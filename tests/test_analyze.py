"""``python -m paddleseg_ctx.analyze``: each command's output against a
computation written here: MACs and parameters of a small GCNet counted by
hand from its layer list, confusion counts and per-image mIoU from class
maps predicted in this process (``cli_utils``) and counted with plain numpy
loops, and the pixels of a worst-image picture."""
import csv
import os

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image
from paddleseg.utils.visualize import get_color_map_list

from cli_utils import (NUM_CLASSES, load_model, logits, make_data,
                       normalized_image, run_cli, save_random_weights,
                       val_samples, write_config)
from paddleseg_ctx.cli.analyze import main
from paddleseg_ctx.datasets.synthetic import CLASSES

NAMES = [name for name, _, _, _ in CLASSES[:NUM_CLASSES]]
IGNORE = 255


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    """The demo data set (one val label with an ignored block), a config of
    PaddleSeg's FCN, random weights, and the class maps they predict."""
    root = tmp_path_factory.mktemp('analyze')
    data = make_data(root / 'data')
    with open(data['val_path']) as f:
        first_label = os.path.join(data['dataset_root'], f.read().split()[1])
    label = np.array(Image.open(first_label))
    label[5:20, 10:30] = IGNORE
    Image.fromarray(label).save(first_label)
    config = write_config(root / 'fcn.yml', data)
    weights = save_random_weights(config, root / 'random.pdparams')
    model = load_model(config, weights)
    samples = val_samples(data)
    preds = [logits(model, normalized_image(image)).argmax(0)
             for image, _ in samples]
    return {'root': root, 'data': data, 'config': config, 'weights': weights,
            'samples': samples, 'preds': preds}


def read_csv(path):
    with open(path, newline='') as f:
        return list(csv.reader(f))


# -- flops ----------------------------------------------------------------

def conv(cin, cout, k, hw, bn=True, bias=False):
    """(MACs, parameters) of a k x k convolution with ``hw`` output
    positions (+ batch norm's weight and bias)."""
    params = cin * cout * k * k + (cout if bias else 0) + (2 * cout if bn else 0)
    return hw * cout * cin * k * k, params


def total(layers):
    return tuple(sum(values) for values in zip(*layers))


def test_flops_of_a_light_gcnet_by_hand(setup):
    """CtxGCNet on ResNet18_vd (output stride 8), gc_channels 32, 4 classes,
    input 64x64: the stem runs at 32x32, stage 1 at 16x16, the rest at 8x8."""
    model = {'type': 'CtxGCNet', 'gc_channels': 32,
             'backbone': {'type': 'ResNet18_vd', 'output_stride': 8}}
    loss = {'types': [{'type': 'CrossEntropyLoss'}], 'coef': [1, 0.4]}
    config = write_config(setup['root'] / 'gcnet.yml', setup['data'],
                          model=model, loss=loss)
    table = main(['flops', '--config', config, '--input_shape', '1', '3',
                  '64', '64'])
    rows = {row['group']: row for row in table}
    assert [row['group'] for row in table] == [
        'backbone', 'context_head', 'aux_head', 'classifier', 'total']

    def stage(cin, cout, hw):  # two BasicBlocks, the first with a 1x1 shortcut
        return [conv(cin, cout, 3, hw), conv(cout, cout, 3, hw),
                conv(cin, cout, 1, hw)] + [conv(cout, cout, 3, hw)] * 2

    backbone = total(
        [conv(3, 32, 3, 32 * 32), conv(32, 32, 3, 32 * 32),
         conv(32, 64, 3, 32 * 32)] + stage(64, 64, 16 * 16) +
        stage(64, 128, 8 * 8) + stage(128, 256, 8 * 8) + stage(256, 512, 8 * 8))
    hw = 8 * 8
    context = total([
        conv(512, 32, 3, hw, bias=True),  # conv_bn_relu1
        conv(32, 1, 1, hw, bn=False, bias=True),  # GC block: attention logits
        (32 * hw, 0),  # context = x @ attention^T: 32 outputs, 64 products each
        conv(32, 8, 1, 1, bn=False, bias=True),  # bottleneck on [N, 32, 1, 1]
        (0, 2 * 8),  # its LayerNorm
        conv(8, 32, 1, 1, bn=False, bias=True),
        conv(32, 32, 3, hw, bias=True),  # conv_bn_relu2
        conv(512 + 32, 32, 3, hw, bias=True),  # conv_bn_relu3 on [C4, x]
    ])
    aux = total([conv(256, 64, 3, hw, bias=True),
                 conv(64, NUM_CLASSES, 1, hw, bn=False, bias=True)])
    classifier = conv(32, NUM_CLASSES, 1, hw, bn=False, bias=True)
    for group, (macs, params) in (('backbone', backbone),
                                  ('context_head', context),
                                  ('aux_head', aux),
                                  ('classifier', classifier)):
        assert (rows[group]['macs'], rows[group]['params']) == \
            (macs, params), group
        assert rows[group]['flops'] == 2 * macs
    assert rows['total']['macs'] == sum(
        v[0] for v in (backbone, context, aux, classifier))

    done = run_cli('analyze', 'flops', '--config', config, '--input_shape',
                   1, 3, 64, 64)
    line = [line for line in done.stdout.splitlines()
            if line.startswith('backbone')][0]
    assert line.split()[1:3] == ['{:.3f}'.format(backbone[1] / 1e6),
                                 '{:.3f}'.format(backbone[0] / 1e9)]
    assert 'FLOPs = 2 x MACs' in done.stdout


# -- confusion ------------------------------------------------------------

def expected_counts(setup):
    counts = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    for (_, label), pred in zip(setup['samples'], setup['preds']):
        for i in range(NUM_CLASSES):
            for j in range(NUM_CLASSES):
                counts[i, j] += np.sum((label == i) & (pred == j))
    return counts


def test_confusion_counts_and_files(setup):
    save_dir = setup['root'] / 'confusion'
    counts = main(['confusion', '--config', setup['config'], '--model_path',
                   setup['weights'], '--save_dir', str(save_dir),
                   '--device', 'cpu'])
    expected = expected_counts(setup)
    labelled = sum(np.sum(label != IGNORE) for _, label in setup['samples'])
    assert expected.sum() == labelled  # every labelled pixel, once
    np.testing.assert_array_equal(counts, expected)

    table = read_csv(save_dir / 'confusion_counts.csv')
    assert table[0][1:] == NAMES and [row[0] for row in table[1:]] == NAMES
    np.testing.assert_array_equal(
        np.array([row[1:] for row in table[1:]], np.int64), expected)
    table = read_csv(save_dir / 'confusion.csv')
    rows = expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(
        np.array([row[1:] for row in table[1:]], float),
        expected / rows, atol=1e-6)
    picture = cv2.imread(str(save_dir / 'confusion.png'))
    assert picture is not None and min(picture.shape[:2]) > 200


def test_confusion_under_a_zoo_protocol(setup, capsys):
    """``--protocol single`` of an mmseg row whose test resize keeps the
    64x48 images as they are: the protocol's own pipeline (uint8 image,
    Normalize, probabilities resized to the same size) predicts the same
    maps."""
    zoo = setup['root'] / 'configs' / 'model_zoo.yml'
    zoo.parent.mkdir(exist_ok=True)
    zoo.write_text(yaml.safe_dump([{
        'config': 'fcn.yml', 'model': 'GCNet', 'source': 'mmseg',
        'backbone': 'ResNet18_vd', 'dataset': 'cityscapes',
        'crop_size': [32, 32], 'iters': 1, 'gpus': None,
        'batch_size_per_gpu': 1, 'weights': 'https://example.com/w.pth',
        'published': {'miou': 50.0, 'miou_flip': None, 'miou_ms_flip': None},
        'eval': {'test_resize': 'fit', 'img_scale': [64, 48], 'mode': 'whole',
                 'ms_scales': [1.0], 'merge': 'probs', 'miou': 'nanmean'},
    }]))
    counts = main(['confusion', '--config', setup['config'], '--model_path',
                   setup['weights'], '--protocol', 'single', '--save_dir',
                   str(setup['root'] / 'protocol'), '--device', 'cpu'],
                  zoo_file=str(zoo))
    assert 'Protocol: mmsegmentation 0.x test' in capsys.readouterr().out
    np.testing.assert_array_equal(counts, expected_counts(setup))


# -- images ---------------------------------------------------------------

def image_miou(pred, label):
    ious = []
    for c in range(NUM_CLASSES):
        valid = label != IGNORE
        inter = np.sum((pred == c) & (label == c) & valid)
        union = np.sum(((pred == c) | (label == c)) & valid)
        if union:
            ious.append(inter / union)
    return np.mean(ious)


def test_per_image_miou_and_worst_pictures(setup):
    save_dir = setup['root'] / 'images'
    main(['images', '--config', setup['config'], '--model_path',
          setup['weights'], '--save_dir', str(save_dir), '--worst', '2',
          '--device', 'cpu'])
    table = read_csv(save_dir / 'per_image.csv')
    assert table[0][:4] == ['index', 'image', 'miou', 'acc']
    expected = [image_miou(pred, label) for (_, label), pred in
                zip(setup['samples'], setup['preds'])]
    np.testing.assert_allclose([float(row[2]) for row in table[1:]], expected,
                               atol=1e-6)
    assert [row[1] for row in table[1:]] == [
        image for image, _ in setup['samples']]

    worst = np.argsort(expected, kind='stable')[:2]
    names = sorted(os.listdir(save_dir / 'worst'))
    assert names == ['{:03d}_{}.png'.format(rank + 1, index)
                     for rank, index in enumerate(worst)]
    # input | label | prediction below a title and the panel captions
    # (24 rows each); the 64x48 images are enlarged 4 times.
    index = worst[0]
    image_path, label = setup['samples'][index]
    picture = cv2.imread(str(save_dir / 'worst' / names[0]))[:, :, ::-1]
    rgb = np.asarray(Image.open(image_path).convert('RGB'), np.float64)
    enlarged = [np.repeat(np.repeat(a, 4, 0), 4, 1)
                for a in (rgb, label, setup['preds'][index])]
    h, w = enlarged[1].shape
    panels = [picture[48:48 + h, k * (w + 6):k * (w + 6) + w]
              for k in range(3)]
    palette = np.array(get_color_map_list(256), np.float64).reshape(-1, 3)
    np.testing.assert_array_equal(panels[0], enlarged[0])
    blended = np.round(0.5 * enlarged[0] + 0.5 * palette[enlarged[2]])
    np.testing.assert_array_equal(panels[2], blended)
    ignored = enlarged[1] == IGNORE
    expected_label = np.round(0.5 * enlarged[0] + 0.5 * palette[
        np.where(ignored, 0, enlarged[1])])
    expected_label[ignored] = enlarged[0][ignored]
    np.testing.assert_array_equal(panels[1], expected_label)


def test_missing_weights_is_one_message(setup):
    done = run_cli('analyze', 'images', '--config', setup['config'],
                   '--model_path', setup['root'] / 'missing.pdparams',
                   check=False)
    assert done.returncode == 1
    assert 'Traceback' not in done.stderr
    assert 'missing.pdparams' in done.stderr.strip().splitlines()[-1]
