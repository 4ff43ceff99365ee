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

import time
from collections.abc import Callable
from pathlib import Path

from annotator.core.atomic import atomic_write_bytes
from annotator.core.coco import (
    LoadReport,
    parse_document,
    project_document,
    read_document,
    serialize_document,
)
from annotator.core.lock import LockHolder, ProjectLock, lock_path  # noqa: F401
from annotator.core.project import Project
from annotator.errors import UserError

AUTOSAVE_INTERVAL_S = 60.0


def autosave_path(project_path: Path) -> Path:
    project_path = Path(project_path)
    return project_path.with_name(project_path.name + ".autosave")


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
