"""File menu dialogs around the Qt-free core: Export… and Relink Images….

Export decodes every mask (about 2 ms each), so it runs on a background thread behind a modal
progress dialog (`ExportProgress`): the window keeps painting, and the project cannot change while
it is read. The dialog shows the images done and has Cancel (the export stops before the next
image); it closes when the export ends, however it ends: an unexpected exception is logged
(logger "annotator") and shown as one sentence like any UserError.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from PySide6.QtCore import QEventLoop, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from annotator.core.project import Project
from annotator.errors import UserError

COCO_FORMATS = ("coco", "coco-polygons")


class ExportDialog(QDialog):
    """Choose an export format and its destination (a .json file or a folder)."""

    def __init__(self, project: Project, parent: QWidget | None = None) -> None:
        from annotator.core.export import FORMATS

        super().__init__(parent)
        self.setWindowTitle("Export")
        self.project = project
        self.format_box = QComboBox(self)
        for key, description in FORMATS.items():
            self.format_box.addItem(f"{key}: {description}", key)
        self.dest_edit = QLineEdit(self)
        browse = QPushButton("Browse…", self)
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.dest_edit, 1)
        row.addWidget(browse)
        form = QFormLayout(self)
        form.addRow("Format", self.format_box)
        form.addRow("Destination", row)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel, self
        )
        buttons.accepted.connect(self._accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)
        self.format_box.currentIndexChanged.connect(lambda _: self._suggest_dest())
        self._suggest_dest()
        self.setMinimumWidth(560)

    def fmt(self) -> str:
        return self.format_box.currentData()

    def dest(self) -> Path:
        return Path(self.dest_edit.text()).expanduser()

    def _base(self) -> Path:
        path = self.project.path
        return (path.parent / path.stem) if path is not None else Path.cwd() / "annotations"

    def _suggest_dest(self) -> None:
        base = self._base()
        fmt = self.fmt()
        if fmt in COCO_FORMATS:
            self.dest_edit.setText(str(base.with_name(f"{base.name}-{fmt}.json")))
        else:
            self.dest_edit.setText(str(base.with_name(f"{base.name}-{fmt}")))

    def _browse(self) -> None:
        if self.fmt() in COCO_FORMATS:
            path, _ = QFileDialog.getSaveFileName(
                self, "Export to", self.dest_edit.text(), "COCO JSON (*.json)"
            )
        else:
            path = QFileDialog.getExistingDirectory(self, "Export into folder", str(self._base()))
        if path:
            self.dest_edit.setText(path)

    def _accept(self) -> None:
        if not self.dest_edit.text().strip():
            QMessageBox.warning(self, "Export", "Choose where to export to.")
            return
        self.accept()


class ExportProgress(QDialog):
    """The window-modal dialog of one export running on a thread: a bar of the images done and
    Cancel. `finished(result)` (ExportReport or UserError) comes once, on the GUI thread, after
    which the dialog is closed and `result` is set. Esc and the close button cancel too; the
    dialog stays until the thread has stopped, so the project is never edited while read."""

    finished = Signal(object)
    _progressed = Signal(int, int)
    _ended = Signal(object)

    def __init__(self, parent: QWidget | None, project: Project, fmt: str, dest: Path) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export")
        self.setWindowModality(Qt.WindowModality.WindowModal)
        self.label = QLabel(f"Exporting as {fmt}…", self)
        self.bar = QProgressBar(self)
        self.bar.setRange(0, 0)  # busy until the first image is done
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.clicked.connect(self.cancel)
        layout = QVBoxLayout(self)
        layout.addWidget(self.label)
        layout.addWidget(self.bar)
        layout.addWidget(self.cancel_button, 0, Qt.AlignmentFlag.AlignRight)
        self.setMinimumWidth(360)
        self.result = None
        self._job = (project, fmt, Path(dest))
        self._cancelled = threading.Event()
        self._progressed.connect(self._on_progress, Qt.ConnectionType.QueuedConnection)
        self._ended.connect(self._on_ended, Qt.ConnectionType.QueuedConnection)

    def start(self) -> None:
        """Show the dialog (window-modal, without blocking) and start the export thread."""
        self.open()
        threading.Thread(target=self._work, name="annotator-export", daemon=True).start()

    def cancel(self) -> None:
        if self.result is None and not self._cancelled.is_set():
            self._cancelled.set()
            self.cancel_button.setEnabled(False)
            self.label.setText("Cancelling after the current image…")

    def reject(self) -> None:  # Esc
        self.cancel()

    def closeEvent(self, event) -> None:
        if self.result is None:
            event.ignore()
            self.cancel()
        else:
            super().closeEvent(event)

    def _work(self) -> None:
        from annotator.core.export import export_project

        project, fmt, dest = self._job
        try:
            result = export_project(
                project,
                fmt,
                dest,
                progress=self._progressed.emit,
                cancelled=self._cancelled.is_set,
            )
        except UserError as exc:
            result = exc
        except BaseException as exc:  # a bug: log it, and still end the dialog with a sentence
            logging.getLogger("annotator").exception("Export as %s to %s failed", fmt, dest)
            detail = " ".join(str(exc).split())[:200]
            result = UserError(
                f"The export failed unexpectedly ({type(exc).__name__}"
                f"{': ' + detail if detail else ''})."
            )
        self._ended.emit(result)

    def _on_progress(self, done: int, total: int) -> None:
        self.bar.setRange(0, max(total, 1))
        self.bar.setValue(done)
        if not self._cancelled.is_set():
            self.label.setText(f"Exporting as {self._job[1]}: {done} of {total} image(s)…")

    def _on_ended(self, result) -> None:
        self.result = result
        self.done(QDialog.DialogCode.Accepted)
        self.finished.emit(result)


def export_with_progress(parent: QWidget, project: Project, fmt: str, dest: Path):
    """Export on a thread behind `ExportProgress`; returns the ExportReport or raises UserError
    (ExportCancelled when the person cancelled)."""
    dialog = ExportProgress(parent, project, fmt, dest)
    loop = QEventLoop()
    dialog.finished.connect(loop.quit)
    dialog.start()
    if dialog.result is None:
        loop.exec()
    result = dialog.result
    dialog.deleteLater()
    if isinstance(result, UserError):
        raise result
    return result


def run_export(parent: QWidget, project: Project) -> None:
    """File → Export…: ask format and destination, export, report what was written and lost."""
    dialog = ExportDialog(project, parent)
    if not dialog.exec():
        return
    from annotator.core.export import ExportCancelled

    try:
        report = export_with_progress(parent, project, dialog.fmt(), dialog.dest())
    except ExportCancelled as exc:
        QMessageBox.information(parent, "Export cancelled", str(exc))
        return
    except UserError as exc:
        QMessageBox.critical(parent, "Not exported", str(exc))
        return
    QMessageBox.information(parent, "Exported", "\n\n".join(report.messages()))


def missing_images(project: Project) -> list[str]:
    """File names of the project's images that are not where the project says."""
    return [r.file_name for r in project.images if not project.image_path(r).is_file()]


def choose_relinks(parent: QWidget, project: Project):
    """File → Relink Images…: a folder to search by file name; the new records, or None."""
    from annotator.core.project import find_relinks

    missing = missing_images(project)
    if not missing:
        QMessageBox.information(parent, "Relink images", "Every image is where the project says.")
        return None
    folder = QFileDialog.getExistingDirectory(
        parent, f"Find {len(missing)} missing image(s) in folder", str(project.image_folder())
    )
    if not folder:
        return None
    records = find_relinks(project, Path(folder))
    still = len(missing) - len(records)
    QMessageBox.information(
        parent,
        "Relink images",
        f"Found {len(records)} of {len(missing)} missing image(s) in {folder}."
        + (f" {still} are still missing." if still else ""),
    )
    return records or None
