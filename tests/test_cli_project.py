"""`annotator export` and `annotator validate` through the real entry point (exit statuses)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from annotator.cli import main
from annotator.core.coco import save_project
from annotator.core.project import Project, annotation_from_mask


def _project(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(folder / "a.png")
    project = Project.from_folder(folder)
    mask = np.zeros((20, 30), bool)
    mask[2:12, 3:9] = True
    mask[5:7, 5:7] = False
    project.insert_annotation(annotation_from_mask(1, 1, 2, mask))
    return save_project(project)


def test_validate_exit_statuses(tmp_path, capsys):
    path = _project(tmp_path)
    assert main(["validate", str(path)]) == 0
    assert "No problems found" in capsys.readouterr().out
    (tmp_path / "a.png").unlink()
    assert main(["validate", str(path)]) == 1
    assert "image file a.png is missing" in capsys.readouterr().out
    assert main(["validate", "--no-image-files", str(path)]) == 0
    path.write_text("{")
    assert main(["validate", str(path)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_export_every_format(tmp_path, capsys):
    path = _project(tmp_path / "p")
    for fmt in ("coco", "coco-polygons", "png", "cutouts", "yolo"):
        out = tmp_path / "out" / fmt
        assert main(["export", str(path), "--format", fmt, "--out", str(out)]) == 0
        assert f"as {fmt} to" in capsys.readouterr().out
        assert any(out.rglob("*"))
    polygons = json.loads((tmp_path / "out" / "coco-polygons" / "annotations.json").read_text())
    assert isinstance(polygons["annotations"][0]["segmentation"], list)
    assert (
        main(
            [
                "export",
                str(tmp_path / "missing.json"),
                "--format",
                "coco",
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )


def test_console_entry_point_runs_validate(tmp_path):
    path = _project(tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "annotator", "validate", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "No problems found" in result.stdout
