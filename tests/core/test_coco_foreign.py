"""COCO files as other tools write them: opened, shown, and written back without losing anything.

Each fixture writes a file in one tool's shape (folder layout, segmentation kinds, id ranges,
extra keys); masks are compared with pycocotools' own decoding of the original file.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from annotator.core.coco import load_project, save_project
from annotator.core.commands import RelabelAnnotations, ReplaceAnnotation, UndoStack
from annotator.core.project import with_new_mask

SIZES = {"a.png": (40, 30), "b.png": (50, 50)}  # name: (width, height)


def _images(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, (w, h) in SIZES.items():
        Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(folder / name)


def _image_entries(prefix: str = "", **extra) -> list[dict]:
    return [
        {"id": i + 1, "file_name": prefix + name, "width": w, "height": h, **extra}
        for i, (name, (w, h)) in enumerate(SIZES.items())
    ]


def _uncompressed(mask: np.ndarray) -> dict:
    flat = mask.T.reshape(-1).astype(np.int8)
    bounds = np.concatenate(([0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]))
    runs = np.diff(bounds).tolist()
    return {"size": list(mask.shape), "counts": ([0] + runs) if flat[0] else runs}


def _crowd_mask() -> np.ndarray:
    mask = np.zeros((50, 50), bool)
    mask[10:40, 5:45] = True
    mask[20:25, 20:30] = False
    return mask


def cvat(root: Path) -> Path:
    """CVAT: annotations/instances_default.json beside images/; polygons with several parts,
    crowd as uncompressed RLE, float area and bbox, attributes."""
    _images(root / "images")
    document = {
        "licenses": [{"name": "", "id": 0, "url": ""}],
        "info": {"contributor": "", "date_created": "", "description": "", "version": "", "year": ""},
        "categories": [{"id": 1, "name": "cat", "supercategory": ""}, {"id": 2, "name": "crowd", "supercategory": ""}],
        "images": _image_entries(license=0, flickr_url="", coco_url="", date_captured=0),
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [[2.0, 2.0, 15.5, 2.0, 15.5, 12.0, 2.0, 12.0], [20.0, 15.0, 35.0, 15.0, 28.0, 28.0]],
             "area": 236.75, "bbox": [2.0, 2.0, 33.0, 26.0], "iscrowd": 0, "attributes": {"occluded": False}},
            {"id": 2, "image_id": 2, "category_id": 2, "segmentation": _uncompressed(_crowd_mask()),
             "area": float(_crowd_mask().sum()), "bbox": [5.0, 10.0, 40.0, 30.0], "iscrowd": 1, "attributes": {"occluded": True}},
        ],
    }  # fmt: skip
    path = root / "annotations" / "instances_default.json"
    path.parent.mkdir()
    path.write_text(json.dumps(document))
    return path


def label_studio(root: Path) -> Path:
    """Label Studio: result.json with file names "images/..." and category ids from 0."""
    _images(root / "images")
    document = {
        "images": _image_entries("images/"),
        "categories": [{"id": 0, "name": "Car"}, {"id": 1, "name": "Tree"}],
        "annotations": [
            {"id": 0, "image_id": 1, "category_id": 0, "segmentation": [[5.2, 3.1, 30.7, 4.0, 25.0, 25.9, 6.0, 20.0]],
             "bbox": [5.2, 3.1, 25.5, 22.8], "ignore": 0, "iscrowd": 0, "area": 480.3},
            {"id": 1, "image_id": 2, "category_id": 1, "segmentation": [[10, 10, 40, 10, 40, 40]],
             "bbox": [10, 10, 30, 30], "ignore": 0, "iscrowd": 0, "area": 450},
        ],
        "info": {"year": 2024, "version": "1.0", "contributor": "Label Studio"},
    }  # fmt: skip
    path = root / "result.json"
    path.write_text(json.dumps(document))
    return path


def fiftyone(root: Path) -> Path:
    """FiftyOne: labels.json beside data/; compressed RLE (as bytes-decoded text), a score, and
    annotations without area or bbox."""
    _images(root / "data")
    mask = np.zeros((30, 40), bool)
    mask[3:20, 4:12] = True
    compressed = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    document = {
        "info": {"year": "2024"},
        "licenses": [],
        "categories": [{"id": 12, "name": "person", "supercategory": "root"}],
        "images": _image_entries(),
        "annotations": [
            {"id": 7, "image_id": 1, "category_id": 12, "segmentation": {"size": [30, 40], "counts": compressed["counts"].decode()},
             "score": 0.87, "iscrowd": 0},
            {"id": 8, "image_id": 2, "category_id": 12, "segmentation": [[1, 1, 20, 1, 20, 20, 1, 20]], "score": 0.5},
        ],
    }  # fmt: skip
    path = root / "labels.json"
    path.write_text(json.dumps(document))
    return path


def roboflow(root: Path) -> Path:
    """Roboflow: _annotations.coco.json beside the images; category 0 is the supercategory;
    integer bbox; a box-only annotation (segmentation [])."""
    _images(root / "train")
    document = {
        "info": {"year": "2024", "version": "3", "description": "Exported from roboflow.com"},
        "licenses": [{"id": 1, "url": "https://creativecommons.org/licenses/by/4.0/", "name": "CC BY 4.0"}],
        "categories": [{"id": 0, "name": "pets", "supercategory": "none"}, {"id": 1, "name": "dog", "supercategory": "pets"}],
        "images": _image_entries(license=1, date_captured="2024-01-01T00:00:00+00:00"),
        "annotations": [
            {"id": 0, "image_id": 1, "category_id": 1, "bbox": [4, 4, 20, 16], "area": 320, "segmentation": [[4, 4, 24, 4, 24, 20, 4, 20]], "iscrowd": 0},
            {"id": 1, "image_id": 2, "category_id": 1, "bbox": [1, 2, 3, 4], "area": 12, "segmentation": [], "iscrowd": 0},
        ],
    }  # fmt: skip
    path = root / "train" / "_annotations.coco.json"
    path.write_text(json.dumps(document))
    return path


def absolute_paths(root: Path) -> Path:
    """Absolute image paths (scripts, detectron2 users)."""
    _images(root / "anywhere")
    document = {
        "images": [dict(e, file_name=str(root / "anywhere" / e["file_name"])) for e in _image_entries()],
        "categories": [{"id": 3, "name": "thing", "supercategory": ""}],
        "annotations": [
            {"id": 30, "image_id": 2, "category_id": 3, "segmentation": [[0, 0, 49, 0, 49, 49]], "area": 1200.5, "bbox": [0.0, 0.0, 49.0, 49.0], "iscrowd": 0},
        ],
    }  # fmt: skip
    path = root / "project" / "coco.json"
    path.parent.mkdir()
    path.write_text(json.dumps(document))
    return path


SHAPES = {
    "cvat": cvat,
    "label_studio": label_studio,
    "fiftyone": fiftyone,
    "roboflow": roboflow,
    "absolute": absolute_paths,
}


@pytest.mark.parametrize("shape", list(SHAPES))
def test_foreign_file_opens_with_the_masks_pycocotools_sees(tmp_path, shape):
    path = SHAPES[shape](tmp_path)
    original = json.loads(path.read_text())
    project, report = load_project(path)
    assert report.missing_images == [], "images found in the tool's layout"
    assert [r.id for r in project.images] == [e["id"] for e in original["images"]]
    assert [c.id for c in project.categories] == [c["id"] for c in original["categories"]]
    coco = COCO(str(path))
    decodable = [a for a in original["annotations"] if a["segmentation"]]
    assert sorted(a.id for a in project.all_annotations()) == sorted(a["id"] for a in decodable)
    for ann in decodable:
        ours = project.annotation(ann["id"])
        np.testing.assert_array_equal(
            ours.mask(), coco.annToMask(coco.anns[ann["id"]]).astype(bool)
        )
        assert ours.iscrowd == ann.get("iscrowd", 0)
        assert ours.category_id == ann["category_id"]


@pytest.mark.parametrize("shape", list(SHAPES))
def test_unedited_foreign_file_is_written_back_unchanged(tmp_path, shape):
    path = SHAPES[shape](tmp_path)
    original = json.loads(path.read_text())
    project, _ = load_project(path)
    save_project(project)
    saved = json.loads(path.read_text())
    for key in original:
        if key not in ("images", "categories", "annotations"):
            assert saved[key] == original[key]
    assert saved["images"] == original["images"]
    for before, after in zip(original["categories"], saved["categories"], strict=True):
        assert after == {"supercategory": "", **before}
    saved_annotations = {a["id"]: a for a in saved["annotations"]}
    assert len(saved_annotations) == len(original["annotations"])
    for ann in original["annotations"]:
        after = saved_annotations[ann["id"]]
        assert {k: after[k] for k in ann} == ann, "every key as it was"
        assert set(after) - set(ann) <= {"area", "bbox", "iscrowd"}, (
            "only missing geometry is added"
        )
    # and the file we wrote is still one that pycocotools and we read alike
    coco = COCO(str(path))
    reloaded, _ = load_project(path)
    assert reloaded.state() == project.state()
    for annotation in reloaded.all_annotations():
        np.testing.assert_array_equal(
            annotation.mask(), coco.annToMask(coco.anns[annotation.id]).astype(bool)
        )


def test_missing_area_and_bbox_are_computed(tmp_path):
    path = fiftyone(tmp_path)
    project, _ = load_project(path)
    first = project.annotation(7)
    assert first.area == 17 * 8 and first.bbox == (4.0, 3.0, 8.0, 17.0)
    saved_path = save_project(project)
    saved = {a["id"]: a for a in json.loads(saved_path.read_text())["annotations"]}
    assert saved[7]["area"] == 136 and saved[7]["bbox"] == [4.0, 3.0, 8.0, 17.0]
    assert saved[8]["iscrowd"] == 0


def test_edits_write_compressed_rle_and_relabel_keeps_the_original_polygons(tmp_path):
    path = cvat(tmp_path)
    original = {a["id"]: a for a in json.loads(path.read_text())["annotations"]}
    project, _ = load_project(path)
    stack = UndoStack(project)
    stack.push(RelabelAnnotations([1], 2))
    new_mask = np.zeros((50, 50), bool)
    new_mask[0:5, 0:5] = True
    stack.push(ReplaceAnnotation(with_new_mask(project.annotation(2), new_mask)))
    save_project(project)
    saved = {a["id"]: a for a in json.loads(path.read_text())["annotations"]}
    assert saved[1]["segmentation"] == original[1]["segmentation"] and saved[1]["category_id"] == 2
    assert (
        saved[2]["segmentation"]["counts"]
        == mask_utils.encode(np.asfortranarray(new_mask.astype(np.uint8)))["counts"].decode()
    )
    assert saved[2]["area"] == 25 and saved[2]["iscrowd"] == 1
    assert saved[2]["attributes"] == original[2]["attributes"], "foreign keys survive a re-draw"
    coco = COCO(str(path))
    np.testing.assert_array_equal(coco.annToMask(coco.anns[2]).astype(bool), new_mask)


def test_undecodable_annotations_are_reported_and_written_back_verbatim(tmp_path):
    path = cvat(tmp_path)
    document = json.loads(path.read_text())
    bad = [
        {"id": 40, "image_id": 1, "category_id": 1, "segmentation": [[1, 2, 3, 4, 5]], "iscrowd": 0},
        {"id": 41, "image_id": 1, "category_id": 1, "segmentation": {"size": [10, 10], "counts": [100]}, "iscrowd": 1},
        {"id": 42, "image_id": 1, "category_id": 77, "segmentation": [[1, 1, 5, 1, 5, 5]]},
        {"id": 43, "image_id": 99, "category_id": 1, "segmentation": [[1, 1, 5, 1, 5, 5]]},
        {"id": 44, "image_id": 2, "category_id": 1, "bbox": [1, 1, 2, 2], "segmentation": []},
        {"id": 45, "image_id": 2, "category_id": 1, "segmentation": {"size": [50, 50], "counts": "0000"}},
        {"id": 46, "image_id": 2, "category_id": 1, "segmentation": "M 1 1 L 2 2"},
    ]  # fmt: skip
    document["annotations"] += bad
    path.write_text(json.dumps(document))
    project, report = load_project(path)
    assert [i for i, _ in report.undecodable] == [40, 41, 42, 43, 44, 45, 46]
    message = report.messages()[0]
    assert message.startswith(
        "7 annotation(s) could not be decoded (ids 40, 41, 42, 43, 44, 45, 46)"
    )
    assert "written back unchanged" in message
    assert project.total_annotations() == 2
    assert project.next_annotation_id() == 47
    save_project(project)
    saved = json.loads(path.read_text())["annotations"]
    assert saved[-len(bad) :] == bad
