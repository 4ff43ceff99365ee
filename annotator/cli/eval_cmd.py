"""`annotator eval`: how many clicks an engine needs per object of a labelled project.

annotator eval PROJECT [--checkpoint CKPT] [--model-type auto] [--max-clicks 20]
               [--iou 0.85,0.9] [--images N] [--out REPORT.json] [--plot CURVE.png]
annotator eval --compare A.json B.json [...] [--plot CURVE.png]

Every annotation of PROJECT (ours or any COCO file the app opens) is a ground-truth object; the
engine (SAM with --checkpoint, else the no-model engine) is driven by the benchmark clicker
(annotator.core.clicker, annotator.engines.evaluate). Bad input: one line on stderr, exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from annotator.cli import add_model_arguments
from annotator.errors import UserError

NO_MODEL_ENGINES = ("classic", "grabcut")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="measure clicks to a good mask (NoC@85/90) of an engine on a labelled project",
        description="Every annotation of PROJECT is a ground-truth object. A simulated person "
        "clicks at the centre of the largest error (positive in a missed part, negative in a "
        "wrongly added one) until the mask is right or --max-clicks is reached. Prints NoC at "
        "each --iou threshold (clicks until IoU >= it, max-clicks when never), the mean IoU "
        "after 1, 2, 3, 5, 10 and 20 clicks, and the time per click. With --compare, reads "
        "reports written by --out instead and plots them together.",
    )
    parser.add_argument("project", nargs="?", type=Path, metavar="PROJECT", help="a project")
    parser.add_argument(
        "--checkpoint",
        type=Path,
        default=os.environ.get("SAM_CHECKPOINT") or None,
        metavar="CKPT",
        help="SAM checkpoint (.pth); without one the no-model engine is measured",
    )
    add_model_arguments(parser)
    parser.add_argument(
        "--no-model",
        default="classic",
        choices=NO_MODEL_ENGINES,
        help="which engine without a checkpoint: classic (the app's, default) or grabcut (the "
        "GrabCut engine of versions before it, for comparison)",
    )
    parser.add_argument("--max-clicks", type=int, default=20, metavar="N", help="default 20")
    parser.add_argument(
        "--iou", default="0.85,0.9", metavar="T,T", help="IoU thresholds (default 0.85,0.9)"
    )
    parser.add_argument("--images", type=int, metavar="N", help="only the first N images")
    parser.add_argument("--no-cache", action="store_true", help="do not use the embedding cache")
    parser.add_argument("--out", type=Path, metavar="REPORT.json", help="write the JSON report")
    parser.add_argument("--plot", type=Path, metavar="CURVE.png", help="plot mean IoU per click")
    parser.add_argument(
        "--compare",
        nargs="+",
        type=Path,
        metavar="REPORT.json",
        help="compare reports written by --out (no PROJECT then)",
    )
    parser.set_defaults(func=run_eval_command)


def run_eval_command(args: argparse.Namespace) -> int:
    if args.compare:
        return _compare(args)
    if args.project is None:
        raise UserError("Give a PROJECT to measure, or --compare REPORT.json ...")
    from annotator.core.session import read_project
    from annotator.engines.evaluate import evaluate, parse_thresholds, plan, write_report

    thresholds = parse_thresholds(args.iou)
    if args.max_clicks < 1:
        raise UserError("--max-clicks must be at least 1.")
    for path, suffix in ((args.out, ".json"), (args.plot, ".png")):
        _check_output(path, suffix)
    project = read_project(args.project).project
    task = plan(project, args.images)
    engine = load_eval_engine(args)
    encode = None
    if not args.no_cache:
        from annotator.engines.cache import EmbeddingCache

        cache = EmbeddingCache()

        def encode(image):
            return cache.encode_cached(engine, image)[0]

    report = evaluate(
        engine,
        task,
        max_clicks=args.max_clicks,
        thresholds=thresholds,
        encode=encode,
        show_progress=True,
    )
    for line in report.summary_lines():
        print(line)
    if args.out is not None:
        write_report(report, args.out)
        print(f"report: {args.out}")
    if args.plot is not None:
        from annotator.engines.evaluate import plot_curves

        plot_curves([report], args.plot)
        print(f"plot: {args.plot}")
    return 0


def load_eval_engine(args):
    """SAM for --checkpoint, else the no-model engine chosen by --no-model."""
    if args.checkpoint is None:
        from annotator.engines.classic import ClassicEngine, GrabCutEngine

        return ClassicEngine() if args.no_model == "classic" else GrabCutEngine()
    checkpoint = Path(args.checkpoint).expanduser()
    if not checkpoint.is_file():
        raise UserError(f"Checkpoint {checkpoint} does not exist.")
    from annotator.engines.sam import load_sam

    return load_sam(checkpoint, model_type=args.model_type, device=args.device)


def _check_output(path: Path | None, suffix: str) -> None:
    if path is None:
        return
    path = Path(path).expanduser()
    if path.suffix.lower() != suffix:
        raise UserError(f"Name the file *{suffix}, not {path.name}.")
    if not path.parent.is_dir():
        raise UserError(f"The folder {path.parent} does not exist.")
    if path.is_dir():
        raise UserError(f"{path} is a folder.")


def _compare(args) -> int:
    from annotator.core.clicker import mean_noc
    from annotator.engines.evaluate import CURVE_CLICKS, parse_thresholds, plot_curves, read_report

    if args.project is not None:
        raise UserError("--compare reads reports: give no PROJECT with it.")
    _check_output(args.plot, ".png")
    thresholds = parse_thresholds(args.iou)
    reports = [read_report(path) for path in args.compare]
    for report in reports:
        curve = report.curve()
        nocs = "  ".join(
            f"NoC@{t * 100:g} {mean_noc(report.ious, t, report.max_clicks):.2f}" for t in thresholds
        )
        shown = "  ".join(f"@{k} {curve[k - 1]:.3f}" for k in CURVE_CLICKS if k <= len(curve))
        print(f"{report.engine} ({report.path.name}, {len(report.ious)} objects): {nocs}")
        print(f"  mean IoU: {shown}")
    if args.plot is not None:
        plot_curves(reports, args.plot)
        print(f"plot: {args.plot}", file=sys.stdout)
    return 0
