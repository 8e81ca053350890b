"""Bad input ends every command with one message that names the culprit (file,
key, value) and what to do, a non-zero exit status and no traceback unless
``--debug`` is given (issue 9, item 1).

Commands run in this process through ``paddleseg_ctx.errors.run`` (what
``python -m paddleseg_ctx.<command>`` runs) with the output captured; a few
run as real subprocesses.  Cases tested elsewhere:

* ``--config`` missing (train, val, predict, export):
  test_cli.test_missing_config_is_a_usage_error;
* unreachable pretrained URL: test_cli.test_unreachable_backbone_url_is_one_message,
  test_pretrained.test_unreachable_url_fails_fast_with_clear_message and
  test_without_fix_paddleseg_leaves_a_stale_lock (no stale lock file);
* NaN/inf loss: test_training.test_nan_loss_stops_with_one_message_and_keeps_the_last_checkpoint;
* truncated ``--resume_model``: test_training.test_truncated_resume_file_is_one_message;
* ``convert`` of no checkpoint / an unknown architecture:
  test_converter.test_files_that_are_no_checkpoint_give_one_sentence,
  test_failed_cli_conversion_leaves_destination_alone and
  test_unknown_architecture_lists_known_maps_and_prefixes;
* the loader thread that would wait forever after a sample raised:
  test_compat.test_loader_waits_forever_without_fix.
"""
import os
import types

import numpy as np
import paddle
import pytest
import yaml
from paddleseg.core import infer as paddleseg_infer
from PIL import Image

from cli_utils import build_model, make_data, run_cli, write_config
from paddleseg_ctx.cli import convert, export, infer, predict, train, val
from paddleseg_ctx.errors import run

COMMANDS = {'train': train, 'val': val, 'predict': predict, 'export': export}


@pytest.fixture(scope='module')
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp('errors')
    data = make_data(root / 'data', num_train=2, num_val=2)
    config = write_config(root / 'fcn.yml', data)
    weights = root / 'fcn.pdparams'
    paddle.save(build_model(config).state_dict(), str(weights))
    image = os.path.join(data['dataset_root'], 'images', 'val_0000.png')
    return types.SimpleNamespace(root=root, data=data, config=config,
                                 weights=str(weights), image=image)


def fails(command, argv, capsys, status=None):
    """Run ``command`` as its ``python -m`` entry point does; return the
    message it ends with (stderr), checking the exit status (any non-zero
    one, or ``status``) and that it is one message, not a traceback."""
    with pytest.raises(SystemExit) as exit_info:
        run(command.main, [str(a) for a in argv])
    code = exit_info.value.code
    assert code not in (0, None) and (status is None or code == status), code
    err = capsys.readouterr().err
    assert 'Traceback' not in err, err
    lines = [line for line in err.splitlines()
             if line.startswith(('error:', 'python -m')) or ': error:' in line]
    assert len([line for line in lines if 'error:' in line]) == 1, err
    return err


def command_argv(name, config, tmp_path, image=None, weights=None):
    argv = ['--config', config]
    if name == 'train':
        argv += ['--device', 'cpu', '--iters', 1, '--batch_size', 1,
                 '--save_dir', tmp_path / 'out']
    elif name in ('val', 'predict'):
        argv += ['--device', 'cpu']
    if name == 'predict':
        argv += ['--image_path', image, '--save_dir', tmp_path / 'out']
    if name == 'export':
        argv += ['--save_dir', tmp_path / 'out']
    if weights:
        argv += ['--model_path', weights]
    return argv


def edit_config(work, tmp_path, edit):
    with open(work.config) as f:
        dic = yaml.safe_load(f)
    edit(dic)
    path = tmp_path / 'edited.yml'
    path.write_text(yaml.safe_dump(dic))
    return str(path)


# --- config ------------------------------------------------------------------


@pytest.mark.parametrize('text, expected', [
    ('model: {type: FCN\nbatch_size: 2\n', 'is not valid YAML'),
    ('- model\n- batch_size\n', 'must hold a mapping of config keys'),
    ('', 'holds nothing'),
    ('_base_: missing_base.yml\n', "names `_base_`"),
], ids=['syntax', 'list', 'empty', 'missing-base'])
@pytest.mark.parametrize('name', list(COMMANDS))
def test_config_not_yaml(work, tmp_path, capsys, name, text, expected):
    config = tmp_path / 'bad.yml'
    config.write_text(text)
    err = fails(COMMANDS[name],
                command_argv(name, str(config), tmp_path, work.image),
                capsys, status=2)
    assert str(config) in err and expected in err, err
    if 'base' in text:
        assert str(tmp_path / 'missing_base.yml') in err, err
    if 'syntax' in expected:
        assert 'line' in err


def test_config_not_a_text_file(work, tmp_path, capsys):
    config = tmp_path / 'weights.yml'
    config.write_bytes(bytes(range(256)) * 4)
    err = fails(val, ['--config', config], capsys, status=2)
    assert str(config) in err and 'is not a text (YAML) file' in err


@pytest.mark.parametrize('key, value, suggestion', [
    ('model', 'FNC', 'FCN'),
    ('backbone', 'HRNet_W18_small_v2', 'HRNet_W18_Small_V2'),
    ('loss', 'CrossEntropyLos', 'CrossEntropyLoss'),
    ('train_dataset', 'Datset', 'Dataset'),
])
def test_unknown_component_type_suggests_registered_names(
        work, tmp_path, capsys, key, value, suggestion):

    def edit(dic):
        if key == 'backbone':
            dic['model']['backbone']['type'] = value
        elif key == 'loss':
            dic['loss']['types'][0]['type'] = value
        else:
            dic[key]['type'] = value

    config = edit_config(work, tmp_path, edit)
    err = fails(train, command_argv('train', config, tmp_path), capsys,
                status=2)
    assert config in err and repr(value) in err, err
    assert 'Did you mean' in err and suggestion in err, err


def test_unknown_component_argument(work, tmp_path, capsys):
    config = edit_config(
        work, tmp_path,
        lambda dic: dic['model'].update(backbone_indice=[-1]))
    err = fails(val, ['--config', config], capsys, status=2)
    assert "model.backbone_indice: FCN takes no argument 'backbone_indice'" \
        in err and 'backbone_indices' in err, err


def test_num_classes_disagree(work, tmp_path, capsys):
    config = edit_config(
        work, tmp_path, lambda dic: dic['model'].update(num_classes=7))
    err = fails(val, ['--config', config], capsys, status=2)
    assert 'model.num_classes = 7' in err and 'num_classes = 4' in err, err


def test_loss_types_fewer_than_model_outputs(work, tmp_path, capsys):
    # PaddleSeg finds it at the first training step, with a traceback.
    config = edit_config(work, tmp_path, lambda dic: dic.update(model={
        'type': 'CtxGCNet', 'gc_channels': 16,
        'backbone': {'type': 'ResNet18_vd', 'output_stride': 8}}))
    err = fails(train, command_argv('train', config, tmp_path), capsys,
                status=1)
    assert config in err and '`loss.types` has 1 entries but the model ' \
        'returns 2 logits' in err, err


# --- data sets -----------------------------------------------------------------


@pytest.mark.parametrize('name, missing', [
    ('train', 'dataset_root'), ('train', 'train_path'),
    ('val', 'dataset_root'), ('val', 'val_path')])
def test_dataset_root_or_list_missing(work, tmp_path, capsys, name, missing):
    path = str(tmp_path / 'nowhere' / missing)
    key = 'train_dataset' if name == 'train' else 'val_dataset'
    config = edit_config(
        work, tmp_path, lambda dic: dic[key].update({missing: path}))
    err = fails(COMMANDS[name], command_argv(name, config, tmp_path), capsys,
                status=1)
    assert '{}: Dataset cannot be built'.format(key) in err, err
    assert path in err and config in err, err


@pytest.mark.parametrize('name', ['convert', 'infer'])
def test_missing_config_of_convert_and_infer(tmp_path, capsys, name):
    # (train, val, predict, export: test_cli.test_missing_config_is_a_usage_error)
    missing = tmp_path / 'nope.yml'
    argv = {'convert': [tmp_path / 'fcn.yml', tmp_path / 'out.pdparams'],
            'infer': ['--image_path', tmp_path / 'fcn.yml']}[name]
    (tmp_path / 'fcn.yml').write_text('model: {}\n')  # exists
    err = fails({'convert': convert, 'infer': infer}[name],
                argv + ['--config', missing], capsys, status=2)
    assert str(missing) in err and ('no such file' in err or
                                    'No such file' in err), err


def broken_copy(work, tmp_path, case):
    """A copy of the data set whose second val sample has ``case``."""
    data = make_data(tmp_path / 'data', num_train=2, num_val=2)
    root = data['dataset_root']
    label = os.path.join(root, 'labels', 'val_0001.png')
    values = np.array(Image.open(label))
    if case == 'no_label':
        os.remove(label)
    elif case == 'size':
        Image.fromarray(values[:-3]).save(label)
    elif case == 'values':
        values[2, 3] = 9
        values[4, 5] = 200
        Image.fromarray(values).save(label)
    return write_config(tmp_path / 'broken.yml', data), label


@pytest.mark.parametrize('case, expected', [
    ('no_label', 'has no label: {label} does not exist'),
    ('size', 'is 64x48 (WxH) but label {label} is 64x45'),
    ('values', 'has values 9, 200 outside the class ids 0..3 (num_classes '
     '4) and the ignore index 255'),
])
def test_bad_samples_in_val(work, tmp_path, capsys, case, expected):
    config, label = broken_copy(work, tmp_path, case)
    err = fails(val, ['--config', config, '--device', 'cpu'], capsys,
                status=1)
    assert expected.format(label=label) in err, err
    assert 'val_0001.png' in err and 'val_dataset' in err, err


def test_bad_sample_in_training_subprocess(work, tmp_path):
    # The real command, through Paddle's loader thread, which without our
    # fix waits forever after a sample raised.
    config, label = broken_copy(work, tmp_path, 'values')
    with open(config) as f:
        dic = yaml.safe_load(f)
    dic['train_dataset'] = dict(dic['val_dataset'], mode='train',
                                train_path=dic['val_dataset']['val_path'])
    del dic['train_dataset']['val_path']
    with open(config, 'w') as f:
        yaml.safe_dump(dic, f)
    proc = run_cli('train', '--config', config, '--device', 'cpu', '--iters',
                   4, '--batch_size', 1, '--save_dir', tmp_path / 'out',
                   check=False, timeout=240)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert 'Traceback' not in proc.stderr, proc.stderr[-3000:]
    assert 'error: train_dataset: label {}'.format(label) in proc.stderr
    assert 'values 9, 200 outside' in proc.stderr


# --- weights ---------------------------------------------------------------


def truncated(work, tmp_path):
    path = tmp_path / 'truncated.pdparams'
    with open(work.weights, 'rb') as f:
        path.write_bytes(f.read()[:5000])
    return str(path)


def not_weights(work, tmp_path):
    path = tmp_path / 'notes.pdparams'
    path.write_text('not weights\n')
    return str(path)


@pytest.mark.parametrize('make', [truncated, not_weights])
@pytest.mark.parametrize('name', ['val', 'predict', 'export'])
def test_corrupt_weights(work, tmp_path, capsys, name, make):
    weights = make(work, tmp_path)
    err = fails(COMMANDS[name], command_argv(name, work.config, tmp_path,
                                             work.image, weights), capsys,
                status=1)
    assert 'error: Weights in {} cannot be read'.format(weights) in err, err


def test_corrupt_pretrained_weights_in_training(work, tmp_path, capsys):
    weights = truncated(work, tmp_path)
    argv = command_argv('train', work.config, tmp_path) + [
        '--opts', 'model.pretrained=' + weights]
    err = fails(train, argv, capsys, status=1)
    assert 'error: Weights in {} (`model.pretrained`'.format(weights) in err
    assert 'cannot be read' in err, err


@pytest.fixture(scope='module')
def other_classes(work):
    """Weights of the same model for 3 classes instead of 4."""
    with open(work.config) as f:
        dic = yaml.safe_load(f)
    dic['train_dataset']['num_classes'] = dic['val_dataset']['num_classes'] = 3
    config = work.root / 'fcn3.yml'
    config.write_text(yaml.safe_dump(dic))
    path = work.root / 'fcn3.pdparams'
    paddle.save(build_model(str(config)).state_dict(), str(path))
    return str(path)


@pytest.fixture(scope='module')
def another_model(work):
    """Weights of another model: an FCN head on a different backbone."""
    path = work.root / 'other.pdparams'
    paddle.save({'backbone.conv1.weight': paddle.zeros([8, 3, 3, 3]),
                 'head.cls.weight': paddle.zeros([4, 8, 1, 1])}, str(path))
    return str(path)


@pytest.mark.parametrize('kind', ['classes', 'model'])
@pytest.mark.parametrize('name', ['val', 'predict', 'export'])
def test_weights_for_another_class_count_or_model(
        work, tmp_path, capsys, name, kind, other_classes, another_model,
        monkeypatch):
    # Nothing may run on a half-loaded model.
    ran = []
    monkeypatch.setattr(paddleseg_infer, 'inference',
                        lambda *a, **k: ran.append(1))
    weights = other_classes if kind == 'classes' else another_model
    err = fails(COMMANDS[name], command_argv(name, work.config, tmp_path,
                                             work.image, weights),
                capsys, status=1)
    assert 'Weights in {} do not fit FCN'.format(weights) in err, err
    if kind == 'classes':  # HRNet_W18_Small_V1: 16 + 32 + 64 + 128 channels
        assert 'head.cls.weight: file [3, 240, 1, 1] vs model [4, 240, 1, ' \
            '1], head.cls.bias: file [3] vs model [4]' in err, err
    else:
        assert 'backbone.conv1.weight' in err and 'missing' in err, err
    assert not ran and not (tmp_path / 'out' / 'model.pdiparams').exists()


# --- convert -------------------------------------------------------------


@pytest.mark.parametrize('content', [b'\x89PNG\r\n\x1a\n' + bytes(64),
                                     b'plain text\n'],
                         ids=['png', 'text'])
def test_convert_no_checkpoint(tmp_path, capsys, content):
    src = tmp_path / 'model.pth'
    src.write_bytes(content)
    config = tmp_path / 'gcnet.yml'  # never read: the source fails first
    config.write_text('model: {type: CtxGCNet}\n')
    err = fails(convert, [src, tmp_path / 'out.pdparams', '--config', config],
                capsys, status=1)
    assert str(src) in err, err
    assert not (tmp_path / 'out.pdparams').exists()


# --- predict and infer on files that are no image ------------------------------


@pytest.mark.parametrize('kind', ['text', 'truncated'])
def test_predict_on_no_image(work, tmp_path, capsys, kind):
    image = tmp_path / 'photo.png'
    if kind == 'text':
        image.write_text('no image\n')
    else:
        with open(work.image, 'rb') as f:
            image.write_bytes(f.read()[:40])
    err = fails(predict, command_argv('predict', work.config, tmp_path,
                                      image, work.weights), capsys,
                status=1)
    assert '{} cannot be read as an image'.format(image) in err, err


def test_predict_on_a_list_naming_a_missing_image(work, tmp_path, capsys):
    listing = tmp_path / 'list.txt'
    listing.write_text('{}\n{}\n'.format(work.image, tmp_path / 'gone.png'))
    err = fails(predict, command_argv('predict', work.config, tmp_path,
                                      listing, work.weights), capsys)
    assert str(tmp_path / 'gone.png') in err, err


@pytest.fixture(scope='module')
def exported(work):
    out = work.root / 'export'
    run(export.main, ['--config', work.config, '--model_path', work.weights,
                      '--save_dir', str(out)])
    return out / 'deploy.yaml'


@pytest.mark.parametrize('kind', ['text', 'missing-in-list', 'binary-list'])
def test_infer_on_no_image(work, tmp_path, capsys, kind, exported):
    image = tmp_path / 'photo.png'
    path, culprit, status = image, image, 1
    if kind == 'text':
        image.write_text('no image\n')
    elif kind == 'missing-in-list':
        path = tmp_path / 'list.txt'
        path.write_text('{}\nphoto.png\n'.format(work.image))
    else:
        path = culprit = tmp_path / 'model.pdparams'
        path.write_bytes(bytes(range(256)))
        status = 2
    err = fails(infer, ['--config', exported, '--image_path', path,
                        '--save_dir', tmp_path / 'out'], capsys,
                status=status)
    assert str(culprit) in err, err


# --- --debug ---------------------------------------------------------------------


def test_debug_shows_the_traceback(work, tmp_path):
    config = edit_config(
        work, tmp_path, lambda dic: dic['model'].update(type='FNC'))
    plain = run_cli('val', '--config', config, check=False)
    assert plain.returncode == 2 and 'Traceback' not in plain.stderr
    assert "no component is registered as 'FNC'" in plain.stderr
    debug = run_cli('val', '--config', config, '--debug', check=False)
    assert debug.returncode == 1, debug.stderr[-2000:]
    assert 'Traceback' in debug.stderr and 'ConfigError' in debug.stderr
