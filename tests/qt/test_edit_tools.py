"""Editing masks by hand in the window: real mouse and key events on the canvas, exact pixels.

Each expected mask is computed from the image coordinates the canvas's one mapping gives for the
widget positions the events used, by the core's exact definitions (checked against brute force
in tests/core/test_mask_edit.py).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtTest import QTest

from annotator.core.mask_edit import fill_holes, polygon_mask, remove_islands, stroke_mask
from annotator.qt.canvas import Tool
from tests.qt.conftest import RecordingEngine, click_image, key, wait_ready

pytestmark = pytest.mark.timeout(120)
CTRL = Qt.KeyboardModifier.ControlModifier
SHIFT = Qt.KeyboardModifier.ShiftModifier
LEFT = Qt.MouseButton.LeftButton


def _window(qtbot, make_window, tiny_engine):
    window = make_window(RecordingEngine(tiny_engine))
    wait_ready(qtbot, window)
    return window


def _shape(window):
    return (window.display.height, window.display.width)


def _image_point(window, point: QPoint) -> tuple[float, float]:
    return window.canvas.widget_to_image(QPointF(point))


def _widget(window, x: float, y: float) -> QPoint:
    return window.canvas.image_to_widget(x, y).toPoint()


def _drag(window, points: list[QPoint], modifier=Qt.KeyboardModifier.NoModifier) -> None:
    canvas = window.canvas
    QTest.mousePress(canvas, LEFT, modifier, points[0])
    for point in points[1:]:
        QTest.mouseMove(canvas, point)
    QTest.mouseRelease(canvas, LEFT, modifier, points[-1])


def _square(window, r0, r1, c0, c1) -> np.ndarray:
    mask = np.zeros(_shape(window), bool)
    mask[r0:r1, c0:c1] = True
    return mask


def _ctrl_click(window, x, y, modifier=CTRL) -> None:
    QTest.mouseClick(window.canvas, LEFT, modifier, _widget(window, x, y))


def _mask(window, annotation_id) -> np.ndarray:
    return window.project.annotation(annotation_id).mask()


def test_a_brush_stroke_without_selection_is_a_new_selected_annotation(
    qtbot, make_window, tiny_engine
):
    window = _window(qtbot, make_window, tiny_engine)
    canvas = window.canvas
    canvas.scale, canvas.offset = 1.0, QPointF(40, 30)  # zoom 1
    canvas.update()
    key(qtbot, window, Qt.Key.Key_B)
    assert canvas.tool is Tool.BRUSH and window.actions["tool_brush"].isChecked()
    key(qtbot, window, Qt.Key.Key_BracketRight)  # 5 -> 6
    key(qtbot, window, Qt.Key.Key_BracketRight)  # 6 -> 8
    key(qtbot, window, Qt.Key.Key_BracketLeft)  # 8 -> 6
    assert canvas.brush_radius == 6
    points = [_widget(window, x, y) for x, y in ((20, 30), (45, 38), (70, 31), (71, 80))]
    QTest.mousePress(canvas, LEFT, Qt.KeyboardModifier.NoModifier, points[0])
    for point in points[1:3]:
        QTest.mouseMove(canvas, point)
    # Previewed while drawing: exactly the pixels the path so far will paint.
    path = [_image_point(window, p) for p in points[:3]]
    np.testing.assert_array_equal(canvas.stroke_preview(), stroke_mask(_shape(window), path, 6))
    assert window.project.annotation_count(window.current_record().id) == 0
    QTest.mouseMove(canvas, points[3])
    QTest.mouseRelease(canvas, LEFT, Qt.KeyboardModifier.NoModifier, points[3])
    (annotation,) = window.project.annotations_of(window.current_record().id)
    expected = stroke_mask(_shape(window), [_image_point(window, p) for p in points], 6)
    np.testing.assert_array_equal(annotation.mask(), expected)
    assert annotation.category_id == window.current_category_id
    assert window._selected == (annotation.id,)  # the new one is selected: the next stroke edits it
    assert canvas.stroke_preview() is None
    more = [_widget(window, 100, 100), _widget(window, 130, 60)]
    _drag(window, more)
    assert window.project.annotation_count(window.current_record().id) == 1
    second = stroke_mask(_shape(window), [_image_point(window, p) for p in more], 6)
    np.testing.assert_array_equal(_mask(window, annotation.id), expected | second)
    key(qtbot, window, Qt.Key.Key_Z, CTRL)  # one stroke, one undo step
    np.testing.assert_array_equal(_mask(window, annotation.id), expected)


def test_brush_and_eraser_at_a_fractional_zoom_and_undo_redo_identical_rle(
    qtbot, make_window, tiny_engine
):
    window = _window(qtbot, make_window, tiny_engine)
    record = window.current_record()
    base = _square(window, 20, 90, 30, 120)
    annotation = window.session.add_mask(record.id, window.current_category_id, base)
    canvas = window.canvas
    canvas.scale, canvas.offset = 2.37, QPointF(-13.3, 7.9)
    canvas.update()
    _ctrl_click(window, 60, 50)
    assert window._selected == (annotation.id,)
    rles = [json.dumps(annotation.rle)]
    key(qtbot, window, Qt.Key.Key_B)
    canvas.set_brush_radius(3.5)
    paint = [_widget(window, x, y) for x, y in ((110, 40), (140, 45.2), (150, 70.7))]
    _drag(window, paint)
    painted = stroke_mask(_shape(window), [_image_point(window, p) for p in paint], 3.5)
    np.testing.assert_array_equal(_mask(window, annotation.id), base | painted)
    assert painted.sum() > 0 and (painted & ~base).sum() > 0
    rles.append(json.dumps(window.project.annotation(annotation.id).rle))
    key(qtbot, window, Qt.Key.Key_E)
    assert canvas.tool is Tool.ERASER
    erase = [_widget(window, x, y) for x, y in ((40, 30.4), (80.6, 60), (60, 85))]
    _drag(window, erase)
    erased = stroke_mask(_shape(window), [_image_point(window, p) for p in erase], 3.5)
    np.testing.assert_array_equal(_mask(window, annotation.id), (base | painted) & ~erased)
    rles.append(json.dumps(window.project.annotation(annotation.id).rle))
    assert window.stack.undo_text() == "Erase"
    for expected in reversed(rles[:-1]):
        key(qtbot, window, Qt.Key.Key_Z, CTRL)
        assert json.dumps(window.project.annotation(annotation.id).rle) == expected
    for expected in rles[1:]:
        key(qtbot, window, Qt.Key.Key_Y, CTRL)
        assert json.dumps(window.project.annotation(annotation.id).rle) == expected
    # The canvas shows what the project holds.
    (item,) = window.canvas._items
    np.testing.assert_array_equal(item.mask, _mask(window, annotation.id))


def test_eraser_without_selection_changes_nothing_and_erasing_everything_deletes(
    qtbot, make_window, tiny_engine
):
    window = _window(qtbot, make_window, tiny_engine)
    record = window.current_record()
    annotation = window.session.add_mask(
        record.id, window.current_category_id, _square(window, 10, 14, 10, 14)
    )
    key(qtbot, window, Qt.Key.Key_E)
    count = window.stack.count()
    _drag(window, [_widget(window, 12, 12), _widget(window, 13, 12)])
    assert window.stack.count() == count
    assert "Select one annotation" in window.statusBar().currentMessage()
    _ctrl_click(window, 12, 12)
    window.canvas.set_brush_radius(10)
    _drag(window, [_widget(window, 12, 12), _widget(window, 13, 12)])
    assert not window.project.has_annotation(annotation.id)
    assert "deleted" in window.statusBar().currentMessage()
    assert window._selected == ()
    key(qtbot, window, Qt.Key.Key_Z, CTRL)
    assert window.project.annotation(annotation.id) == annotation


def test_polygon_new_add_cut_backspace_and_esc(qtbot, make_window, tiny_engine):
    window = _window(qtbot, make_window, tiny_engine)
    canvas = window.canvas
    canvas.scale, canvas.offset = 3.1, QPointF(-40.2, -20.5)
    canvas.update()
    record = window.current_record()
    key(qtbot, window, Qt.Key.Key_G)
    assert canvas.tool is Tool.POLYGON

    def place(vertices):
        clicks = [_widget(window, x, y) for x, y in vertices]
        for point in clicks:
            QTest.mouseClick(canvas, LEFT, Qt.KeyboardModifier.NoModifier, point)
        return [_image_point(window, p) for p in clicks]

    first = place([(20, 20), (60, 22.5), (55, 70), (30, 40.3), (99, 99)])
    assert len(canvas.polygon) == 5
    key(qtbot, window, Qt.Key.Key_Backspace)  # the tool's Backspace: the last vertex goes
    assert len(canvas.polygon) == 4
    key(qtbot, window, Qt.Key.Key_Return)
    (annotation,) = window.project.annotations_of(record.id)
    expected = polygon_mask(_shape(window), first[:4])
    np.testing.assert_array_equal(annotation.mask(), expected)
    assert window._selected == (annotation.id,)
    # Shift+Enter adds the next polygon to the selected annotation.
    added = place([(50, 50), (80, 50), (80, 80)])
    key(qtbot, window, Qt.Key.Key_Return, SHIFT)
    expected = expected | polygon_mask(_shape(window), added)
    np.testing.assert_array_equal(_mask(window, annotation.id), expected)
    # Ctrl+Enter cuts.
    cut = place([(25, 25), (45, 25), (45, 45), (25, 45)])
    key(qtbot, window, Qt.Key.Key_Return, CTRL)
    expected = expected & ~polygon_mask(_shape(window), cut)
    np.testing.assert_array_equal(_mask(window, annotation.id), expected)
    assert window.project.annotation_count(record.id) == 1
    # A click on the first vertex closes a new one; it becomes the selection.
    vertices = place([(100, 10), (130, 12), (120, 40)])
    QTest.mouseClick(canvas, LEFT, Qt.KeyboardModifier.NoModifier, _widget(window, 100, 10))
    second = window.project.annotations_of(record.id)[-1]
    np.testing.assert_array_equal(second.mask(), polygon_mask(_shape(window), vertices))
    assert window._selected == (second.id,)
    # Esc cancels a polygon, then leaves the tool; prompts were not touched meanwhile.
    place([(5, 5), (9, 5)])
    key(qtbot, window, Qt.Key.Key_Escape)
    assert canvas.polygon == [] and canvas.tool is Tool.POLYGON
    key(qtbot, window, Qt.Key.Key_Escape)
    assert canvas.tool is Tool.SAM and window.actions["tool_sam"].isChecked()
    assert window._selected == (second.id,)
    key(qtbot, window, Qt.Key.Key_Escape)  # nothing left to cancel: the selection goes
    assert window._selected == ()
    for _ in range(4):
        key(qtbot, window, Qt.Key.Key_Z, CTRL)
    assert window.project.annotation_count(record.id) == 0


def _wait_prediction(qtbot, window):
    qtbot.waitUntil(
        lambda: not window.session.prompts.pending and window.session.prompts.mask() is not None
    )


def test_sam_adds_to_and_cuts_from_the_selected_annotation(qtbot, make_window, tiny_engine):
    window = _window(qtbot, make_window, tiny_engine)
    record = window.current_record()
    click_image(qtbot, window, 80, 60)
    _wait_prediction(qtbot, window)
    key(qtbot, window, Qt.Key.Key_Return)
    (annotation,) = window.project.annotations_of(record.id)
    assert window._selected == (annotation.id,)  # Enter's new annotation is selected
    before = annotation.mask()
    click_image(qtbot, window, 20, 20)
    _wait_prediction(qtbot, window)
    live = window.session.prompts.accepted_mask().copy()
    key(qtbot, window, Qt.Key.Key_Return, SHIFT)
    np.testing.assert_array_equal(_mask(window, annotation.id), before | live)
    assert window.session.prompts.is_empty()
    assert window.project.annotation_count(record.id) == 1
    assert window.stack.undo_text() == "Add SAM mask"
    click_image(qtbot, window, 120, 100)
    _wait_prediction(qtbot, window)
    cut = window.session.prompts.accepted_mask().copy()
    key(qtbot, window, Qt.Key.Key_Return, CTRL)
    if window.project.has_annotation(annotation.id):
        np.testing.assert_array_equal(_mask(window, annotation.id), (before | live) & ~cut)
    else:  # the random SAM's mask may cover it all: then the annotation is deleted
        assert not ((before | live) & ~cut).any()
    key(qtbot, window, Qt.Key.Key_Z, CTRL)
    np.testing.assert_array_equal(_mask(window, annotation.id), before | live)
    key(qtbot, window, Qt.Key.Key_Z, CTRL)
    np.testing.assert_array_equal(_mask(window, annotation.id), before)


def test_sam_add_without_selection_says_so(qtbot, make_window, tiny_engine):
    window = _window(qtbot, make_window, tiny_engine)
    click_image(qtbot, window, 80, 60)
    _wait_prediction(qtbot, window)
    key(qtbot, window, Qt.Key.Key_Return, SHIFT)
    assert window.project.total_annotations() == 0
    assert "Select one annotation" in window.statusBar().currentMessage()
    assert not window.session.prompts.is_empty()  # the mask is still there to use


def test_ctrl_click_selects_ctrl_shift_click_adds_and_on_nothing_clears(
    qtbot, make_window, tiny_engine
):
    window = _window(qtbot, make_window, tiny_engine)
    record = window.current_record()
    category = window.current_category_id
    below = window.session.add_mask(record.id, category, _square(window, 10, 50, 10, 50))
    above = window.session.add_mask(record.id, category, _square(window, 30, 70, 30, 70))
    other = window.session.add_mask(record.id, category, _square(window, 80, 90, 80, 90))
    _ctrl_click(window, 40, 40)  # both cover it: the top-most one
    assert window._selected == (above.id,)
    assert window.annotation_panel.selected_ids() == [above.id]
    _ctrl_click(window, 15, 15)
    assert window._selected == (below.id,)
    _ctrl_click(window, 85, 85, CTRL | SHIFT)
    assert set(window._selected) == {below.id, other.id}
    assert {i.key for i in window.canvas._items if i.selected} == {below.id, other.id}
    assert window.session.prompts.is_empty()  # Ctrl+click is no SAM prompt
    _ctrl_click(window, 150, 5)
    assert window._selected == ()


def test_clean_up_from_the_edit_menu_reports_the_pixels_changed(
    qtbot, make_window, tiny_engine, monkeypatch
):
    window = _window(qtbot, make_window, tiny_engine)
    record = window.current_record()
    mask = _square(window, 10, 40, 10, 40)
    mask[20:23, 20:25] = False  # a hole of 15 pixels
    mask[60:62, 60:62] = True  # an island of 4
    mask[70:80, 70:80] = True  # an island of 100
    annotation = window.session.add_mask(record.id, window.current_category_id, mask)
    window.select_annotations((annotation.id,))
    window.actions["fill_holes"].trigger()
    np.testing.assert_array_equal(_mask(window, annotation.id), fill_holes(mask))
    assert "15 pixel(s) changed" in window.statusBar().currentMessage()
    monkeypatch.setattr("PySide6.QtWidgets.QInputDialog.getInt", lambda *a, **k: (5, True))
    window.actions["remove_islands"].trigger()
    np.testing.assert_array_equal(_mask(window, annotation.id), remove_islands(fill_holes(mask), 5))
    assert "4 pixel(s) changed" in window.statusBar().currentMessage()
    assert window.stack.undo_text() == "Remove islands under 5 px"
    window.actions["smooth_masks"].trigger()
    assert "Smooth (radius 5)" in window.statusBar().currentMessage()
    for _ in range(3):
        window.session.undo()
    np.testing.assert_array_equal(_mask(window, annotation.id), mask)


def test_every_edit_is_saved_and_pycocotools_reads_back_what_the_screen_showed(
    qtbot, make_window, tiny_engine
):
    from pycocotools import mask as mask_utils

    window = _window(qtbot, make_window, tiny_engine)
    record = window.current_record()
    key(qtbot, window, Qt.Key.Key_B)
    _drag(window, [_widget(window, 30, 30), _widget(window, 60, 40)])
    key(qtbot, window, Qt.Key.Key_E)
    _drag(window, [_widget(window, 45, 30), _widget(window, 45, 45)])
    key(qtbot, window, Qt.Key.Key_G)
    for x, y in ((100, 60), (140, 60), (120, 100)):
        QTest.mouseClick(window.canvas, LEFT, Qt.KeyboardModifier.NoModifier, _widget(window, x, y))
    key(qtbot, window, Qt.Key.Key_Return)
    shown = {item.key: item.mask.copy() for item in window.canvas._items}
    assert len(shown) == 2
    key(qtbot, window, Qt.Key.Key_S, CTRL)
    qtbot.waitUntil(lambda: not window.windowTitle().endswith("*"))
    saved = json.loads(window.project.path.read_text())
    read = {a["id"]: a for a in saved["annotations"] if a["image_id"] == record.id}
    assert read.keys() == shown.keys()
    for annotation_id, mask in shown.items():
        segmentation = dict(read[annotation_id]["segmentation"])
        segmentation["counts"] = segmentation["counts"].encode()
        np.testing.assert_array_equal(mask_utils.decode(segmentation).astype(bool), mask)
        assert read[annotation_id]["area"] == int(mask.sum())


def test_tools_keys_are_in_the_sheet(qtbot, make_window, tiny_engine):
    window = _window(qtbot, make_window, tiny_engine)
    text = window.show_shortcuts().browser.toPlainText()
    for label in ("Brush", "Eraser", "Polygon", "SAM Click Tool", "Add to Selected Annotation"):
        assert label in text
    for gesture in ("Ctrl + click", "Ctrl + Shift + click"):
        assert gesture in text


def test_ctrl_g_merges_the_selection_and_ctrl_shift_g_splits(qtbot, make_window, tiny_engine):
    window = _window(qtbot, make_window, tiny_engine)
    record = window.current_record()
    category = window.current_category_id
    first = window.session.add_mask(record.id, category, _square(window, 10, 20, 10, 20))
    second = window.session.add_mask(record.id, category, _square(window, 40, 50, 40, 50))
    _ctrl_click(window, 15, 15)
    _ctrl_click(window, 45, 45, CTRL | SHIFT)
    key(qtbot, window, Qt.Key.Key_G, CTRL)
    (merged,) = window.project.annotations_of(record.id)
    assert merged.id == first.id and window._selected == (first.id,)
    union = _square(window, 10, 20, 10, 20) | _square(window, 40, 50, 40, 50)
    np.testing.assert_array_equal(merged.mask(), union)
    key(qtbot, window, Qt.Key.Key_G, CTRL | SHIFT)
    parts = window.project.annotations_of(record.id)
    assert len(parts) == 2 and set(window._selected) == {a.id for a in parts}
    np.testing.assert_array_equal(parts[0].mask() | parts[1].mask(), union)
    key(qtbot, window, Qt.Key.Key_Z, CTRL)
    key(qtbot, window, Qt.Key.Key_Z, CTRL)
    assert window.project.annotation(second.id) == second


def test_with_masks_do_not_overlap_a_stroke_keeps_off_the_others(qtbot, make_window, tiny_engine):
    window = _window(qtbot, make_window, tiny_engine)
    record = window.current_record()
    other = window.session.add_mask(
        record.id, window.current_category_id, _square(window, 20, 40, 20, 40)
    )
    action = window.actions["masks_do_not_overlap"]
    action.trigger()
    assert action.isChecked() and window.session.masks_do_not_overlap
    key(qtbot, window, Qt.Key.Key_B)
    path = [_widget(window, 10, 30), _widget(window, 50, 30)]
    _drag(window, path)
    new = window.project.annotations_of(record.id)[-1]
    stroke = stroke_mask(_shape(window), [_image_point(window, p) for p in path], 5)
    np.testing.assert_array_equal(new.mask(), stroke & ~other.mask())
    window.session.undo()
    window.session.undo()
    assert not action.isChecked()  # the action follows the project's setting


def test_the_eraser_preview_darkens_only_what_it_would_remove(qtbot, make_window, tiny_engine):
    window = _window(qtbot, make_window, tiny_engine)
    record = window.current_record()
    mask = _square(window, 20, 40, 20, 40)
    annotation = window.session.add_mask(record.id, window.current_category_id, mask)
    window.select_annotations((annotation.id,))
    key(qtbot, window, Qt.Key.Key_E)
    canvas = window.canvas
    QTest.mousePress(canvas, LEFT, Qt.KeyboardModifier.NoModifier, _widget(window, 20, 30))
    QTest.mouseMove(canvas, _widget(window, 10, 30))
    darkened = canvas._stroke_rgba[..., 3] > 0  # the overlay step is 1 at this size
    np.testing.assert_array_equal(darkened, canvas.stroke_preview() & mask)
    assert (canvas.stroke_preview() & ~mask).any()
    key(qtbot, window, Qt.Key.Key_Escape)  # Esc drops the stroke in progress
    QTest.mouseRelease(canvas, LEFT, Qt.KeyboardModifier.NoModifier, _widget(window, 10, 30))
    assert window.project.annotation(annotation.id) == annotation


def test_each_section_of_the_sheet_appears_once(qtbot, make_window, tiny_engine):
    from itertools import groupby

    from annotator.qt.actions import sheet_rows

    window = make_window(RecordingEngine(tiny_engine))
    sections = [section for section, _ in groupby(r[0] for r in sheet_rows(window.actions))]
    assert len(sections) == len(set(sections))
    assert {"Tools", "Edit masks"} <= set(sections)
