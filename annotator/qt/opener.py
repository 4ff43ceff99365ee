"""Open projects off the GUI thread: a 50,000-annotation COCO file takes a second or two to parse.

`ProjectOpener.open(path) -> token` reads on one background thread (`core.session.read_project`,
which only reads files) and emits `opened(token, ReadProject)` or `failed(token, sentence)` on the
GUI thread; the window makes the session there (lock, undo stack), which is fast.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from annotator.errors import UserError

log = logging.getLogger(__name__)


class ProjectOpener(QObject):
    opened = Signal(int, object)  # token, ReadProject
    failed = Signal(int, str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="annotator-open")
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

    def shutdown(self) -> None:
        self.token += 1
        self.executor.shutdown(wait=True)
