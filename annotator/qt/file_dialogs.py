"""File menu dialogs around the Qt-free core: Export… and Relink Images….

Export decodes every mask (about 2 ms each), so it runs on a background thread behind a modal
progress dialog: the window keeps painting, and the project cannot change while it is read.
"""

from __future__ import annotations

import threading
from pathlib import Path

from PySide6.QtCore import QCoreApplication, QEventLoop, QObject, Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLineEdit,
    QMessageBox,
    QProgressDialog,
    QPushButton,
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


class _ExportRunner(QObject):
    finished = Signal(object)  # ExportReport or UserError

    def start(self, project: Project, fmt: str, dest: Path) -> None:
        def work() -> None:
            from annotator.core.export import export_project

            try:
                result = export_project(project, fmt, dest)
            except UserError as exc:
                result = exc
            self.finished.emit(result)

        threading.Thread(target=work, name="annotator-export", daemon=True).start()


def export_with_progress(parent: QWidget, project: Project, fmt: str, dest: Path):
    """Export on a thread behind a modal busy dialog; returns the ExportReport or raises UserError."""
    progress = QProgressDialog(f"Exporting as {fmt}…", None, 0, 0, parent)
    progress.setWindowTitle("Export")
    progress.setWindowModality(Qt.WindowModality.WindowModal)
    progress.setMinimumDuration(0)
    runner = _ExportRunner()
    outcome: list[object] = []
    runner.finished.connect(outcome.append, Qt.ConnectionType.QueuedConnection)
    runner.finished.connect(progress.close, Qt.ConnectionType.QueuedConnection)
    runner.start(project, fmt, dest)
    progress.exec()
    while not outcome:  # closed by hand (Esc) before the thread was done: wait for it
        QCoreApplication.processEvents(QEventLoop.ProcessEventsFlag.WaitForMoreEvents)
    result = outcome[0]
    if isinstance(result, UserError):
        raise result
    return result


def run_export(parent: QWidget, project: Project) -> None:
    """File → Export…: ask format and destination, export, report what was written and lost."""
    dialog = ExportDialog(project, parent)
    if not dialog.exec():
        return
    try:
        report = export_with_progress(parent, project, dialog.fmt(), dialog.dest())
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
