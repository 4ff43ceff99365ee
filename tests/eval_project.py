"""Small labelled projects for `annotator eval` tests: synthetic scenes, or DAVIS frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np

DAVIS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "davis2016-frames"


def write_scene(folder: Path, name: str, width: int, height: int, seed: int) -> None:
    """folder/images/NAME.png (shapes on a smooth texture) and folder/masks/NAME.png (object
    values 1, 2: a disk and a rectangle)."""
    import cv2
    from PIL import Image

    rng = np.random.default_rng(seed)
    small = rng.integers(60, 160, (height // 12 + 2, width // 12 + 2, 3)).astype(np.uint8)
    image = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    labels = np.zeros((height, width), np.uint8)
    cx, cy, r = int(width * 0.3), int(height * 0.5), int(min(width, height) * 0.2)
    cv2.circle(image, (cx, cy), r, (220, 40, 50), -1)
    cv2.circle(labels, (cx, cy), r, 1, -1)
    x0, y0 = int(width * 0.6), int(height * 0.2)
    x1, y1 = int(width * 0.9), int(height * 0.7)
    image[y0:y1, x0:x1] = (30, 60, 200)
    labels[y0:y1, x0:x1] = 2
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(folder / "images" / f"{name}.png")
    Image.fromarray(labels).save(folder / "masks" / f"{name}.png")


def synthetic_project(folder: Path, images: int = 2, width: int = 160, height: int = 120):
    """(project path, Project): `images` scenes with two objects each."""
    from annotator.core.from_masks import project_from_masks

    names = [f"scene{i}" for i in range(images)]
    for i, name in enumerate(names):
        write_scene(folder, name, width, height, seed=i)
    pairs = [(folder / "images" / f"{n}.png", folder / "masks" / f"{n}.png") for n in names]
    path = folder / "project.json"
    return path, project_from_masks(pairs, path)


def davis_project(out: Path, limit: int | None = None):
    """(project path, Project) of the DAVIS frames (all, or the first `limit` by name)."""
    from annotator.core.from_masks import davis_pairs, project_from_masks

    return out, project_from_masks(davis_pairs(DAVIS, limit), out)
