"""The clicking protocol of interactive-segmentation benchmarks (RITM, SimpleClick, SAM's NoC).

A simulated person clicks at the centre of the largest error, as in the SAM paper's NoC@85/90:

- click 1 is positive, at the object pixel farthest from the object's boundary;
- each next click goes to the larger error: of the false-negative region (object not predicted)
  and the false-positive region (predicted outside the object), the one whose most interior pixel
  lies farther from that region's boundary gets the click there, positive for a false negative,
  negative for a false positive; positive on a tie;
- "farthest from the boundary" is the Euclidean distance transform of the region padded by one
  background pixel on every side (so the image border counts as boundary), and among equal
  distances the first pixel in row-major order wins;
- when both error regions are empty the object is done: IoU 1.0 from then on.

Masks are HxW bool arrays in image pixels; a click is (x, y, label) with x the column, y the row
and label 1 (positive) or 0 (negative). Pure numpy plus OpenCV's exact distance transform: no Qt,
no torch, no model, so the same code drives every engine and the reference in the tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Click:
    """x: column, y: row (image pixels); positive: True for object, False for background."""

    x: int
    y: int
    positive: bool

    def as_list(self) -> list[int]:
        """[x, y, 1 or 0], as the eval report writes it."""
        return [self.x, self.y, 1 if self.positive else 0]


def distance_to_boundary(region: np.ndarray) -> np.ndarray:
    """HxW float32: each pixel of `region` (HxW bool) its Euclidean distance to the nearest pixel
    outside it, the image being padded by one pixel outside `region`; 0 outside `region`.

    Exact (OpenCV's DIST_MASK_PRECISE L2 transform); computed on the region's bounding box plus
    a one-pixel margin, which gives the same distances: a pixel outside that margin is never
    nearer than the margin pixel got by clamping its coordinates into the box.
    """
    import cv2

    region = np.asarray(region, dtype=bool)
    out = np.zeros(region.shape, np.float32)
    rows = np.flatnonzero(region.any(axis=1))
    if len(rows) == 0:
        return out
    cols = np.flatnonzero(region.any(axis=0))
    y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    padded = np.pad(region[y0:y1, x0:x1], 1).astype(np.uint8)
    distances = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    out[y0:y1, x0:x1] = distances[1:-1, 1:-1]
    return out


def farthest_point(region: np.ndarray) -> tuple[int, int, float] | None:
    """(x, y, distance) of the pixel of `region` (HxW bool) farthest from its boundary, the
    first in row-major order among equals; None when `region` is empty."""
    distances = distance_to_boundary(region)
    index = int(np.argmax(distances))  # argmax returns the first maximum in row-major order
    best = float(distances.flat[index])
    if best <= 0.0:
        return None
    y, x = divmod(index, distances.shape[1])
    return int(x), int(y), best


def next_click(truth: np.ndarray, prediction: np.ndarray | None) -> Click | None:
    """The next click on the object `truth` (HxW bool) given the current `prediction` (HxW bool,
    or None before the first click); None when the prediction equals the object (done).

    Raises ValueError when `truth` is empty or the shapes differ."""
    truth = np.asarray(truth, dtype=bool)
    if prediction is None:
        pick = farthest_point(truth)
        if pick is None:
            raise ValueError("the object's mask is empty")
        return Click(pick[0], pick[1], True)
    prediction = np.asarray(prediction, dtype=bool)
    if prediction.shape != truth.shape:
        raise ValueError(f"prediction {prediction.shape} and object {truth.shape} differ in size")
    false_negative = farthest_point(truth & ~prediction)
    false_positive = farthest_point(prediction & ~truth)
    if false_negative is None and false_positive is None:
        return None
    if false_positive is None or (
        false_negative is not None and false_negative[2] >= false_positive[2]
    ):
        return Click(false_negative[0], false_negative[1], True)
    return Click(false_positive[0], false_positive[1], False)


def iou(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union over every pixel of the image (1.0 when both are empty)."""
    prediction = np.asarray(prediction, dtype=bool)
    truth = np.asarray(truth, dtype=bool)
    union = int(np.count_nonzero(prediction | truth))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(prediction & truth)) / union


def padded_ious(ious: Sequence[float], max_clicks: int) -> list[float]:
    """IoU after clicks 1..max_clicks: an object finished early (no error left) keeps 1.0."""
    values = [float(v) for v in ious[:max_clicks]]
    return values + [1.0] * (max_clicks - len(values))


def clicks_to_reach(ious: Sequence[float], threshold: float, max_clicks: int) -> int:
    """NoC@threshold of one object: the first click (1-based) whose IoU is >= threshold, or
    max_clicks when none is."""
    for index, value in enumerate(padded_ious(ious, max_clicks)):
        if value >= threshold:
            return index + 1
    return max_clicks


def reaches(ious: Sequence[float], threshold: float, max_clicks: int) -> bool:
    """Whether the object's IoU gets to `threshold` within max_clicks."""
    return any(value >= threshold for value in padded_ious(ious, max_clicks))


def mean_noc(objects_ious: Sequence[Sequence[float]], threshold: float, max_clicks: int) -> float:
    """Mean NoC@threshold over objects (each a list of IoU per click); nan when there are none."""
    if not objects_ious:
        return float("nan")
    return float(np.mean([clicks_to_reach(v, threshold, max_clicks) for v in objects_ious]))


def mean_iou_curve(objects_ious: Sequence[Sequence[float]], max_clicks: int) -> list[float]:
    """Mean IoU over objects after clicks 1..max_clicks (finished objects count 1.0)."""
    if not objects_ious:
        return [float("nan")] * max_clicks
    table = np.array([padded_ious(v, max_clicks) for v in objects_ious], np.float64)
    return [float(v) for v in table.mean(axis=0)]
