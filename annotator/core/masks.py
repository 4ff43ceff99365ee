"""Masks and their COCO forms: compressed RLE, uncompressed RLE, polygons (every part, holes counted).

A mask is an HxW bool array in original-image pixels (row = Y, column = X). A compressed RLE is the
COCO dict `{"size": [H, W], "counts": str}` made by pycocotools (column-major run lengths, LEB128-like
ASCII). Polygons are lists of flat `[x0, y0, x1, y1, ...]` float lists in pixel coordinates.

pycocotools and cv2 are imported inside the functions that use them. Nothing reaches pycocotools
unchecked: sizes within `annotator.core.limits`, RLE sizes equal to their image's, counts that
cover the image exactly, polygons finite and near the image (its C code would crash otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from annotator.core.limits import polygon_problem, size_problem


def _mask_utils():
    from pycocotools import mask as mask_utils

    return mask_utils


def encode_mask(mask: np.ndarray) -> dict:
    """Compressed COCO RLE of an HxW bool mask: {"size": [H, W], "counts": str}."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask must be HxW, got shape {mask.shape}")
    rle = _mask_utils().encode(np.asfortranarray(mask.astype(np.uint8, copy=False)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode()}


def decode_rle(rle: dict, shape: tuple[int, int] | None = None) -> np.ndarray:
    """HxW bool mask of a compressed RLE (counts str or bytes).

    With `shape` (height, width of its image) the RLE's size must be exactly that. Raises
    ValueError when the size is not [height, width] within `annotator.core.limits`, or the counts
    do not cover exactly H*W pixels (pycocotools would write out of its buffer otherwise).
    """
    height, width = _checked_size(rle, shape)
    text = _counts_text(rle)
    if not _single_rle_valid(text, height * width):
        raise ValueError("compressed RLE counts are corrupt (runs do not cover the image)")
    return _mask_utils().decode({"size": [height, width], "counts": text}).astype(bool)


def rle_area(rle: dict) -> int:
    """Number of foreground pixels of a compressed RLE, without decoding it (ValueError as
    `decode_rle`)."""
    return int(_mask_utils().area(_checked_rle(rle)))


def rle_bbox(rle: dict) -> tuple[float, float, float, float]:
    """COCO [x, y, w, h] pixel extent of a compressed RLE ([0, 0, 0, 0] when empty)."""
    x, y, w, h = (float(v) for v in _mask_utils().toBbox(_checked_rle(rle)))
    return (x, y, w, h)


def check_size(height, width) -> None:
    """ValueError (the limits' reason) unless height x width is an image size we may decode."""
    problem = size_problem(width, height)
    if problem is not None:
        raise ValueError(problem.replace("its declared size", "the size"))


def _checked_size(rle: dict, shape: tuple[int, int] | None) -> tuple[int, int]:
    size = rle.get("size") if isinstance(rle, dict) else None
    if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(map(_is_int, size))):
        raise ValueError("RLE 'size' must be [height, width]")
    height, width = int(size[0]), int(size[1])
    if shape is not None and (height, width) != (int(shape[0]), int(shape[1])):
        raise ValueError(
            f"RLE size {height}x{width} does not match the image {shape[0]}x{shape[1]}"
        )
    check_size(height, width)
    return height, width


def _counts_text(rle: dict) -> str:
    counts = rle.get("counts")
    if isinstance(counts, bytes):
        try:
            return counts.decode("ascii")
        except UnicodeDecodeError:
            raise ValueError("compressed RLE counts are not ASCII text") from None
    if not isinstance(counts, str):
        raise ValueError("compressed RLE 'counts' must be a string")
    return counts


def _checked_rle(rle: dict) -> dict:
    """`rle` as pycocotools may read it: size within the limits, counts covering the image."""
    height, width = _checked_size(rle, None)
    text = _counts_text(rle)
    if not _single_rle_valid(text, height * width):
        raise ValueError("compressed RLE counts are corrupt (runs do not cover the image)")
    return {"size": [height, width], "counts": text}


def segmentation_to_rle(segmentation, height: int, width: int) -> dict:
    """Compressed RLE (counts str) of any COCO segmentation of an image of `height` x `width`.

    Accepts a list of polygons (several parts), one flat polygon, an uncompressed RLE
    ({"size", "counts": list of ints}) or a compressed RLE (counts str or bytes).
    Raises ValueError with a short reason when the segmentation cannot be decoded.
    """
    check_size(height, width)
    mask_utils = _mask_utils()
    if isinstance(segmentation, dict):
        size, counts = segmentation.get("size"), segmentation.get("counts")
        if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) for v in size)):
            raise ValueError("RLE 'size' must be [height, width]")
        if [int(size[0]), int(size[1])] != [height, width]:
            raise ValueError(
                f"RLE size {size[0]}x{size[1]} does not match the image {height}x{width}"
            )
        if isinstance(counts, list):
            if not all(_is_int(v) and v >= 0 for v in counts):
                raise ValueError("uncompressed RLE 'counts' must be non-negative integers")
            if len(counts) > height * width + 1:
                raise ValueError(
                    f"uncompressed RLE has {len(counts)} runs, more than the image has pixels"
                )
            if sum(counts) != height * width:
                raise ValueError(f"RLE counts sum to {sum(counts)}, not {height}*{width} pixels")
            rle = mask_utils.frPyObjects(segmentation, height, width)
        elif isinstance(counts, (str, bytes)):
            text = counts.decode() if isinstance(counts, bytes) else counts
            if not rle_strings_valid([text], [height * width])[0]:
                raise ValueError("compressed RLE counts are corrupt (runs do not cover the image)")
            rle = {"size": [height, width], "counts": text}
        else:
            raise ValueError("RLE 'counts' must be a list of integers or a string")
    elif isinstance(segmentation, list):
        polygons = segmentation
        if polygons and all(_is_number(v) for v in polygons):
            polygons = [polygons]  # one flat polygon written without the outer list
        if not polygons:
            raise ValueError("the polygon list is empty")
        for part in polygons:
            if not isinstance(part, list) or not all(_is_number(v) for v in part):
                raise ValueError("a polygon must be a flat list of numbers")
            if len(part) < 6 or len(part) % 2:
                raise ValueError(
                    f"a polygon needs an even number (>= 6) of coordinates, got {len(part)}"
                )
        problem = polygon_problem(polygons)
        if problem is not None:
            raise ValueError(problem)
        rle = mask_utils.merge(
            mask_utils.frPyObjects([list(map(float, p)) for p in polygons], height, width)
        )
    else:
        raise ValueError(
            f"segmentation must be a list of polygons or an RLE dict, got {type(segmentation).__name__}"
        )
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode()
    return {"size": [height, width], "counts": counts}


def rle_strings_valid(counts: list[str], pixels: list[int]) -> np.ndarray:
    """For each compressed RLE counts string, whether its runs are non-negative and sum to `pixels`.

    Vectorised over all strings at once (numpy), so a 50,000-annotation project is checked without
    decoding any mask. pycocotools does not check this itself: a too short string decodes into
    uninitialised memory. Mirrors `rleFrString` of pycocotools' maskApi.c: 5 bits per character
    (offset 48), bit 0x20 continues a value, bit 0x10 of its last character makes it negative,
    and from the fourth run on each value is a delta to the run two places before.
    """
    n_strings = len(counts)
    valid = np.zeros(n_strings, bool)
    if n_strings == 0:
        return valid
    total = sum(map(len, counts))
    if total > _CHARS_PER_BATCH and n_strings > 1:
        # About 100 bytes of numpy arrays per character: check a big file in batches.
        batches, start, size = [], 0, 0
        for index, text in enumerate(counts):
            size += len(text)
            if size > _CHARS_PER_BATCH:
                end = max(index, start + 1)
                batches.append(rle_strings_valid(counts[start:end], pixels[start:end]))
                start, size = end, sum(map(len, counts[end : index + 1]))
        batches.append(rle_strings_valid(counts[start:], pixels[start:]))
        return np.concatenate(batches)
    try:
        raw = "".join(counts).encode("ascii")
    except UnicodeEncodeError:
        return np.array(
            [_single_rle_valid(c, p) for c, p in zip(counts, pixels, strict=True)], bool
        )
    lengths = np.fromiter((len(c) for c in counts), np.int64, n_strings)
    chars = np.frombuffer(raw, np.uint8).astype(np.int64) - 48
    string_of_char = np.repeat(np.arange(n_strings), lengths)
    bad = np.zeros(n_strings, bool)
    bad[lengths == 0] = True
    if len(chars) == 0:
        return ~bad & (np.asarray(pixels) == 0)
    in_range = (chars >= 0) & (chars < 64)
    bad[string_of_char[~in_range]] = True
    chars = np.where(in_range, chars, 0)
    ends = (chars & 0x20) == 0
    # A value may not run over the end of its string.
    string_last = np.cumsum(lengths) - 1
    string_last = string_last[lengths > 0]
    bad[string_of_char[string_last[~ends[string_last]]]] = True
    ends[string_last] = True
    value_of_char = np.concatenate(([0], np.cumsum(ends)[:-1]))
    starts = np.flatnonzero(np.concatenate(([True], ends[:-1])))
    digit = np.arange(len(chars)) - starts[value_of_char]
    too_long = digit >= 12  # more than 60 bits: not a run length pycocotools could have written
    bad[string_of_char[too_long]] = True
    digit = np.minimum(digit, 11)
    values = np.add.reduceat((chars & 0x1F) << (5 * digit), starts)
    last = np.flatnonzero(ends)
    negative = (chars[last] & 0x10) != 0
    values = np.where(negative, values - (np.int64(1) << (5 * (digit[last] + 1))), values)
    string_of_value = string_of_char[last]
    first_value = np.searchsorted(string_of_value, np.arange(n_strings))
    index = np.arange(len(values)) - first_value[string_of_value]
    # Runs 0, 1, 2 are absolute; run m >= 3 adds run m-2: a cumulative sum along each parity
    # chain of a string (odd runs 1, 3, 5...; even runs 2, 4, 6...), run 0 alone.
    runs = values.copy()
    for chain in (index % 2 == 1, (index % 2 == 0) & (index > 0)):
        chain_values = values[chain]
        chain_strings = string_of_value[chain]
        sums = np.cumsum(chain_values)
        first = np.searchsorted(chain_strings, np.arange(n_strings))
        before = np.concatenate(([0], sums))[first]
        runs[chain] = sums - before[chain_strings]
    bad[string_of_value[runs < 0]] = True
    pixel_sums = np.bincount(string_of_value, weights=runs, minlength=n_strings)
    valid = ~bad & (pixel_sums == np.asarray(pixels, np.float64))
    return valid


_CHARS_PER_BATCH = 1 << 22


def _single_rle_valid(counts: str, pixels: int) -> bool:
    try:
        counts.encode("ascii")
    except UnicodeEncodeError:
        return False
    return bool(rle_strings_valid([counts], [pixels])[0])


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class Polygons:
    """The polygons of one mask.

    parts: one flat [x0, y0, x1, y1, ...] float list per outer contour, pixel-centre coordinates
        (X, Y) of the original image; parts of fewer than 3 contour points are replaced by the
        rectangle of their pixels so that no part is dropped.
    holes: number of inner contours (holes), which a polygon segmentation cannot represent.
    tiny_parts: number of parts that were replaced by their pixel rectangle.
    """

    parts: list
    holes: int
    tiny_parts: int


def mask_to_polygons(mask: np.ndarray) -> Polygons:
    """Every outer part of an HxW bool mask as a polygon (cv2.findContours, RETR_CCOMP)."""
    import cv2

    mask = np.ascontiguousarray(np.asarray(mask, dtype=np.uint8))
    contours, hierarchy = cv2.findContours(mask, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    parts, holes, tiny = [], 0, 0
    if hierarchy is None:
        return Polygons([], 0, 0)
    for contour, (_, _, _, parent) in zip(contours, hierarchy[0], strict=True):
        if parent >= 0:  # an inner contour: a hole of its parent
            holes += 1
            continue
        points = contour.reshape(-1, 2)
        if len(points) < 3:
            tiny += 1
            x0, y0 = points.min(axis=0)
            x1, y1 = points.max(axis=0) + 1
            # Corners of the pixels' rectangle, shifted by half a pixel so that rasterising the
            # polygon covers exactly those pixels.
            lo_x, lo_y, hi_x, hi_y = x0 - 0.5, y0 - 0.5, x1 - 0.5, y1 - 0.5
            parts.append([lo_x, lo_y, hi_x, lo_y, hi_x, hi_y, lo_x, hi_y])
        else:
            parts.append([float(v) for v in points.reshape(-1)])
    return Polygons(parts, holes, tiny)
