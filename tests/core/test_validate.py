"""`validate_project` finds every problem, with its place, and nothing in a sound project."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotator.core.coco import save_project
from annotator.core.project import Project, annotation_from_mask
from annotator.core.validate import validate_project
from annotator.errors import UserError


def _sound(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (w, h) in {"a.png": (30, 20), "b.png": (25, 25), "c.png": (10, 10)}.items():
        Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(folder / name)
    project = Project.from_folder(folder)
    for record in project.images:
        mask = np.zeros((record.height, record.width), bool)
        mask[1:6, 2:8] = True
        project.insert_annotation(
            annotation_from_mask(project.next_annotation_id(), record.id, 1, mask)
        )
    return save_project(project)


def test_sound_project_has_no_problems(tmp_path):
    assert validate_project(_sound(tmp_path)) == []


def test_every_problem_is_listed_with_its_place(tmp_path):
    path = _sound(tmp_path)
    (tmp_path / "b.png").unlink()
    (tmp_path / "c.png").write_bytes(b"\x89PNG broken")
    Image.fromarray(np.zeros((5, 5, 3), np.uint8)).save(tmp_path / "a.png")  # now the wrong size
    document = json.loads(path.read_text())
    annotations = document["annotations"]
    rle = annotations[0]["segmentation"]
    annotations += [
        dict(annotations[0], id=1),  # duplicate id
        dict(annotations[0], id=10, category_id=77),
        dict(annotations[0], id=11, image_id=55),
        dict(annotations[0], id=12, segmentation={"size": [99, 30], "counts": rle["counts"]}),
        dict(
            annotations[0], id=13, segmentation={"size": rle["size"], "counts": rle["counts"][:-3]}
        ),
        dict(annotations[0], id=14, segmentation=[[0, 0, 80, 0, 80, 15]]),
        dict(annotations[0], id=15, bbox=[25, 10, 20, 20]),
        dict(annotations[0], id=16, segmentation=[[1, 2, 3]]),
    ]
    document["categories"].append(dict(document["categories"][0]))
    path.write_text(json.dumps(document))
    problems = [str(p) for p in validate_project(path)]
    expected = [
        "categories[5] (id 1): repeats the id of categories[0]",
        "annotations[3] (id 1): repeats the id of annotations[0]",
        "annotations[4] (id 10): refers to category 77, which does not exist",
        "annotations[5] (id 11): refers to image 55, which does not exist",
        "annotations[6] (id 12): mask size [99, 30] is out of bounds of the image 20x30",
        "annotations[8] (id 14): polygon points lie out of bounds of the image 30x20",
        "annotations[9] (id 15): bbox [25, 10, 20, 20] is out of bounds of the image 30x20",
        "annotations[10] (id 16): segmentation cannot be decoded",
        "annotations[7] (id 13): compressed RLE is corrupt",
        "images[0] (id 1): the file is 5x5 but the project says 30x20",
        "images[1] (id 2): image file b.png is missing",
        "images[2] (id 3): image file cannot be decoded",
    ]
    for fragment in expected:
        assert sum(p.startswith(fragment) for p in problems) == 1, (fragment, problems)
    assert len(problems) == len(expected)


def test_unreadable_file_is_a_user_error(tmp_path):
    path = _sound(tmp_path)
    path.write_text(path.read_text()[:-40])
    with pytest.raises(UserError, match="not valid JSON"):
        validate_project(path)
