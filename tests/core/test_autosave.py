"""Autosave sidecar: when it is written, where, and how it is restored (the lock: test_lock.py)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotator.core.autosave import (
    Autosaver,
    autosave_path,
    discard_autosave,
    load_autosave,
    newer_autosave,
    write_autosave,
)
from annotator.core.coco import save_project
from annotator.core.commands import AddAnnotation, UndoStack
from annotator.core.project import Project, annotation_from_mask
from annotator.errors import UserError


def _project(folder: Path) -> Project:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((16, 24, 3), np.uint8)).save(folder / "a.png")
    project = Project.from_folder(folder)
    save_project(project)
    return project


def _add(project: Project, stack: UndoStack) -> None:
    mask = np.zeros((16, 24), bool)
    mask[1:5, 2 : 3 + project.total_annotations()] = True
    stack.push(AddAnnotation(annotation_from_mask(project.next_annotation_id(), 1, 1, mask)))


def _age(path: Path, seconds: float) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns - int(seconds * 1e9)))


def test_autosave_is_offered_when_newer_and_restores_the_state(tmp_path):
    project = _project(tmp_path)
    stack = UndoStack(project)
    _add(project, stack)
    _add(project, stack)
    project_bytes = project.path.read_bytes()
    sidecar = write_autosave(project)
    assert sidecar == autosave_path(project.path) and sidecar.parent == project.path.parent
    assert project.path.read_bytes() == project_bytes, "autosave never touches the project file"
    _age(project.path, 10)
    assert newer_autosave(project.path) == sidecar
    restored, report = load_autosave(project.path)
    assert restored.path == project.path
    assert restored.state() == project.state()
    assert report.missing_images == []
    _age(sidecar, 20)
    assert newer_autosave(project.path) is None, "older than the project: not offered"
    discard_autosave(project.path)
    assert not sidecar.exists() and newer_autosave(project.path) is None
    discard_autosave(project.path)  # nothing to discard is fine


def test_autosaver_writes_every_interval_with_changes_and_on_demand(tmp_path):
    project = _project(tmp_path)
    stack = UndoStack(project)
    now = [1000.0]
    autosaver = Autosaver(project, interval_s=60, clock=lambda: now[0])
    sidecar = autosave_path(project.path)
    _add(project, stack)
    assert autosaver.has_changes()
    now[0] += 30
    assert not autosaver.tick(), "changes, but the interval has not passed"
    assert autosaver.tick(force=True), "image change: save now"
    assert sidecar.exists()
    _add(project, stack)
    now[0] += 59
    assert not autosaver.tick()
    now[0] += 1
    assert autosaver.tick()
    restored, _ = load_autosave(project.path)
    assert restored.state() == project.state()
    stack.undo()
    now[0] += 60
    assert autosaver.tick(), "undo is a change too"
    autosaver.mark_saved()
    now[0] += 600
    assert not autosaver.tick(), "no changes, no autosave"


def test_autosave_failure_is_a_user_error(tmp_path, monkeypatch):
    from annotator.core import atomic

    project = _project(tmp_path)

    def disk_full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(atomic.os, "replace", disk_full)
    with pytest.raises(UserError, match="Could not autosave"):
        write_autosave(project)
    assert not autosave_path(project.path).exists()
