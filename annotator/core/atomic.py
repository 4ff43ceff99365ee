"""Atomic file replacement: the old file stays whole until the new one is complete on disk.

Write to a temporary file in the same folder (same file system, so the rename is atomic), flush
and fsync it, keep the previous version as `<name>.bak`, then `os.replace` it over the target and
fsync the folder. Any failure removes the temporary file and leaves the target untouched.

A writer killed outright (SIGKILL, power loss) cannot remove its temporary file, so each one is
named `.NAME.<host>-<pid>.<random>.tmp` (host: a short hash of this machine's name) and every
write first removes the temporary files of the same target that no live writer can be using:
written on this host by a pid that no longer runs, or older than STALE_AFTER seconds when the pid
cannot be told (another host, Windows, the older `.NAME.<random>.tmp` names). Never one of this
process (another thread may be writing it) nor one of a live pid.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import socket
import tempfile
import time
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
STALE_AFTER = 3600.0  # seconds: a temporary file whose writer cannot be told is stale after this
_HOST = hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]
# What follows ".NAME." in our temporary files: "<host>-<pid>.<random>" (older: "<random>").
_TEMP_REST = re.compile(r"(?:(?P<host>[0-9a-f]{8})-(?P<pid>[0-9]+)\.)?[A-Za-z0-9_]+")


def _temp_prefix(path: Path) -> str:
    return f".{path.name}.{_HOST}-{os.getpid()}."


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
    remove_stale_temps(path)
    if backup:
        remove_stale_temps(backup_path(path))
    fd, temp_name = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=folder)
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


def remove_stale_temps(path: Path) -> list[Path]:
    """Remove the temporary files of `path` left by writers that were killed; returns them.
    Errors (a read-only folder, a file that vanished meanwhile) are ignored: this is tidying."""
    path = Path(path)
    prefix = f".{path.name}."
    removed = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        match = _TEMP_REST.fullmatch(name[len(prefix) : -len(".tmp")])
        if match is None:
            continue  # not one of ours (e.g. another target whose name starts like this one)
        if not _stale(match, entry, now):
            continue
        try:
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    return removed


def _stale(match: re.Match, entry: os.DirEntry, now: float) -> bool:
    pid = match.group("pid")
    if match.group("host") == _HOST and pid is not None and os.name == "posix":
        pid = int(pid)
        if pid == os.getpid():
            return False  # this process: another thread may be writing it right now
        return not _pid_alive(pid)
    try:
        return now - entry.stat(follow_symlinks=False).st_mtime > STALE_AFTER
    except OSError:
        return False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # exists (owned by someone else), or cannot be told: keep the file
    return True


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
    fd, temp_name = tempfile.mkstemp(prefix=_temp_prefix(bak), suffix=".tmp", dir=path.parent)
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
