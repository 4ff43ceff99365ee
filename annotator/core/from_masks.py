"""A COCO project from pairs of (image, object mask) files, e.g. a segmentation dataset.

Each mask file is a single-channel (or RGB) image the size of its image; every distinct non-zero
value is one object (a 0/255 mask is one object), in increasing value order. Used to turn
benchmark folders such as DAVIS into projects that `annotator eval` measures against.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from annotator.errors import UserError

CATEGORY_NAME = "object"


def read_object_masks(path: Path) -> list[np.ndarray]:
    """The HxW bool masks of the objects in one mask file (one per non-zero value)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            values = np.asarray(im.convert("L") if im.mode not in ("L", "P", "I", "I;16") else im)
    except (OSError, ValueError) as exc:
        raise UserError(f"Cannot read the mask {Path(path).name} ({exc}).") from None
    return [values == v for v in np.unique(values) if v != 0]


def project_from_masks(pairs: Iterable[tuple[Path, Path]], out: Path):
    """A Project (saved at `out`) with each image of `pairs` and its mask file's objects as
    annotations of one category "object". Images in the order given. Raises UserError when a
    mask is not its image's size."""
    from annotator.core.coco import save_project
    from annotator.core.images import read_image_size
    from annotator.core.project import (
        Category,
        ImageRecord,
        Project,
        annotation_from_mask,
        normalise_path,
        palette_color,
    )

    out = Path(out).absolute()
    project = Project(out, categories=[Category(1, CATEGORY_NAME, palette_color(0))])
    next_id = 1
    for index, (image_path, mask_path) in enumerate(pairs, start=1):
        image_path = Path(image_path).absolute()
        width, height = read_image_size(image_path)
        project.add_image(
            ImageRecord(
                index,
                _relative(image_path, out.parent),
                width,
                height,
                path=normalise_path(image_path),
            ),
            notify=False,
        )
        for mask in read_object_masks(mask_path):
            if mask.shape != (height, width):
                raise UserError(
                    f"The mask {Path(mask_path).name} is {mask.shape[1]}x{mask.shape[0]}, its "
                    f"image {image_path.name} {width}x{height}."
                )
            project.insert_annotation(annotation_from_mask(next_id, index, 1, mask), notify=False)
            next_id += 1
    save_project(project, out)
    return project


def _relative(path: Path, base: Path) -> str:
    import os

    try:
        return Path(os.path.relpath(path, base)).as_posix()
    except ValueError:  # another drive (Windows)
        return path.as_posix()


def davis_pairs(folder: Path, limit: int | None = None) -> list[tuple[Path, Path]]:
    """(image, mask) pairs of a DAVIS-style folder (images/*.jpg, masks/*.png of the same stem),
    sorted by name; the first `limit` when given."""
    folder = Path(folder)
    pairs = [
        (image, folder / "masks" / f"{image.stem}.png")
        for image in sorted((folder / "images").glob("*.jpg"))
    ]
    pairs = [(i, m) for i, m in pairs if m.is_file()]
    if not pairs:
        raise UserError(f"{folder} has no images/*.jpg with masks/*.png of the same name.")
    return pairs[:limit] if limit is not None else pairs
