"""Sequences: a project's images in display order are its frames; annotations carry tracks.

What a propagation does (the one mechanism for the window and `annotator propagate`):

1. `plan_propagation` reads the prompts from the project. For every track with an annotation on
   the start frame (an annotation without a track gets a new one: plain Enter starts a new track),
   that annotation's mask is the prompt on the start frame, and every frame of the track the person
   made or edited by hand (`Annotation.propagated` false) within the frames being propagated is a
   mask prompt too. Seeds (clicks, a box or a mask on a frame) start new tracks.
2. The engine (`annotator.engines.sam2_video`) runs; each frame's masks are encoded to RLE where
   they are made (`encode_frame`), so a long run holds only compact results.
3. `propagation_command` turns the results into ONE undo step: on each frame reached, a track's
   annotations that propagation made are replaced (deleted where the object is gone); a frame where
   the person drew the track is kept as it is. Frames not reached are untouched. So a correction on
   frame 20 (an edited mask, or clicks that re-draw it) re-propagates from 20 on and replaces only
   what earlier propagations made.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from annotator.core.project import Annotation, Project
from annotator.errors import UserError

DIRECTIONS = ("forward", "backward", "both")


@dataclass(frozen=True)
class Seed:
    """A new track on frame `frame` (a position in the sequence) from clicks/box, or a mask."""

    frame: int
    category_id: int
    points: np.ndarray | None = None
    labels: np.ndarray | None = None
    box: tuple[float, float, float, float] | None = None
    mask: np.ndarray | None = None


@dataclass
class PropagationPlan:
    """image_ids: the frames propagated (a slice of the sequence); positions are indexes in it.
    prompts: engine TrackPrompts (frame = position). categories: track -> category id.
    start: position of the start frame. assign: annotation id -> new track (untracked annotations
    of the start frame). seeds: track -> its Seed (annotations made from the engine's mask)."""

    image_ids: list[int]
    start: int
    direction: str
    max_frames: int | None
    prompts: list = field(default_factory=list)
    categories: dict[int, int] = field(default_factory=dict)
    assign: dict[int, int] = field(default_factory=dict)
    seeds: dict[int, Seed] = field(default_factory=dict)
    size: tuple[int, int] = (0, 0)  # (height, width) of every frame

    @property
    def tracks(self) -> list[int]:
        return sorted(self.categories)

    def reach(self) -> list[int]:
        """The positions the propagation will produce, in order."""
        last = len(self.image_ids) - 1
        n = self.max_frames if self.max_frames is not None else len(self.image_ids)
        forward = list(range(self.start, min(self.start + n, last) + 1))
        backward = list(range(self.start, max(self.start - n, 0) - 1, -1))
        if self.direction == "forward":
            return forward
        if self.direction == "backward":
            return backward
        return forward + backward[1:]


def video_project(video, project_name: str = "annotations.json") -> Project:
    """The project of a video file: `project_name` beside it when that holds this video's frames
    (or does not exist yet), else `<video stem>.json`; new projects get one image per frame."""
    from pathlib import Path

    from annotator.core.coco import load_project
    from annotator.core.video import frame_paths, video_frame_of

    video = Path(video).absolute()
    paths = frame_paths(video)  # UserError for a video OpenCV cannot decode
    for candidate in (video.parent / project_name, video.with_suffix(".json")):
        if not candidate.exists():
            return Project.from_images(paths, candidate)
        project, _ = load_project(candidate)
        videos = {video_frame_of(project.image_path(r)) is not None for r in project.images[:1]}
        if videos == {True} and project.image_path(project.images[0]).parent == video:
            return project
    raise UserError(
        f"{video.parent / project_name} and {video.with_suffix('.json').name} hold other projects: "
        "open the video's project .json instead."
    )


def next_track(project: Project) -> int:
    return 1 + max((a.track for a in project.all_annotations() if a.track is not None), default=0)


def parse_frames(text: str | None, count: int) -> range:
    """A Python slice "A:B" (B excluded, negatives from the end) of `count` frames."""
    if not text:
        return range(count)
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        bounds = [int(p) if p.strip() else None for p in parts]
    except ValueError:
        raise UserError(f"--frames {text!r} is not a slice A:B of frame numbers.") from None
    frames = range(count)[slice(*bounds)]
    if not frames:
        raise UserError(f"--frames {text} selects no frame of the {count}.")
    return frames


def plan_propagation(
    project: Project,
    start_image_id: int,
    direction: str = "forward",
    *,
    frames: range | None = None,
    max_frames: int | None = None,
    tracks: set[int] | None = None,
    seeds: list[Seed] = (),
) -> PropagationPlan:
    """What to propagate (see the module doc). frames: the positions (of project.images) to work
    in (default all). tracks: only these of the start frame's tracks (None: all of them).
    Raises UserError when there is nothing to propagate or the frames differ in size."""
    if direction not in DIRECTIONS:
        raise UserError(f"Unknown direction {direction!r}: use {', '.join(DIRECTIONS)}.")
    all_ids = [r.id for r in project.images]
    frames = frames if frames is not None else range(len(all_ids))
    image_ids = [all_ids[i] for i in frames]
    if start_image_id not in image_ids:
        raise UserError("The start frame is outside the frames to propagate.")
    start = image_ids.index(start_image_id)
    plan = PropagationPlan(image_ids, start, direction, max_frames)
    first = project.image(start_image_id)
    plan.size = (first.height, first.width)
    for image_id in image_ids:
        record = project.image(image_id)
        if (record.height, record.width) != plan.size:
            raise UserError(
                f"Frame {record.file_name} is {record.width}x{record.height}, the start frame "
                f"{first.width}x{first.height}: every frame of a sequence must have one size."
            )
    from annotator.engines.sam2_video import TrackPrompt

    new_track = next_track(project)
    for annotation in project.annotations_of(start_image_id):
        track = annotation.track
        if track is None:
            track = new_track
            new_track += 1
            plan.assign[annotation.id] = track
        if tracks is not None and track not in tracks and annotation.id not in plan.assign:
            continue
        plan.categories.setdefault(track, annotation.category_id)
    reach = set(plan.reach())
    position_of = {image_id: i for i, image_id in enumerate(image_ids)}
    hand: dict[tuple[int, int], np.ndarray] = {}  # (track, position) -> union of hand masks
    for annotation in project.annotations_of(start_image_id):
        track = plan.assign.get(annotation.id, annotation.track)
        if track in plan.categories:
            _unite(hand, (track, start), annotation.mask())
    for image_id in image_ids:
        position = position_of[image_id]
        if position == start or position not in reach:
            continue
        for annotation in project.annotations_of(image_id):
            if annotation.track in plan.categories and not annotation.propagated:
                _unite(hand, (annotation.track, position), annotation.mask())
    for (track, position), mask in sorted(hand.items(), key=lambda item: item[0]):
        plan.prompts.append(TrackPrompt(track, position, mask=mask))
    for seed in seeds:
        if not 0 <= seed.frame < len(image_ids):
            raise UserError(f"A seed is on frame {seed.frame}, outside the frames to propagate.")
        track = new_track
        new_track += 1
        plan.categories[track] = seed.category_id
        plan.seeds[track] = seed
        plan.prompts.append(
            TrackPrompt(track, seed.frame, seed.points, seed.labels, seed.box, seed.mask)
        )
    if not plan.prompts:
        raise UserError(
            "Nothing to propagate: the start frame has no annotation (make one, or give a seed)."
        )
    return plan


def _unite(masks: dict, key, mask: np.ndarray) -> None:
    masks[key] = masks[key] | mask if key in masks else mask


def encode_frame(masks: dict[int, np.ndarray]) -> dict[int, dict | None]:
    """track -> compressed RLE of its mask, None where the mask is empty (the object is gone)."""
    from annotator.core.masks import encode_mask

    return {track: (encode_mask(m) if m.any() else None) for track, m in masks.items()}


def propagation_command(project: Project, plan: PropagationPlan, results: dict[int, dict]):
    """One undo step of `results` (position -> track -> RLE or None), as the module doc says;
    None when it would change nothing."""
    from annotator.core.commands import (
        AddAnnotation,
        CompositeCommand,
        DeleteAnnotations,
        ReplaceAnnotation,
    )
    from annotator.core.masks import rle_area, rle_bbox

    commands = []
    for annotation_id, track in plan.assign.items():
        if project.has_annotation(annotation_id):
            commands.append(
                ReplaceAnnotation(replace(project.annotation(annotation_id), track=track))
            )
    next_id = project.next_annotation_id()
    frames_changed = 0
    for position in sorted(results):
        image_id = plan.image_ids[position]
        existing = project.annotations_of(image_id)
        changed = False
        for track, rle in results[position].items():
            if track not in plan.categories:
                continue
            mine = [a for a in existing if a.track == track]
            if any(not a.propagated for a in mine):
                continue  # the person's frame: kept (it was a prompt)
            if position == plan.start and track not in plan.seeds:
                continue
            seeded_here = track in plan.seeds and plan.seeds[track].frame == position
            if rle is None:
                if mine:
                    commands.append(DeleteAnnotations([a.id for a in mine]))
                    changed = True
                continue
            new = Annotation(
                mine[0].id if mine else next_id,
                image_id,
                plan.categories[track],
                rle,
                rle_area(rle),
                rle_bbox(rle),
                track=track,
                propagated=not seeded_here,
            )
            if mine:
                if mine[0].rle != rle:
                    commands.append(ReplaceAnnotation(replace(mine[0], **_geometry(new))))
                    changed = True
                if len(mine) > 1:
                    commands.append(DeleteAnnotations([a.id for a in mine[1:]]))
                    changed = True
            else:
                commands.append(AddAnnotation(new, "Propagate"))
                next_id += 1
                changed = True
        frames_changed += changed
    if not commands:
        return None
    text = f"Propagate ({frames_changed} frame{'s' if frames_changed != 1 else ''})"
    return CompositeCommand(text, commands)


def _geometry(new: Annotation) -> dict:
    return {
        "rle": new.rle,
        "area": new.area,
        "bbox": new.bbox,
        "original": None,
        "propagated": new.propagated,
    }


def frame_paths(project: Project, plan: PropagationPlan) -> list[str]:
    """The image path of each position of the plan (what a loader reads)."""
    return [str(project.image_path(project.image(i))) for i in plan.image_ids]


def run_propagation(propagator, plan: PropagationPlan, paths: list[str], load=None, cancelled=None):
    """Iterator of (position, {track: RLE or None}) as the engine makes them; frames read by
    `load(path)` (default `annotator.core.images.load_image`) when the engine needs them. A frame
    that cannot be read, or is not the plan's size, raises UserError naming it."""
    if load is None:
        from annotator.core.images import load_image as load

    def load_frame(position: int) -> np.ndarray:
        image = load(paths[position])
        if image.shape[:2] != plan.size:
            raise UserError(
                f"Frame {position} ({paths[position]}) is {image.shape[1]}x{image.shape[0]}, "
                f"not {plan.size[1]}x{plan.size[0]} as the project says."
            )
        return image

    state = propagator.init_state(load_frame, len(paths), first=load_frame(plan.start))
    for prompt in plan.prompts:
        propagator.add_prompt(state, prompt)
    for result in propagator.propagate(
        state, plan.start, plan.direction, plan.max_frames, cancelled or (lambda: False)
    ):
        yield result.frame, encode_frame(result.masks)
