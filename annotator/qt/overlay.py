"""Mask overlays as ARGB images, built once per change (never per paint).

Masks are composited in numpy inside each mask's bounding box, then wrapped in one premultiplied
ARGB32 QImage, which QPainter draws without conversion. Images above `MAX_OVERLAY_PIXELS` get an
overlay at a reduced resolution (every k-th pixel), drawn stretched over the image: a 100-MP
image would otherwise need a 400 MB overlay rebuilt on every accept.
"""

from __future__ import annotations

import math
import threading
import weakref
from dataclasses import dataclass

import numpy as np
from PySide6.QtGui import QImage

MAX_OVERLAY_PIXELS = 16_000_000


@dataclass(frozen=True)
class OverlayItem:
    """One mask to draw. mask: HxW bool at the image size; color: RGB 0..255."""

    key: int
    mask: np.ndarray
    color: tuple[int, int, int]
    selected: bool = False


def overlay_step(width: int, height: int) -> int:
    """Sampling step k so that the overlay of a width x height image stays under the budget."""
    return max(1, math.ceil(math.sqrt(width * height / MAX_OVERLAY_PIXELS)))


def _edges(mask: np.ndarray) -> np.ndarray:
    """Pixels of `mask` with a 4-neighbour outside it (the outline), HxW bool."""
    padded = np.pad(mask, 1)
    interior = (
        padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2]
    ) & padded[1:-1, 2:]
    return mask & ~interior


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def render_overlay(
    items: list[OverlayItem], width: int, height: int, opacity: float
) -> tuple[QImage, int] | None:
    """Composite `items` (later ones on top): translucent fills, opaque outlines.

    Returns (premultiplied ARGB32 QImage, step) where the QImage covers the whole image at
    1/step resolution, or None when there is nothing to draw.
    """
    if not items:
        return None
    step = overlay_step(width, height)
    out_h, out_w = math.ceil(height / step), math.ceil(width / step)
    rgba = np.zeros((out_h, out_w, 4), np.uint8)
    fill_alpha = int(round(255 * min(max(opacity, 0.0), 1.0)))
    for item in items:
        mask = item.mask[::step, ::step] if step > 1 else item.mask
        box = _bbox(mask)
        if box is None:
            continue
        r0, r1, c0, c1 = box
        sub = mask[r0:r1, c0:c1]
        region = rgba[r0:r1, c0:c1]
        alpha = min(255, fill_alpha + 70) if item.selected else fill_alpha
        region[sub] = (*item.color, alpha)
        edge = _edges(sub)
        outline = (255, 255, 255) if item.selected else item.color
        region[edge] = (*outline, 255)
        if item.selected:  # a second, coloured ring inside the white one reads on any background
            inner = _edges(sub & ~edge)
            region[inner] = (*item.color, 255)
    image = QImage(rgba.data, out_w, out_h, out_w * 4, QImage.Format.Format_RGBA8888)
    return image.convertToFormat(QImage.Format.Format_ARGB32_Premultiplied), step


# Proposal outlines cycle through light, saturated colours: neighbours stay distinguishable and
# none looks like an accepted (filled) annotation.
PROPOSAL_COLORS = (
    (0, 255, 255),
    (255, 128, 255),
    (255, 255, 0),
    (128, 255, 128),
    (255, 170, 80),
    (140, 180, 255),
)


def _sampled_crop(crop: np.ndarray, box: tuple[int, int, int, int], step: int):
    """The pixels of an h x w crop at (x0, y0) that fall on the overlay's grid of every
    `step`-th image pixel, and the overlay (row, col) of the first one."""
    x0, y0 = box[0], box[1]
    first_y, first_x = y0 + (-y0 % step), x0 + (-x0 % step)
    return crop[first_y - y0 :: step, first_x - x0 :: step], first_y // step, first_x // step


def _to_qimage(rgba: np.ndarray) -> QImage:
    height, width = rgba.shape[:2]
    image = QImage(rgba.data, width, height, width * 4, QImage.Format.Format_RGBA8888)
    return image.convertToFormat(QImage.Format.Format_ARGB32_Premultiplied)


def outline_pixels(proposal, width: int, height: int) -> np.ndarray:
    """Flat indices, into the overlay grid of a width x height image, of the outline of
    `proposal` (an object with `crop()` and `box`, e.g. CompactProposal). Cached per proposal
    and numpy only, so the worker can make them before the window draws (200 SAM 3 instances
    of a 1-MP image take seconds: never on the GUI thread)."""
    step = overlay_step(width, height)
    with _OUTLINES_LOCK:
        cached = _OUTLINES.get(proposal)
    if cached is not None and cached[0] == (step, width, height):
        return cached[1]
    sub, row, col = _sampled_crop(proposal.crop(), proposal.box, step)
    rows, cols = np.nonzero(_edges(sub))
    pixels = (rows + row) * math.ceil(width / step) + (cols + col)
    with _OUTLINES_LOCK:
        _OUTLINES[proposal] = ((step, width, height), pixels)
    return pixels


_OUTLINES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_OUTLINES_LOCK = threading.Lock()


def render_outlines(proposals, width: int, height: int) -> tuple[QImage, int] | None:
    """Thin opaque outlines (no fill) of proposals (as in `outline_pixels`), coloured from
    PROPOSAL_COLORS in turn; (QImage, step) or None."""
    if not proposals:
        return None
    step = overlay_step(width, height)
    rgba = np.zeros((math.ceil(height / step), math.ceil(width / step), 4), np.uint8)
    pixels = rgba.view(np.uint32).reshape(-1)  # one word per pixel: 8x faster than 4 bytes
    colors = np.array([(*c, 255) for c in PROPOSAL_COLORS], np.uint8).view(np.uint32).ravel()
    for index, proposal in enumerate(proposals):
        pixels[outline_pixels(proposal, width, height)] = colors[index % len(colors)]
    return _to_qimage(rgba), step


def render_highlight(
    crop: np.ndarray,
    box: tuple[int, int, int, int],
    color: tuple[int, int, int],
    width: int,
    height: int,
    opacity: float,
) -> tuple[QImage, int, int, int] | None:
    """One mask (crop and box as in `render_outlines`) filled in `color` with a white outline:
    the proposal under the cursor, as it would look accepted.

    Returns (QImage, step, row, col) covering only the crop: its pixel (r, c) is overlay pixel
    (row + r, col + c), i.e. image pixels from ((col + c) * step, (row + r) * step); None when
    nothing of the mask falls on the overlay grid. Cheap enough to redo on every hover change.
    """
    step = overlay_step(width, height)
    sub, row, col = _sampled_crop(crop, box, step)
    if not sub.any():
        return None
    rgba = np.zeros((*sub.shape, 4), np.uint8)
    rgba[sub] = (*color, int(round(255 * min(max(opacity, 0.0), 1.0))))
    edge = _edges(sub)
    rgba[edge] = (255, 255, 255, 255)
    rgba[_edges(sub & ~edge)] = (*color, 255)
    return _to_qimage(rgba), step, row, col


def rgb_to_qimage(image: np.ndarray) -> QImage:
    """HxWx3 uint8 RGB numpy array -> QImage that owns a copy of the pixels."""
    height, width = image.shape[:2]
    image = np.ascontiguousarray(image)
    return QImage(image.data, width, height, width * 3, QImage.Format.Format_RGB888).copy()


def build_pyramid(image: QImage, min_side: int = 1024) -> list[QImage]:
    """[full, 1/2, 1/4, ...] smooth-scaled copies down to a long side near `min_side`.

    Drawing a zoomed-out 100-MP image from level 0 would resample 100 M pixels per frame; the
    canvas picks the level closest to the screen's resolution instead.
    """
    from PySide6.QtCore import Qt

    levels = [image]
    while max(levels[-1].width(), levels[-1].height()) > min_side * 2:
        last = levels[-1]
        levels.append(
            last.scaled(
                max(1, last.width() // 2),
                max(1, last.height() // 2),
                Qt.AspectRatioMode.IgnoreAspectRatio,
                Qt.TransformationMode.SmoothTransformation,
            )
        )
    return levels
