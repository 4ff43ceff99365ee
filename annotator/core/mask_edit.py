"""Exact pixel operations for editing masks by hand: brush strokes, polygons, clean-up.

Frame: a mask is an HxW bool array of original-image pixels; pixel (i, j) has its centre at
image coordinate (x = j, y = i), as the canvas maps it (segment_anything's frame). Every function
here is defined on pixel centres, exactly, and returns a new array (inputs are never changed).

- `stroke_mask`: the pixels whose centres lie at a distance of at most `radius` from a path
  (a capsule per segment; one point is a disc).
- `polygon_mask`: the pixels whose centres lie inside or on a polygon (even-odd rule, so a
  self-crossing polygon leaves its doubly covered part out; its edges always count).
- `fill_holes`: background regions (4-connected) that do not touch the border become foreground.
- `remove_islands`: foreground parts (8-connected) of fewer than `min_pixels` pixels go.
- `smooth`: morphological opening then closing with a disc of radius r (outside the image is
  background).

Pure numpy (cv2 for connected components and morphology, imported inside); small enough for the
GUI thread on the sizes one edits by hand.
"""

from __future__ import annotations

import numpy as np


def _as_points(points) -> np.ndarray:
    points = np.asarray(points, np.float64).reshape(-1, 2)
    if not np.isfinite(points).all():
        raise ValueError("points must be finite")
    return points


def _clip_range(lo: float, hi: float, size: int) -> tuple[int, int]:
    """Integer index range [start, stop) of pixel centres c with lo <= c <= hi, within size."""
    start = max(0, int(np.ceil(lo)))
    stop = min(size, int(np.floor(hi)) + 1)
    return start, max(start, stop)


def capsule_into(out: np.ndarray, a, b, radius: float) -> tuple[int, int, int, int] | None:
    """Set (in place) the pixels of `out` whose centres lie within `radius` of segment a-b
    ((x, y) image coordinates). Returns the touched (row0, row1, col0, col1) box, or None.

    Membership is decided without division: a centre p is inside when |p-a|^2 <= r^2, or
    |p-b|^2 <= r^2, or its projection falls inside the segment (0 <= (p-a).d <= |d|^2) and
    cross(d, p-a)^2 <= r^2 |d|^2, so integer inputs give exact answers at the boundary."""
    height, width = out.shape
    (ax, ay), (bx, by) = (float(v) for v in a), (float(v) for v in b)
    r = float(radius)
    if r < 0:
        return None
    r0, r1 = _clip_range(min(ay, by) - r, max(ay, by) + r, height)
    c0, c1 = _clip_range(min(ax, bx) - r, max(ax, bx) + r, width)
    if r0 >= r1 or c0 >= c1:
        return None
    ys = np.arange(r0, r1, dtype=np.float64)[:, None]
    xs = np.arange(c0, c1, dtype=np.float64)[None, :]
    px, py = xs - ax, ys - ay
    r2 = r * r
    inside = px * px + py * py <= r2
    qx, qy = xs - bx, ys - by
    inside |= qx * qx + qy * qy <= r2
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy
    if length2 > 0:
        dot = px * dx + py * dy
        cross = dx * py - dy * px
        inside |= (dot >= 0) & (dot <= length2) & (cross * cross <= r2 * length2)
    out[r0:r1, c0:c1] |= inside
    return r0, r1, c0, c1


def stroke_mask(shape: tuple[int, int], points, radius: float) -> np.ndarray:
    """HxW bool: the pixels whose centres lie within `radius` (image pixels) of the path through
    `points` (Nx2 (x, y) image coordinates; one point: a disc)."""
    points = _as_points(points)
    out = np.zeros(shape, bool)
    if len(points) == 1:
        capsule_into(out, points[0], points[0], radius)
    for a, b in zip(points[:-1], points[1:], strict=True):
        capsule_into(out, a, b, radius)
    return out


def polygon_mask(shape: tuple[int, int], vertices) -> np.ndarray:
    """HxW bool: the pixels whose centres lie inside or on the closed polygon `vertices`
    (Nx2 (x, y) image coordinates, N >= 3; the last vertex joins the first).

    Inside by the even-odd rule: a ray from the centre towards -x crosses the edges an odd number
    of times (an edge counts for rows y with min(y0, y1) <= y < max(y0, y1)); the centres on an
    edge or vertex are added. A crossing's x is one correctly rounded division, so integer
    vertices decide the boundary exactly."""
    vertices = _as_points(vertices)
    height, width = shape
    out = np.zeros(shape, bool)
    if len(vertices) < 3:
        raise ValueError("a polygon needs at least 3 vertices")
    parity = np.zeros((height, width + 1), np.int32)  # crossings counted at column index
    following = np.roll(vertices, -1, axis=0)
    for (x0, y0), (x1, y1) in zip(vertices, following, strict=True):
        if y0 == y1:
            if float(y0).is_integer() and 0 <= y0 < height:  # a horizontal edge on a row
                c0, c1 = _clip_range(min(x0, x1), max(x0, x1), width)
                out[int(y0), c0:c1] = True
            continue
        # Rows crossed (half-open) for the parity, and rows touched (closed) for the edge.
        lo, hi = min(y0, y1), max(y0, y1)
        closed0, closed1 = _clip_range(lo, hi, height)
        if closed0 >= closed1:
            continue
        rows = np.arange(closed0, closed1, dtype=np.float64)
        xs = x0 + (rows - y0) * (x1 - x0) / (y1 - y0)
        on = (xs == np.floor(xs)) & (xs >= 0) & (xs <= width - 1)
        out[rows[on].astype(np.intp), xs[on].astype(np.intp)] = True
        crossing = rows < hi
        # The centres j > x lie right of the crossing: +1 from column floor(x) + 1.
        first = np.clip(np.floor(xs[crossing]) + 1, 0, width).astype(np.intp)
        np.add.at(parity, (rows[crossing].astype(np.intp), first), 1)
    for x, y in vertices:  # a vertex on a pixel centre is on the polygon
        if float(x).is_integer() and float(y).is_integer() and 0 <= x < width and 0 <= y < height:
            out[int(y), int(x)] = True
    out |= (np.cumsum(parity, axis=1)[:, :width] % 2).astype(bool)
    return out


def fill_holes(mask: np.ndarray) -> np.ndarray:
    """`mask` with every background region (4-connected) that does not touch the image border
    made foreground."""
    import cv2

    mask = np.asarray(mask, bool)
    background = np.pad(~mask, 1, constant_values=True).astype(np.uint8)
    _, labels = cv2.connectedComponents(background, connectivity=4)
    outside = labels[0, 0]  # the padding ring joins every region that touches the border
    return mask | ((labels[1:-1, 1:-1] != outside) & ~mask)


def remove_islands(mask: np.ndarray, min_pixels: int) -> np.ndarray:
    """`mask` without its foreground parts (8-connected) of fewer than `min_pixels` pixels."""
    import cv2

    mask = np.asarray(mask, bool)
    if min_pixels <= 1 or not mask.any():
        return mask.copy()
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=8
    )
    keep = stats[:, cv2.CC_STAT_AREA] >= min_pixels
    keep[0] = False  # label 0 is the background
    return keep[labels]


def components(mask: np.ndarray) -> list[np.ndarray]:
    """The foreground parts (8-connected) of `mask`, each an HxW bool mask, in label order."""
    import cv2

    mask = np.asarray(mask, bool)
    count, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    return [labels == n for n in range(1, count)]


def disc(radius: int) -> np.ndarray:
    """(2r+1)x(2r+1) bool: the offsets (dy, dx) with dx^2 + dy^2 <= r^2."""
    r = int(radius)
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    return dx * dx + dy * dy <= r * r


def smooth(mask: np.ndarray, radius: int) -> np.ndarray:
    """Morphological opening then closing of `mask` with `disc(radius)`; pixels outside the
    image count as background throughout (computed on a margin of 2r, then cropped)."""
    import cv2

    mask = np.asarray(mask, bool)
    r = int(radius)
    if r <= 0:
        return mask.copy()
    kernel = disc(r).astype(np.uint8)
    padded = np.pad(mask, 2 * r).astype(np.uint8)
    border = {"borderType": cv2.BORDER_CONSTANT, "borderValue": 0}
    opened = cv2.dilate(cv2.erode(padded, kernel, **border), kernel, **border)
    closed = cv2.erode(cv2.dilate(opened, kernel, **border), kernel, **border)
    return closed[2 * r : -2 * r, 2 * r : -2 * r].astype(bool)


def changed_pixels(before: np.ndarray, after: np.ndarray) -> int:
    """How many pixels differ between two masks of the same shape."""
    return int(np.count_nonzero(np.asarray(before, bool) != np.asarray(after, bool)))
