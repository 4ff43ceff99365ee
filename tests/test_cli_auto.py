"""`annotator auto`: a project of proposals that pycocotools reads and `annotator validate`
accepts; a rerun skips what is done; an interrupted run leaves a valid project that a rerun
completes. Uses the tiny random-weight checkpoint, 2x2 grid points and thresholds of 0 (random
weights predict IoUs around 0, so default thresholds would keep nothing)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

SETTINGS_ARGS = [
    "--points-per-side",
    "2",
    "--pred-iou-thresh",
    "0",
    "--stability-score-thresh",
    "0",
]
SIZES = [(48, 64), (40, 40), (64, 48)]  # (H, W)


@pytest.fixture
def image_folder(tmp_path) -> Path:
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(3)
    for i, (height, width) in enumerate(SIZES):
        pixels = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
        pixels = np.kron(pixels, np.ones((8, 8, 1), np.uint8))
        Image.fromarray(pixels).save(folder / f"img{i + 1}.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def _annotator(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "annotator", *args], capture_output=True, text=True, timeout=300
    )


def _validate_command_exists() -> bool:
    from annotator.cli import command_names

    return "validate" in command_names()


def test_auto_writes_a_valid_project_and_a_rerun_skips(image_folder, tmp_path, tiny_sam_checkpoint):
    out = tmp_path / "project" / "auto.json"
    out.parent.mkdir()
    args = ["auto", str(image_folder), "--checkpoint", str(tiny_sam_checkpoint), "--out", str(out)]
    first = _annotator(*args, *SETTINGS_ARGS, "--device", "cpu")
    assert first.returncode == 0, first.stderr
    assert "3 image(s) segmented" in first.stdout

    from pycocotools.coco import COCO

    coco = COCO(str(out))
    names = {img["file_name"].split("/")[-1] for img in coco.dataset["images"]}
    assert names == {"img1.png", "img2.png", "img3.png"}
    object_ids = coco.getCatIds(catNms=["object"])
    assert len(object_ids) == 1
    annotations = coco.dataset["annotations"]
    assert annotations and {a["category_id"] for a in annotations} == set(object_ids)
    assert {a["image_id"] for a in annotations} == {img["id"] for img in coco.dataset["images"]}
    for annotation in annotations:
        image = coco.imgs[annotation["image_id"]]
        mask = coco.annToMask(annotation)
        assert mask.shape == (image["height"], image["width"])
        assert int(mask.sum()) == annotation["area"] > 0
        assert -1.0 <= annotation["score"] <= 1.0

    from annotator.core.coco import load_project

    project, _ = load_project(out)
    assert all(record.done for record in project.images)

    if _validate_command_exists():
        validated = _annotator("validate", str(out))
        assert validated.returncode == 0, validated.stdout + validated.stderr

    before = out.read_bytes()
    second = _annotator(*args, *SETTINGS_ARGS, "--device", "cpu")
    assert second.returncode == 0, second.stderr
    assert "0 image(s) segmented" in second.stdout and "3 skipped" in second.stdout
    assert out.read_bytes() == before  # nothing to do: the file is not even rewritten
    assert json.loads(before)["annotations"] == annotations


def test_interrupted_run_leaves_a_valid_project_that_a_rerun_completes(
    image_folder, tmp_path, tiny_sam_checkpoint
):
    from annotator.cli.auto_cmd import run_auto
    from annotator.core.coco import load_project
    from annotator.core.validate import validate_project
    from annotator.engines.automatic import AutoMaskSettings
    from annotator.engines.sam import load_sam

    engine = load_sam(tiny_sam_checkpoint, device="cpu", decoder="torch")
    settings = AutoMaskSettings(points_per_side=2, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    out = tmp_path / "auto.json"
    saved = []

    def interrupt_after_first(file_name: str, count: int) -> None:
        saved.append((file_name, count))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_auto(image_folder, Path("unused.pth"), out, settings, engine=engine,
                 on_image_saved=interrupt_after_first)  # fmt: skip
    assert len(saved) == 1
    assert validate_project(out) == []
    project, _ = load_project(out)
    done = [record for record in project.images if record.done]
    assert len(project.images) == 3 and len(done) == 1
    assert done[0].file_name == saved[0][0] and done[0].file_name.endswith("img1.png")
    first_annotations = project.annotations_of(done[0].id)
    assert len(first_annotations) == saved[0][1] > 0
    assert project.total_annotations() == len(first_annotations)

    from PIL import Image

    Image.new("RGB", (40, 32), (200, 30, 30)).save(image_folder / "img4.png")  # arrives later
    report = run_auto(image_folder, Path("unused.pth"), out, settings, engine=engine)
    assert len(report.skipped) == 1 and len(report.processed) == 3
    assert report.added == ["images/img4.png"]
    assert validate_project(out) == []
    project, _ = load_project(out)
    assert len(project.images) == 4 and all(record.done for record in project.images)
    assert all(project.annotations_of(record.id) for record in project.images)
    assert [a.id for a in project.annotations_of(done[0].id)] == [a.id for a in first_annotations]


def test_bad_input_is_one_line_and_exit_2(tmp_path, tiny_sam_checkpoint):
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "p.json"
    result = _annotator(
        "auto", str(empty), "--checkpoint", str(tiny_sam_checkpoint), "--out", str(out)
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "holds no images" in result.stderr
    assert not out.exists()


def test_auto_refuses_a_project_a_window_holds_or_has_unsaved_work_for(image_folder, tmp_path):
    """One writer of a project at a time, and a crashed window's journal is never overwritten."""
    from annotator.cli.auto_cmd import run_auto
    from annotator.core.journal import journal_path
    from annotator.core.session import AnnotationSession
    from annotator.errors import UserError

    session, _ = AnnotationSession.open(image_folder)  # a window on the folder's project
    session.save()
    out = session.project.path
    before = out.read_bytes()
    with pytest.raises(UserError, match="open in another window"):
        run_auto(image_folder, tmp_path / "unused.pth", out, engine=object())
    image = session.project.images[0]
    session.add_mask(image.id, 1, np.ones((image.height, image.width), bool))
    session._stop_journal()  # the window is killed: its journal stays
    session.lock.release()
    with pytest.raises(UserError, match="unsaved work from a window"):
        run_auto(image_folder, tmp_path / "unused.pth", out, engine=object())
    assert out.read_bytes() == before and journal_path(out).exists()


def test_auto_with_a_sam2_checkpoint_writes_sam2s_proposals(
    image_folder, tmp_path, family_checkpoint, capsys
):
    """`annotator auto` on a tiny SAM 2.1 checkpoint (--model-type auto): every image's
    annotations are generate_proposals' masks (sam2's own generator) with their scores."""
    from annotator.cli import main
    from annotator.core.coco import load_project
    from annotator.core.images import load_image
    from annotator.engines import families
    from annotator.engines.automatic import AutoMaskSettings, generate_proposals

    path, _ = family_checkpoint("sam2.1")
    out = tmp_path / "sam2.json"
    args = ["auto", str(image_folder), "--checkpoint", str(path), "--out", str(out)]
    assert main([*args, *SETTINGS_ARGS, "--device", "cpu"]) == 0
    assert "3 image(s) segmented" in capsys.readouterr().out

    engine = families.load_model(path, "auto", device="cpu")
    settings = AutoMaskSettings(points_per_side=2, pred_iou_thresh=0, stability_score_thresh=0)
    project, _ = load_project(out)
    total = 0
    for record in project.images:
        assert record.done
        proposals = generate_proposals(engine, load_image(project.image_path(record)), settings)
        expected = [p for p in proposals if p.area]
        annotations = project.annotations_of(record.id)
        assert len(annotations) == len(expected)
        for annotation, proposal in zip(annotations, expected, strict=True):
            np.testing.assert_array_equal(annotation.mask(), proposal.mask)
            assert annotation.extra["score"] == round(proposal.predicted_iou, 6)
        total += len(annotations)
    assert total > 0


def test_auto_with_a_transformers_checkpoint_is_one_sentence(
    image_folder, tmp_path, family_checkpoint, capsys
):
    from annotator.cli import main

    path, _ = family_checkpoint("hf")
    capsys.readouterr()  # building the checkpoint printed transformers' progress bars
    out = tmp_path / "hf.json"
    code = main(["auto", str(image_folder), "--checkpoint", str(path), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert err.startswith("annotator: SAM (transformers) (cpu) cannot segment everything yet;")
