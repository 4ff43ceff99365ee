"""Bad input names the problem and where it is; failed loads and saves leave every byte in place."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotator.core import atomic
from annotator.core.atomic import backup_path
from annotator.core.coco import load_project, save_project
from annotator.core.project import Project, annotation_from_mask
from annotator.errors import UserError


def _saved_project(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(folder / "a.png")
    project = Project.from_folder(folder)
    mask = np.zeros((20, 30), bool)
    mask[2:9, 3:7] = True
    project.insert_annotation(annotation_from_mask(1, 1, 1, mask))
    return save_project(project)


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir() if p.is_file()}


def _load_fails(path: Path, *fragments: str) -> None:
    before = _snapshot(path.parent)
    with pytest.raises(UserError) as info:
        load_project(path)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    assert _snapshot(path.parent) == before, "a failed load writes nothing"


def test_truncated_json_names_line_and_column(tmp_path):
    path = _saved_project(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _load_fails(path, "annotations.json is not valid JSON", "line", "column", "truncated")


def test_not_json_at_all_and_not_an_object(tmp_path):
    path = tmp_path / "p.json"
    path.write_bytes(b"\xff\xfe garbage")
    _load_fails(path, "not UTF-8")
    path.write_text("[1, 2, 3]")
    _load_fails(path, "top level is a list")
    path.write_text('{"annotations": []}')
    _load_fails(path, 'no "images" list')
    with pytest.raises(UserError, match="does not exist"):
        load_project(tmp_path / "nope.json")


def _edit(path: Path, change) -> None:
    document = json.loads(path.read_text())
    change(document)
    path.write_text(json.dumps(document))


@pytest.mark.parametrize(
    "change, fragments",
    [
        (lambda d: d.update(images={"id": 1}), ['"images" must be a list', "object"]),
        (lambda d: d["images"][0].update(id="1"), ["images[0]", 'integer "id"', '"1"']),
        (lambda d: d["images"][0].update(width="30"), ["images[0] (id 1)", "positive integers"]),
        (lambda d: d["images"][0].pop("file_name"), ["images[0] (id 1)", "file_name"]),
        (lambda d: d["categories"][1].update(name=5), ["categories[1] (id 2)", '"name"']),
        (
            lambda d: d["annotations"][0].update(image_id=None),
            ["annotations[0] (id 1)", '"image_id"'],
        ),
        (lambda d: d["annotations"][0].update(iscrowd="no"), ["annotations[0] (id 1)", "iscrowd"]),
        (lambda d: d["annotations"].append(7), ["annotations[1]", "must be an object"]),
        (lambda d: d["annotator"].update(format_version=99), ["newer Annotator", "format 99"]),
    ],
)
def test_wrong_types_are_named_with_their_place(tmp_path, change, fragments):
    path = _saved_project(tmp_path)
    _edit(path, change)
    _load_fails(path, *fragments)


@pytest.mark.parametrize("kind", ["images", "categories", "annotations"])
def test_duplicate_ids_are_named(tmp_path, kind):
    path = _saved_project(tmp_path)

    def duplicate(document):
        copy = dict(document[kind][0])
        if kind == "images":
            copy["file_name"] = "other.png"
        document[kind].append(copy)

    _edit(path, duplicate)
    count = len(json.loads(path.read_text())[kind])
    _load_fails(path, f"{kind}[{count - 1}] repeats", f"{kind}[0]")


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("failing_call", ["replace", "fsync", "link"])
def test_failed_save_reports_and_keeps_every_byte(tmp_path, monkeypatch, failing_call):
    path = _saved_project(tmp_path)
    project, _ = load_project(path)
    project.remove_annotation(1)
    save_project(project)  # a .bak now exists too
    before = _snapshot(tmp_path)
    project.remove_category(2)
    monkeypatch.setattr(atomic.os, failing_call, _disk_full)
    if failing_call == "link":  # the backup falls back to a copy: make that fail too
        monkeypatch.setattr(atomic.shutil, "copy2", _disk_full)
    with pytest.raises(UserError) as info:
        save_project(project)
    assert "No space left on device" in str(info.value)
    assert "last saved version is intact" in str(info.value)
    assert _snapshot(tmp_path) == before, "project, .bak and folder exactly as before"


def test_failing_disk_write_mid_file_keeps_the_original(tmp_path, monkeypatch):
    path = _saved_project(tmp_path)
    before = _snapshot(tmp_path)
    project, _ = load_project(path)
    real_fdopen = os.fdopen

    class FullDisk:
        def __init__(self, stream):
            self.stream = stream

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.stream.close()

        def write(self, data):
            self.stream.write(data[:10])
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.os, "fdopen", lambda *a, **k: FullDisk(real_fdopen(*a, **k)))
    with pytest.raises(UserError, match="No space left"):
        save_project(project)
    assert _snapshot(tmp_path) == before


@pytest.mark.skipif(
    os.name != "posix" or os.geteuid() == 0, reason="root ignores read-only folders"
)
def test_read_only_folder(tmp_path):
    path = _saved_project(tmp_path)
    before = _snapshot(tmp_path)
    project, _ = load_project(path)
    tmp_path.chmod(0o555)
    try:
        with pytest.raises(UserError, match="Permission denied"):
            save_project(project)
    finally:
        tmp_path.chmod(0o755)
    assert _snapshot(tmp_path) == before


def test_saved_file_keeps_its_permissions(tmp_path):
    path = _saved_project(tmp_path)
    path.chmod(0o640)
    project, _ = load_project(path)
    save_project(project)
    assert path.stat().st_mode & 0o777 == 0o640
    assert backup_path(path).is_file()
