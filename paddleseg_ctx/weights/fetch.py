"""Where weights come from: URLs, archives and the download cache, with a
clear way out when offline.

Published configs keep the weight URLs of their source (``model.backbone.pretrained``,
``model.pretrained``).  ``fetch(url)`` returns a local ``.pdparams`` file:

* cache hit: no network.  The cache is PaddleSeg's own download cache,
  ``$SEG_HOME/pretrained_model`` (default ``~/.paddleseg/pretrained_model``),
  with PaddleSeg's layout, so weights PaddleSeg downloaded before are reused;
* otherwise one download with a short timeout (archives are unpacked),
  verified when its SHA-256 is known (``verify``: OpenMMLab names end in its
  first 8 hex digits; the model zoo may record the whole digest): a corrupt
  or tampered file is removed and refused;
* ``download_resumable`` (``python -m paddleseg_ctx.zoo download``) does the
  same through a ``.part`` file that an interrupted download continues;
* PyTorch checkpoints (``.pth``: mmsegmentation, sssegmentation, OpenMMLab
  ImageNet backbones; recognised by content) are converted once by
  ``paddleseg_ctx.weights.conversion`` to a ``.pdparams`` file next to the download;
* ``local_file`` does the same for local files: archives are unpacked, PyTorch
  checkpoints converted (cached under ``<cache>/converted/``, keyed by the
  file's path, size and modification time);
* failure: ``PretrainedDownloadError`` naming the URL, the path where the
  file can be put by hand, and the config key that can point at a local file.
  No lock or partial files are left behind.

``PADDLESEG_PATCHES`` routes PaddleSeg's ``utils.load_pretrained_model`` /
``download_pretrained_model`` (used by every backbone and model) through the
same code, the file read by the restricted reader (``paddle_file``);
``paddleseg_ctx.compat`` applies them on import.
"""
import contextlib
import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import zipfile
from urllib.parse import unquote, urlparse

import paddleseg
import requests
import tqdm
from paddleseg.cvlibs import manager
from paddleseg.utils import logger, seg_env
from paddleseg.utils import utils as paddleseg_utils

from paddleseg_ctx.errors import PretrainedDownloadError
from paddleseg_ctx.files import atomic_write
from paddleseg_ctx.weights.conversion import convert_checkpoint, save_converted
from paddleseg_ctx.weights.paddle_file import read_paddle_state_dict, restricted_paddle_load
from paddleseg_ctx.weights.torch_file import is_torch_checkpoint

__all__ = ['fetch', 'download', 'download_resumable', 'local_file', 'paddle_weights',
           'cache_path', 'download_target', 'expected_digest', 'verify', 'sha256_of',
           'TIMEOUT', 'PADDLESEG_PATCHES']

# (connect, read) seconds: an offline machine fails within seconds.
TIMEOUT = (5, 30)
_ARCHIVES = ('.tar.gz', '.tgz', '.tar', '.zip')
_TORCH_SUFFIXES = ('.pth', '.pt')
# OpenMMLab checkpoint names end in -<first 8 hex digits of the SHA-256>.pth.
_OPENMMLAB_NAME = re.compile(r'_\d{8}_\d{6}-([0-9a-f]{8})\.pth$')
WHOLE_MODEL_KEY = '`model.pretrained` (or `--model_path`)'
BACKBONE_KEY = '`model.backbone.pretrained`'


def is_url(path):
    """True for ``scheme://host/...`` (PaddleSeg's own test)."""
    return bool(urlparse(path).netloc)


def _is_archive(name):
    return name.lower().endswith(_ARCHIVES)


def _names(url):
    """PaddleSeg's cache naming: ``(folder, file)`` under the cache root."""
    parts = unquote(url).split('?')[0].split('/')
    if _is_archive(parts[-1]):
        return parts[-1].split('.')[0], 'model.pdparams'
    return parts[-2], parts[-1]


def cache_path(url):
    """The file ``download(url)`` returns (PaddleSeg's layout): the
    ``.pdparams`` of an archive, else the file as published."""
    folder, name = _names(url)
    return os.path.join(seg_env.PRETRAINED_MODEL_HOME, folder, name)


def download_target(url):
    """Where the file behind ``url`` goes, as downloaded: the ``.pdparams``
    cache path, or for an archive ``<cache root>/<archive name>``."""
    name = unquote(url).split('?')[0].split('/')[-1]
    if _is_archive(name):
        return os.path.join(seg_env.PRETRAINED_MODEL_HOME, name)
    return cache_path(url)


def fetch(url, config_key=WHOLE_MODEL_KEY):
    """Return a local ``.pdparams`` file for ``url``, downloading (and, for a
    PyTorch checkpoint, converting) it at most once.  ``config_key`` names
    the setting that holds ``url`` (for the error message)."""
    return paddle_weights(download(url, config_key))


def download(url, config_key=WHOLE_MODEL_KEY):
    """Return the local copy of ``url`` (``cache_path(url)``), downloading it
    at most once; archives are unpacked, nothing is converted."""
    path, target = cache_path(url), download_target(url)
    if os.path.isfile(path):
        return path
    if os.path.isfile(target):  # an archive put there by hand
        return _unpack(target, path)
    logger.info('Downloading {} (timeout {} s)'.format(url, TIMEOUT[0]))
    try:
        if target == path:
            atomic_write(path, lambda part: _download(url, part))
            return path
        with tempfile.TemporaryDirectory(dir=seg_env.PRETRAINED_MODEL_HOME) as tmp:
            archive = os.path.join(tmp, os.path.basename(target))
            _download(url, archive)
            return _unpack(archive, path)
    except (requests.RequestException, OSError, tarfile.TarError,
            zipfile.BadZipFile) as error:
        raise PretrainedDownloadError(
            'Could not download pretrained weights from\n  {}\n({}: {}).\n'
            'If this machine is offline, either\n'
            '  - download that file elsewhere and put it at\n      {}\n'
            '    (it is used from there next time, without downloading), or\n'
            '  - set {} in the config to a local .pdparams / .pth / .tar.gz file.'
            .format(url, type(error).__name__, error, target,
                    config_key)) from None


def local_file(path_or_url, config_key=WHOLE_MODEL_KEY):
    """``fetch`` URLs, unpack local archives and convert local PyTorch
    checkpoints; other paths are returned unchanged."""
    if is_url(path_or_url):
        return fetch(path_or_url, config_key)
    if _is_archive(path_or_url) and os.path.isfile(path_or_url):
        folder, name = _names(path_or_url)
        unpacked = os.path.join(seg_env.PRETRAINED_MODEL_HOME, 'local', folder, name)
        return _unpack(path_or_url, unpacked)
    return paddle_weights(path_or_url)


def paddle_weights(path):
    """``path``, or for a PyTorch checkpoint (by suffix or content) its
    converted ``.pdparams``, converted on first use: next to ``path`` when
    it is in the download cache, else under ``<cache>/converted/``."""
    if not os.path.isfile(path) or not (path.lower().endswith(_TORCH_SUFFIXES) or
                                        is_torch_checkpoint(path)):
        return path
    converted = _converted_path(path)
    if not os.path.isfile(converted):
        save_converted(convert_checkpoint(path), converted)
    return converted


def _converted_path(path):
    path = os.path.abspath(path)
    stem, ext = os.path.splitext(os.path.basename(path))
    name = stem + ('.converted.pdparams' if ext == '.pdparams' else '.pdparams')
    cache = os.path.abspath(seg_env.PRETRAINED_MODEL_HOME)
    if path.startswith(cache + os.sep):  # a download, which never changes
        return os.path.join(os.path.dirname(path), name)
    info = os.stat(path)
    key = '{}|{}|{}'.format(os.path.realpath(path), info.st_size, info.st_mtime_ns)
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    return os.path.join(cache, 'converted', digest, name)


def _download(url, path):
    with requests.get(url, stream=True, timeout=TIMEOUT) as response:
        response.raise_for_status()
        with open(path, 'wb') as file:
            for chunk in response.iter_content(chunk_size=1 << 20):
                file.write(chunk)
    verify(path, url)


def sha256_of(path):
    """The SHA-256 hex digest of the file ``path``."""
    digest = hashlib.sha256()
    with open(path, 'rb') as file:
        for block in iter(lambda: file.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def expected_digest(url, sha256=None):
    """``(digest, where)``: the SHA-256 (or its first hex digits) the file
    behind ``url`` must have, and where that comes from: ``sha256`` (the full
    digest recorded in the model zoo), else the prefix in an OpenMMLab file
    name (``..._20200618_074450-ef8f069b.pth``: the first 8 hex digits of the
    file's SHA-256, as mmcv's ``publish_model`` names it); ``(None, None)``
    when neither is known."""
    if sha256:
        return sha256.lower(), 'the SHA-256 recorded in the model zoo'
    name = unquote(url).split('?')[0].split('/')[-1]
    match = _OPENMMLAB_NAME.search(name)
    if match:
        return match.group(1), 'the SHA-256 prefix in the file name'
    return None, None


def verify(path, url, sha256=None, label=None):
    """Check the downloaded file ``path`` of ``url`` against
    :func:`expected_digest`; on a mismatch remove it and raise
    ``PretrainedDownloadError``.  Returns the file's SHA-256."""
    expected, where = expected_digest(url, sha256)
    actual = sha256_of(path)
    if expected is not None and not actual.startswith(expected):
        with contextlib.suppress(OSError):
            os.remove(path)
        raise PretrainedDownloadError(
            'The download of {} is corrupt or was tampered with: its SHA-256 is {}, '
            'but {} says {}. The file was removed; download it again (or from '
            'elsewhere), and if it keeps failing, report the URL.'.format(
                label or url, actual, where, expected))
    return actual


def download_resumable(url, path, sha256=None, progress=True):
    """Download ``url`` to ``path`` through ``path + '.part'``: an
    interrupted download continues where it stopped (an HTTP range request;
    from the start if the server ignores it), with a progress bar on stderr.
    The file is verified (:func:`verify`) before it is renamed to ``path``;
    a corrupt one is removed.  Returns its SHA-256."""
    part = path + '.part'
    try:
        _continue_download(url, part, progress, os.path.basename(path))
    except (requests.RequestException, OSError) as error:
        raise PretrainedDownloadError(
            'Could not download {}\n({}: {}).\nRun the same command again to continue '
            '(what arrived is kept in {}), or download the file elsewhere and put it '
            'at\n  {}'.format(url, type(error).__name__, error, part, path)) from None
    digest = verify(part, url, sha256, label='{} ({})'.format(url, path))
    os.replace(part, path)
    return digest


def _continue_download(url, part, progress, name):
    """Append the rest of ``url`` to ``part`` (all of it if the server
    ignores the range request)."""
    os.makedirs(os.path.dirname(os.path.abspath(part)), exist_ok=True)
    have = os.path.getsize(part) if os.path.isfile(part) else 0
    headers = {'Range': 'bytes={}-'.format(have)} if have else {}
    with requests.get(url, stream=True, timeout=TIMEOUT, headers=headers) as response:
        complete = have and response.status_code == 416  # nothing after `have`
        if not complete:
            response.raise_for_status()
            if response.status_code != 206:  # the whole file: start again
                have = 0
            size = response.headers.get('Content-Length')
            with open(part, 'ab' if have else 'wb') as file, tqdm.tqdm(
                    total=have + int(size) if size else None, initial=have, unit='B',
                    unit_scale=True, unit_divisor=1024, disable=not progress,
                    desc=name) as bar:
                for chunk in response.iter_content(chunk_size=1 << 16):  # lose little if cut
                    file.write(chunk)
                    bar.update(len(chunk))


def _unpack(archive, path):
    """Copy the weights file inside ``archive`` to ``path``; return ``path``."""
    def copy(target):
        with open(target, 'wb') as file:
            shutil.copyfileobj(source, file)

    with _weights_member(archive) as source:
        atomic_write(path, copy)
    return path


@contextlib.contextmanager
def _weights_member(archive):
    """Open the ``model.pdparams`` (or only ``.pdparams``) member of ``archive``."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as bundle:
            yield bundle.open(_pick_weights(archive, bundle.namelist()))
    else:
        with tarfile.open(archive) as bundle:
            names = [m.name for m in bundle.getmembers() if m.isfile()]
            yield bundle.extractfile(_pick_weights(archive, names))


def _pick_weights(archive, names):
    weights = [n for n in names if n.endswith('.pdparams')]
    chosen = [n for n in weights if os.path.basename(n) == 'model.pdparams']
    chosen = chosen or weights
    if len(chosen) != 1:
        raise PretrainedDownloadError(
            'Archive {} should hold one model.pdparams, found: {}'.format(
                archive, ', '.join(weights) or 'no .pdparams file'))
    return chosen[0]


def _config_key(layer):
    """The config key that holds ``layer``'s ``pretrained`` setting."""
    backbone_modules = {
        component.__module__
        for component in manager.BACKBONES.components_dict.values()
    }
    if type(layer).__module__ in backbone_modules:
        return BACKBONE_KEY
    return WHOLE_MODEL_KEY


# PaddleSeg's loader reads only local .pdparams: resolve URLs and archives first, naming the
# config key; its paddle.load is the restricted reader.
def _load_pretrained_model(original):
    def load_pretrained_model(model, pretrained_model):
        if pretrained_model is None:
            return original(model, pretrained_model)
        key = _config_key(model)
        path = local_file(pretrained_model, key)
        try:
            with restricted_paddle_load():
                return original(model, path)
        except Exception:
            if os.path.isfile(path):  # say which file of which key is damaged
                read_paddle_state_dict(path, '{} ({})'.format(pretrained_model, key))
            raise
    load_pretrained_model.__doc__ = original.__doc__
    return load_pretrained_model


# Replaces PaddleSeg's downloader (15 s timeout, stale .lock on failure); vit/cae backbones call it directly.
def _download_pretrained_model(original):
    def download_pretrained_model(url):
        return fetch(url, '{} / {}'.format(BACKBONE_KEY, WHOLE_MODEL_KEY))
    return download_pretrained_model


# (owner, attribute, make(original)) for paddleseg_ctx.compat.Fix.  The package
# alias `paddleseg.utils.load_pretrained_model` is used by e.g. models/enet.py.
PADDLESEG_PATCHES = [
    (paddleseg_utils, 'load_pretrained_model', _load_pretrained_model),
    (paddleseg.utils, 'load_pretrained_model', _load_pretrained_model),
    (paddleseg_utils, 'download_pretrained_model', _download_pretrained_model),
]
