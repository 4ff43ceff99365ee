"""Autosave to a sidecar file, restore on open, and a lock file against two windows on one project.

The sidecar `<project>.autosave` sits beside the project and holds the same COCO document (same
image file names, since it is in the same folder); it never replaces the project itself, so a
crash during autosave cannot harm the last explicit save. An explicit save discards it.

The lock `<project>.lock` holds the holder's pid, host and start time as JSON. It survives a crash
(it is a plain file), and a later window on the same host takes over a lock whose pid is dead.
A live holder (or one on another host, which cannot be checked) is reported so the window can
warn and let the person open anyway.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from annotator.core.atomic import atomic_write_bytes
from annotator.core.coco import (
    LoadReport,
    parse_document,
    project_document,
    read_document,
    serialize_document,
)
from annotator.core.project import Project
from annotator.errors import UserError

AUTOSAVE_INTERVAL_S = 60.0


def autosave_path(project_path: Path) -> Path:
    project_path = Path(project_path)
    return project_path.with_name(project_path.name + ".autosave")


def lock_path(project_path: Path) -> Path:
    project_path = Path(project_path)
    return project_path.with_name(project_path.name + ".lock")


def write_autosave(project: Project) -> Path:
    """Write the project's current state to its sidecar (atomically, no backup).

    Raises UserError when it cannot be written (the project file is never touched).
    """
    if project.path is None:
        raise UserError("The project has no file yet, so it has no autosave.")
    target = autosave_path(project.path)
    data = serialize_document(project_document(project))
    try:
        atomic_write_bytes(target, data)
    except OSError as exc:
        raise UserError(f"Could not autosave to {target}: {exc.strerror or exc}.") from None
    return target


def newer_autosave(project_path: Path) -> Path | None:
    """The sidecar when it is newer than the project file (or the project file is gone)."""
    sidecar = autosave_path(project_path)
    try:
        sidecar_time = sidecar.stat().st_mtime_ns
    except FileNotFoundError:
        return None
    try:
        project_time = Path(project_path).stat().st_mtime_ns
    except FileNotFoundError:
        return sidecar
    return sidecar if sidecar_time > project_time else None


def load_autosave(project_path: Path) -> tuple[Project, LoadReport]:
    """The autosaved state as a project whose path is the project file (saving writes there)."""
    project_path = Path(project_path).absolute()
    return parse_document(read_document(autosave_path(project_path)), project_path)


def discard_autosave(project_path: Path) -> None:
    try:
        autosave_path(project_path).unlink()
    except FileNotFoundError:
        pass


class Autosaver:
    """Decides when to autosave: every `interval_s` seconds when there were changes, and on demand
    (image change). The window calls `tick()` from a timer and `tick(force=True)` on image change.

    Changes are read from `project.changes`, which grows with every mutation (undo included).
    """

    def __init__(
        self,
        project: Project,
        interval_s: float = AUTOSAVE_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.project = project
        self.interval_s = interval_s
        self.clock = clock
        self._saved_changes = project.changes
        self._last = clock()

    def has_changes(self) -> bool:
        return self.project.changes != self._saved_changes

    def tick(self, force: bool = False) -> bool:
        """Autosave if due and there are unsaved changes; True when it wrote the sidecar."""
        if not self.has_changes() or self.project.path is None:
            return False
        if not force and self.clock() - self._last < self.interval_s:
            return False
        write_autosave(self.project)
        self.mark_saved()
        return True

    def mark_saved(self) -> None:
        """Call after an explicit save too: nothing is pending any more."""
        self._saved_changes = self.project.changes
        self._last = self.clock()


@dataclass(frozen=True)
class LockHolder:
    pid: int
    host: str
    started: float  # seconds since the epoch

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.started))
        return f"process {self.pid} on {self.host} since {when}"


class ProjectLock:
    """An advisory lock file beside the project: `acquire()` returns None when this object now
    holds it, or the live holder (the window warns; `acquire(force=True)` takes it anyway)."""

    def __init__(self, project_path: Path):
        self.path = lock_path(Path(project_path).absolute())
        self._token = uuid.uuid4().hex
        self.held = False

    def acquire(self, force: bool = False) -> LockHolder | None:
        if self.held:
            return None
        for _ in range(3):
            if self._create():
                self.held = True
                return None
            holder, token = self._read()
            if holder is not None and not force and _alive(holder):
                return holder
            # Stale (its process died), unreadable (crash while writing), or forced: take it over.
            if self._take_over(token):
                self.held = True
                return None
        raise UserError(f"Cannot take the lock {self.path}: another window keeps changing it.")

    def holder(self) -> LockHolder | None:
        return self._read()[0]

    def release(self) -> None:
        """Remove the lock if it is still ours (a forced take-over by another window is kept)."""
        if not self.held:
            return
        self.held = False
        _, token = self._read()
        if token == self._token:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> ProjectLock:
        holder = self.acquire()
        if holder is not None:
            raise UserError(
                f"{self.path.name[: -len('.lock')]} is open in another window ({holder.describe()})."
            )
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    def _content(self) -> bytes:
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.time(),
            "token": self._token,
        }
        return json.dumps(info).encode()

    def _create(self) -> bool:
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        except OSError as exc:
            raise UserError(
                f"Cannot create the lock file {self.path}: {exc.strerror or exc}."
            ) from None
        with os.fdopen(fd, "wb") as stream:
            stream.write(self._content())
        return True

    def _read(self) -> tuple[LockHolder | None, str | None]:
        try:
            info = json.loads(self.path.read_bytes())
            holder = LockHolder(int(info["pid"]), str(info["host"]), float(info["started"]))
            return holder, str(info.get("token"))
        except FileNotFoundError:
            return None, None
        except (OSError, ValueError, KeyError, TypeError):
            return None, "unreadable"

    def _take_over(self, expected_token: str | None) -> bool:
        """Replace the lock we judged stale, unless it changed meanwhile."""
        if expected_token is None:  # vanished meanwhile: try creating again
            return False
        _, token = self._read()
        if token != expected_token:
            return False
        try:
            atomic_write_bytes(self.path, self._content())
        except OSError as exc:
            raise UserError(
                f"Cannot take over the lock file {self.path}: {exc.strerror or exc}."
            ) from None
        return True


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
        return True  # cannot tell (e.g. Windows quirks): be safe and warn
    return True
