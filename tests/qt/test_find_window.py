"""Find with SAM 3 in the window, with the real worker thread and the shrunk random-weight SAM 3:
Ctrl+F, type a phrase, Enter (the box's, not the window's accept) gives proposals equal to the
engine's instances above the threshold; the slider re-offers them; accept all is one undo step
under the phrase's label; Shift+drag asks for objects like the box; Find in all images writes
what `annotator find` writes; bad input is one sentence and a failed model load keeps the model."""

from __future__ import annotations

import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from tests.qt.conftest import key, wait_ready

pytest.importorskip("transformers")
pytestmark = pytest.mark.timeout(180)

CTRL = Qt.KeyboardModifier.ControlModifier
SHIFT = Qt.KeyboardModifier.ShiftModifier


@pytest.fixture(autouse=True)
def _no_prefetch(monkeypatch):
    monkeypatch.setattr("annotator.qt.main_window.PREFETCH_AHEAD", 0)


@pytest.fixture(scope="module")
def sam3_engine(tiny_sam3_folder):
    from annotator.engines.families import load_model

    return load_model(tiny_sam3_folder, device="cpu")


@pytest.fixture
def find_window(qtbot, make_window, sam3_engine):
    window = make_window(sam3_engine)
    wait_ready(qtbot, window)
    qtbot.waitUntil(lambda: window.controller.engine_info is not None)
    return window


def _image(window, record=None):
    from annotator.core.images import load_image

    return load_image(window.project.image_path(record or window.current_record()))


def _expected(engine, image, threshold, **prompt):
    found = engine.find(engine.encode(image), threshold=threshold, **prompt)
    return sorted(round(f.score, 6) for f in found if f.mask is not None)


def _offered(window):
    return sorted(round(p.predicted_iou, 6) for p in window.proposals.items)


def _type_and_find(qtbot, window, phrase: str) -> None:
    key(qtbot, window, Qt.Key.Key_F, CTRL)
    edit = window.finder.bar.phrase
    qtbot.waitUntil(edit.hasFocus)
    qtbot.keyClicks(edit, phrase)
    qtbot.keyClick(edit, Qt.Key.Key_Return)
    qtbot.waitUntil(lambda: window.finder._serial is None, timeout=60000)


def _median_threshold(engine, image, phrase) -> float:
    scores = sorted(f.score for f in engine.find(engine.encode(image), text=phrase, threshold=0.05))
    return round(scores[len(scores) // 2], 2)


def test_type_cat_enter_accept_all_one_undo(qtbot, find_window, sam3_engine):
    window = find_window
    threshold = _median_threshold(sam3_engine, _image(window), "cat")
    window.finder.bar.threshold.setValue(round(threshold * 100))
    _type_and_find(qtbot, window, "cat")
    expected = _expected(sam3_engine, _image(window), threshold, text="cat")
    assert 0 < len(expected)
    assert _offered(window) == expected
    assert window.project.category(window.current_category_id).name == "cat"
    record = window.current_record()
    assert window.project.annotations_of(record.id) == []  # Enter was the box's, not "accept"
    assert window.canvas._scores and window.canvas._scores[0][2].startswith("0.")

    key(qtbot, window, Qt.Key.Key_E, CTRL | SHIFT)  # accept all, focus still in the box
    annotations = window.project.annotations_of(record.id)
    assert sorted(a.extra["score"] for a in annotations) == expected
    assert {window.project.category(a.category_id).name for a in annotations} == {"cat"}
    assert window.finder.bar.phrase.hasFocus()
    qtbot.keyClick(window.finder.bar.phrase, Qt.Key.Key_Z, CTRL)  # the window's undo
    assert window.project.annotations_of(record.id) == []
    assert window.finder.bar.phrase.text() == "cat"
    assert _offered(window) == expected  # undo puts them back on offer


def test_slider_reoffers_less_what_was_accepted(qtbot, find_window, sam3_engine):
    window = find_window
    _type_and_find(qtbot, window, "person with a helmet")
    bar = window.finder.bar
    low = _expected(sam3_engine, _image(window), 0.05, text="person with a helmet")
    bar.threshold.setValue(5)
    assert _offered(window) == low
    best = max(window.proposals.items, key=lambda p: p.predicted_iou)
    assert window.accept_proposal(best)
    bar.threshold.setValue(99)
    bar.threshold.setValue(5)
    assert len(window.proposals) == len(low) - 1
    assert best not in window.proposals.items


def test_esc_in_the_box_closes_the_bar_and_keeps_proposals(qtbot, find_window):
    window = find_window
    window.finder.bar.threshold.setValue(5)
    _type_and_find(qtbot, window, "cat")
    count = len(window.proposals)
    assert count
    qtbot.keyClick(window.finder.bar.phrase, Qt.Key.Key_Escape)
    assert not window.finder.is_open
    assert len(window.proposals) == count
    key(qtbot, window, Qt.Key.Key_Escape)  # now the window's Esc: discard, as segment everything
    assert window.proposals is None or len(window.proposals) == 0


def test_shift_drag_asks_for_objects_like_the_box(qtbot, find_window, sam3_engine):
    window = find_window
    window.finder.bar.threshold.setValue(5)
    key(qtbot, window, Qt.Key.Key_F, CTRL)
    canvas = window.canvas
    qtbot.waitUntil(lambda: window.finder.toolbar.isVisible())
    QTest.qWait(0)  # the bar's layout settles before image coordinates are read
    boxes = []
    canvas.example_box.connect(lambda *box: boxes.append(box))
    start = canvas.image_to_widget(20, 15).toPoint()
    end = canvas.image_to_widget(90, 70).toPoint()
    QTest.mousePress(canvas, Qt.MouseButton.LeftButton, SHIFT, start)
    QTest.mouseMove(canvas, end)
    QTest.mouseRelease(canvas, Qt.MouseButton.LeftButton, SHIFT, end)
    qtbot.waitUntil(lambda: window.finder._serial is None, timeout=60000)
    (box,) = boxes
    assert box[0] == pytest.approx(20, abs=2) and box[3] == pytest.approx(70, abs=2)
    expected = _expected(sam3_engine, _image(window), 0.05, box=box)
    assert expected and _offered(window) == expected
    assert window.session.prompts.is_empty()  # not a SAM box prompt


def test_find_in_all_images_writes_what_annotator_find_writes(qtbot, find_window, sam3_engine):
    window = find_window
    key(qtbot, window, Qt.Key.Key_F, CTRL)
    qtbot.keyClicks(window.finder.bar.phrase, "cat")
    key(qtbot, window, Qt.Key.Key_F, CTRL | SHIFT)
    qtbot.waitUntil(lambda: window.finder._serial is None, timeout=90000)
    fingerprint = sam3_engine.fingerprint
    for record in window.project.images:
        scores = sorted(a.extra["score"] for a in window.project.annotations_of(record.id))
        assert scores == _expected(sam3_engine, _image(window, record), 0.5, text="cat")
        assert record.searched == ((fingerprint, "cat"),) and not record.done
    assert "in 3 images" in window.statusBar().currentMessage()
    assert not window.finder.find_in_all()  # everything searched already
    assert "searched for “cat” with this model already" in window.statusBar().currentMessage()


def test_bad_input_is_one_sentence(qtbot, find_window, make_window, tiny_engine):
    window = find_window
    key(qtbot, window, Qt.Key.Key_F, CTRL)
    qtbot.keyClick(window.finder.bar.phrase, Qt.Key.Key_Return)
    assert window.statusBar().currentMessage().startswith("Type what to find first")

    sam_window = make_window(tiny_engine)
    wait_ready(qtbot, sam_window)
    assert not sam_window.finder.find()
    assert "Find needs a SAM 3 model" in sam_window.statusBar().currentMessage()


def test_a_failed_model_load_keeps_the_model(qtbot, find_window, sam3_engine):
    from annotator.errors import UserError
    from annotator.qt.inference import EngineSpec

    window = find_window
    worker = window.controller.worker

    def refuse(spec):
        raise UserError("big.safetensors: there is not enough memory to load SAM 3.")

    worker._engine_loader = refuse
    failures = []
    window.controller.engine_failed.connect(failures.append)
    window.controller.load_engine(EngineSpec("big"))
    qtbot.waitUntil(lambda: bool(failures) and window.controller.embedding_ready, timeout=30000)
    assert window.controller.engine_info.find
    assert window.model_label.text() == f"Model: {sam3_engine.name}"
    from PySide6.QtWidgets import QApplication, QMessageBox

    for box in window.findChildren(QMessageBox):  # the (non-modal) sentence, read and closed
        assert "not enough memory" in box.text()
        box.close()
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window)
    window.finder.bar.threshold.setValue(5)
    _type_and_find(qtbot, window, "cat")
    assert len(window.proposals) == len(_expected(sam3_engine, _image(window), 0.05, text="cat"))


def test_a_click_says_what_sam3_takes_instead(qtbot, find_window):
    from tests.qt.conftest import click_image

    window = find_window
    click_image(qtbot, window, 40, 30)
    assert "not by clicks" in window.statusBar().currentMessage()
    assert window.session.prompts.is_empty()
    assert window.candidate_label.text() == ""  # no "computing…" left behind
