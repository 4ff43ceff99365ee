"""Crash recovery: the journal and the autosave snapshot that folds it, written off the GUI thread.

Files beside `<project>`:
- `<project>.journal` (annotator.core.journal): every change, appended before the next is taken.
- `<project>.autosave`: a whole COCO document of the project at journal record N (our key holds
  {"recovery": {"session", "seq"}}), written from time to time so the journal stays short.
- `<name>.declined`: recovery files the person chose not to restore; kept (nothing is thrown
  away unasked) until the next explicit save.

`RecoveryWriter` is the session's one background thread for disk work: it fsyncs the journal at
least every `SYNC_INTERVAL_S`, and serialises and writes snapshots (the newest one wins), then
folds the journal. The GUI thread only takes `Project.snapshot()` (container copies).

`find_recovery` runs on open: the journal's header must name the project file exactly as it is on
disk now (size and mtime), else its records belong to another version and are not offered.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from annotator.core.atomic import atomic_write_bytes
from annotator.core.coco import (
    OUR_KEY,
    parse_document,
    project_document,
    read_document,
    serialize_document,
)
from annotator.core.journal import (
    Journal,
    file_stamp,
    journal_path,
    parse_records,
    read_journal_lines,
)
from annotator.core.project import Project
from annotator.errors import UserError

log = logging.getLogger(__name__)

SYNC_INTERVAL_S = 0.5  # the journal is fsynced at least this often when it has new records
FOLD_EVERY_RECORDS = 200  # a snapshot after this many records...
FOLD_EVERY_S = 60.0  # ...or this long after the first unfolded one
DECLINED_SUFFIX = ".declined"


def autosave_path(project_path: Path) -> Path:
    project_path = Path(project_path)
    return project_path.with_name(project_path.name + ".autosave")


def recovery_files(project_path: Path) -> list[Path]:
    """Every recovery file of the project, declined ones included."""
    files = [journal_path(project_path), autosave_path(project_path)]
    return files + [f.with_name(f.name + DECLINED_SUFFIX) for f in files]


def remove_files(paths: list[Path]) -> None:
    for path in paths:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            log.warning("could not remove %s: %s", path, exc)


def decline_recovery(project_path: Path) -> None:
    """Keep the current recovery files aside as `.declined` (the next save removes them)."""
    for path in (journal_path(project_path), autosave_path(project_path)):
        if path.exists():
            try:
                os.replace(path, path.with_name(path.name + DECLINED_SUFFIX))
            except OSError as exc:
                log.warning("could not set %s aside: %s", path, exc)


# ---------------------------------------------------------------------------------- snapshots
def write_snapshot(snapshot: Project, session_id: str, seq: int) -> Path:
    """Write `snapshot` (a `Project.snapshot()`) as the project's autosave at journal record
    `seq`. Raises UserError when it cannot be written (the project file is never touched)."""
    if snapshot.path is None:
        raise UserError("The project has no file yet, so it has no autosave.")
    target = autosave_path(snapshot.path)
    document = project_document(snapshot)
    document[OUR_KEY]["recovery"] = {"session": session_id, "seq": seq}
    try:
        atomic_write_bytes(target, serialize_document(document))
    except OSError as exc:
        raise UserError(f"Could not autosave to {target}: {exc.strerror or exc}.") from None
    return target


@dataclass
class Recovery:
    """Unsaved work found beside a project: `project` is the state it restores."""

    project: Project
    changes: int  # edits recovered (records replayed, plus those folded into the autosave)
    saved_at: float  # seconds since the epoch of the newest recovered edit
    session_id: str | None  # the journal to continue, when there is one
    header: dict | None
    records: list[dict] = field(default_factory=list)  # the journal's records after the autosave
    warning: str | None = None

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(self.saved_at))
        text = f"{self.changes} unsaved change(s), the last at {when}"
        return text + (f" ({self.warning})" if self.warning else "")


def find_recovery(project_path: Path, loaded: Project | None) -> Recovery | None:
    """The unsaved work beside `project_path` that applies to the file as it is now, or None.

    loaded: the project as just read from the file (or, for one never saved, as just built from
    its folder): the base the journal's records apply to; it is not changed. Raises nothing: an unreadable journal or autosave is logged and skipped.
    """
    project_path = Path(project_path).absolute()
    jpath = journal_path(project_path)
    header, raw_records = None, []
    if jpath.exists():
        try:
            header, raw_records = read_journal_lines(jpath)
        except OSError as exc:
            log.warning("journal %s unreadable: %s", jpath, exc)
    stamp = file_stamp(project_path)
    if (
        header is not None
        and header.get("base") == stamp
        and isinstance(header.get("session"), str)
    ):
        return _replay(project_path, loaded, header, raw_records)
    if header is not None:
        log.info("journal %s belongs to another version of the project; not offered", jpath)
    return _autosave_only(project_path, loaded)


def _load_autosave(project_path: Path) -> tuple[Project, dict] | None:
    path = autosave_path(project_path)
    if not path.exists():
        return None
    try:
        document = read_document(path)
        project, _ = parse_document(document, project_path)
    except UserError as exc:
        log.warning("autosave %s unreadable: %s", path, exc)
        return None
    ours = document.get(OUR_KEY) if isinstance(document.get(OUR_KEY), dict) else {}
    info = ours.get("recovery") if isinstance(ours.get("recovery"), dict) else {}
    return project, info


def _replay(project_path: Path, loaded: Project | None, header: dict, raw: list[dict]):
    session_id = header["session"]
    base, folded = None, 0
    autosaved = _load_autosave(project_path)
    if autosaved is not None and autosaved[1].get("session") == session_id:
        base, folded = autosaved[0], int(autosaved[1].get("seq", 0))
    raw = [r for r in raw if r["seq"] > folded]
    if base is None:
        base_seq = header.get("base_seq", 0)
        if raw and raw[0]["seq"] != (base_seq if isinstance(base_seq, int) else 0) + 1:
            log.warning("journal of %s was folded into an autosave that is gone", project_path)
            return _autosave_only(project_path, loaded)
        base = loaded.snapshot() if loaded is not None else Project(project_path)
    records, warning = parse_records(raw)
    for record in records:
        record.delta.apply_to(base)
    if not records and not folded:
        return None
    base.changes = 0
    newest = records[-1].time if records else _mtime(autosave_path(project_path))
    return Recovery(
        base,
        folded + len(records),
        newest,
        session_id,
        header,
        raw[: len(records)],
        warning,
    )


def _autosave_only(project_path: Path, loaded: Project | None) -> Recovery | None:
    """An autosave without a usable journal (an older build, or a lost journal): offered when it
    is newer than the project file."""
    path = autosave_path(project_path)
    if not path.exists():
        return None
    if loaded is not None and _mtime(path) <= _mtime(project_path):
        return None
    autosaved = _load_autosave(project_path)
    if autosaved is None:
        return None
    return Recovery(autosaved[0], 1, _mtime(path), None, None)


def _mtime(path: Path) -> float:
    try:
        return Path(path).stat().st_mtime
    except OSError:
        return 0.0


# ---------------------------------------------------------------------------------- the thread
class RecoveryWriter:
    """One background thread: fsyncs the journal and writes snapshots, then folds the journal.

    Everything it is handed is immutable or a snapshot; it never touches the live project.
    Failures are kept as sentences for the session to report (`take_errors`).
    """

    def __init__(self, journal: Journal):
        self.journal = journal
        self._tasks: queue.Queue = queue.Queue()
        self._errors: list[str] = []
        self._errors_lock = threading.Lock()
        self._pending_snapshot: tuple | None = None
        self._snapshot_lock = threading.Lock()
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._run, name="annotator-recovery", daemon=True)
        self._thread.start()

    def snapshot(self, project: Project, session_id: str, seq: int, header: dict) -> None:
        """Write this snapshot soon (a newer one replaces one not yet started)."""
        with self._snapshot_lock:
            self._pending_snapshot = (project, session_id, seq, header)
        self._idle.clear()
        self._tasks.put("snapshot")

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until queued snapshots are written (tests, closing)."""
        return self._idle.wait(timeout)

    def take_errors(self) -> list[str]:
        with self._errors_lock:
            errors, self._errors = self._errors, []
        return errors

    def stop(self) -> None:
        """Finish queued work, fsync once more and end the thread."""
        self._tasks.put("stop")
        self._thread.join()

    def _run(self) -> None:
        while True:
            try:
                task = self._tasks.get(timeout=SYNC_INTERVAL_S)
            except queue.Empty:
                task = None
            self._sync()
            if task == "snapshot":
                self._write_snapshot()
            if task == "stop":
                return
            if self._tasks.empty():
                with self._snapshot_lock:
                    if self._pending_snapshot is None:
                        self._idle.set()

    def _sync(self) -> None:
        try:
            self.journal.sync()
        except OSError as exc:
            self._error(f"The journal could not be flushed to disk: {exc.strerror or exc}.")

    def _write_snapshot(self) -> None:
        with self._snapshot_lock:
            pending, self._pending_snapshot = self._pending_snapshot, None
        if pending is None:
            return
        project, session_id, seq, header = pending
        try:
            write_snapshot(project, session_id, seq)
            self.journal.compact(seq, header)
        except UserError as exc:
            self._error(str(exc))
        except OSError as exc:
            self._error(f"The journal could not be folded: {exc.strerror or exc}.")
        except Exception:  # a bug must not end the thread that keeps the journal durable
            log.exception("autosave failed")
            self._error("The autosave failed (details in the log).")

    def _error(self, message: str) -> None:
        log.warning("%s", message)
        with self._errors_lock:
            self._errors.append(message)
