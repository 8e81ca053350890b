"""The model zoo as a command and an API (issue 19, item 2).

``python -m paddleseg_ctx.zoo list|show|download`` and ``paddleseg_ctx.zoo``'s
``list_models``, ``get_row``, ``create_model``.  The table is checked against
configs/model_zoo.yml read here with yaml; downloads come from a local HTTP
server on 127.0.0.1 (range requests, one that ignores them, corrupt files)
and are checked against hashlib's SHA-256 of what was served.
"""
import contextlib
import hashlib
import http.server
import os
import shutil
import subprocess
import sys
import threading

import numpy as np
import paddle
import pytest
import yaml
from paddleseg.utils import seg_env

from cli_utils import build_model, make_data, write_config
from paddleseg_ctx import zoo
from paddleseg_ctx.cli import zoo as zoo_cli
from paddleseg_ctx.errors import PretrainedDownloadError, run
from paddleseg_ctx.weights import fetch

with open(zoo.ZOO_FILE) as _f:
    ENTRIES = yaml.safe_load(_f)  # the zoo as the file says, read independently


def stem(entry):
    return os.path.basename(entry['config'])[:-len('.yml')]


# --- list and show ---------------------------------------------------------------


@pytest.mark.parametrize('model, dataset', [(None, None), ('GCNet', None),
                                            ('isnet', 'LIP'), (None, 'voc12aug')])
def test_list_is_the_zoo_file(model, dataset, capsys):
    run(zoo_cli.main, ['list'] + (['--model', model] if model else []) +
        (['--dataset', dataset] if dataset else []))
    lines = capsys.readouterr().out.splitlines()
    expected = [e for e in ENTRIES if e['published'] is not None and
                (model is None or e['model'].lower() == model.lower()) and
                (dataset is None or dataset in (e['dataset'], zoo.DATASET_NAMES[e['dataset']]))]
    assert expected and lines[0].split() == ['row', 'config', 'mIoU', 'flip', 'ms+flip',
                                             'GPUs', 'x', 'batch']
    assert len(lines) == len(expected) + 2
    for line, entry in zip(lines[1:], expected):
        numbers = ['-' if entry['published'][k] is None else '{:.2f}'.format(
            entry['published'][k]) for k in ('miou', 'miou_flip', 'miou_ms_flip')]
        assert line.split() == [stem(entry), entry['config']] + numbers + [
            str(entry['gpus'] or '?'), 'x', str(entry['batch_size_per_gpu'])]
    assert zoo.list_models(model, dataset) == [stem(e) for e in expected]


def test_list_all_includes_unpublished_configs(capsys):
    run(zoo_cli.main, ['list', '--all'])
    assert len(capsys.readouterr().out.splitlines()) == len(ENTRIES) + 2


def test_show_gives_recipe_protocols_and_commands(capsys):
    entry = next(e for e in ENTRIES if e['source'] == 'mmseg')
    run(zoo_cli.main, ['show', stem(entry)])
    text = capsys.readouterr().out
    assert 'config     {}'.format(entry['config']) in text
    assert '{} iterations'.format(entry['iters']) in text
    assert '{} GPUs x {} images'.format(entry['gpus'], entry['batch_size_per_gpu']) in text
    for column, key in (('single', 'miou'), ('flip', 'miou_flip'),
                        ('ms_flip', 'miou_ms_flip')):
        command = 'python -m paddleseg_ctx.val --config {} --model_path {} --protocol {}'.format(
            entry['config'], entry['weights'], column)
        assert (command in text) == (entry['published'][key] is not None), column
    assert 'mmsegmentation 0.x test' in text  # the protocol of each column
    prefix = entry['weights'].rsplit('-', 1)[1][:8]
    assert 'SHA-256 prefix in the file name {}'.format(prefix) in text


def test_unknown_row_is_one_message_with_suggestions(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(zoo_cli.main, ['show', 'gcnet_resnet50_cityscapes'])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith('error: gcnet_resnet50_cityscapes is no row of')
    assert 'did you mean gcnet_resnet50' in err and 'Traceback' not in err


def test_unknown_model_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(zoo_cli.main, ['list', '--model', 'UNet'])
    assert exit_info.value.code == 2
    assert '--model UNet: expected one of GINet, GCNet, ISANet, ISNet' in capsys.readouterr().err


def test_python_dash_m_entry_point():
    done = subprocess.run([sys.executable, '-m', 'paddleseg_ctx.zoo', 'list', '--model',
                           'ISANet'], capture_output=True, text=True, check=True)
    assert len(done.stdout.splitlines()) == len(
        [e for e in ENTRIES if e['model'] == 'ISANet']) + 2


# --- downloads from 127.0.0.1 ---------------------------------------------------


class Handler(http.server.BaseHTTPRequestHandler):
    """Serves ``server.files`` (path -> bytes), honouring ``Range: bytes=N-``
    unless ``server.ranges_ignored``; records every request's Range header."""

    def do_GET(self):  # noqa: N802  (http.server's name)
        data = self.server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        wanted = self.headers.get('Range')
        self.server.requests.append((self.path, wanted))
        start = 0
        if wanted and not self.server.ranges_ignored:
            start = int(wanted[len('bytes='):-1])
            if start >= len(data):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header('Content-Range', 'bytes {}-{}/{}'.format(
                start, len(data) - 1, len(data)))
        else:
            self.send_response(200)
        self.send_header('Content-Length', str(len(data) - start))
        self.end_headers()
        # A connection lost after `server.cut_after` bytes, once.
        cut, self.server.cut_after = self.server.cut_after, None
        self.wfile.write(data[start:] if cut is None else data[start:start + cut])
        self.close_connection = True

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def serving(files, ranges_ignored=False):
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    server.files, server.requests, server.ranges_ignored = files, [], ranges_ignored
    server.cut_after = None
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, 'http://127.0.0.1:{}'.format(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


PAYLOAD = bytes(range(256)) * 4096  # 1 MiB
PREFIX = hashlib.sha256(PAYLOAD).hexdigest()[:8]
MMSEG_NAME = '/gcnet/gcnet_r50-d8_512x1024_40k_cityscapes_20200618_074436-{}.pth'


def zoo_file_with(root, rows):
    """A zoo file under ``root``/configs holding ``rows`` (copies of the
    configs alongside), as ``--zoo`` and ``path=`` take it."""
    shutil.copytree(os.path.join(zoo.REPO_ROOT, 'configs'), str(root / 'configs'),
                    dirs_exist_ok=True)
    path = root / 'configs' / 'test_zoo.yml'
    path.write_text(yaml.safe_dump(rows))
    return str(path)



def row(source, weights, **changes):
    entry = dict(next(e for e in ENTRIES if e['source'] == source), weights=weights)
    entry.update(changes)
    return entry


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setattr(seg_env, 'PRETRAINED_MODEL_HOME', str(tmp_path / 'cache'))
    return tmp_path / 'cache'


def test_download_into_the_cache_model_path_reads(tmp_path, cache, capsys):
    with serving({MMSEG_NAME.format(PREFIX): PAYLOAD}) as (server, url):
        weights = url + MMSEG_NAME.format(PREFIX)
        zoo_file = zoo_file_with(tmp_path, [row('mmseg', weights)])
        run(zoo_cli.main, ['--zoo', zoo_file, 'download', stem(row('mmseg', weights)),
                           '--quiet'])
    out = capsys.readouterr().out.splitlines()
    target = fetch.download_target(weights)
    assert target.startswith(str(cache)) and out[0] == target
    assert out[1].startswith('SHA-256 {}'.format(hashlib.sha256(PAYLOAD).hexdigest()))
    with open(target, 'rb') as f:
        assert f.read() == PAYLOAD
    # --model_path URL finds it there (the server is gone).
    assert fetch.download(weights) == target


@pytest.mark.parametrize('ranges_ignored', [False, True])
def test_an_interrupted_download_continues(tmp_path, ranges_ignored):
    dest = tmp_path / 'dest'
    dest.mkdir()
    name = MMSEG_NAME.format(PREFIX)
    half = len(PAYLOAD) // 2
    (dest / (os.path.basename(name) + '.part')).write_bytes(PAYLOAD[:half])
    with serving({name: PAYLOAD}, ranges_ignored) as (server, url):
        zoo_file = zoo_file_with(tmp_path, [row('mmseg', url + name)])
        path, digest = zoo.download_row(stem(row('mmseg', url + name)), str(dest), zoo_file,
                                        progress=False)
    assert server.requests == [(name, 'bytes={}-'.format(half))]
    assert path == str(dest / os.path.basename(name))
    assert digest == hashlib.sha256(PAYLOAD).hexdigest()
    with open(path, 'rb') as f:
        assert f.read() == PAYLOAD
    assert sorted(os.listdir(dest)) == [os.path.basename(name)]


def test_a_lost_connection_is_one_message_and_the_next_run_continues(tmp_path, capsys):
    name = MMSEG_NAME.format(PREFIX)
    dest = tmp_path / 'dest'
    with serving({name: PAYLOAD}) as (server, url):
        entry = row('mmseg', url + name)
        argv = ['--zoo', zoo_file_with(tmp_path, [entry]), 'download', stem(entry),
                '--dest', str(dest), '--quiet']
        server.cut_after = 300000
        with pytest.raises(SystemExit) as exit_info:
            run(zoo_cli.main, argv)
        assert exit_info.value.code == 1
        err = capsys.readouterr().err
        assert 'error: Could not download {}'.format(url + name) in err
        assert 'Run the same command again to continue' in err and 'Traceback' not in err
        part = dest / (os.path.basename(name) + '.part')
        kept = part.stat().st_size  # whole chunks up to the cut
        assert 0 < kept <= 300000 and part.read_bytes() == PAYLOAD[:kept]
        run(zoo_cli.main, argv)
    assert server.requests == [(name, None), (name, 'bytes={}-'.format(kept))]
    assert (dest / os.path.basename(name)).read_bytes() == PAYLOAD and not part.exists()


def test_a_missing_file_is_one_message(tmp_path, capsys):
    with serving({}) as (server, url):
        entry = row('mmseg', url + MMSEG_NAME.format(PREFIX))
        with pytest.raises(SystemExit):
            run(zoo_cli.main, ['--zoo', zoo_file_with(tmp_path, [entry]), 'download',
                               stem(entry), '--dest', str(tmp_path / 'dest'), '--quiet'])
    err = capsys.readouterr().err
    assert 'error: Could not download' in err and '404' in err and 'Traceback' not in err


def test_a_complete_part_file_is_verified_and_kept(tmp_path):
    dest = tmp_path / 'dest'
    dest.mkdir()
    name = MMSEG_NAME.format(PREFIX)
    (dest / (os.path.basename(name) + '.part')).write_bytes(PAYLOAD)
    with serving({name: PAYLOAD}) as (server, url):
        zoo_file = zoo_file_with(tmp_path, [row('mmseg', url + name)])
        path, _ = zoo.download_row(stem(row('mmseg', url + name)), str(dest), zoo_file,
                                   progress=False)
    with open(path, 'rb') as f:
        assert f.read() == PAYLOAD


@pytest.mark.parametrize('case', ['name-prefix', 'recorded-sha256', 'truncated'])
def test_a_corrupt_download_is_refused_and_removed(tmp_path, cache, case, capsys):
    tampered = PAYLOAD[:1000] + b'x' + PAYLOAD[1001:]
    if case == 'recorded-sha256':  # a PaddleSeg file: only the zoo's digest says
        name, served = '/ginet/model.pdparams', tampered
        changes = {'sha256': hashlib.sha256(PAYLOAD).hexdigest()}
    else:
        name = MMSEG_NAME.format(PREFIX)
        served, changes = (tampered if case == 'name-prefix' else PAYLOAD[:5000]), {}
    with serving({name: served}) as (server, url):
        entry = row('paddleseg' if case == 'recorded-sha256' else 'mmseg', url + name,
                    **changes)
        zoo_file = zoo_file_with(tmp_path, [entry])
        with pytest.raises(SystemExit) as exit_info:
            run(zoo_cli.main, ['--zoo', zoo_file, 'download', stem(entry), '--quiet'])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert 'error: The download of {}'.format(url + name) in err
    assert 'its SHA-256 is {}'.format(hashlib.sha256(served).hexdigest()) in err
    assert ('recorded in the model zoo' if changes else 'prefix in the file name') in err
    assert not [files for _, _, files in os.walk(cache) if files]  # nothing kept


def test_model_path_urls_are_verified_too(tmp_path, cache):
    name = MMSEG_NAME.format(PREFIX)
    with serving({name: PAYLOAD[:-1]}) as (server, url):
        with pytest.raises(PretrainedDownloadError, match='is corrupt or was tampered with'):
            fetch.download(url + name)
    assert not [files for _, _, files in os.walk(cache) if files]


def test_a_recorded_sha256_that_matches_is_accepted(tmp_path, cache):
    name = '/ginet/model.pdparams'
    entry = row('paddleseg', None, sha256=hashlib.sha256(PAYLOAD).hexdigest())
    with serving({name: PAYLOAD}) as (server, url):
        entry['weights'] = url + name
        path, digest = zoo.download_row(stem(entry), None, zoo_file_with(tmp_path, [entry]),
                                        progress=False)
    assert digest == entry['sha256'] and path == fetch.cache_path(url + name)


# --- the Python API ---------------------------------------------------------------


def test_get_row_is_the_entry():
    entry = ENTRIES[0]
    assert zoo.get_row(stem(entry)) == entry
    assert zoo.get_row(entry['config']) == entry


def test_create_model_loads_the_rows_weights(tmp_path, cache):
    data = make_data(tmp_path / 'data', num_train=2, num_val=1)
    (tmp_path / 'configs').mkdir()
    config = write_config(tmp_path / 'configs' / 'tiny_fcn.yml', data)
    weights = tmp_path / 'tiny.pdparams'
    trained = build_model(config)
    for param in trained.parameters():  # not the initialisation create_model makes
        param.set_value(paddle.rand(param.shape, dtype=param.dtype))
    paddle.save(trained.state_dict(), str(weights))
    payload = weights.read_bytes()
    entry = row('paddleseg', None, config='configs/tiny_fcn.yml',
                sha256=hashlib.sha256(payload).hexdigest())
    with serving({'/tiny/model.pdparams': payload}) as (server, url):
        entry['weights'] = url + '/tiny/model.pdparams'
        zoo_file = zoo_file_with(tmp_path, [entry])
        model = zoo.create_model('tiny_fcn', pretrained=True, path=zoo_file)
    assert not model.training
    expected = paddle.load(str(weights))
    state = model.state_dict()
    assert list(state) == list(expected)
    for key, value in expected.items():
        np.testing.assert_array_equal(state[key].numpy(), value.numpy(), err_msg=key)
    untrained = zoo.create_model('tiny_fcn', pretrained=False, path=zoo_file).state_dict()
    weights = [k for k in expected if k.endswith('.weight') and expected[k].ndim == 4]
    assert weights and not any(np.array_equal(untrained[k].numpy(), expected[k].numpy())
                               for k in weights)
