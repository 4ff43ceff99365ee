"""`annotator find PATH --checkpoint SAM3 --text PHRASE... --out PROJECT.json`: every instance of
each phrase (or like an example box) in an image or a folder, found by SAM 3, saved as annotations.

Each instance above --threshold becomes an annotation whose category is its phrase (or --label for
a box), with its score as the COCO "score". The project is saved after each image, and each image
records under our "annotator" key which phrases it was searched for with which weights (never its
done mark, which is the person's), so Ctrl+C leaves a valid project and a rerun searches only what
is missing. Shapes (open, lock, progress bar, Ctrl+C) are `annotator auto`'s, helpers shared.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from annotator.cli import add_model_arguments
from annotator.cli.auto_cmd import (
    _open_session,
    _progress_bar,
    _records_by_path,
    category_named,
    print_stopped,
)
from annotator.errors import UserError

DEFAULT_THRESHOLD = 0.5
DEFAULT_BOX_LABEL = "object"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "find",
        help="find every instance of a phrase with SAM 3 (an image or a folder; saved as a project)",
        description="Find every instance of each --text phrase (or every object like the --box "
        "example) with a SAM 3 checkpoint folder, in one image or every image of a folder, and "
        "save them as annotations (category: the phrase; COCO score: the instance's score) in "
        "PROJECT.json. The project is saved after each image; a rerun skips the images already "
        "searched for a phrase with the same checkpoint.",
    )
    parser.add_argument("path", help="an image, or a folder of images")
    parser.add_argument("--checkpoint", required=True, help="SAM 3 checkpoint folder")
    parser.add_argument(
        "--text", action="append", default=[], metavar="PHRASE", help="a noun phrase (repeatable)"
    )
    parser.add_argument(
        "--box",
        metavar="X0,Y0,X1,Y1",
        help="an example box in the image's pixels (one image only): find all objects like it",
    )
    parser.add_argument(
        "--label",
        default=None,
        help=f'category of the --box instances (default "{DEFAULT_BOX_LABEL}")',
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=DEFAULT_THRESHOLD,
        metavar="T",
        help=f"instance score threshold (default {DEFAULT_THRESHOLD:g}; masks stay at 0.5)",
    )
    parser.add_argument("--out", required=True, help="the project .json to write (or continue)")
    add_model_arguments(parser)
    parser.set_defaults(func=run_find_command)


@dataclass
class FindRunReport:
    processed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    instances: int = 0


def parse_box(text: str) -> tuple[float, float, float, float]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4 or not (values[0] < values[2] and values[1] < values[3]):
        raise UserError(f"--box {text} is not X0,Y0,X1,Y1 with X0 < X1 and Y0 < Y1 (pixels).")
    return values  # type: ignore[return-value]


def searches_from(texts, box: str | None, label: str | None):
    """The Search list of the command's arguments; UserError for an empty phrase or none."""
    from annotator.core.found import Search
    from annotator.engines.sam3 import check_phrase

    searches = [Search(check_phrase(text)) for text in texts]
    if box is not None:
        searches.append(Search(box=parse_box(box), label=label or DEFAULT_BOX_LABEL))
    elif label is not None:
        raise UserError("--label names the category of --box instances; give a --box too.")
    if not searches:
        raise UserError("Say what to find: --text PHRASE (repeatable) or --box X0,Y0,X1,Y1.")
    return searches


def run_find_command(args: argparse.Namespace) -> int:
    searches = searches_from(args.text, args.box, args.label)
    report = run_find(
        Path(args.path),
        Path(args.checkpoint),
        Path(args.out),
        searches,
        threshold=args.threshold,
        model_type=args.model_type,
        device=args.device,
        show_progress=True,
    )
    for line in report.unreadable:
        print(f"note: {line}", file=sys.stderr)
    print(
        f"{len(report.processed)} image(s) searched ({report.instances} instances), "
        f"{len(report.skipped)} skipped (already searched); saved {Path(args.out)}."
    )
    return 0


def sam3_fingerprint(checkpoint: Path) -> str:
    """The fingerprint of a SAM 3 folder without loading it; UserError for anything else."""
    from annotator.engines import families, sam3

    info = families.inspect_checkpoint(checkpoint)
    if info.family != "sam3":
        raise UserError(
            f"annotator find needs a SAM 3 checkpoint folder; {checkpoint.name} is {info.what()}."
        )
    return sam3.fingerprint(Path(checkpoint).expanduser(), info)


def run_find(
    path: Path,
    checkpoint: Path,
    out: Path,
    searches,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    model_type: str = "auto",
    device: str = "auto",
    engine=None,
    show_progress: bool = False,
    on_image_saved: Callable[[str, int], None] | None = None,
) -> FindRunReport:
    """Run `searches` (core.found.Search) on the image `path` or every image of the folder
    `path`, into the project `out` (created if missing; new images are added). engine: a loaded
    SAM 3 engine, else `checkpoint` is loaded when an image needs it. on_image_saved(file_name,
    instances) after each image's save; an exception from it (e.g. KeyboardInterrupt) stops the
    run, leaving every finished image saved. Raises UserError for bad input."""
    from annotator.core.found import found_command, is_searched
    from annotator.core.images import is_image_file, list_images, load_image
    from annotator.engines.cache import EmbeddingCache

    if not 0.0 <= threshold < 1.0:
        raise UserError(f"--threshold must be at least 0 and below 1, not {threshold:g}.")
    path, out = Path(path).absolute(), Path(out).absolute()
    if path.is_dir():
        paths = list_images(path)
        if not paths:
            raise UserError(f"{path} holds no images.")
    elif path.is_file() and is_image_file(path):
        paths = [path]
    else:
        raise UserError(f"{path} is neither an image nor a folder.")
    if len(paths) > 1 and any(s.box is not None for s in searches):
        raise UserError("--box is in one image's pixels: give one image, not a folder.")
    if out.suffix.lower() != ".json":
        raise UserError(f"The project file must be a .json file, not {out.name}.")
    model = engine.fingerprint if engine is not None else sam3_fingerprint(Path(checkpoint))
    existed = out.exists()
    session, opened = _open_session(out, paths)
    report = FindRunReport(unreadable=opened.unreadable)
    try:
        project, out = session.project, session.project.path
        categories_before = len(project.categories)
        category_ids = {s.category: category_named(session, s.category) for s in searches}
        records = _records_by_path(project)
        todo = [records[p.resolve()] for p in paths if p.resolve() in records]
        if not existed or opened.added or len(project.categories) != categories_before:
            session.save()  # the file exists, valid, from the start
        cache = EmbeddingCache()
        bar = _progress_bar(len(todo), show_progress)
        try:
            for record in todo:
                missing = [s for s in searches if not is_searched(record, model, s)]
                if not missing:
                    report.skipped.append(record.file_name)
                    bar.update(1)
                    continue
                try:
                    image = load_image(project.image_path(record))
                except UserError as exc:
                    report.unreadable.append(str(exc))
                    bar.update(1)
                    continue
                if image.shape[:2] != (record.height, record.width):
                    report.unreadable.append(
                        f"{record.file_name} is {image.shape[1]}x{image.shape[0]} pixels but the "
                        f"project says {record.width}x{record.height}; it was left out."
                    )
                    bar.update(1)
                    continue
                if engine is None:
                    engine = _load_sam3(checkpoint, model_type, device)
                embedding, _ = cache.encode_cached(engine, image)
                results = [
                    (
                        s,
                        engine.find(
                            embedding, text=s.phrase or None, box=s.box, threshold=threshold
                        ),
                    )
                    for s in missing
                ]
                command, added = found_command(
                    project, project.image(record.id), model, results, category_ids
                )
                session.push(command)
                session.save()
                report.processed.append(record.file_name)
                report.instances += added
                bar.update(1)
                bar.set_postfix(instances=report.instances)
                if on_image_saved is not None:
                    on_image_saved(record.file_name, added)
        except KeyboardInterrupt:
            bar.close()
            print_stopped(len(report.processed), out)
            raise
        bar.close()
        return report
    finally:
        session.close()


def _load_sam3(checkpoint: Path, model_type: str, device: str):
    from annotator.engines.families import load_model

    engine = load_model(checkpoint, model_type, device)
    if not getattr(engine, "supports_find", False):
        raise UserError(f"{engine.name} cannot find by phrase; annotator find needs SAM 3.")
    return engine
