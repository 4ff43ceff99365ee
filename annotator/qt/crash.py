"""Crash safety: an unhandled exception autosaves first, then explains itself, and the app goes on.

Peers lost unsaved labels when a bug killed the process. `install_excepthook` replaces
`sys.excepthook` (which PySide6 calls for exceptions escaping slots and event handlers) and
`threading.excepthook`. For each unhandled exception it:

1. logs the traceback (the "annotator" log file) and prints it to stderr, so it is kept even if
   everything else fails;
2. calls the autosave callback, guarded: a failing autosave is reported, not raised;
3. writes the report to `data_dir()/crash-reports/` and shows a dialog with the error, the
   report (traceback, versions, platform) and a "Copy report" button;
4. returns, so the event loop keeps running.

Exceptions from other threads are sent to the GUI thread with a queued signal (widgets and the
project belong to it). An exception raised while handling one (the dialog itself failing, an
exception in a paint event during the dialog) only goes to stderr: the hook never recurses. The
same error repeating (a paint event failing every frame) shows the dialog once.
"""

from __future__ import annotations

import datetime as _dt
import logging
import platform
import sys
import threading
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from PySide6.QtCore import QCoreApplication, QObject, QThread, Signal, Slot
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CrashReport:
    """One unhandled exception, as text ready to paste into an issue."""

    summary: str  # "ValueError: bad value"
    signature: tuple[str, str, str]  # (type, message, innermost frame) to spot repeats
    text: str  # traceback + versions + platform
    thread_name: str


def build_report(
    exc_type: type[BaseException],
    exc: BaseException,
    tb: TracebackType | None,
    thread_name: str | None = None,
) -> CrashReport:
    """The report for one exception: traceback, thread, versions of the stack, platform."""
    from annotator import __version__

    thread_name = thread_name or threading.current_thread().name
    summary = "".join(traceback.format_exception_only(exc_type, exc)).strip()
    frames = traceback.extract_tb(tb)
    where = f"{frames[-1].filename}:{frames[-1].lineno}" if frames else ""
    lines = [
        f"Annotator {__version__} crash report, {_dt.datetime.now().isoformat(timespec='seconds')}",
        f"Thread: {thread_name}",
        "",
        "".join(traceback.format_exception(exc_type, exc, tb)).rstrip(),
        "",
        "Versions: " + ", ".join(_versions()),
        f"Platform: {platform.platform()} ({platform.machine()})",
    ]
    return CrashReport(
        summary=summary,
        signature=(exc_type.__name__, str(exc), where),
        text="\n".join(lines) + "\n",
        thread_name=thread_name,
    )


def _versions() -> list[str]:
    found = [f"Python {platform.python_version()}"]
    for name in ("PySide6", "numpy", "torch", "segment_anything", "onnxruntime", "cv2"):
        module = sys.modules.get(name)  # only what is loaded: never import in a crash handler
        if module is not None:
            found.append(f"{name} {getattr(module, '__version__', '?')}")
    try:
        from PySide6.QtCore import qVersion

        found.append(f"Qt {qVersion()}")
    except Exception:  # pragma: no cover - the report must not fail on versions
        pass
    return found


class CrashDialog(QDialog):
    """The error in one line, what happened to the work, the report, "Copy report" and "Close"."""

    def __init__(self, report: CrashReport, autosave_note: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.setWindowTitle("Annotator hit an error")
        self.report = report
        layout = QVBoxLayout(self)
        headline = QLabel(
            f"<b>Something went wrong:</b> {_escape(report.summary)}<br>{_escape(autosave_note)}"
            "<br>The app keeps running; if it misbehaves, save and restart it. Please send the "
            "report below with a bug report."
        )
        headline.setWordWrap(True)
        layout.addWidget(headline)
        self.report_view = QPlainTextEdit(report.text)
        self.report_view.setReadOnly(True)
        self.report_view.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        layout.addWidget(self.report_view)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        self.copy_button = QPushButton("Copy report")
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.copy_button.clicked.connect(self.copy_report)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)
        self.resize(760, 480)

    def copy_report(self) -> None:
        QGuiApplication.clipboard().setText(self.report.text)


class CrashHandler(QObject):
    """The installed hook; see the module docstring. `reports` keeps what was handled."""

    _from_other_thread = Signal(object)  # CrashReport

    def __init__(
        self,
        autosave: Callable[[], object],
        parent_getter: Callable[[], QWidget | None],
        reports_dir: Path | None = None,
    ):
        super().__init__()
        self._autosave = autosave
        self._parent_getter = parent_getter
        self._reports_dir = reports_dir
        self._handling = False
        self._seen: set[tuple[str, str, str]] = set()
        self._previous_hook = sys.excepthook
        self._previous_thread_hook = threading.excepthook
        self.reports: list[CrashReport] = []
        self._from_other_thread.connect(self._handle_on_gui_thread)

    def install(self) -> None:
        sys.excepthook = self.excepthook
        threading.excepthook = self.thread_excepthook

    def uninstall(self) -> None:
        if sys.excepthook == self.excepthook:
            sys.excepthook = self._previous_hook
        if threading.excepthook == self.thread_excepthook:
            threading.excepthook = self._previous_thread_hook

    # ------------------------------------------------------------------ hooks

    def excepthook(self, exc_type, exc, tb) -> None:
        """sys.excepthook: called by Python and by PySide6 for exceptions in slots/events."""
        if issubclass(exc_type, KeyboardInterrupt):
            self._previous_hook(exc_type, exc, tb)
            return
        try:
            logger.error(
                "Unhandled exception in thread %s",
                threading.current_thread().name,
                exc_info=(exc_type, exc, tb),
            )
            report = build_report(exc_type, exc, tb)
            _stderr(report.text)
            if self._on_gui_thread():
                self._handle_on_gui_thread(report)
            else:
                self._from_other_thread.emit(report)  # queued to the GUI thread
        except Exception:  # the handler must never raise: fall back to the plain print
            if sys.__stderr__ is not None:
                sys.__excepthook__(exc_type, exc, tb)

    def thread_excepthook(self, args: threading.ExceptHookArgs) -> None:
        """threading.excepthook: exceptions escaping Python threads' run()."""
        if args.exc_type is SystemExit:
            return
        self.excepthook(args.exc_type, args.exc_value, args.exc_traceback)

    # ------------------------------------------------------------------ handling

    @Slot(object)
    def _handle_on_gui_thread(self, report: CrashReport) -> None:
        if self._handling:  # raised by our own dialog or during it: stderr only (done)
            return
        self._handling = True
        try:
            self.reports.append(report)
            note = self._run_autosave()
            saved_to = self._write_report(report)
            if saved_to is not None:
                note += f" The report was saved to {saved_to}."
            if report.signature in self._seen:
                return  # the same error again: autosaved, logged, no second dialog
            self._seen.add(report.signature)
            self._show_dialog(report, note)
        except Exception:
            logger.exception("The crash dialog failed")
            _stderr("annotator: the crash dialog failed:\n" + traceback.format_exc())
        finally:
            self._handling = False

    def _run_autosave(self) -> str:
        try:
            self._autosave()
        except Exception as exc:
            logger.exception("The autosave after a crash failed")
            _stderr("annotator: autosave failed:\n" + traceback.format_exc())
            return f"The autosave failed too ({type(exc).__name__}: {exc}); save now if you can."
        return "Your work was autosaved first."

    def _write_report(self, report: CrashReport) -> Path | None:
        try:
            folder = self._reports_dir
            if folder is None:
                from annotator.paths import data_dir

                folder = data_dir() / "crash-reports"
            folder.mkdir(parents=True, exist_ok=True)
            stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S-%f")
            path = folder / f"crash-{stamp}.txt"
            path.write_text(report.text, encoding="utf-8")
            return path
        except Exception:
            logger.warning("Could not write the crash report", exc_info=True)
            return None

    def _show_dialog(self, report: CrashReport, note: str) -> None:
        try:
            parent = self._parent_getter()
        except Exception:
            logger.warning("No window to show the crash dialog on", exc_info=True)
            parent = None
        dialog = CrashDialog(report, note, parent)
        dialog.exec()
        dialog.deleteLater()

    @staticmethod
    def _on_gui_thread() -> bool:
        app = QCoreApplication.instance()
        return app is not None and QThread.currentThread() == app.thread()


def install_excepthook(
    autosave: Callable[[], object],
    parent_getter: Callable[[], QWidget | None],
    reports_dir: Path | None = None,
) -> CrashHandler:
    """Install the crash hook for the running QApplication; returns it (`.uninstall()` undoes).

    autosave: writes the project's autosave; called first, on the GUI thread; may raise.
    parent_getter: the window to parent the dialog to (or None); called when a crash happens.
    """
    if QCoreApplication.instance() is None:
        raise RuntimeError("create the QApplication before installing the crash hook")
    handler = CrashHandler(autosave, parent_getter, reports_dir)
    handler.install()
    return handler


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _stderr(text: str) -> None:
    """Write to stderr when there is one (a windowed PyInstaller app on Windows has none)."""
    stream = sys.stderr
    if stream is not None:
        try:
            stream.write(text)
            stream.flush()
        except Exception:
            pass
