"""Reading images of every kind people have, converted once, the same way for display and model.

`load_image` returns HxWx3 uint8 RGB in the orientation the user sees (EXIF rotation applied).
Grayscale is replicated to three channels; 16-bit and float images are stretched from their own
min..max to 0..255 (deterministic, so the cache key of the pixels is stable); transparency is
composited over white, as image viewers show it; palette and CMYK images are converted to RGB.

An image may also be named by an fsspec URL (`s3://bucket/a.jpg`; fsspec comes with the
`annotator[cluster]` extra): it is read through fsspec, then decoded as a file would be.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from annotator.errors import UserError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pbm"}
)
# Pillow refuses images above ~179 megapixels as possible decompression bombs; labelling aerial
# and microscopy images needs more, but still guard against absurd headers.
MAX_PIXELS = 600_000_000


def _pil():
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = MAX_PIXELS
    return Image


def is_image_file(path: Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def _natural_key(name: str):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def is_url(location) -> bool:
    """Whether `location` is an fsspec URL (scheme://...) rather than a local path."""
    text = str(location)
    return "://" in text and not text.startswith("file://")


class ImageURL(str):
    """An image named by an fsspec URL where the project expects a path: the part of
    pathlib.Path's interface the project's bookkeeping uses. Pixels are read by `load_image`,
    which sees the URL. Existence is not looked up (a remote check per image would make opening
    a project of 100,000 images slow): an image that is gone fails to load, with one sentence."""

    @property
    def name(self) -> str:
        return self.rstrip("/").rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        return Path(self.name).suffix

    def is_file(self) -> bool:
        return True

    def exists(self) -> bool:
        return True

    def is_absolute(self) -> bool:
        return True

    def resolve(self) -> ImageURL:
        return self

    def absolute(self) -> ImageURL:
        return self


def _fsspec():
    try:
        import fsspec
    except ImportError:
        raise UserError(
            "Reading images from a URL needs fsspec: pip install 'annotator[cluster]'."
        ) from None
    return fsspec


def list_image_urls(url: str) -> list[str]:
    """Image files directly under the URL `url` (a bucket prefix), as URLs (`url` joined with
    each key), in natural order."""
    fsspec = _fsspec()
    base = str(url).rstrip("/")
    try:
        fs, root = fsspec.core.url_to_fs(base)
        entries = fs.ls(root, detail=True)
    except FileNotFoundError:
        raise UserError(f"{url} does not exist.") from None
    except Exception as exc:
        raise UserError(f"Cannot list {url}: {_reason(exc)}.") from None
    names = [
        str(entry["name"]).rstrip("/").rsplit("/", 1)[-1]
        for entry in entries
        if entry.get("type") == "file"
    ]
    names = sorted((n for n in names if is_image_file(Path(n))), key=_natural_key)
    return [ImageURL(f"{base}/{name}") for name in names]


def list_images(folder: Path) -> list[Path]:
    """Image files directly inside `folder`, in natural order (img2 before img10)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder} is not a folder.")
    files = [p for p in folder.iterdir() if p.is_file() and is_image_file(p)]
    return sorted(files, key=lambda p: _natural_key(p.name))


def read_image_size(path: Path) -> tuple[int, int]:
    """(width, height) as displayed (after EXIF rotation), read from the header only."""
    from annotator.core import video

    if (frame := video.video_frame_of(path)) is not None:  # a frame of a video file
        info = video.probe_video(frame[0])
        return info.width, info.height
    Image = _pil()
    try:
        with Image.open(_read_url(str(path)) if is_url(path) else path) as im:
            width, height = im.size
            orientation = im.getexif().get(0x0112, 1)
    except FileNotFoundError:
        raise UserError(f"Image {path} does not exist.") from None
    except Exception as exc:  # PIL raises many types for undecodable files
        log.debug("cannot read the header of %s", path, exc_info=True)
        raise UserError(f"Cannot read image {path}: {_reason(exc)}.") from None
    if orientation in (5, 6, 7, 8):  # rotated by 90 or 270 degrees
        width, height = height, width
    from annotator.core.limits import size_problem

    problem = size_problem(int(width), int(height))
    if problem is not None:  # a project could hold it but never open again
        raise UserError(f"Image {path}: {problem}.")
    return int(width), int(height)


def _read_url(url: str):
    """The bytes at `url` as a seekable stream (PIL needs one; object stores stream)."""
    import io

    fsspec = _fsspec()
    with fsspec.open(url, "rb") as remote:
        return io.BytesIO(remote.read())


def load_image(path: Path | str) -> np.ndarray:
    """The image at `path` (a path or an fsspec URL) as HxWx3 uint8 RGB, EXIF orientation
    applied; a frame of a video (`annotator.core.video.video_frame_of`) is decoded from the video."""
    from annotator.core import video

    if not is_url(path) and (frame := video.video_frame_of(path)) is not None:
        return video.read_frame(*frame)
    Image = _pil()
    from PIL import ImageOps

    try:
        source = _read_url(str(path)) if is_url(path) else path
        with Image.open(source) as im:
            im.load()
            im = ImageOps.exif_transpose(im)
            return to_rgb8(im)
    except FileNotFoundError:
        raise UserError(f"Image {path} does not exist.") from None
    except UserError:
        raise
    except Exception as exc:
        log.debug("cannot decode %s", path, exc_info=True)
        raise UserError(f"Cannot read image {path}: {_reason(exc)}.") from None


def _reason(exc: Exception) -> str:
    """The exception's message on one line, without a trailing period (it ends our sentence)."""
    text = " ".join(str(exc).split()).rstrip(".")
    return text or type(exc).__name__


def to_rgb8(im) -> np.ndarray:
    """Convert a PIL image of any mode to HxWx3 uint8 RGB (see the module docstring)."""
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
        mode = im.mode
    if mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        return _stretch_to_rgb8(np.asarray(im))
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = np.asarray(im.convert("RGBA"), dtype=np.float32)
        alpha = rgba[..., 3:4] / 255.0
        rgb = rgba[..., :3] * alpha + 255.0 * (1.0 - alpha)
        return np.ascontiguousarray(np.rint(rgb).astype(np.uint8))
    if mode != "RGB":
        im = im.convert("RGB")
    return np.ascontiguousarray(np.asarray(im, dtype=np.uint8))


def _stretch_to_rgb8(values: np.ndarray) -> np.ndarray:
    values = values.astype(np.float64)
    if values.ndim == 3:  # multi-channel high bit depth (rare via PIL): use the first three
        values = values[..., :3]
    finite = np.isfinite(values)
    if not finite.any():
        gray = np.zeros(values.shape[:2], np.uint8)
    else:
        lo, hi = float(values[finite].min()), float(values[finite].max())
        scale = 255.0 / (hi - lo) if hi > lo else 0.0
        values = np.where(finite, values, lo)
        gray = np.rint((values - lo) * scale).astype(np.uint8)
    if gray.ndim == 2:
        gray = np.repeat(gray[..., None], 3, axis=2)
    return np.ascontiguousarray(gray)
