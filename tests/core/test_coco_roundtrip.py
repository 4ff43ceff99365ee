"""Our own files: pycocotools reads them, annToMask equals the accepted masks, nothing drifts."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image
from pycocotools.coco import COCO

from annotator.core.atomic import backup_path
from annotator.core.coco import OUR_KEY, load_project, save_project
from annotator.core.commands import AddAnnotation, RecolorCategory, SetImageDone, UndoStack
from annotator.core.project import Category, ImageRecord, Project, annotation_from_mask


def _write_images(folder: Path, sizes=((48, 32), (33, 50), (64, 64))) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, (w, h) in enumerate(sizes):
        path = folder / f"photo_{index}.png"
        Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(path)
        paths.append(path)
    return paths


def _labelled_project(folder: Path) -> tuple[Project, dict[int, np.ndarray]]:
    """A project whose masks have holes, several parts and touch the borders."""
    project = Project.from_images(_write_images(folder / "images"), folder / "annotations.json")
    stack = UndoStack(project)
    rng = np.random.default_rng(1)
    accepted = {}
    for record in project.images:
        for k in range(4):
            mask = np.zeros((record.height, record.width), bool)
            mask[: record.height // 2, k * 3 : k * 3 + 10] = True
            mask[4:8, k * 3 + 2 : k * 3 + 5] = False  # a hole
            mask[-3:, -(k + 2) :] = True  # a second part in the corner
            mask |= rng.random(mask.shape) < 0.02  # specks
            annotation = annotation_from_mask(
                project.next_annotation_id(), record.id, 1 + k % 3, mask
            )
            stack.push(AddAnnotation(annotation))
            accepted[annotation.id] = mask
    stack.push(RecolorCategory(2, (1, 2, 3)))
    stack.push(SetImageDone(project.images[1].id, True))
    return project, accepted


def test_pycocotools_reads_our_file_and_every_mask_is_exact(tmp_path):
    project, accepted = _labelled_project(tmp_path)
    save_project(project)
    coco = COCO(str(tmp_path / "annotations.json"))
    assert sorted(coco.anns) == sorted(accepted)
    for annotation_id, mask in accepted.items():
        ann = coco.anns[annotation_id]
        np.testing.assert_array_equal(coco.annToMask(ann).astype(bool), mask)
        assert ann["area"] == int(mask.sum())
        assert ann["iscrowd"] == 0
        ys, xs = np.nonzero(mask)
        assert ann["bbox"] == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
    assert {c["id"]: c["name"] for c in coco.dataset["categories"]} == {
        c.id: c.name for c in project.categories
    }
    for image in coco.dataset["images"]:
        assert (tmp_path / image["file_name"]).is_file(), (
            "file names are relative to the project file"
        )


def test_load_gives_back_the_saved_state_and_a_second_save_is_identical(tmp_path):
    project, _ = _labelled_project(tmp_path)
    project.extra = {
        "info": {"description": "week 12"},
        "licenses": [{"id": 1, "name": "CC0"}],
        "x-team": [1],
    }
    save_project(project)
    first = (tmp_path / "annotations.json").read_bytes()
    loaded, report = load_project(tmp_path / "annotations.json")
    assert report.is_clean()
    assert loaded.state() == project.state()
    assert loaded.category(2).color == (1, 2, 3)
    assert loaded.images[1].done and not loaded.images[0].done
    assert loaded.extra == project.extra
    save_project(loaded)
    assert (tmp_path / "annotations.json").read_bytes() == first
    document = json.loads(first)
    assert set(document[OUR_KEY]) == {"format_version", "categories", "images"}
    assert document[OUR_KEY]["format_version"] == 1


def test_previous_version_is_kept_as_bak(tmp_path):
    project, _ = _labelled_project(tmp_path)
    path = save_project(project)
    first = path.read_bytes()
    project.replace_category(replace(project.category(1), name="renamed"))
    save_project(project)
    assert backup_path(path).read_bytes() == first
    assert path.read_bytes() != first
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_ids_are_preserved_exactly(tmp_path):
    paths = _write_images(tmp_path)
    project = Project(tmp_path / "p.json")
    for image_id, path in zip((70, 3), paths[:2], strict=True):
        with Image.open(path) as im:
            project.add_image(ImageRecord(image_id, path.name, im.width, im.height))
    project.insert_category(Category(0, "zero", (9, 9, 9)))
    project.insert_category(Category(42, "answer", (1, 1, 1), "stuff"))
    record = project.image(3)
    mask = np.zeros((record.height, record.width), bool)
    mask[1:4, 1:4] = True
    project.insert_annotation(annotation_from_mask(9001, 3, 0, mask))
    project.insert_annotation(annotation_from_mask(5, 3, 42, ~mask))
    save_project(project)
    loaded, _ = load_project(tmp_path / "p.json")
    assert [r.id for r in loaded.images] == [70, 3]
    assert [(c.id, c.supercategory) for c in loaded.categories] == [(0, ""), (42, "stuff")]
    assert [a.id for a in loaded.annotations_of(3)] == [9001, 5]


def test_save_as_elsewhere_rebases_image_file_names(tmp_path):
    project, accepted = _labelled_project(tmp_path / "work")
    target = tmp_path / "elsewhere" / "deep" / "copy.json"
    target.parent.mkdir(parents=True)
    save_project(project, target)
    assert project.path == target
    loaded, report = load_project(target)
    assert report.missing_images == []
    assert loaded.images[0].file_name == "../../work/images/photo_0.png"
    for annotation_id, mask in accepted.items():
        np.testing.assert_array_equal(loaded.annotation(annotation_id).mask(), mask)
