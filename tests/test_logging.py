"""One logger: a rotating file in the log folder, stderr only with -v, tracebacks of caught errors."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from annotator import log
from annotator.cli import main

REPO = Path(__file__).resolve().parents[1]
# A log record as the handlers format it: "2024-05-01 12:00:00,123 INFO annotator.cli [pid ..."
LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ annotator[.\w]* \[pid \d+", re.M
)


@pytest.fixture(autouse=True)
def _detach_handlers():
    yield
    log.close_logging()  # in-process setup_logging must not outlive the test's folders


def _cli(args: list[str], log_dir: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, ANNOTATOR_LOG_DIR=str(log_dir))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return subprocess.run(
        [sys.executable, "-m", "annotator", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def _log_text(log_dir: Path) -> str:
    return (log_dir / log.LOG_FILE_NAME).read_text(encoding="utf-8")


@pytest.mark.parametrize("where", ["before", "after"])
def test_verbose_before_or_after_the_command_logs_to_stderr_and_the_file(tmp_path, where):
    missing = tmp_path / "missing.json"
    args = ["validate", str(missing)]
    args = ["-v", *args] if where == "before" else [*args, "-v"]
    result = _cli(args, tmp_path / "logs")
    assert result.returncode == 2, result.stderr
    assert LOG_LINE.search(result.stderr), result.stderr
    assert result.stderr.rstrip().splitlines()[-1] == (
        f"annotator: Project file {missing} does not exist."
    ), "the sentence stays the last line"
    text = _log_text(tmp_path / "logs")
    assert LOG_LINE.search(text) and "does not exist" in text
    assert "Raised here" in text, "with -v the DEBUG records go to the file too"


def test_without_verbose_stderr_is_the_one_sentence_and_the_file_has_the_log(tmp_path):
    missing = tmp_path / "missing.json"
    result = _cli(["validate", str(missing)], tmp_path / "logs")
    assert result.returncode == 2
    assert result.stderr == f"annotator: Project file {missing} does not exist.\n"
    text = _log_text(tmp_path / "logs")
    assert LOG_LINE.search(text) and "Stopped: Project file" in text
    assert "Raised here" not in text, "DEBUG only with -v"


def test_verbose_before_the_window_path_reaches_the_window(tmp_path, monkeypatch):
    pytest.importorskip("PySide6")
    import annotator.qt.app as app

    opened = []
    monkeypatch.setattr(app, "run_app", lambda args: opened.append(args) or 0)
    folder = tmp_path / "images"
    folder.mkdir()
    assert main(["-v", str(folder)]) == 0
    assert main([str(folder), "--verbose"]) == 0
    assert [args.path for args in opened] == [str(folder)] * 2


def test_verbose_is_listed_in_every_help(capsys):
    for argv in (["--help"], ["validate", "--help"], ["models", "download", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        assert "--verbose" in capsys.readouterr().out, argv


def test_a_caught_unexpected_error_is_logged_with_its_traceback(tmp_path, monkeypatch, capsys):
    from annotator.engines.cache import EmbeddingCache

    monkeypatch.setenv("ANNOTATOR_LOG_DIR", str(tmp_path / "logs"))
    assert log.setup_logging(verbose=False) == tmp_path / "logs" / log.LOG_FILE_NAME
    cache = EmbeddingCache(tmp_path / "cache")
    image = np.zeros((8, 8, 3), np.uint8)
    key = cache.key(image, "model-a")
    cache.root.mkdir()
    cache.path_for(key).write_bytes(b"PK\x03\x04 not really a zip")  # a torn entry
    assert cache.get(image, "model-a") is None, "a miss, never raised"
    assert not cache.path_for(key).exists()
    text = _log_text(tmp_path / "logs")
    assert "Dropping the unreadable cache entry" in text and "Traceback" in text
    assert capsys.readouterr().err == "", "nothing on stderr without -v"


def test_setup_twice_never_doubles_the_handlers(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ANNOTATOR_LOG_DIR", str(tmp_path / "logs"))
    log.setup_logging(verbose=True)
    log.setup_logging(verbose=True)
    logging.getLogger("annotator.test").warning("once %s", "only")
    assert _log_text(tmp_path / "logs").count("once only") == 1
    assert capsys.readouterr().err.count("once only") == 1
    log.setup_logging(verbose=False)
    logging.getLogger("annotator.test").warning("quiet now")
    assert capsys.readouterr().err == ""
    assert "quiet now" in _log_text(tmp_path / "logs")


def test_an_unusable_log_folder_logs_to_nothing(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("ANNOTATOR_LOG_DIR", str(blocker / "logs"))
    assert log.setup_logging(verbose=False) is None
    logging.getLogger("annotator.test").error("goes nowhere")
    assert capsys.readouterr().err == "", "not even logging's last resort on stderr"


def test_the_log_file_rotates(tmp_path, monkeypatch):
    monkeypatch.setenv("ANNOTATOR_LOG_DIR", str(tmp_path / "logs"))
    monkeypatch.setattr(log, "MAX_BYTES", 2000)
    log.setup_logging()
    for i in range(200):
        logging.getLogger("annotator.test").info("line %d %s", i, "x" * 50)
    names = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert names == ["annotator.log", "annotator.log.1", "annotator.log.2", "annotator.log.3"]
    assert all(p.stat().st_size <= 2200 for p in (tmp_path / "logs").iterdir())


def test_import_annotator_and_its_log_module_stay_light():
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import annotator, annotator.log\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before}\n"
        "print(json.dumps(sorted(new - set(sys.stdlib_module_names) - {'annotator'})))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", "import json\n" + code],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [], "only the standard library besides annotator"
