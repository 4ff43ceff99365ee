"""Open and save projects off the GUI thread: a 50,000-annotation COCO file takes a second or
two to parse and a few tenths to write.

One background thread, in order. `open(path) -> token` reads (`core.session.read_project`, which
only reads files) and emits `opened(token, ReadProject)` or `failed(token, sentence)`; the window
makes the session on the GUI thread (lock, undo stack: fast). `save(job)` writes a
`core.session.SaveJob` (a snapshot, so editing goes on) and emits `saved(job)` or
`save_failed(job, sentence)`; the window then calls `session.finish_save(job)`.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from annotator.errors import UserError

log = logging.getLogger(__name__)


class ProjectIO(QObject):
    opened = Signal(int, object)  # token, ReadProject
    failed = Signal(int, str)
    saved = Signal(object)  # SaveJob
    save_failed = Signal(object, str)  # SaveJob, sentence

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="annotator-project-io")
        self.token = 0

    def open(self, path: Path | None) -> int:
        self.token += 1
        self.executor.submit(self._run, self.token, path)
        return self.token

    def _run(self, token: int, path: Path | None) -> None:
        from annotator.core.session import read_project

        try:
            read = read_project(path)
        except UserError as exc:
            self.failed.emit(token, str(exc))
            return
        except Exception as exc:  # a bug: logged with its traceback, one sentence shown
            log.exception("opening %s failed", path)
            self.failed.emit(token, f"{path} could not be opened ({type(exc).__name__}: {exc}).")
            return
        self.opened.emit(token, read)

    def save(self, job) -> None:
        self.executor.submit(self._write, job)

    def _write(self, job) -> None:
        try:
            job.write()
        except UserError as exc:
            self.save_failed.emit(job, str(exc))
            return
        except Exception as exc:  # a bug: logged with its traceback, the file is intact
            log.exception("saving %s failed", job.target)
            self.save_failed.emit(
                job,
                f"Could not save {job.target} ({type(exc).__name__}: {exc}); the last "
                "saved version is intact.",
            )
            return
        self.saved.emit(job)

    def shutdown(self) -> None:
        self.token += 1
        self.executor.shutdown(wait=True)
