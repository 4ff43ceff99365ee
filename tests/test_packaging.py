"""Packaging: the wheel holds the resources and runs from a fresh venv; desktop files validate.

The wheel test builds from a copy of the sources (so the checkout gets no build/ or egg-info),
installs the wheel with --no-deps into a new virtual environment, and makes the heavy dependencies
(torch, PySide6...) importable there with a .pth file pointing at this venv's site-packages,
because installing torch again would take minutes. The .pth adds that folder as a plain path
entry, without running the .pth files inside it, so the dev checkout's editable install of
`annotator` does not leak in: the test checks the package comes from the wheel.
"""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import sysconfig
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest

import annotator

REPO = Path(__file__).resolve().parents[1]
PACKAGING = REPO / "packaging"
ICONS = REPO / "resources" / "icons"
APP_ID = "io.github.annotator.Annotator"
ICON_SIZES = (16, 24, 32, 48, 64, 128, 256, 512)


# ---------------------------------------------------------------------------- desktop integration


@pytest.mark.skipif(shutil.which("desktop-file-validate") is None, reason="desktop-file-utils")
def test_desktop_file_validates():
    result = subprocess.run(
        ["desktop-file-validate", str(PACKAGING / f"{APP_ID}.desktop")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "error" not in (result.stdout + result.stderr).lower()


@pytest.mark.skipif(shutil.which("appstreamcli") is None, reason="needs appstream")
def test_metainfo_validates():
    result = subprocess.run(
        ["appstreamcli", "validate", "--no-net", str(PACKAGING / f"{APP_ID}.metainfo.xml")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_metainfo_desktop_file_and_icons_agree():
    root = ET.parse(PACKAGING / f"{APP_ID}.metainfo.xml").getroot()
    assert root.findtext("id") == APP_ID
    assert root.findtext("launchable") == f"{APP_ID}.desktop"
    releases = [r.get("version") for r in root.iter("release")]
    assert annotator.__version__ in releases
    desktop = (PACKAGING / f"{APP_ID}.desktop").read_text().splitlines()
    assert f"Icon={APP_ID}" in desktop
    assert any(line.startswith("Exec=annotator ") for line in desktop)


def test_icons_at_the_usual_sizes():
    from PIL import Image

    ET.parse(ICONS / "annotator.svg")  # well-formed
    for size in ICON_SIZES:
        with Image.open(ICONS / f"annotator-{size}.png") as image:
            assert image.size == (size, size)
            assert image.mode == "RGBA"
            assert image.getpixel((0, 0))[3] == 0  # rounded corner: transparent
            assert image.getpixel((size // 2, size // 2))[3] == 255
    with Image.open(ICONS / "annotator.ico") as ico:
        assert (256, 256) in ico.info["sizes"] and (16, 16) in ico.info["sizes"]


def test_pyinstaller_spec_is_valid_python_and_names_existing_files():
    source = (PACKAGING / "annotator.spec").read_text()
    ast.parse(source)
    assert (REPO / "annotator" / "__main__.py").is_file()
    for icon in ("annotator.ico", "annotator.icns"):
        assert icon in source and (ICONS / icon).is_file()
    for needed in ('"annotator/resources"', "segment_anything", "onnxruntime"):
        assert needed in source


# ---------------------------------------------------------------------------- the wheel


def _copy_sources(dest: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info", "build", "dist")
    dest.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, dest / name)
    for name in ("annotator", "resources"):
        shutil.copytree(REPO / name, dest / name, ignore=ignore)
    return dest


def _venv_paths(venv: Path) -> tuple[Path, Path]:
    """(python, scripts folder) of a venv on this platform."""
    scripts = venv / ("Scripts" if os.name == "nt" else "bin")
    return scripts / ("python.exe" if os.name == "nt" else "python"), scripts


def _clean_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env.pop("PYTHONHOME", None)
    env["QT_QPA_PLATFORM"] = "offscreen"
    return env


def _run(cmd: list, cwd: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=_clean_env(),
        capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory):
    """(wheel path, fresh venv python, its scripts folder, work dir) with the wheel installed."""
    pytest.importorskip("build")
    work = tmp_path_factory.mktemp("wheel")
    src = _copy_sources(work / "src")
    built = _run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--skip-dependency-check",
            "--outdir",
            work / "dist",
            src,
        ],
        cwd=work,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = (work / "dist").glob("annotator-*.whl")

    venv = work / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=work)
    assert made.returncode == 0, made.stderr
    python, scripts = _venv_paths(venv)
    installed = _run(
        [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
         "--disable-pip-version-check", wheel],
        cwd=work,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], work)
    fresh_site = Path(site.stdout.strip())
    (fresh_site / "zz_dev_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return wheel, python, scripts, work


@pytest.mark.slow
def test_wheel_holds_the_resources(installed_wheel):
    wheel = installed_wheel[0]
    names = set(zipfile.ZipFile(wheel).namelist())
    for sample in ("coffee.png", "chelsea.png", "astronaut.png", "LICENSES.md"):
        assert f"annotator/resources/samples/{sample}" in names
    for size in ICON_SIZES:
        assert f"annotator/resources/icons/annotator-{size}.png" in names
    assert "annotator/resources/icons/annotator.svg" in names
    assert "annotator/resources/default_categories.json" in names
    assert "annotator/models/download.py" in names and "annotator/cli/models_cmd.py" in names


@pytest.mark.slow
def test_installed_wheel_runs_version_and_finds_its_resources(installed_wheel):
    _, python, scripts, work = installed_wheel
    launcher = scripts / ("annotator.exe" if os.name == "nt" else "annotator")
    version = _run([launcher, "--version"], cwd=work, timeout=60)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"annotator {annotator.__version__}"

    where = _run(
        [python, "-c",
         "import annotator, importlib.resources as r; print(annotator.__file__); "
         "print(r.files('annotator.resources').joinpath('samples', 'coffee.png').is_file())"],
        cwd=work, timeout=60,
    )  # fmt: skip
    assert where.returncode == 0, where.stderr
    module_file, sample_found = where.stdout.split()
    assert Path(module_file).is_relative_to(python.parent.parent)  # the wheel's copy, not the repo
    assert sample_found == "True"
    # the dependencies come through the .pth (platformdirs for the data folder)
    listed = _run([python, "-m", "annotator", "models", "list"], cwd=work, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert "vit_b" in listed.stdout


@pytest.mark.slow
def test_installed_wheel_segments_with_a_checkpoint(installed_wheel, tiny_sam_checkpoint):
    from PIL import Image

    _, python, _, work = installed_wheel
    names = _run(
        [python, "-c", "from annotator.cli import command_names; print(*command_names())"],
        cwd=work, timeout=60,
    )  # fmt: skip
    assert names.returncode == 0, names.stderr
    if "segment" not in names.stdout.split():
        pytest.skip("`annotator segment` is not available yet (annotator/cli/engine_cmds.py)")
    image = REPO / "resources" / "samples" / "chelsea.png"
    out = work / "m.png"
    result = _run(
        [python, "-m", "annotator", "segment", image, "--checkpoint", tiny_sam_checkpoint,
         "--point", "200,150", "--out", out],
        cwd=work, timeout=240,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    with Image.open(out) as mask, Image.open(image) as original:
        assert mask.size == original.size
