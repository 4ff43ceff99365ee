"""Every command of the window as a QAction, declared once; the F1 sheet is built from them.

`ACTIONS` is the single table of names, labels, shortcuts and sections. `build_actions` makes
the QActions; the window connects their `triggered` signals. `ShortcutSheet` lists the QActions
the window actually has (their current shortcuts), so it cannot drift from the key bindings.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QTextBrowser, QVBoxLayout, QWidget

SHEET_TEXT = "sheet_text"  # QAction property: the label without the undo text appended
SECTION = "section"


@dataclass(frozen=True)
class ActionSpec:
    name: str
    text: str
    shortcuts: tuple[str, ...]
    section: str
    tip: str = ""
    checkable: bool = False


ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("open", "&Open…", ("Ctrl+O",), "File", "Open a project file, a folder or an image"),
    ActionSpec(
        "open_folder", "Open &Folder…", ("Ctrl+Shift+O",), "File", "Open a folder of images"
    ),
    ActionSpec("save", "&Save", ("Ctrl+S",), "File", "Save the project"),
    ActionSpec("save_as", "Save &As…", ("Ctrl+Shift+S",), "File", "Save the project elsewhere"),
    ActionSpec(
        "export",
        "&Export…",
        ("Ctrl+Shift+X",),
        "File",
        "Export as COCO, polygons, PNG, cutouts, YOLO",
    ),
    ActionSpec(
        "relink_images", "&Relink Images…", (), "File", "Find moved images again by file name"
    ),
    ActionSpec("choose_model", "Choose &Model…", ("Ctrl+M",), "File", "Load a SAM checkpoint"),
    ActionSpec("quit", "&Quit", ("Ctrl+Q",), "File"),
    ActionSpec("undo", "&Undo", ("Ctrl+Z",), "Edit"),
    ActionSpec("redo", "&Redo", ("Ctrl+Shift+Z", "Ctrl+Y"), "Edit"),
    ActionSpec(
        "accept", "&Accept Mask", ("Return", "Enter"), "Prompts", "Save the mask as an annotation"
    ),
    ActionSpec(
        "cycle_candidate", "Next &Candidate", ("Tab",), "Prompts", "Show SAM's next candidate mask"
    ),
    ActionSpec(
        "remove_prompt",
        "Remove Last &Prompt",
        ("Backspace",),
        "Prompts",
        "Restore the mask before it",
    ),
    ActionSpec(
        "clear_prompts",
        "C&lear Prompts / Proposals",
        ("Esc",),
        "Prompts",
        "Clear the prompts; cancel Segment Everything while it runs, or discard its proposals",
    ),
    ActionSpec(
        "segment_everything",
        "Segment &Everything",
        ("Ctrl+E",),
        "Prompts",
        "Propose masks for the whole image (click one to accept it)",
    ),
    ActionSpec(
        "accept_all_proposals",
        "Accept All P&roposals",
        ("Ctrl+Shift+E",),
        "Prompts",
        "Accept every remaining proposal into the current label (one undo step)",
    ),
    ActionSpec(
        "discard_proposals",
        "Discard Pr&oposals",
        (),
        "Prompts",
        "Drop the remaining proposals (Esc)",
    ),
    ActionSpec(
        "auto_mask_settings",
        "Segment Everything Se&ttings…",
        (),
        "Prompts",
        "Points per side, thresholds, crop layers, minimum region area",
    ),
    ActionSpec(
        "find",
        "&Find…",
        ("Ctrl+F",),
        "Prompts",
        "Find every instance of a phrase with SAM 3 (Shift+drag: objects like the box)",
    ),
    ActionSpec(
        "find_all",
        "Find in &All Images",
        ("Ctrl+Shift+F",),
        "Prompts",
        "Find the phrase in every image; instances become annotations with their scores",
    ),
    ActionSpec(
        "propagate",
        "&Propagate Through Frames",
        ("Ctrl+Shift+P",),
        "Prompts",
        "Propagate this frame's masks (the selected track, else all) with SAM 2.x (timeline)",
    ),
    ActionSpec(
        "tool_sam", "&SAM Click Tool", ("S",), "Tools", "Click and drag to prompt SAM", True
    ),
    ActionSpec(
        "tool_brush",
        "&Brush",
        ("B",),
        "Tools",
        "Paint into the selected annotation (none selected: a new one of the current label)",
        True,
    ),
    ActionSpec(
        "tool_eraser", "&Eraser", ("E",), "Tools", "Erase from the selected annotation", True
    ),
    ActionSpec(
        "tool_polygon",
        "Poly&gon",
        ("G",),
        "Tools",
        "Click vertices; Enter: a new annotation, Shift+Enter: add, Ctrl+Enter: cut",
        True,
    ),
    ActionSpec("brush_smaller", "Smaller Brush", ("[",), "Tools", "Brush radius down a step"),
    ActionSpec("brush_larger", "Larger Brush", ("]",), "Tools", "Brush radius up a step"),
    ActionSpec(
        "add_to_selected",
        "Add to Selected Annotation",
        ("Shift+Return", "Shift+Enter"),
        "Edit masks",
        "Add the SAM mask (or the polygon being drawn) to the selected annotation",
    ),
    ActionSpec(
        "cut_from_selected",
        "Cut from Selected Annotation",
        ("Ctrl+Return", "Ctrl+Enter"),
        "Edit masks",
        "Cut the SAM mask (or the polygon being drawn) from the selected annotation",
    ),
    ActionSpec(
        "fill_holes",
        "Fill &Holes",
        (),
        "Edit masks",
        "Fill the holes of the selected annotations (background not reaching the border)",
    ),
    ActionSpec(
        "remove_islands",
        "Remove Small &Islands…",
        (),
        "Edit masks",
        "Remove the parts of the selected annotations smaller than N pixels",
    ),
    ActionSpec(
        "smooth_masks",
        "S&mooth…",
        (),
        "Edit masks",
        "Opening then closing of the selected annotations with a disc of radius r",
    ),
    ActionSpec(
        "merge_annotations",
        "Mer&ge Annotations",
        ("Ctrl+G",),
        "Edit masks",
        "The selected annotations become one (the lowest id keeps its id and label)",
    ),
    ActionSpec(
        "split_annotation",
        "S&plit into Parts",
        ("Ctrl+Shift+G",),
        "Edit masks",
        "The selected annotation becomes one annotation per 8-connected part",
    ),
    ActionSpec(
        "masks_do_not_overlap",
        "Masks Do &Not Overlap",
        (),
        "Edit masks",
        "Project setting: a new or edited mask loses the pixels other annotations hold",
        True,
    ),
    ActionSpec("delete_annotations", "&Delete Annotation", ("Delete",), "Annotations"),
    ActionSpec("toggle_done", "Mark Image &Done", ("Ctrl+D",), "Annotations", "", True),
    ActionSpec("add_category", "Add &Label…", ("Ctrl+L",), "Labels"),
    ActionSpec("next_image", "&Next Image", ("N", "PgDown"), "Navigate"),
    ActionSpec("previous_image", "&Previous Image", ("P", "PgUp"), "Navigate"),
    ActionSpec("fit", "&Fit to Window", ("F",), "View"),
    ActionSpec("zoom_in", "Zoom &In", ("Ctrl++", "Ctrl+="), "View"),
    ActionSpec("zoom_out", "Zoom &Out", ("Ctrl+-",), "View"),
    ActionSpec("hide_overlays", "&Hide Overlays", ("H",), "View", "", True),
    ActionSpec("shortcuts", "&Keyboard Shortcuts", ("F1",), "Help"),
    ActionSpec("about", "&About Annotator", (), "Help"),
) + tuple(
    ActionSpec(f"category_{n}", f"Label {n}", (str(n),), "Labels", f"Use label {n}")
    for n in range(1, 10)
)


def build_actions(parent: QWidget) -> dict[str, QAction]:
    """QActions for `ACTIONS`, added to `parent` so their shortcuts work anywhere in the window."""
    actions: dict[str, QAction] = {}
    for spec in ACTIONS:
        action = QAction(spec.text, parent)
        action.setObjectName(spec.name)
        action.setShortcuts([QKeySequence(s) for s in spec.shortcuts])
        action.setShortcutContext(Qt.ShortcutContext.WindowShortcut)
        action.setCheckable(spec.checkable)
        label = spec.text.replace("&", "").rstrip("…")
        action.setProperty(SHEET_TEXT, label)
        action.setIconText(label)  # toolbar text stays short when the undo text is appended
        action.setProperty(SECTION, spec.section)
        if spec.tip:
            action.setStatusTip(spec.tip)
            action.setToolTip(f"{spec.tip} ({spec.shortcuts[0]})" if spec.shortcuts else spec.tip)
        parent.addAction(action)
        actions[spec.name] = action
    return actions


def sheet_rows(actions: dict[str, QAction]) -> list[tuple[str, str, str]]:
    """(section, label, keys) of every action with a shortcut, in declaration order, grouped
    by section (in the order the sections first appear)."""
    rows = []
    for action in actions.values():
        keys = [s.toString(QKeySequence.SequenceFormat.NativeText) for s in action.shortcuts()]
        if keys:
            rows.append(
                (action.property(SECTION) or "", action.property(SHEET_TEXT), " or ".join(keys))
            )
    first = {}
    for section, _, _ in rows:
        first.setdefault(section, len(first))
    return sorted(rows, key=lambda row: first[row[0]])  # stable: declaration order within


def sheet_html(actions: dict[str, QAction], gestures=()) -> str:
    rows = sheet_rows(actions)
    html = ["<style>td{padding:2px 14px 2px 0} h3{margin:10px 0 4px 0}</style>"]
    section = None
    for row_section, label, keys in rows:
        if row_section != section:
            if section is not None:
                html.append("</table>")
            html.append(f"<h3>{row_section}</h3><table>")
            section = row_section
        html.append(f"<tr><td><b>{keys}</b></td><td>{label}</td></tr>")
    html.append("</table>")
    if gestures:
        html.append("<h3>Mouse</h3><table>")
        html += [f"<tr><td><b>{g}</b></td><td>{what}</td></tr>" for g, what in gestures]
        html.append("</table>")
    return "".join(html)


class ShortcutSheet(QDialog):
    """F1: every shortcut of the window's actions, grouped by section."""

    def __init__(self, actions: dict[str, QAction], gestures=(), parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Keyboard Shortcuts")
        self.resize(520, 640)
        self.browser = QTextBrowser(self)
        self.browser.setHtml(sheet_html(actions, gestures))
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close, self)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(self.browser)
        layout.addWidget(buttons)
