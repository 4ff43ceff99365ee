"""Atomic file replacement: the old file stays whole until the new one is complete on disk.

Write to a temporary file in the same folder (same file system, so the rename is atomic), flush
and fsync it, keep the previous version as `<name>.bak`, then `os.replace` it over the target and
fsync the folder. Any failure removes the temporary file and leaves the target untouched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO


def _read_umask() -> int:
    # os.umask can only be read by setting it: done once, at import, not while threads write.
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


_UMASK = _read_umask()


def backup_path(path: Path) -> Path:
    path = Path(path)
    return path.with_name(path.name + ".bak")


def atomic_write_bytes(path: Path, data: bytes, backup: bool = False) -> None:
    """Replace `path` by `data` atomically; with `backup`, the previous file becomes `path.bak`.

    Raises OSError (the target unchanged, no temporary file left behind) when anything fails.
    """
    with atomic_writer(path, backup=backup) as stream:
        stream.write(data)


@contextmanager
def atomic_writer(path: Path, backup: bool = False, durable: bool = True) -> Iterator[BinaryIO]:
    """A binary stream whose content replaces `path` atomically when the block ends normally.

    For writers that want a file object (np.savez, PIL's save). With `durable` (the default) the
    data and the rename are fsynced; caches that detect torn entries on read may skip that.
    An exception in the block, or a failed write, leaves `path` untouched and no temporary file.
    """
    path = Path(path)
    folder = path.parent
    fd, temp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    temp = Path(temp_name)
    try:
        with os.fdopen(fd, "wb") as stream:
            yield stream
            stream.flush()
            if durable:
                os.fsync(stream.fileno())
        _copy_mode(path, temp)
        if backup and path.exists():
            _keep_backup(path)
        os.replace(temp, path)
    except BaseException:
        try:
            temp.unlink()
        except OSError:
            pass
        raise
    if durable:
        _fsync_folder(folder)


def _copy_mode(existing: Path, temp: Path) -> None:
    """mkstemp creates 0600 files; give the new version the old one's mode (or the umask's)."""
    try:
        mode = existing.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o666 & ~_UMASK
    os.chmod(temp, mode)


def _keep_backup(path: Path) -> None:
    """Make `path.bak` a complete copy of `path` (a hard link when possible: instant and safe,
    since `path` itself is replaced, not rewritten)."""
    bak = backup_path(path)
    fd, temp_name = tempfile.mkstemp(prefix=f".{bak.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    temp = Path(temp_name)
    try:
        try:
            temp.unlink()
            os.link(path, temp)
        except OSError:  # no hard links here (FAT, some network shares): copy
            shutil.copy2(path, temp)
            with open(temp, "rb+") as stream:
                os.fsync(stream.fileno())
        os.replace(temp, bak)
    except BaseException:
        try:
            temp.unlink()
        except OSError:
            pass
        raise


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable (POSIX); folders cannot be opened for fsync on Windows."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
