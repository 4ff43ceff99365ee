"""First-run dialog and model menu: recommend models, then choose a file, download one, or go on.

Shown when no checkpoint is configured or found, and by File → Choose Model… (Ctrl+M). It offers
a short list for this machine (`registry.recommended_checkpoints`): on a CPU the fast families,
each with the embedding time measured on the project's 2-core test machine (quoted as that, not
as a promise); with CUDA, the best ones by quality. Every other official checkpoint is one
`annotator models download TYPE` away. It never leaves the person stuck: "Continue
without a model" returns None and the app runs its classic engine. The download runs
`annotator.models.download.download_checkpoint` on a QThread (the GUI stays live), with a
progress bar, speed, time left and Cancel; a cancelled or failed download keeps its `.part`
file so "Download" resumes it.

    path = FirstRunDialog.get_checkpoint(parent)   # Path, or None for the classic engine
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from PySide6.QtCore import QObject, Qt, QThread, Signal, Slot
from PySide6.QtWidgets import (
    QButtonGroup,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from annotator.errors import UserError
from annotator.models import registry
from annotator.models.registry import CheckpointInfo, format_bytes

_INTRO = (
    "<b>Annotator draws masks with Segment Anything models (SAM and its faster and newer "
    "relatives).</b><br>A model is a checkpoint file, a one-time download. Larger models give "
    "slightly finer masks but take longer for each new image (the clicks afterwards are fast "
    "with any of them)."
)
_CPU_HEADING = "Recommended for this computer (no CUDA GPU found, so the model runs on the CPU):"
_CUDA_HEADING = "Recommended for this computer's CUDA GPU (every model is fast there; best first):"
_CUSTOM_HEADING = "Models:"

_PROGRESS_STEPS = 1000  # QProgressBar holds an int; 2.6 GB in bytes does not fit


class DownloadWorker(QObject):
    """Runs one download on its thread; reports through signals (plain values only)."""

    progress = Signal(float, float, float, float)  # done, total, bytes/s, eta s (-1: unknown)
    finished = Signal(str)  # the verified checkpoint's path
    failed = Signal(str)  # one sentence for the person
    cancelled = Signal()

    def __init__(self, info: CheckpointInfo, dest_dir: Path | None, base_url: str | None):
        super().__init__()
        self._info = info
        self._dest_dir = dest_dir
        self._base_url = base_url
        self.cancel_event = threading.Event()

    @Slot()
    def run(self) -> None:
        from annotator.models.download import DownloadCancelled, download_checkpoint

        try:
            path = download_checkpoint(
                self._info,
                self._dest_dir,
                base_url=self._base_url,
                progress=self._report,
                cancel=self.cancel_event,
            )
        except DownloadCancelled:
            self.cancelled.emit()
        except UserError as exc:
            self.failed.emit(str(exc))
        except Exception as exc:  # a bug: still tell the person, never leave the dialog hanging
            logging.getLogger(__name__).exception("the download failed unexpectedly")
            self.failed.emit(f"The download failed unexpectedly ({type(exc).__name__}: {exc}).")
        else:
            self.finished.emit(str(path))

    def _report(self, done: int, total: int, speed: float, eta: float | None) -> None:
        self.progress.emit(float(done), float(total), float(speed), -1.0 if eta is None else eta)


class FirstRunDialog(QDialog):
    """Choose how to get a SAM checkpoint. `chosen_path()` after exec(): a Path, or None."""

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        checkpoints: tuple[CheckpointInfo, ...] | None = None,
        cuda: bool | None = None,
        dest_dir: Path | None = None,
        base_url: str | None = None,
    ):
        """checkpoints: offer these instead of the recommendations (tests, other callers).
        cuda: whether to recommend for a CUDA GPU; None guesses without importing torch."""
        super().__init__(parent)
        self.setWindowTitle("Set up Segment Anything")
        self.setModal(True)
        if checkpoints:
            self._checkpoints = tuple(checkpoints)
            self._details = [info.description for info in self._checkpoints]
            self._heading = _CUSTOM_HEADING
        else:
            cuda = registry.cuda_likely() if cuda is None else cuda
            picks = registry.recommended_checkpoints(cuda)
            self._checkpoints = tuple(pick.info for pick in picks)
            self._details = [_recommendation_text(pick) for pick in picks]
            self._heading = _CUDA_HEADING if cuda else _CPU_HEADING
        self._dest_dir = dest_dir
        self._base_url = base_url
        self._chosen: Path | None = None
        self._thread: QThread | None = None
        self._worker: DownloadWorker | None = None
        self._build()

    # ----------------------------------------------------------------- public API

    def chosen_path(self) -> Path | None:
        """The checkpoint the person chose or downloaded; None means the classic engine."""
        return self._chosen

    def model_choices(self) -> list[str]:
        """Each model's choice as shown, e.g. "MobileSAM (ViT-T), 41 MB: Small download, …"."""
        return [
            f"{button.text()}: {label.text()}"
            for button, label in zip(self._model_group.buttons(), self._descriptions, strict=True)
        ]

    def selected_checkpoint(self) -> CheckpointInfo:
        return self._checkpoints[self._model_group.checkedId()]

    def select_model(self, model_type: str) -> None:
        for index, info in enumerate(self._checkpoints):
            if info.model_type == model_type:
                self._model_group.button(index).setChecked(True)
                return
        raise ValueError(f"no model {model_type!r} in this dialog")

    def use_file(self, path: str | Path) -> bool:
        """Accept `path` as the checkpoint if it looks usable; else show why and return False."""
        path = Path(path)
        if path.name in ("config.json", "model.safetensors"):  # a transformers folder (SAM 3)
            path = path.parent
        problem = _file_problem(path)
        if problem:
            self._show_error(problem)
            return False
        self._chosen = path.resolve()
        self.accept()
        return True

    def start_download(self) -> None:
        """Download the selected model on a worker thread (resuming any earlier part)."""
        if self._thread is not None:
            return
        info = self.selected_checkpoint()
        self._set_busy(True)
        self._status.setText(f"Connecting to download {info.file_name} ({info.size_text})…")
        self._worker = DownloadWorker(info, self._dest_dir, self._base_url)
        self._thread = QThread(self)
        self._worker.moveToThread(self._thread)
        self._thread.started.connect(self._worker.run)
        self._worker.progress.connect(self._on_progress)
        self._worker.finished.connect(self._on_finished)
        self._worker.failed.connect(self._on_failed)
        self._worker.cancelled.connect(self._on_cancelled)
        self._thread.start()

    def cancel_download(self) -> None:
        if self._worker is not None:
            self._worker.cancel_event.set()
            self._status.setText("Cancelling…")

    def is_downloading(self) -> bool:
        return self._thread is not None

    def continue_without_model(self) -> None:
        self._chosen = None
        self.accept()

    @classmethod
    def get_checkpoint(cls, parent: QWidget | None = None, **kwargs) -> Path | None:
        """Show the dialog modally; the chosen checkpoint, or None for the classic engine."""
        dialog = cls(parent, **kwargs)
        dialog.exec()
        return dialog.chosen_path()

    # ----------------------------------------------------------------- layout

    def _build(self) -> None:
        self.setMinimumWidth(620)
        self._descriptions: list[QLabel] = []
        layout = QVBoxLayout(self)
        intro = QLabel(_INTRO)
        intro.setWordWrap(True)
        layout.addWidget(intro)
        heading = QLabel(self._heading)
        heading.setWordWrap(True)
        layout.addWidget(heading)

        self._model_group = QButtonGroup(self)
        for index, (info, detail) in enumerate(zip(self._checkpoints, self._details, strict=True)):
            button = QRadioButton(f"{info.title}, {info.size_text}")
            sha = f"SHA-256 {info.sha256}" if info.sha256 else registry.NO_SHA256_NOTE
            button.setToolTip(
                f"{info.description}\n{info.model_type}: {info.file_name}\n{sha}\n{info.url}"
            )
            self._model_group.addButton(button, index)
            description = QLabel(detail)
            description.setWordWrap(True)
            description.setContentsMargins(24, 0, 0, 0)  # under the radio button's text
            self._descriptions.append(description)
            choice = QVBoxLayout()
            choice.setSpacing(0)
            choice.addWidget(button)
            choice.addWidget(description)
            layout.addLayout(choice)
        self._model_group.button(0).setChecked(True)
        self._model_group.idToggled.connect(self._update_download_button)

        self._progress = QProgressBar()
        self._progress.setRange(0, _PROGRESS_STEPS)
        self._progress.setVisible(False)
        layout.addWidget(self._progress)
        self._status = QLabel("")
        self._status.setWordWrap(True)
        self._status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self._status)

        row = QHBoxLayout()
        self._download_button = QPushButton()
        self._download_button.setDefault(True)
        self._download_button.clicked.connect(self.start_download)
        self._cancel_button = QPushButton("Cancel download")
        self._cancel_button.setVisible(False)
        self._cancel_button.clicked.connect(self.cancel_download)
        self._choose_button = QPushButton("Choose file…")
        self._choose_button.clicked.connect(self._choose_file)
        self._classic_button = QPushButton("Continue without a model (classic engine)")
        self._classic_button.clicked.connect(self.continue_without_model)
        for button in (self._download_button, self._cancel_button, self._choose_button):
            row.addWidget(button)
        row.addStretch(1)
        layout.addLayout(row)
        classic_row = QHBoxLayout()
        classic_row.addWidget(self._classic_button)
        classic_row.addStretch(1)
        layout.addLayout(classic_row)
        hint = QLabel(
            "You can change the model later with File → Choose Model… (Ctrl+M). Every family and "
            "size (SAM, SAM 2 and 2.1, SAM-HQ, MobileSAM, EfficientViT-SAM) is listed by "
            "<code>annotator models list</code> and downloaded with "
            "<code>annotator models download TYPE</code>."
        )
        hint.setWordWrap(True)
        layout.addWidget(hint)
        self._update_download_button()
        self.adjustSize()

    def _update_download_button(self, *_args) -> None:
        self._download_button.setText(f"Download ({self.selected_checkpoint().size_text})")

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Choose a checkpoint",
            "",
            "Checkpoints (*.pth *.pt);;Checkpoint folders: their config.json (config.json);;"
            "All files (*)",
        )
        if path:
            self.use_file(path)

    # ----------------------------------------------------------------- download events

    @Slot(float, float, float, float)
    def _on_progress(self, done: float, total: float, speed: float, eta: float) -> None:
        from annotator.models.download import format_eta

        self._progress.setValue(int(_PROGRESS_STEPS * done / total) if total else 0)
        if done >= total:
            check = "SHA-256" if self.selected_checkpoint().sha256 else "loading it"
            self._status.setText(f"Checking the file ({check})…")
            return
        self._status.setText(
            f"{format_bytes(done)} of {format_bytes(total)}, {format_bytes(speed)}/s, "
            f"{format_eta(None if eta < 0 else eta)} left"
        )

    @Slot(str)
    def _on_finished(self, path: str) -> None:
        self._stop_thread()
        self._chosen = Path(path)
        self._status.setText(f"Downloaded and verified: {path}")
        self.accept()

    @Slot(str)
    def _on_failed(self, message: str) -> None:
        self._stop_thread()
        self._show_error(message)

    @Slot()
    def _on_cancelled(self) -> None:
        self._stop_thread()
        self._status.setText("Download cancelled; Download resumes where it stopped.")

    def _stop_thread(self) -> None:
        if self._thread is not None:
            self._thread.quit()
            self._thread.wait()
            self._thread = None
            self._worker = None
        self._set_busy(False)

    def _set_busy(self, busy: bool) -> None:
        self._progress.setVisible(busy or self._progress.value() > 0)
        self._cancel_button.setVisible(busy)
        for widget in (self._download_button, self._choose_button, self._classic_button):
            widget.setEnabled(not busy)
        for button in self._model_group.buttons():
            button.setEnabled(not busy)

    def _show_error(self, message: str) -> None:
        self._status.setText(f"<span style='color:#b00020'>{_escape(message)}</span>")

    def status_text(self) -> str:
        """What the status line says now (plain text)."""
        from PySide6.QtGui import QTextDocumentFragment

        return QTextDocumentFragment.fromHtml(self._status.text()).toPlainText()

    # Closing the window (Esc, the title bar) during a download cancels it and waits for the
    # worker, so no thread outlives the dialog.
    def reject(self) -> None:
        if self._worker is not None:
            self._worker.cancel_event.set()
            self._stop_thread()
        self._chosen = None
        super().reject()


def startup_checkpoint(
    settings_path: str | Path | None, parent: QWidget | None = None, *, ask: bool = True
) -> Path | None:
    """The checkpoint to start with, asking the person only when none is found.

    Looks at `$SAM_CHECKPOINT`, `settings_path`, then the data folder (see
    `annotator.models.discovery`), skipping official file names of the wrong size (truncated
    copies). When nothing is found and `ask` is True, shows the first-run dialog; None means the
    classic engine (the caller should remember that choice so the dialog does not come back at
    every start).
    """
    from annotator.models.discovery import find_checkpoints

    for found in find_checkpoints(settings_path):
        if found.looks_complete:
            return found.path
    if not ask:
        return None
    return FirstRunDialog.get_checkpoint(parent)


def _file_problem(path: Path) -> str | None:
    """Why `path` cannot be a checkpoint (one sentence), or None if it looks usable."""
    if path.is_dir() and (path / "config.json").is_file():
        return None  # a transformers checkpoint folder: its loader checks the rest
    if not path.is_file():
        return f"There is no file at {path}."
    size = path.stat().st_size
    if size == 0:
        return f"{path.name} is empty."
    if path.name.endswith(".part"):
        return f"{path.name} is an unfinished download; use Download to resume it."
    official = registry.checkpoint_by_file_name(path.name)
    if official is not None and official.size_bytes is not None and size != official.size_bytes:
        return (
            f"{path.name} has {format_bytes(size)} but the official file has "
            f"{official.size_text}; it is probably an incomplete download."
        )
    return None


def _recommendation_text(pick: registry.Recommendation) -> str:
    """What the dialog says under a recommended model: why, how fast it was, what it needs."""
    parts = [pick.reason]
    if pick.timing_text:
        parts.append(pick.timing_text)
    missing = registry.missing_package_hint(pick.info.family)
    if missing:
        parts.append(missing)
    return " ".join(parts)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
