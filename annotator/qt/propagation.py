"""The timeline of a sequence and Propagate (Ctrl+Shift+P), a `WorkerTask` on the one worker.

The timeline (a dock under the canvas) is a scrubber over the project's images in order, with the
propagation's direction, how many frames (0: to the end), Propagate, Cancel and its progress.
Propagate plans on the GUI thread (`annotator.core.sequence.plan_propagation`: the selected
annotation's track when one is selected on this frame, else every track of the frame), the worker
runs SAM 2.x's video predictor sharing the loaded image engine's weights and streams each frame's
masks back (compact RLE); the person keeps clicking meanwhile (the worker answers clicks between
frames). Each frame's masks are drawn as they land (`preview_masks`, over the frame shown, in the
track's colour) before they are the project's: when it ends, or on Cancel with what has landed,
the results become ONE undo step.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import (
    QComboBox,
    QDockWidget,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSlider,
    QSpinBox,
    QWidget,
)

from annotator.errors import UserError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PropagatedFrame:
    """One frame's result, as it crosses from the worker: track -> compressed RLE or None."""

    position: int
    rles: dict


class PropagationTask:
    """Runs on the worker: the video predictor over the plan's frames, one frame a step."""

    def __init__(self, plan, paths: list[str]) -> None:
        self.plan = plan
        self.paths = paths

    def run(self, context):
        from annotator.core.sequence import run_propagation
        from annotator.engines.sam2_video import VideoPropagator

        propagator = VideoPropagator.from_image_engine(context.engine)
        total = len(self.plan.reach())
        context.progress(0, total)
        done = 0
        for position, rles in run_propagation(
            propagator, self.plan, self.paths, load=context.load_image, cancelled=context.cancelled
        ):
            done += 1
            context.progress(done, total)
            yield PropagatedFrame(position, rles)
        return done


class Propagation(QObject):
    """The timeline dock and the Propagate action of one window."""

    def __init__(self, window) -> None:
        super().__init__(window)
        self.window = window
        self.serial: int | None = None
        self.plan = None
        self.project = None  # the project the running propagation works on
        self.results: dict[int, dict] = {}
        self._build()
        window.actions["propagate"].triggered.connect(self.start)
        controller = window.controller
        controller.task_partial.connect(self._on_partial)
        controller.task_progress.connect(self._on_progress)
        controller.task_finished.connect(self._on_finished)
        window.image_panel.tree.currentItemChanged.connect(lambda *_: self.sync())
        self.sync()

    # ------------------------------------------------------------------------------ widgets
    def _build(self) -> None:
        bar = QWidget()
        row = QHBoxLayout(bar)
        row.setContentsMargins(6, 2, 6, 2)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setObjectName("timelineSlider")
        self.slider.setMinimum(0)
        self.slider.valueChanged.connect(self._on_slider)
        self.frame_label = QLabel("")
        self.frame_label.setMinimumWidth(110)
        self.direction = QComboBox()
        self.direction.addItems(["forward", "backward", "both"])
        self.direction.setToolTip("Which way to propagate from this frame")
        self.count = QSpinBox()
        self.count.setRange(0, 1_000_000)
        self.count.setSpecialValueText("all frames")
        self.count.setPrefix("next ")
        self.count.setToolTip("How many frames to propagate past this one (all: to the end)")
        self.propagate_button = QPushButton("Propagate")
        self.propagate_button.setToolTip("Propagate this frame's masks (Ctrl+Shift+P)")
        self.propagate_button.clicked.connect(self.start)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setFixedWidth(160)
        self.progress.hide()
        for widget in (self.slider, self.frame_label, self.direction, self.count):
            row.addWidget(widget, 1 if widget is self.slider else 0)
        for widget in (self.propagate_button, self.cancel_button, self.progress):
            row.addWidget(widget)
        self.dock = QDockWidget("Timeline", self.window)
        self.dock.setObjectName("timelineDock")
        self.dock.setTitleBarWidget(QWidget(self.dock))
        self.dock.setFeatures(QDockWidget.DockWidgetFeature.NoDockWidgetFeatures)
        self.dock.setWidget(bar)
        self.window.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.dock)

    def sync(self) -> None:
        """Follow the window's project and current frame (a new project, navigation)."""
        project = self.window.project
        count = len(project.images) if project is not None else 0
        self.slider.blockSignals(True)
        self.slider.setMaximum(max(count - 1, 0))
        self.slider.setValue(max(self.window.current_index, 0))
        self.slider.blockSignals(False)
        index = self.window.current_index
        self.frame_label.setText(f"Frame {index} / {count - 1}" if count else "No frames")
        self.dock.setVisible(count > 1)

    def _on_slider(self, value: int) -> None:
        self.window.go_to(value)

    # ------------------------------------------------------------------------------ running
    @property
    def running(self) -> bool:
        return self.serial is not None

    def _replaced(self) -> bool:
        """Our task was cancelled by something else (another task, a model change): its results
        will never come; what has landed is still ours to keep."""
        controller = self.window.controller
        return self.running and (
            not controller.task_running or controller._task_serial != self.serial
        )

    def start(self) -> bool:
        """Plan from the current frame and start the task; False (said why) when it cannot."""
        from annotator.core import sequence

        window = self.window
        if self._replaced():
            self._apply(f"Propagation was stopped; {len(self.results)} frame(s) kept")
        if self.running:
            window.statusBar().showMessage("Propagation is running: Cancel it first.", 5000)
            return False
        record = window.current_record()
        if record is None:
            return False
        project = window.project
        selected = [
            project.annotation(i)
            for i in window.annotation_panel.selected_ids()
            if project.has_annotation(i) and project.annotation(i).image_id == record.id
        ]
        tracks = {a.track for a in selected if a.track is not None} or None
        try:
            plan = sequence.plan_propagation(
                project,
                record.id,
                self.direction.currentText(),
                max_frames=self.count.value() or None,
                tracks=tracks,
            )
        except UserError as exc:
            window.statusBar().showMessage(str(exc), 8000)
            return False
        self.plan, self.project = plan, project
        self.results = {}
        self.serial = window.controller.run_task(
            PropagationTask(plan, sequence.frame_paths(project, plan))
        )
        self.progress.setRange(0, len(plan.reach()))
        self.progress.setValue(0)
        self.progress.show()
        self.cancel_button.setEnabled(True)
        self.propagate_button.setEnabled(False)
        what = f"track {', '.join(map(str, sorted(tracks)))}" if tracks else "every track"
        window.statusBar().showMessage(f"Propagating {what} from frame {window.current_index}…")
        return True

    def cancel(self) -> None:
        """Stop; the frames that have landed are kept (one undo step)."""
        if not self.running:
            return
        if not self._replaced():  # never another feature's task
            self.window.controller.cancel_task()
        self._apply(f"Propagation cancelled after {len(self.results)} frame(s)")

    def preview_masks(self, image_id: int) -> list[tuple[int, object]]:
        """(category id, HxW bool mask) of what the running propagation has made for the image
        `image_id` so far (not yet in the project), for the window to draw; [] otherwise."""
        plan = self.plan
        if not self.running or plan is None or self.window.project is not self.project:
            return []
        try:
            position = plan.image_ids.index(image_id)
        except ValueError:
            return []
        rles = self.results.get(position)
        if not rles:
            return []
        from annotator.core.masks import decode_rle

        return [
            (plan.categories.get(track, 0), decode_rle(rle).astype(bool))
            for track, rle in sorted(rles.items())
            if rle is not None
        ]

    def _on_partial(self, value) -> None:
        if self.running and isinstance(value, PropagatedFrame):
            self.results[value.position] = value.rles
            self.frame_label.setText(
                f"Frame {self.window.current_index} · {len(self.results)} done"
            )
            record = self.window.current_record()
            plan = self.plan
            if (
                record is not None
                and plan is not None
                and value.position < len(plan.image_ids)
                and plan.image_ids[value.position] == record.id
            ):
                self.window.refresh_overlay()  # the frame shown just landed: draw it now

    def _on_progress(self, done: int, total: int) -> None:
        if self.running:
            self.progress.setRange(0, max(total, 1))
            self.progress.setValue(done)

    def _on_finished(self, finished) -> None:
        if not self.running or finished.serial != self.serial:
            return
        if finished.message:
            kept = f"; {len(self.results)} frame(s) kept" if self.results else ""
            self._apply(f"Propagation stopped: {finished.message}{kept}")
            return
        self._apply(f"Propagated {len(self.results)} frame(s) in {finished.seconds:.1f} s")

    def _apply(self, message: str) -> None:
        from annotator.core.sequence import propagation_command

        window, plan, results = self.window, self.plan, self.results
        self.serial, self.plan, self.results = None, None, {}
        self.progress.hide()
        self.cancel_button.setEnabled(False)
        self.propagate_button.setEnabled(True)
        if window.project is not self.project:  # another project was opened meanwhile
            results = {}
        command = propagation_command(window.project, plan, results) if results else None
        if command is not None:
            window.session.push(command)
        window.statusBar().showMessage(message, 10000)
        self.sync()
