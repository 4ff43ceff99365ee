"""The window end to end: real mouse and key events, the real worker thread, the tiny SAM."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor

from annotator.engines.base import Prompts
from tests.qt.conftest import RecordingEngine, click_image, key, wait_ready

pytestmark = pytest.mark.timeout(120)


def _wait_prediction(qtbot, window):
    qtbot.waitUntil(
        lambda: not window.session.prompts.pending and window.session.prompts.mask() is not None
    )


def _embedding(engine, window):
    from annotator.core.images import load_image

    record = window.current_record()
    return engine.encode(load_image(window.project.image_path(record)))


def test_click_then_enter_saves_the_engines_mask(qtbot, make_window, tiny_engine):
    engine = RecordingEngine(tiny_engine)
    window = make_window(engine)
    wait_ready(qtbot, window)
    click_image(qtbot, window, 80, 60)
    _wait_prediction(qtbot, window)
    ((x, y),) = window.session.prompts.points
    assert abs(x - 80) < 1 and abs(y - 60) < 1  # the canvas mapped the click to that pixel
    key(qtbot, window, Qt.Key.Key_Return)
    annotations = window.project.annotations_of(window.current_record().id)
    assert len(annotations) == 1
    expected = tiny_engine.decode(
        _embedding(tiny_engine, window),
        Prompts(np.array([[x, y]], np.float32), np.array([1], np.int32), multimask=True),
    )
    best = int(np.argmax(expected.scores))
    np.testing.assert_array_equal(annotations[0].mask(), expected.masks[best])
    assert annotations[0].category_id == window.project.categories[0].id
    assert window.session.prompts.is_empty()  # accepting starts a new object
    assert window.windowTitle().endswith("*")


def test_refinement_feeds_the_previous_logits_back(qtbot, make_window, tiny_engine):
    engine = RecordingEngine(tiny_engine)
    window = make_window(engine)
    wait_ready(qtbot, window)
    click_image(qtbot, window, 80, 60)
    _wait_prediction(qtbot, window)
    first = window.session.prompts.prediction
    chosen = window.session.prompts.candidate
    click_image(qtbot, window, 20, 20, Qt.MouseButton.RightButton)
    _wait_prediction(qtbot, window)
    second_request = engine.decoded_prompts[-1]
    assert second_request.multimask is False
    np.testing.assert_array_equal(second_request.mask_input[0], first.low_res_logits[chosen])
    np.testing.assert_array_equal(second_request.labels, [1, 0])
    # What the window shows is exactly the engine's answer to that request.
    direct = tiny_engine.decode(_embedding(tiny_engine, window), second_request)
    np.testing.assert_array_equal(window.session.prompts.mask(), direct.masks[0])
    key(qtbot, window, Qt.Key.Key_Return)
    (annotation,) = window.project.annotations_of(window.current_record().id)
    np.testing.assert_array_equal(annotation.mask(), direct.masks[0])


def test_tab_cycles_the_three_candidates_with_scores(qtbot, make_window, tiny_engine):
    window = make_window(RecordingEngine(tiny_engine))
    wait_ready(qtbot, window)
    click_image(qtbot, window, 50, 40)
    _wait_prediction(qtbot, window)
    prediction = window.session.prompts.prediction
    assert window.session.prompts.candidate_count == 3
    assert window.session.prompts.candidate == prediction.best_index()
    seen = []
    for _ in range(3):
        seen.append(window.session.prompts.candidate)
        np.testing.assert_array_equal(window.canvas._live_mask, prediction.masks[seen[-1]])
        assert f"{prediction.scores[seen[-1]]:.3f}" in window.candidate_label.text()
        key(qtbot, window, Qt.Key.Key_Tab)
    assert sorted(seen) == [0, 1, 2]
    assert window.session.prompts.candidate == seen[0]  # wrapped around
    key(qtbot, window, Qt.Key.Key_Tab)
    key(qtbot, window, Qt.Key.Key_Return)
    (annotation,) = window.project.annotations_of(window.current_record().id)
    np.testing.assert_array_equal(annotation.mask(), prediction.masks[seen[1]])


def test_backspace_restores_the_mask_before_and_esc_clears(qtbot, make_window, tiny_engine):
    window = make_window(RecordingEngine(tiny_engine))
    wait_ready(qtbot, window)
    click_image(qtbot, window, 80, 60)
    _wait_prediction(qtbot, window)
    key(qtbot, window, Qt.Key.Key_Tab)
    before = window.session.prompts.mask().copy()
    click_image(qtbot, window, 30, 90)
    _wait_prediction(qtbot, window)
    key(qtbot, window, Qt.Key.Key_Backspace)
    assert len(window.session.prompts.points) == 1
    np.testing.assert_array_equal(window.session.prompts.mask(), before)
    np.testing.assert_array_equal(window.canvas._live_mask, before)
    key(qtbot, window, Qt.Key.Key_Escape)
    assert window.session.prompts.is_empty()
    assert window.canvas._live_mask is None


def test_box_drag_decodes_a_box(qtbot, make_window, tiny_engine):
    from PySide6.QtTest import QTest

    engine = RecordingEngine(tiny_engine)
    window = make_window(engine)
    wait_ready(qtbot, window)
    start = window.canvas.image_to_widget(20, 20).toPoint()
    end = window.canvas.image_to_widget(120, 100).toPoint()
    QTest.mousePress(window.canvas, Qt.MouseButton.LeftButton, pos=start)
    QTest.mouseMove(window.canvas, end)
    QTest.mouseRelease(window.canvas, Qt.MouseButton.LeftButton, pos=end)
    _wait_prediction(qtbot, window)
    box = engine.decoded_prompts[-1].box
    np.testing.assert_allclose(box, [20, 20, 120, 100], atol=1)
    assert engine.decoded_prompts[-1].multimask is False


def test_undo_and_redo_restore_exact_state(qtbot, make_window, tiny_engine, monkeypatch):
    window = make_window(RecordingEngine(tiny_engine))
    wait_ready(qtbot, window)
    states = [window.project.state()]

    def accept_at(x, y):
        click_image(qtbot, window, x, y)
        _wait_prediction(qtbot, window)
        key(qtbot, window, Qt.Key.Key_Return)
        states.append(window.project.state())

    accept_at(80, 60)
    key(qtbot, window, Qt.Key.Key_2)  # second label for the next one
    accept_at(20, 20)
    first_id = window.project.annotations_of(window.current_record().id)[0].id
    window.relabel([first_id], window.project.categories[2].id)
    states.append(window.project.state())
    window.add_category_named("tree", (1, 2, 3))
    states.append(window.project.state())
    monkeypatch.setattr(
        "PySide6.QtWidgets.QInputDialog.getText", lambda *a, **k: ("big tree", True)
    )
    window.rename_category(window.project.categories[-1].id)
    states.append(window.project.state())
    monkeypatch.setattr("PySide6.QtWidgets.QColorDialog.getColor", lambda *a, **k: QColor(9, 8, 7))
    window.recolor_category(window.project.categories[-1].id)
    assert window.project.categories[-1].color == (9, 8, 7)
    states.append(window.project.state())
    monkeypatch.setattr(
        "PySide6.QtWidgets.QMessageBox.question",
        lambda *a, **k: __import__("PySide6.QtWidgets").QtWidgets.QMessageBox.StandardButton.Yes,
    )
    window.delete_category(window.project.categories[1].id)  # in use: asks, then deletes both
    states.append(window.project.state())
    window.annotation_panel.select_ids([first_id])
    key(qtbot, window, Qt.Key.Key_Delete)
    states.append(window.project.state())
    assert window.project.total_annotations() == 0
    # every step changed something
    assert all(states[i] != states[i + 1] for i in range(len(states) - 1))

    for expected in reversed(states[:-1]):
        key(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
        assert window.project.state() == expected
    assert not window.windowTitle().endswith("*")  # back at the saved (clean) state
    for index, expected in enumerate(states[1:]):
        modifier = Qt.KeyboardModifier.ControlModifier
        if index % 2:
            key(qtbot, window, Qt.Key.Key_Y, modifier)
        else:
            key(qtbot, window, Qt.Key.Key_Z, modifier | Qt.KeyboardModifier.ShiftModifier)
        assert window.project.state() == expected
    assert window.windowTitle().endswith("*")
    # The canvas and panels follow the project: no annotations left on this image.
    assert window.canvas._items == []
    assert window.annotation_panel.tree.topLevelItemCount() == 0


def test_switching_images_mid_embedding_never_shows_a_stale_mask(qtbot, make_window, tiny_engine):
    engine = RecordingEngine(tiny_engine)
    engine.gate.clear()  # hold the first image's embedding
    window = make_window(engine)
    qtbot.waitUntil(lambda: window.display is not None and engine.encoding.is_set())
    click_image(qtbot, window, 60, 50)  # waits for the embedding
    assert window.session.prompts.pending and not engine.decoded_prompts
    shown = []
    window.controller.prediction_ready.connect(
        lambda revision, p: shown.append(window.current_index)
    )
    key(qtbot, window, Qt.Key.Key_N)  # leave while the embedding is computing
    assert window.current_index == 1 and window.session.prompts.is_empty()
    engine.gate.set()
    wait_ready(qtbot, window)
    qtbot.wait(100)  # let any late signal of the old image arrive (it must be dropped)
    assert engine.decoded_prompts == []  # the held click was for the old image: never decoded
    assert shown == []
    assert window.canvas._live_mask is None and window.session.prompts.mask() is None
    assert (window.display.width, window.display.height) == (140, 100)
    # A decode whose answer lands after navigation is dropped too.
    click_image(qtbot, window, 70, 50)
    key(qtbot, window, Qt.Key.Key_P)
    qtbot.waitUntil(lambda: window.current_index == 0 and window.display is not None)
    wait_ready(qtbot, window)
    qtbot.wait(100)
    assert window.canvas._live_mask is None and window.session.prompts.is_empty()


def test_closing_during_an_embedding_ends_cleanly(qtbot, make_window, tiny_engine):
    engine = RecordingEngine(tiny_engine)
    engine.gate.clear()
    window = make_window(engine)
    qtbot.waitUntil(engine.encoding.is_set)
    opener = threading.Timer(0.3, engine.gate.set)  # the embedding finishes after close starts
    opener.start()
    window.close()
    opener.join()
    assert not window.isVisible()
    assert window.controller.thread.isFinished()


def test_navigation_keys_panels_and_done_mark(qtbot, make_window, tiny_engine):
    window = make_window(RecordingEngine(tiny_engine))
    wait_ready(qtbot, window)
    key(qtbot, window, Qt.Key.Key_PageDown)
    assert window.current_index == 1
    key(qtbot, window, Qt.Key.Key_N)
    key(qtbot, window, Qt.Key.Key_N)  # past the end: stays
    assert window.current_index == 2
    key(qtbot, window, Qt.Key.Key_PageUp)
    key(qtbot, window, Qt.Key.Key_P)
    assert window.current_index == 0
    key(qtbot, window, Qt.Key.Key_D, Qt.KeyboardModifier.ControlModifier)
    assert window.project.images[0].done
    assert window.image_panel.tree.topLevelItem(0).text(2) == "✓"
    key(qtbot, window, Qt.Key.Key_3)
    assert window.current_category_id == window.project.categories[2].id
    assert window.category_panel.current_id() == window.current_category_id


def test_selection_highlights_and_hiding_removes_from_canvas(qtbot, make_window, tiny_engine):
    window = make_window(RecordingEngine(tiny_engine))
    wait_ready(qtbot, window)
    click_image(qtbot, window, 80, 60)
    _wait_prediction(qtbot, window)
    key(qtbot, window, Qt.Key.Key_Return)
    (annotation,) = window.project.annotations_of(window.current_record().id)
    assert window.image_panel.tree.topLevelItem(0).text(1) == "1"
    window.annotation_panel.select_ids([annotation.id])
    assert [item.selected for item in window.canvas._items] == [True]
    item = window.annotation_panel.tree.topLevelItem(0)
    item.setCheckState(0, Qt.CheckState.Unchecked)
    assert window.canvas._items == []
    key(qtbot, window, Qt.Key.Key_H)
    assert not window.canvas.overlays_visible


def test_save_writes_the_project_and_clears_the_star(qtbot, make_window, tiny_engine):
    from annotator.core.coco import load_project

    window = make_window(RecordingEngine(tiny_engine))
    wait_ready(qtbot, window)
    click_image(qtbot, window, 80, 60)
    _wait_prediction(qtbot, window)
    key(qtbot, window, Qt.Key.Key_Return)
    assert window.windowTitle().endswith("*")
    key(qtbot, window, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    # Written on the I/O thread; the title loses its star when the file is complete.
    qtbot.waitUntil(lambda: window.windowTitle() == f"Annotator — {window.project.path}")
    loaded, _ = load_project(window.project.path)
    assert loaded.state() == window.project.state()


def test_unsaved_work_is_offered_back_after_a_crash_and_a_save_removes_it(
    qtbot, make_window, tiny_engine, monkeypatch
):
    import shutil

    from PySide6.QtWidgets import QMessageBox

    from annotator.core.journal import journal_path
    from annotator.core.session import AnnotationSession

    window = make_window(RecordingEngine(tiny_engine))
    wait_ready(qtbot, window)
    click_image(qtbot, window, 80, 60)
    _wait_prediction(qtbot, window)
    key(qtbot, window, Qt.Key.Key_Return)
    journal = journal_path(window.project.path)
    assert journal.is_file()  # written before Enter returned, no page turn needed
    crashed = journal.with_name("crashed.journal")
    shutil.copy(journal, crashed)  # what a kill at this moment leaves on disk
    edited = window.project.state()
    window.stack.set_clean()
    window.close()
    assert not journal.exists()  # a clean close leaves nothing behind
    shutil.move(crashed, journal)

    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    session, _ = AnnotationSession.open(journal.parent)
    second = make_window(RecordingEngine(tiny_engine), session)
    assert second.files.offer_recovery()
    assert second.project.state() == edited
    assert second.windowTitle().endswith("*")
    key(qtbot, second, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    qtbot.waitUntil(lambda: not second.windowTitle().endswith("*"))
    assert not journal.exists()
