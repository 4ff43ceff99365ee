"""`annotator propagate PROJECT --checkpoint CKPT ...`: propagate masks through a sequence with
SAM 2.x's video predictor, headless (`annotator.core.sequence` does the work the window does).

PROJECT: a sequence project .json, a video file or a folder of frames (then a new sequence project,
written to --out, default `annotations.json` beside the frames). Every track with an annotation on
the start frame is propagated, and each --mask/--box seed starts a new track. Results are saved as
one step at the end; Ctrl+C saves the frames done so far, and a rerun propagates again from the
start frame (the same masks, replacing what the first run made) and on past where it stopped.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from annotator.errors import UserError

DEFAULT_LABEL = "object"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "propagate",
        help="propagate masks through the frames of a sequence or video (SAM 2.x)",
        description="Propagate every track annotated on the start frame, and new tracks seeded "
        "with --mask/--box, through the frames with SAM 2 / 2.1's video predictor. Frames the "
        "person annotated by hand are kept and used as prompts; what earlier propagation made "
        "in the frames reached is replaced.",
    )
    parser.add_argument("project", help="a project .json, a video file or a folder of frames")
    parser.add_argument("--checkpoint", required=True, help="SAM 2 / 2.1 checkpoint (.pt)")
    parser.add_argument(
        "--from-frame", type=int, default=None, metavar="N",
        help="start frame, from 0 (default: the first seed's frame, else the first annotated one)",
    )  # fmt: skip
    parser.add_argument("--direction", choices=("forward", "backward", "both"), default="forward")
    parser.add_argument(
        "--frames", default=None, metavar="A:B", help="only frames A..B-1 (a Python slice)"
    )
    parser.add_argument(
        "--mask", action="append", default=[], metavar="N:MASK.png",
        help="seed a new track on frame N with a mask image (non-zero pixels are the object)",
    )  # fmt: skip
    parser.add_argument(
        "--box", action="append", default=[], metavar="N:X0,Y0,X1,Y1",
        help="seed a new track on frame N with a box (pixels)",
    )  # fmt: skip
    parser.add_argument("--label", default=DEFAULT_LABEL, help="category of seeded tracks")
    parser.add_argument("--out", default=None, help="the project .json to write")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.set_defaults(func=run_propagate_command)


def run_propagate_command(args: argparse.Namespace) -> int:
    summary = run_propagate(
        Path(args.project),
        Path(args.checkpoint),
        out=Path(args.out) if args.out else None,
        from_frame=args.from_frame,
        direction=args.direction,
        frames=args.frames,
        masks=args.mask,
        boxes=args.box,
        label=args.label,
        device=args.device,
        show_progress=True,
    )
    print(summary)
    return 0


def _seed_spec(text: str, option: str) -> tuple[int, str]:
    frame, sep, value = text.partition(":")
    if not sep or not frame.strip().lstrip("-").isdigit() or not value:
        raise UserError(
            f"{option} {text!r} must be N:{'MASK.png' if option == '--mask' else 'X0,Y0,X1,Y1'}."
        )
    return int(frame), value


def _project_path(source: Path, out: Path | None) -> tuple[Path, list[Path]]:
    """(the project .json, the frame paths when `source` is frames or a video, else [])."""
    from annotator.core.images import list_images
    from annotator.core.video import frame_paths, is_video_file

    if source.is_dir():
        frames = list_images(source)
        if not frames:
            raise UserError(f"{source} holds no images.")
        return (out or source / "annotations.json").absolute(), frames
    if is_video_file(source):
        if not source.is_file():
            raise UserError(f"{source} does not exist.")
        return (out or source.parent / "annotations.json").absolute(), frame_paths(source)
    if source.suffix.lower() == ".json":
        if not source.is_file():
            raise UserError(f"{source} does not exist.")
        return (out or source).absolute(), []
    raise UserError(f"{source.name} is neither a project .json, a video file nor a folder.")


def run_propagate(
    source: Path,
    checkpoint: Path,
    *,
    out: Path | None = None,
    from_frame: int | None = None,
    direction: str = "forward",
    frames: str | None = None,
    masks: list[str] = (),
    boxes: list[str] = (),
    label: str = DEFAULT_LABEL,
    device: str = "auto",
    propagator=None,
    show_progress: bool = False,
) -> str:
    """Propagate and save; returns the summary line. Raises UserError for bad input (nothing
    written then)."""
    from annotator.cli.auto_cmd import _open_session, _progress_bar
    from annotator.core import sequence

    source = Path(source).expanduser().absolute()
    out_path, frame_files = _project_path(source, out)
    if out_path.suffix.lower() != ".json":
        raise UserError(f"The project file must be a .json file, not {out_path.name}.")
    seed_specs = [(*_seed_spec(t, "--mask"), "mask") for t in masks]
    seed_specs += [(*_seed_spec(t, "--box"), "box") for t in boxes]
    if not Path(checkpoint).expanduser().is_file():
        raise UserError(f"Checkpoint {checkpoint} does not exist.")
    if frame_files or not out_path.exists():
        if not frame_files:
            raise UserError(f"{source} does not exist.")
        session, _report = _open_session(out_path, frame_files)
    else:
        from annotator.core.session import AnnotationSession

        if out_path != source:  # a copy of the project at --out
            from annotator.core.coco import load_project

            project, _ = load_project(source)
            session = AnnotationSession.of(project)
            session.require_lock()
        else:
            session, _ = AnnotationSession.open(source, journal=False)
            session.require_lock()
            if session.recovery is not None:
                session.close()
                raise UserError(
                    f"{source.name} has unsaved work from a window that did not close "
                    f"({session.recovery.describe()}): open it in the window first."
                )
    try:
        project = session.project
        if not project.images:
            raise UserError("The project has no frames.")
        selected = sequence.parse_frames(frames, len(project.images))
        seeds = _seeds(session, seed_specs, label, selected)
        start = _start_frame(project, from_frame, seeds, selected)
        start_id = project.images[start].id
        seeds = [replace(s, frame=selected.index(s.frame)) for s in seeds]  # positions in A:B
        plan = sequence.plan_propagation(project, start_id, direction, frames=selected, seeds=seeds)
        if propagator is None:
            from annotator.engines.sam2_video import load_propagator

            propagator = load_propagator(checkpoint, device)
        results: dict[int, dict] = {}
        bar = _progress_bar(len(plan.reach()), show_progress)
        bar.unit = "frame"
        stopped = False
        try:
            paths = sequence.frame_paths(project, plan)
            for position, rles in sequence.run_propagation(propagator, plan, paths):
                results[position] = rles
                bar.update(1)
        except KeyboardInterrupt:
            stopped = True
        finally:
            bar.close()
        command = sequence.propagation_command(project, plan, results)
        if command is not None:
            session.push(command)
        session.save(out_path)
        if stopped:
            print(
                f"annotator: stopped after {len(results)} frame(s); {out_path.name} holds them: "
                "run the same command again to continue.",
                file=sys.stderr,
            )
            raise KeyboardInterrupt
        tracks = len(plan.tracks)
        return (
            f"{len(results)} frame(s) propagated for {tracks} track(s) from frame {start}; "
            f"saved {out_path}."
        )
    finally:
        session.close()


def _start_frame(project, from_frame, seeds, selected: range) -> int:
    count = len(project.images)
    if from_frame is not None:
        if not -count <= from_frame < count:
            raise UserError(
                f"--from-frame {from_frame}: the sequence has {count} frames (0..{count - 1})."
            )
        start = from_frame % count
    elif seeds:
        start = min(s.frame for s in seeds)
    else:
        annotated = [i for i in selected if project.annotations_of(project.images[i].id)]
        if not annotated:
            raise UserError("No frame has an annotation to propagate: give --mask or --box seeds.")
        start = annotated[0]
    if start not in selected:
        raise UserError(f"The start frame {start} is outside --frames.")
    return start


def _seeds(session, specs, label: str, selected: range):
    """Seeds of --mask/--box (frame numbers of the whole sequence), their category added if
    missing."""
    import numpy as np

    from annotator.core.sequence import Seed

    if not specs:
        return []
    project = session.project
    count = len(project.images)
    category = next((c for c in project.categories if c.name == label), None)
    seeds = []
    for frame, value, kind in specs:
        if not 0 <= frame < count:
            raise UserError(f"--{kind} on frame {frame}: the sequence has {count} frames.")
        if frame not in selected:
            raise UserError(f"--{kind} on frame {frame} is outside --frames.")
        record = project.images[frame]
        if kind == "box":
            try:
                box = tuple(float(v) for v in value.split(","))
            except ValueError:
                box = ()
            if len(box) != 4 or not (box[0] < box[2] and box[1] < box[3]):
                raise UserError(f"--box {frame}:{value} must be X0,Y0,X1,Y1 with X0<X1, Y0<Y1.")
            seeds.append(Seed(frame, 0, box=box))
            continue
        from PIL import Image

        try:
            with Image.open(Path(value).expanduser()) as im:
                mask = np.asarray(im.convert("L")) > 0
        except (OSError, ValueError) as exc:
            raise UserError(f"--mask {value}: cannot read it as an image ({exc}).") from None
        if mask.shape != (record.height, record.width):
            raise UserError(
                f"--mask {value} is {mask.shape[1]}x{mask.shape[0]}, frame {frame} is "
                f"{record.width}x{record.height}."
            )
        if not mask.any():
            raise UserError(f"--mask {value} is empty.")
        seeds.append(Seed(frame, 0, mask=mask))
    if category is None:
        category = session.add_category(label)
    return [replace(s, category_id=category.id) for s in seeds]
