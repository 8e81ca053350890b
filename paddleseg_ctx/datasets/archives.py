"""Reading the downloaded archives safely, and the shared pieces of
``prepare``: progress bars, worker processes, files written under a
temporary name and moved into place.

Archives (zip, tar, tar.gz, ...) are read member by member; only regular
files whose names match a part's ``extract`` patterns are written, by this
module, under the extraction folder.  A member with an absolute name or a
``..`` component ends the run before anything of that archive is used, and
so does a link or device member among those to extract (the official
archives have none).
"""
import fnmatch
import glob
import multiprocessing
import os
import shutil
import sys
import tarfile
import zipfile
import zlib

from paddleseg_ctx.errors import UserError
from paddleseg_ctx.files import atomic_write

__all__ = ['PrepareError', 'extract', 'locate', 'parallel', 'place',
           'progress']


class PrepareError(UserError, ValueError):
    """A download (or a data file) is missing, damaged or not the official
    one; the message names the file and what to download."""


def progress(total, desc, unit='file'):
    """A progress bar on stderr with the count, rate and ETA (tqdm, which
    PaddleSeg depends on)."""
    from tqdm import tqdm
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr,
                mininterval=1.0, unit_scale=unit == 'B', dynamic_ncols=True)


def parallel(function, items, workers, desc):
    """``[function(item) for item in items]`` in any order, on ``workers``
    processes (1: here), with a progress bar; results that are None are
    dropped."""
    results = []
    bar = progress(len(items), desc)
    try:
        if workers <= 1 or len(items) < 2:
            for item in items:
                results.append(function(item))
                bar.update(1)
        else:
            chunk = max(1, min(64, len(items) // (workers * 8)))
            # close + join, not terminate: Paddle, when imported, reports a
            # terminated worker as a fatal error
            pool = multiprocessing.get_context('fork').Pool(workers)
            try:
                for result in pool.imap_unordered(function, items, chunk):
                    results.append(result)
                    bar.update(1)
                pool.close()
            except BaseException:
                pool.terminate()
                raise
            finally:
                pool.join()
    finally:
        bar.close()
    return [r for r in results if r is not None]


def place(source, path, tmp_dir):
    """Put the file ``source`` at ``path`` (a hard link where the file
    system allows, else a copy); an existing ``path`` is kept (restart)."""
    if os.path.exists(path):
        return
    if not os.path.isfile(source):
        raise PrepareError('{} does not exist, but the download lists it: '
                           'the download is incomplete'.format(source))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        os.link(source, path)
    except OSError:
        atomic_write(path, lambda tmp: shutil.copyfile(source, tmp),
                     tmp_dir=tmp_dir)


def locate(base, markers, depth=3):
    """The folder at or up to ``depth`` levels below ``base`` that holds all
    ``markers`` (relative paths), or None; the shallowest wins."""
    for level in range(depth + 1):
        pattern = os.path.join(base, *(['*'] * level))
        for folder in sorted(glob.glob(pattern)):
            if os.path.isdir(folder) and all(
                    os.path.exists(os.path.join(folder, m)) for m in markers):
                return folder
    return None


def member_problem(name):
    """Why the archive member ``name`` must not be extracted, or None."""
    parts = name.replace('\\', '/').split('/')
    if name.startswith(('/', '\\')) or (len(name) > 1 and name[1] == ':'):
        return 'has an absolute path'
    if '..' in parts:
        return 'has a ".." component'
    return None


def _wanted(name, patterns):
    return any(fnmatch.fnmatchcase('/' + name, p) for p in patterns)


def _refuse(archive, name, why, download):
    raise PrepareError(
        'archive {}: member {!r} {}; refusing to extract it. This is not '
        'the official archive: {}.'.format(archive, name, why, download))


def _damaged(archive, err, download):
    return PrepareError(
        'archive {} is truncated or damaged ({}); {} again.'.format(
            archive, str(err) or type(err).__name__, download))


def _copy_member(stream, target):
    os.makedirs(os.path.dirname(target), exist_ok=True)
    with open(target, 'wb') as out:
        shutil.copyfileobj(stream, out, 1 << 20)


def _extract_zip(archive, out_dir, patterns, download):
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise _damaged(archive, err, download) from None
    with zf:
        members = zf.infolist()
        for info in members:
            why = member_problem(info.filename)
            if why:
                _refuse(archive, info.filename, why, download)
        todo = [m for m in members
                if not m.is_dir() and _wanted(m.filename, patterns)]
        for info in todo:  # zip symlinks: unix mode S_IFLNK
            if (info.external_attr >> 16) & 0o170000 == 0o120000:
                _refuse(archive, info.filename, 'is a symbolic link',
                        download)
        bar = progress(len(todo), 'extract ' + os.path.basename(archive))
        try:
            for info in todo:
                with zf.open(info) as stream:
                    _copy_member(stream, os.path.join(out_dir, info.filename))
                bar.update(1)
        except (zipfile.BadZipFile, OSError, EOFError, zlib.error) as err:
            raise _damaged(archive, err, download) from None
        finally:
            bar.close()


def _extract_tar(archive, out_dir, patterns, download):
    size = os.path.getsize(archive)
    bar = progress(size, 'extract ' + os.path.basename(archive), unit='B')
    try:
        with open(archive, 'rb') as raw, tarfile.open(
                fileobj=raw, mode='r:*') as tf:
            for member in tf:  # streamed: a .tgz is decompressed once
                bar.update(raw.tell() - bar.n)
                why = member_problem(member.name)
                if why:
                    _refuse(archive, member.name, why, download)
                if member.isdir() or not _wanted(member.name, patterns):
                    continue
                if not member.isfile():
                    _refuse(archive, member.name,
                            'is a link or a device file', download)
                stream = tf.extractfile(member)
                _copy_member(stream, os.path.join(out_dir, member.name))
                if stream.tell() != member.size:
                    raise EOFError('member {} ends early'.format(member.name))
            if tf.fileobj is raw:  # uncompressed: ends with zero blocks
                raw.seek(tf.offset)
                if len(raw.read(tarfile.BLOCKSIZE)) < tarfile.BLOCKSIZE:
                    raise EOFError('it ends without the end-of-archive '
                                   'blocks')
            bar.update(size - bar.n)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise _damaged(archive, err, download) from None
    finally:
        bar.close()


def _is_tar(path):
    try:
        return tarfile.is_tarfile(path)
    except (OSError, EOFError, zlib.error):
        return False


def extract(archive, out_dir, patterns, download):
    """Extract the members of ``archive`` (zip or tar, any compression)
    matching ``patterns`` into ``out_dir``, which appears only once all are
    written (a half-written ``out_dir.tmp`` of an interrupted run is
    redone).  ``download`` says where to get the archive again."""
    if os.path.isdir(out_dir):
        return
    tmp = out_dir + '.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    if zipfile.is_zipfile(archive):
        _extract_zip(archive, tmp, patterns, download)
    elif _is_tar(archive):
        _extract_tar(archive, tmp, patterns, download)
    else:
        raise _damaged(archive, 'neither a complete zip file nor a tar '
                       'archive', download)
    os.replace(tmp, out_dir)
