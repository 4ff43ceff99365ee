"""The architecture's promises: `import annotator` is light; the core never needs Qt."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import annotator


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def _qt_free_modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(annotator.__path__, "annotator."):
        if info.name.startswith("annotator.qt") or info.name == "annotator.__main__":
            continue
        names.append(info.name)
    return names


def test_import_annotator_loads_neither_torch_nor_qt():
    result = _run(
        "import sys, annotator, annotator.cli\n"
        "heavy = [m for m in ('torch', 'PySide6', 'segment_anything', 'cv2') if m in sys.modules]\n"
        "print(' '.join(heavy))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""


def test_core_and_engines_import_with_qt_blocked():
    modules = _qt_free_modules()
    assert "annotator.cli" in modules
    code = (
        "import sys, importlib\n"
        "sys.modules['PySide6'] = None\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "print('ok')"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_version_command_is_fast_and_light():
    result = subprocess.run(
        [sys.executable, "-m", "annotator", "--version"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    assert annotator.__version__ in result.stdout


def test_the_commands_and_the_store_never_import_ray():
    result = _run(
        "import sys, annotator.cli, annotator.cluster.ray_batch, annotator.engines.store\n"
        "annotator.cli._command_parser()\n"
        "print(' '.join(m for m in ('ray', 'fsspec', 'torch') if m in sys.modules))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
