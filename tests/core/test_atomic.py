"""Temporary files of writers that were killed are removed by the next write; live ones never."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from annotator.core import atomic
from annotator.core.atomic import atomic_write_bytes, atomic_writer

REPO = Path(__file__).resolve().parents[2]

# Writes half a file through atomic_writer, says so, then blocks inside the block until killed.
CHILD = """
import sys
from annotator.core.atomic import atomic_writer
with atomic_writer(sys.argv[1], backup=True) as stream:
    stream.write(b"half of a proj")
    stream.flush()
    print("writing", flush=True)
    sys.stdin.read()
"""


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL and pid checks are POSIX")
def test_the_temp_file_of_a_writer_killed_mid_write_goes_with_the_next_save(tmp_path):
    target = tmp_path / "annotations.json"
    target.write_bytes(b"version 1")
    env = dict(
        os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])
    )
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(target)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        assert child.stdout.readline() == b"writing\n"
        (leftover,) = tmp_path.glob(".annotations.json.*.tmp")
        assert f"-{child.pid}." in leftover.name
        atomic_write_bytes(target, b"version 2", backup=True)
        assert leftover.exists(), "the temp file of a live writer is kept"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdin.close()
        child.stdout.close()
    assert child.returncode == -signal.SIGKILL
    assert leftover.exists(), "SIGKILL left it behind"
    assert target.read_bytes() == b"version 2"
    atomic_write_bytes(target, b"version 3", backup=True)
    assert not leftover.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "annotations.json",
        "annotations.json.bak",
    ]
    assert target.read_bytes() == b"version 3"


def _temp(folder: Path, name: str, age: float = 0.0) -> Path:
    path = folder / name
    path.write_bytes(b"x")
    if age:
        then = time.time() - age
        os.utime(path, (then, then))
    return path


def test_only_our_stale_temp_files_of_the_same_target_are_removed(tmp_path):
    host, hour = atomic._HOST, atomic.STALE_AFTER
    dead_pid = _dead_pid()
    dead = _temp(tmp_path, f".p.json.{host}-{dead_pid}.abc123.tmp")
    dead_bak = _temp(tmp_path, f".p.json.bak.{host}-{dead_pid}.abc123.tmp")
    mine = _temp(tmp_path, f".p.json.{host}-{os.getpid()}.abc123.tmp", age=2 * hour)
    old_style_old = _temp(tmp_path, ".p.json.k2j4h5g6.tmp", age=2 * hour)
    old_style_new = _temp(tmp_path, ".p.json.a1b2c3d4.tmp")
    other_host_old = _temp(tmp_path, f".p.json.0000beef-{dead_pid}.abc.tmp", age=2 * hour)
    other_host_new = _temp(tmp_path, f".p.json.0000beef-{dead_pid}.xyz.tmp")
    other_target = _temp(tmp_path, f".q.json.{host}-{dead_pid}.abc123.tmp")
    not_ours = _temp(tmp_path, ".p.json.some.thing.tmp", age=2 * hour)
    with atomic_writer(tmp_path / "p.json", backup=True) as stream:
        stream.write(b"{}")
    removed = {dead, dead_bak, old_style_old, other_host_old}
    if os.name != "posix":  # pids cannot be told there: young files are kept
        removed -= {dead, dead_bak}
    kept = {mine, old_style_new, other_host_new, other_target, not_ours} | (
        {dead, dead_bak} - removed
    )
    assert {p for p in removed | kept if p.exists()} == kept


def _dead_pid() -> int:
    """A pid that ran and has ended (reaped)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid
