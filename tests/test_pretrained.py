"""paddleseg_ctx.weights.fetch: offline-friendly pretrained weights, for our
``fetch`` and for PaddleSeg's own backbone/model ``pretrained`` loading.
Network use is limited to 127.0.0.1 (a closed port and a local HTTP server)."""
import contextlib
import functools
import http.server
import os
import tarfile
import threading
import time

import numpy as np
import paddle
import paddleseg
import pytest
import requests
from paddleseg.utils import seg_env

from reference_imports import import_torch
from paddleseg_ctx import compat, weights
from paddleseg_ctx.errors import PretrainedDownloadError
from paddleseg_ctx.weights import fetch as pretrained

UNREACHABLE = 'http://127.0.0.1:9/'  # discard port: closed, refuses at once


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty PaddleSeg download cache."""
    root = tmp_path / 'cache'
    root.mkdir()
    monkeypatch.setattr(seg_env, 'PRETRAINED_MODEL_HOME', str(root))
    return root


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError('unexpected download')
    monkeypatch.setattr(requests, 'get', refuse)


def files_in(root):
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, names in os.walk(root) for f in names)


def make_state(seed):
    return {'w': paddle.to_tensor(np.random.RandomState(seed).rand(2, 3).astype('float32'))}


def save_archive(path, state, member='weights/model.pdparams'):
    """A PaddleSeg-style .tar.gz holding ``state`` as ``member``."""
    params = str(path) + '.pdparams'
    paddle.save(state, params)
    with tarfile.open(path, 'w:gz', compresslevel=1) as archive:
        archive.add(params, arcname=member)
    os.remove(params)
    return str(path)


def assert_same_state(path, state):
    loaded = paddle.load(path)
    assert sorted(loaded) == sorted(state)
    for key in state:
        np.testing.assert_array_equal(np.asarray(loaded[key]), state[key].numpy())


def assert_clear_error(error, url, key):
    message = str(error.value)
    assert url in message
    assert pretrained.download_target(url) in message
    assert key in message


@pytest.mark.parametrize('name', ['x.pdparams', 'resnet_tiny.tar.gz'])
def test_unreachable_url_fails_fast_with_clear_message(cache, name):
    url = UNREACHABLE + 'weights/' + name
    start = time.time()
    with pytest.raises(PretrainedDownloadError) as error:
        pretrained.fetch(url)
    assert time.time() - start < 10
    assert_clear_error(error, url, 'model.pretrained')
    assert str(cache) in pretrained.download_target(url)
    assert files_in(cache) == []  # no .lock, no partial download


def test_whole_model_weights_url_goes_through_fetch(cache):
    url = UNREACHABLE + 'gcnet/model.pdparams'
    with pytest.raises(weights.WeightsError) as error:
        weights.resolve_weights(url)
    assert_clear_error(error, url, 'model.pretrained')


def test_whole_model_weights_from_local_archive(cache, tmp_path, no_network):
    state = make_state(4)
    archive = save_archive(tmp_path / 'gcnet_tiny.tar.gz', state)
    assert_same_state(weights.resolve_weights(archive), state)


def test_file_at_announced_path_is_used_without_network(cache, no_network):
    url = UNREACHABLE + 'gcnet/model.pdparams'
    state = make_state(0)
    os.makedirs(os.path.dirname(pretrained.download_target(url)))
    paddle.save(state, pretrained.download_target(url))
    assert_same_state(pretrained.fetch(url), state)


def test_archive_at_announced_path_is_unpacked_without_network(cache, no_network):
    url = UNREACHABLE + 'dygraph/resnet_tiny.tar.gz'
    state = make_state(1)
    save_archive(pretrained.download_target(url), state)
    path = pretrained.fetch(url)
    assert path == pretrained.cache_path(url)
    assert_same_state(path, state)
    os.remove(pretrained.download_target(url))
    assert pretrained.fetch(url) == path  # cached


@contextlib.contextmanager
def http_server(directory):
    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=str(directory))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield 'http://127.0.0.1:{}/'.format(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def test_download_unpacks_archive_and_caches_it(cache, tmp_path):
    served = tmp_path / 'served'
    served.mkdir()
    state = make_state(2)
    save_archive(served / 'resnet_tiny.tar.gz', state)
    with http_server(served) as root:
        url = root + 'resnet_tiny.tar.gz'
        path = pretrained.fetch(url)
    assert_same_state(path, state)
    assert files_in(cache) == ['resnet_tiny/model.pdparams']
    assert pretrained.fetch(url) == path  # server gone: served from the cache


def test_backbone_with_unreachable_url_gives_same_error(cache):
    url = UNREACHABLE + 'resnet18_vd_ssld_v2.tar.gz'
    with pytest.raises(PretrainedDownloadError) as error:
        paddleseg.models.backbones.ResNet18_vd(pretrained=url)
    assert_clear_error(error, url, 'model.backbone.pretrained')
    assert files_in(cache) == []


def test_model_with_unreachable_url_names_model_key(cache):
    url = UNREACHABLE + 'bisenet/model.pdparams'
    with pytest.raises(PretrainedDownloadError) as error:
        paddleseg.models.BiSeNetV2(num_classes=2, lambd=0.25, pretrained=url)
    assert_clear_error(error, url, 'model.pretrained')


def test_without_fix_paddleseg_leaves_a_stale_lock(cache):
    fix = compat.FIXES['pretrained_offline']
    fix.revert()
    try:
        with pytest.raises(requests.ConnectionError):
            paddleseg.models.backbones.ResNet18_vd(
                pretrained=UNREACHABLE + 'resnet18_vd_ssld_v2.tar.gz')
    finally:
        fix.apply()
    assert files_in(cache) == ['resnet18_vd_ssld_v2.download.lock']


@pytest.fixture(scope='module')
def resnet18_state():
    paddle.seed(3)
    return paddleseg.models.backbones.ResNet18_vd().state_dict()


def test_backbone_loads_local_archive(cache, tmp_path, resnet18_state, no_network):
    archive = save_archive(tmp_path / 'resnet18_vd_ssld_v2.tar.gz', resnet18_state)
    backbone = paddleseg.models.backbones.ResNet18_vd(pretrained=archive)
    for key, value in backbone.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), resnet18_state[key].numpy())


def test_backbone_loads_local_pdparams(tmp_path, resnet18_state, no_network):
    path = str(tmp_path / 'resnet18.pdparams')
    paddle.save(resnet18_state, path)
    backbone = paddleseg.models.backbones.ResNet18_vd(pretrained=path)
    for key, value in backbone.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), resnet18_state[key].numpy())


def test_pth_url_is_downloaded_and_converted_once(cache, tmp_path, monkeypatch):
    torch = import_torch()
    maps = tmp_path / 'maps'
    maps.mkdir()
    (maps / 'tiny.yml').write_text("detect: {all: ['net\\..*']}\n"
                                   "rename: [['net\\.(.+)', '\\1']]\n")
    monkeypatch.setenv('PADDLESEG_CTX_KEYMAPS', str(maps))
    served = tmp_path / 'served' / 'v0.5' / 'gcnet_tiny'
    served.mkdir(parents=True)
    torch.save({'state_dict': {'net.w': torch.arange(3.)}, 'meta': {}},
               served / 'gcnet_tiny_20200618-4b0fd17b.pth',
               _use_new_zipfile_serialization=False)
    with http_server(tmp_path / 'served') as root:
        url = root + 'v0.5/gcnet_tiny/gcnet_tiny_20200618-4b0fd17b.pth'
        path = pretrained.fetch(url)
    assert files_in(cache) == ['gcnet_tiny/gcnet_tiny_20200618-4b0fd17b.pdparams',
                               'gcnet_tiny/gcnet_tiny_20200618-4b0fd17b.pth']
    assert path == str(cache / 'gcnet_tiny' / 'gcnet_tiny_20200618-4b0fd17b.pdparams')
    np.testing.assert_array_equal(np.asarray(paddle.load(path)['w']), [0, 1, 2])
    assert weights.resolve_weights(url) == path  # server gone: cached


def test_unreachable_pth_url_says_where_to_put_the_file(cache):
    url = UNREACHABLE + 'v0.5/gcnet/gcnet_r50-d8_20200618_074436-4b0fd17b.pth'
    with pytest.raises(PretrainedDownloadError) as error:
        weights.resolve_weights(url)
    assert_clear_error(error, url, 'model.pretrained')
    assert pretrained.download_target(url).endswith('gcnet/gcnet_r50-d8_20200618_074436-4b0fd17b.pth')
    assert '.pth' in str(error.value).split('set ')[-1]  # a local .pth may be configured
