"""The project model: construction from images, indexes, listeners, relinking moved images."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotator.core.coco import load_project, open_folder, save_project
from annotator.core.commands import ReplaceImages, UndoStack
from annotator.core.project import (
    ImageRecord,
    Project,
    ProjectEvent,
    annotation_from_mask,
    default_categories,
    find_relinks,
    relink_images,
)


def _write_images(folder: Path, sizes=((40, 30), (64, 48), (20, 20))) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, (w, h) in enumerate(sizes):
        path = folder / f"img{index + 1}.png"
        Image.fromarray(np.full((h, w, 3), index * 40, np.uint8)).save(path)
        paths.append(path)
    return paths


def _box(record: ImageRecord, x0, y0, x1, y1) -> np.ndarray:
    mask = np.zeros((record.height, record.width), bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_from_folder_reads_sizes_and_starts_with_default_categories(tmp_path):
    _write_images(tmp_path / "pics")
    (tmp_path / "pics" / "broken.png").write_bytes(b"not a png")
    project = Project.from_folder(tmp_path / "pics")
    assert project.path == (tmp_path / "pics" / "annotations.json").absolute()
    assert [(r.file_name, r.width, r.height) for r in project.images] == [
        ("img1.png", 40, 30), ("img2.png", 64, 48), ("img3.png", 20, 20),
    ]  # fmt: skip
    assert project.image_path(project.images[1]) == (tmp_path / "pics" / "img2.png").absolute()
    assert [c.name for c in project.categories] == [c.name for c in default_categories()]
    assert [c.id for c in project.categories] == list(range(1, len(project.categories) + 1))
    assert len(project.unreadable_images) == 1 and "broken.png" in project.unreadable_images[0]


def test_annotations_are_indexed_by_image_in_drawing_order(tmp_path):
    project = Project.from_images(_write_images(tmp_path), tmp_path / "p.json")
    first, second = project.images[0], project.images[1]
    a = annotation_from_mask(1, first.id, 1, _box(first, 0, 0, 5, 5))
    b = annotation_from_mask(2, first.id, 2, _box(first, 3, 3, 9, 9))
    c = annotation_from_mask(3, second.id, 1, _box(second, 1, 1, 4, 4))
    for annotation in (a, b, c):
        project.insert_annotation(annotation)
    z = annotation_from_mask(4, first.id, 1, _box(first, 10, 10, 12, 12))
    project.insert_annotation(z, index=0)
    assert [x.id for x in project.annotations_of(first.id)] == [4, 1, 2]
    assert project.annotation_count(first.id) == 3 and project.annotation_count(999) == 0
    assert project.annotation_position(1) == 1
    assert project.next_annotation_id() == 5
    assert project.next_category_id() == len(project.categories) + 1
    assert b.area == 36 and b.bbox == (3.0, 3.0, 6.0, 6.0)
    np.testing.assert_array_equal(b.mask(), _box(first, 3, 3, 9, 9))
    project.undecodable.append({"id": 50, "image_id": 1})
    assert project.next_annotation_id() == 51, "ids of kept undecodable annotations stay reserved"
    with pytest.raises(ValueError):
        project.insert_annotation(a)
    with pytest.raises(ValueError):
        annotation_from_mask(9, first.id, 1, np.zeros((30, 40), bool))


def test_listeners_hear_every_mutation(tmp_path):
    project = Project.from_images(_write_images(tmp_path), tmp_path / "p.json")
    events: list[ProjectEvent] = []
    project.add_listener(events.append)
    record = project.images[0]
    project.insert_annotation(annotation_from_mask(7, record.id, 1, _box(record, 0, 0, 2, 2)))
    project.remove_annotation(7)
    project.replace_image(
        ImageRecord(record.id, record.file_name, record.width, record.height, True)
    )
    assert events == [
        ProjectEvent("annotations", (7,), (1,)), ProjectEvent("annotations", (7,), (1,)),
        ProjectEvent("images", (1,)),
    ]  # fmt: skip
    assert project.changes == 3
    project.remove_listener(events.append)
    project.remove_category(1)
    assert len(events) == 3


def test_moved_images_are_listed_and_relinked_by_file_name(tmp_path):
    paths = _write_images(tmp_path / "shoot")
    project = Project.from_images(paths, tmp_path / "project.json")
    record = project.images[1]
    mask = _box(record, 5, 5, 25, 20)
    project.insert_annotation(annotation_from_mask(1, record.id, 2, mask))
    save_project(project)
    moved = tmp_path / "archive" / "2024" / "shoot"
    moved.parent.mkdir(parents=True)
    shutil.move(tmp_path / "shoot", moved)

    loaded, report = load_project(tmp_path / "project.json")
    assert [r.file_name for r in report.missing_images] == [
        "shoot/img1.png",
        "shoot/img2.png",
        "shoot/img3.png",
    ]
    assert any("Relink" in line for line in report.messages())
    np.testing.assert_array_equal(loaded.annotation(1).mask(), mask)

    assert relink_images(loaded, tmp_path / "archive") == 3
    assert all(loaded.image_path(r).is_file() for r in loaded.images)
    assert loaded.images[0].file_name == "archive/2024/shoot/img1.png"
    save_project(loaded)
    reloaded, report = load_project(tmp_path / "project.json")
    assert report.missing_images == []
    np.testing.assert_array_equal(reloaded.annotation(1).mask(), mask)
    assert relink_images(reloaded, tmp_path / "archive") == 0


def test_relinking_is_undoable_through_the_stack(tmp_path):
    project = Project.from_images(_write_images(tmp_path / "old"), tmp_path / "p.json")
    shutil.move(tmp_path / "old", tmp_path / "new")
    before = project.state()
    stack = UndoStack(project)
    stack.push(ReplaceImages(find_relinks(project, tmp_path)))
    assert [r.file_name for r in project.images] == ["new/img1.png", "new/img2.png", "new/img3.png"]
    stack.undo()
    assert project.state() == before


def test_open_folder_creates_or_loads_and_adds_new_images(tmp_path):
    _write_images(tmp_path, sizes=((10, 10), (12, 12)))
    project, report = open_folder(tmp_path)
    assert len(project.images) == 2 and report.is_clean()
    record = project.images[0]
    project.insert_annotation(annotation_from_mask(1, record.id, 1, _box(record, 0, 0, 3, 3)))
    save_project(project)
    Image.fromarray(np.zeros((8, 9, 3), np.uint8)).save(tmp_path / "img0.png")
    reopened, report = open_folder(tmp_path)
    assert [(r.id, r.file_name, r.width) for r in report.added_images] == [(3, "img0.png", 9)]
    assert any("1 new image" in line for line in report.messages())
    assert reopened.total_annotations() == 1 and len(reopened.images) == 3
