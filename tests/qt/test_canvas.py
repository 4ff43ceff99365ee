"""The canvas alone: one coordinate mapping, click vs drag, zoom about the cursor, overlays."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, QPointF, Qt
from PySide6.QtGui import QImage
from PySide6.QtTest import QTest

from annotator.qt.canvas import CLICK_TOLERANCE, Canvas
from annotator.qt.image_loader import DisplayImage
from annotator.qt.overlay import OverlayItem, build_pyramid, overlay_step, rgb_to_qimage


@pytest.fixture
def canvas(qtbot):
    widget = Canvas()
    qtbot.addWidget(widget)
    widget.resize(400, 300)
    widget.show()
    qtbot.waitExposed(widget)
    image = np.zeros((100, 200, 3), np.uint8)
    image[:, :, 2] = 200  # blue
    widget.set_image(DisplayImage(tuple(build_pyramid(rgb_to_qimage(image)))))
    return widget


def test_fit_centres_the_whole_image(canvas):
    rect = canvas._image_rect()
    assert rect.left() >= 0 and rect.right() <= canvas.width()
    assert abs(rect.center().x() - canvas.width() / 2) < 1
    assert abs(rect.center().y() - canvas.height() / 2) < 1


def test_mapping_round_trips_after_zoom_and_pan(canvas):
    canvas.zoom_by(3.7, QPointF(123, 77))
    canvas.pan_by(-41, 13)
    for x, y in ((0, 0), (12.25, 80.5), (199, 99)):
        back = canvas.widget_to_image(canvas.image_to_widget(x, y))
        assert back == pytest.approx((x, y))
    # Pixel centres at integers: the top-left pixel's centre is half a pixel in from the corner.
    corner = canvas._image_rect().topLeft()
    centre = canvas.image_to_widget(0, 0)
    assert centre.x() - corner.x() == pytest.approx(canvas.scale / 2)


def test_click_within_tolerance_is_a_point_and_drag_is_a_box(canvas, qtbot):
    points, boxes = [], []
    canvas.point_added.connect(lambda x, y, positive: points.append((x, y, positive)))
    canvas.box_drawn.connect(lambda *box: boxes.append(box))
    start = canvas.image_to_widget(50, 40).toPoint()
    QTest.mousePress(canvas, Qt.MouseButton.LeftButton, pos=start)
    QTest.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=start + QPoint(CLICK_TOLERANCE, 0))
    assert len(points) == 1 and boxes == []
    x, y, positive = points[0]
    assert positive and (x, y) == pytest.approx(canvas.widget_to_image(QPointF(start)))
    QTest.mouseClick(canvas, Qt.MouseButton.RightButton, pos=start)
    assert points[-1][2] is False
    end = canvas.image_to_widget(150, 90).toPoint()
    QTest.mousePress(canvas, Qt.MouseButton.LeftButton, pos=start)
    QTest.mouseMove(canvas, end)
    QTest.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=end)
    assert len(boxes) == 1 and len(points) == 2
    assert boxes[0] == pytest.approx((50, 40, 150, 90), abs=1 / canvas.scale + 0.01)


def test_clicks_outside_the_image_are_ignored(canvas):
    points = []
    canvas.point_added.connect(lambda *p: points.append(p))
    outside = canvas.image_to_widget(-5, -5).toPoint()
    QTest.mouseClick(canvas, Qt.MouseButton.LeftButton, pos=outside)
    assert points == []


def test_wheel_zooms_about_the_cursor(canvas, qtbot):
    from PySide6.QtGui import QWheelEvent

    anchor = QPointF(150, 120)
    before = canvas.widget_to_image(anchor)
    scale = canvas.scale
    event = QWheelEvent(
        anchor,
        canvas.mapToGlobal(anchor),
        QPoint(0, 0),
        QPoint(0, 240),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    canvas.wheelEvent(event)
    assert canvas.scale == pytest.approx(scale * 1.25**2)
    assert canvas.widget_to_image(anchor) == pytest.approx(before)


def test_middle_drag_pans(canvas):
    offset = QPointF(canvas.offset)
    QTest.mousePress(canvas, Qt.MouseButton.MiddleButton, pos=QPoint(100, 100))
    QTest.mouseMove(canvas, QPoint(130, 90))
    QTest.mouseRelease(canvas, Qt.MouseButton.MiddleButton, pos=QPoint(130, 90))
    assert canvas.offset - offset == QPointF(30, -10)


def _pixel(widget, x, y):
    return widget.grab().toImage().pixelColor(int(x), int(y))


def test_masks_are_drawn_in_their_colour_and_h_hides_them(canvas):
    mask = np.zeros((100, 200), bool)
    mask[20:80, 40:160] = True
    canvas.set_opacity(1.0)
    canvas.set_overlay_items([OverlayItem(1, mask, (255, 0, 0))])
    inside = canvas.image_to_widget(100, 50)
    outside = canvas.image_to_widget(10, 10)
    assert _pixel(canvas, inside.x(), inside.y()).red() == 255
    assert _pixel(canvas, outside.x(), outside.y()).blue() == 200
    canvas.set_overlays_visible(False)
    assert _pixel(canvas, inside.x(), inside.y()).red() == 0


def test_overlay_of_huge_images_is_subsampled():
    assert overlay_step(4000, 3000) == 1
    assert overlay_step(10000, 10000) == 3  # 100 MP -> about 11 MP of overlay


def test_pyramid_halves_down_to_screen_size():
    levels = build_pyramid(QImage(5000, 3000, QImage.Format.Format_RGB888))
    assert [level.width() for level in levels] == [5000, 2500, 1250]


def test_space_drag_pans_instead_of_drawing_a_box(canvas):
    boxes, points = [], []
    canvas.box_drawn.connect(lambda *box: boxes.append(box))
    canvas.point_added.connect(lambda *p: points.append(p))
    offset = QPointF(canvas.offset)
    QTest.keyPress(canvas, Qt.Key.Key_Space)
    QTest.mousePress(canvas, Qt.MouseButton.LeftButton, pos=QPoint(100, 100))
    QTest.mouseMove(canvas, QPoint(80, 140))
    QTest.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=QPoint(80, 140))
    QTest.keyRelease(canvas, Qt.Key.Key_Space)
    assert canvas.offset - offset == QPointF(-20, 40)
    assert boxes == [] and points == []
