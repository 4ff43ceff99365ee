"""The window's Propagate (Ctrl+Shift+P): streams on the one worker, lands as one undo step,
re-propagates a corrected frame's track keeping the person's frames, Cancel keeps what landed.
Uses the shrunk SAM 2.1 of the equivalence tests as the window's engine (its image half for
clicks, the video predictor built from the same weights for propagation)."""

from __future__ import annotations

import contextlib
import shutil
import threading

import numpy as np
import pytest
from PySide6.QtCore import Qt

from tests.qt.conftest import wait_ready

pytest.importorskip("sam2")
pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def sam2_engine(sam2_video_checkpoint):
    """The image engine the window would run, of the stock-built model."""
    from annotator.engines import families
    from annotator.engines.sam2 import Sam2Engine

    path, model = sam2_video_checkpoint
    info = families.detect_family(model.state_dict(), path.name)
    return Sam2Engine(model, info, device="cpu", fingerprint="sam2-video-test")


@pytest.fixture
def frames_project(tmp_path, sequence_frames):
    from annotator.core.project import Project

    folder = tmp_path / "frames"
    folder.mkdir()
    for path in sorted(sequence_frames.glob("*.jpg"))[:5]:
        shutil.copy(path, folder / path.name)
    return Project.from_folder(folder)


def _seed(window) -> int:
    mask = np.zeros((72, 96), bool)
    mask[18:48, 8:36] = True  # the red shape on frame 0
    annotation = window.session.add_mask(window.project.images[0].id, 1, mask)
    return annotation.id


def _track_frames(project, track=1):
    return {
        i: [
            (a.id, a.propagated, a.rle["counts"])
            for a in project.annotations_of(r.id)
            if a.track == track
        ]
        for i, r in enumerate(project.images)
    }


def test_propagate_then_correct_a_frame_and_repropagate(
    qtbot, make_window, sam2_engine, frames_project
):
    window = make_window(sam2_engine, frames_project)
    wait_ready(qtbot, window, timeout=60000)
    assert window.propagation.dock.isVisible()
    seed = _seed(window)
    undo_depth = window.stack.index()
    qtbot.keyClick(
        window.canvas,
        Qt.Key.Key_P,
        Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier,
    )
    assert window.propagation.running
    qtbot.waitUntil(lambda: not window.propagation.running, timeout=300000)
    project = window.project
    assert project.annotation(seed).track == 1 and not project.annotation(seed).propagated
    first = _track_frames(project)
    assert all(p for frame in range(1, 5) for _, p, _ in first[frame])
    assert window.stack.index() == undo_depth + 1  # one undo step
    window.session.undo()
    assert project.annotation(seed).track is None
    assert all(not first_frame for first_frame in list(_track_frames(project).values())[1:])
    window.session.redo()
    assert _track_frames(project) == first

    # the person corrects frame 2 (a hand-drawn mask) and re-propagates that track forward
    window.go_to(2)
    wait_ready(qtbot, window, timeout=60000)
    corrected = np.zeros((72, 96), bool)
    corrected[18:48, 14:42] = True
    on_two = [a for a in project.annotations_of(project.images[2].id) if a.track == 1]
    if on_two:
        window.session.edit_mask(on_two[0].id, corrected)
        target = on_two[0].id
    else:  # random weights lost the object there: the person draws it
        target = window.session.add_mask(project.images[2].id, 1, corrected).id
        window.session.push(_track_command(project, target, 1))
    window.select_annotations((target,))
    assert window.propagation.start()
    qtbot.waitUntil(lambda: not window.propagation.running, timeout=300000)
    second = _track_frames(project)
    assert second[0] == first[0] and second[1] == first[1]  # before the correction: untouched
    assert len(second[2]) == 1 and second[2][0][1] is False  # the person's frame kept
    np.testing.assert_array_equal(project.annotation(second[2][0][0]).mask(), corrected)
    assert all(p for frame in (3, 4) for _, p, _ in second[frame])


def _track_command(project, annotation_id, track):
    from dataclasses import replace

    from annotator.core.commands import ReplaceAnnotation

    return ReplaceAnnotation(replace(project.annotation(annotation_id), track=track))


@contextlib.contextmanager
def _held_at_third_frame(worker):
    """Hold the worker's propagation at its third frame until the block ends; yields the event
    set when it got there."""
    gate, reading_third = threading.Event(), threading.Event()
    load = worker._load_image

    def held_load(path):
        if path.endswith("00002.jpg") and not gate.is_set():
            reading_third.set()
            gate.wait(timeout=120)
        return load(path)

    worker._load_image = held_load
    try:
        yield reading_third
    finally:
        gate.set()


def test_cancel_keeps_the_frames_that_landed_as_one_step(
    qtbot, make_window, sam2_engine, frames_project
):
    window = make_window(sam2_engine, frames_project)
    wait_ready(qtbot, window, timeout=60000)
    _seed(window)
    with _held_at_third_frame(window.controller.worker) as reading_third:
        assert window.propagation.start()
        qtbot.waitUntil(reading_third.is_set, timeout=300000)
        qtbot.waitUntil(lambda: len(window.propagation.results) == 2, timeout=60000)
        depth = window.stack.index()
        window.propagation.cancel_button.click()
    assert not window.propagation.running
    assert window.stack.index() == depth + 1
    tracked = _track_frames(window.project)
    assert tracked[2] == [] and tracked[3] == [] and tracked[4] == []
    assert "cancelled after 2 frame(s)" in window.statusBar().currentMessage()


class _Waiting:
    """Another feature's task: steps until it is cancelled."""

    def __init__(self) -> None:
        self.started = threading.Event()

    def run(self, context):
        self.started.set()
        while not context.cancelled():
            yield None
            context._job.cancel.wait(0.05)


def test_another_task_replacing_propagation_is_left_alone_by_cancel(
    qtbot, make_window, sam2_engine, frames_project
):
    window = make_window(sam2_engine, frames_project)
    wait_ready(qtbot, window, timeout=60000)
    _seed(window)
    assert window.propagation.start()
    other = _Waiting()
    serial = window.controller.run_task(other)  # e.g. a search of every image: ours is cancelled
    qtbot.waitUntil(other.started.is_set, timeout=300000)
    window.propagation.cancel_button.click()
    assert not window.propagation.running
    assert window.controller.task_running and window.controller._task_serial == serial
    window.controller.cancel_task()
    assert window.propagation.start()  # propagation can start again
    window.propagation.cancel()


def test_each_frame_is_drawn_as_it_lands(qtbot, make_window, sam2_engine, frames_project):
    from annotator.core.masks import decode_rle

    window = make_window(sam2_engine, frames_project)
    wait_ready(qtbot, window, timeout=60000)
    _seed(window)

    def previews():
        return [item for item in window.canvas._items if item.key < 0]

    with _held_at_third_frame(window.controller.worker):
        assert window.propagation.start()
        qtbot.waitUntil(lambda: len(window.propagation.results) == 2, timeout=300000)
        landed = window.propagation.results[1]
        window.go_to(1)  # a landed frame, not yet the project's: drawn from the stream
        # (the worker is held inside the task: the pixels come, the embedding waits)
        qtbot.waitUntil(lambda: window.display is not None, timeout=60000)
        expected = [decode_rle(rle).astype(bool) for rle in landed.values() if rle is not None]
        assert expected  # the tiny model keeps the object on frame 1 (else nothing to check)
        shown = previews()
        assert (
            len(shown) == len(expected)
            and window.project.annotations_of(window.project.images[1].id) == []
        )
        for item, mask in zip(shown, expected, strict=True):
            np.testing.assert_array_equal(item.mask, mask)
        window.go_to(3)  # not reached yet: nothing to draw
        qtbot.waitUntil(lambda: window.display is not None, timeout=60000)
        assert previews() == []
    qtbot.waitUntil(lambda: not window.propagation.running, timeout=300000)
    assert previews() == []  # landed as annotations: drawn as the project's own
