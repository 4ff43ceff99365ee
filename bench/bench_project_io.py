"""Project save and load at scale: 2,000 images, 50,000 annotations (goal: under 2 s each).

Masks are SAM-like blobs (ellipses) on 640x480 images, encoded once with pycocotools and reused,
so the file has realistic RLE strings. Prints the median of 5 runs of `save_project` and of
`load_project`, and, as the stock references measured in this same process, `json.dump` of the
same document to a file and `pycocotools.coco.COCO(path)` reading our file.

Run: .venv/bin/python bench/bench_project_io.py [--images N] [--per-image K] [--runs R]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from annotator.core.coco import load_project, project_document, save_project  # noqa: E402
from annotator.core.masks import encode_mask, rle_area, rle_bbox  # noqa: E402
from annotator.core.project import Annotation, ImageRecord, Project, default_categories  # noqa: E402

WIDTH, HEIGHT = 640, 480
GOAL_S = 2.0


def _blob_rles(count: int, seed: int = 0) -> list[dict]:
    import cv2

    rng = np.random.default_rng(seed)
    rles = []
    for _ in range(count):
        mask = np.zeros((HEIGHT, WIDTH), np.uint8)
        center = (int(rng.integers(60, WIDTH - 60)), int(rng.integers(60, HEIGHT - 60)))
        axes = (int(rng.integers(8, 90)), int(rng.integers(8, 90)))
        cv2.ellipse(mask, center, axes, float(rng.integers(0, 180)), 0, 360, 1, -1)
        rles.append(encode_mask(mask.astype(bool)))
    return rles


def build_project(folder: Path, images: int, per_image: int) -> Project:
    image_folder = folder / "images"
    image_folder.mkdir()
    project = Project(folder / "project.json", categories=default_categories())
    for image_id in range(1, images + 1):
        name = f"img_{image_id:05d}.jpg"
        (image_folder / name).touch()  # load checks that every image exists
        project.add_image(ImageRecord(image_id, f"images/{name}", WIDTH, HEIGHT), notify=False)
    pool = _blob_rles(200)
    geometry = [(rle_area(r), rle_bbox(r)) for r in pool]
    annotation_id = 1
    for image_id in range(1, images + 1):
        for k in range(per_image):
            index = (image_id * 7 + k) % len(pool)
            area, bbox = geometry[index]
            category_id = 1 + k % len(project.categories)
            annotation = Annotation(annotation_id, image_id, category_id, pool[index], area, bbox)
            project.insert_annotation(annotation, notify=False)
            annotation_id += 1
    return project


def _median_time(function, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--per-image", type=int, default=25)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        project = build_project(folder, args.images, args.per_image)
        path = save_project(project)
        size_mb = path.stat().st_size / 1e6
        print(
            f"{len(project.images)} images, {project.total_annotations()} annotations, "
            f"file {size_mb:.1f} MB, median of {args.runs} runs"
        )
        save_s = _median_time(lambda: save_project(project), args.runs)
        load_s = _median_time(lambda: load_project(path), args.runs)
        document = project_document(project)
        stock_path = folder / "stock.json"

        def stock_dump():
            with open(stock_path, "w") as stream:
                json.dump(document, stream)

        def stock_coco():
            from pycocotools.coco import COCO

            with contextlib.redirect_stdout(io.StringIO()):
                COCO(str(path))

        dump_s = _median_time(stock_dump, args.runs)
        coco_s = _median_time(stock_coco, args.runs)
        loaded, report = load_project(path)
        assert loaded.state() == project.state() and report.is_clean()
    print(
        f"save_project : {save_s:6.3f} s  (goal < {GOAL_S:.1f} s: {'met' if save_s < GOAL_S else 'MISSED'})"
    )
    print(
        f"load_project : {load_s:6.3f} s  (goal < {GOAL_S:.1f} s: {'met' if load_s < GOAL_S else 'MISSED'})"
    )
    print(
        f"stock json.dump of the same document : {dump_s:6.3f} s  (save / stock = {save_s / dump_s:.2f})"
    )
    print(
        f"stock pycocotools COCO(path)         : {coco_s:6.3f} s  (load / stock = {load_s / coco_s:.2f})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
