"""Files that are whole or absent: a write interrupted at any moment (an
error, a kill) leaves the old file or none, never a truncated one.

Imports nothing but the standard library, so every part of the package can
use it.
"""
import contextlib
import os
import uuid

__all__ = ['atomic_write', 'atomic_write_text', 'fsync_dir']


def fsync_dir(directory):
    """Flush ``directory``'s entries (a rename in it) to disk, where the
    system allows it."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. Windows cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path, write, fsync=False, tmp_dir=None):
    """Create or replace ``path`` with what ``write(tmp_path)`` writes to a
    temporary file next to it (``.<name>.<random>.tmp`` in ``path``'s folder,
    which is created if needed), renamed over ``path`` when ``write``
    returns; removed when it fails.

    Args:
        path (str): The file to write.
        write: ``write(tmp_path)`` writes the whole content to ``tmp_path``.
        fsync (bool): Also flush the file and the rename to disk before
            returning, so that they survive a power cut (checkpoints).
        tmp_dir (str|None): Folder for the temporary file instead of
            ``path``'s own (same file system; ``datasets prepare`` keeps its
            temporaries out of the tree it builds).
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    if tmp_dir is not None:
        os.makedirs(tmp_dir, exist_ok=True)
    tmp = os.path.join(tmp_dir or directory, '.{}.{}.tmp'.format(
        os.path.basename(path), uuid.uuid4().hex[:12]))
    try:
        write(tmp)
        if fsync:
            with open(tmp, 'rb') as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    if fsync:
        fsync_dir(directory)


def atomic_write_text(path, text, tmp_dir=None):
    """:func:`atomic_write` of the string ``text`` (``tmp_dir`` as there)."""

    def write(tmp):
        with open(tmp, 'w') as f:
            f.write(text)

    atomic_write(path, write, tmp_dir=tmp_dir)
