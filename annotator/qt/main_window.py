"""The annotation window: a view of one `AnnotationSession` (annotator.core.session).

The session owns the project, the undo stack, the prompts, the proposals, the unsaved state, the
lock and crash recovery; this window shows them and turns gestures into the session's calls. It
listens to the session's batched events and redraws once per batch.

Flow of a click: the canvas emits image coordinates -> the session's PromptSession records the
prompt (new revision) -> the controller decodes it on the worker (or holds it until the embedding
lands) -> a prediction for the current image and revision is stored and drawn; anything older is
dropped. Enter turns the chosen mask into an annotation (one undo step).

Segment everything (Ctrl+E) runs on the same worker with the current image's embedding; its
proposals are outlined on the canvas until they are accepted (a click inside one: one undo step;
Ctrl+Shift+E: all, one undo step and one redraw), discarded (Esc) or the image changes.
"""

from __future__ import annotations

import logging
import math
import sys

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QCloseEvent, QColor
from PySide6.QtWidgets import (
    QColorDialog,
    QInputDialog,
    QMainWindow,
    QMessageBox,
)

from annotator.core.project import Project
from annotator.core.proposals import CompactProposal
from annotator.core.session import AnnotationSession, SessionEvent
from annotator.qt.actions import ShortcutSheet, build_actions
from annotator.qt.canvas import GESTURES, Canvas
from annotator.qt.edit_tools import EditTools
from annotator.qt.find_bar import FindController
from annotator.qt.image_loader import DisplayImage, ImageLoader
from annotator.qt.inference import (
    EngineSpec,
    InferenceController,
    InferenceWorker,
)
from annotator.qt.overlay import OverlayItem
from annotator.qt.project_files import ProjectFiles
from annotator.qt.propagation import Propagation
from annotator.qt.segment_everything import SegmentEverything
from annotator.qt.settings import Settings
from annotator.qt.window_layout import (
    EngineStatus,
    build_menus_and_toolbar,
    build_panels,
    build_status_bar,
)

log = logging.getLogger(__name__)

PREFETCH_AHEAD = 2  # images after the current one to pre-encode when idle
MASK_NEIGHBOURS = 1  # images either side of the current one whose decoded masks stay cached
RECOVERY_TICK_MS = 1000  # how often the session may fold its journal (it decides)


class MainWindow(QMainWindow):
    def __init__(
        self,
        session: AnnotationSession | Project,
        engine_spec: EngineSpec,
        settings: Settings | None = None,
        worker: InferenceWorker | None = None,
    ) -> None:
        super().__init__()
        self.settings = settings or Settings()
        self.engine_spec = engine_spec
        self.session: AnnotationSession | None = None
        self.current_index = -1
        self.current_category_id: int | None = None
        self.display: DisplayImage | None = None
        self._display_token = 0
        self._selected: tuple[int, ...] = ()
        self._closing = False
        self._shortcut_sheet: ShortcutSheet | None = None
        self.lock_warning: QMessageBox | None = None

        self.actions = build_actions(self)
        self.canvas = Canvas(self)
        self.setCentralWidget(self.canvas)
        build_panels(self)
        build_status_bar(self)
        build_menus_and_toolbar(self)
        self.controller = InferenceController(worker, self)
        self.loader = ImageLoader(self)
        self.files = ProjectFiles(self)
        self.engine_status = EngineStatus(self, self.controller)
        self.everything = SegmentEverything(self)
        self.finder = FindController(self)  # SAM 3: Ctrl+F, Ctrl+Shift+F
        self.tools = EditTools(self)
        self.propagation = Propagation(self)  # the timeline of a sequence, Ctrl+Shift+P
        self._connect()
        self._recovery_timer = QTimer(self)
        self._recovery_timer.setInterval(RECOVERY_TICK_MS)
        self._recovery_timer.timeout.connect(lambda: self.session and self.session.tick())
        self._recovery_timer.start()
        self.resize(1400, 900)
        if self.settings.geometry is not None:
            self.restoreGeometry(self.settings.geometry)
        if self.settings.window_state is not None:
            self.restoreState(self.settings.window_state)
        self.canvas.set_opacity(self.settings.opacity)
        self.opacity_slider.setValue(round(self.settings.opacity * 100))
        if isinstance(session, Project):
            session = AnnotationSession.of(session)
        # None: the project is opened in the background (`open_in_background`); meanwhile the
        # window shows an empty, untitled project.
        self.set_session(session or AnnotationSession(Project(None), journal=False))

    # ================================================================== the session's state
    @property
    def project(self) -> Project | None:
        return self.session.project if self.session is not None else None

    @property
    def stack(self):
        return self.session.stack if self.session is not None else None

    @property
    def proposals(self):
        return self.session.proposals if self.session is not None else None

    def _connect(self) -> None:
        a = self.actions
        triggers = {
            "open": self.files.open_dialog,
            "open_folder": self.files.open_folder_dialog,
            "save": lambda: self.files.save_in_background(),
            "save_as": self.files.save_as_in_background,
            "export": self.files.export,
            "relink_images": self.files.relink_images,
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
            "find": self.finder.open,
            "find_all": self.finder.find_in_all,
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
        triggers["undo"] = lambda: self.session.undo()
        triggers["redo"] = lambda: self.session.redo()
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

        self.controller.prediction_ready.connect(self._on_prediction)
        self.controller.error.connect(lambda message: self.statusBar().showMessage(message, 8000))
        self.controller.crashed.connect(self._on_worker_crash)
        self.loader.loaded.connect(self._on_image_loaded)
        self.loader.failed.connect(self._on_image_failed)

    # ================================================================== session binding
    def set_session(self, session: AnnotationSession) -> None:
        """Show `session` (its own undo history); the first image opens."""
        if self.session is not None:
            self.session.remove_listener(self._on_session_events)
        self.session = session
        self._stop_segment_everything()
        session.add_listener(self._on_session_events)
        self._warn_if_locked()
        self.current_category_id = (
            self.project.categories[0].id if self.project.categories else None
        )
        self.image_panel.set_project(self.project)
        self._refresh_categories()
        self.refresh_history()
        self.tools.sync_settings()
        self.current_index = -1
        if self.project.images:
            self.go_to(0)
        else:
            self.show_no_image("This project has no images. Open a folder with Ctrl+O.")
        path = self.project.path
        if path is not None and path.exists():
            self.settings.add_recent_project(str(path))
        self.files.refresh_recent_menu()

    def _warn_if_locked(self) -> None:
        """Warn (without blocking) when another window holds the project."""
        holder = self.session.lock_holder
        if holder is None:
            return
        box = QMessageBox(
            QMessageBox.Icon.Warning,
            "Project open elsewhere",
            f"{self.project.path.name} is already open in another window ({holder.describe()}). "
            "Saving here may overwrite that window's work.",
            QMessageBox.StandardButton.Ok,
            self,
        )
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.open()
        self.lock_warning = box

    def _on_session_events(self, events: list[SessionEvent]) -> None:
        """One batch of changes: each part of the view is refreshed at most once."""
        kinds = {event.kind: event for event in events}
        if "reset" in kinds:
            index, self.current_index = max(self.current_index, 0), -1
            self.image_panel.set_project(self.project)
            self._refresh_categories()
            self.refresh_history()
            self.tools.sync_settings()
            self.go_to(min(index, len(self.project.images) - 1))
            return
        record = self.current_record()
        if "categories" in kinds:
            self._refresh_categories()
        if "annotations" in kinds or "categories" in kinds:
            if record is not None:
                self._refresh_annotations()
            changed = kinds["annotations"].images if "annotations" in kinds else None
            self.image_panel.refresh(changed if "categories" not in kinds else None)
        if "images" in kinds:
            ids = kinds["images"].ids
            if len(self.project.images) != self.image_panel.count():
                self.image_panel.set_project(self.project)
                self.image_panel.set_current(self.current_index)
            else:
                self.image_panel.refresh(ids)
            if record is not None and record.id in ids:
                self._sync_done_action()
        if "proposals" in kinds:
            self._refresh_proposals()
        if "revisit" in kinds and record is not None and record.id not in kinds["revisit"].ids:
            # Undo/redo of an edit made on another image: show that image, not a silent change.
            positions = [
                self.project.image_index(i)
                for i in kinds["revisit"].ids
                if self.project.has_image(i)
            ]
            if positions:
                self.go_to(min(positions))
        if "settings" in kinds:
            self.tools.sync_settings()
        if kinds.keys() & {"history", "dirty", "path"}:
            self.refresh_history()
        for event in events:
            if event.kind == "message":
                self.statusBar().showMessage(event.text, 10000)

    def refresh_history(self) -> None:
        stack = self.stack
        for name, can, text, base in (
            ("undo", stack.can_undo(), stack.undo_text(), "&Undo"),
            ("redo", stack.can_redo(), stack.redo_text(), "&Redo"),
        ):
            self.actions[name].setEnabled(can)
            self.actions[name].setText(f"{base} {text}".strip())
        name = str(self.project.path) if self.project.path else "untitled"
        self.setWindowTitle(f"Annotator — {name}{'*' if self.is_dirty() else ''}")

    def is_dirty(self) -> bool:
        return self.session is not None and self.session.dirty

    # ================================================================== edits
    def edit(self, action, *args) -> bool:
        """Run a session edit; a refused one (unknown id, empty mask) says why in the status bar."""
        return self.edit_result(action, *args) is not None

    def edit_result(self, action, *args):
        """`edit`, returning what the session's method returned (None when refused)."""
        try:
            result = action(*args)
        except (KeyError, ValueError) as exc:
            self.statusBar().showMessage(f"Not done: {exc}", 6000)
            return None
        return True if result is None else result

    def select_annotations(self, ids) -> None:
        """Make `ids` (annotations of the current image) the selection, in the panel and on
        the canvas."""
        self.annotation_panel.select_ids(ids)
        self._on_selection(tuple(self.annotation_panel.selected_ids()))

    def accept_mask(self) -> None:
        """Enter: the polygon being drawn, else the shown candidate, becomes an annotation of
        the current category, and the selected one."""
        if self.tools.enter():
            return
        record = self.current_record()
        mask = self.session.prompts.accepted_mask()
        if record is None or mask is None:
            if self.session.prompts.pending:
                self.statusBar().showMessage("The mask is still being computed.", 3000)
            return
        if self.current_category_id is None:
            self.statusBar().showMessage("Add a label first (Ctrl+L).", 4000)
            return
        if not mask.any():
            self.statusBar().showMessage("The mask is empty: add a point on the object.", 4000)
            return
        annotation = self.edit_result(
            self.session.add_mask, record.id, self.current_category_id, mask
        )
        if annotation is not None:
            self.clear_prompts()
            self.select_annotations((annotation.id,))

    def delete_selected(self) -> None:
        ids = self.annotation_panel.selected_ids()
        if ids:
            self.delete_annotations(ids)

    def delete_annotations(self, ids) -> None:
        self.edit(self.session.delete_annotations, ids)

    def relabel(self, ids, category_id: int) -> None:
        self.edit(self.session.relabel, ids, category_id)

    def toggle_done(self) -> None:
        record = self.current_record()
        if record is not None:
            self.edit(self.session.set_done, record.id, not record.done)
        self._sync_done_action()

    def _sync_done_action(self) -> None:
        record = self.current_record()
        self.actions["toggle_done"].setChecked(bool(record and record.done))

    def add_category(self) -> None:
        name, ok = QInputDialog.getText(self, "Add label", "Name of the new label:")
        if ok and name.strip():
            self.add_category_named(name.strip())

    def add_category_named(self, name: str, color=None):
        try:
            category = self.session.add_category(name, color)
        except (KeyError, ValueError) as exc:
            self.statusBar().showMessage(f"Not done: {exc}", 6000)
            return None
        self._set_category(category.id)
        return category

    def rename_category(self, category_id: int) -> None:
        category = self.project.category(category_id)
        name, ok = QInputDialog.getText(self, "Rename label", "New name:", text=category.name)
        if ok and name.strip() and name.strip() != category.name:
            self.edit(self.session.rename_category, category_id, name.strip())

    def recolor_category(self, category_id: int) -> None:
        category = self.project.category(category_id)
        color = QColorDialog.getColor(QColor(*category.color), self, "Label colour")
        if color.isValid():
            rgb = (color.red(), color.green(), color.blue())
            self.edit(self.session.recolor_category, category_id, rgb)

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
        self.edit(self.session.delete_category, category_id)

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
        self.tools.refresh_color()

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
        self.current_index = index
        record = self.project.images[index]
        path = str(self.project.image_path(record))
        near = self.project.images[max(0, index - MASK_NEIGHBOURS) : index + MASK_NEIGHBOURS + 1]
        self.session.looking_at(r.id for r in near)
        self.session.prompts.clear()
        self._stop_segment_everything()  # the controller drops the old image's result too
        self.display = None
        self.annotation_panel.reset_view_state()
        self._selected = ()
        self.canvas.message = f"Loading {record.file_name}…"
        self.canvas.set_image(None)
        self.image_panel.set_current(index)
        self._display_token = self.loader.load(path, self.project.annotations_of(record.id))
        self.controller.set_image(path)
        self.controller.set_prefetch(self._prefetch_paths())
        self._refresh_annotations()
        self._sync_done_action()
        self._refresh_candidate_label()

    def _prefetch_paths(self) -> list[str]:
        images = self.project.images
        ahead = images[self.current_index + 1 : self.current_index + 1 + PREFETCH_AHEAD]
        return [str(self.project.image_path(r)) for r in ahead]

    def _on_image_loaded(self, token: int, _path: str, display: DisplayImage, masks) -> None:
        if token != self._display_token:
            return  # the user already moved on
        self.session.masks_decoded(self.current_record().id, masks)
        self.display = display
        self.canvas.set_image(display)
        self._refresh_overlay()
        self._refresh_proposals()
        self._refresh_live()

    def _on_image_failed(self, token: int, _path: str, message: str) -> None:
        if token == self._display_token:
            self.show_no_image(message)

    def show_no_image(self, message: str) -> None:
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
        self.session.prompts.add_point(x, y, positive)
        self._prompts_changed(decode=True)

    def set_box(self, x0: float, y0: float, x1: float, y1: float) -> None:
        if self.display is None:
            return
        self.session.prompts.set_box(x0, y0, x1, y1)
        self._prompts_changed(decode=True)

    def remove_last_prompt(self) -> None:
        if self.tools.backspace():
            return
        if self.session.prompts.undo_last():
            self._prompts_changed(decode=self.session.prompts.pending)

    def clear_prompts(self) -> None:
        self.session.prompts.clear()
        self._prompts_changed(decode=False)

    def cycle_candidate(self) -> None:
        if self.session.prompts.cycle_candidate():
            self._refresh_live()

    def escape(self) -> None:
        """Esc: cancel what the tool draws or leave the tool, else cancel a running Segment
        Everything, else discard its proposals, else clear the prompts, else the selection."""
        if self.tools.escape():
            return
        if self.controller.auto_running:
            self.cancel_segment_everything()
        elif self.proposals is not None and len(self.proposals):
            self.discard_proposals()
        elif not self.session.prompts.is_empty():
            self.clear_prompts()
        else:
            self.select_annotations(())

    # ================================================================== segment everything
    def segment_everything(self) -> bool:
        return self.everything.start()

    def cancel_segment_everything(self) -> None:
        self.everything.cancel()

    def _stop_segment_everything(self) -> None:
        self.everything.stop()

    def accept_proposal(self, proposal: CompactProposal) -> bool:
        return self.everything.accept(proposal)

    def accept_all_proposals(self) -> bool:
        return self.everything.accept_all()

    def discard_proposals(self) -> None:
        self.everything.discard()

    def _refresh_proposals(self) -> None:
        self.everything.refresh()

    def edit_auto_mask_settings(self):
        return self.everything.edit_settings()

    def _prompts_changed(self, decode: bool) -> None:
        prompts = self.session.prompts
        if decode and self.finder.refuses_clicks():  # SAM 3: a sentence, not a stuck prompt
            prompts.clear()
        self.canvas.set_prompts(prompts.points, prompts.labels, prompts.box)
        if decode and not prompts.is_empty():
            self.controller.request_decode(prompts.revision, prompts.to_prompts())
        self._refresh_live()

    def _on_prediction(self, revision: int, prediction) -> None:
        if self.session.prompts.set_prediction(revision, prediction):
            self._refresh_live()

    def _refresh_live(self) -> None:
        if self.display is None:
            return
        self.canvas.set_live_mask(
            self.session.prompts.mask(), self._category_color(self.current_category_id)
        )
        self._refresh_candidate_label()

    def _refresh_candidate_label(self) -> None:
        prompts = self.session.prompts
        count, score = prompts.candidate_count, prompts.score()
        if score is None:
            text = "computing…" if prompts.pending else ""
        elif count > 1:
            text = f"Candidate {prompts.candidate + 1}/{count} · score {score:.3f} (Tab)"
        else:
            text = f"Score {score:.3f}"
        if prompts.pending and score is not None:
            text += " · updating…"
        self.candidate_label.setText(text)

    # ================================================================== annotations on canvas
    def _refresh_annotations(self) -> None:
        record = self.current_record()
        annotations = self.project.annotations_of(record.id) if record else []
        self.annotation_panel.set_annotations(annotations, self.project.categories)
        self._refresh_overlay()

    def refresh_overlay(self) -> None:
        """Redraw the current image's masks (a propagation landed a frame)."""
        self._refresh_overlay()

    def _refresh_overlay(self) -> None:
        record = self.current_record()
        if record is None or self.display is None:
            return
        hidden = self.annotation_panel.hidden
        selected = set(self._selected)
        items = []
        for annotation, mask in self.session.masks_of(record.id):
            if annotation.id in hidden:
                continue
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
        # What a running propagation has made for this frame, before it is the project's.
        propagation = getattr(self, "propagation", None)  # None while the window is built
        previews = propagation.preview_masks(record.id) if propagation is not None else []
        for n, (category_id, mask) in enumerate(previews):
            if mask.shape == (self.display.height, self.display.width):
                items.append(OverlayItem(-1 - n, mask, self._category_color(category_id)))
        items.sort(key=lambda item: item.selected)  # selected ones on top
        self.canvas.set_overlay_items(items)
        self.tools.refresh_color()  # the tools' preview follows the selected mask

    def _on_selection(self, ids) -> None:
        self._selected = tuple(ids)
        self._refresh_overlay()

    # ================================================================== engine state
    def start_inference(self) -> None:
        """Start the worker thread and load the engine (after the window is visible)."""
        self.controller.start(self.engine_spec)

    def _on_cursor(self, x: float, y: float) -> None:
        if math.isnan(x):
            self.cursor_label.setText("")
        else:
            self.cursor_label.setText(f"x {round(x)}  y {round(y)}")
        if self.proposals is not None and len(self.proposals):
            inside = not math.isnan(x) and self.canvas.overlays_visible
            hovered = self.proposals.smallest_at(x, y) if inside else None
            self.canvas.set_hovered(hovered, self._category_color(self.current_category_id))

    def _on_worker_crash(self, exc_info) -> None:
        """A worker job failed unexpectedly (not a UserError): the one crash path reports it."""
        sys.excepthook(*exc_info)

    def _on_opacity(self, value: int) -> None:
        self.canvas.set_opacity(value / 100)
        self.settings.opacity = value / 100

    def autosave(self) -> None:
        """Fold the journal into the autosave now (the crash hook calls this; every edit is in
        the journal already)."""
        if self.session is not None:
            self.session.fold()

    def reload_current_image(self) -> None:
        index, self.current_index = max(self.current_index, 0), -1
        self.go_to(index)

    # ================================================================== model
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
        self.session.prompts.clear()
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
        choice = True if self._closing else self.files.maybe_save()
        if not choice:
            event.ignore()
            return
        self._closing = True
        self.settings.geometry = self.saveGeometry()
        self.settings.window_state = self.saveState()
        self.settings.sync()
        self.hide()  # the window goes away at once, even while an embedding finishes
        self.controller.shutdown()
        self.loader.shutdown()
        self.files.shutdown()
        self._recovery_timer.stop()
        if self.session is not None:
            self.session.remove_listener(self._on_session_events)
            self.session.close(discard=choice == "discard")
        event.accept()
