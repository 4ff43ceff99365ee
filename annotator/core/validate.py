"""Check a project file and list every problem (`annotator validate PROJECT`).

Unlike loading, which stops at the first structural error, validation reads the raw JSON and goes
on: missing or unreadable images, image sizes that differ from the file, masks out of the image's
bounds or undecodable, duplicate ids, annotations pointing at images or categories that do not
exist. A file that is not JSON, or not a COCO object at all, raises UserError.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from annotator.core.coco import OUR_KEY, guess_image_root, read_document
from annotator.core.limits import _short, id_problem, path_problem, size_problem
from annotator.core.project import ImageRecord, Project
from annotator.errors import UserError


@dataclass(frozen=True)
class Problem:
    """One problem: where (e.g. "annotations[12] (id 40)") and what, in a sentence."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


def validate_project(path: Path, check_image_files: bool = True) -> list[Problem]:
    """Every problem of the project file at `path` (empty when it is sound)."""
    path = Path(path).absolute()
    document = read_document(path)
    for key in ("images", "categories", "annotations"):
        if key in document and not isinstance(document[key], list):
            raise UserError(f'{path.name}: "{key}" must be a list, found {_kind(document[key])}.')
    if "images" not in document:
        raise UserError(f'{path.name} is not a COCO file: it has no "images" list.')
    problems: list[Problem] = []
    images, unsized = _check_images(document["images"], problems)
    categories = _check_categories(document.get("categories", []), problems)
    _check_annotations(document.get("annotations", []), images, unsized, categories, problems)
    _check_searched(document.get(OUR_KEY), problems)
    if check_image_files:
        _check_image_files(path, document, images, problems)
    return problems


def _kind(value) -> str:
    return {dict: "an object", list: "a list", str: "text", type(None): "null"}.get(
        type(value), f"a {type(value).__name__}"
    )


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_ids(entries: list, kind: str, problems: list[Problem]) -> dict[int, tuple[int, dict]]:
    """{id: (index, entry)} of the well-formed entries; problems for the others and duplicates."""
    seen: dict[int, tuple[int, dict]] = {}
    for index, entry in enumerate(entries):
        where = f"{kind}[{index}]"
        if not isinstance(entry, dict):
            problems.append(Problem(where, f"is {_kind(entry)}, not an object"))
            continue
        entry_id = entry.get("id")
        if not _is_int(entry_id):
            problems.append(Problem(where, f'has no integer "id" (found {_short(entry_id)})'))
            continue
        if id_problem(entry_id):
            problems.append(Problem(where, f'"id" {id_problem(entry_id)}'))
            continue
        if entry_id in seen:
            problems.append(
                Problem(
                    f"{where} (id {entry_id})", f"repeats the id of {kind}[{seen[entry_id][0]}]"
                )
            )
            continue
        seen[entry_id] = (index, entry)
    return seen


def _check_images(
    entries: list, problems: list[Problem]
) -> tuple[dict[int, tuple[int, dict]], set[int]]:
    """The well-formed images with a usable size, and the ids of those without one (their masks
    cannot be checked, nor decoded safely)."""
    images = _check_ids(entries, "images", problems)
    unsized: set[int] = set()
    for image_id, (index, entry) in list(images.items()):
        where = f"images[{index}] (id {image_id})"
        file_name = entry.get("file_name")
        if not isinstance(file_name, str) or not file_name:
            problems.append(Problem(where, 'has no "file_name"'))
        elif path_problem(file_name):
            problems.append(Problem(where, f'its "file_name" {path_problem(file_name)}'))
            entry = dict(entry, file_name=None)  # not a path: not looked for on disk
            images[image_id] = (index, entry)
        problem = size_problem(entry.get("width"), entry.get("height"))
        if problem is not None:
            name = f" {_short(file_name)}" if isinstance(file_name, str) else ""
            problems.append(Problem(f"{where}{name}", problem))
            del images[image_id]
            unsized.add(image_id)
    return images, unsized


def _check_searched(ours, problems: list[Problem]) -> None:
    """Our optional record of what SAM 3 searched each image for: a list of {"model": text,
    "phrase": text} per image id (loading skips malformed entries; here they are named)."""
    flags = ours.get("images") if isinstance(ours, dict) else None
    if not isinstance(flags, dict):
        return
    for image_id, entry in flags.items():
        searched = entry.get("searched") if isinstance(entry, dict) else None
        if searched is None:
            continue
        where = f'{OUR_KEY}.images["{image_id}"].searched'
        if not isinstance(searched, list):
            problems.append(Problem(where, f"must be a list, found {_kind(searched)}"))
            continue
        for n, item in enumerate(searched):
            ok = isinstance(item, dict) and all(
                isinstance(item.get(key), str) for key in ("model", "phrase")
            )
            if not ok:
                problems.append(Problem(f"{where}[{n}]", 'must be {"model": text, "phrase": text}'))


def _check_categories(entries: list, problems: list[Problem]) -> dict[int, tuple[int, dict]]:
    categories = _check_ids(entries, "categories", problems)
    for category_id, (index, entry) in categories.items():
        if not isinstance(entry.get("name"), str):
            problems.append(
                Problem(f"categories[{index}] (id {category_id})", 'has no "name" text')
            )
    return categories


def _check_annotations(
    entries: list, images: dict, unsized: set[int], categories: dict, problems: list[Problem]
) -> None:
    from annotator.core.masks import rle_strings_valid, segmentation_to_rle

    annotations = _check_ids(entries, "annotations", problems)
    compressed: list[tuple[str, str, int]] = []  # (where, counts, pixels): checked in one batch
    for annotation_id, (index, entry) in annotations.items():
        where = f"annotations[{index}] (id {annotation_id})"
        image_id, category_id = entry.get("image_id"), entry.get("category_id")
        if not _is_int(category_id) or category_id not in categories:
            problems.append(
                Problem(where, f"refers to category {_short(category_id)}, which does not exist")
            )
        iscrowd = entry.get("iscrowd", 0)
        if type(iscrowd) is not int or iscrowd not in (0, 1):
            problems.append(Problem(where, f'"iscrowd" must be 0 or 1 (found {_short(iscrowd)})'))
        if _is_int(image_id) and image_id in unsized:
            continue  # the image's size is reported; its masks cannot be checked against it
        if not _is_int(image_id) or image_id not in images:
            problems.append(
                Problem(where, f"refers to image {_short(image_id)}, which does not exist")
            )
            continue
        image = images[image_id][1]
        width, height = image["width"], image["height"]
        _check_box_and_area(entry, width, height, where, problems)
        segmentation = entry.get("segmentation")
        if segmentation is None or segmentation == []:
            problems.append(Problem(where, "has no segmentation"))
            continue
        if isinstance(segmentation, dict) and isinstance(segmentation.get("counts"), str):
            size = segmentation.get("size")
            if size != [height, width]:
                problems.append(
                    Problem(
                        where,
                        f"mask size {_short(size)} is out of bounds of the image {height}x{width}",
                    )
                )
            else:
                compressed.append((where, segmentation["counts"], height * width))
            continue
        if isinstance(segmentation, list):
            _check_polygon_bounds(segmentation, width, height, where, problems)
        try:
            segmentation_to_rle(segmentation, height, width)
        except ValueError as exc:
            problems.append(Problem(where, f"segmentation cannot be decoded: {exc}"))
    if compressed:
        valid = rle_strings_valid([c for _, c, _ in compressed], [p for _, _, p in compressed])
        for (where, _, _), ok in zip(compressed, valid, strict=True):
            if not ok:
                problems.append(
                    Problem(where, "compressed RLE is corrupt: its runs do not cover the image")
                )


def _check_box_and_area(
    entry: dict, width: int, height: int, where: str, problems: list[Problem]
) -> None:
    bbox = entry.get("bbox")
    if bbox is not None:
        if not (
            isinstance(bbox, list)
            and len(bbox) == 4
            and all(_is_number(v) and math.isfinite(v) for v in bbox)
        ):
            problems.append(
                Problem(
                    where, f'"bbox" must be 4 finite numbers [x, y, w, h] (found {_short(bbox)})'
                )
            )
        else:
            x, y, w, h = bbox
            if (
                w < 0
                or h < 0
                or x < -0.5
                or y < -0.5
                or x + w > width + 0.5
                or y + h > height + 0.5
            ):
                problems.append(
                    Problem(where, f"bbox {bbox} is out of bounds of the image {width}x{height}")
                )
    area = entry.get("area")
    if area is not None and (not _is_number(area) or not math.isfinite(area) or area < 0):
        problems.append(
            Problem(where, f'"area" must be a non-negative number (found {_short(area)})')
        )


def _check_polygon_bounds(
    polygons: list, width: int, height: int, where: str, problems: list[Problem]
) -> None:
    values = [
        v
        for part in polygons
        if isinstance(part, list)
        for v in part
        if _is_number(v) and math.isfinite(v)
    ]
    xs, ys = values[0::2], values[1::2]
    if xs and (min(xs) < -0.5 or max(xs) > width + 0.5 or min(ys) < -0.5 or max(ys) > height + 0.5):
        problems.append(
            Problem(where, f"polygon points lie out of bounds of the image {width}x{height}")
        )


def _check_image_files(path: Path, document: dict, images: dict, problems: list[Problem]) -> None:
    from annotator.core.images import read_image_size
    from annotator.core.video import probe_video, video_frame_of

    project = Project(path)
    ours = document.get(OUR_KEY) if isinstance(document.get(OUR_KEY), dict) else {}
    records = {
        image_id: ImageRecord(image_id, entry["file_name"], entry["width"], entry["height"])
        for image_id, (_, entry) in images.items()
        if isinstance(entry.get("file_name"), str) and entry["file_name"]
    }
    project.image_root = guess_image_root(project, list(records.values()), ours)
    for image_id, record in records.items():
        where = f"images[{images[image_id][0]}] (id {image_id})"
        file = project.image_path(record)
        frame = video_frame_of(file)
        try:
            exists = (frame[0] if frame is not None else file).is_file()
        except (OSError, ValueError) as exc:  # e.g. a name too long for this file system
            problems.append(
                Problem(
                    where,
                    f"image file {_short(record.file_name)} cannot be "
                    f"looked up: {getattr(exc, 'strerror', None) or exc}",
                )
            )
            continue
        if not exists:
            missing = (
                f"the video of frame {record.file_name}"
                if frame
                else f"image file {record.file_name}"
            )
            problems.append(Problem(where, f"{missing} is missing"))
            continue
        if frame is not None:  # a frame of a video: the video decodes and has that frame
            try:
                count = probe_video(frame[0]).frame_count
            except UserError as exc:
                problems.append(Problem(where, str(exc).rstrip(".")))
                continue
            if frame[1] >= count:
                problems.append(
                    Problem(
                        where, f"frame {frame[1]} is past the end of the video ({count} frames)"
                    )
                )
                continue
        try:
            size = read_image_size(file)
        except UserError as exc:
            problems.append(Problem(where, f"image file cannot be decoded: {exc}"))
            continue
        if size != (record.width, record.height):
            problems.append(
                Problem(
                    where,
                    f"the file is {size[0]}x{size[1]} but the project says {record.width}x{record.height}",
                )
            )
