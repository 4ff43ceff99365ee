"""The benchmark clicker on synthetic masks whose answers are known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from annotator.core import clicker
from annotator.core.clicker import Click, distance_to_boundary, farthest_point, next_click


def _mask(height, width, *rects):
    """HxW bool with the rectangles (x0, y0, x1, y1), end-exclusive, set."""
    mask = np.zeros((height, width), bool)
    for x0, y0, x1, y1 in rects:
        mask[y0:y1, x0:x1] = True
    return mask


def _brute_force_distances(region: np.ndarray) -> np.ndarray:
    """Distance of each region pixel to the nearest pixel outside it, the image padded by one."""
    padded = np.pad(region, 1)
    outside = np.argwhere(~padded)
    out = np.zeros(region.shape)
    for y, x in np.argwhere(region):
        out[y, x] = np.sqrt(((outside - (y + 1, x + 1)) ** 2).sum(axis=1)).min()
    return out


def test_distance_transform_is_exact_euclidean_with_a_padded_border():
    rng = np.random.default_rng(3)
    for _ in range(5):
        region = rng.random((23, 31)) < 0.8  # touches the image border: the padding matters
        np.testing.assert_allclose(
            distance_to_boundary(region), _brute_force_distances(region), atol=1e-4
        )


def test_first_click_is_the_centre_of_a_square():
    truth = _mask(20, 30, (10, 4, 17, 11))  # 7x7: centre (13, 7), 4 pixels from outside
    assert next_click(truth, None) == Click(13, 7, True)
    assert farthest_point(truth) == (13, 7, 4.0)


def test_ties_go_to_the_first_pixel_in_row_major_order():
    # 4 wide, 2 high: the whole block is 1 from the outside; the top-left pixel wins.
    assert farthest_point(_mask(10, 10, (3, 5, 7, 7)))[:2] == (3, 5)
    # 6x4: rows 1-2 and columns 1-4 are all 2 from the outside; (x=1+3, y=1+3) is first.
    assert farthest_point(_mask(12, 12, (3, 3, 9, 7)))[:2] == (4, 4)
    # Two equal squares: the upper one, though it is the one on the right.
    two = _mask(20, 20, (12, 1, 17, 6), (2, 10, 7, 15))
    assert next_click(two, None) == Click(14, 3, True)


def test_the_image_border_counts_as_boundary():
    everything = np.ones((5, 7), bool)  # row 2 is 3 from the padding; so are columns 2..4
    assert farthest_point(everything) == (2, 2, 3.0)
    corner = _mask(30, 30, (0, 0, 9, 9))  # a 9x9 block in the corner: centre at (4, 4), 5 in
    assert farthest_point(corner) == (4, 4, 5.0)


def test_false_negative_branch_is_a_positive_click_in_the_missed_part():
    truth = _mask(40, 40, (5, 5, 35, 25))
    prediction = _mask(40, 40, (5, 5, 15, 25))  # the right 20x20 is missed
    assert next_click(truth, prediction) == Click(24, 14, True)


def test_false_positive_branch_is_a_negative_click_in_the_extra_part():
    truth = _mask(40, 60, (5, 5, 15, 15))
    prediction = truth | _mask(40, 60, (30, 10, 50, 30))  # a 20x20 block too many
    click = next_click(truth, prediction)
    assert click == Click(39, 19, False)
    assert click.as_list() == [39, 19, 0]


def test_the_larger_error_wins_and_a_tie_is_positive():
    truth = _mask(40, 60, (2, 2, 12, 12))
    small_miss = truth & ~_mask(40, 60, (2, 2, 5, 5))  # 3x3 missed: depth 2
    big_extra = small_miss | _mask(40, 60, (30, 5, 40, 15))  # 10x10 extra: depth 5
    assert not next_click(truth, big_extra).positive
    equal_extra = small_miss | _mask(40, 60, (30, 5, 33, 8))  # 3x3 extra: depth 2, a tie
    assert next_click(truth, equal_extra) == Click(3, 3, True)


def test_done_when_the_prediction_is_the_object():
    truth = _mask(10, 10, (2, 2, 6, 6))
    assert next_click(truth, truth.copy()) is None
    with pytest.raises(ValueError):
        next_click(np.zeros((5, 5), bool), None)
    with pytest.raises(ValueError):
        next_click(truth, np.zeros((5, 5), bool))


def test_iou_is_over_the_whole_image_and_noc_counts_clicks():
    truth = _mask(10, 10, (0, 0, 4, 5))  # 20 pixels
    assert clicker.iou(_mask(10, 10, (0, 0, 4, 4)), truth) == pytest.approx(16 / 20)
    assert clicker.iou(_mask(10, 10, (0, 0, 5, 5)), truth) == pytest.approx(20 / 25)
    assert clicker.iou(np.zeros((3, 3), bool), np.zeros((3, 3), bool)) == 1.0
    ious = [0.5, 0.86, 0.89, 0.93]
    assert clicker.clicks_to_reach(ious, 0.85, 20) == 2
    assert clicker.clicks_to_reach(ious, 0.9, 20) == 4
    assert clicker.clicks_to_reach(ious, 0.95, 4) == 4  # never: max-clicks
    assert clicker.clicks_to_reach([0.2, 1.0], 0.99, 5) == 2  # done early
    assert clicker.padded_ious([0.2, 1.0], 4) == [0.2, 1.0, 1.0, 1.0]
    assert not clicker.reaches(ious, 0.95, 4) and clicker.reaches(ious, 0.9, 4)
    assert clicker.mean_noc([ious, [0.95]], 0.9, 4) == pytest.approx((4 + 1) / 2)
    assert clicker.mean_iou_curve([[0.5, 0.7], [1.0]], 2) == pytest.approx([0.75, 0.85])
