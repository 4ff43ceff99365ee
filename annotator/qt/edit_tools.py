"""Editing masks by hand in the window: the tools (S, B, E, G), selection on the canvas, SAM and
polygon add/cut on the selection, clean-up from the Edit menu.

The canvas owns each tool's gesture (a stroke, a polygon) and reports it in image coordinates;
this controller turns it into exactly one session edit (`AnnotationSession.edit_masks` and
friends: one undo step, one journal record, exact pixels from `annotator.core.mask_edit`). Mask
edits are small numpy work on the GUI thread, never worker jobs.

Keys: while a tool has something to finish or cancel, its Enter, Backspace and Esc win over the
window's (the window asks `enter`, `backspace`, `escape` first); Esc in a tool with nothing
drawn goes back to the SAM click tool.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QObject
from PySide6.QtGui import QActionGroup
from PySide6.QtWidgets import QInputDialog

from annotator.core.mask_edit import polygon_mask, stroke_mask
from annotator.qt.canvas import Tool

TOOL_ACTIONS = {
    Tool.SAM: "tool_sam",
    Tool.BRUSH: "tool_brush",
    Tool.ERASER: "tool_eraser",
    Tool.POLYGON: "tool_polygon",
}
TOOL_HINTS = {
    Tool.SAM: "SAM click tool: click or drag to prompt; Enter accepts.",
    Tool.BRUSH: "Brush: drag to paint into the selected annotation (none selected: a new one); "
    "[ and ] change the radius.",
    Tool.ERASER: "Eraser: drag to erase from the selected annotation; [ and ] change the radius.",
    Tool.POLYGON: "Polygon: click vertices; Enter or a click on the first vertex makes a new "
    "annotation, Shift+Enter adds to the selected one, Ctrl+Enter cuts from it; Esc cancels.",
}
DEFAULT_ISLAND_PIXELS = 50
DEFAULT_SMOOTH_RADIUS = 2


class EditTools(QObject):
    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.canvas = window.canvas
        self.island_pixels = DEFAULT_ISLAND_PIXELS
        self.smooth_radius = DEFAULT_SMOOTH_RADIUS
        actions = window.actions
        group = QActionGroup(self)
        group.setExclusive(True)
        for tool, name in TOOL_ACTIONS.items():
            group.addAction(actions[name])
            actions[name].triggered.connect(lambda _=False, tool=tool: self.set_tool(tool))
        actions["tool_sam"].setChecked(True)
        actions["brush_smaller"].triggered.connect(lambda: self.step_radius(-1))
        actions["brush_larger"].triggered.connect(lambda: self.step_radius(+1))
        actions["add_to_selected"].triggered.connect(lambda: self.combine("add"))
        actions["cut_from_selected"].triggered.connect(lambda: self.combine("cut"))
        actions["fill_holes"].triggered.connect(lambda: self.clean_up("fill_holes"))
        actions["remove_islands"].triggered.connect(lambda: self.clean_up("remove_islands"))
        actions["smooth_masks"].triggered.connect(lambda: self.clean_up("smooth"))
        actions["merge_annotations"].triggered.connect(self.merge)
        actions["masks_do_not_overlap"].triggered.connect(
            lambda on: window.edit(window.session.set_masks_do_not_overlap, on)
        )
        actions["split_annotation"].triggered.connect(self.split)
        self.canvas.select_at.connect(self.select_at)
        self.canvas.stroke_finished.connect(self.on_stroke)
        self.canvas.polygon_closed.connect(lambda vertices: self.finish_polygon(vertices, "new"))

    # ================================================================== state
    @property
    def tool(self) -> Tool:
        return self.canvas.tool

    def _say(self, text: str, ms: int = 5000) -> None:
        self.window.statusBar().showMessage(text, ms)

    def set_tool(self, tool: Tool) -> None:
        self.canvas.set_tool(tool)
        self.window.actions[TOOL_ACTIONS[tool]].setChecked(True)
        self.refresh_color()
        hint = TOOL_HINTS[tool]
        if tool in (Tool.BRUSH, Tool.ERASER):
            hint += f" Radius {self.canvas.brush_radius:g} px."
        self._say(hint, 8000)

    def step_radius(self, direction: int) -> None:
        r = self.canvas.brush_radius
        if direction > 0:
            r = max(r + 1, round(r * 1.25))
        else:
            r = min(r - 1, round(r / 1.25))
        self.canvas.set_brush_radius(max(1, r))
        self._say(f"Brush radius {self.canvas.brush_radius:g} px.", 3000)

    def refresh_color(self) -> None:
        """The preview colour: the selected annotation's label, else the current label."""
        window = self.window
        selected = self._single_selected(quiet=True)
        category = (
            window.project.annotation(selected).category_id
            if selected is not None
            else window.current_category_id
        )
        self.canvas.set_tool_color(window._category_color(category))
        target = None
        if selected is not None:
            try:
                target = window.session.masks.mask(window.project.annotation(selected))
            except ValueError:  # a corrupt RLE: the preview shows the whole stroke
                pass
        self.canvas.set_erase_target(target)

    def _single_selected(self, quiet: bool = False) -> int | None:
        ids = [i for i in self.window._selected if self.window.project.has_annotation(i)]
        if len(ids) == 1:
            return ids[0]
        if not quiet:
            self._say(
                "Select one annotation first (Ctrl+click it)."
                if not ids
                else "Select only one annotation for this (Ctrl+click it).",
                5000,
            )
        return None

    def _shape(self) -> tuple[int, int] | None:
        display = self.window.display
        return None if display is None else (display.height, display.width)

    def sync_settings(self) -> None:
        """The project settings' actions show the project's values (after undo too)."""
        self.window.actions["masks_do_not_overlap"].setChecked(
            self.window.session.masks_do_not_overlap
        )

    # ================================================================== keys (theirs first)
    def enter(self) -> bool:
        """Enter: close the polygon into a new annotation. False: not the tool's key now."""
        if self.tool is Tool.POLYGON and self.canvas.polygon:
            self.finish_polygon(self.canvas.take_polygon(), "new")
            return True
        return False

    def backspace(self) -> bool:
        return self.tool is Tool.POLYGON and self.canvas.remove_last_vertex()

    def escape(self) -> bool:
        """Esc: cancel what the tool is drawing, else leave the tool for the SAM click tool."""
        if self.canvas.cancel_gesture():
            return True
        if self.tool is not Tool.SAM:
            self.set_tool(Tool.SAM)
            return True
        return False

    # ================================================================== selection
    def select_at(self, x: float, y: float, additive: bool) -> None:
        """Ctrl+click: select the top-most shown annotation whose mask has the pixel under
        (x, y); Ctrl+Shift+click adds it. Ctrl+click on nothing clears the selection."""
        window = self.window
        record = window.current_record()
        shape = self._shape()
        if record is None or shape is None:
            return
        row, col = int(np.floor(y + 0.5)), int(np.floor(x + 0.5))
        hit = None
        if 0 <= row < shape[0] and 0 <= col < shape[1]:
            hidden = window.annotation_panel.hidden
            for annotation, mask in reversed(window.session.masks_of(record.id)):
                if annotation.id not in hidden and mask.shape == shape and mask[row, col]:
                    hit = annotation.id
                    break
        if hit is None:
            if not additive:
                window.select_annotations(())
            return
        ids = tuple(window._selected) + (hit,) if additive else (hit,)
        window.select_annotations(tuple(dict.fromkeys(ids)))

    # ================================================================== brush and eraser
    def on_stroke(self, points: np.ndarray, erase: bool) -> None:
        """One stroke: exactly the pixels within the radius of its path, one undo step."""
        window = self.window
        shape, record = self._shape(), window.current_record()
        if shape is None or record is None:
            return
        stroke = stroke_mask(shape, points, self.canvas.brush_radius)
        if not stroke.any():
            return
        ids = [i for i in window._selected if window.project.has_annotation(i)]
        if erase:
            target = self._single_selected()
            if target is not None:
                self._report(
                    window.edit_result(window.session.cut_from_mask, target, stroke, "Erase")
                )
            return
        if not ids:
            self._new_annotation(stroke, "Paint a new annotation")
            return
        target = self._single_selected()
        if target is not None:
            self._report(window.edit_result(window.session.add_to_mask, target, stroke, "Paint"))

    def _new_annotation(self, mask: np.ndarray, text: str) -> None:
        window = self.window
        if window.current_category_id is None:
            self._say("Add a label first (Ctrl+L).", 4000)
            return
        annotation = window.edit_result(
            window.session.add_mask,
            window.current_record().id,
            window.current_category_id,
            mask,
            text,
        )
        if annotation is not None:
            window.select_annotations((annotation.id,))

    def _report(self, result) -> None:
        if result is not None and result.deleted:
            self._say(
                f"The edit left annotation {', '.join(map(str, result.deleted))} empty: it is "
                "deleted (Ctrl+Z brings it back).",
                8000,
            )

    # ================================================================== polygon and SAM add/cut
    def finish_polygon(self, vertices, mode: str) -> None:
        """A closed polygon: the pixels whose centres lie inside or on it become a new
        annotation ("new"), or are added to ("add") or cut from ("cut") the selected one."""
        shape = self._shape()
        if vertices is None or shape is None:
            return
        mask = polygon_mask(shape, vertices)
        if mode == "new":
            if mask.any():
                self._new_annotation(mask, "Add polygon")
            else:
                self._say("The polygon covers no pixel centre.", 4000)
            return
        self._combine_mask(mask, mode, "polygon")

    def combine(self, mode: str) -> None:
        """Shift+Enter ("add") / Ctrl+Enter ("cut"): the polygon being drawn, else SAM's live
        mask, added to or cut from the selected annotation."""
        if self.tool is Tool.POLYGON and self.canvas.polygon:
            if self._single_selected() is None:
                return
            vertices = self.canvas.take_polygon()
            if vertices is None:
                self._say("A polygon needs at least 3 vertices.", 4000)
                return
            self.finish_polygon(vertices, mode)
            return
        window = self.window
        mask = window.session.prompts.accepted_mask()
        if mask is None:
            if window.session.prompts.pending:
                self._say("The mask is still being computed.", 3000)
            else:
                self._say("Click the object first: there is no SAM mask to add or cut.", 4000)
            return
        if self._combine_mask(mask, mode, "SAM mask"):
            window.clear_prompts()

    def _combine_mask(self, mask: np.ndarray, mode: str, what: str) -> bool:
        window = self.window
        target = self._single_selected()
        if target is None:
            return False
        if mode == "add":
            edit, text = window.session.add_to_mask, f"Add {what}"
        else:
            edit, text = window.session.cut_from_mask, f"Cut {what}"
        result = window.edit_result(edit, target, mask, text)
        if result is None:
            return False
        if result.changed == 0:
            self._say(f"{text}: no pixel changed.", 4000)
        self._report(result)
        return True

    # ================================================================== merge and split
    def merge(self) -> None:
        """Ctrl+G: the selected annotations become one (the lowest id keeps id and label)."""
        window = self.window
        ids = [i for i in window._selected if window.project.has_annotation(i)]
        if len(ids) < 2:
            self._say("Select two or more annotations to merge (Ctrl+Shift+click adds).", 5000)
            return
        kept = window.edit_result(window.session.merge, ids)
        if kept is not None:
            window.select_annotations((kept.id,))
            self._say(f"Merged {len(ids)} annotations into {kept.id}.", 5000)

    def split(self) -> None:
        """Ctrl+Shift+G: the selected annotation becomes one per 8-connected part."""
        window = self.window
        target = self._single_selected()
        if target is None:
            return
        parts = window.edit_result(window.session.split, target)
        if parts is not None:
            window.select_annotations(tuple(a.id for a in parts))
            self._say(f"Split annotation {target} into {len(parts)} parts.", 5000)

    # ================================================================== clean-up
    def clean_up(self, operation: str, amount: int | None = None) -> None:
        """Edit menu: fill holes, remove islands, smooth the selected annotations (one undo
        step), then say how many pixels changed."""
        window = self.window
        ids = [i for i in window._selected if window.project.has_annotation(i)]
        if not ids:
            self._say("Select the annotations to clean up first (Ctrl+click them).", 5000)
            return
        if operation == "remove_islands" and amount is None:
            amount, ok = QInputDialog.getInt(
                window,
                "Remove small islands",
                "Remove the parts (8-connected) smaller than, in pixels:",
                self.island_pixels,
                2,
                1_000_000_000,
            )
            if not ok:
                return
            self.island_pixels = amount
        elif operation == "smooth" and amount is None:
            amount, ok = QInputDialog.getInt(
                window,
                "Smooth",
                "Opening then closing with a disc of radius, in pixels:",
                self.smooth_radius,
                1,
                100,
            )
            if not ok:
                return
            self.smooth_radius = amount
        result = window.edit_result(window.session.clean_up, ids, operation, amount or 0)
        if result is None:
            return
        names = {
            "fill_holes": "Fill holes",
            "remove_islands": f"Remove islands under {amount} px",
            "smooth": f"Smooth (radius {amount})",
        }
        if result.changed:
            text = f"{names[operation]}: {result.changed:,} pixel(s) changed."
        else:
            text = f"{names[operation]}: nothing to change."
        if result.deleted:
            text += f" Emptied and deleted: {', '.join(map(str, result.deleted))} (Ctrl+Z)."
        self._say(text, 8000)
