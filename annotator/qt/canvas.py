"""The image canvas: shows the image, masks and prompts; turns mouse gestures into prompt signals.

It never calls a model and holds no project: the window gives it pixels, overlay items and prompt
geometry, and listens to `point_added`, `box_drawn` and `cursor_moved`, all in image coordinates.

Tools (`Tool`): the SAM click tool, the brush, the eraser and the polygon, each a small state
machine here that ends in one signal: `stroke_finished` (the path of one press-drag-release, the
window turns it into one undoable edit), `polygon_closed` (a click on the first vertex; Enter and
Shift/Ctrl+Enter go through the window, which asks `take_polygon`). Ctrl+click in any tool emits
`select_at`. While drawing, the stroke is previewed exactly (the pixels `stroke_mask` gives for
the path so far, rasterised one mouse segment at a time) and the brush's tip is outlined at the
cursor at every zoom (its radius is in image pixels).

Coordinates: image coordinates are (X, Y) float pixels of the original image with pixel centres
at integers (segment_anything's frame): pixel (i, j) covers [j - 0.5, j + 0.5] x [i - 0.5, i + 0.5].
`image_to_widget` / `widget_to_image` are the one place that maps between the two frames.

Painting draws only the visible part of the image, from the pyramid level nearest the screen's
resolution, and blits cached overlay images; nothing is recomputed in `paintEvent`.
"""

from __future__ import annotations

import enum
import math
import sys

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPen, QWheelEvent
from PySide6.QtWidgets import QSizePolicy, QWidget

from annotator.core.mask_edit import capsule_into
from annotator.qt.image_loader import DisplayImage
from annotator.qt.overlay import (
    OverlayItem,
    overlay_step,
    render_highlight,
    render_outlines,
    render_overlay,
)

CLICK_TOLERANCE = 4  # screen pixels: a press and release closer than this is a click, not a box
MIN_ZOOM, MAX_ZOOM = 0.005, 64.0
WHEEL_STEP = 1.25  # zoom factor per wheel notch
CLOSE_TOLERANCE = 8  # screen pixels: a polygon click this near its first vertex closes it
MIN_RADIUS, MAX_RADIUS = 0.5, 500.0  # brush radius limits, image pixels

# Mouse gestures, for the shortcut sheet (keys are QActions and list themselves).
GESTURES = (
    ("Left click", "Add a foreground point"),
    ("Right click", "Add a background point"),
    ("Left drag", "Draw a box"),
    ("Left click on a proposal", "Accept it (after Segment Everything)"),
    ("Wheel", "Zoom about the cursor"),
    ("Middle drag / Space + drag", "Pan"),
    ("Ctrl + click", "Select the annotation under the cursor (on nothing: clear the selection)"),
    ("Ctrl + Shift + click", "Add the annotation under the cursor to the selection"),
    ("Left drag (brush / eraser)", "Paint into / erase from the selected annotation"),
    ("Left click (polygon)", "Add a vertex; a click on the first vertex closes it"),
)


def _premultiplied_bgra(rgb, alpha: int) -> tuple[int, int, int, int]:
    """The bytes of one ARGB32-premultiplied pixel in memory (B, G, R, A on little-endian)."""
    r, g, b = (int(round(v * alpha / 255)) for v in rgb)
    return (b, g, r, alpha) if sys.byteorder == "little" else (alpha, r, g, b)


class Tool(enum.Enum):
    SAM = "sam"
    BRUSH = "brush"
    ERASER = "eraser"
    POLYGON = "polygon"


FOREGROUND = QColor(46, 204, 113)
BACKGROUND = QColor(231, 76, 60)
BOX_COLOR = QColor(255, 200, 0)


def _first_set(proposal) -> int:
    """Column (in its crop) of a proposal's first pixel in its top row."""
    bits = getattr(proposal, "bits", None)
    return int(np.argmax(np.unpackbits(bits[0]))) if bits is not None else 0


# Above this many proposals their scores are not written on the image (they would cover it).
SCORE_LABELS_MAX = 60


class Canvas(QWidget):
    point_added = Signal(float, float, bool)  # x, y (image pixels), positive
    box_drawn = Signal(float, float, float, float)  # x0, y0, x1, y1 (image pixels)
    example_box = Signal(float, float, float, float)  # Shift+drag while `find_mode` (SAM 3)
    cursor_moved = Signal(float, float)  # image pixels; NaN when the cursor leaves the image
    view_changed = Signal(float)  # zoom: screen pixels per image pixel
    select_at = Signal(float, float, bool)  # x, y (image pixels), add to the selection
    stroke_finished = Signal(object, bool)  # Nx2 float (x, y) image pixels of the path, erase
    polygon_closed = Signal(object)  # Nx2 float (x, y) image pixels of the vertices

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setMouseTracking(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self.setMinimumSize(200, 150)
        self.image: DisplayImage | None = None
        self.scale = 1.0  # screen pixels per image pixel
        self.offset = QPointF(0.0, 0.0)  # widget position of the image's top-left corner
        self._fit_pending = True
        self.opacity = 0.45
        self.overlays_visible = True
        self._items: list[OverlayItem] = []
        self._overlay: tuple[QImage, int] | None = None
        self._live_mask: np.ndarray | None = None
        self._live_color = (255, 255, 255)
        self._live: tuple[QImage, int] | None = None
        self._proposals: tuple[QImage, int] | None = None  # segment-everything outlines
        self._hovered = None  # the proposal under the cursor (a CompactProposal) or None
        self._scores: list[tuple[float, float, str]] = []  # (x, y) image pixels, label text
        self.find_mode = False  # the Find bar is open: Shift+drag draws an example box
        self._hover: tuple[QImage, int, int, int] | None = None
        self._points = np.zeros((0, 2), np.float32)
        self._labels = np.zeros((0,), np.int32)
        self._box: np.ndarray | None = None
        self._press: QPointF | None = None  # left button press position (widget)
        self._drag_now: QPointF | None = None
        self._pan_from: QPointF | None = None
        self._space_down = False
        self.message = ""  # shown centred when there is no image
        self.tool = Tool.SAM
        self.brush_radius = 5.0  # image pixels
        self.tool_color = (255, 255, 255)  # the brush preview's colour
        self.erase_target: np.ndarray | None = None  # HxW bool: what the eraser would cut
        self._stroke: list[tuple[float, float]] | None = None  # the path being drawn
        self._stroke_mask: np.ndarray | None = None  # HxW bool: its pixels so far
        # Its preview at the overlay's step: premultiplied BGRA bytes (QImage's ARGB32
        # premultiplied in memory), drawn without a conversion per paint.
        self._stroke_rgba: np.ndarray | None = None
        self._polygon: list[tuple[float, float]] = []  # vertices placed so far
        self._cursor: QPointF | None = None  # widget position of the mouse, None outside

    # ------------------------------------------------------------------ mapping (the one place)
    def image_to_widget(self, x: float, y: float) -> QPointF:
        """Widget position of image coordinate (x, y) (pixel centres at integers)."""
        return QPointF(
            self.offset.x() + (x + 0.5) * self.scale, self.offset.y() + (y + 0.5) * self.scale
        )

    def widget_to_image(self, point: QPointF) -> tuple[float, float]:
        """Image coordinate (x, y) under widget position `point`."""
        return (
            (point.x() - self.offset.x()) / self.scale - 0.5,
            (point.y() - self.offset.y()) / self.scale - 0.5,
        )

    def _image_rect(self) -> QRectF:
        """The whole image's rectangle in widget coordinates."""
        return QRectF(
            self.offset.x(),
            self.offset.y(),
            self.image.width * self.scale,
            self.image.height * self.scale,
        )

    def _inside(self, x: float, y: float) -> bool:
        return (
            self.image is not None
            and -0.5 <= x < self.image.width - 0.5
            and -0.5 <= y < self.image.height - 0.5
        )

    # ------------------------------------------------------------------ content
    def set_image(self, image: DisplayImage | None) -> None:
        """Show `image` fitted to the widget; clears masks and prompts of the previous one."""
        self.image = image
        self._items, self._overlay = [], None
        self._live_mask, self._live = None, None
        self._proposals, self._hovered, self._hover = None, None, None
        self._stroke = self._stroke_mask = self._stroke_rgba = None
        self._polygon = []
        self.set_prompts(np.zeros((0, 2), np.float32), np.zeros((0,), np.int32), None)
        self.fit()

    def set_overlay_items(self, items: list[OverlayItem]) -> None:
        """Replace the accepted annotations' overlay (rebuilt once here, not per paint)."""
        self._items = list(items)
        self._rebuild_overlay()

    def set_live_mask(self, mask: np.ndarray | None, color: tuple[int, int, int]) -> None:
        """The mask being edited (HxW bool at the image size), or None."""
        self._live_mask, self._live_color = mask, color
        self._rebuild_live()

    def set_proposals(self, proposals) -> None:
        """Segment-everything proposals to outline: objects with `crop()` (h x w bool) and `box`
        ((x0, y0, x1, y1) image pixels, exclusive), e.g. CompactProposal; [] to remove them."""
        self._proposals, self._scores = None, []
        if self.image is not None and proposals:
            self._proposals = render_outlines(proposals, self.image.width, self.image.height)
            if len(proposals) <= SCORE_LABELS_MAX:
                self._scores = [  # at the mask's topmost pixel, so overlapping boxes part
                    (p.box[0] + _first_set(p), p.box[1], f"{p.predicted_iou:.2f}")
                    for p in proposals
                    if hasattr(p, "predicted_iou")
                ]
        self.update()

    def set_hovered(self, proposal, color: tuple[int, int, int] = (255, 255, 255)) -> None:
        """Highlight `proposal` (as in `set_proposals`; None: no highlight) filled in `color`."""
        if proposal is self._hovered:
            return
        self._hovered, self._hover = proposal, None
        if self.image is not None and proposal is not None:
            self._hover = render_highlight(
                proposal.crop(),
                proposal.box,
                color,
                self.image.width,
                self.image.height,
                min(1.0, self.opacity + 0.1),
            )
        self.update()

    @property
    def hovered(self):
        """The highlighted proposal, or None."""
        return self._hovered

    def set_prompts(self, points: np.ndarray, labels: np.ndarray, box: np.ndarray | None) -> None:
        """Points (Nx2, image pixels), labels (N, 1 fg / 0 bg) and box (XYXY or None) to draw."""
        self._points, self._labels, self._box = points, labels, box
        self.update()

    def set_opacity(self, opacity: float) -> None:
        self.opacity = float(opacity)
        self._rebuild_overlay()
        self._rebuild_live()

    def set_overlays_visible(self, visible: bool) -> None:
        self.overlays_visible = bool(visible)
        self.update()

    def _rebuild_overlay(self) -> None:
        self._overlay = None
        if self.image is not None:
            self._overlay = render_overlay(
                self._items, self.image.width, self.image.height, self.opacity
            )
        self.update()

    def _rebuild_live(self) -> None:
        self._live = None
        if self.image is not None and self._live_mask is not None:
            item = OverlayItem(-1, self._live_mask, self._live_color, selected=True)
            self._live = render_overlay(
                [item], self.image.width, self.image.height, min(1.0, self.opacity + 0.15)
            )
        self.update()

    # ------------------------------------------------------------------ tools
    def set_tool(self, tool: Tool) -> None:
        """Use `tool`; a stroke or polygon in progress is dropped."""
        self.cancel_gesture()
        self.tool = tool
        self._restore_cursor()
        self.update()

    def _restore_cursor(self) -> None:
        if self.tool is Tool.SAM:
            self.unsetCursor()
        else:
            self.setCursor(Qt.CursorShape.CrossCursor)

    def set_brush_radius(self, radius: float) -> None:
        self.brush_radius = float(np.clip(radius, MIN_RADIUS, MAX_RADIUS))
        self.update()

    def set_tool_color(self, color: tuple[int, int, int]) -> None:
        self.tool_color = tuple(color)

    def set_erase_target(self, mask: np.ndarray | None) -> None:
        """The selected annotation's HxW bool mask: the eraser's preview darkens only the
        pixels it would remove (None: the whole stroke)."""
        self.erase_target = mask

    @property
    def stroking(self) -> bool:
        return self._stroke is not None

    @property
    def polygon(self) -> list[tuple[float, float]]:
        """The vertices placed so far ((x, y) image pixels)."""
        return list(self._polygon)

    def take_polygon(self) -> np.ndarray | None:
        """Close the polygon: its Nx2 vertices (and the canvas forgets them), or None (and it
        keeps them) while it has fewer than 3."""
        if len(self._polygon) < 3:
            return None
        vertices = np.array(self._polygon, np.float64)
        self._polygon = []
        self.update()
        return vertices

    def remove_last_vertex(self) -> bool:
        if not self._polygon:
            return False
        self._polygon.pop()
        self.update()
        return True

    def cancel_gesture(self) -> bool:
        """Drop a stroke or polygon in progress; False when there was none."""
        had = self._stroke is not None or bool(self._polygon)
        self._stroke = self._stroke_mask = self._stroke_rgba = None
        self._polygon = []
        if had:
            self.update()
        return had

    def stroke_preview(self) -> np.ndarray | None:
        """HxW bool: the pixels of the stroke being drawn (what releasing it will edit)."""
        return self._stroke_mask

    def _start_stroke(self, x: float, y: float) -> None:
        height, width = self.image.height, self.image.width
        self._stroke = [(x, y)]
        self._stroke_mask = np.zeros((height, width), bool)
        step = overlay_step(width, height)
        self._stroke_rgba = np.zeros(
            (math.ceil(height / step), math.ceil(width / step), 4), np.uint8
        )
        self._extend_stroke(x, y)

    def _extend_stroke(self, x: float, y: float) -> None:
        a = self._stroke[-1]
        if (x, y) != a:
            self._stroke.append((x, y))
        box = capsule_into(self._stroke_mask, a, (x, y), self.brush_radius)
        if box is None:
            return
        r0, r1, c0, c1 = box
        step = overlay_step(self.image.width, self.image.height)
        o0, o1 = r0 // step, -(-r1 // step)
        p0, p1 = c0 // step, -(-c1 // step)
        sub = self._stroke_mask[o0 * step : o1 * step : step, p0 * step : p1 * step : step]
        if self.tool is Tool.ERASER:
            color = _premultiplied_bgra((20, 20, 20), 190)
            target = self.erase_target
            if target is not None and target.shape == self._stroke_mask.shape:
                sub = sub & target[o0 * step : o1 * step : step, p0 * step : p1 * step : step]
        else:
            alpha = int(round(255 * min(1.0, self.opacity + 0.15)))
            color = _premultiplied_bgra(self.tool_color, alpha)
        self._stroke_rgba[o0:o1, p0:p1][sub] = color
        self.update()

    def _finish_stroke(self) -> None:
        points = np.array(self._stroke, np.float64)
        erase = self.tool is Tool.ERASER
        self.stroke_finished.emit(points, erase)
        self._stroke = self._stroke_mask = self._stroke_rgba = None
        self.update()

    def _polygon_click(self, position: QPointF) -> None:
        if len(self._polygon) >= 3:
            first = self.image_to_widget(*self._polygon[0])
            delta = position - first
            if math.hypot(delta.x(), delta.y()) <= CLOSE_TOLERANCE:
                self.polygon_closed.emit(self.take_polygon())
                return
        self._polygon.append(self.widget_to_image(position))
        self.update()

    # ------------------------------------------------------------------ view
    def fit(self) -> None:
        """Scale the whole image to the widget, centred (F)."""
        if self.image is None or self.width() < 2 or self.height() < 2:
            self._fit_pending = True
            self.update()
            return
        self._fit_pending = False
        margin = 8
        scale = min(
            (self.width() - 2 * margin) / self.image.width,
            (self.height() - 2 * margin) / self.image.height,
        )
        self.scale = float(np.clip(scale, MIN_ZOOM, MAX_ZOOM))
        self.offset = QPointF(
            (self.width() - self.image.width * self.scale) / 2,
            (self.height() - self.image.height * self.scale) / 2,
        )
        self.view_changed.emit(self.scale)
        self.update()

    def zoom_by(self, factor: float, anchor: QPointF | None = None) -> None:
        """Zoom by `factor` keeping the image point under `anchor` (widget) fixed."""
        if self.image is None:
            return
        anchor = anchor if anchor is not None else QPointF(self.width() / 2, self.height() / 2)
        x, y = self.widget_to_image(anchor)
        self.scale = float(np.clip(self.scale * factor, MIN_ZOOM, MAX_ZOOM))
        moved = self.image_to_widget(x, y)
        self.offset += anchor - moved
        self.view_changed.emit(self.scale)
        self.update()

    def pan_by(self, dx: float, dy: float) -> None:
        self.offset += QPointF(dx, dy)
        self.update()

    def resizeEvent(self, event) -> None:
        if self._fit_pending:
            self.fit()
        else:  # keep the centre where it was
            delta = QPointF(
                event.size().width() - event.oldSize().width(),
                event.size().height() - event.oldSize().height(),
            )
            if event.oldSize().width() > 0:
                self.offset += delta / 2
        super().resizeEvent(event)

    # ------------------------------------------------------------------ painting (pure)
    def paintEvent(self, event) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), QColor(38, 40, 44))
        if self.image is None:
            painter.setPen(QColor(170, 170, 170))
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self.message)
            return
        visible = self._image_rect().intersected(QRectF(self.rect()))
        if visible.isEmpty():
            return
        self._draw_image(painter, visible)
        if self.overlays_visible:
            for layer in (self._overlay, self._proposals):
                if layer is not None:
                    self._draw_layer(painter, visible, *layer)
            if self._hover is not None:
                self._draw_patch(painter, *self._hover)
            self._draw_scores(painter)
            if self._live is not None:
                self._draw_layer(painter, visible, *self._live)
            self._draw_prompts(painter)
        if self._stroke_rgba is not None:
            self._draw_layer(painter, visible, self._rgba_image(self._stroke_rgba), self._step())
        self._draw_polygon(painter)
        self._draw_drag(painter)
        self._draw_brush_outline(painter)

    def _step(self) -> int:
        return overlay_step(self.image.width, self.image.height)

    @staticmethod
    def _rgba_image(rgba: np.ndarray) -> QImage:
        height, width = rgba.shape[:2]
        return QImage(
            rgba.data, width, height, width * 4, QImage.Format.Format_ARGB32_Premultiplied
        )

    def _draw_polygon(self, painter: QPainter) -> None:
        if not self._polygon:
            return
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        points = [self.image_to_widget(x, y) for x, y in self._polygon]
        color = QColor(*self.tool_color)
        for pen in (QPen(QColor(0, 0, 0, 160), 3), QPen(color, 1.5)):
            painter.setPen(pen)
            for a, b in zip(points[:-1], points[1:], strict=True):
                painter.drawLine(a, b)
            if self._cursor is not None:
                painter.drawLine(points[-1], self._cursor)
        painter.setPen(QPen(QColor(255, 255, 255), 1.5))
        painter.setBrush(color)
        for point in points[1:]:
            painter.drawEllipse(point, 3, 3)
        near = self._cursor is not None and len(points) >= 3
        if near:
            delta = self._cursor - points[0]
            near = math.hypot(delta.x(), delta.y()) <= CLOSE_TOLERANCE
        painter.setBrush(QColor(255, 255, 255) if near else color)
        painter.drawEllipse(points[0], 6 if near else 4.5, 6 if near else 4.5)

    def _draw_brush_outline(self, painter: QPainter) -> None:
        """The tip at the cursor: a circle of the brush radius (image pixels) at this zoom, never
        smaller than a few screen pixels, white over a dark ring so it reads on any image."""
        if self.tool not in (Tool.BRUSH, Tool.ERASER) or self._cursor is None:
            return
        x, y = self.widget_to_image(self._cursor)
        centre = self.image_to_widget(x, y)
        radius = max(self.brush_radius * self.scale, 2.0)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.setPen(QPen(QColor(0, 0, 0, 200), 3))
        painter.drawEllipse(centre, radius, radius)
        dash = Qt.PenStyle.DashLine if self.tool is Tool.ERASER else Qt.PenStyle.SolidLine
        painter.setPen(QPen(QColor(255, 255, 255), 1.2, dash))
        painter.drawEllipse(centre, radius, radius)

    def _source_rect(self, visible: QRectF, level_scale: float) -> QRectF:
        """The part of an image (at 1/level_scale resolution) that lands in widget rect `visible`."""
        left = (visible.left() - self.offset.x()) / self.scale / level_scale
        top = (visible.top() - self.offset.y()) / self.scale / level_scale
        return QRectF(
            left,
            top,
            visible.width() / self.scale / level_scale,
            visible.height() / self.scale / level_scale,
        )

    def _draw_image(self, painter: QPainter, visible: QRectF) -> None:
        levels = self.image.levels
        # The coarsest level that still has at least one pixel per screen pixel.
        index = 0
        while index + 1 < len(levels) and self.scale * (2 ** (index + 1)) <= 1.0:
            index += 1
        level = levels[index]
        level_scale = self.image.width / level.width()
        smooth = self.scale * level_scale < 1.0
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, smooth)
        painter.drawImage(visible, level, self._source_rect(visible, level_scale))

    def _draw_layer(self, painter: QPainter, visible: QRectF, layer: QImage, step: int) -> None:
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        painter.drawImage(visible, layer, self._source_rect(visible, step))

    def _draw_patch(self, painter: QPainter, patch: QImage, step: int, row: int, col: int) -> None:
        """A layer that covers only overlay pixels [row, row + h) x [col, col + w) at 1/step."""
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, False)
        size = step * self.scale
        target = QRectF(
            self.offset.x() + col * size,
            self.offset.y() + row * size,
            patch.width() * size,
            patch.height() * size,
        )
        painter.drawImage(target, patch)

    def _draw_prompts(self, painter: QPainter) -> None:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        if self._box is not None:
            x0, y0, x1, y1 = (float(v) for v in self._box)
            pen = QPen(BOX_COLOR, 2, Qt.PenStyle.DashLine)
            painter.setPen(pen)
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawRect(QRectF(self.image_to_widget(x0, y0), self.image_to_widget(x1, y1)))
        for (x, y), label in zip(self._points, self._labels, strict=True):
            centre = self.image_to_widget(float(x), float(y))
            painter.setPen(QPen(QColor(255, 255, 255), 2))
            painter.setBrush(FOREGROUND if label == 1 else BACKGROUND)
            painter.drawEllipse(centre, 6, 6)
            painter.setPen(QPen(QColor(255, 255, 255), 2))
            painter.drawLine(centre + QPointF(-3, 0), centre + QPointF(3, 0))
            if label == 1:
                painter.drawLine(centre + QPointF(0, -3), centre + QPointF(0, 3))

    def _draw_scores(self, painter: QPainter) -> None:
        for x, y, text in self._scores:
            corner = self.image_to_widget(x, y)
            rect = painter.fontMetrics().boundingRect(text).adjusted(-2, -1, 2, 1)
            rect.moveTopLeft(corner.toPoint())
            painter.fillRect(rect, QColor(0, 0, 0, 160))
            painter.setPen(QColor(255, 255, 255))
            painter.drawText(rect, Qt.AlignmentFlag.AlignCenter, text)

    def _draw_drag(self, painter: QPainter) -> None:
        if self._press is None or self._drag_now is None or not self._is_drag(self._drag_now):
            return
        painter.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        painter.setPen(QPen(BOX_COLOR, 1.5, Qt.PenStyle.DashLine))
        painter.setBrush(QColor(255, 200, 0, 30))
        painter.drawRect(QRectF(self._press, self._drag_now).normalized())

    # ------------------------------------------------------------------ input
    def _is_drag(self, position: QPointF) -> bool:
        delta = position - self._press
        return max(abs(delta.x()), abs(delta.y())) > CLICK_TOLERANCE

    def mousePressEvent(self, event: QMouseEvent) -> None:
        position = event.position()
        button = event.button()
        if button == Qt.MouseButton.MiddleButton or (
            button == Qt.MouseButton.LeftButton and self._space_down
        ):
            self._pan_from = position
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
        elif (
            button == Qt.MouseButton.LeftButton
            and self.image is not None
            and (event.modifiers() & Qt.KeyboardModifier.ControlModifier)
        ):
            x, y = self.widget_to_image(position)
            additive = bool(event.modifiers() & Qt.KeyboardModifier.ShiftModifier)
            self.select_at.emit(x, y, additive)
        elif (
            button == Qt.MouseButton.LeftButton
            and self.image is not None
            and (self.tool in (Tool.BRUSH, Tool.ERASER))
        ):
            self._start_stroke(*self.widget_to_image(position))
        elif (
            button == Qt.MouseButton.LeftButton
            and self.image is not None
            and (self.tool is Tool.POLYGON)
        ):
            self._polygon_click(position)
        elif button == Qt.MouseButton.LeftButton:
            self._press, self._drag_now = position, position
        elif button == Qt.MouseButton.RightButton and self.tool is not Tool.SAM:
            pass
        elif button == Qt.MouseButton.RightButton:
            x, y = self.widget_to_image(position)
            if self._inside(x, y):
                self.point_added.emit(x, y, False)
        event.accept()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        position = event.position()
        self._cursor = position
        if self._pan_from is not None:
            delta = position - self._pan_from
            self._pan_from = position
            self.pan_by(delta.x(), delta.y())
        elif self._stroke is not None:
            self._extend_stroke(*self.widget_to_image(position))
        elif self.tool is not Tool.SAM:
            self.update()  # the tip outline or the polygon's rubber band follows
        elif self._press is not None:
            self._drag_now = position
            self.update()
        if self.image is not None:
            x, y = self.widget_to_image(position)
            inside = self._inside(x, y)
            self.cursor_moved.emit(x if inside else float("nan"), y if inside else float("nan"))

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        position = event.position()
        if self._pan_from is not None and event.button() in (
            Qt.MouseButton.MiddleButton,
            Qt.MouseButton.LeftButton,
        ):
            self._pan_from = None
            self._restore_cursor()
            return
        if event.button() == Qt.MouseButton.LeftButton and self._stroke is not None:
            self._extend_stroke(*self.widget_to_image(position))
            self._finish_stroke()
            return
        if event.button() != Qt.MouseButton.LeftButton or self._press is None:
            return
        press, self._press, self._drag_now = self._press, None, None
        self.update()
        if self.image is None:
            return
        if max(abs((position - press).x()), abs((position - press).y())) <= CLICK_TOLERANCE:
            x, y = self.widget_to_image(press)
            if self._inside(x, y):
                self.point_added.emit(x, y, True)
            return
        x0, y0 = self._clamp(*self.widget_to_image(press))
        x1, y1 = self._clamp(*self.widget_to_image(position))
        if self.find_mode and event.modifiers() & Qt.KeyboardModifier.ShiftModifier:
            self.example_box.emit(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
            return
        self.box_drawn.emit(x0, y0, x1, y1)

    def _clamp(self, x: float, y: float) -> tuple[float, float]:
        return (
            float(np.clip(x, 0, self.image.width - 1)),
            float(np.clip(y, 0, self.image.height - 1)),
        )

    def wheelEvent(self, event: QWheelEvent) -> None:
        notches = event.angleDelta().y() / 120.0
        if notches:
            self.zoom_by(WHEEL_STEP**notches, event.position())
        event.accept()

    def keyPressEvent(self, event) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space_down = True
            self.setCursor(Qt.CursorShape.OpenHandCursor)
            return
        super().keyPressEvent(event)

    def keyReleaseEvent(self, event) -> None:
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space_down = False
            if self._pan_from is None:
                self._restore_cursor()
            return
        super().keyReleaseEvent(event)

    def leaveEvent(self, event) -> None:
        self._cursor = None
        self.update()
        self.cursor_moved.emit(float("nan"), float("nan"))
        super().leaveEvent(event)
