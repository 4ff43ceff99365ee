"""Every export format: pycocotools reads the COCO ones; masks survive as each format allows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from annotator.core.coco import save_project
from annotator.core.export import FORMATS, export_project
from annotator.core.project import Category, Project, annotation_from_mask
from annotator.errors import UserError


def _project(folder: Path) -> tuple[Project, dict[int, np.ndarray]]:
    """Two images; a donut (one hole), a two-part object, a one-pixel speck, overlaps."""
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(3)
    for name, (w, h) in {"one.png": (60, 40), "two.jpg": (30, 30)}.items():
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(
            folder / "images" / name, quality=95
        )
    project = Project.from_folder(folder / "images", "project.json")
    project.insert_category(Category(300, "big id", (0, 0, 0)))
    masks = {}
    donut = np.zeros((40, 60), bool)
    donut[5:30, 5:30] = True
    donut[12:20, 12:20] = False
    parts = np.zeros((40, 60), bool)
    parts[2:10, 40:55] = True
    parts[30:38, 40:58] = True
    parts[0, 0] = True
    overlap = np.zeros((40, 60), bool)
    overlap[20:35, 20:45] = True
    small = np.zeros((30, 30), bool)
    small[3:20, 4:25] = True
    for image_id, category_id, mask in (
        (1, 1, donut),
        (1, 2, parts),
        (1, 300, overlap),
        (2, 3, small),
    ):
        annotation = annotation_from_mask(project.next_annotation_id(), image_id, category_id, mask)
        project.insert_annotation(annotation)
        masks[annotation.id] = mask
    save_project(project)
    return project, masks


def test_coco_export_is_read_by_pycocotools_exactly(tmp_path):
    project, masks = _project(tmp_path / "p")
    report = export_project(project, "coco", tmp_path / "out" / "train.json")
    coco = COCO(str(tmp_path / "out" / "train.json"))
    for annotation_id, mask in masks.items():
        np.testing.assert_array_equal(coco.annToMask(coco.anns[annotation_id]).astype(bool), mask)
    for image in coco.dataset["images"]:
        assert (tmp_path / "out" / image["file_name"]).is_file(), "file names rebased to the export"
    assert (report.images, report.annotations, report.files) == (2, 4, 1)


def test_coco_polygons_keep_every_part_and_report_lost_holes(tmp_path):
    project, masks = _project(tmp_path / "p")
    report = export_project(project, "coco-polygons", tmp_path / "out")
    path = tmp_path / "out" / "annotations.json"
    coco = COCO(str(path))
    assert report.holes_lost == 1 and report.annotations_with_holes == [1]
    assert report.tiny_parts == 1
    assert any("hole" in line and "ids 1" in line for line in report.messages())
    segmentation = coco.anns[2]["segmentation"]
    assert isinstance(segmentation, list) and len(segmentation) == 3, "both parts and the speck"
    for annotation_id, mask in masks.items():
        raster = coco.annToMask(coco.anns[annotation_id]).astype(bool)
        expected = mask.copy()
        if annotation_id == 1:
            expected[12:20, 12:20] = True  # the hole is filled in this format
        assert (raster & expected).sum() / (raster | expected).sum() > 0.8
        assert coco.anns[annotation_id]["area"] == int(mask.sum())
    assert coco.annToMask(coco.anns[2])[0, 0], "the one-pixel speck is kept"


def test_png_export_instances_and_classes_match_the_legend(tmp_path):
    project, masks = _project(tmp_path / "p")
    report = export_project(project, "png", tmp_path / "png")
    legend = json.loads((tmp_path / "png" / "legend.json").read_text())
    assert report.files == 5 and report.annotations == 4
    first = legend["images"][0]
    instances = np.asarray(Image.open(tmp_path / "png" / first["instances_png"]))
    classes = np.asarray(Image.open(tmp_path / "png" / first["classes_png"]))
    assert instances.dtype == np.uint16 and classes.dtype == np.uint16, "category 300 needs 16 bits"
    painted = np.zeros((40, 60), np.int64)
    expected_classes = np.zeros((40, 60), np.int64)
    for value, entry in first["instances"].items():
        painted[masks[entry["annotation_id"]]] = int(value)
        expected_classes[masks[entry["annotation_id"]]] = entry["category_id"]
    np.testing.assert_array_equal(instances, painted)
    np.testing.assert_array_equal(classes, expected_classes)
    assert {c["id"] for c in legend["categories"]} >= {1, 2, 3, 300}


def test_cutouts_are_transparent_outside_the_mask_and_cropped_to_the_box(tmp_path):
    project, masks = _project(tmp_path / "p")
    report = export_project(project, "cutouts", tmp_path / "cut")
    assert report.annotations == 4
    pixels = np.asarray(Image.open(tmp_path / "p" / "images" / "one.png").convert("RGB"))
    cutout = np.asarray(Image.open(tmp_path / "cut" / project.category(1).name / "one_1.png"))
    x, y, w, h = (int(v) for v in project.annotation(1).bbox)
    assert cutout.shape == (h, w, 4)
    np.testing.assert_array_equal(cutout[..., 3] == 255, masks[1][y : y + h, x : x + w])
    np.testing.assert_array_equal(cutout[..., :3], pixels[y : y + h, x : x + w])
    assert (tmp_path / "cut" / "big_id").is_dir()


def test_yolo_labels_one_line_per_part_and_data_yaml(tmp_path):
    project, _ = _project(tmp_path / "p")
    report = export_project(project, "yolo", tmp_path / "yolo")
    lines = (tmp_path / "yolo" / "labels" / "one.txt").read_text().splitlines()
    assert len(lines) == 1 + 3 + 1, "donut, two parts and a speck, overlap"
    classes = [int(line.split()[0]) for line in lines]
    index = {c.id: i for i, c in enumerate(project.categories)}
    assert classes == [index[1], index[2], index[2], index[2], index[300]]
    for line in lines:
        coords = np.array(line.split()[1:], float)
        assert len(coords) >= 6 and len(coords) % 2 == 0
        assert coords.min() >= 0 and coords.max() <= 1
    assert (tmp_path / "yolo" / "images" / "two.jpg").is_file()
    yaml = (tmp_path / "yolo" / "data.yaml").read_text()
    assert f"nc: {len(project.categories)}" in yaml and '  5: "big id"' in yaml
    assert report.holes_lost == 1


def test_missing_images_and_undecodable_annotations_are_reported(tmp_path):
    project, _ = _project(tmp_path / "p")
    (tmp_path / "p" / "images" / "two.jpg").unlink()
    project.undecodable.append({"id": 99, "image_id": 1, "category_id": 1, "segmentation": [[1]]})
    report = export_project(project, "cutouts", tmp_path / "cut")
    assert report.annotations == 3
    assert any("image 2 skipped" in line for line in report.messages())
    assert any("1 annotation(s) that could not be decoded" in line for line in report.messages())
    coco_report = export_project(project, "coco", tmp_path / "c.json")
    assert [a["id"] for a in json.loads((tmp_path / "c.json").read_text())["annotations"]] == [
        1,
        2,
        3,
        4,
    ]
    assert coco_report.skipped


def test_unknown_format_is_a_user_error(tmp_path):
    project, _ = _project(tmp_path / "p")
    with pytest.raises(UserError, match="Unknown export format"):
        export_project(project, "voc", tmp_path / "x")
    assert set(FORMATS) == {
        "coco",
        "coco-polygons",
        "png",
        "cutouts",
        "yolo",
        "youtube-vis",
        "davis",
    }


@pytest.mark.parametrize("fmt", ["coco-polygons", "png"])
def test_progress_is_per_image_and_cancel_stops_between_images(tmp_path, fmt):
    from annotator.core.export import ExportCancelled

    project, _ = _project(tmp_path / "p")
    dest = tmp_path / ("out.json" if fmt == "coco-polygons" else "out")
    seen = []
    export_project(project, fmt, dest, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 2), (2, 2)]
    if dest.is_dir():
        shutil.rmtree(dest)
    else:
        dest.unlink()
    seen.clear()
    with pytest.raises(ExportCancelled, match="after 1 of 2 image"):
        export_project(
            project, fmt, dest, progress=lambda *a: seen.append(a), cancelled=lambda: bool(seen)
        )
    if fmt == "coco-polygons":
        assert not dest.exists(), "a cancelled single-file export leaves no file"
        assert list(tmp_path.glob(".out.json*")) == [], "nor a temporary file"
    else:
        assert sorted(p.name for p in dest.iterdir()) == ["one_classes.png", "one_instances.png"]


def test_sizes_beyond_the_limits_and_mismatched_masks_are_skipped_not_decoded(tmp_path):
    from dataclasses import replace

    project, _ = _project(tmp_path / "p")
    huge = replace(project.image(2), width=10**9, height=10**9)
    project.replace_image(huge)
    wrong = project.annotation(1)
    project.replace_annotation(
        replace(wrong, rle={"size": [4000, 4000], "counts": wrong.rle["counts"]})
    )
    for fmt in ("png", "coco-polygons", "yolo", "cutouts"):
        report = export_project(project, fmt, tmp_path / f"out-{fmt}")
        text = " ".join(report.messages())
        assert "Image 2 (two.jpg) was not exported" in text, (fmt, text)
        assert "beyond the limits" in text
        assert "Annotation 1 was not exported: RLE size 4000x4000 does not match" in text, fmt
