"""The main window's widgets: panels, status bar, menus and toolbar (built once, no logic),
and `EngineStatus`, which shows the inference controller's state in the status bar.

Functions of the window (`self`) so that main_window.py holds only what the view does.
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt, QTimer
from PySide6.QtWidgets import (
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QMenu,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSlider,
    QSplitter,
    QToolBar,
    QToolButton,
    QWidget,
)

from annotator.qt.inference import EmbeddingState
from annotator.qt.panels import AnnotationPanel, CategoryPanel, ImageListPanel


def build_panels(self) -> None:
    """The images list (left) and the labels and annotations (right)."""
    self.image_panel = ImageListPanel(self)
    left = QDockWidget("Images", self)
    left.setObjectName("imagesDock")
    left.setTitleBarWidget(QWidget(left))
    left.setWidget(self.image_panel)
    left.setFeatures(QDockWidget.DockWidgetFeature.NoDockWidgetFeatures)
    self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, left)
    self.category_panel = CategoryPanel(self)
    self.annotation_panel = AnnotationPanel(self)
    splitter = QSplitter(Qt.Orientation.Vertical, self)
    splitter.addWidget(self.category_panel)
    splitter.addWidget(self.annotation_panel)
    splitter.setSizes([260, 440])
    right = QDockWidget("Labels and annotations", self)
    right.setObjectName("labelsDock")
    right.setTitleBarWidget(QWidget(right))
    right.setWidget(splitter)
    right.setFeatures(QDockWidget.DockWidgetFeature.NoDockWidgetFeatures)
    self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, right)
    self.resizeDocks([left, right], [240, 270], Qt.Orientation.Horizontal)


def build_status_bar(self) -> None:
    """Model, device, embedding state and progress; the permanent boxes on the right."""
    bar = self.statusBar()
    self.model_label = QLabel("Model: starting…")
    self.device_label = QLabel("")
    self.state_label = QLabel("")
    self.progress = QProgressBar()
    self.progress.setFixedWidth(120)
    self.progress.setMaximumHeight(14)
    self.progress.setTextVisible(False)
    self.progress.hide()
    self.busy_label = QLabel("")  # "Opening project.json…" while a project is read
    self.busy_label.hide()
    self.candidate_label = QLabel("")
    self.cursor_label = QLabel("")
    self.cursor_label.setMinimumWidth(110)
    self.zoom_label = QLabel("")
    self.zoom_label.setMinimumWidth(60)
    for widget in (self.model_label, self.device_label, self.state_label):
        bar.addWidget(widget)
    bar.addWidget(self.progress)
    bar.addWidget(self.busy_label)
    # Permanent widgets: a status message must not hide the Cancel button or the choices.
    self.auto_box, self.auto_progress, self.auto_cancel = _build_auto_box(self)
    self.proposal_bar, self.proposal_label = _build_proposal_bar(self)
    for widget in (
        self.auto_box,
        self.proposal_bar,
        self.candidate_label,
        self.cursor_label,
        self.zoom_label,
    ):
        bar.addPermanentWidget(widget)


def _build_auto_box(self) -> tuple[QWidget, QProgressBar, QPushButton]:
    """Status-bar box shown while Ctrl+E runs: a label, a progress bar and Cancel."""
    box = QWidget(self)
    layout = QHBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.addWidget(QLabel("Segmenting everything…"))
    progress = QProgressBar(box)
    progress.setFixedWidth(160)
    progress.setMaximumHeight(14)
    progress.setTextVisible(False)
    layout.addWidget(progress)
    cancel = QPushButton("Cancel", box)
    cancel.setToolTip("Stop Segment Everything (Esc)")
    cancel.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    cancel.clicked.connect(self.cancel_segment_everything)
    layout.addWidget(cancel)
    box.hide()
    return box, progress, cancel


def _build_proposal_bar(self) -> tuple[QWidget, QLabel]:
    """Status-bar box shown with proposals: their count, Accept All and Discard."""
    bar = QWidget(self)
    layout = QHBoxLayout(bar)
    layout.setContentsMargins(0, 0, 0, 0)
    label = QLabel("")
    layout.addWidget(label)
    for name in ("accept_all_proposals", "discard_proposals"):
        button = QToolButton(bar)
        button.setDefaultAction(self.actions[name])
        button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        layout.addWidget(button)
    bar.hide()
    return bar, label


def build_menus_and_toolbar(self) -> None:
    """The menus and the toolbar, from the window's actions."""
    a = self.actions
    menus = (
        (
            "&File",
            [
                "open",
                "open_folder",
                None,
                "save",
                "save_as",
                "export",
                "relink_images",
                None,
                "choose_model",
                None,
                "quit",
            ],
        ),
        (
            "&Edit",
            [
                "undo",
                "redo",
                None,
                "add_to_selected",
                "cut_from_selected",
                "fill_holes",
                "remove_islands",
                "smooth_masks",
                "merge_annotations",
                "split_annotation",
                "masks_do_not_overlap",
                None,
                "delete_annotations",
                "toggle_done",
                None,
                "add_category",
            ],
        ),
        (
            "&Tools",
            [
                "tool_sam",
                "tool_brush",
                "tool_eraser",
                "tool_polygon",
                None,
                "brush_smaller",
                "brush_larger",
            ],
        ),
        (
            "&Prompts",
            [
                "accept",
                "cycle_candidate",
                "remove_prompt",
                "clear_prompts",
                None,
                "segment_everything",
                "accept_all_proposals",
                "discard_proposals",
                "auto_mask_settings",
                None,
                "find",
                "find_all",
                "propagate",
            ],
        ),
        ("&View", ["fit", "zoom_in", "zoom_out", "hide_overlays"]),
        ("&Go", ["next_image", "previous_image"]),
        ("&Help", ["shortcuts", "about"]),
    )
    for title, names in menus:
        menu = self.menuBar().addMenu(title)
        for name in names:
            if name is None:
                menu.addSeparator()
            else:
                menu.addAction(a[name])
        if title == "&File":  # Open Recent goes right after the open actions
            self.recent_menu = QMenu("Open &Recent", menu)
            menu.insertMenu(a["save"], self.recent_menu)
            menu.insertSeparator(a["save"])
    toolbar = QToolBar("Main", self)
    toolbar.setObjectName("mainToolbar")
    toolbar.setMovable(False)
    toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
    for name in (
        "open",
        "save",
        None,
        "undo",
        "redo",
        None,
        "previous_image",
        "next_image",
        None,
        "accept",
        "cycle_candidate",
        None,
        "tool_sam",
        "tool_brush",
        "tool_eraser",
        "tool_polygon",
        None,
        "fit",
        "hide_overlays",
    ):
        if name is None:
            toolbar.addSeparator()
        else:
            toolbar.addAction(a[name])
    spacer = QWidget(toolbar)
    spacer.setMinimumWidth(12)
    toolbar.addWidget(spacer)
    toolbar.addWidget(QLabel("Opacity "))
    self.opacity_slider = QSlider(Qt.Orientation.Horizontal, toolbar)
    self.opacity_slider.setRange(0, 100)
    self.opacity_slider.setFixedWidth(120)
    self.opacity_slider.setFocusPolicy(Qt.FocusPolicy.NoFocus)
    toolbar.addWidget(self.opacity_slider)
    self.addToolBar(Qt.ToolBarArea.TopToolBarArea, toolbar)
    self.toolbar = toolbar


class EngineStatus(QObject):
    """The status bar's model, device and embedding state, with a progress bar while the model
    loads or an embedding is computed (the controller's state, shown; no logic)."""

    STATE_TEXTS = {
        EmbeddingState.NO_ENGINE: "No model",
        EmbeddingState.LOADING_MODEL: "Loading model…",
        EmbeddingState.WAITING: "Embedding queued",
        EmbeddingState.ENCODING: "Embedding…",
    }
    BUSY = (EmbeddingState.LOADING_MODEL, EmbeddingState.ENCODING, EmbeddingState.WAITING)

    def __init__(self, window, controller) -> None:
        super().__init__(window)
        self.window, self.controller = window, controller
        self.timer = QTimer(self)
        self.timer.setInterval(100)
        self.timer.timeout.connect(self._update_progress)
        controller.engine_ready.connect(self._on_ready)
        controller.engine_failed.connect(self._on_failed)
        controller.state_changed.connect(self._on_state)

    def _on_ready(self, info) -> None:
        self.window.model_label.setText(f"Model: {info.name}")
        self.window.device_label.setText(f"Device: {info.device}")

    def _on_failed(self, message: str) -> None:
        self.window.model_label.setText("Model: not loaded")
        self.window.model_label.setToolTip(message)
        # Not modal: the person can keep browsing and choose another model (Ctrl+M).
        box = QMessageBox(QMessageBox.Icon.Warning, "Model not loaded", message, parent=self.window)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.setWindowModality(Qt.WindowModality.NonModal)
        box.show()

    def _on_state(self, state: EmbeddingState, detail: str) -> None:
        if state is EmbeddingState.READY:
            text = "Embedding ready" + (f" ({detail})" if detail else "")
        elif state is EmbeddingState.FAILED:
            text = "Failed: " + detail
        else:
            text = self.STATE_TEXTS[state]
        self.window.state_label.setText(text)
        busy = state in self.BUSY
        self.window.progress.setVisible(busy)
        if busy:
            self._update_progress()
            self.timer.start()
        else:
            self.timer.stop()

    def _update_progress(self) -> None:
        fraction = self.controller.encode_progress()
        progress = self.window.progress
        if fraction is None:
            progress.setRange(0, 0)  # busy indicator until we know how long it takes
        else:
            progress.setRange(0, 100)
            progress.setValue(int(fraction * 100))
