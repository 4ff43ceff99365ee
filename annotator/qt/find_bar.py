"""Find with SAM 3 in the window: a phrase box (Ctrl+F), an example box (Shift+drag while it is
open), Find in all images (Ctrl+Shift+F).

Find on the current image is a worker task (`FindOnImage`): the worker finds every instance
scoring above `FLOOR` and the window offers those above the slider's threshold as proposals
through the session, so the outlines, click-to-accept, Accept All (one undo step) and Discard are
segment everything's (annotator.qt.segment_everything). Moving the slider offers the instances
again at the new threshold, less those accepted. The phrase becomes the current label (added if
no label has that name), so what is accepted is filed under it.

Find in all images is a task over the project's images not yet searched for the phrase with this
model (`FindInImages`); each image's instances above the threshold come back as they are found
and become annotations with their scores, one undo step per image, recorded as searched, exactly
as `annotator find` writes them (annotator.core.found).

While the phrase box has focus its Enter (find) and Esc (close the bar) are its own, not the
window's accept and clear.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QEvent, QObject, Qt, Signal
from PySide6.QtGui import QKeySequence
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSlider,
    QToolBar,
    QWidget,
)

from annotator.core.found import Search, found_command, is_searched
from annotator.errors import UserError
from annotator.qt.overlay import outline_pixels

FLOOR = 0.05  # the lowest score the slider reaches: instances below it are not kept
DEFAULT_THRESHOLD = 0.5  # as `annotator find`
NEEDS_SAM3 = (
    "Find needs a SAM 3 model (a checkpoint folder whose config.json says model_type "
    '"sam3"): choose one with Ctrl+M.'
)


# ----------------------------------------------------------------------------- worker tasks
@dataclass(frozen=True)
class FoundOnImage:
    """What a Find on one image found: every instance above FLOOR, best first."""

    key: str
    search: Search
    instances: tuple


@dataclass(frozen=True)
class FoundInImage:
    """One image of a Find in all images: its instances above the run's threshold."""

    image_id: int
    search: Search
    instances: tuple


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _require_find(engine) -> None:
    if not getattr(engine, "supports_find", False):
        raise UserError(NEEDS_SAM3)


class FindOnImage:
    """Find `search` on the image at `key` (the worker's embedding of it)."""

    def __init__(self, key: str, search: Search) -> None:
        self.key, self.search = key, search

    def run(self, context):
        _require_find(context.engine)
        embedding, _ = context.embedding_for(self.key)
        yield None  # a click waiting meanwhile is answered before the decoder runs
        found = context.engine.find(
            embedding, text=self.search.phrase or None, box=self.search.box, threshold=FLOOR
        )
        height, width = embedding.original_size
        for index, instance in enumerate(found):  # outlines made here, not on the GUI thread
            if instance.mask is not None:
                outline_pixels(instance.mask, width, height)
            if index % 20 == 19:
                yield None
        return FoundOnImage(self.key, self.search, tuple(found))


class FindInImages:
    """Find `search` in each (image_id, path) in turn, at `threshold`; yields FoundInImage."""

    def __init__(self, images: list[tuple[int, str]], search: Search, threshold: float) -> None:
        self.images, self.search, self.threshold = list(images), search, float(threshold)

    def run(self, context):
        _require_find(context.engine)
        total = len(self.images)
        context.progress(0, total)
        for done, (image_id, path) in enumerate(self.images, start=1):
            if context.cancelled():
                return done - 1
            try:
                embedding, _ = context.embedding_for(path)
            except UserError:  # an unreadable image: the others are still searched
                context.progress(done, total)
                yield None
                continue
            found = context.engine.find(
                embedding, text=self.search.phrase or None, threshold=self.threshold
            )
            context.progress(done, total)
            yield FoundInImage(image_id, self.search, tuple(found))
        return total


# ----------------------------------------------------------------------------- widgets
class PhraseEdit(QLineEdit):
    """The phrase box: Enter finds, Esc closes the bar, and neither reaches the window's
    shortcuts (accept, clear) while it has focus."""

    submitted = Signal()
    dismissed = Signal()

    _OWN_KEYS = (Qt.Key.Key_Return, Qt.Key.Key_Enter, Qt.Key.Key_Escape)

    def event(self, event) -> bool:
        if event.type() == QEvent.Type.ShortcutOverride:
            if event.key() in self._OWN_KEYS:
                event.accept()  # delivered to keyPressEvent instead of triggering a shortcut
                return True
            if event.matches(QKeySequence.StandardKey.Undo) or event.matches(
                QKeySequence.StandardKey.Redo
            ):
                event.ignore()  # the window's undo (of an Accept All, say), not the text's
                return True
        return super().event(event)

    def keyPressEvent(self, event) -> None:
        if event.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter):
            self.submitted.emit()
        elif event.key() == Qt.Key.Key_Escape:
            self.dismissed.emit()
        else:
            super().keyPressEvent(event)


class FindBar(QWidget):
    """Phrase, Find, Find in all images, the threshold slider, progress and Cancel, Close."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.phrase = PhraseEdit(self)
        self.phrase.setPlaceholderText("Find: a phrase such as “car” (Enter), or Shift+drag a box")
        self.phrase.setClearButtonEnabled(True)
        self.phrase.setMinimumWidth(280)
        self.find_button = QPushButton("Find", self)
        self.find_all_button = QPushButton("Find in All Images", self)
        self.threshold = QSlider(Qt.Orientation.Horizontal, self)
        self.threshold.setRange(round(FLOOR * 100), 99)
        self.threshold.setValue(round(DEFAULT_THRESHOLD * 100))
        self.threshold.setFixedWidth(140)
        self.threshold.setToolTip("Instance score threshold")
        self.threshold_label = QLabel(self)
        self.progress = QProgressBar(self)
        self.progress.setMaximumWidth(160)
        self.cancel_button = QPushButton("Cancel", self)
        self.close_button = QPushButton("Close", self)
        for button in (self.find_button, self.find_all_button, self.cancel_button):
            button.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.threshold.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        for widget in (self.phrase, self.find_button, self.find_all_button):
            layout.addWidget(widget)
        layout.addWidget(QLabel("Threshold", self))
        for widget in (self.threshold, self.threshold_label, self.progress, self.cancel_button):
            layout.addWidget(widget)
        layout.addStretch(1)
        layout.addWidget(self.close_button)
        self.threshold.valueChanged.connect(self._show_threshold)
        self._show_threshold()
        self.set_running(False)

    @property
    def threshold_value(self) -> float:
        return self.threshold.value() / 100

    def _show_threshold(self) -> None:
        self.threshold_label.setText(f"{self.threshold_value:.2f}")

    def set_running(self, running: bool) -> None:
        self.progress.setVisible(running)
        self.cancel_button.setVisible(running)
        if running:
            self.progress.setRange(0, 0)  # busy until the first step is reported


# ----------------------------------------------------------------------------- controller
class FindController(QObject):
    """Drives the Find bar: tasks on the worker, proposals into the session, results into the
    project. One per window."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.bar = FindBar(window)
        self.toolbar = QToolBar("Find", window)
        self.toolbar.setObjectName("findToolbar")
        self.toolbar.setMovable(False)
        self.toolbar.addWidget(self.bar)
        window.addToolBarBreak(Qt.ToolBarArea.TopToolBarArea)
        window.addToolBar(Qt.ToolBarArea.TopToolBarArea, self.toolbar)
        self.toolbar.hide()
        self._serial: int | None = None  # the task this controller started
        self._kind = ""  # "image" or "all"
        self._found: list = []  # CompactProposals above FLOOR of the last Find on this image
        self._offered = None  # the ProposalSet made from them
        self._offered_at = FLOOR  # the threshold it was made at
        self._all_count = 0
        bar = self.bar
        bar.phrase.submitted.connect(self.find)
        bar.phrase.dismissed.connect(self.close)
        bar.find_button.clicked.connect(self.find)
        bar.find_all_button.clicked.connect(self.find_in_all)
        bar.cancel_button.clicked.connect(self.cancel)
        bar.close_button.clicked.connect(self.close)
        bar.threshold.valueChanged.connect(self._reoffer)
        window.canvas.example_box.connect(self.find_like)
        c = window.controller
        c.task_partial.connect(self._on_partial)
        c.task_progress.connect(self._on_progress)
        c.task_finished.connect(self._on_finished)
        c.engine_ready.connect(self._on_engine_changed)
        c.engine_failed.connect(self._on_engine_changed)

    # ------------------------------------------------------------------ opening
    @property
    def is_open(self) -> bool:
        return self.toolbar.isVisible()

    def open(self) -> None:
        """Ctrl+F: show the bar with the phrase selected, ready to type."""
        self.toolbar.show()
        self.window.canvas.find_mode = True
        self.bar.phrase.setFocus(Qt.FocusReason.ShortcutFocusReason)
        self.bar.phrase.selectAll()

    def close(self) -> None:
        """Esc in the phrase box, or Close: hide the bar; proposals on offer stay (Esc on the
        image discards them, as segment everything's)."""
        self.toolbar.hide()
        self.window.canvas.find_mode = False
        self.window.canvas.setFocus(Qt.FocusReason.OtherFocusReason)

    def refuses_clicks(self) -> bool:
        """Whether the loaded model takes no clicks (SAM 3): then says what it takes instead."""
        info = self.window.controller.engine_info
        if info is None or info.clicks:
            return False
        from annotator.engines.sam3 import NO_CLICKS

        self._status(NO_CLICKS, 8000)
        return True

    # ------------------------------------------------------------------ requests
    def _status(self, text: str, ms: int = 8000) -> None:
        self.window.statusBar().showMessage(text, ms)

    def _ready(self) -> bool:
        w = self.window
        info = w.controller.engine_info
        if w.current_record() is None or w.controller.key is None:
            self._status("Open an image first.", 4000)
            return False
        if info is None:
            self._status("The model is not loaded yet; try again when it is.", 6000)
            return False
        if not info.find:
            self._status(NEEDS_SAM3, 10000)
            return False
        return True

    def _phrase(self, allow_empty: bool = False) -> str | None:
        from annotator.engines.sam3 import check_phrase

        try:
            return check_phrase(self.bar.phrase.text(), allow_empty=allow_empty)
        except UserError as exc:
            self._status(str(exc), 6000)
            return None

    def find(self) -> bool:
        """Enter / Find: every instance of the phrase in the current image, as proposals."""
        if not self._ready():
            return False
        phrase = self._phrase()
        return phrase is not None and self._start_on_image(Search(phrase))

    def find_like(self, x0: float, y0: float, x1: float, y1: float) -> bool:
        """Shift+drag in Find mode: every object like the boxed one (and the phrase, if any)."""
        if not self._ready():
            return False
        phrase = self._phrase(allow_empty=True)
        if phrase is None:
            return False
        return self._start_on_image(Search(phrase, box=(x0, y0, x1, y1)))

    def _start_on_image(self, search: Search) -> bool:
        w = self.window
        self._use_category(search)
        self._kind = "image"
        self._serial = w.controller.run_task(FindOnImage(w.controller.key, search))
        self.bar.set_running(True)
        self._status(f"Finding “{search.phrase or 'objects like the box'}”…", 0)
        return True

    def find_in_all(self) -> bool:
        """Ctrl+Shift+F: the phrase in every image not yet searched for it with this model;
        instances above the threshold become annotations (one undo step per image)."""
        w = self.window
        if not self._ready():
            return False
        if not self.is_open:
            self.open()
        phrase = self._phrase()
        if phrase is None:
            return False
        search = Search(phrase)
        model = w.controller.engine_info.fingerprint
        images = [
            (r.id, str(w.project.image_path(r)))
            for r in w.project.images
            if not is_searched(r, model, search)
        ]
        if not images:
            self._status(f"Every image was searched for “{phrase}” with this model already.")
            return False
        self._use_category(search)
        self._kind, self._all_count = "all", 0
        task = FindInImages(images, search, self.bar.threshold_value)
        self._serial = w.controller.run_task(task)
        self.bar.set_running(True)
        self._status(f"Finding “{phrase}” in {len(images)} images…", 0)
        return True

    def cancel(self) -> None:
        w = self.window
        if self._serial is not None and w.controller.task_serial == self._serial:
            w.controller.cancel_task()
            self._status("Find cancelled.", 4000)
        self._serial = None
        self.bar.set_running(False)

    def _use_category(self, search: Search) -> None:
        """The phrase becomes the current label (added if no label is called so)."""
        w = self.window
        if not search.phrase:
            return  # an example box alone: the current label stays
        for category in w.project.categories:
            if category.name == search.phrase:
                w._set_category(category.id)
                return
        w.add_category_named(search.phrase)

    def _on_engine_changed(self, *_) -> None:
        if self._serial is not None and not self._mine():  # a model change cancelled it
            self._serial = None
            self.bar.set_running(False)

    # ------------------------------------------------------------------ results
    def _mine(self) -> bool:
        return self._serial is not None and self.window.controller.task_serial == self._serial

    def _on_progress(self, done: int, total: int) -> None:
        if self._mine():
            self.bar.progress.setRange(0, max(1, total))
            self.bar.progress.setValue(done)

    def _on_partial(self, value) -> None:
        if not self._mine() or not isinstance(value, FoundInImage):
            return
        w = self.window
        if not w.project.has_image(value.image_id):
            return  # removed meanwhile
        record = w.project.image(value.image_id)
        sizes = {i.mask.image_size for i in value.instances if i.mask is not None}
        if sizes - {(record.height, record.width)}:  # the file changed since the project
            self._status(f"{record.file_name} is not the size the project says; skipped.")
            return
        category = self._category_id(value.search)
        model = w.controller.engine_info.fingerprint if w.controller.engine_info else ""
        if category is None or not model:
            return
        command, added = found_command(
            w.project, record, model, [(value.search, list(value.instances))],
            {value.search.category: category},
        )  # fmt: skip
        w.session.push(command)
        self._all_count += added

    def _category_id(self, search: Search) -> int | None:
        for category in self.window.project.categories:
            if category.name == search.category:
                return category.id
        category = self.window.add_category_named(search.category)
        return category.id if category is not None else None

    def _on_finished(self, result) -> None:
        if self._serial is None or result.serial != self._serial:
            return  # another component's task
        self._serial = None
        self.bar.set_running(False)
        if result.message:
            self._status(f"Find failed: {result.message}", 10000)
            return
        if result.cancelled:
            return
        if self._kind == "all":
            self._status(
                f"Found {_count(self._all_count, 'instance')} in {_count(result.result, 'image')} "
                f"in {result.seconds:.1f} s (Ctrl+Z undoes the last image).",
                10000,
            )
            return
        self._offer_found(result.result, result.seconds)

    def _offer_found(self, found: FoundOnImage, seconds: float) -> None:
        w = self.window
        record = w.current_record()
        if record is None or found.key != w.controller.key:
            return  # the person moved on: navigation closed the proposals anyway
        self._found = [i.mask for i in found.instances if i.mask is not None]
        self._offered = None
        shown = self._reoffer()
        threshold = self.bar.threshold_value
        if shown:
            self._status(
                f"{_count(shown, 'instance')} above {threshold:.2f} in {seconds:.1f} s: click one "
                "to accept it, Ctrl+Shift+E accepts all, Esc discards.",
                10000,
            )
        elif self._found:
            self._status(
                f"No instance scores above {threshold:.2f}; {len(self._found)} score between "
                f"{FLOOR:.2f} and {threshold:.2f}: lower the threshold to see them.",
                10000,
            )
        else:
            self._status("Nothing found.", 6000)

    def _reoffer(self, *_) -> int:
        """Offer the found instances above the threshold (less those accepted meanwhile) as the
        session's proposals; returns how many."""
        w = self.window
        session = w.session
        if self._offered is not None:
            if session.proposals is not self._offered:
                self._found, self._offered = [], None  # discarded, replaced or navigated away
                return 0
            still = {id(p) for p in self._offered.items}
            self._found = [  # those offered and no longer on offer were accepted: they go
                p for p in self._found if id(p) in still or p.predicted_iou <= self._offered_at
            ]
        if not self._found or w.current_record() is None:
            return 0
        threshold = self.bar.threshold_value
        offered = [p for p in self._found if p.predicted_iou > threshold]
        session.set_proposals(w.current_record().id, w.controller.key, offered)
        self._offered, self._offered_at = session.proposals, threshold
        return len(offered)
