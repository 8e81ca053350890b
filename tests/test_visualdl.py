"""The VisualDL log of ``python -m paddleseg_ctx.train --use_vdl --do_eval``,
read back with VisualDL's ``LogReader``: PaddleSeg's scalars, per-class IoU,
sample images and the confusion heat map (checked against the checkpoint
run in this process), and
one continuous log across a SIGKILL and a resume (runs: training_runs.py).
"""
import io
import os
import struct

import numpy as np
import pytest
from PIL import Image
from paddleseg.utils.visualize import get_color_map_list
from visualdl import LogReader, LogWriter

import training_runs as runs
from cli_utils import NUM_CLASSES, load_model, logits, mean_iou, normalized_image, val_samples
from paddleseg_ctx.analysis import heatmap_image
from paddleseg_ctx.datasets.synthetic import CLASSES
from paddleseg_ctx.training.vdl import PANEL_GAP, continue_log, truncate_log

TRAIN_STEPS = list(range(runs.LOG_ITERS, runs.ITERS + 1, runs.LOG_ITERS))
EVAL_STEPS = list(range(runs.SAVE_INTERVAL, runs.ITERS + 1, runs.SAVE_INTERVAL))
TIMINGS = ('Train/batch_cost', 'Train/reader_cost')
SCALARS = dict(
    [(tag, TRAIN_STEPS) for tag in ('Train/loss', 'Train/loss_0', 'Train/loss_1',
                                    'Train/lr') + TIMINGS] +
    [(tag, EVAL_STEPS) for tag in ['Evaluate/mIoU', 'Evaluate/Acc'] +
     ['Evaluate/IoU/{}'.format(c) for c in range(NUM_CLASSES)]])
IMAGES = {'Evaluate/Sample/{}'.format(i): EVAL_STEPS for i in range(3)}
IMAGES['Evaluate/Confusion'] = EVAL_STEPS


@pytest.fixture(scope='module')
def base(tmp_path_factory):
    return str(tmp_path_factory.getbasetemp() / 'training_runs')


def read_log(save_dir):
    logs = [name for name in os.listdir(save_dir) if 'vdlrecords' in name]
    assert len(logs) == 1, logs
    return LogReader(file_path=os.path.join(save_dir, logs[0]))


def decode(record):
    return np.asarray(Image.open(io.BytesIO(record.image.encoded_image_string)))


def test_log_has_paddleseg_scalars_class_iou_and_images(base):
    reader = read_log(runs.uninterrupted(base))
    tags = reader.get_tags()
    assert sorted(tags['scalar']) == sorted(SCALARS)
    assert sorted(tags['image']) == sorted(IMAGES)
    for tag, steps in SCALARS.items():
        assert [r.id for r in reader.get_data('scalar', tag)] == steps, tag
    for tag, steps in IMAGES.items():
        assert [r.id for r in reader.get_data('image', tag)] == steps, tag


def test_class_iou_and_images_match_the_checkpoint(base):
    save_dir = runs.uninterrupted(base)
    run = runs.setup(base)
    reader = read_log(save_dir)
    model = load_model(run.config, str(save_dir / 'iter_{}'.format(
        runs.ITERS) / 'model.pdparams'))
    samples = val_samples(run.data)
    preds = [logits(model, normalized_image(image)).argmax(0)
             for image, _ in samples]
    class_iou, miou = mean_iou(preds, [label for _, label in samples],
                               NUM_CLASSES)

    def last(tag):
        return reader.get_data('scalar', tag)[-1].value

    np.testing.assert_allclose(
        [last('Evaluate/IoU/{}'.format(c)) for c in range(NUM_CLASSES)],
        class_iou, atol=1e-5)
    assert abs(last('Evaluate/mIoU') - miou) <= 1e-5

    palette = np.array(get_color_map_list(256), 'uint8').reshape(-1, 3)
    for index, ((image, label), pred) in enumerate(zip(samples, preds)):
        strip = decode(reader.get_data('image', 'Evaluate/Sample/{}'.format(
            index))[-1])
        h, w = label.shape
        assert strip.shape == (h, 3 * w + 2 * PANEL_GAP, 3)
        panels = [strip[:, k * (w + PANEL_GAP):k * (w + PANEL_GAP) + w]
                  for k in range(3)]
        np.testing.assert_array_equal(
            panels[0], np.asarray(Image.open(image).convert('RGB')))
        np.testing.assert_array_equal(panels[1], palette[label])
        np.testing.assert_array_equal(panels[2], palette[pred])

    # the heat map of the confusion counts of the last evaluation
    counts = np.array([[sum(np.sum((label == i) & (pred == j))
                            for (_, label), pred in zip(samples, preds))
                        for j in range(NUM_CLASSES)] for i in range(NUM_CLASSES)])
    names = [name for name, _, _, _ in CLASSES[:NUM_CLASSES]]
    expected = heatmap_image(counts / counts.sum(axis=1, keepdims=True), names,
                             'iter {}: {} val images'.format(runs.ITERS, len(samples)))
    np.testing.assert_array_equal(
        decode(reader.get_data('image', 'Evaluate/Confusion')[-1]), expected)


def test_resumed_log_has_every_step_once_with_the_uninterrupted_values(base):
    save_dir, _, killed_steps = runs.killed_and_resumed(
        base, 0, 30, 20, '--keep_checkpoint_max', 2)
    assert max(killed_steps) >= 30  # the killed run had logged past iter_20
    reader, reference = read_log(save_dir), read_log(runs.uninterrupted(base))
    for tag, steps in SCALARS.items():
        records = reader.get_data('scalar', tag)
        assert [r.id for r in records] == steps, tag
        if tag not in TIMINGS:
            np.testing.assert_allclose(
                [r.value for r in records],
                [r.value for r in reference.get_data('scalar', tag)],
                rtol=1e-5, err_msg=tag)
    for tag, steps in IMAGES.items():
        records = reader.get_data('image', tag)
        assert [r.id for r in records] == steps, tag
        for record, expected in zip(records, reference.get_data('image', tag)):
            np.testing.assert_array_equal(decode(record), decode(expected))


def test_truncated_log_continues_from_the_resume_step(tmp_path):
    run_dir = tmp_path / 'run'
    writer = LogWriter(logdir=str(run_dir))
    for step in range(1, 11):
        writer.add_scalar('x', float(step), step)
    for step in (5, 9):
        writer.add_image('img', np.full((2, 3, 3), step, 'uint8'), step)
    log = writer.file_name
    writer.close()
    with open(log, 'ab') as f:  # a record torn by a kill
        f.write(struct.pack('<Q', 100) + b'torn')
    LogWriter(logdir=str(run_dir), file_name='vdlrecords.0.log').close()  # empty, older
    os.utime(run_dir / 'vdlrecords.0.log', (0, 0))
    LogWriter(logdir=str(run_dir), file_name='vdlrecords.z.log').close()  # empty, newer

    resumed_dir = tmp_path / 'resumed'
    name = continue_log(str(resumed_dir), 6, other_dir=str(run_dir))
    assert name == os.path.basename(log)
    writer = LogWriter(logdir=str(resumed_dir), file_name=name)
    for step in (7, 8):
        writer.add_scalar('x', float(step), step)
    writer.close()

    reader = LogReader(file_path=str(resumed_dir / name))
    assert [(r.id, r.value) for r in reader.get_data('scalar', 'x')] == [
        (s, float(s)) for s in range(1, 9)]
    assert [r.id for r in reader.get_data('image', 'img')] == [5]
    assert len(reader.get_data('meta_data', 'meta_data_tag')) == 1

    # In place, as when the run resumes in its own save_dir.
    truncate_log(str(resumed_dir / name), 2, str(resumed_dir / name))
    reader = LogReader(file_path=str(resumed_dir / name))
    assert [r.id for r in reader.get_data('scalar', 'x')] == [1, 2]
