"""The pixel operations of hand editing against brute-force definitions on small arrays.

Brute force works per pixel centre (x = j, y = i) in exact rational arithmetic (Fraction), so
the fast versions are checked at the boundary too (integer coordinates put many centres on it).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from annotator.core.mask_edit import (
    changed_pixels,
    components,
    disc,
    fill_holes,
    polygon_mask,
    remove_islands,
    smooth,
    stroke_mask,
)


def _segment_distance2(p, a, b) -> Fraction:
    """Exact squared distance from point p to segment a-b."""
    px, py = (Fraction(v) for v in p)
    ax, ay = (Fraction(v) for v in a)
    bx, by = (Fraction(v) for v in b)
    dx, dy = bx - ax, by - ay
    length2 = dx * dx + dy * dy
    t = Fraction(0) if length2 == 0 else ((px - ax) * dx + (py - ay) * dy) / length2
    t = min(Fraction(1), max(Fraction(0), t))
    cx, cy = ax + t * dx - px, ay + t * dy - py
    return cx * cx + cy * cy


def _brute_stroke(shape, points, radius) -> np.ndarray:
    out = np.zeros(shape, bool)
    r2 = Fraction(radius) ** 2
    segments = list(zip(points[:-1], points[1:], strict=True)) or [(points[0], points[0])]
    for i in range(shape[0]):
        for j in range(shape[1]):
            out[i, j] = any(_segment_distance2((j, i), a, b) <= r2 for a, b in segments)
    return out


def _on_segment(p, a, b) -> bool:
    px, py = (Fraction(v) for v in p)
    ax, ay = (Fraction(v) for v in a)
    bx, by = (Fraction(v) for v in b)
    cross = (bx - ax) * (py - ay) - (by - ay) * (px - ax)
    return cross == 0 and min(ax, bx) <= px <= max(ax, bx) and min(ay, by) <= py <= max(ay, by)


def _brute_polygon(shape, vertices) -> np.ndarray:
    """Inside (even-odd, a ray towards -x) or on an edge, per centre, exactly."""
    out = np.zeros(shape, bool)
    edges = list(zip(vertices, vertices[1:] + vertices[:1], strict=True))
    for i in range(shape[0]):
        for j in range(shape[1]):
            if any(_on_segment((j, i), a, b) for a, b in edges):
                out[i, j] = True
                continue
            crossings = 0
            for (x0, y0), (x1, y1) in edges:
                x0, y0, x1, y1 = (Fraction(v) for v in (x0, y0, x1, y1))
                if min(y0, y1) <= i < max(y0, y1):
                    x = x0 + (i - y0) * (x1 - x0) / (y1 - y0)
                    crossings += x < j
            out[i, j] = crossings % 2 == 1
    return out


@pytest.mark.parametrize("seed", range(12))
def test_stroke_is_every_centre_within_the_radius_of_the_path(seed):
    rng = np.random.default_rng(seed)
    shape = (17, 23)
    count = int(rng.integers(1, 5))
    if seed % 2:  # integer coordinates and radii: many centres exactly on the boundary
        points = rng.integers(-3, 26, (count, 2)).astype(float)
        radius = float(rng.integers(0, 5))
    else:
        points = rng.uniform(-3, 26, (count, 2))
        radius = float(rng.uniform(0, 5))
    expected = _brute_stroke(shape, [tuple(p) for p in points], radius)
    np.testing.assert_array_equal(stroke_mask(shape, points, radius), expected)


def test_a_click_is_a_disc_and_radius_zero_is_the_centre_only():
    out = stroke_mask((7, 7), [(3, 3)], 2)
    np.testing.assert_array_equal(out, np.pad(disc(2), 1))
    assert out.sum() == 13
    assert stroke_mask((7, 7), [(3, 3)], 0).sum() == 1
    assert stroke_mask((7, 7), [(3.5, 3)], 0).sum() == 0
    # A horizontal segment of radius 1 at integer centres: three rows, ends rounded.
    out = stroke_mask((5, 9), [(2, 2), (6, 2)], 1)
    assert out[1, 2:7].all() and out[2, 1:8].all() and out[3, 2:7].all() and out.sum() == 17


@pytest.mark.parametrize("seed", range(12))
def test_polygon_is_every_centre_inside_or_on(seed):
    rng = np.random.default_rng(100 + seed)
    shape = (15, 19)
    count = int(rng.integers(3, 7))
    if seed % 2:
        vertices = rng.integers(-2, 21, (count, 2)).astype(float)
    else:
        vertices = rng.uniform(-2, 21, (count, 2))
    vertices = [tuple(v) for v in vertices]
    np.testing.assert_array_equal(polygon_mask(shape, vertices), _brute_polygon(shape, vertices))


def test_polygon_edges_and_vertices_count():
    square = [(1, 1), (4, 1), (4, 3), (1, 3)]
    out = polygon_mask((6, 6), square)
    expected = np.zeros((6, 6), bool)
    expected[1:4, 1:5] = True
    np.testing.assert_array_equal(out, expected)
    # A degenerate (flat) polygon is its edges.
    flat = polygon_mask((5, 5), [(0, 2), (4, 2), (2, 2)])
    assert flat[2].all() and flat.sum() == 5


def _components_brute(mask, neighbours):
    """Label components by flood fill (explicit neighbour offsets)."""
    labels = np.zeros(mask.shape, int)
    current = 0
    for start in zip(*np.nonzero(mask), strict=True):
        if labels[start]:
            continue
        current += 1
        todo = [start]
        labels[start] = current
        while todo:
            i, j = todo.pop()
            for di, dj in neighbours:
                a, b = i + di, j + dj
                if 0 <= a < mask.shape[0] and 0 <= b < mask.shape[1] and mask[a, b]:
                    if not labels[a, b]:
                        labels[a, b] = current
                        todo.append((a, b))
    return labels, current


FOUR = ((0, 1), (1, 0), (0, -1), (-1, 0))
EIGHT = FOUR + ((1, 1), (1, -1), (-1, 1), (-1, -1))


@pytest.mark.parametrize("seed", range(8))
def test_fill_holes_fills_background_not_reaching_the_border_4_connected(seed):
    mask = np.random.default_rng(seed).random((14, 16)) < 0.55
    labels, count = _components_brute(~mask, FOUR)
    expected = mask.copy()
    border = set(labels[0]) | set(labels[-1]) | set(labels[:, 0]) | set(labels[:, -1])
    for n in range(1, count + 1):
        if n not in border:
            expected[labels == n] = True
    np.testing.assert_array_equal(fill_holes(mask), expected)


def test_fill_holes_a_diagonal_gap_does_not_leak():
    ring = np.zeros((5, 5), bool)
    ring[1, 1:4] = ring[3, 1:4] = ring[1:4, 1] = ring[1:4, 3] = True
    ring[1, 3] = False  # the hole's background touches the outside only diagonally
    out = fill_holes(ring)
    assert out[2, 2] and out.sum() == ring.sum() + 1


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("min_pixels", [1, 2, 3, 6])
def test_remove_islands_drops_small_8_connected_parts(seed, min_pixels):
    mask = np.random.default_rng(seed).random((14, 16)) < 0.3
    labels, count = _components_brute(mask, EIGHT)
    expected = mask.copy()
    for n in range(1, count + 1):
        if (labels == n).sum() < min_pixels:
            expected[labels == n] = False
    np.testing.assert_array_equal(remove_islands(mask, min_pixels), expected)
    parts = components(mask)
    assert len(parts) == count
    assert sorted(int(p.sum()) for p in parts) == sorted(
        int((labels == n).sum()) for n in range(1, count + 1)
    )


def _erode(mask, kernel):
    r = kernel.shape[0] // 2
    out = np.zeros_like(mask)
    for i in range(mask.shape[0]):
        for j in range(mask.shape[1]):
            ok = True
            for di, dj in zip(*np.nonzero(kernel), strict=True):
                a, b = i + di - r, j + dj - r
                inside = 0 <= a < mask.shape[0] and 0 <= b < mask.shape[1]
                if not (inside and mask[a, b]):
                    ok = False
                    break
            out[i, j] = ok
    return out


def _dilate(mask, kernel):
    r = kernel.shape[0] // 2
    out = np.zeros_like(mask)
    for i, j in zip(*np.nonzero(mask), strict=True):
        for di, dj in zip(*np.nonzero(kernel), strict=True):
            a, b = i + di - r, j + dj - r
            if 0 <= a < mask.shape[0] and 0 <= b < mask.shape[1]:
                out[a, b] = True
    return out


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("radius", [1, 2])
def test_smooth_is_opening_then_closing_with_a_disc(seed, radius):
    mask = np.random.default_rng(seed).random((12, 13)) < 0.6
    kernel = disc(radius)
    margin = 3 * radius  # the plane outside the image is background
    big = np.pad(mask, margin)
    opened = _dilate(_erode(big, kernel), kernel)
    closed = _erode(_dilate(opened, kernel), kernel)
    expected = closed[margin:-margin, margin:-margin]
    np.testing.assert_array_equal(smooth(mask, radius), expected)


def test_smooth_removes_a_spur_and_fills_a_pinhole():
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True
    mask[9, 15:19] = True  # a one-pixel spur
    mask[9, 9] = False  # a pinhole
    out = smooth(mask, 2)
    assert not out[9, 16:19].any()
    assert out[9, 9]
    assert changed_pixels(mask, out) >= 5


def test_disc_and_changed_pixels():
    assert disc(1).sum() == 5 and disc(2).sum() == 13 and disc(0).sum() == 1
    a = np.zeros((3, 3), bool)
    b = a.copy()
    b[0, 0] = b[2, 2] = True
    assert changed_pixels(a, b) == 2
