"""Hostile project files: each gives one sentence (UserError) or a LoadReport entry, never a
traceback or a crash, and what is kept is written back unchanged.

Before `annotator.core.limits`, several of these killed the process with a segmentation fault
inside pycocotools (absurd sizes, far-away polygon points) or printed a RecursionError.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotator.core.coco import load_project, save_project
from annotator.core.limits import MAX_DEPTH
from annotator.core.validate import validate_project
from annotator.errors import UserError

REPO = Path(__file__).resolve().parents[2]
HUGE = 10**9


def _document() -> dict:
    """A foreign COCO file (no "annotator" key: every check runs): one 30x20 image, a polygon."""
    return {
        "images": [{"id": 1, "file_name": "a.png", "width": 30, "height": 20}],
        "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}],
        "annotations": [
            {
                "id": 1,
                "image_id": 1,
                "category_id": 1,
                "segmentation": [[2.0, 2.0, 12.0, 2.0, 12.0, 9.0]],
                "area": 35,
                "bbox": [2.0, 2.0, 10.0, 7.0],
                "iscrowd": 0,
            }
        ],
    }


def _with(**changes):
    """A change of the document: images[0], annotations[0] or top-level keys."""

    def change(document):
        for key, value in changes.items():
            if key.startswith("image_"):
                document["images"][0][key[len("image_") :]] = value
            elif key.startswith("ann_"):
                document["annotations"][0][key[len("ann_") :]] = value
            elif key.startswith("cat_"):
                document["categories"][0][key[len("cat_") :]] = value
            else:
                document[key] = value

    return change


DEEP = b'{"images": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"

# (name, file bytes or a change of the document, fragments of the UserError)
REFUSED = [
    ("nested 100000 deep", DEEP, ["nested too deeply", f"more than {MAX_DEPTH} levels"]),
    ("deep in annotations", None, ["nested too deeply"]),  # built below
    ("not UTF-8", b'{"images": [], "x": "\xff\xfe"}', ["not UTF-8 text"]),
    ("top-level list", b"[1, 2, 3]", ["top level is a list"]),
    ("top-level string", b'"images"', ["top level is a text"]),
    ("truncated", b'{"images": [{"id": 1', ["not valid JSON", "truncated"]),
    ("5000-digit id", b'{"images": [{"id": ' + b"7" * 5000 + b"}]}", ["cannot be read as JSON"]),
    ("images null", _with(images=None), ['"images" must be a list, found a null']),
    ("annotations text", _with(annotations="abc"), ['"annotations" must be a list']),
    ("categories object", _with(categories={"a": 1}), ['"categories" must be a list']),
    ("image not an object", _with(images=["a.png"]), ["images[0] must be an object"]),
    ("annotation null", _with(annotations=[None]), ["annotations[0] must be an object"]),
    ("image id float", _with(image_id=1.0), ["images[0]", 'integer "id"', "1.0"]),
    ("image id bool", _with(image_id=True), ["images[0]", 'integer "id"', "true"]),
    ("image id 2**80", _with(image_id=2**80), ["images[0]", "out of range", "64 bits"]),
    ("annotation id 2**80", _with(ann_id=2**80), ["annotations[0]", "out of range"]),
    ("annotation id NaN", _with(ann_id=float("nan")), ["annotations[0]", 'integer "id"', "NaN"]),
    ("category id -2**70", _with(cat_id=-(2**70)), ["categories[0]", "out of range"]),
    ("image_id float", _with(ann_image_id=1.5), ['no integer "image_id"', "1.5"]),
    ("iscrowd 2", _with(ann_iscrowd=2), ['"iscrowd" must be 0 or 1']),
    ("width text", _with(image_width="30"), ["images[0] (id 1)", "positive integers", '"30"']),
    ("width NaN", _with(image_width=float("nan")), ["positive integers", "nan"]),
    ("height Infinity", _with(image_height=float("inf")), ["positive integers", "inf"]),
    ("width zero", _with(image_width=0), ["positive integers", "0 and 20"]),
    ("height negative", _with(image_height=-5), ["positive integers", "-5"]),
    (
        "size 10**9 square",
        _with(image_width=HUGE, image_height=HUGE),
        ['images[0] (id 1) "a.png"', f"{HUGE}x{HUGE}", "beyond the limits"],
    ),
    ("side 300000", _with(image_width=300_000), ["300000x20", "beyond the limits"]),
    (
        "pixels beyond 2**31",
        _with(image_width=65_536, image_height=65_537),
        ["65536x65537", "beyond the limits"],
    ),
    ("file name too long", _with(image_file_name="a/" * 3000 + "a.png"), ["longer than a path"]),
    ("file name part too long", _with(image_file_name="x" * 300 + ".png"), ["255 bytes"]),
    ("ours not an object", _with(annotator=[1]), ['"annotator" must be an object']),
]

# (name, change of the document, fragment of the LoadReport's sentences about annotation 1)
REPORTED = [
    ("bbox of strings", _with(ann_bbox=["a", "b", "c", "d"]), '"bbox" is not a list of 4'),
    ("bbox with NaN", _with(ann_bbox=[1.0, float("nan"), 2.0, 2.0]), "4 finite numbers"),
    ("area NaN", _with(ann_area=float("nan")), '"area" is nan, not a finite number'),
    ("area text", _with(ann_area="35"), '"area" is a text'),
    ("segmentation number", _with(ann_segmentation=5), "must be a list of polygons or an RLE"),
    ("segmentation text", _with(ann_segmentation="0,0,1"), "must be a list of polygons or an RLE"),
    ("segmentation null", _with(ann_segmentation=None), "no segmentation"),
    ("polygon of strings", _with(ann_segmentation=[["1", "2", "3", "4", "5", "6"]]), "flat list"),
    ("polygon nested", _with(ann_segmentation=[[[1, 2, 3, 4, 5, 6]]]), "flat list of numbers"),
    ("polygon NaN", _with(ann_segmentation=[[0, 0, float("nan"), 0, 5, 5]]), "must be finite"),
    ("polygon Infinity", _with(ann_segmentation=[[0, 0, float("inf"), 0, 5, 5]]), "finite"),
    ("polygon 1e9 away", _with(ann_segmentation=[[0, 0, 1e9, 0, 1e9, 1e9]]), "lie beyond"),
    (
        "polygon outline",
        _with(ann_segmentation=[[0, 0, 1.6e7, 0, 0, 1, 1.6e7, 1]]),
        "outline is longer",
    ),
    ("counts a number", _with(ann_segmentation={"size": [20, 30], "counts": 5}), "'counts' must"),
    ("counts an object", _with(ann_segmentation={"size": [20, 30], "counts": {}}), "'counts' must"),
    ("counts of floats", _with(ann_segmentation={"size": [20, 30], "counts": [600.0]}), "integers"),
    ("counts negative", _with(ann_segmentation={"size": [20, 30], "counts": [700, -100]}), "non-"),
    ("counts sum", _with(ann_segmentation={"size": [20, 30], "counts": [5, 5]}), "sum to 10"),
    (
        "counts enormous",
        _with(ann_segmentation={"size": [20, 30], "counts": [0] * 100_000 + [600]}),
        "more than the image has pixels",
    ),
    ("size text", _with(ann_segmentation={"size": "20x30", "counts": "abc"}), "'size' must"),
    ("size floats", _with(ann_segmentation={"size": [20.0, 30.0], "counts": [600]}), "'size'"),
    (
        "size disagrees",
        _with(ann_segmentation={"size": [HUGE, HUGE], "counts": [HUGE * HUGE]}),
        f"RLE size {HUGE}x{HUGE} does not match the image 20x30",
    ),
    ("counts corrupt", _with(ann_segmentation={"size": [20, 30], "counts": "0"}), "corrupt"),
    ("counts not ASCII", _with(ann_segmentation={"size": [20, 30], "counts": "é"}), "corrupt"),
    ("unknown image", _with(ann_image_id=2**80), f"image {2**80} does not exist"),
]

# Files that are odd but sound: they load (nothing lost, nothing reported about annotation 1).
LOADED = [
    ("brackets in a string", _with(image_note="[" * 5000 + '\\"{' * 300)),
    ("done flag not an object", _with(annotator={"images": {"1": 5}, "categories": {"1": "x"}})),
    ("nested within the limit", _with(info=json.loads("[" * 90 + "]" * 90))),
    ("points slightly outside", _with(ann_segmentation=[[-3.0, -2.0, 40.0, 0.0, 31.0, 25.0]])),
]


def _write(folder: Path, content) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(folder / "a.png")
    path = folder / "hostile.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        document = _document()
        if content is not None:
            content(document)
        path.write_text(json.dumps(document))
    return path


def _deep_in_annotations(document):
    document["annotations"][0]["attributes"] = json.loads("[" * 500 + "]" * 500)


@pytest.mark.parametrize("name, content, fragments", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_with_one_sentence_and_nothing_written(tmp_path, name, content, fragments):
    if name == "deep in annotations":
        content = _deep_in_annotations
    path = _write(tmp_path, content)
    before = path.read_bytes()
    with pytest.raises(UserError) as info:
        load_project(path)
    message = str(info.value)
    assert "\n" not in message and message.endswith("."), message
    for fragment in fragments:
        assert fragment in message, message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "hostile.json"]
    assert path.read_bytes() == before


@pytest.mark.parametrize("name, change, fragment", REPORTED, ids=[c[0] for c in REPORTED])
def test_reported_kept_verbatim_and_written_back(tmp_path, name, change, fragment):
    path = _write(tmp_path, change)
    original = json.loads(path.read_text())["annotations"][0]
    project, report = load_project(path)
    reasons = [reason for annotation_id, reason in report.undecodable if annotation_id == 1]
    assert len(reasons) == 1 and fragment in reasons[0], report.undecodable
    assert any(fragment in line for line in report.messages())
    assert project.total_annotations() == 0
    saved = json.loads(save_project(project, tmp_path / "saved.json").read_text())
    assert json.dumps(saved["annotations"]) == json.dumps([original]), "written back unchanged"


@pytest.mark.parametrize("name, change", LOADED, ids=[c[0] for c in LOADED])
def test_odd_but_sound_files_load(tmp_path, name, change):
    project, report = load_project(_write(tmp_path, change))
    assert report.undecodable == [] and project.total_annotations() == 1
    assert project.annotation(1).mask().shape == (20, 30)


def test_validate_lists_absurd_sizes_as_problems(tmp_path):
    def two_images(document):
        document["images"].append({"id": 2, "file_name": "b.png", "width": HUGE, "height": 7})
        document["annotations"].append(
            dict(document["annotations"][0], id=2, image_id=2, segmentation=[[0, 0, 1e9, 0, 5, 5]])
        )
        document["annotations"][0]["segmentation"] = [[0, 0, 1e12, 0, 5, 5]]

    problems = [str(p) for p in validate_project(_write(tmp_path, two_images))]
    assert problems == [
        f'images[1] (id 2) "b.png": its declared size {HUGE}x7 is beyond the limits '
        "(at most 200000 pixels a side and 2147483648 pixels in all)",
        "annotations[0] (id 1): polygon points lie out of bounds of the image 30x20",
        "annotations[0] (id 1): segmentation cannot be decoded: polygon coordinates lie beyond "
        "16777216 pixels",
    ], "annotation 2 is on an image without a usable size: not checked, nor b.png looked for"


# ------------------------------------------------------------------ the real CLI, in a process
def _cli(*args: str) -> subprocess.CompletedProcess:
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    return subprocess.run(
        [sys.executable, "-m", "annotator", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def _one_line(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_cli_deep_nesting_is_one_line(tmp_path):
    _one_line(_cli("validate", str(_write(tmp_path, DEEP))), "nested too deeply")


def test_cli_absurd_size_validate_lists_it_and_export_refuses(tmp_path):
    path = _write(tmp_path, _with(image_width=HUGE, image_height=HUGE))
    result = _cli("validate", "--no-image-files", str(path))
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    assert f"{HUGE}x{HUGE} is beyond the limits" in result.stdout
    _one_line(
        _cli("export", str(path), "--format", "png", "--out", str(tmp_path / "png")),
        "images[0] (id 1)",
        "beyond the limits",
    )
    assert not (tmp_path / "png").exists()


def test_cli_export_of_a_far_away_polygon_skips_it(tmp_path):
    # pycocotools itself crashed (SIGSEGV) on this polygon before the limits.
    path = _write(tmp_path, _with(ann_segmentation=[[0, 0, 1e9, 0, 1e9, 1e9]]))
    out = tmp_path / "out.json"
    result = _cli("export", str(path), "--format", "coco-polygons", "--out", str(out))
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "could not be decoded" in result.stderr and "lie beyond" in result.stderr
    assert json.loads(out.read_text())["annotations"] == []
