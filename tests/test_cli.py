"""End-to-end checks of ``python -m paddleseg_ctx.{train,val,predict,export}``.

Every command runs as a subprocess on a tiny synthetic data set with a stock
PaddleSeg model (FCN on HRNet_W18_Small_V1).  Results are checked against
the model run directly in this process (dygraph), a numpy mIoU, and, for the
exported model, Paddle Inference in an interpreter without paddleseg_ctx.
"""
import re
import sys
import types

import numpy as np
import paddle
import pytest
import yaml
from PIL import Image
from visualdl import LogReader

from cli_utils import (load_model, logits, make_data, mean_iou,
                       normalized_image, run, run_cli, save_random_weights,
                       val_samples, write_config)
from paddleseg_ctx.cli import common, export, predict, train, val

# Flags of PaddleSeg 2.8.0 tools/{train,val,predict,export}.py.
PADDLESEG_FLAGS = {
    train: ('config device save_dir num_workers do_eval use_vdl use_ema '
            'resume_model iters batch_size learning_rate save_interval '
            'log_iters keep_checkpoint_max seed precision amp_level '
            'profiler_options data_format repeats opts'),
    val: ('config model_path num_workers device aug_eval scales '
          'flip_horizontal flip_vertical is_slide crop_size stride '
          'data_format auc_roc opts'),
    predict: ('config model_path image_path save_dir device aug_pred scales '
              'flip_horizontal flip_vertical is_slide crop_size stride '
              'custom_color'),
    export: 'config model_path save_dir input_shape output_op',
}

EVAL_LINE = re.compile(r'\[EVAL\] #Images: (\d+) mIoU: ([\d.]+)')


@pytest.fixture(scope='module')
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp('cli')
    data = make_data(root / 'data')
    config = write_config(root / 'fcn.yml', data)
    weights = save_random_weights(config, root / 'random.pdparams')
    return types.SimpleNamespace(root=root, data=data, config=config,
                                 weights=weights)


@pytest.fixture(scope='module')
def trained(work):
    save_dir = work.root / 'train'
    proc = run_cli('train', '--config', work.config, '--device', 'cpu',
                   '--save_dir', save_dir, '--iters', 4, '--batch_size', 2,
                   '--do_eval', '--save_interval', 2, '--use_vdl',
                   '--log_iters', 1, '--seed', 0)
    return proc, save_dir


def dygraph_labels(config, weights, image):
    """Argmax of ``config``'s model with ``weights``, run in this process."""
    model = load_model(config, weights)
    labels = logits(model, normalized_image(image)).argmax(0)
    # A constant label map would make the comparisons below trivial.
    assert len(np.unique(labels)) > 1, 'pick another seed for the weights'
    return labels


def test_train_logs_progress_checkpoints_and_visualdl(trained):
    proc, save_dir = trained
    logged = re.findall(
        r'\[TRAIN\] epoch: \d+, iter: (\d+)/4, loss: ([\d.]+),.*\| ETA',
        proc.stdout)
    assert [int(it) for it, _ in logged] == [1, 2, 3, 4], proc.stdout[-2000:]
    assert len(EVAL_LINE.findall(proc.stdout)) == 2  # at iters 2 and 4
    assert re.search(r'3/3 \[=+\]', proc.stderr), 'no evaluation progress bar'
    for name in ('iter_2/model.pdparams', 'iter_2/model.pdopt',
                 'iter_4/model.pdparams', 'best_model/model.pdparams'):
        assert (save_dir / name).is_file(), name

    vdl_logs = list(save_dir.glob('vdlrecords.*.log'))
    assert len(vdl_logs) == 1
    reader = LogReader(file_path=str(vdl_logs[0]))
    losses = reader.get_data('scalar', 'Train/loss')
    assert [r.id for r in losses] == [1, 2, 3, 4]
    np.testing.assert_allclose([r.value for r in losses],
                               [float(loss) for _, loss in logged],
                               atol=6e-5)
    assert [r.id for r in reader.get_data('scalar', 'Evaluate/mIoU')] == [2, 4]


def test_val_loads_trained_checkpoint(trained, work):
    _, save_dir = trained
    proc = run_cli('val', '--config', work.config, '--device', 'cpu',
                   '--model_path', save_dir / 'iter_4' / 'model.pdparams')
    assert 'Loaded trained weights from' in proc.stdout, proc.stdout[-2000:]
    assert EVAL_LINE.search(proc.stdout)


def test_val_rejects_a_checkpoint_of_another_model(trained, work, tmp_path):
    # PaddleSeg's loader would skip the mismatched tensors and evaluate a
    # half-random model; ours stops and names the keys.
    _, save_dir = trained
    state = paddle.load(str(save_dir / 'iter_4' / 'model.pdparams'))
    dropped = sorted(state)[0]
    del state[dropped]
    partial = str(tmp_path / 'partial.pdparams')
    paddle.save(state, partial)
    proc = run_cli('val', '--config', work.config, '--device', 'cpu',
                   '--model_path', partial, check=False)
    assert proc.returncode != 0
    assert '1 missing key(s): ' + dropped in proc.stderr, proc.stderr[-2000:]


def test_val_matches_numpy_miou(work):
    proc = run_cli('val', '--config', work.config, '--device', 'cpu',
                   '--model_path', work.weights)
    count, miou = EVAL_LINE.search(proc.stdout).groups()
    class_iou = re.search(r'Class IoU: \n\[([^\]]*)\]', proc.stdout).group(1)

    samples = val_samples(work.data)
    preds = [dygraph_labels(work.config, work.weights, image) for image, _ in samples]
    ref_class_iou, ref_miou = mean_iou(preds, [l for _, l in samples],
                                       work.data['num_classes'])
    assert int(count) == len(samples)
    assert abs(float(miou) - ref_miou) <= 5e-5
    np.testing.assert_allclose(
        [float(v) for v in class_iou.split()], ref_class_iou, atol=5e-5)


def test_val_aug_eval_flags(work):
    # The exact ms+flip protocol is checked in test_aug_eval.py.
    proc = run_cli('val', '--config', work.config, '--device', 'cpu',
                   '--model_path', work.weights, '--aug_eval',
                   '--flip_horizontal', '--scales', 0.75, 1.0, 1.25)
    assert EVAL_LINE.search(proc.stdout)


def test_opts_override_config(work):
    one_image = work.root / 'one.txt'
    with open(work.data['val_path']) as f:
        one_image.write_text(f.readline())
    proc = run_cli('val', '--config', work.config, '--device', 'cpu',
                   '--model_path', work.weights, '--opts',
                   'val_dataset.val_path={}'.format(one_image))
    assert EVAL_LINE.search(proc.stdout).group(1) == '1'


def test_predict_writes_pseudo_colour_and_added_images(work):
    save_dir = work.root / 'predict'
    run_cli('predict', '--config', work.config, '--device', 'cpu',
            '--model_path', work.weights, '--image_path',
            work.data['val_path'], '--save_dir', save_dir)
    for image, _ in val_samples(work.data):
        name = image[len(work.data['dataset_root']) + 1:]
        added = Image.open(save_dir / 'added_prediction' / name)
        assert added.size == Image.open(image).size
        pseudo = Image.open(save_dir / 'pseudo_color_prediction' / name)
        assert pseudo.mode == 'P'  # palette indices are the class ids
        np.testing.assert_array_equal(
            np.array(pseudo), dygraph_labels(work.config, work.weights, image))


INFER_WITHOUT_PADDLESEG_CTX = '''
import sys
import numpy as np
from paddle import inference
from paddleseg.deploy.infer import DeployConfig

deploy_yaml, image, out = sys.argv[1:]
cfg = DeployConfig(deploy_yaml)
config = inference.Config(cfg.model, cfg.params)
config.disable_gpu()
# Paddle 3.3.1 oneDNN cannot run bilinear_interp (Paddle#79749).
config.disable_mkldnn()
config.disable_glog_info()
predictor = inference.create_predictor(config)
x = cfg.transforms({'img': image})['img'][None]
handle = predictor.get_input_handle(predictor.get_input_names()[0])
handle.reshape(x.shape)
handle.copy_from_cpu(x)
predictor.run()
output = predictor.get_output_handle(predictor.get_output_names()[0])
np.save(out, output.copy_to_cpu())
assert 'paddleseg_ctx' not in sys.modules
'''


def export_and_check(config, weights, save_dir, image):
    """Export with the CLI, run deploy.yaml in Paddle Inference without
    paddleseg_ctx, compare with the dygraph argmax; returns deploy.yaml."""
    run_cli('export', '--config', config, '--model_path', weights,
            '--save_dir', save_dir)
    with open(save_dir / 'deploy.yaml') as f:
        deploy = yaml.safe_load(f)['Deploy']
    assert (save_dir / deploy['model']).is_file()
    assert (save_dir / deploy['params']).is_file()
    out = save_dir / 'inference.npy'
    run([sys.executable, '-c', INFER_WITHOUT_PADDLESEG_CTX,
         str(save_dir / 'deploy.yaml'), image, str(out)])
    np.testing.assert_array_equal(
        np.load(out)[0], dygraph_labels(config, weights, image))
    return deploy


def test_export_runs_in_paddle_inference_without_paddleseg_ctx(work):
    deploy = export_and_check(work.config, work.weights, work.root / 'export',
                              val_samples(work.data)[0][0])
    assert deploy['transforms'] == [{'type': 'Normalize'}]
    assert deploy['output_op'] == 'argmax'


def test_our_registered_model_trains_and_exports(work):
    # CtxGCNet exists only once the CLI has imported paddleseg_ctx; the
    # exported model must still run without it.
    config = write_config(
        work.root / 'ctx_gcnet.yml', work.data,
        model={'type': 'CtxGCNet', 'backbone': {'type': 'ResNet18_vd'},
               'gc_channels': 32},
        loss={'types': [{'type': 'CrossEntropyLoss'}] * 2, 'coef': [1, 0.4]})
    run_cli('train', '--config', config, '--device', 'cpu', '--save_dir',
            work.root / 'ctx_train', '--iters', 2, '--save_interval', 2)
    assert (work.root / 'ctx_train' / 'iter_2' / 'model.pdparams').is_file()
    weights = save_random_weights(config, work.root / 'ctx_random.pdparams')
    export_and_check(config, weights, work.root / 'ctx_export',
                     val_samples(work.data)[0][0])


def test_deploy_transforms_prefer_export_section(work, tmp_path):
    resize = [{'type': 'Resize', 'target_size': [32, 32]},
              {'type': 'Normalize'}]
    config = write_config(tmp_path / 'c.yml', work.data,
                          export={'transforms': resize})
    cfg, _ = common.load_config(
        export.build_parser(), types.SimpleNamespace(config=config))
    assert export.deploy_transforms(cfg) == resize


@pytest.mark.parametrize('command', list(PADDLESEG_FLAGS),
                         ids=lambda m: m.__name__.split('.')[-1])
def test_help_lists_paddleseg_flags(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        command.main(['--help'])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    missing = [
        flag for flag in PADDLESEG_FLAGS[command].split()
        if not re.search(r'(?<![\w-])--{}\b'.format(flag), text)
    ]
    assert not missing


@pytest.mark.parametrize('command,extra', [
    (train, []), (val, []), (predict, ['--image_path', 'x.png']),
    (export, [])
], ids=['train', 'val', 'predict', 'export'])
def test_missing_config_is_a_usage_error(command, extra, tmp_path, capsys):
    missing = str(tmp_path / 'nope.yml')
    with pytest.raises(SystemExit) as exit_info:
        command.main(['--config', missing] + extra)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert missing in err and 'no such file' in err


def test_bad_opts_are_usage_errors(work, capsys):
    not_in_config = '{}: Can not update nokey.sub'.format(work.config)
    for opts, message in (('iters', '--opts iters: expected KEY=VALUE'),
                          ('nokey.sub=1', not_in_config)):
        with pytest.raises(SystemExit) as exit_info:
            val.main(['--config', work.config, '--opts', opts])
        assert exit_info.value.code == 2
        assert message in capsys.readouterr().err


def test_aug_flags_reach_test_config(work):
    args = val.build_parser().parse_args([
        '--config', work.config, '--aug_eval', '--scales', '0.75', '1.25',
        '--flip_vertical', '--is_slide', '--crop_size', '32', '24',
        '--stride', '16', '12'
    ])
    cfg, _ = common.load_config(val.build_parser(), args)
    assert common.merge_test_config(cfg, args, 'aug_eval') == {
        'aug_eval': True, 'scales': [0.75, 1.25], 'flip_horizontal': False,
        'flip_vertical': True, 'is_slide': True, 'crop_size': [32, 24],
        'stride': [16, 12]
    }



def test_unreachable_backbone_url_is_one_message(work, tmp_path):
    # PaddleSeg's builder wraps the download error in a RuntimeError with a
    # traceback; the CLI prints only our message (URL, local path, key).
    url = 'http://127.0.0.1:9/offline_backbone.tar.gz'  # closed local port
    proc = run_cli('train', '--config', work.config, '--device', 'cpu',
                   '--iters', '1', '--save_dir', tmp_path,
                   '--opts', 'model.backbone.pretrained=' + url, check=False)
    assert proc.returncode == 1
    assert 'Traceback' not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.startswith('error: ') or '\nerror: ' in proc.stderr
    for part in (url, 'offline_backbone.tar.gz', 'model.backbone.pretrained'):
        assert part in proc.stderr
