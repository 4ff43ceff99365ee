"""`annotator eval`: the report and plot it writes, --compare, and its bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from eval_project import synthetic_project

from annotator.cli import main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def project_path(tmp_path):
    return synthetic_project(tmp_path / "p")[0]


def test_eval_prints_the_figures_and_writes_report_and_plot(project_path, tmp_path, capsys):
    out, plot = tmp_path / "r.json", tmp_path / "c.png"
    argv = ["eval", str(project_path), "--max-clicks", "3", "--out", str(out), "--plot", str(plot)]
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert "NoC@85:" in printed.out and "NoC@90:" in printed.out
    assert "mean IoU: @1 " in printed.out and "@3 " in printed.out and "@5" not in printed.out
    assert "ms per click" in printed.out
    assert "clicks" in printed.err  # the progress bar
    document = json.loads(out.read_text())
    assert set(document) == {"engine", "max_clicks", "noc", "objects"}
    assert document["engine"] == "Classic (no model)" and document["max_clicks"] == 3
    assert list(document["noc"]) == ["0.85", "0.9"] and len(document["objects"]) == 4
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_compare_plots_several_reports(project_path, tmp_path, capsys):
    a, b, plot = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "both.png"
    common = ["eval", str(project_path), "--max-clicks", "2", "--images", "1"]
    assert main([*common, "--out", str(a)]) == 0
    assert main([*common, "--no-model", "grabcut", "--iou", "0.5", "--out", str(b)]) == 0
    assert list(json.loads(b.read_text())["noc"]) == ["0.5"]
    assert json.loads(b.read_text())["engine"] == "Classic (GrabCut, no model)"
    capsys.readouterr()
    assert main(["eval", "--compare", str(a), str(b), "--plot", str(plot)]) == 0
    printed = capsys.readouterr().out
    assert "Classic (no model) (a.json, 2 objects)" in printed
    assert "Classic (GrabCut, no model) (b.json, 2 objects)" in printed
    assert plot.read_bytes()[:4] == b"\x89PNG"


def _bad_inputs(tmp_path: Path, project_path: Path) -> dict[str, list[str]]:
    from annotator.core.coco import load_project, save_project
    from annotator.core.project import Project

    project, _ = load_project(project_path)
    empty = tmp_path / "empty.json"
    save_project(Project(empty, images=list(project.images)), empty)
    missing = tmp_path / "missing"
    missing_path = synthetic_project(missing, images=1)[0]
    (missing / "images" / "scene0.png").unlink()
    fake = tmp_path / "fake.pth"
    fake.write_bytes(b"definitely not a checkpoint")
    ok = str(project_path)
    return {
        "no annotations": ["eval", str(empty)],
        "missing image": ["eval", str(missing_path)],
        "unreadable checkpoint": ["eval", ok, "--checkpoint", str(fake)],
        "missing checkpoint": ["eval", ok, "--checkpoint", str(tmp_path / "no.pth")],
        "missing project": ["eval", str(tmp_path / "nope.json")],
        "bad iou": ["eval", ok, "--iou", "0.85,high"],
        "iou above one": ["eval", ok, "--iou", "1.5"],
        "zero clicks": ["eval", ok, "--max-clicks", "0"],
        "out not json": ["eval", ok, "--out", str(tmp_path / "r.txt")],
        "plot not png": ["eval", ok, "--plot", str(tmp_path / "c.jpg")],
        "no project": ["eval"],
        "compare a missing report": ["eval", "--compare", str(tmp_path / "none.json")],
        "compare not a report": ["eval", "--compare", str(empty)],
    }


def test_bad_input_is_one_line_and_exit_2(tmp_path, project_path, capsys):
    for name, argv in _bad_inputs(tmp_path, project_path).items():
        assert main(argv) == 2, name
        err = capsys.readouterr().err
        assert err.startswith("annotator: ") and err.count("\n") == 1, (name, err)
        assert "Traceback" not in err


@pytest.mark.parametrize("case", ["unreadable checkpoint", "no annotations"])
def test_bad_input_in_a_real_process_has_no_traceback(tmp_path, project_path, case):
    argv = _bad_inputs(tmp_path, project_path)[case]
    code = "import sys\nfrom annotator.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    result = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("annotator: ")
    assert "Traceback" not in result.stderr


def test_eval_with_the_tiny_sam_checkpoint(project_path, tmp_path, tiny_sam_checkpoint, capsys):
    out = tmp_path / "sam.json"
    argv = ["eval", str(project_path), "--checkpoint", str(tiny_sam_checkpoint), "--device", "cpu"]
    assert main([*argv, "--images", "1", "--max-clicks", "2", "--out", str(out)]) == 0
    assert "NoC@90:" in capsys.readouterr().out
    document = json.loads(out.read_text())
    assert document["engine"].startswith("SAM") and len(document["objects"]) == 2
