"""`annotator export PROJECT --format FORMAT --out DEST` and `annotator validate PROJECT`."""

from __future__ import annotations

import argparse
import sys

# Kept here so that `annotator export --help` lists the formats without importing the exporter.
EXPORT_FORMATS = ("coco", "coco-polygons", "png", "cutouts", "yolo", "youtube-vis", "davis")


def register(subparsers) -> None:
    export = subparsers.add_parser(
        "export",
        help="export a project for training code or other tools",
        description="Export a project: coco (RLE, as saved), coco-polygons (holes are reported as "
        "lost), png (instance-id and class-id PNGs with a legend), cutouts (RGBA PNG per "
        "annotation), yolo (segmentation labels, images and data.yaml), youtube-vis (sequences: "
        "per-frame RLE per track), davis (sequences: palette PNGs, index = track).",
    )
    export.add_argument("project", help="the project .json (ours or any COCO file)")
    export.add_argument("--format", required=True, choices=EXPORT_FORMATS, dest="format")
    export.add_argument("--out", required=True, help="a .json file (coco formats) or a folder")
    export.set_defaults(func=run_export)

    validate = subparsers.add_parser(
        "validate",
        help="list every problem of a project file (exit 1 when there is one)",
        description="Check a project: missing or unreadable images, masks out of bounds or "
        "corrupt, duplicate ids, annotations pointing at missing images or categories. "
        "Exit status: 0 sound, 1 problems found, 2 unreadable file.",
    )
    validate.add_argument("project", help="the project .json")
    validate.add_argument(
        "--no-image-files", action="store_true", help="do not open the image files (faster)"
    )
    validate.set_defaults(func=run_validate)


def run_export(args: argparse.Namespace) -> int:
    from annotator.core.coco import load_project
    from annotator.core.export import export_project

    project, load_report = load_project(args.project)
    for line in load_report.messages():
        print(f"note: {line}", file=sys.stderr)
    report = export_project(project, args.format, args.out)
    for line in report.messages():
        print(line)
    return 0


def run_validate(args: argparse.Namespace) -> int:
    from annotator.core.validate import validate_project

    problems = validate_project(args.project, check_image_files=not args.no_image_files)
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} problem(s) found.", file=sys.stderr)
        return 1
    print("No problems found.")
    return 0
