"""The annotation window: wires the canvas, panels, prompt session, undo stack and inference.

Flow of a click: the canvas emits image coordinates -> the PromptSession records the prompt (new
revision) -> the controller decodes it on the worker (or holds it until the embedding lands) ->
a prediction for the current image and revision is stored in the session and drawn; anything
older is dropped. Enter turns the chosen mask into an annotation through the one UndoStack.

Segment everything (Ctrl+E) runs on the same worker with the current image's embedding; its
proposals (a ProposalSet of compact masks) are outlined on the canvas until they are accepted
(a click inside one: one undo step; Ctrl+Shift+E: all, one undo step), discarded (Esc) or the
image changes. Esc while it runs cancels it; navigation cancels it and drops its result.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QCloseEvent, QColor
from PySide6.QtWidgets import (
    QColorDialog,
    QDockWidget,
    QFileDialog,
    QHBoxLayout,
    QInputDialog,
    QLabel,
    QMainWindow,
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

from annotator.core.commands import (
    AddAnnotation,
    AddCategory,
    CompositeCommand,
    DeleteAnnotations,
    DeleteCategory,
    RecolorCategory,
    RelabelAnnotations,
    RenameCategory,
    SetImageDone,
    UndoStack,
)
from annotator.core.project import (
    Category,
    Project,
    ProjectEvent,
    annotation_from_mask,
    palette_color,
)
from annotator.core.prompts import PromptSession
from annotator.errors import UserError
from annotator.qt.actions import ShortcutSheet, build_actions
from annotator.qt.canvas import GESTURES, Canvas
from annotator.qt.image_loader import DisplayImage, ImageLoader
from annotator.qt.inference import (
    NEEDS_SAM,
    AutoMasked,
    EmbeddingState,
    EngineInfo,
    EngineSpec,
    InferenceController,
    InferenceWorker,
)
from annotator.qt.overlay import OverlayItem
from annotator.qt.panels import AnnotationPanel, CategoryPanel, ImageListPanel
from annotator.qt.proposals import (
    AcceptProposal,
    AutoMaskSettingsDialog,
    CompactProposal,
    ProposalSet,
    proposal_annotation,
)
from annotator.qt.settings import Settings
from annotator.qt.undo import UndoBinding

PREFETCH_AHEAD = 2  # images after the current one to pre-encode when idle


class MainWindow(QMainWindow):
    def __init__(
        self,
        project: Project,
        engine_spec: EngineSpec,
        settings: Settings | None = None,
        worker: InferenceWorker | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings or Settings()
        self.engine_spec = engine_spec
        self.session = PromptSession()
        self.project: Project | None = None
        self.stack: UndoStack | None = None
        self.undo_binding: UndoBinding | None = None
        self.current_index = -1
        self.current_category_id: int | None = None
        self.display: DisplayImage | None = None
        self._display_token = 0
        self._mask_cache: dict[int, tuple[object, np.ndarray]] = {}
        self._selected: tuple[int, ...] = ()
        self.proposals: ProposalSet | None = None  # segment-everything proposals on offer
        self._closing = False
        self._shortcut_sheet: ShortcutSheet | None = None
        self._restored_unsaved = False  # restored from an autosave: differs from the file
        self._lock = None  # the ProjectLock of the open project, when we hold it
        self.lock_warning: QMessageBox | None = None

        self.actions = build_actions(self)
        self.canvas = Canvas(self)
        self.setCentralWidget(self.canvas)
        self._build_panels()
        self._build_status_bar()
        self._build_menus_and_toolbar()
        self.controller = InferenceController(worker, self)
        self.loader = ImageLoader(self)
        self._connect()
        self._progress_timer = QTimer(self)
        self._progress_timer.setInterval(100)
        self._progress_timer.timeout.connect(self._update_progress)
        self._autosave_timer = QTimer(self)
        self._autosave_timer.setInterval(10_000)  # the Autosaver decides whether one is due
        self._autosave_timer.timeout.connect(lambda: self.autosave(force=False))
        self._autosave_timer.start()
        self.resize(1400, 900)
        if self.settings.geometry is not None:
            self.restoreGeometry(self.settings.geometry)
        if self.settings.window_state is not None:
            self.restoreState(self.settings.window_state)
        self.canvas.set_opacity(self.settings.opacity)
        self.opacity_slider.setValue(round(self.settings.opacity * 100))
        self.set_project(project)

    # ================================================================== construction
    def _build_panels(self) -> None:
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

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.model_label = QLabel("Model: starting…")
        self.device_label = QLabel("")
        self.state_label = QLabel("")
        self.progress = QProgressBar()
        self.progress.setFixedWidth(120)
        self.progress.setMaximumHeight(14)
        self.progress.setTextVisible(False)
        self.progress.hide()
        self.candidate_label = QLabel("")
        self.cursor_label = QLabel("")
        self.cursor_label.setMinimumWidth(110)
        self.zoom_label = QLabel("")
        self.zoom_label.setMinimumWidth(60)
        for widget in (self.model_label, self.device_label, self.state_label):
            bar.addWidget(widget)
        bar.addWidget(self.progress)
        # Permanent widgets: a status message must not hide the Cancel button or the choices.
        self.auto_box, self.auto_progress, self.auto_cancel = self._build_auto_box()
        self.proposal_bar, self.proposal_label = self._build_proposal_bar()
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

    def _build_menus_and_toolbar(self) -> None:
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
                ["undo", "redo", None, "delete_annotations", "toggle_done", None, "add_category"],
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

    def _connect(self) -> None:
        a = self.actions
        triggers = {
            "open": self.open_dialog,
            "open_folder": self.open_folder_dialog,
            "save": self.save,
            "save_as": self.save_as,
            "export": self.export,
            "relink_images": self.relink_images,
            "choose_model": self.choose_model,
            "quit": self.close,
            "accept": self.accept_mask,
            "cycle_candidate": self.cycle_candidate,
            "remove_prompt": self.remove_last_prompt,
            "clear_prompts": self.escape,
            "segment_everything": self.segment_everything,
            "accept_all_proposals": self.accept_all_proposals,
            "discard_proposals": self.discard_proposals,
            "auto_mask_settings": self.edit_auto_mask_settings,
            "delete_annotations": self.delete_selected,
            "add_category": self.add_category,
            "next_image": lambda: self.go_to(self.current_index + 1),
            "previous_image": lambda: self.go_to(self.current_index - 1),
            "fit": self.canvas.fit,
            "zoom_in": lambda: self.canvas.zoom_by(1.25),
            "zoom_out": lambda: self.canvas.zoom_by(0.8),
            "shortcuts": self.show_shortcuts,
            "about": self.show_about,
        }
        triggers["undo"] = self.undo
        triggers["redo"] = self.redo
        for name, slot in triggers.items():
            a[name].triggered.connect(slot)
        a["hide_overlays"].toggled.connect(
            lambda hidden: self.canvas.set_overlays_visible(not hidden)
        )
        a["toggle_done"].triggered.connect(self.toggle_done)
        for n in range(1, 10):
            a[f"category_{n}"].triggered.connect(
                lambda _=False, n=n: self.choose_category_index(n - 1)
            )
        self.opacity_slider.valueChanged.connect(self._on_opacity)

        self.canvas.point_added.connect(self.add_point)
        self.canvas.box_drawn.connect(self.set_box)
        self.canvas.cursor_moved.connect(self._on_cursor)
        self.canvas.view_changed.connect(lambda zoom: self.zoom_label.setText(f"{zoom * 100:.0f}%"))
        self.image_panel.image_activated.connect(self.go_to)
        self.category_panel.category_chosen.connect(self._set_category)
        self.category_panel.add_requested.connect(self.add_category)
        self.category_panel.rename_requested.connect(self.rename_category)
        self.category_panel.recolor_requested.connect(self.recolor_category)
        self.category_panel.delete_requested.connect(self.delete_category)
        self.annotation_panel.selection_changed.connect(self._on_selection)
        self.annotation_panel.hidden_changed.connect(lambda _: self._refresh_overlay())
        self.annotation_panel.relabel_requested.connect(self.relabel)
        self.annotation_panel.delete_requested.connect(self.delete_annotations)

        self.controller.engine_ready.connect(self._on_engine_ready)
        self.controller.engine_failed.connect(self._on_engine_failed)
        self.controller.state_changed.connect(self._on_state)
        self.controller.prediction_ready.connect(self._on_prediction)
        self.controller.error.connect(lambda message: self.statusBar().showMessage(message, 8000))
        self.controller.auto_progress.connect(self._on_auto_progress)
        self.controller.auto_finished.connect(self._on_auto_finished)
        self.loader.loaded.connect(self._on_image_loaded)
        self.loader.failed.connect(self._on_image_failed)

    # ================================================================== project
    def set_project(self, project: Project) -> None:
        """Show `project` (a fresh undo history); the first image opens."""
        if self.project is not None:
            self.project.remove_listener(self._on_project_event)
        if self.undo_binding is not None:
            self.undo_binding.detach()
        self.project = project
        self._take_lock(project.path)
        self._restored_unsaved = False
        self.session.clear()
        self._stop_segment_everything()
        self.autosaver = _make_autosaver(project)
        self.stack = UndoStack(project)
        self.undo_binding = UndoBinding(
            self.stack, self.actions["undo"], self.actions["redo"], self
        )
        self.undo_binding.clean_changed.connect(lambda _: self._update_title())
        project.add_listener(self._on_project_event)
        self._mask_cache.clear()
        self.current_category_id = project.categories[0].id if project.categories else None
        self.image_panel.set_project(project)
        self._refresh_categories()
        self._update_title()
        self.current_index = -1
        if project.images:
            self.go_to(0)
        else:
            self._show_no_image("This project has no images. Open a folder with Ctrl+O.")
        if project.path is not None and project.path.exists():
            self.settings.add_recent_project(str(project.path))
        self._refresh_recent_menu()

    def _take_lock(self, path: Path | None) -> None:
        """Hold the project's lock file; warn (without blocking) when another window has it."""
        from annotator.core.autosave import ProjectLock

        if self._lock is not None:
            self._lock.release()
            self._lock = None
        if path is None:
            return
        lock = ProjectLock(path)
        try:
            holder = lock.acquire()
        except UserError as exc:  # e.g. a read-only folder: work on, saving will say more
            self.statusBar().showMessage(str(exc), 8000)
            return
        if holder is None:
            self._lock = lock
            return
        box = QMessageBox(
            QMessageBox.Icon.Warning,
            "Project open elsewhere",
            f"{path.name} is already open in another window ({holder.describe()}). "
            "Saving here may overwrite that window's work.",
            QMessageBox.StandardButton.Ok,
            self,
        )
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        self.lock_warning = box

    def _update_title(self) -> None:
        name = str(self.project.path) if self.project and self.project.path else "untitled"
        self.setWindowTitle(f"Annotator — {name}{'*' if self.is_dirty() else ''}")

    def is_dirty(self) -> bool:
        """Unsaved changes: the undo stack is off its clean index, or an autosave was restored."""
        if self.stack is None:
            return False
        return self._restored_unsaved or not self.stack.is_clean()

    def _on_project_event(self, event: ProjectEvent) -> None:
        record = self.current_record()
        if event.kind in ("categories", "reset"):
            self._refresh_categories()
        if event.kind in ("annotations", "categories", "reset"):
            for annotation_id in event.ids if event.kind == "annotations" else ():
                if not self.project.has_annotation(annotation_id):
                    self._mask_cache.pop(annotation_id, None)
            if record is not None:
                self._refresh_annotations()
            self.image_panel.refresh(None)
        if event.kind == "images":
            self.image_panel.refresh(event.ids)
            if record is not None and record.id in event.ids:
                self._sync_done_action()

    # ================================================================== undo-stack edits
    def undo(self) -> None:
        self.stack.undo()

    def redo(self) -> None:
        self.stack.redo()

    def _push(self, command) -> bool:
        try:
            self.stack.push(command)
        except (KeyError, ValueError) as exc:
            self.statusBar().showMessage(f"Not done: {exc}", 6000)
            return False
        return True

    def accept_mask(self) -> None:
        """Enter: the shown candidate becomes an annotation of the current category."""
        record = self.current_record()
        mask = self.session.accepted_mask()
        if record is None or mask is None:
            if self.session.pending:
                self.statusBar().showMessage("The mask is still being computed.", 3000)
            return
        if self.current_category_id is None:
            self.statusBar().showMessage("Add a label first (Ctrl+L).", 4000)
            return
        try:
            annotation = annotation_from_mask(
                self.project.next_annotation_id(), record.id, self.current_category_id, mask
            )
        except ValueError:
            self.statusBar().showMessage("The mask is empty: add a point on the object.", 4000)
            return
        if self._push(AddAnnotation(annotation)):
            self.clear_prompts()

    def delete_selected(self) -> None:
        ids = self.annotation_panel.selected_ids()
        if ids:
            self.delete_annotations(ids)

    def delete_annotations(self, ids) -> None:
        self._push(DeleteAnnotations(ids))

    def relabel(self, ids, category_id: int) -> None:
        self._push(RelabelAnnotations(ids, category_id))

    def toggle_done(self) -> None:
        record = self.current_record()
        if record is not None:
            self._push(SetImageDone(record.id, not record.done))
        self._sync_done_action()

    def _sync_done_action(self) -> None:
        record = self.current_record()
        self.actions["toggle_done"].setChecked(bool(record and record.done))

    def add_category(self) -> None:
        name, ok = QInputDialog.getText(self, "Add label", "Name of the new label:")
        if ok and name.strip():
            self.add_category_named(name.strip())

    def add_category_named(self, name: str, color=None) -> Category:
        category = Category(
            self.project.next_category_id(),
            name,
            tuple(color) if color else palette_color(len(self.project.categories)),
        )
        if self._push(AddCategory(category)):
            self._set_category(category.id)
        return category

    def rename_category(self, category_id: int) -> None:
        category = self.project.category(category_id)
        name, ok = QInputDialog.getText(self, "Rename label", "New name:", text=category.name)
        if ok and name.strip() and name.strip() != category.name:
            self._push(RenameCategory(category_id, name.strip()))

    def recolor_category(self, category_id: int) -> None:
        category = self.project.category(category_id)
        color = QColorDialog.getColor(QColor(*category.color), self, "Label colour")
        if color.isValid():
            self._push(RecolorCategory(category_id, (color.red(), color.green(), color.blue())))

    def delete_category(self, category_id: int) -> None:
        category = self.project.category(category_id)
        used = len(self.project.annotations_of_category(category_id))
        if used:
            answer = QMessageBox.question(
                self,
                "Delete label",
                f"“{category.name}” labels {used} annotation(s). Delete the label and them?"
                " (Ctrl+Z brings both back.)",
                QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                QMessageBox.StandardButton.No,
            )
            if answer != QMessageBox.StandardButton.Yes:
                return
        self._push(DeleteCategory(category_id))

    # ================================================================== categories
    def _refresh_categories(self) -> None:
        ids = [c.id for c in self.project.categories]
        if self.current_category_id not in ids:
            self.current_category_id = ids[0] if ids else None
        self.category_panel.set_categories(self.project.categories, self.current_category_id)
        self._refresh_live()

    def choose_category_index(self, index: int) -> None:
        if 0 <= index < len(self.project.categories):
            self._set_category(self.project.categories[index].id)

    def _set_category(self, category_id: int) -> None:
        self.current_category_id = category_id
        self.category_panel.set_current_id(category_id)
        self._refresh_live()

    def _category_color(self, category_id: int | None) -> tuple[int, int, int]:
        if category_id is not None and self.project.has_category(category_id):
            return tuple(self.project.category(category_id).color)
        return (255, 255, 255)

    # ================================================================== navigation
    def current_record(self):
        if self.project is None or not (0 <= self.current_index < len(self.project.images)):
            return None
        return self.project.images[self.current_index]

    def go_to(self, index: int) -> None:
        """Open image `index`: drop the prompts, start loading pixels and the embedding."""
        if self.project is None or not (0 <= index < len(self.project.images)):
            return
        if index == self.current_index:
            return
        self.autosave(force=True)
        self.current_index = index
        record = self.project.images[index]
        path = str(self.project.image_path(record))
        self.session.clear()
        self._stop_segment_everything()  # the controller drops the old image's result too
        self.display = None
        self.annotation_panel.reset_view_state()
        self._selected = ()
        self.canvas.message = f"Loading {record.file_name}…"
        self.canvas.set_image(None)
        self.image_panel.set_current(index)
        self._display_token = self.loader.load(path)
        self.controller.set_image(path)
        self.controller.set_prefetch(self._prefetch_paths())
        self._refresh_annotations()
        self._sync_done_action()
        self._refresh_candidate_label()

    def _prefetch_paths(self) -> list[str]:
        images = self.project.images
        ahead = images[self.current_index + 1 : self.current_index + 1 + PREFETCH_AHEAD]
        return [str(self.project.image_path(r)) for r in ahead]

    def _on_image_loaded(self, token: int, _path: str, display: DisplayImage) -> None:
        if token != self._display_token:
            return  # the user already moved on
        self.display = display
        self.canvas.set_image(display)
        self._refresh_overlay()
        self._refresh_proposals()
        self._refresh_live()

    def _on_image_failed(self, token: int, _path: str, message: str) -> None:
        if token == self._display_token:
            self._show_no_image(message)

    def _show_no_image(self, message: str) -> None:
        self.display = None
        self.canvas.message = message
        self.canvas.set_image(None)

    # ================================================================== prompts
    def add_point(self, x: float, y: float, positive: bool) -> None:
        """A click: accepts the proposal under it when proposals are shown, else a prompt."""
        if self.display is None:
            return
        if positive and self.proposals is not None and self.canvas.overlays_visible:
            proposal = self.proposals.smallest_at(x, y)  # only proposals one can see
            if proposal is not None:
                self.accept_proposal(proposal)
                return
        self.session.add_point(x, y, positive)
        self._prompts_changed(decode=True)

    def set_box(self, x0: float, y0: float, x1: float, y1: float) -> None:
        if self.display is None:
            return
        self.session.set_box(x0, y0, x1, y1)
        self._prompts_changed(decode=True)

    def remove_last_prompt(self) -> None:
        if self.session.undo_last():
            self._prompts_changed(decode=self.session.pending)

    def clear_prompts(self) -> None:
        self.session.clear()
        self._prompts_changed(decode=False)

    def cycle_candidate(self) -> None:
        if self.session.cycle_candidate():
            self._refresh_live()

    def escape(self) -> None:
        """Esc: cancel a running Segment Everything, else discard its proposals, else clear the
        prompts."""
        if self.controller.auto_running:
            self.cancel_segment_everything()
        elif self.proposals is not None and len(self.proposals):
            self.discard_proposals()
        else:
            self.clear_prompts()

    # ================================================================== segment everything
    def segment_everything(self) -> bool:
        """Ctrl+E: propose masks for the whole current image on the worker. Returns whether a
        run started (not while one runs: Esc cancels it first)."""
        status = self.statusBar()
        if self.current_record() is None or self.controller.key is None:
            status.showMessage("Open an image first.", 4000)
            return False
        info = self.controller.engine_info
        if info is None:
            status.showMessage("The model is not loaded yet; try again when it is.", 6000)
            return False
        if not info.automatic:
            status.showMessage(NEEDS_SAM, 10000)
            return False
        if self.controller.auto_running:
            status.showMessage("Segment everything is already running (Esc cancels it).", 4000)
            return False
        self._close_proposals()
        if not self.controller.request_auto_masks(self.settings.auto_mask_settings):
            return False
        self.auto_progress.setRange(0, 0)  # busy until the first step is reported
        self.auto_box.show()
        return True

    def cancel_segment_everything(self) -> None:
        if self.controller.auto_running:
            self.controller.cancel_auto()
            self.statusBar().showMessage("Segment everything cancelled.", 4000)
        self.auto_box.hide()

    def _stop_segment_everything(self) -> None:
        """The image or project changes: cancel a run and drop the proposals."""
        self.controller.cancel_auto()
        self.auto_box.hide()
        self._close_proposals()

    def _on_auto_progress(self, done: int, total: int) -> None:
        self.auto_progress.setRange(0, max(1, total))
        self.auto_progress.setValue(done)

    def _on_auto_finished(self, result: AutoMasked) -> None:
        """A run of the current image ended (the controller drops every other)."""
        self.auto_box.hide()
        if result.message:
            self.statusBar().showMessage(f"Segment everything failed: {result.message}", 10000)
            return
        if result.cancelled:
            return
        self._close_proposals()
        if not result.proposals:
            self.statusBar().showMessage(
                "Segment everything found no masks above the thresholds "
                "(Prompts ▸ Segment Everything Settings…).",
                8000,
            )
            return
        self.proposals = ProposalSet(
            result.key, list(result.proposals), on_change=self._refresh_proposals
        )
        self._refresh_proposals()
        self.statusBar().showMessage(
            f"{len(result.proposals)} proposals in {result.seconds:.1f} s.", 6000
        )

    def accept_proposal(self, proposal: CompactProposal) -> bool:
        """Add `proposal` as an annotation of the current label (one undo step)."""
        record = self._record_for_proposals()
        if record is None:
            return False
        annotation = proposal_annotation(
            self.project.next_annotation_id(), record.id, self.current_category_id, proposal
        )
        return self._push(AcceptProposal(annotation, proposal, self.proposals))

    def accept_all_proposals(self) -> bool:
        """Ctrl+Shift+E: every remaining proposal becomes an annotation of the current label,
        best first, as ONE undo step (undo puts them all back on offer)."""
        record = self._record_for_proposals()
        if record is None or not len(self.proposals):
            return False
        first_id = self.project.next_annotation_id()
        commands = [
            AcceptProposal(
                proposal_annotation(first_id + i, record.id, self.current_category_id, proposal),
                proposal,
                self.proposals,
            )
            for i, proposal in enumerate(self.proposals.items)
        ]
        return self._push(CompositeCommand(f"Accept {len(commands)} proposals", commands))

    def discard_proposals(self) -> None:
        """Drop the remaining proposals (accepted ones stay annotations)."""
        if self.proposals is not None and len(self.proposals):
            self.statusBar().showMessage(f"Discarded {len(self.proposals)} proposals.", 4000)
        self._close_proposals()

    def _record_for_proposals(self):
        """The current image record when proposals of it are on offer and a label is chosen."""
        record = self.current_record()
        if self.proposals is None or record is None:
            return None
        if str(self.project.image_path(record)) != self.proposals.key:
            return None  # never: navigation closes the set; kept as a guard against misfiling
        if self.current_category_id is None:
            self.statusBar().showMessage("Add a label first (Ctrl+L).", 4000)
            return None
        return record

    def _close_proposals(self) -> None:
        if self.proposals is not None:
            self.proposals.close()
            self.proposals = None
        self._refresh_proposals()

    def _refresh_proposals(self) -> None:
        """Outline the proposals on offer and show their count with Accept All / Discard."""
        items = self.proposals.items if self.proposals is not None else []
        self.canvas.set_proposals(items)
        if self.canvas.hovered is not None and self.canvas.hovered not in items:
            self.canvas.set_hovered(None)
        self.proposal_bar.setVisible(bool(items))
        self.proposal_label.setText(
            f"{len(items)} proposal{'s' if len(items) != 1 else ''}: click one to accept it"
        )
        self.actions["accept_all_proposals"].setEnabled(bool(items))
        self.actions["discard_proposals"].setEnabled(bool(items))

    def edit_auto_mask_settings(self) -> AutoMaskSettingsDialog:
        """Prompts ▸ Segment Everything Settings…: a dialog; OK stores the values in Settings."""
        dialog = AutoMaskSettingsDialog(self.settings.auto_mask_settings, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(
            lambda: setattr(self.settings, "auto_mask_settings", dialog.values())
        )
        dialog.open()
        return dialog

    def _prompts_changed(self, decode: bool) -> None:
        self.canvas.set_prompts(self.session.points, self.session.labels, self.session.box)
        if decode and not self.session.is_empty():
            self.controller.request_decode(self.session.revision, self.session.to_prompts())
        self._refresh_live()

    def _on_prediction(self, revision: int, prediction) -> None:
        if self.session.set_prediction(revision, prediction):
            self._refresh_live()

    def _refresh_live(self) -> None:
        if self.display is None:
            return
        self.canvas.set_live_mask(
            self.session.mask(), self._category_color(self.current_category_id)
        )
        self._refresh_candidate_label()

    def _refresh_candidate_label(self) -> None:
        count, score = self.session.candidate_count, self.session.score()
        if score is None:
            text = "computing…" if self.session.pending else ""
        elif count > 1:
            text = f"Candidate {self.session.candidate + 1}/{count} · score {score:.3f} (Tab)"
        else:
            text = f"Score {score:.3f}"
        if self.session.pending and score is not None:
            text += " · updating…"
        self.candidate_label.setText(text)

    # ================================================================== annotations on canvas
    def _refresh_annotations(self) -> None:
        record = self.current_record()
        annotations = self.project.annotations_of(record.id) if record else []
        self.annotation_panel.set_annotations(annotations, self.project.categories)
        self._refresh_overlay()

    def _mask_of(self, annotation) -> np.ndarray:
        cached = self._mask_cache.get(annotation.id)
        if cached is not None and cached[0] is annotation.rle:
            return cached[1]
        mask = annotation.mask()
        self._mask_cache[annotation.id] = (annotation.rle, mask)
        return mask

    def _refresh_overlay(self) -> None:
        record = self.current_record()
        if record is None or self.display is None:
            return
        hidden = self.annotation_panel.hidden
        selected = set(self._selected)
        items = []
        for annotation in self.project.annotations_of(record.id):
            if annotation.id in hidden:
                continue
            mask = self._mask_of(annotation)
            if mask.shape != (self.display.height, self.display.width):
                continue  # a stale record size: never draw a mask over the wrong pixels
            items.append(
                OverlayItem(
                    annotation.id,
                    mask,
                    self._category_color(annotation.category_id),
                    annotation.id in selected,
                )
            )
        items.sort(key=lambda item: item.selected)  # selected ones on top
        self.canvas.set_overlay_items(items)

    def _on_selection(self, ids) -> None:
        self._selected = tuple(ids)
        self._refresh_overlay()

    # ================================================================== engine state
    def start_inference(self) -> None:
        """Start the worker thread and load the engine (after the window is visible)."""
        self.controller.start(self.engine_spec)

    def _on_engine_ready(self, info: EngineInfo) -> None:
        self.model_label.setText(f"Model: {info.name}")
        self.device_label.setText(f"Device: {info.device}")

    def _on_engine_failed(self, message: str) -> None:
        self.model_label.setText("Model: not loaded")
        self.model_label.setToolTip(message)
        # Not modal: the person can keep browsing and choose another model (Ctrl+M).
        box = QMessageBox(QMessageBox.Icon.Warning, "Model not loaded", message, parent=self)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.setWindowModality(Qt.WindowModality.NonModal)
        box.show()

    def _on_state(self, state: EmbeddingState, detail: str) -> None:
        texts = {
            EmbeddingState.NO_ENGINE: "No model",
            EmbeddingState.LOADING_MODEL: "Loading model…",
            EmbeddingState.WAITING: "Embedding queued",
            EmbeddingState.ENCODING: "Embedding…",
            EmbeddingState.READY: "Embedding ready" + (f" ({detail})" if detail else ""),
            EmbeddingState.FAILED: "Failed: " + detail,
        }
        self.state_label.setText(texts[state])
        busy = state in (
            EmbeddingState.LOADING_MODEL,
            EmbeddingState.ENCODING,
            EmbeddingState.WAITING,
        )
        self.progress.setVisible(busy)
        if busy:
            self._update_progress()
            self._progress_timer.start()
        else:
            self._progress_timer.stop()

    def _update_progress(self) -> None:
        fraction = self.controller.encode_progress()
        if fraction is None:
            self.progress.setRange(0, 0)  # busy indicator until we know how long it takes
        else:
            self.progress.setRange(0, 100)
            self.progress.setValue(int(fraction * 100))

    def _on_cursor(self, x: float, y: float) -> None:
        if math.isnan(x):
            self.cursor_label.setText("")
        else:
            self.cursor_label.setText(f"x {round(x)}  y {round(y)}")
        if self.proposals is not None and len(self.proposals):
            inside = not math.isnan(x) and self.canvas.overlays_visible
            hovered = self.proposals.smallest_at(x, y) if inside else None
            self.canvas.set_hovered(hovered, self._category_color(self.current_category_id))

    def _on_opacity(self, value: int) -> None:
        self.canvas.set_opacity(value / 100)
        self.settings.opacity = value / 100

    # ================================================================== files
    def save(self) -> bool:
        if self.project.path is None:
            return self.save_as()
        return self._save_to(None)

    def save_as(self) -> bool:
        start = str(self.project.path or Path.cwd() / "annotations.json")
        path, _ = QFileDialog.getSaveFileName(self, "Save project as", start, "COCO JSON (*.json)")
        return bool(path) and self._save_to(Path(path))

    def _save_to(self, path: Path | None) -> bool:
        from annotator.core.autosave import lock_path
        from annotator.core.coco import save_project

        try:
            written = save_project(self.project, path)
        except UserError as exc:
            QMessageBox.critical(self, "Not saved", str(exc))
            return False
        self._restored_unsaved = False
        if self._lock is None or self._lock.path != lock_path(written.absolute()):
            self._take_lock(written)  # Save As: the lock follows the file
        self.stack.set_clean()
        if self.autosaver is not None:
            from annotator.core.autosave import discard_autosave

            self.autosaver.mark_saved()
            discard_autosave(written)
        self._update_title()
        self.settings.add_recent_project(str(written))
        self._refresh_recent_menu()
        self.statusBar().showMessage(f"Saved {written}", 4000)
        return True

    def maybe_save(self) -> bool:
        """Ask about unsaved changes; False when the person cancels."""
        if not self.is_dirty():
            return True
        answer = QMessageBox.question(
            self,
            "Unsaved changes",
            "Save the changes to this project before closing it?",
            QMessageBox.StandardButton.Save
            | QMessageBox.StandardButton.Discard
            | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Save,
        )
        if answer == QMessageBox.StandardButton.Save:
            return self.save()
        if answer == QMessageBox.StandardButton.Discard and self.project.path is not None:
            if self.autosaver is not None:  # the person chose to drop these changes
                from annotator.core.autosave import discard_autosave

                discard_autosave(self.project.path)
            return True
        return answer == QMessageBox.StandardButton.Discard

    def autosave(self, force: bool) -> None:
        """Write the sidecar autosave when due (timer) or now (image change); never the project."""
        if self.autosaver is None or not self.is_dirty():
            return
        try:
            self.autosaver.tick(force=force)
        except (OSError, UserError) as exc:
            self.statusBar().showMessage(f"Autosave failed: {exc}", 8000)

    def open_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self,
            "Open project or image",
            "",
            "Projects and images (*.json *.png *.jpg *.jpeg *.tif *.tiff *.bmp *.webp);;All files (*)",
        )
        if path:
            self.open_path(Path(path))

    def open_folder_dialog(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Open a folder of images")
        if path:
            self.open_path(Path(path))

    def open_path(self, path: Path) -> None:
        from annotator.qt.app import open_project

        if not self.maybe_save():
            return
        try:
            project, messages = open_project(path)
        except UserError as exc:
            QMessageBox.critical(self, "Cannot open", str(exc))
            return
        self.set_project(project)
        if messages:
            QMessageBox.information(self, "Opened with notes", "\n\n".join(messages))
        self.offer_autosave()

    def offer_autosave(self) -> bool:
        """If the project has an autosave newer than its file, offer to restore it.

        Declining keeps the sidecar (nothing is thrown away unasked); the next save removes it.
        """
        path = self.project.path
        if path is None:
            return False
        from annotator.core.autosave import load_autosave, newer_autosave

        sidecar = newer_autosave(path)
        if sidecar is None:
            return False
        answer = QMessageBox.question(
            self,
            "Restore unsaved work",
            f"This project has work that was not saved (autosaved in {sidecar.name}). Restore it?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.Yes,
        )
        if answer != QMessageBox.StandardButton.Yes:
            return False
        try:
            project, _report = load_autosave(path)
        except UserError as exc:
            QMessageBox.warning(self, "Not restored", str(exc))
            return False
        self.set_project(project)
        self._restored_unsaved = True
        self._update_title()
        return True

    def _refresh_recent_menu(self) -> None:
        self.recent_menu.clear()
        for path in self.settings.recent_projects:
            action = self.recent_menu.addAction(path)
            action.triggered.connect(lambda _=False, p=path: self.open_path(Path(p)))
        self.recent_menu.setEnabled(bool(self.settings.recent_projects))

    def export(self) -> None:
        """File → Export… (the format and destination are asked; the export runs on a thread)."""
        from annotator.qt.file_dialogs import run_export

        run_export(self, self.project)

    def relink_images(self) -> None:
        """File → Relink Images…: find moved images by file name; one undo step."""
        from annotator.core.commands import ReplaceImages
        from annotator.qt.file_dialogs import choose_relinks

        records = choose_relinks(self, self.project)
        if records and self._push(ReplaceImages(records)):
            index, self.current_index = max(self.current_index, 0), -1
            self.go_to(index)  # reload: the current image may be one that was missing

    def choose_model(self) -> None:
        """Ctrl+M: the model manager (download a checkpoint, choose a file, or the classic engine)."""
        from annotator.qt.first_run import FirstRunDialog

        dialog = FirstRunDialog(self)
        if not dialog.exec():
            return
        chosen = dialog.chosen_path()
        self.use_checkpoint(str(chosen) if chosen else None)

    def use_checkpoint(self, path: str | None) -> None:
        """Load the SAM checkpoint at `path` (None: the classic engine) and remember it."""
        self.engine_spec = EngineSpec(path, "auto", self.engine_spec.device)
        self.settings.checkpoint = path
        self.session.clear()
        self._prompts_changed(decode=False)
        self.auto_box.hide()  # load_engine cancels a running Segment Everything
        self.controller.load_engine(self.engine_spec)

    # ================================================================== dialogs
    def show_shortcuts(self) -> ShortcutSheet:
        self._shortcut_sheet = ShortcutSheet(self.actions, GESTURES, self)
        self._shortcut_sheet.show()
        return self._shortcut_sheet

    def show_about(self) -> None:
        from annotator import __version__

        info = self.controller.engine_info
        from annotator.qt.about import AboutDialog

        dialog = AboutDialog(
            __version__, info.name if info else None, info.device if info else None, parent=self
        )
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()

    # ================================================================== closing
    def closeEvent(self, event: QCloseEvent) -> None:
        if not self._closing and not self.maybe_save():
            event.ignore()
            return
        self._closing = True
        self.settings.geometry = self.saveGeometry()
        self.settings.window_state = self.saveState()
        self.settings.sync()
        self.hide()  # the window goes away at once, even while an embedding finishes
        self.controller.shutdown()
        self.loader.shutdown()
        if self.undo_binding is not None:
            self.undo_binding.detach()
        if self.project is not None:
            self.project.remove_listener(self._on_project_event)
        if self._lock is not None:
            self._lock.release()
        event.accept()


def _make_autosaver(project: Project):
    from annotator.core.autosave import Autosaver

    return Autosaver(project)
