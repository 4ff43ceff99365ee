"""Clicks to a good mask on DAVIS: the no-model engine before (GrabCut) and after, and SAM.

Turns the 60 DAVIS-2016 frames in ../shared/datasets/davis2016-frames into a project (once), runs
`annotator eval`'s driver (20 clicks, the benchmark clicker) with the GrabCut engine of earlier
versions, the current no-model engine and, with --sam, a random-weight SAM (the tiny test
architecture, and vit_b with --vit-b). Prints NoC@85, NoC@90, mean IoU after 1 click, ms per
click and the NoC ratios; each no-model engine's mean IoU from one box per object (the object's
bounding box); then the no-model engine's ms per click on the frames scaled to 1024 px wide (the
issue's bound: under 300 ms on 2 cores). Reports go to the bench folder; --plot draws the curves.

    .venv/bin/python bench/bench_eval.py [--images N] [--sam] [--vit-b] [--plot docs/eval-davis.png]
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BENCH_DIR  # noqa: E402  (also puts the repository and tests/ on sys.path)


def _project(scale_to: int | None = None, limit: int | None = None):
    from eval_project import DAVIS, davis_project

    from annotator.core.coco import load_project

    if not DAVIS.is_dir():
        raise SystemExit(f"no DAVIS frames at {DAVIS}")
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    if scale_to is None:
        path = BENCH_DIR / "davis" / "davis.json"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            davis_project(path)
        return load_project(path)[0]
    return _scaled_project(scale_to, limit)


def _scaled_project(width: int, limit: int | None):
    """The first `limit` frames and masks resized to `width` pixels wide, as a project."""
    import cv2
    import numpy as np
    from eval_project import DAVIS
    from PIL import Image

    from annotator.core.from_masks import davis_pairs, project_from_masks

    folder = BENCH_DIR / f"davis-{width}"
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    pairs = []
    for image_path, mask_path in davis_pairs(DAVIS, limit):
        image = np.asarray(Image.open(image_path).convert("RGB"))
        mask = np.asarray(Image.open(mask_path).convert("L"))
        height = round(image.shape[0] * width / image.shape[1])
        out_image = folder / "images" / f"{image_path.stem}.png"
        out_mask = folder / "masks" / f"{image_path.stem}.png"
        Image.fromarray(cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC)).save(
            out_image
        )
        Image.fromarray(cv2.resize(mask, (width, height), interpolation=cv2.INTER_NEAREST)).save(
            out_mask
        )
        pairs.append((out_image, out_mask))
    return project_from_masks(pairs, folder / "project.json")


def _run(engine, project, images, label: str, max_clicks: int = 20):
    from annotator.engines.evaluate import evaluate, plan, write_report

    report = evaluate(engine, plan(project, images), max_clicks=max_clicks, show_progress=True)
    path = BENCH_DIR / f"eval-{label}.json"
    write_report(report, path)
    noc = report.noc()
    curve = report.curve()
    print(
        f"{report.engine:32s} NoC@85 {noc['0.85']:5.2f}  NoC@90 {noc['0.9']:5.2f}  "
        f"mIoU@1 {curve[0]:.3f}  mIoU@5 {curve[4]:.3f}  {report.seconds_per_click() * 1000:4.0f} ms"
        f"/click  ({len(report.objects)} objects, {report.failures(0.9)} never at 0.9; {path.name})",
        flush=True,
    )
    return report


def _box_ious(engines, project) -> dict[str, list[float]]:
    """Each engine's IoU from one box per object: the object's own bounding box, one mask."""
    import numpy as np

    from annotator.core.images import load_image
    from annotator.engines.base import Prompts

    ious: dict[str, list[float]] = {engine.name: [] for engine in engines}
    for record in project.images:
        image = load_image(project.image_path(record))
        embeddings = [engine.encode(image) for engine in engines]
        for annotation in project.annotations_of(record.id):
            truth = annotation.mask()
            ys, xs = np.nonzero(truth)
            if len(xs) == 0:
                continue
            box = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
            for engine, embedding in zip(engines, embeddings, strict=True):
                mask = engine.decode(embedding, Prompts(box=box, multimask=False)).mask(0)
                ious[engine.name].append(float((mask & truth).sum() / max(1, (mask | truth).sum())))
    return ious


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, help="only the first N frames")
    parser.add_argument("--sam", action="store_true", help="also a random-weight tiny SAM")
    parser.add_argument("--vit-b", action="store_true", help="also a random-weight vit_b SAM")
    parser.add_argument("--plot", type=Path, help="draw the mean-IoU curves to this PNG")
    parser.add_argument("--skip-speed", action="store_true", help="no 1024 px timing")
    parser.add_argument("--skip-box", action="store_true", help="no one-box IoU")
    parser.add_argument(
        "--engines",
        default="grabcut,classic",
        help="which no-model engines to run (comma-separated; default grabcut,classic: run "
        "them in separate processes to use more cores, then plot with annotator eval --compare)",
    )
    args = parser.parse_args(argv)

    from annotator.engines.classic import ClassicEngine, GrabCutEngine
    from annotator.engines.evaluate import plot_curves

    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}", flush=True)
    project = _project()
    wanted = set(args.engines.split(",")) - {""}
    before = _run(GrabCutEngine(), project, args.images, "grabcut") if "grabcut" in wanted else None
    after = _run(ClassicEngine(), project, args.images, "classic") if "classic" in wanted else None
    reports = [r for r in (before, after) if r is not None]
    if args.sam or args.vit_b:
        import tempfile

        from sam_factory import TINY_CONFIG, build_sam, save_checkpoint

        from annotator.engines.sam import load_sam

        if args.sam:
            checkpoint = Path(tempfile.gettempdir()) / "annotator-bench-tiny-sam.pth"
            if not checkpoint.exists():
                save_checkpoint(build_sam(**TINY_CONFIG), checkpoint)
            engine = load_sam(checkpoint, device="auto")
            reports.append(_run(engine, project, args.images, "tiny-sam"))
        if args.vit_b:
            from _common import vit_b_checkpoint

            engine = load_sam(vit_b_checkpoint(), device="auto")
            reports.append(_run(engine, project, args.images, "vit-b-random"))
    if before is not None and after is not None:
        b, a = before.noc(), after.noc()
        print(
            f"after / before: NoC@85 {a['0.85'] / b['0.85']:.2f}x, "
            f"NoC@90 {a['0.9'] / b['0.9']:.2f}x, "
            f"mIoU@1 {after.curve()[0] / max(1e-9, before.curve()[0]):.2f}x",
            flush=True,
        )
    if not args.skip_box:
        ious = _box_ious([GrabCutEngine(), ClassicEngine()], project)
        means = {name: sum(v) / len(v) for name, v in ious.items()}
        for name, mean in means.items():
            print(f"{name:32s} one box (the object's bounding box): mean IoU {mean:.3f}")
        before_box, after_box = means.values()
        print(f"one box, after / before: {after_box / before_box:.2f}x", flush=True)
    if args.plot is not None and reports:
        plot_curves(reports, args.plot)
        print(f"plot: {args.plot}")
    if not args.skip_speed:
        scaled = _project(scale_to=1024, limit=6)
        timed = _run(ClassicEngine(), scaled, None, "classic-1024", max_clicks=10)
        print(
            f"no-model engine at 1024 px wide: {timed.seconds_per_click() * 1000:.0f} ms per click "
            f"(bound 300 ms) on {os.cpu_count()} cores"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
