"""Start the window: `annotator [PATH] [--checkpoint CKPT] [--model-type auto] [--device auto]`.

Start-up order keeps the first frame fast: Qt and the project come first, the window shows, and
only then (next event-loop turn) the worker thread starts and loads the engine, importing torch
there. So the window appears before torch is imported, and the import's GIL hitch happens while
the person is still looking at the first image, not while labelling.

PATH: a folder of images (opens `annotations.json` inside it if present, else a new project saved
there), one image (the `annotations.json` beside it if it lists the image, else a new project of
that image saved there), or a project .json. No PATH: the bundled samples, as a project whose file
lives in the user data folder (`samples-project/annotations.json`), because the samples folder may
be read-only in an installed package; its image file names are relative paths to the samples
(absolute when on another drive).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from annotator.errors import UserError

PROJECT_NAME = "annotations.json"


def samples_folder() -> Path:
    from annotator.paths import samples_folder

    return samples_folder()


def samples_project_path() -> Path:
    from annotator import paths

    return paths.data_dir() / "samples-project" / PROJECT_NAME


def _apply_style(app) -> None:
    """A calm dark Fusion theme: images read better on a dark surround."""
    from PySide6.QtGui import QColor, QPalette

    app.setStyle("Fusion")
    palette = QPalette()
    base, window, text = QColor(30, 31, 34), QColor(43, 45, 49), QColor(222, 224, 228)
    highlight = QColor(53, 116, 240)
    for role, color in (
        (QPalette.ColorRole.Window, window),
        (QPalette.ColorRole.WindowText, text),
        (QPalette.ColorRole.Base, base),
        (QPalette.ColorRole.AlternateBase, QColor(36, 37, 41)),
        (QPalette.ColorRole.ToolTipBase, window),
        (QPalette.ColorRole.ToolTipText, text),
        (QPalette.ColorRole.Text, text),
        (QPalette.ColorRole.Button, QColor(50, 52, 57)),
        (QPalette.ColorRole.ButtonText, text),
        (QPalette.ColorRole.Highlight, highlight),
        (QPalette.ColorRole.HighlightedText, QColor(255, 255, 255)),
        (QPalette.ColorRole.PlaceholderText, QColor(130, 132, 138)),
    ):
        palette.setColor(role, color)
    palette.setColor(QPalette.ColorGroup.Disabled, QPalette.ColorRole.Text, QColor(110, 112, 118))
    palette.setColor(
        QPalette.ColorGroup.Disabled, QPalette.ColorRole.ButtonText, QColor(110, 112, 118)
    )
    app.setPalette(palette)
    app.setStyleSheet(
        "QLabel#panelTitle { font-weight: 600; color: #aeb4bf; padding: 2px 0 4px 2px;"
        " text-transform: uppercase; letter-spacing: 1px; font-size: 11px; }"
        "QLabel#panelNote { color: #8b909a; font-size: 11px; }"
        "QToolBar { border: none; spacing: 4px; padding: 3px; }"
        "QStatusBar QLabel { padding: 0 8px; color: #c5c8ce; }"
        "QTreeWidget, QListWidget { border: 1px solid #3a3c42; border-radius: 3px; }"
        "QProgressBar { border: 1px solid #3a3c42; border-radius: 3px; background: #26272b; }"
        "QProgressBar::chunk { background: #3574f0; border-radius: 2px; }"
    )


def engine_spec_from(args, settings):
    from annotator.qt.inference import EngineSpec

    checkpoint = getattr(args, "checkpoint", None) or settings.checkpoint or None
    device = getattr(args, "device", "auto") or "auto"
    if device == "auto":  # not given on the command line: the one chosen last time
        device = settings.device
    if checkpoint and not Path(checkpoint).expanduser().exists():  # a file, or a hub folder
        if getattr(args, "checkpoint", None):
            raise UserError(f"Checkpoint {checkpoint} does not exist.")
        checkpoint = None  # a remembered checkpoint that was moved: fall back to classic
    return EngineSpec(checkpoint, getattr(args, "model_type", "auto") or "auto", device)


def run_app(args) -> int:
    """Open the window for `args` (path, checkpoint, model_type, device); returns the exit status."""
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from annotator.qt.main_window import MainWindow
    from annotator.qt.settings import Settings

    app = QApplication.instance() or QApplication(sys.argv[:1])
    app.setApplicationName("Annotator")
    app.setOrganizationName("Annotator")
    _apply_style(app)
    from annotator.qt.about import app_icon

    app.setWindowIcon(app_icon())
    settings = Settings()
    path = Path(args.path) if getattr(args, "path", None) else None
    if path is not None and not path.expanduser().exists():
        raise UserError(f"{path.expanduser().absolute()} does not exist.")
    needs_model = not getattr(args, "checkpoint", None) and not settings.checkpoint
    if needs_model:
        needs_model = not _found_checkpoint(settings)
    spec = engine_spec_from(args, settings)
    if getattr(args, "checkpoint", None):
        settings.checkpoint = str(Path(args.checkpoint).expanduser().absolute())
    if getattr(args, "device", "auto") not in (None, "auto"):
        settings.device = args.device
    window = MainWindow(None, spec, settings)
    from annotator.qt.crash import install_excepthook

    # An unexpected error autosaves first, then shows a copyable report; the app keeps running.
    crash_handler = install_excepthook(window.autosave, lambda: window)
    window.show()
    if (
        needs_model
        and not settings.model_choice_made
        and not os.environ.get("ANNOTATOR_BENCH_SHOWN")
    ):
        QTimer.singleShot(0, lambda: _first_run_dialog(window, settings))
    # The project is read on a thread behind a busy bar (a big one takes seconds), then shown,
    # with its notes and any unsaved work to restore.
    window.files.open_in_background(path)
    QTimer.singleShot(0, window.start_inference)
    if os.environ.get("ANNOTATOR_BENCH_SHOWN"):  # bench/bench_gui.py: time to a visible window
        QTimer.singleShot(0, lambda: _report_shown(window))
    try:
        return app.exec()
    finally:
        crash_handler.uninstall()


def _found_checkpoint(settings) -> bool:
    """No checkpoint configured: take one from `$SAM_CHECKPOINT` or the data folder if there is."""
    from annotator.qt.first_run import startup_checkpoint

    found = startup_checkpoint(None, None, ask=False)
    if found is not None:
        settings.checkpoint = str(found)
    return found is not None


def _first_run_dialog(window, settings) -> None:
    """Ask once, over the visible window (the classic engine already works behind it).

    Declining is remembered, so the dialog does not return at every start; Ctrl+M (Choose Model)
    opens it again.
    """
    from annotator.qt.first_run import FirstRunDialog

    chosen = FirstRunDialog.get_checkpoint(window)
    settings.model_choice_made = True
    if chosen is not None:
        window.use_checkpoint(str(chosen))


def _report_shown(window) -> None:
    """Print when the first frame is up (and whether torch was loaded by then), then close."""
    from PySide6.QtCore import QTimer

    window.repaint()  # the first frame is painted synchronously before we report it
    print(f"annotator-shown torch={'torch' in sys.modules}", flush=True)

    def close_when_opened() -> None:  # the project prints "annotator-opened" when it is shown
        if window.files.opening is not None:
            QTimer.singleShot(50, close_when_opened)
            return
        window._closing = True  # no "unsaved changes?" question in a bench
        window.close()

    QTimer.singleShot(200, close_when_opened)
