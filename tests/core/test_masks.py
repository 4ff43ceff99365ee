"""Masks <-> COCO forms: compressed RLE, uncompressed RLE, polygons (parts and holes)."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from annotator.core.masks import (
    decode_rle,
    encode_mask,
    mask_to_polygons,
    rle_area,
    rle_bbox,
    rle_strings_valid,
    segmentation_to_rle,
)


def _random_masks(count=40, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        h, w = rng.integers(1, 60, 2)
        yield rng.random((h, w)) < rng.random()


def test_encode_decode_round_trip_and_geometry():
    for mask in _random_masks():
        rle = encode_mask(mask)
        assert isinstance(rle["counts"], str)
        assert rle["size"] == list(mask.shape)
        np.testing.assert_array_equal(decode_rle(rle), mask)
        assert rle_area(rle) == int(mask.sum())
        if mask.any():
            ys, xs = np.nonzero(mask)
            expected = (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1)
            assert rle_bbox(rle) == tuple(float(v) for v in expected)


def test_rle_string_check_accepts_real_encodings_and_rejects_damaged_ones():
    rles = [encode_mask(m) for m in _random_masks(seed=1)]
    counts = [r["counts"] for r in rles]
    pixels = [r["size"][0] * r["size"][1] for r in rles]
    assert rle_strings_valid(counts, pixels).all()
    truncated = [c[:-1] if len(c) > 1 else c + "1" for c in counts]
    assert not rle_strings_valid(truncated, pixels).any()
    wrong_size = [p + 1 for p in pixels]
    assert not rle_strings_valid(counts, wrong_size).any()
    assert not rle_strings_valid(["", "é1", "\x01"], [4, 4, 4]).any()


def test_decode_refuses_corrupt_counts_instead_of_reading_garbage():
    rle = encode_mask(np.eye(8, dtype=bool))
    with pytest.raises(ValueError, match="corrupt"):
        decode_rle({"size": rle["size"], "counts": rle["counts"][:-2]})


def test_segmentation_forms_decode_like_pycocotools():
    h, w = 40, 50
    polygons = [[5, 5, 20, 5, 20, 20, 5, 20], [30, 25, 45, 25, 38, 38]]
    expected = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, h, w))).astype(
        bool
    )
    np.testing.assert_array_equal(decode_rle(segmentation_to_rle(polygons, h, w)), expected)
    # one polygon without the outer list (some writers do that)
    single = decode_rle(segmentation_to_rle(polygons[0], h, w))
    np.testing.assert_array_equal(
        single, mask_utils.decode(mask_utils.frPyObjects(polygons[:1], h, w))[..., 0].astype(bool)
    )
    mask = np.zeros((h, w), bool)
    mask[3:9, 10:30] = True
    np.testing.assert_array_equal(
        decode_rle(segmentation_to_rle({"size": [h, w], "counts": _runs(mask)}, h, w)), mask
    )
    compressed = encode_mask(mask)
    as_bytes = {"size": [h, w], "counts": compressed["counts"].encode()}
    assert segmentation_to_rle(as_bytes, h, w) == compressed


def _runs(mask: np.ndarray) -> list[int]:
    """Uncompressed COCO RLE counts (column-major, starting with background)."""
    flat = mask.T.reshape(-1).astype(np.int8)
    changes = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate(([0], changes, [flat.size]))
    runs = np.diff(bounds).tolist()
    return ([0] + runs) if flat[0] else runs


@pytest.mark.parametrize(
    "segmentation, reason",
    [
        ([[1, 2, 3, 4, 5]], "even number"),
        ([[1, 2, 3, 4]], "even number"),
        ([], "empty"),
        ([["a", 1, 2, 3, 4, 5]], "flat list of numbers"),
        ({"size": [10, 10], "counts": [5, 5]}, "sum to"),
        ({"size": [9, 10], "counts": [90]}, "does not match"),
        ({"size": [10, 10], "counts": "garbage!"}, "corrupt"),
        ({"size": [10, 10], "counts": 7}, "counts"),
        ("polygon", "must be a list"),
    ],
)
def test_undecodable_segmentations_say_why(segmentation, reason):
    with pytest.raises(ValueError, match=reason):
        segmentation_to_rle(segmentation, 10, 10)


def test_polygons_keep_every_part_and_count_holes():
    mask = np.zeros((60, 80), bool)
    mask[5:30, 5:30] = True
    mask[12:20, 12:20] = False  # a hole
    mask[40:55, 50:75] = True  # a second part
    mask[2, 70] = True  # a one-pixel part
    polygons = mask_to_polygons(mask)
    assert len(polygons.parts) == 3
    assert polygons.holes == 1
    assert polygons.tiny_parts == 1
    raster = mask_utils.decode(
        mask_utils.merge(mask_utils.frPyObjects(polygons.parts, 60, 80))
    ).astype(bool)
    assert raster[2, 70], "the one-pixel part is covered by its rectangle"
    filled = mask.copy()
    filled[12:20, 12:20] = True  # the hole is lost in this format
    iou = (raster & filled).sum() / (raster | filled).sum()
    assert iou > 0.9
    assert not raster[45, 10] and raster[45, 60]


def test_empty_mask_has_no_polygons():
    polygons = mask_to_polygons(np.zeros((5, 5), bool))
    assert polygons.parts == [] and polygons.holes == 0
