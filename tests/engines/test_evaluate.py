"""The eval driver: the protocol on real engines, equal to SamPredictor driven the same way."""

from __future__ import annotations

import json

import numpy as np
import pytest
from eval_project import DAVIS, davis_project, synthetic_project

from annotator.core import clicker
from annotator.core.coco import load_project
from annotator.engines.classic import ClassicEngine
from annotator.engines.evaluate import (
    EvalReport,
    ObjectResult,
    evaluate,
    plan,
    read_report,
    write_report,
)
from annotator.errors import UserError


@pytest.fixture
def project(tmp_path):
    return synthetic_project(tmp_path)[1]


def _check_schema(document: dict, max_clicks: int, thresholds=("0.85", "0.9")) -> None:
    assert set(document) == {"engine", "max_clicks", "noc", "objects"}
    assert isinstance(document["engine"], str) and document["max_clicks"] == max_clicks
    assert list(document["noc"]) == list(thresholds)
    assert all(isinstance(v, float) for v in document["noc"].values())
    for entry in document["objects"]:
        assert set(entry) == {"annotation_id", "image_id", "clicks", "iou"}
        assert isinstance(entry["annotation_id"], int) and isinstance(entry["image_id"], int)
        assert 1 <= len(entry["clicks"]) == len(entry["iou"]) <= max_clicks
        for click in entry["clicks"]:
            assert len(click) == 3 and all(isinstance(v, int) for v in click)
            assert click[2] in (0, 1)
        assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in entry["iou"])


def test_no_model_engine_run_follows_the_protocol(project, tmp_path):
    task = plan(project)
    report = evaluate(ClassicEngine(), task, max_clicks=5)
    assert len(report.objects) == 4 and report.images == 2
    for result in report.objects:
        truth = project.annotation(result.annotation_id).mask()
        first = clicker.next_click(truth, None)
        assert result.clicks[0] == first.as_list()  # the object's most interior pixel, positive
        finished = len(result.clicks) < 5
        assert not finished or result.iou[-1] == 1.0
    ious = [o.iou for o in report.objects]
    assert report.noc() == {
        "0.85": pytest.approx(np.mean([clicker.clicks_to_reach(v, 0.85, 5) for v in ious])),
        "0.9": pytest.approx(np.mean([clicker.clicks_to_reach(v, 0.9, 5) for v in ious])),
    }
    # Flat shapes on a smooth background: the no-model engine gets each within 5 clicks.
    assert all(clicker.reaches(v, 0.85, 5) for v in ious)
    out = tmp_path / "report.json"
    write_report(report, out)
    document = json.loads(out.read_text())
    _check_schema(document, 5)
    assert read_report(out).curve() == pytest.approx(report.curve())


def test_noc_keys_are_python_floats_as_str(project):
    report = evaluate(ClassicEngine(), plan(project, images=1), max_clicks=2, thresholds=(0.5, 1))
    assert list(report.document()["noc"]) == ["0.5", "1.0"]
    assert report.images == 1 and len(report.objects) == 2


def _drive_predictor(predictor, truth: np.ndarray, max_clicks: int):
    """The protocol driven on segment_anything's SamPredictor directly (no Annotator engine)."""
    points, labels, clicks, ious = [], [], [], []
    mask = logits = None
    for _ in range(max_clicks):
        click = clicker.next_click(truth, mask)
        if click is None:
            break
        points.append((click.x, click.y))
        labels.append(int(click.positive))
        coords, point_labels = np.array(points, np.float32), np.array(labels, np.int32)
        if logits is None:
            masks, scores, low = predictor.predict(coords, point_labels, multimask_output=True)
            index = int(np.argmax(scores))
        else:
            masks, scores, low = predictor.predict(
                coords, point_labels, mask_input=logits[None], multimask_output=False
            )
            index = 0
        mask, logits = masks[index], low[index]
        clicks.append(click.as_list())
        ious.append(clicker.iou(mask, truth))
    return clicks, ious


def test_tiny_sam_run_equals_sam_predictor_driven_the_same_way(
    project, tiny_sam_checkpoint, tiny_sam_reference
):
    from segment_anything import SamPredictor

    from annotator.core.images import load_image
    from annotator.engines.sam import load_sam

    engine = load_sam(tiny_sam_checkpoint, device="cpu", encoder="stock", decoder="torch")
    task = plan(project, images=1)
    report = evaluate(engine, task, max_clicks=4)
    predictor = SamPredictor(tiny_sam_reference)
    record = task.images[0]
    predictor.set_image(load_image(project.image_path(record)))
    assert [o.annotation_id for o in report.objects] == [
        a.id for a in project.annotations_of(record.id)
    ]
    for result in report.objects:
        truth = project.annotation(result.annotation_id).mask()
        clicks, ious = _drive_predictor(predictor, truth, 4)
        assert result.clicks == clicks
        assert result.iou == pytest.approx(ious, abs=1e-12)
    assert report.engine == engine.name


def test_plan_refuses_nothing_to_measure_and_missing_images(tmp_path, project):
    from annotator.core.project import Project

    empty = Project(tmp_path / "empty.json", images=list(project.images))
    with pytest.raises(UserError, match="no annotations"):
        plan(empty)
    (tmp_path / "images" / "scene1.png").unlink()
    with pytest.raises(UserError, match="scene1.png is missing"):
        plan(project)
    assert len(plan(project, images=1).images) == 1  # the first image is still there
    with pytest.raises(UserError):
        plan(project, images=0)


def test_read_report_refuses_what_is_not_a_report(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"engine": "x"}')
    with pytest.raises(UserError, match="not an eval report"):
        read_report(bad)
    bad.write_text("not json")
    with pytest.raises(UserError, match="not a readable JSON"):
        read_report(bad)
    report = EvalReport("e", 3, (0.85,), [ObjectResult(1, 1, [[1, 2, 1]], [0.9])])
    write_report(report, tmp_path / "ok.json")
    assert read_report(tmp_path / "ok.json").curve() == pytest.approx([0.9, 1.0, 1.0])


@pytest.mark.skipif(not DAVIS.is_dir(), reason="the DAVIS frames are not in ../shared")
def test_davis_frames_become_a_project(tmp_path):
    path, project = davis_project(tmp_path / "davis.json", limit=2)
    reread, _ = load_project(path)
    assert len(reread.images) == 2 and reread.total_annotations() == 2
    record = reread.images[0]
    assert (record.width, record.height) == (854, 480)
    assert reread.image_path(record).is_file()
    assert reread.annotations_of(record.id)[0].area > 1000
