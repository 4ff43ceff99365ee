"""The project lock: exclusive between processes, whole when read, and safe to take over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from annotator.core import lock as lock_module
from annotator.core.lock import (
    STALE_AFTER_S,
    ProjectLock,
    _read,
    lock_holder_of,
    lock_path,
)
from annotator.errors import UserError

REPO = Path(__file__).resolve().parents[2]

# One contender: waits behind the barrier (the file "go"), acquires, reports, holds the lock
# until "done" exists, then releases. "nolink" runs it where os.link is refused and the new lock
# stays empty for 50 ms (a slow network share), so the others read it empty.
CONTENDER = r"""
import json, os, sys, time
from pathlib import Path
from annotator.core.lock import ProjectLock
project, sync, index, mode = sys.argv[1], Path(sys.argv[2]), sys.argv[3], sys.argv[4]
if mode == "nolink":  # no hard links, and a slow share: the lock stays empty for a moment
    def refused(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted")
    def slow_open(path, flags, *args, _open=os.open):
        fd = _open(path, flags, *args)
        if str(path).endswith(".lock") and flags & os.O_EXCL:
            time.sleep(0.05)
        return fd
    os.link, os.open = refused, slow_open
lock = ProjectLock(project)
(sync / f"ready-{index}").touch()
while not (sync / "go").exists():
    time.sleep(0.0002)
holder = lock.acquire()
result = {"pid": os.getpid(), "won": holder is None, "holder": holder and holder.pid}
(sync / f"result-{index}.part").write_text(json.dumps(result))
os.replace(sync / f"result-{index}.part", sync / f"result-{index}")
while not (sync / "done").exists():
    time.sleep(0.001)
lock.release()
"""


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def _wait_for(condition, processes, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        for process in processes:
            if process.poll() not in (None, 0):
                _, err = process.communicate()
                pytest.fail(f"a contender died while waiting for {what}: {err}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def _race(project: Path, sync: Path, contenders: int = 8, mode: str = "link") -> list[dict]:
    """Start `contenders` processes behind a barrier; each tries to acquire once."""
    sync.mkdir()
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", CONTENDER, str(project), str(sync), str(i), mode],
            env=_env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(contenders)
    ]
    results_files = [sync / f"result-{i}" for i in range(contenders)]
    try:
        _wait_for(
            lambda: all((sync / f"ready-{i}").exists() for i in range(contenders)),
            processes,
            "the contenders to start",
        )
        (sync / "go").touch()
        _wait_for(lambda: all(p.exists() for p in results_files), processes, "the results")
        results = [json.loads(p.read_text()) for p in results_files]
    finally:
        (sync / "done").touch()
        errors = [p.communicate(timeout=60)[1] for p in processes]
    assert [p.returncode for p in processes] == [0] * contenders, errors
    return results


def _assert_one_winner(results: list[dict], still_empty_ok: bool = False) -> None:
    winners = [r["pid"] for r in results if r["won"]]
    assert len(winners) == 1, f"exactly one process holds the lock, not {len(winners)}"
    told = {winners[0], 0} if still_empty_ok else {winners[0]}  # 0: read while still empty
    assert all(r["holder"] in told for r in results if not r["won"]), (
        "every other process is told who holds it"
    )


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.name != "p.json")


def _age(path: Path, seconds: float) -> None:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns - int(seconds * 1e9)))


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def _write_lock(path: Path, pid: int, host: str) -> None:
    lock_path(path).write_text(
        json.dumps({"pid": pid, "host": host, "started": time.time() - 99, "token": "old"})
    )


@pytest.fixture
def no_hard_links(monkeypatch):
    def refused(*args, **kwargs):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(lock_module.os, "link", refused)


# ------------------------------------------------------------------ one process


def test_second_window_is_warned_and_lock_is_released(tmp_path):
    path = tmp_path / "p.json"
    first, second = ProjectLock(path), ProjectLock(path)
    assert first.acquire() is None
    holder = second.acquire()
    assert holder is not None and holder.pid == os.getpid() and holder.host == socket.gethostname()
    assert str(os.getpid()) in holder.describe()
    first.release()
    assert not lock_path(path).exists()
    assert second.acquire() is None
    with pytest.raises(UserError, match="open in another window"):
        with ProjectLock(path):
            pass
    second.release()
    with ProjectLock(path) as lock:
        assert lock.held
    assert not lock_path(path).exists()
    assert _leftovers(tmp_path) == [], "no temporary or claim files are left"


def test_the_lock_is_whole_json_from_the_start(tmp_path):
    path = tmp_path / "p.json"
    lock = ProjectLock(path)
    assert lock.acquire() is None
    info = json.loads(lock_path(path).read_text())
    assert info["pid"] == os.getpid() and info["host"] == socket.gethostname()
    assert len(info["token"]) == 32 and abs(info["started"] - time.time()) < 60
    assert _leftovers(tmp_path) == ["p.json.lock"], "the temporary file is gone"
    lock.release()


def test_lock_survives_a_crash_and_a_dead_holder_is_taken_over(tmp_path):
    path = tmp_path / "p.json"
    crashed = ProjectLock(path)
    crashed.acquire()
    del crashed  # a crash: nobody released it
    assert json.loads(lock_path(path).read_text())["pid"] == os.getpid()
    _write_lock(path, _dead_pid(), socket.gethostname())
    lock = ProjectLock(path)
    assert lock.acquire() is None, "the holder's process is dead: stale, taken over"
    assert json.loads(lock_path(path).read_text())["pid"] == os.getpid()
    assert _leftovers(tmp_path) == ["p.json.lock"], "the claim is removed after the take-over"
    lock.release()
    assert not lock_path(path).exists()


def test_live_or_remote_holders_are_reported_and_force_takes_over(tmp_path):
    path = tmp_path / "p.json"
    _write_lock(path, 1, "another-machine.example")
    lock = ProjectLock(path)
    holder = lock.acquire()
    assert holder is not None and holder.host == "another-machine.example"
    assert lock.acquire(force=True) is None
    assert json.loads(lock_path(path).read_text())["pid"] == os.getpid()
    lock.release()
    assert not lock_path(path).exists()


@pytest.mark.parametrize("content", [b"", b'{"pid": 12'], ids=["empty", "partial"])
def test_an_unreadable_lock_is_held_while_young_and_stale_when_old(tmp_path, content):
    path = tmp_path / "p.json"
    lock_path(path).write_bytes(content)  # someone is writing it (no hard links there)
    lock = ProjectLock(path)
    holder = lock.acquire()
    assert holder is not None and holder.pid == 0, "younger than 10 s: held, not stale"
    assert "still writing its lock file" in holder.describe()
    assert lock_holder_of(path) is not None
    assert lock_path(path).read_bytes() == content, "left alone"
    _age(lock_path(path), STALE_AFTER_S + 1)  # its writer crashed
    assert lock_holder_of(path) is None
    assert lock.acquire() is None, "older than 10 s: stale, taken over"
    assert json.loads(lock_path(path).read_text())["token"] == lock._token
    lock.release()
    assert not lock_path(path).exists()


def test_without_hard_links_the_fallback_still_excludes(tmp_path, no_hard_links):
    path = tmp_path / "p.json"
    first, second = ProjectLock(path), ProjectLock(path)
    assert first.acquire() is None
    assert json.loads(lock_path(path).read_text())["token"] == first._token
    assert _leftovers(tmp_path) == ["p.json.lock"]
    holder = second.acquire()
    assert holder is not None and holder.pid == os.getpid()
    first.release()
    assert not lock_path(path).exists()
    assert second.acquire() is None
    second.release()


def test_release_keeps_a_lock_someone_else_took_over(tmp_path):
    path = tmp_path / "p.json"
    first, second = ProjectLock(path), ProjectLock(path)
    first.acquire()
    assert second.acquire(force=True) is None
    first.release()
    assert lock_path(path).exists(), "the second window still holds it"
    second.release()
    assert not lock_path(path).exists()


def test_release_keeps_a_lock_another_process_forcibly_took(tmp_path):
    path = tmp_path / "p.json"
    lock = ProjectLock(path)
    assert lock.acquire() is None
    taker = subprocess.run(
        [
            sys.executable,
            "-c",
            "import os, sys\n"
            "from annotator.core.lock import ProjectLock\n"
            "assert ProjectLock(sys.argv[1]).acquire(force=True) is None\n"
            "print(os.getpid())\n",  # and exits without releasing
            str(path),
        ],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert taker.returncode == 0, taker.stderr
    lock.release()
    assert lock_path(path).exists(), "the other process's lock is kept"
    assert json.loads(lock_path(path).read_text())["pid"] == int(taker.stdout)


def test_a_crashed_take_over_does_not_wedge_the_lock(tmp_path, monkeypatch):
    path = tmp_path / "p.json"
    _write_lock(path, _dead_pid(), socket.gethostname())
    claim = lock_path(path).with_name(f"p.json.lock.{_read(lock_path(path)).identity}.claim1")
    claim.touch()  # another process is taking it over right now
    monkeypatch.setattr(lock_module, "_ACQUIRE_PATIENCE_S", 0.2)
    with pytest.raises(UserError, match="keep changing it"):
        ProjectLock(path).acquire()
    assert json.loads(lock_path(path).read_text())["token"] == "old", "left to that process"
    _age(claim, STALE_AFTER_S + 1)  # that process crashed in the middle
    lock = ProjectLock(path)
    assert lock.acquire() is None
    assert json.loads(lock_path(path).read_text())["token"] == lock._token
    assert _leftovers(tmp_path) == ["p.json.lock"], "the crashed claim is cleaned up too"
    lock.release()


def test_lock_holder_of_names_a_live_holder_other_than_us(tmp_path):
    path = tmp_path / "p.json"
    assert lock_holder_of(path) is None, "no lock"
    mine = ProjectLock(path)
    assert mine.acquire() is None
    holder = lock_holder_of(path)
    assert holder is not None and holder.pid == os.getpid(), "another window of this process"
    assert lock_holder_of(path, own=mine) is None, "our own lock is no obstacle"
    assert lock_holder_of(tmp_path / "other.json", own=mine) is None
    mine.release()
    assert lock_holder_of(path, own=mine) is None
    _write_lock(path, _dead_pid(), socket.gethostname())
    assert lock_holder_of(path) is None, "a stale lock holds nothing"
    _write_lock(path, 1, "another-machine.example")
    assert lock_holder_of(path).host == "another-machine.example"


# ------------------------------------------------------------------ many processes


@pytest.mark.parametrize("mode", ["link", "nolink"])
def test_racing_processes_exactly_one_wins(tmp_path, mode):
    folder = tmp_path / "project"
    folder.mkdir()
    project = folder / "p.json"
    for round_ in range(3):
        results = _race(project, tmp_path / f"sync-{round_}", mode=mode)
        _assert_one_winner(results, still_empty_ok=mode == "nolink")
        assert _leftovers(folder) == [], "the winner released it; nothing else is left"


@pytest.mark.parametrize("stale", ["dead-pid", "old-empty"])
def test_concurrent_take_overs_of_one_stale_lock_exactly_one_wins(tmp_path, stale):
    folder = tmp_path / "project"
    folder.mkdir()
    project = folder / "p.json"
    dead = _dead_pid()
    for round_ in range(3):
        if stale == "dead-pid":
            _write_lock(project, dead, socket.gethostname())
        else:
            lock_path(project).write_bytes(b"")
            _age(lock_path(project), STALE_AFTER_S + 5)
        _assert_one_winner(_race(project, tmp_path / f"sync-{round_}"))
        assert _leftovers(folder) == []
