"""The project file: one COCO JSON, read from ours and from other tools, written only by us.

What we write:
- `images` (id, file_name relative to the project's folder, width, height), `categories` (id,
  name, supercategory), `annotations` (id, image_id, category_id, segmentation as compressed RLE
  made by pycocotools, area, bbox [x, y, w, h], iscrowd): what pycocotools, CVAT, Label Studio,
  FiftyOne, Roboflow, detectron2 and mmdetection read.
- Ours alone sits under one key, "annotator": {"format_version", "image_root", "categories":
  {id: {"color"}}, "images": {id: {"done", "searched": [{"model", "phrase"}]}}}; other tools
  ignore it. "searched" (optional, older readers ignore it) records what SAM 3 has looked for in
  an image, never a person's done mark.
- Everything else is kept: top-level keys (info, licenses, ...), unknown keys of images,
  categories and annotations, ids exactly as read.

Lossless for foreign files (the decision): an annotation whose segmentation we decoded from
polygons or uncompressed RLE, or whose area/bbox are written differently from ours (float area,
integer bbox), keeps those raw values (`Annotation.original`) and is written back exactly as read
while its mask is unchanged (relabelling keeps them); annotations the person created or re-drew
are written as compressed RLE. Missing area, bbox or iscrowd are added (computed from the mask).
Annotations that cannot be decoded (bad or no segmentation, unknown image or category, corrupt
RLE counts) are reported in the LoadReport and written back verbatim (`Project.undecodable`).
Structural faults (not JSON, wrong types of ids, duplicate ids) raise UserError naming the place.

Speed: compressed RLE is kept as text, never decoded on load; its counts are checked in one
vectorised pass for foreign files only (our own are checked when decoded and by `validate`).

Saving is atomic (`annotator.core.atomic`) and keeps the previous version as `<name>.bak`; a
failed save raises UserError and leaves the last good file byte for byte. A failed load never
writes anything.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from annotator.core.atomic import atomic_write_bytes
from annotator.core.limits import MAX_DEPTH, id_problem, path_problem, size_problem, too_deep
from annotator.core.project import (
    Annotation,
    Category,
    ImageRecord,
    Project,
    _relative_name,
    normalise_path,
    palette_color,
    relink_images,
)
from annotator.errors import UserError

__all__ = [
    "FORMAT_VERSION",
    "OUR_KEY",
    "LoadReport",
    "add_new_images",
    "load_project",
    "open_folder",
    "parse_document",
    "project_document",
    "relink_images",
    "save_project",
    "serialize_document",
]

# 2: sequences (annotations' tracks, video frames). A file with neither is written as 1, which
# every build reads completely (docs/decisions/0009): only what an older build would drop or
# misread needs the newer version.
FORMAT_VERSION = 2
PLAIN_FORMAT_VERSION = 1
OUR_KEY = "annotator"
# Where other tools put the images relative to their JSON, tried in order when the file names do
# not resolve next to the JSON: CVAT (annotations/ beside images/), FiftyOne (data/), others.
IMAGE_ROOT_GUESSES = (
    "",
    "images",
    "data",
    "../images",
    "../images/default",
    "images/default",
    "..",
)
_ANNOTATION_KEYS = ("id", "image_id", "category_id", "segmentation", "area", "bbox", "iscrowd")
_IMAGE_KEYS = ("id", "file_name", "width", "height")
_CATEGORY_KEYS = ("id", "name", "supercategory")
_ANNOTATION_KEY_SET = frozenset(_ANNOTATION_KEYS)
_NUMBER_TYPES = frozenset({int, float})
_FLOAT_ONLY = {float}


@dataclass
class LoadReport:
    """What a load found that the person should know; nothing in it was dropped.

    undecodable: (annotation id or None, reason) of annotations kept verbatim but not shown.
    missing_images: images whose file is not where the project says (annotations kept).
    warnings: other findings, one plain sentence each.
    """

    undecodable: list[tuple[object, str]] = field(default_factory=list)
    missing_images: list[ImageRecord] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    added_images: list[ImageRecord] = field(default_factory=list)  # by open_folder: unsaved

    def is_clean(self) -> bool:
        return not (self.undecodable or self.missing_images or self.warnings or self.added_images)

    def messages(self) -> list[str]:
        """The report as sentences for a dialog or the terminal."""
        lines = []
        if self.undecodable:
            ids = ", ".join(str(i) for i, _ in self.undecodable[:20])
            more = "" if len(self.undecodable) <= 20 else f" and {len(self.undecodable) - 20} more"
            reasons = sorted({reason for _, reason in self.undecodable})[:3]
            lines.append(
                f"{len(self.undecodable)} annotation(s) could not be decoded (ids {ids}{more}): "
                f"{'; '.join(reasons)}. They are kept and written back unchanged."
            )
        if self.missing_images:
            names = ", ".join(r.file_name for r in self.missing_images[:10])
            more = (
                ""
                if len(self.missing_images) <= 10
                else f" and {len(self.missing_images) - 10} more"
            )
            lines.append(
                f"{len(self.missing_images)} image(s) not found ({names}{more}); their annotations "
                "are kept: use Relink folder to find them."
            )
        if self.added_images:
            lines.append(
                f"{len(self.added_images)} new image(s) found in the folder were added to the project."
            )
        return lines + self.warnings


def open_folder(folder: Path, project_name: str = "annotations.json") -> tuple[Project, LoadReport]:
    """The project of a folder of images: its project file when there is one, with the images
    added to the folder since (`LoadReport.added_images`, not saved yet), else a new project.
    Images whose header cannot be read are left out and named in the report's warnings."""
    from annotator.core.images import list_images

    folder = Path(folder).absolute()
    path = folder / project_name
    if not path.exists():
        project = Project.from_folder(folder, project_name)
        return project, LoadReport(warnings=list(project.unreadable_images))
    project, report = load_project(path)
    added, warnings = add_new_images(project, list_images(folder))
    report.added_images.extend(added)
    report.warnings.extend(warnings)
    return project, report


def add_new_images(project: Project, paths: list[Path]) -> tuple[list[ImageRecord], list[str]]:
    """Add the images of `paths` that the project does not list yet (without notifying: call
    before showing the project). Returns the new records and one sentence per unreadable image."""
    from annotator.core.images import is_url, read_image_size

    known = {os.path.normcase(project.image_path(r).resolve()) for r in project.images}
    added: list[ImageRecord] = []
    warnings: list[str] = []
    for image_path in paths:
        if (
            os.path.normcase(
                normalise_path(image_path) if is_url(image_path) else Path(image_path).resolve()
            )
            in known
        ):
            continue
        try:
            width, height = read_image_size(image_path)
        except UserError as exc:
            warnings.append(str(exc))
            continue
        record = ImageRecord(
            project.next_image_id(),
            _relative_name(image_path, project.image_folder()),
            width,
            height,
            path=normalise_path(image_path),
        )
        project.add_image(record, notify=False)
        added.append(record)
    return added, warnings


# ----------------------------------------------------------------------------------------- load
def read_document(path: Path) -> dict:
    """The JSON object in `path`; UserError naming the problem and its place otherwise."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"Project file {path} does not exist.") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a folder, not a project file.") from None
    except OSError as exc:
        raise UserError(f"Cannot read {path}: {exc.strerror or exc}.") from None
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path} is not UTF-8 text (byte {exc.start}).") from None
    # json.loads recurses once per level: refuse deep nesting before it runs out of stack.
    if too_deep(data):
        raise UserError(
            f"{path} is nested too deeply (more than {MAX_DEPTH} levels of lists and objects) "
            "to be a COCO file."
        )
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        hint = " (the file looks truncated)" if exc.pos >= len(text.rstrip()) else ""
        raise UserError(
            f"{path} is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}{hint}."
        ) from None
    except RecursionError:
        raise UserError(f"{path} is nested too deeply to be a COCO file.") from None
    except ValueError as exc:  # e.g. an integer of more than 4300 digits
        reason = " ".join(str(exc).split(";")[0].split())
        raise UserError(f"{path} cannot be read as JSON: {reason}.") from None
    if not isinstance(document, dict):
        raise UserError(
            f"{path} is not a COCO file: the top level is a {_type(document)}, not an object."
        )
    return document


def load_project(path: Path) -> tuple[Project, LoadReport]:
    """Read a project (ours or another tool's COCO file). Raises UserError for a file that cannot
    be a project (unreadable, wrong structure, duplicate ids); never writes anything."""
    path = Path(path).absolute()
    return parse_document(read_document(path), path)


def parse_document(document: dict, path: Path) -> tuple[Project, LoadReport]:
    """Build the Project of a parsed COCO document that lives at `path`."""
    where = Path(path).name
    ours = document.get(OUR_KEY)
    if ours is not None and not isinstance(ours, dict):
        raise UserError(f'{where}: "{OUR_KEY}" must be an object, found {_a(_type(ours))}.')
    ours = ours or {}
    version = ours.get("format_version", FORMAT_VERSION)
    if not _is_int(version):
        raise UserError(f'{where}: "{OUR_KEY}.format_version" must be an integer.')
    if version > FORMAT_VERSION:
        raise UserError(
            f"{where} was written by a newer Annotator (format {version}); this one reads format "
            f"{FORMAT_VERSION}: please update."
        )
    for key in ("images", "categories", "annotations"):
        if key in document and not isinstance(document[key], list):
            raise UserError(f'{where}: "{key}" must be a list, found {_a(_type(document[key]))}.')
    if "images" not in document:
        raise UserError(f'{where} is not a COCO file: it has no "images" list.')

    project = Project(path)
    project.extra = {
        k: v
        for k, v in document.items()
        if k not in ("images", "categories", "annotations", OUR_KEY)
    }
    report = LoadReport()
    settings = ours.get("settings")
    if isinstance(settings, dict):
        project.settings = dict(settings)
    _read_images(project, document["images"], ours, where)
    project.image_root = guess_image_root(project, project.images, ours)
    project.resolve_paths()
    _read_categories(project, document.get("categories", []), ours, where)
    _read_annotations(
        project, document.get("annotations", []), bool(document.get(OUR_KEY)), report, where
    )
    _read_tracks(project, ours)
    report.missing_images = [r for r in project.images if not _is_file(project.image_path(r))]
    project.changes = 0
    return project, report


def _read_images(project: Project, entries: list, ours: dict, where: str) -> None:
    done = ours.get("images", {}) if isinstance(ours.get("images"), dict) else {}
    first_seen: dict[int, int] = {}
    for index, entry in enumerate(entries):
        place = f"{where}: images[{index}]"
        if not isinstance(entry, dict):
            raise UserError(f"{place} must be an object, found {_a(_type(entry))}.")
        image_id = entry.get("id")
        if not _is_int(image_id):
            raise UserError(f'{place} has no integer "id" (found {_short(image_id)}).')
        if id_problem(image_id):
            raise UserError(f'{place}: "id" {id_problem(image_id)}.')
        if image_id in first_seen:
            raise UserError(
                f"{place} repeats image id {image_id} of images[{first_seen[image_id]}]."
            )
        first_seen[image_id] = index
        file_name = entry.get("file_name")
        if not isinstance(file_name, str) or not file_name:
            raise UserError(
                f'{place} (id {image_id}) has no "file_name" text (found {_short(file_name)}).'
            )
        if path_problem(file_name):
            raise UserError(f'{place} (id {image_id}): its "file_name" {path_problem(file_name)}.')
        width, height = entry.get("width"), entry.get("height")
        if width is None or height is None:
            width, height = _size_from_file(project, file_name, f"{place} (id {image_id})")
        # A size that is not a positive integer within the limits refuses the whole file (as a
        # missing file name does) rather than keeping the image aside: every consumer of an
        # ImageRecord (canvas, masks, export) allocates width x height, so a record must never
        # carry an absurd size, and keeping the image and its annotations verbatim would need a
        # second, unshown kind of image in Project. The file stays untouched; the sentence names
        # the image, and `annotator validate` lists every such image at once.
        problem = size_problem(width, height)
        if problem is not None:
            raise UserError(f"{place} (id {image_id}) {_short(file_name)}: {problem}.")
        flags = done.get(str(image_id), {})
        if not isinstance(flags, dict):
            flags = {}
        extra = {k: v for k, v in entry.items() if k not in _IMAGE_KEYS}
        record = ImageRecord(
            image_id,
            file_name,
            int(width),
            int(height),
            bool(flags.get("done", False)),
            extra,
            searched=searched_pairs(flags.get("searched")),
        )
        project.add_image(record, notify=False, resolve=False)  # resolved once the root is known


def _size_from_file(project: Project, file_name: str, place: str) -> tuple[int, int]:
    from annotator.core.images import read_image_size

    probe = ImageRecord(0, file_name, 1, 1)
    for root in IMAGE_ROOT_GUESSES:
        project.image_root = root
        path = project.image_path(probe)
        if path.is_file():
            project.image_root = ""
            try:
                return read_image_size(path)
            except UserError as exc:
                raise UserError(f"{place} has no width/height and {exc}") from None
    project.image_root = ""
    raise UserError(f"{place} has no width/height and its image {file_name} cannot be found.")


def guess_image_root(project: Project, records: list[ImageRecord], ours: dict) -> str:
    """The folder (relative to the project's) where relative file names resolve: ours as saved,
    else the guess among IMAGE_ROOT_GUESSES that finds the most of the first 50 images."""
    root = ours.get("image_root")
    if isinstance(root, str):
        return root
    sample = [r for r in records if not Path(r.file_name).is_absolute()][:50]
    saved = project.image_root
    best, best_hits = "", 0
    for root in IMAGE_ROOT_GUESSES if sample else ():
        project.image_root = root
        hits = sum(_is_file(project.image_path(r)) for r in sample)
        if hits > best_hits:
            best, best_hits = root, hits
        if hits == len(sample):
            break
    project.image_root = saved
    return best


def _read_categories(project: Project, entries: list, ours: dict, where: str) -> None:
    colors = ours.get("categories", {}) if isinstance(ours.get("categories"), dict) else {}
    first_seen: dict[int, int] = {}
    for index, entry in enumerate(entries):
        place = f"{where}: categories[{index}]"
        if not isinstance(entry, dict):
            raise UserError(f"{place} must be an object, found {_a(_type(entry))}.")
        category_id = entry.get("id")
        if not _is_int(category_id):
            raise UserError(f'{place} has no integer "id" (found {_short(category_id)}).')
        if id_problem(category_id):
            raise UserError(f'{place}: "id" {id_problem(category_id)}.')
        if category_id in first_seen:
            raise UserError(
                f"{place} repeats category id {category_id} of categories[{first_seen[category_id]}]."
            )
        first_seen[category_id] = index
        name = entry.get("name")
        if not isinstance(name, str):
            raise UserError(
                f'{place} (id {category_id}) has no "name" text (found {_short(name)}).'
            )
        supercategory = entry.get("supercategory", "")
        if not isinstance(supercategory, str):
            supercategory = str(supercategory)
        ours_entry = colors.get(str(category_id))
        color = (
            _color(ours_entry.get("color")) if isinstance(ours_entry, dict) else None
        ) or palette_color(index)
        extra = {k: v for k, v in entry.items() if k not in _CATEGORY_KEYS}
        project.insert_category(
            Category(category_id, name, color, supercategory, extra), notify=False
        )


def _color(value) -> tuple[int, int, int] | None:
    if (
        isinstance(value, list)
        and len(value) == 3
        and all(_is_int(v) and 0 <= v <= 255 for v in value)
    ):
        return (value[0], value[1], value[2])
    return None


def _read_annotations(
    project: Project, entries: list, ours: bool, report: LoadReport, where: str
) -> None:
    """Compressed RLE is taken as it is (no mask decoded; in foreign files its counts are checked
    in one vectorised pass); polygons and uncompressed RLE are converted. Area and bbox are
    computed, in one pycocotools call, only where missing."""
    from annotator.core.masks import rle_strings_valid, segmentation_to_rle

    first_seen: dict[int, int] = {}
    accepted: list[tuple[int, dict, dict]] = []  # (index, entry, compressed RLE)
    rejected: list[tuple[int, dict, str]] = []  # (index, entry, reason)
    for index, entry in enumerate(entries):
        _check_annotation_fields(entry, index, first_seen, where)
        reason = _check_geometry_types(entry) or _unusable_reason(project, entry)
        if reason is not None:
            rejected.append((index, entry, reason))
            continue
        image = project.image(entry["image_id"])
        segmentation = entry["segmentation"]
        if _is_canonical_rle(segmentation, image):
            accepted.append((index, entry, segmentation))
            continue
        try:
            accepted.append(
                (index, entry, segmentation_to_rle(segmentation, image.height, image.width))
            )
        except ValueError as exc:
            rejected.append((index, entry, str(exc)))
    # Our own files hold what pycocotools wrote; Annotation.mask() and `annotator validate`
    # still check every string before decoding it. Strings whose area or bbox pycocotools must
    # compute now are checked in any file.
    direct = [
        item
        for item in accepted
        if item[2] is item[1]["segmentation"]
        and (not ours or "area" not in item[1] or "bbox" not in item[1])
    ]
    if direct:
        pixels = [rle["size"][0] * rle["size"][1] for _, _, rle in direct]
        valid = rle_strings_valid([rle["counts"] for _, _, rle in direct], pixels)
        corrupt = {index for (index, _, _), ok in zip(direct, valid, strict=True) if not ok}
        if corrupt:
            reason = "compressed RLE counts are corrupt (runs do not cover the image)"
            rejected += [(i, e, reason) for i, e, _ in accepted if i in corrupt]
            accepted = [item for item in accepted if item[0] not in corrupt]
    for _, entry, reason in sorted(rejected, key=lambda item: item[0]):
        project.undecodable.append(entry)
        report.undecodable.append((entry["id"], reason))
    missing = [rle for _, entry, rle in accepted if "area" not in entry or "bbox" not in entry]
    computed = iter(_compute_geometry(missing))
    for _, entry, rle in accepted:
        area, bbox = entry.get("area"), entry.get("bbox")
        if area is None or bbox is None:
            our_area, our_bbox = next(computed)
            area = our_area if area is None else area
            bbox = our_bbox if bbox is None else bbox
        project.insert_annotation(_annotation(entry, rle, area, bbox), notify=False)


def _read_tracks(project: Project, ours: dict) -> None:
    """ours["tracks"]: {annotation id: {"track": id, "propagated": true?}} (sequences)."""
    from dataclasses import replace

    tracks = ours.get("tracks")
    if not isinstance(tracks, dict):
        return
    for key, value in tracks.items():
        try:
            annotation_id = int(key)
        except ValueError:
            continue
        if not isinstance(value, dict) or not _is_int(value.get("track")):
            continue
        if project.has_annotation(annotation_id):
            annotation = project.annotation(annotation_id)
            project.replace_annotation(
                replace(
                    annotation,
                    track=int(value["track"]),
                    propagated=bool(value.get("propagated", False)),
                ),
                notify=False,
            )


def _check_annotation_fields(entry, index: int, first_seen: dict[int, int], where: str) -> None:
    """Raise UserError, naming the place, when an annotation cannot even be indexed."""
    place = f"{where}: annotations[{index}]"
    if not isinstance(entry, dict):
        raise UserError(f"{place} must be an object, found {_a(_type(entry))}.")
    annotation_id = entry.get("id")
    if type(annotation_id) is not int:
        raise UserError(f'{place} has no integer "id" (found {_short(annotation_id)}).')
    if id_problem(annotation_id):
        raise UserError(f'{place}: "id" {id_problem(annotation_id)}.')
    if annotation_id in first_seen:
        raise UserError(
            f"{place} repeats annotation id {annotation_id} of annotations[{first_seen[annotation_id]}]."
        )
    first_seen[annotation_id] = index
    for key in ("image_id", "category_id"):
        if type(entry.get(key)) is not int:
            raise UserError(
                f'{place} (id {annotation_id}) has no integer "{key}" (found {_short(entry.get(key))}).'
            )
    iscrowd = entry.get("iscrowd", 0)
    if type(iscrowd) is not int or iscrowd not in (0, 1):
        raise UserError(
            f'{place} (id {annotation_id}): "iscrowd" must be 0 or 1 (found {_short(iscrowd)}).'
        )


def _annotation(entry: dict, rle: dict, area, bbox) -> Annotation:
    """The Annotation of a file entry; raw values that differ from what we would write are kept
    in `original` so that the entry is written back as read while its mask is unchanged."""
    our_area = int(round(area))
    our_bbox = tuple(map(float, bbox))
    original = {}
    if rle is not entry["segmentation"]:
        original["segmentation"] = entry["segmentation"]
    if "area" in entry and not (type(entry["area"]) is int and entry["area"] == our_area):
        original["area"] = entry["area"]
    if "bbox" in entry and set(map(type, entry["bbox"])) != _FLOAT_ONLY:
        original["bbox"] = entry["bbox"]
    if entry.keys() <= _ANNOTATION_KEY_SET:  # the common case: nothing foreign
        extra = {}
    else:
        extra = {k: v for k, v in entry.items() if k not in _ANNOTATION_KEY_SET}
    return Annotation(
        entry["id"], entry["image_id"], entry["category_id"], rle, our_area, our_bbox,
        entry.get("iscrowd", 0), extra, original or None,
    )  # fmt: skip


def _check_geometry_types(entry: dict) -> str | None:
    if "area" in entry and type(entry["area"]) not in _NUMBER_TYPES:
        return f'"area" is a {_type(entry["area"])}, not a number'
    if "area" in entry and not math.isfinite(entry["area"]):
        return f'"area" is {entry["area"]}, not a finite number'
    bbox = entry.get("bbox")
    if "bbox" in entry and not (
        type(bbox) is list
        and len(bbox) == 4
        and set(map(type, bbox)) <= _NUMBER_TYPES
        and all(map(math.isfinite, bbox))
    ):
        return '"bbox" is not a list of 4 finite numbers'
    return None


def _unusable_reason(project: Project, entry: dict) -> str | None:
    if not project.has_image(entry["image_id"]):
        return f"image {entry['image_id']} does not exist"
    if not project.has_category(entry["category_id"]):
        return f"category {entry['category_id']} does not exist"
    segmentation = entry.get("segmentation")
    if segmentation is None or segmentation == []:
        return "no segmentation (box only)"
    return None


def _is_canonical_rle(segmentation, image: ImageRecord) -> bool:
    """Compressed RLE with text counts sized like the image: kept as it is (not decoded)."""
    return (
        isinstance(segmentation, dict)
        and isinstance(segmentation.get("counts"), str)
        and segmentation.get("size") == [image.height, image.width]
        and len(segmentation) == 2
    )


def _compute_geometry(rles: list[dict]) -> list[tuple[int, list[float]]]:
    if not rles:
        return []
    from pycocotools import mask as mask_utils

    areas = mask_utils.area(rles)
    boxes = mask_utils.toBbox(rles)
    return [(int(a), [float(v) for v in b]) for a, b in zip(areas, boxes, strict=True)]


# ----------------------------------------------------------------------------------------- save
def project_document(project: Project, folder: Path | None = None) -> dict:
    """The COCO document of `project` as it would be saved in `folder` (default: its own folder).

    Every file name is written as read while it still names the image's path from there; others
    (a Save As into another folder, a relinked or new image) are written relative to `folder`.
    """
    own_folder = project.path.parent if project.path is not None else None
    folder = Path(folder).absolute() if folder is not None else own_folder
    moved = folder is not None and folder != own_folder
    image_root = "" if moved else project.image_root
    names_from = (folder / image_root) if folder is not None else Path.cwd()
    document = dict(project.extra)
    document["images"] = [_image_entry(project, r, names_from) for r in project.images]
    document["categories"] = [_category_entry(c) for c in project.categories]
    annotations = [_annotation_entry(a) for a in project.all_annotations()]
    annotations.extend(project.undecodable)
    document["annotations"] = annotations
    images = {str(r.id): _image_flags(r) for r in project.images if r.done or r.searched}
    frames = _video_frames(project, names_from)
    for image_id, where in frames.items():
        images[image_id] = {**images.get(image_id, {}), **where}
    tracks = {
        str(a.id): {"track": a.track, **({"propagated": True} if a.propagated else {})}
        for a in project.all_annotations()
        if a.track is not None
    }
    document[OUR_KEY] = {
        "format_version": FORMAT_VERSION if tracks or frames else PLAIN_FORMAT_VERSION,
        **({"image_root": image_root} if image_root else {}),
        "categories": {str(c.id): {"color": list(c.color)} for c in project.categories},
        "images": images,
        **({"tracks": tracks} if tracks else {}),
        **({"settings": dict(project.settings)} if project.settings else {}),
    }
    return document


def _image_flags(record: ImageRecord) -> dict:
    flags: dict = {"done": True} if record.done else {}
    if record.searched:
        flags["searched"] = [{"model": m, "phrase": p} for m, p in record.searched]
    return flags


def searched_pairs(value) -> tuple[tuple[str, str], ...]:
    """The (model, phrase) pairs of an image's "searched" list; entries that are not
    {"model": text, "phrase": text} are left out (`annotator validate` names them)."""
    if not isinstance(value, list):
        return ()
    pairs = []
    for entry in value:
        if isinstance(entry, dict):
            model, phrase = entry.get("model"), entry.get("phrase")
            if isinstance(model, str) and isinstance(phrase, str) and (model, phrase) not in pairs:
                pairs.append((model, phrase))
    return tuple(pairs)


def _video_frames(project: Project, names_from: Path) -> dict[str, dict]:
    """{image id: {"video": its file name, "frame": index}} of the images that are video frames."""
    from annotator.core.video import video_frame_of

    frames = {}
    for record in project.images:
        found = video_frame_of(project.image_path(record))
        if found is not None:
            video, index = found
            frames[str(record.id)] = {"video": _relative_name(video, names_from), "frame": index}
    return frames


def _image_entry(project: Project, record: ImageRecord, names_from: Path) -> dict:
    file_name = record.file_name
    path = project.image_path(record)
    if project.resolve_file_name(file_name, names_from) != str(path):
        file_name = _relative_name(path, names_from)
    return {
        "id": record.id,
        "file_name": file_name,
        "width": record.width,
        "height": record.height,
        **record.extra,
    }


def _category_entry(category: Category) -> dict:
    return {
        "id": category.id,
        "name": category.name,
        "supercategory": category.supercategory,
        **category.extra,
    }


def _annotation_entry(annotation: Annotation) -> dict:
    entry = {
        "id": annotation.id,
        "image_id": annotation.image_id,
        "category_id": annotation.category_id,
        "segmentation": annotation.rle,
        "area": annotation.area,
        "bbox": list(annotation.bbox),
        "iscrowd": annotation.iscrowd,
    }
    if annotation.original:
        entry.update(annotation.original)
    if annotation.extra:
        entry.update(annotation.extra)
    return entry


def serialize_document(document: dict) -> bytes:
    """UTF-8 JSON with one list item per line: compact and fast (C encoder), readable, diffable."""
    dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
    parts = []
    for key, value in document.items():
        if isinstance(value, list) and value:
            body = "[\n" + ",\n".join(dumps(item) for item in value) + "\n]"
        else:
            body = dumps(value)
        parts.append(f"{dumps(key)}: {body}")
    return ("{\n" + ",\n".join(parts) + "\n}\n").encode("utf-8")


def save_project(project: Project, path: Path | None = None) -> Path:
    """Write the project (the one writer of project files): atomic, previous version kept as
    `<name>.bak`. With `path`, save there (Save As) and make it the project's path.

    Raises UserError (the last saved file intact) when the write fails.
    """
    target = Path(path).absolute() if path is not None else project.path
    if target is None:
        raise UserError("The project has no file yet: choose where to save it.")
    document = project_document(project, target.parent)
    data = serialize_document(document)
    try:
        atomic_write_bytes(target, data, backup=True)
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise UserError(
            f"Could not save {target}: {reason}. The last saved version is intact."
        ) from None
    if target != project.path:  # Save As: the records keep their paths; only the base moves
        project.path = target
        project.image_root = document[OUR_KEY].get("image_root", "")
    return target


# ----------------------------------------------------------------------------------------- util
def _is_file(path: Path) -> bool:
    """Path.is_file that answers False where the name cannot be looked up (permission denied on
    a folder, a name too long for this file system) instead of raising."""
    from annotator.core.video import video_frame_of

    frame = video_frame_of(path)
    try:
        return (frame[0] if frame is not None else path).is_file()
    except (OSError, ValueError):
        return False


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _type(value) -> str:
    return {dict: "object", list: "list", str: "text", bool: "boolean", type(None): "null"}.get(
        type(value), "number" if _is_number(value) else type(value).__name__
    )


def _a(noun: str) -> str:
    return f"an {noun}" if noun[:1] in "aeiou" else f"a {noun}"


def _short(value) -> str:
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 40 else text[:37] + "..."
