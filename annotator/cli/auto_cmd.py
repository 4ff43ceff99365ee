"""`annotator auto FOLDER --checkpoint CKPT --out PROJECT.json`: segment everything, in batch.

Every image of FOLDER gets the model family's own automatic masks (segment_anything's
SamAutomaticMaskGenerator for SAM 1, MobileSAM and EfficientViT-SAM, sam2's
SAM2AutomaticMaskGenerator for SAM 2 / 2.1, segment_anything_hq's for SAM-HQ; see
`annotator.engines.automatic`) as annotations of the category "object"; the project is saved
(atomically) after each image, which is then marked done, so Ctrl+C leaves a valid project and a rerun continues with the images not done yet. Embeddings go through
the embedding cache, so a rerun with other thresholds does not encode the images again.

With `--ray` the images are segmented on Ray worker actors (annotator.cluster.ray_batch) by the
same per-image function (`engines.batch.segment_image`); this process keeps the project and adds
each image's proposals in the folder's order, so the project equals the single-process run's.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from annotator.cli import add_model_arguments, add_ray_arguments, ray_options
from annotator.errors import UserError

CATEGORY_NAME = "object"


def register(subparsers) -> None:
    from annotator.engines.automatic import AutoMaskSettings

    defaults = AutoMaskSettings()
    parser = subparsers.add_parser(
        "auto",
        help="segment everything in every image of a folder (proposals saved as a project)",
        description="Run the model family's automatic mask generation (segment_anything's "
        "SamAutomaticMaskGenerator, its parameters and defaults; sam2's and SAM-HQ's own "
        "generators for those checkpoints, with the same parameters) on every image of FOLDER and "
        f'save the masks as annotations of the category "{CATEGORY_NAME}" in PROJECT.json. The '
        "project is saved after each image; a rerun skips the images already done.",
    )
    parser.add_argument(
        "folder", metavar="SOURCE", help="a folder of images, or an fsspec URL (s3://bucket/dir)"
    )
    parser.add_argument(
        "--checkpoint", required=True, help="checkpoint of any SAM family (.pth, .pt)"
    )
    parser.add_argument("--out", required=True, help="the project .json to write (or continue)")
    add_model_arguments(parser)
    add_ray_arguments(parser)
    settings = parser.add_argument_group("automatic mask generation (segment_anything's names)")
    for name, kind, text in (
        ("points_per_side", int, "grid points along each side (points_per_side**2 prompts)"),
        ("points_per_batch", int, "prompts decoded at once"),
        ("pred_iou_thresh", float, "keep masks whose predicted IoU is above this"),
        ("stability_score_thresh", float, "keep masks at least this stable"),
        ("stability_score_offset", float, "logit offset of the stability score"),
        ("box_nms_thresh", float, "box IoU above which duplicate masks are dropped"),
        ("crop_n_layers", int, "also run on crops: layer n has 4**n crops"),
        ("crop_nms_thresh", float, "box IoU for duplicates between crops"),
        ("crop_overlap_ratio", float, "overlap of neighbouring crops"),
        ("crop_n_points_downscale_factor", int, "points per side shrink by this per layer"),
        ("min_mask_region_area", int, "remove holes and islands smaller than this (pixels)"),
    ):
        settings.add_argument(
            "--" + name.replace("_", "-"),
            dest=name,
            type=kind,
            metavar="A" if name.endswith("area") else "N" if kind is int else "T",
            default=getattr(defaults, name),
            help=f"{text} (default {getattr(defaults, name):g})",
        )
    parser.set_defaults(func=run_auto_command)


@dataclass
class AutoRunReport:
    """What a run did: image file names processed and skipped, proposals written."""

    processed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)  # images new to an existing project
    proposals: int = 0
    cache_hits: int = 0


def run_auto_command(args: argparse.Namespace) -> int:
    from annotator.engines.automatic import AutoMaskSettings

    settings = AutoMaskSettings(
        **{name: getattr(args, name) for name in AutoMaskSettings().generator_kwargs()}
    ).checked()
    report = run_auto(
        args.folder,
        Path(args.checkpoint),
        Path(args.out),
        settings,
        model_type=args.model_type,
        device=args.device,
        show_progress=True,
        ray=ray_options(args),
    )
    for line in report.unreadable:
        print(f"note: {line}", file=sys.stderr)
    print(
        f"{len(report.processed)} image(s) segmented ({report.proposals} proposals), "
        f"{len(report.skipped)} skipped (already done); saved {Path(args.out)}."
    )
    return 0


def run_auto(
    folder: Path | str,
    checkpoint: Path,
    out: Path,
    settings=None,
    *,
    model_type: str = "auto",
    device: str = "auto",
    engine=None,
    show_progress: bool = False,
    on_step: Callable[[int, int], None] | None = None,
    on_image_saved: Callable[[str, int], None] | None = None,
    ray=None,
) -> AutoRunReport:
    """Segment every image of `folder` (a folder, or an fsspec URL prefix) not yet done in the
    project `out` (created if missing; images new to an existing project are added).

    settings: AutoMaskSettings (None: segment_anything's defaults). engine: a loaded engine,
    else `checkpoint` is loaded. on_step(done, total): each step of the current image (see
    `generate_proposals`); on_image_saved(file_name, proposals): after each image's save.
    An exception from either callback (e.g. KeyboardInterrupt) stops the run; the project file
    then holds every image finished before. Raises UserError for bad input.

    ray: `annotator.cluster.ray_batch.RayOptions` to segment on Ray worker actors instead of
    here (on_step is then not called); each image's result lands in any order and is added in
    the folder's order, so the project equals the single-process run's, ids included.
    """
    from annotator.core.images import is_url, list_image_urls, list_images
    from annotator.engines.automatic import AutoMaskSettings

    settings = (settings or AutoMaskSettings()).checked()
    out = Path(out).absolute()
    if is_url(folder):  # an object store: each record's file_name is the URL of its image
        paths = list_image_urls(str(folder))
    else:
        folder = Path(folder).absolute()
        paths = list_images(folder)
    if not paths:
        raise UserError(f"{folder} holds no images.")
    if out.suffix.lower() != ".json":
        raise UserError(f"The project file must be a .json file, not {out.name}.")
    existed = out.exists()
    session, report = _open_session(out, paths)
    try:
        from annotator.engines import batch
        from annotator.engines.automatic import automatic_unavailable, supports_automatic
        from annotator.engines.cache import COMPUTED, EmbeddingCache
        from annotator.engines.store import store_from_environment

        project, out = session.project, session.project.path
        categories_before = len(project.categories)
        category_id = _object_category(session)
        records = _records_by_path(project)
        todo = [(path, records[path.resolve()]) for path in paths if path.resolve() in records]
        pending = [(path, record) for path, record in todo if not record.done]
        store = store_from_environment()

        if ray is None and engine is None and pending:
            from annotator.engines.families import load_model

            engine = load_model(checkpoint, model_type, device, encoder="fast", decoder="torch")
        if engine is not None and not supports_automatic(engine):
            raise UserError(automatic_unavailable(engine.name))
        if not existed or report.added or len(project.categories) != categories_before:
            session.save()  # the file exists, valid, from the start

        bar = _progress_bar(len(todo), show_progress)

        def finish(record, outcome, error: str) -> None:
            """Add one image's proposals (or note why it could not be used) and save."""
            if error:
                report.unreadable.append(error)
            else:
                count = _add_proposals(session, record, category_id, outcome.proposals)
                session.save()
                report.processed.append(record.file_name)
                report.proposals += count
                report.cache_hits += int(outcome.embedding_source != COMPUTED)
                if on_image_saved is not None:
                    on_image_saved(record.file_name, count)
            bar.update(1)
            bar.set_postfix(proposals=report.proposals)

        try:
            for _, record in todo:
                if record.done:
                    report.skipped.append(record.file_name)
                    bar.update(1)
            if ray is None:
                cache = EmbeddingCache(store=store)
                for path, record in pending:
                    try:
                        outcome = batch.segment_image(
                            engine, cache, path, (record.height, record.width), settings, on_step
                        )
                    except UserError as exc:
                        finish(record, None, str(exc))
                        continue
                    finish(record, outcome, "")
            else:
                _segment_on_ray(
                    pending, checkpoint, model_type, device, settings, store, ray, finish
                )
        except KeyboardInterrupt:
            bar.close()
            print_stopped(len(report.processed), out)
            raise
        bar.close()
        return report
    finally:
        session.close()


def print_stopped(processed: int, out: Path) -> None:
    """What a batch command says when Ctrl+C stopped it (the project holds what was finished)."""
    print(
        f"annotator: stopped after {processed} image(s); {out.name} holds every "
        "finished image: run the same command again to continue.",
        file=sys.stderr,
    )


def _segment_on_ray(pending, checkpoint, model_type, device, settings, store, options, finish):
    """Segment `pending` (path, record) pairs on Ray; `finish` each in their order as soon as
    it and every image before it have landed (results arrive in any order)."""
    from annotator.cluster import ray_batch

    job = ray_batch.WorkerJob(
        ray_batch.AUTO,
        str(Path(checkpoint).expanduser().absolute()),
        model_type,
        device,
        ray_batch.driver_linear_backend(checkpoint, device),
        store=store.location if store is not None else None,
        settings=settings,
    )
    landed: dict[int, object] = {}
    next_index = 0

    def on_result(result) -> None:
        nonlocal next_index
        landed[result.index] = result
        while next_index in landed:
            done = landed.pop(next_index)
            finish(pending[next_index][1], done.value, done.error)
            next_index += 1

    ray_batch.run_images(
        job,
        ((i, str(path), (record.height, record.width)) for i, (path, record) in enumerate(pending)),
        options,
        on_result,
    )


def _open_session(out: Path, paths: list[Path]):
    """The session of the project at `out` (locked) with any new images of the folder added,
    or of a new project. Refuses a project another window holds or has unsaved work for."""
    from annotator.core.coco import add_new_images
    from annotator.core.commands import AddImages
    from annotator.core.project import Project
    from annotator.core.session import AnnotationSession

    report = AutoRunReport()
    if not out.exists():
        project = Project.from_images(paths, out)
        report.unreadable.extend(project.unreadable_images)
        session = AnnotationSession.of(project)
    else:
        session, _ = AnnotationSession.open(out, journal=False)
    try:
        session.require_lock()
        if session.recovery is not None:
            raise UserError(
                f"{out.name} has unsaved work from a window that did not close "
                f"({session.recovery.describe()}): open it in the window first."
            )
    except UserError:
        session.close()
        raise
    added, warnings = add_new_images(session.project.snapshot(), paths)
    if added:
        session.push(AddImages(added))
    report.added.extend(record.file_name for record in added)
    report.unreadable.extend(warnings)
    return session, report


def _records_by_path(project) -> dict[Path, object]:
    return {project.image_path(record).resolve(): record for record in project.images}


def _object_category(session) -> int:
    """The id of the category named "object", added (with the next palette colour) if missing."""
    return category_named(session, CATEGORY_NAME)


def category_named(session, name: str) -> int:
    """The id of the category called `name`, added (with the next palette colour) if missing."""
    for category in session.project.categories:
        if category.name == name:
            return category.id
    return session.add_category(name).id


def _add_proposals(session, record, category_id: int, proposals) -> int:
    """Annotations of the proposals (predicted IoU kept as the COCO "score") and the image marked
    done, as one step; returns how many."""
    from annotator.core.commands import AddAnnotation, CompositeCommand, SetImageDone
    from annotator.core.project import annotation_from_mask

    commands = []
    next_id = session.project.next_annotation_id()
    for proposal in proposals:
        if proposal.area == 0:  # small-region clean-up can empty a mask
            continue
        annotation = annotation_from_mask(next_id, record.id, category_id, proposal.mask)
        commands.append(
            AddAnnotation(replace(annotation, extra={"score": round(proposal.predicted_iou, 6)}))
        )
        next_id += 1
    commands.append(SetImageDone(record.id, True))
    session.push(CompositeCommand(f"Segment {record.file_name}", commands))
    return len(commands) - 1


def _progress_bar(total: int, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, unit="image", disable=not enabled, file=sys.stderr, dynamic_ncols=True)
