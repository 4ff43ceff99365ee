"""The project lock `<project>.lock`: one window edits a project, and a crash leaves no wedge.

The lock holds its holder's pid, host, start time and a random token as JSON. It survives a crash
(it is a plain file); a later window on the same host takes over a lock whose pid is dead. A live
holder (or one on another host, which cannot be checked) is reported so the window can warn and
let the person open anyway (`acquire(force=True)`).

The protocol, so that two processes never both believe they hold it:

* Create: the content is written and fsynced to a temporary file beside the lock, which is then
  hard-linked to the lock's name. `os.link` fails when a lock exists (a rename would silently
  replace it), so a lock is never seen half-written. Where the file system has no hard links
  (FAT, some network shares) the lock is created with O_EXCL, then written and fsynced; a reader
  therefore treats an empty or unreadable lock younger than `STALE_AFTER_S` as held (being
  written) and an older one as stale (its writer crashed).
* Remove or replace one lock (a take-over of a stale lock, a forced take-over, a release): first
  create its claim `<lock>.<id>.claim1` with O_EXCL, `id` naming that very lock (a hash of its
  bytes, inode and mtime). Exactly one process creates the claim; it checks that the lock is
  still the one it judged, then replaces it with `os.replace` (the name is never absent, so a
  plain creator cannot slip in) or removes it, and then removes the claim. Everyone else backs
  off and reads the lock again. A claim older than `STALE_AFTER_S` (its taker crashed between
  two system calls) is overridden by the next level, `.claim2`, and so on.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from annotator.errors import UserError

logger = logging.getLogger(__name__)

STALE_AFTER_S = 10.0  # an unreadable lock or a claim older than this belongs to a crashed process
_CLAIM_LEVELS = 4
_ACQUIRE_PATIENCE_S = 3.0  # how long acquire() retries while other processes change the lock


def lock_path(project_path: Path) -> Path:
    project_path = Path(project_path)
    return project_path.with_name(project_path.name + ".lock")


@dataclass(frozen=True)
class LockHolder:
    pid: int  # 0: unknown (the lock is still being written, or unreadable)
    host: str
    started: float  # seconds since the epoch

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.started))
        if self.pid <= 0:
            return f"a process that is still writing its lock file, since {when}"
        return f"process {self.pid} on {self.host} since {when}"


@dataclass(frozen=True)
class _Seen:
    """One lock file as read: `identity` names this very file (content, inode, mtime)."""

    identity: str
    holder: LockHolder | None  # None: empty or unreadable
    token: str | None
    age_s: float  # since its last modification

    def stale(self) -> bool:
        if self.holder is None:
            return self.age_s >= STALE_AFTER_S
        return not _alive(self.holder)

    def as_holder(self) -> LockHolder:
        return self.holder or LockHolder(0, "", time.time() - max(self.age_s, 0.0))


class ProjectLock:
    """An advisory lock file beside the project: `acquire()` returns None when this object now
    holds it, or the live holder (the window warns; `acquire(force=True)` takes it anyway)."""

    def __init__(self, project_path: Path):
        self.path = lock_path(Path(project_path).absolute())
        self._token = secrets.token_hex(16)
        self.held = False

    def acquire(self, force: bool = False) -> LockHolder | None:
        if self.held:
            return None
        deadline = time.monotonic() + _ACQUIRE_PATIENCE_S
        while True:
            if self._create():
                self.held = True
                return None
            seen = _read(self.path)
            if seen is not None:
                if seen.token == self._token:  # ours already (a release that could not remove it)
                    self.held = True
                    return None
                if not force and not seen.stale():
                    return seen.as_holder()
                if self._take_over(seen, forced=force):
                    self.held = True
                    return None
            if time.monotonic() > deadline:
                raise UserError(
                    f"Cannot take the lock {self.path}: other windows keep changing it."
                )
            time.sleep(0.01)  # another process is creating or taking over the lock right now

    def holder(self) -> LockHolder | None:
        """Whoever the lock file names (us included), or None when there is no lock file."""
        seen = _read(self.path)
        return None if seen is None else seen.as_holder()

    def release(self) -> None:
        """Remove the lock if it is still ours (a forced take-over by another window is kept)."""
        if not self.held:
            return
        self.held = False
        try:
            seen = _read(self.path)
            if seen is None or seen.token != self._token:
                return  # gone, or another window forcibly took it: keep theirs
            claims = self._claim(seen.identity)
            if claims is None:
                return  # another window is taking it over right now
            removed = False
            try:
                current = _read(self.path)
                if current is not None and current.identity == seen.identity:
                    _unlink(self.path)
                    removed = True
            finally:
                _drop_claims(claims if removed else claims[-1:])
        except (OSError, UserError):
            logger.warning("Could not remove the lock %s", self.path, exc_info=True)

    def __enter__(self) -> ProjectLock:
        holder = self.acquire()
        if holder is not None:
            raise UserError(
                f"{self.path.name[: -len('.lock')]} is open in another window ({holder.describe()})."
            )
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    # ------------------------------------------------------------------ internals

    def _content(self) -> bytes:
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.time(),
            "token": self._token,
        }
        return json.dumps(info).encode()

    def _temp_path(self) -> Path:
        return self.path.with_name(f".{self.path.name}.{self._token}.tmp")

    def _write_temp(self) -> Path:
        """Our content, complete and on disk, in a temporary file beside the lock."""
        temp = self._temp_path()
        try:
            fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                with os.fdopen(fd, "wb") as stream:
                    stream.write(self._content())
                    stream.flush()
                    os.fsync(stream.fileno())
            except BaseException:
                _unlink(temp)
                raise
        except OSError as exc:
            raise UserError(
                f"Cannot create the lock file {self.path}: {exc.strerror or exc}."
            ) from None
        return temp

    def _create(self) -> bool:
        """Create the lock when there is none; False when one exists."""
        temp = self._write_temp()
        try:
            os.link(temp, self.path)
            return True
        except FileExistsError:
            return False
        except OSError:  # no hard links on this file system (EPERM, ENOTSUP, EXDEV...)
            return self._create_exclusive()
        finally:
            _unlink(temp)

    def _create_exclusive(self) -> bool:
        """The fallback without hard links: readers see it empty for a moment (held if young)."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        except OSError as exc:
            raise UserError(
                f"Cannot create the lock file {self.path}: {exc.strerror or exc}."
            ) from None
        try:
            with os.fdopen(fd, "wb") as stream:
                stream.write(self._content())
                stream.flush()
                os.fsync(stream.fileno())
        except OSError as exc:
            raise UserError(
                f"Cannot write the lock file {self.path}: {exc.strerror or exc}."
            ) from None
        return True

    def _take_over(self, seen: _Seen, forced: bool) -> bool:
        """Replace the lock `seen` (stale, or forced) by ours, unless another process is on it."""
        claims = self._claim(seen.identity)
        if claims is None:
            return False
        replaced = False
        try:
            current = _read(self.path)
            if current is None or current.identity != seen.identity:
                return False  # replaced or released meanwhile: judge the new one
            temp = self._write_temp()
            try:
                os.replace(temp, self.path)
            except OSError as exc:
                _unlink(temp)
                raise UserError(
                    f"Cannot take over the lock file {self.path}: {exc.strerror or exc}."
                ) from None
            replaced = True
            logger.info(
                "Took over the lock %s from %s (%s)",
                self.path,
                seen.as_holder().describe(),
                "forced" if forced else "stale",
            )
            return True
        finally:
            # Once the lock is replaced, every claim on the old one is moot; otherwise only ours.
            _drop_claims(claims if replaced else claims[-1:])

    def _claim(self, identity: str) -> list[Path] | None:
        """The right to remove the lock `identity`: the claim files up to ours, or None."""
        claims: list[Path] = []
        for level in range(1, _CLAIM_LEVELS + 1):
            claim = self.path.with_name(f"{self.path.name}.{identity}.claim{level}")
            claims.append(claim)
            try:
                os.close(os.open(claim, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
                return claims
            except FileExistsError:
                pass
            except OSError as exc:
                raise UserError(
                    f"Cannot take over the lock file {self.path}: {exc.strerror or exc}."
                ) from None
            try:
                age = time.time() - claim.stat().st_mtime
            except FileNotFoundError:
                return None  # its taker just finished: the lock changed
            if age < STALE_AFTER_S:
                return None  # another process is taking it over right now
            # Its taker crashed mid-take-over: claim the next level.
        return None


def lock_holder_of(project_path: Path, own: ProjectLock | None = None) -> LockHolder | None:
    """The live holder of `project_path`'s lock, unless that is `own` (or nobody, or stale).

    For checking a target before writing to it (Save As): a LockHolder means another window
    has that project open.
    """
    seen = _read(lock_path(Path(project_path).absolute()))
    if seen is None or seen.stale():
        return None
    if own is not None and own.held and seen.token == own._token:
        return None
    return seen.as_holder()


def _read(path: Path) -> _Seen | None:
    """The lock file at `path` as it is now, or None when there is none."""
    try:
        with open(path, "rb") as stream:
            stat = os.fstat(stream.fileno())
            raw = stream.read()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UserError(f"Cannot read the lock file {path}: {exc.strerror or exc}.") from None
    fingerprint = raw + f"|{stat.st_ino}|{stat.st_mtime_ns}|{stat.st_size}".encode()
    identity = hashlib.sha256(fingerprint).hexdigest()[:24]
    age_s = time.time() - stat.st_mtime
    holder, token = _parse(raw)
    return _Seen(identity, holder, token, age_s)


def _parse(raw: bytes) -> tuple[LockHolder | None, str | None]:
    try:
        info = json.loads(raw)
        holder = LockHolder(int(info["pid"]), str(info["host"]), float(info["started"]))
        token = info.get("token")
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return None, None
    if holder.pid <= 0:
        return None, None
    return holder, None if token is None else str(token)


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        logger.warning("Could not remove %s", path, exc_info=True)


def _drop_claims(claims: list[Path]) -> None:
    for claim in claims:
        _unlink(claim)


def _alive(holder: LockHolder) -> bool:
    """Whether the holder may still run: its pid exists on this host; another host: assume so."""
    if holder.host != socket.gethostname():
        return True
    if holder.pid == os.getpid():
        return True  # another window of this very process
    if os.name == "nt":
        return True  # os.kill would terminate the process there: warn instead
    try:
        os.kill(holder.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return True  # cannot tell: be safe and warn
    return True
