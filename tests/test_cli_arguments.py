"""Bad arguments to any command, or to the window, are one line on stderr and exit status 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from annotator.cli import command_names, main


@pytest.mark.parametrize(
    "argv",
    [
        ["export", "p.json"],  # --format and --out missing
        ["export", "p.json", "--format", "tiff", "--out", "x"],  # unknown format
        ["validate"],  # no project
        ["segment", "img.png", "--model-type", "vit_x", "--out", "m.png"],
        ["auto", "folder"],  # --checkpoint and --out missing
        ["models", "download"],  # no type
        ["info"],  # no checkpoint
        ["--model-type", "vit_q"],  # the window's own arguments
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(argv, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("annotator: ") and "\n" not in err, err
    assert "--help" in err


def test_every_command_is_registered():
    assert set(command_names()) >= {
        "segment",
        "info",
        "embed",
        "auto",
        "export",
        "validate",
        "models",
    }


def test_no_traceback_from_a_subprocess():
    result = subprocess.run(
        [sys.executable, "-m", "annotator", "export", "missing.json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and "usage:" not in result.stderr
