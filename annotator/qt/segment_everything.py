"""Segment everything in the window (Ctrl+E): run it on the worker, show its progress, outline
the proposals, accept one (a click), all (Ctrl+Shift+E) or none (Esc).

The proposals themselves live in the session (`AnnotationSession.set_proposals`, one undo step
per acceptance, one for "accept all"); this controller asks the inference controller for a run,
drives the status-bar box (progress, Cancel) and the proposal bar, and tells the canvas what to
outline. Navigation cancels a run and drops its result (`stop`).
"""

from __future__ import annotations

from PySide6.QtCore import QObject, Qt

from annotator.core.proposals import CompactProposal
from annotator.qt.inference import AutoMasked, needs_sam_message
from annotator.qt.proposals import AutoMaskSettingsDialog


class SegmentEverything(QObject):
    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        window.controller.auto_progress.connect(self._on_progress)
        window.controller.auto_finished.connect(self._on_finished)

    @property
    def _proposals(self):
        return self.window.proposals

    def start(self) -> bool:
        """Propose masks for the whole current image on the worker. Returns whether a run
        started (not while one runs: Esc cancels it first)."""
        w, controller = self.window, self.window.controller
        status = w.statusBar()
        if w.current_record() is None or controller.key is None:
            status.showMessage("Open an image first.", 4000)
            return False
        info = controller.engine_info
        if info is None:
            status.showMessage("The model is not loaded yet; try again when it is.", 6000)
            return False
        if not info.automatic:
            status.showMessage(needs_sam_message(info.name), 10000)
            return False
        if controller.auto_running:
            status.showMessage("Segment everything is already running (Esc cancels it).", 4000)
            return False
        self.close()
        if not controller.request_auto_masks(w.settings.auto_mask_settings):
            return False
        w.auto_progress.setRange(0, 0)  # busy until the first step is reported
        w.auto_box.show()
        return True

    def cancel(self) -> None:
        w = self.window
        if w.controller.auto_running:
            w.controller.cancel_auto()
            w.statusBar().showMessage("Segment everything cancelled.", 4000)
        w.auto_box.hide()

    def stop(self) -> None:
        """The image or project changes: cancel a run and drop the proposals."""
        self.window.controller.cancel_auto()
        self.window.auto_box.hide()
        self.close()

    def _on_progress(self, done: int, total: int) -> None:
        self.window.auto_progress.setRange(0, max(1, total))
        self.window.auto_progress.setValue(done)

    def _on_finished(self, result: AutoMasked) -> None:
        """A run of the current image ended (the controller drops every other)."""
        w = self.window
        w.auto_box.hide()
        if result.message:
            w.statusBar().showMessage(f"Segment everything failed: {result.message}", 10000)
            return
        if result.cancelled:
            return
        self.close()
        if not result.proposals:
            w.statusBar().showMessage(
                "Segment everything found no masks above the thresholds "
                "(Prompts ▸ Segment Everything Settings…).",
                8000,
            )
            return
        w.session.set_proposals(w.current_record().id, result.key, list(result.proposals))
        w.statusBar().showMessage(
            f"{len(result.proposals)} proposals in {result.seconds:.1f} s.", 6000
        )

    def accept(self, proposal: CompactProposal) -> bool:
        """Add `proposal` as an annotation of the current label (one undo step)."""
        w = self.window
        if not self._can_accept():
            return False
        return w.edit(w.session.accept_proposal, proposal, w.current_category_id)

    def accept_all(self) -> bool:
        """Every remaining proposal becomes an annotation of the current label, best first, as
        ONE undo step (undo puts them all back on offer) and one redraw."""
        w = self.window
        if not self._can_accept() or not len(self._proposals):
            return False
        return w.edit(w.session.accept_all_proposals, w.current_category_id)

    def discard(self) -> None:
        """Drop the remaining proposals (accepted ones stay annotations)."""
        if self._proposals is not None and len(self._proposals):
            self.window.statusBar().showMessage(
                f"Discarded {len(self._proposals)} proposals.", 4000
            )
        self.close()

    def _can_accept(self) -> bool:
        """Proposals of the current image are on offer and a label is chosen."""
        w = self.window
        record = w.current_record()
        if self._proposals is None or record is None:
            return False
        if w.session.proposals_image_id != record.id:
            return False  # never: navigation closes the set; kept as a guard against misfiling
        if w.current_category_id is None:
            w.statusBar().showMessage("Add a label first (Ctrl+L).", 4000)
            return False
        return True

    def close(self) -> None:
        if self.window.session is not None:
            self.window.session.close_proposals()
        self.refresh()

    def refresh(self) -> None:
        """Outline the proposals on offer and show their count with Accept All / Discard."""
        w = self.window
        items = self._proposals.items if self._proposals is not None else []
        w.canvas.set_proposals(items)
        if w.canvas.hovered is not None and w.canvas.hovered not in items:
            w.canvas.set_hovered(None)
        w.proposal_bar.setVisible(bool(items))
        w.proposal_label.setText(
            f"{len(items)} proposal{'s' if len(items) != 1 else ''}: click one to accept it"
        )
        w.actions["accept_all_proposals"].setEnabled(bool(items))
        w.actions["discard_proposals"].setEnabled(bool(items))

    def edit_settings(self) -> AutoMaskSettingsDialog:
        """Prompts ▸ Segment Everything Settings…: a dialog; OK stores the values in Settings."""
        w = self.window
        dialog = AutoMaskSettingsDialog(w.settings.auto_mask_settings, w)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.accepted.connect(lambda: setattr(w.settings, "auto_mask_settings", dialog.values()))
        dialog.open()
        return dialog
