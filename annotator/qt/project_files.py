"""The window's File menu: open (read on a thread), save, Save As, unsaved-work questions,
recovery after a crash, recent projects, export and relink.

`ProjectFiles` asks the person (dialogs parented to the window) and calls the session; it
changes what the window shows only through `window.set_session`. Saving, locking and recovery
themselves are the session's (annotator.core.session).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QDockWidget, QFileDialog, QMessageBox

from annotator.core.session import AnnotationSession
from annotator.errors import UserError
from annotator.qt.project_io import ProjectIO

log = logging.getLogger(__name__)

IMAGE_FILTER = (
    "Projects, images and videos (*.json *.png *.jpg *.jpeg *.tif *.tiff *.bmp *.webp "
    "*.mp4 *.mov *.avi *.mkv *.m4v *.webm);;All files (*)"
)


class ProjectFiles(QObject):
    """File actions of `window` (a MainWindow)."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.io = ProjectIO(self)
        self.opening: tuple[int, bool] | None = None  # (token, discard the current session)
        self.saving = None  # the SaveJob being written
        self._saving_session = None  # the session it belongs to
        self._save_again = False  # Ctrl+S while a save was being written
        self.io.opened.connect(self._on_read)
        self.io.failed.connect(self._on_failed)
        self.io.saved.connect(self._on_saved)
        self.io.save_failed.connect(self._on_save_failed)

    # ------------------------------------------------------------------ saving
    def save(self) -> bool:
        """Save now, waiting for the file (before closing or opening another project)."""
        if self.window.project.path is None:
            return self.save_as()
        return self._save_to(None)

    def save_in_background(self, path: Path | None = None) -> None:
        """Ctrl+S (and Save As… with `path`): write a snapshot on the I/O thread; labelling goes
        on meanwhile, and what is edited during the write stays unsaved."""
        w = self.window
        if path is None and w.project.path is None:
            self.save_as_in_background()
            return
        if self.saving is not None:
            if path is None:
                self._save_again = True  # once the one being written is done
            else:
                QMessageBox.information(w, "Saving", "A save is being written; try again.")
            return
        try:
            self.saving = w.session.prepare_save(path)
        except UserError as exc:
            QMessageBox.critical(w, "Not saved", str(exc))
            return
        self._saving_session = w.session
        w.statusBar().showMessage(f"Saving {self.saving.target.name}…")
        self.io.save(self.saving)

    def save_as_in_background(self) -> None:
        """File ▸ Save As…: ask where, then save as Ctrl+S does."""
        path = self._ask_save_path()
        if path is not None:
            self.save_in_background(path)

    def _on_saved(self, job) -> None:
        w = self.window
        if job is not self.saving:
            return
        self.saving = None
        if w.session is not None and w.session is self._saving_session:
            w.session.finish_save(job)
            w.settings.add_recent_project(str(job.target))
            self.refresh_recent_menu()
            w.statusBar().showMessage(f"Saved {job.target}", 4000)
        self._saving_session = None
        if self._save_again:
            self._save_again = False
            if w.is_dirty():
                self.save_in_background()

    def _on_save_failed(self, job, message: str) -> None:
        if job is not self.saving:
            return
        self.saving = None
        self._save_again = False
        QMessageBox.critical(self.window, "Not saved", message)

    def wait_for_save(self) -> None:
        """Block until a save being written has finished (closing, opening another project)."""
        if self.saving is None:
            return
        job = self.saving
        self.io.executor.submit(lambda: None).result()  # the I/O thread is past the write
        from PySide6.QtCore import QCoreApplication

        while self.saving is job:  # deliver its queued signal
            QCoreApplication.processEvents()

    def save_as(self) -> bool:
        """Save As, waiting for the file (before closing or opening another project)."""
        path = self._ask_save_path()
        return path is not None and self._save_to(path)

    def _ask_save_path(self) -> Path | None:
        w = self.window
        start = str(w.project.path or Path.cwd() / "annotations.json")
        path, _ = QFileDialog.getSaveFileName(w, "Save project as", start, "COCO JSON (*.json)")
        return Path(path) if path else None

    def _save_to(self, path: Path | None) -> bool:
        w = self.window
        self.wait_for_save()
        try:
            written = w.session.save(path)
        except UserError as exc:
            QMessageBox.critical(w, "Not saved", str(exc))
            return False
        w.settings.add_recent_project(str(written))
        self.refresh_recent_menu()
        w.statusBar().showMessage(f"Saved {written}", 4000)
        return True

    def maybe_save(self) -> bool | str:
        """Ask about unsaved changes: True (saved, or nothing to save), "discard" (the person
        chose to drop them: the caller discards once the next step succeeded), False (cancel)."""
        w = self.window
        self.wait_for_save()
        if not w.is_dirty():
            return True
        answer = QMessageBox.question(
            w,
            "Unsaved changes",
            "Save the changes to this project before closing it?",
            QMessageBox.StandardButton.Save
            | QMessageBox.StandardButton.Discard
            | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Save,
        )
        if answer == QMessageBox.StandardButton.Save:
            return self.save()
        return "discard" if answer == QMessageBox.StandardButton.Discard else False

    # ------------------------------------------------------------------ opening
    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self.window, "Open project or image", "", IMAGE_FILTER
        )
        if path:
            self.open_path(Path(path))

    def open_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self.window, "Open a folder of images")
        if path:
            self.open_path(Path(path))

    def open_path(self, path: Path) -> bool:
        """Open another project (read in the background); the current one is closed only once
        the new one has opened, so a failed open loses nothing. False when cancelled."""
        choice = self.maybe_save()
        if not choice:
            return False
        self.open_in_background(path, discard=choice == "discard")
        return True

    def open_in_background(self, path: Path | None, discard: bool = False) -> None:
        """Read `path` on a thread behind a busy indicator; the window stays responsive.
        discard: the current session's unsaved work is dropped once the new project opened."""
        self.opening = (self.io.open(path), discard)
        name = Path(path).name if path is not None else "the samples"
        self._set_busy(f"Opening {name}…")

    def _set_busy(self, text: str | None) -> None:
        """While a project is read: a message, a busy bar, and no edits of the old one."""
        w = self.window
        busy = text is not None
        w.centralWidget().setEnabled(not busy)
        for dock in w.findChildren(QDockWidget):
            dock.setEnabled(not busy)
        for name in ("save", "save_as", "export", "relink_images", "undo", "redo"):
            w.actions[name].setEnabled(not busy)
        w.progress.setVisible(busy)
        w.busy_label.setVisible(busy)
        w.busy_label.setText(text or "")
        if busy:
            w.progress.setRange(0, 0)
            if w.display is None:
                w.canvas.message = text
                w.canvas.update()
        else:
            w.refresh_history()

    def _on_read(self, token: int, read) -> None:
        if self.opening is None or token != self.opening[0]:
            return
        discard = self.opening[1]
        self.opening = None
        self._set_busy(None)
        w = self.window
        session, report = AnnotationSession.from_read(read)
        old = w.session
        w.set_session(session)
        old.close(discard=discard)
        self.refresh_recent_menu()
        if report.messages:
            QMessageBox.information(w, "Opened with notes", "\n\n".join(report.messages))
        self.offer_recovery()
        if os.environ.get("ANNOTATOR_BENCH_SHOWN"):  # bench/bench_scale.py: time to the project
            print(f"annotator-opened images={len(w.project.images)}", flush=True)

    def _on_failed(self, token: int, message: str) -> None:
        if self.opening is None or token != self.opening[0]:
            return
        self.opening = None
        self._set_busy(None)
        w = self.window
        if not w.project.images:
            w.show_no_image(message)
        QMessageBox.critical(w, "Cannot open", message)  # the current project stays as it was

    def offer_recovery(self) -> bool:
        """If the project has unsaved work from a session that ended without saving (a crash),
        offer it. Declining keeps the files aside (nothing is thrown away unasked)."""
        session = self.window.session
        if session is None or session.recovery is None:
            return False
        answer = QMessageBox.question(
            self.window,
            "Restore unsaved work",
            f"This project has work that was not saved: {session.recovery.describe()}. Restore it?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.Yes,
        )
        if answer != QMessageBox.StandardButton.Yes:
            session.decline_recovery()
            return False
        session.restore_recovery()
        return True

    def refresh_recent_menu(self) -> None:
        w = self.window
        w.recent_menu.clear()
        for path in w.settings.recent_projects:
            action = w.recent_menu.addAction(path)
            action.triggered.connect(lambda _=False, p=path: self.open_path(Path(p)))
        w.recent_menu.setEnabled(bool(w.settings.recent_projects))

    # ------------------------------------------------------------------ export, relink
    def export(self) -> None:
        """File → Export… (the format and destination are asked; the export runs on a thread)."""
        from annotator.qt.file_dialogs import run_export

        run_export(self.window, self.window.project)

    def relink_images(self) -> None:
        """File → Relink Images…: find moved images by file name; one undo step."""
        from annotator.qt.file_dialogs import choose_relinks

        w = self.window
        records = choose_relinks(w, w.project)
        if records and w.edit(w.session.relink, records):
            w.reload_current_image()  # the current image may be one that was missing

    def shutdown(self) -> None:
        self.io.shutdown()
