"""The one definition of what a project file may declare before we hand it to numpy or pycocotools.

pycocotools' C code trusts what it is given: a height*width beyond 32 bits, polygon points far
outside the image or a non-finite coordinate make it overflow its ints and write out of its buffers
(a segmentation fault, not an exception). Every size, polygon and RLE is therefore checked against
these limits before any mask is decoded, whoever decodes it (load, validate, export).

- MAX_SIDE, MAX_PIXELS: an image side, and width*height (2**31: pycocotools indexes pixels with a
  C int, and RLE run lengths are 32-bit).
- MAX_DEPTH: nesting of lists and objects in a project file (COCO needs 5; Python's JSON reader
  recurses and would stop with a RecursionError near 1000).
- MAX_COORDINATE: of a polygon point, in pixels (pycocotools multiplies by 5 into a C int).
- MAX_POLYGON_OUTLINE: pixels along the outline of one annotation's polygons; pycocotools samples
  its outline 5 times per pixel, about 20 bytes a sample (2**22 px: at most some 400 MB).
- MIN_ID, MAX_ID: ids must fit a signed 64-bit integer (Qt, numpy and other tools store them so).
- MAX_PATH_BYTES, MAX_NAME_BYTES: an image file name longer than a path can be is not a path.
"""

from __future__ import annotations

import math

import numpy as np

MAX_SIDE = 200_000
MAX_PIXELS = 2**31
MAX_DEPTH = 100
MAX_POLYGON_OUTLINE = 2**22
MAX_COORDINATE = 2**24
MIN_ID, MAX_ID = -(2**63), 2**63 - 1
MAX_PATH_BYTES = 4096
MAX_NAME_BYTES = 255


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def size_problem(width, height) -> str | None:
    """Why (width, height) is not a usable image size, as a clause that follows the image's name
    ("image 3 (a.png): ..."), or None when it is within the limits."""
    if not (_is_int(width) and _is_int(height) and width > 0 and height > 0):
        return (
            f"width and height must be positive integers (found {_short(width)} and "
            f"{_short(height)})"
        )
    if width > MAX_SIDE or height > MAX_SIDE or width * height > MAX_PIXELS:
        return (
            f"its declared size {width}x{height} is beyond the limits (at most {MAX_SIDE} pixels "
            f"a side and {MAX_PIXELS} pixels in all)"
        )
    return None


def id_problem(value) -> str | None:
    """Why `value` cannot be an id (clause naming what was found), or None."""
    if not _is_int(value):
        return f"is not an integer (found {_short(value)})"
    if not MIN_ID <= value <= MAX_ID:
        return f"{_short(value)} is out of range (ids must fit in 64 bits)"
    return None


def path_problem(file_name: str) -> str | None:
    """Why a file name can never name a file (too long for any file system), or None."""
    encoded = file_name.encode("utf-8", "surrogatepass")
    if len(encoded) > MAX_PATH_BYTES:
        return f"is {len(encoded)} bytes long, longer than a path can be"
    parts = file_name.replace("\\", "/").split("/")
    if any(len(part.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES for part in parts):
        return f"has a part longer than {MAX_NAME_BYTES} bytes, which no file system allows"
    return None


def polygon_problem(polygons: list[list[float]]) -> str | None:
    """Why these polygons (flat [x0, y0, ...] number lists) must not be rasterised, or None. Points may lie outside the image (other tools write them
    slightly out; pycocotools clips them), but within MAX_COORDINATE, and the outline must fit
    MAX_POLYGON_OUTLINE."""
    outline = 0.0
    for part in polygons:
        xy = np.asarray(part, np.float64).reshape(-1, 2)
        if not np.isfinite(xy).all():
            return "polygon coordinates must be finite numbers"
        if np.abs(xy).max() > MAX_COORDINATE:
            return f"polygon coordinates lie beyond {MAX_COORDINATE} pixels"
        closed = np.vstack([xy, xy[:1]])
        outline += float(np.abs(np.diff(closed, axis=0)).max(axis=1).sum())
        if outline > MAX_POLYGON_OUTLINE:
            return f"the polygon outline is longer than {MAX_POLYGON_OUTLINE} pixels"
    return None


def too_deep(data: bytes, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON text `data` nests lists and objects more than `limit` levels deep.

    Without recursion, so that it can run before `json.loads`, which recurses once per level.
    Brackets inside strings are not counted: escaped characters are removed first, then every
    byte but quotes and brackets (C speed, `bytes.translate`), then each quote toggles in and out
    of a string. Text that is not JSON gives some answer; `json.loads` reports it then.
    """
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    if b"\\" in data:
        import re

        data = re.sub(rb"\\.", b"", data, flags=re.DOTALL)
    marks = np.frombuffer(data.translate(None, _NOT_MARKS), np.uint8)
    quotes = marks == 34
    outside = (np.cumsum(quotes, dtype=np.int64) & 1) == 0  # a closing quote is not a bracket
    step = np.zeros(len(marks), np.int8)
    step[(marks == 91) | (marks == 123)] = 1
    step[(marks == 93) | (marks == 125)] = -1
    step[~outside | quotes] = 0
    return len(step) > 0 and int(np.cumsum(step, dtype=np.int64).max()) > limit


_NOT_MARKS = bytes(b for b in range(256) if b not in b'"[]{}')


def _short(value) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, (str, list, dict)):
        import json

        try:
            text = json.dumps(value, ensure_ascii=False)
        except (ValueError, RecursionError):
            text = type(value).__name__
    elif value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."
