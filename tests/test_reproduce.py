"""``python -m paddleseg_ctx.reproduce``: data check, training with the
published total batch, resume, evaluation of every published column and the
report, end to end on generated data with a tiny config and zoo row.  The
report's numbers are checked against an evaluation of the saved model written
here with numpy (cli_utils), not the evaluation code of the package."""
import json
import shutil
import sys

import numpy as np
import paddle
import pytest
import yaml

from cli_utils import (load_model, logits, make_data, mean_iou,
                       normalized_image, run, val_samples, write_config)
from paddleseg_ctx.cli import reproduce
from paddleseg_ctx.cli.reproduce import ReproduceError

PUBLISHED = {'miou': 40.0, 'miou_flip': 41.0, 'miou_ms_flip': None}
ROW = 'tiny_fcn_row'


@pytest.fixture(scope='module')
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp('reproduce')
    data = make_data(root / 'data', num_train=4, num_val=3)
    (root / 'configs').mkdir()
    config = write_config(root / 'configs' / (ROW + '.yml'), data)
    with open(config) as f:
        cfg = yaml.safe_load(f)
    for key in ('train_dataset', 'val_dataset'):  # --data_root must replace it
        cfg[key]['dataset_root'] = str(root / 'not_here')
    with open(config, 'w') as f:
        yaml.safe_dump(cfg, f)
    zoo = root / 'configs' / 'model_zoo.yml'
    zoo.write_text(yaml.safe_dump([{
        'config': 'configs/{}.yml'.format(ROW), 'model': 'GCNet',
        'source': 'paddleseg', 'backbone': 'HRNet_W18_Small_V1',
        'dataset': 'cityscapes', 'crop_size': [32, 32], 'iters': 80,
        'gpus': 2, 'batch_size_per_gpu': 2,
        'weights': 'https://example.com/w.pdparams', 'published': PUBLISHED,
        'eval': {'test_resize': 'none', 'mode': 'whole',
                 'ms_scales': [0.75, 1.0, 1.25], 'merge': 'logits',
                 'miou': 'empty_as_zero'},
    }]))
    return dict(root=root, data=data, config=config, zoo=str(zoo))


def reproduce_row(setup, save_dir, iters=4, check=True):
    """``python -m paddleseg_ctx.reproduce`` with the test's zoo file, in a
    process of its own (as a rerun would be: Paddle names parameters by a
    per-process counter, and a resumed optimizer state needs the same
    names); returns report.json."""
    argv = [ROW, '--data_root', setup['data']['dataset_root'], '--save_dir',
            str(save_dir), '--iters', str(iters), '--device', 'cpu',
            '--num_workers', '0', '--save_interval', '2', '--log_iters', '1']
    code = ('import sys; from paddleseg_ctx.cli import reproduce; '
            'from paddleseg_ctx.errors import run; '
            'run(lambda argv: reproduce.main(argv, zoo_file={!r}), '
            'sys.argv[1:])'.format(setup['zoo']))
    proc = run([sys.executable, '-c', code] + argv, timeout=300, check=check)
    if not check:
        return None, proc
    return json.loads((save_dir / 'report.json').read_text()), proc


def independent_miou(config, weights, data, flip):
    model = load_model(config, weights)
    preds, labels = [], []
    for path, label in val_samples(data):
        chw = normalized_image(path)
        out = logits(model, chw)
        if flip:  # PaddleSeg's flip: the flipped image's logits flipped back, averaged
            out = (out + logits(model, chw[:, :, ::-1])[:, :, ::-1]) / 2
        preds.append(out.argmax(0))
        labels.append(label)
    return 100 * mean_iou(preds, labels, data['num_classes'])[1]


def test_reproduce_trains_evaluates_and_reports(setup):
    save_dir = setup['root'] / 'out'
    report, proc = reproduce_row(setup, save_dir)
    assert 'Report: ' in proc.stdout + proc.stderr
    # the published total batch 2 GPUs x 2 by accumulating 2 micro-batches
    assert report['batch'] == {'published_total': 4, 'total': 4,
                               'per_process': 2, 'accumulation_steps': 2,
                               'processes': 1, 'kept_by': 'accumulate'}
    assert report['iters'] == 4 and report['published_iters'] == 80
    weights = str(save_dir / 'iter_4' / 'model.pdparams')
    assert report['final_model'] == weights
    columns = {c['column']: c for c in report['columns']}
    assert sorted(columns) == ['flip', 'single']  # ms_flip is not published
    for column, key, flip in (('single', 'miou', False),
                              ('flip', 'miou_flip', True)):
        expected = independent_miou(setup['config'], weights, setup['data'],
                                    flip)
        assert columns[column]['published'] == PUBLISHED[key]
        assert abs(columns[column]['reproduced'] - expected) < 1e-2, column
        assert abs(columns[column]['difference'] -
                   (expected - PUBLISHED[key])) < 1e-2
    assert report['visualdl_logs'] and report['checkpoints']
    assert report['training_seconds'] > 0
    env = report['environment']
    assert env['paddle'] == paddle.__version__ and env['processes'] == 1
    markdown = (save_dir / 'report.md').read_text()
    assert 'Trial run: 4 iterations instead of the published 80' in markdown
    assert '| single | 40.00 | {:.2f} | {:+.2f} |'.format(
        columns['single']['reproduced'],
        columns['single']['difference']) in markdown
    assert 'kept by: accumulate' in markdown

    # Run again after losing the last checkpoint: resumes from iter_2 and
    # ends with the same weights and report numbers.
    first = paddle.load(weights)
    shutil.rmtree(save_dir / 'iter_4')
    again, proc = reproduce_row(setup, save_dir)
    assert 'Resume model from {}'.format(save_dir / 'iter_2') in \
        proc.stdout + proc.stderr
    second = paddle.load(weights)
    for key in first:  # as test_training's resume check: 1e-4 of the scale
        x, y = first[key].numpy(), second[key].numpy()
        scale = max(float(np.abs(x).max()), 1e-3)
        assert float(np.abs(x - y).max()) <= 1e-4 * scale, key
    assert [c['reproduced'] for c in again['columns']] == [
        c['reproduced'] for c in report['columns']]
    assert again['training_seconds'] > report['training_seconds']

    # A third run finds the final checkpoint and only evaluates.
    third, proc = reproduce_row(setup, save_dir)
    assert 'is complete; not training again' in proc.stdout + proc.stderr
    assert third['training_seconds'] == again['training_seconds']

    # Another schedule in the same save_dir is refused.
    _, proc = reproduce_row(setup, save_dir, iters=6, check=False)
    assert proc.returncode == 1
    assert 'holds a run of 4 iterations, this one asks for 6' in proc.stderr


def test_unknown_row_names_the_closest(setup):
    with pytest.raises(ReproduceError, match='did you mean tiny_fcn_row'):
        reproduce.find_row('tiny_fcn_rows', setup['zoo'])
