"""Export a project for training code and other tools (File > Export and `annotator export`).

Formats (`FORMATS`):
- coco: the COCO JSON as saved (compressed RLE), file names relative to the export's folder.
- coco-polygons: the same with polygon segmentations: every outer part of an object; holes cannot
  be represented and are reported as lost; crowd annotations stay RLE (COCO's convention).
- png: per image an instance-id PNG (uint16, 0 = background, k = k-th annotation bottom to top)
  and a class-id PNG (category ids; uint8, or uint16 when an id exceeds 255), plus legend.json.
- cutouts: one RGBA PNG per annotation, cropped to its box, transparent outside the mask.
- yolo: YOLO segmentation labels (one line per outer part, normalised x y pairs), the images
  (hard links where possible) and data.yaml.
- youtube-vis: sequences (a video file's frames, or a folder's images in order) as YouTube-VIS:
  `JPEGImages/<sequence>/<frame>.jpg` and `instances.json` with `videos` and one annotation per
  track with per-frame `segmentations` (compressed RLE, null where the track is absent).
- davis: the DAVIS layout: `JPEGImages/<res>/<sequence>/00000.jpg`, `Annotations/<res>/<sequence>/
  00000.png` palette PNGs (index = track; at most 255 tracks a sequence), `ImageSets/all.txt`.
  Where tracks overlap the later annotation wins (a palette PNG holds one index a pixel).
Video frames are extracted to JPEG files on export (COCO: `frames/<video stem>/<index>.jpg`, the
exported file names pointing there), so every tool reads them. An annotation without a track is a
track of its own in the sequence formats.

Annotations that could not be decoded on load are not exported (they are counted in the report),
nor images whose size is beyond `annotator.core.limits` or annotations whose mask does not fit
their image (each named in the report's skipped sentences).

`progress(done, total)` is called after each image; `cancelled()` is asked before each image and
ends the export with ExportCancelled. The COCO formats are one file written atomically at the end,
so a cancelled or failed export leaves none; the folder formats keep the files written so far.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from annotator.core.atomic import atomic_write_bytes
from annotator.core.coco import OUR_KEY, _is_file, project_document, serialize_document
from annotator.core.limits import size_problem
from annotator.core.project import Annotation, ImageRecord, Project
from annotator.errors import UserError

FORMATS = {
    "coco": "COCO JSON with compressed RLE masks (as saved)",
    "coco-polygons": "COCO JSON with polygons (holes are lost)",
    "png": "instance-id and class-id PNG per image, with legend.json",
    "cutouts": "one transparent RGBA PNG per annotation",
    "yolo": "YOLO segmentation labels, images and data.yaml",
    "youtube-vis": "sequences as YouTube-VIS (videos, per-frame RLE per track, JPEG frames)",
    "davis": "sequences in the DAVIS layout (JPEG frames, palette PNGs: index = track)",
}


@dataclass
class ExportReport:
    """What an export wrote and what it could not carry over."""

    format: str
    dest: Path
    images: int = 0
    annotations: int = 0
    files: int = 0
    holes_lost: int = 0
    annotations_with_holes: list[int] = field(default_factory=list)
    tiny_parts: int = 0
    skipped: list[str] = field(default_factory=list)

    def messages(self) -> list[str]:
        lines = [
            f"Exported {self.annotations} annotation(s) of {self.images} image(s) as {self.format} to {self.dest}."
        ]
        if self.holes_lost:
            ids = ", ".join(map(str, self.annotations_with_holes[:20]))
            lines.append(
                f"{self.holes_lost} hole(s) in {len(self.annotations_with_holes)} annotation(s) "
                f"(ids {ids}{'...' if len(self.annotations_with_holes) > 20 else ''}) cannot be "
                f"represented as {self.format} polygons and were filled."
            )
        if self.tiny_parts:
            lines.append(
                f"{self.tiny_parts} part(s) of one or two pixels were written as their pixel rectangle."
            )
        return lines + self.skipped


class ExportCancelled(UserError):
    """The person cancelled the export (`cancelled()` answered True)."""


class _Steps:
    """Progress and cancellation, image by image."""

    def __init__(self, fmt, dest, total, progress, cancelled) -> None:
        self.fmt, self.dest, self.total = fmt, dest, total
        self.progress, self.cancelled = progress, cancelled
        self.done = 0

    def check(self) -> None:
        """Before the next image: stop here when the export was cancelled."""
        if self.cancelled is not None and self.cancelled():
            kept = (
                "nothing was written"
                if self.fmt in ("coco", "coco-polygons")
                else f"the files of the first {self.done} image(s) are in {self.dest}"
            )
            raise ExportCancelled(
                f"Export cancelled after {self.done} of {self.total} image(s); {kept}."
            )

    def advance(self) -> None:
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)


def export_project(
    project: Project,
    fmt: str,
    dest: Path,
    progress: Callable[[int, int], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> ExportReport:
    """Export `project` as `fmt` (a key of FORMATS) to `dest` (a .json file for the COCO formats,
    else a folder, created when missing). Raises UserError for an unknown format, an unwritable
    dest or too little memory, ExportCancelled (a UserError) when `cancelled()` says so; calls
    `progress(done, total)` after each image (from the calling thread)."""
    if fmt not in FORMATS:
        raise UserError(f"Unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    dest = Path(dest).absolute()
    exporter = {
        "coco": _export_coco,
        "coco-polygons": _export_coco_polygons,
        "png": _export_png,
        "cutouts": _export_cutouts,
        "yolo": _export_yolo,
        "youtube-vis": _export_youtube_vis,
        "davis": _export_davis,
    }[fmt]
    steps = _Steps(fmt, dest, len(project.images), progress, cancelled)
    try:
        report = exporter(project, dest, steps)
    except OSError as exc:
        raise UserError(f"Could not export to {dest}: {exc.strerror or exc}.") from None
    except MemoryError:
        raise UserError(
            f"Not enough memory to export as {fmt} (after {steps.done} of {steps.total} "
            "image(s)); try another format or close other programs."
        ) from None
    if project.undecodable:
        report.skipped.append(
            f"{len(project.undecodable)} annotation(s) that could not be decoded were not exported."
        )
    return report


def _size_skipped(record: ImageRecord, report: ExportReport) -> bool:
    """Whether the image's size is beyond the limits (said in the report): its masks are never
    decoded. Loading refuses such sizes; a record made another way may still carry one."""
    problem = size_problem(record.width, record.height)
    if problem is not None:
        report.skipped.append(
            f"Image {record.id} ({record.file_name}) was not exported: {problem}."
        )
    return problem is not None


def _mask(annotation: Annotation, record: ImageRecord, report: ExportReport) -> np.ndarray | None:
    """The annotation's mask, checked against its image's size; None (said in the report) when
    it cannot be decoded."""
    from annotator.core.masks import decode_rle

    try:
        return decode_rle(annotation.rle, (record.height, record.width))
    except (ValueError, TypeError, KeyError) as exc:
        report.skipped.append(f"Annotation {annotation.id} was not exported: {exc}.")
        return None


# ------------------------------------------------------------------------------------------ COCO
def _coco_target(dest: Path) -> Path:
    if dest.suffix.lower() == ".json":
        dest.parent.mkdir(parents=True, exist_ok=True)
        return dest
    dest.mkdir(parents=True, exist_ok=True)
    return dest / "annotations.json"


def _decoded_document(project: Project, target: Path) -> dict:
    document = project_document(project, target.parent)
    document["annotations"] = document["annotations"][: project.total_annotations()]
    return document


def _export_coco(project: Project, dest: Path, steps: _Steps) -> ExportReport:
    steps.check()
    target = _coco_target(dest)
    document = _decoded_document(project, target)
    files = _extract_video_frames(project, document, target.parent)
    atomic_write_bytes(target, serialize_document(document))
    return ExportReport("coco", target, len(project.images), project.total_annotations(), 1 + files)


def _extract_video_frames(project: Project, document: dict, folder: Path) -> int:
    """Video frames written as JPEG files under folder/frames/<video stem>/ and the document's
    file names pointing there (our key keeps the video and frame index); returns how many."""
    from annotator.core.video import video_frame_of

    written = 0
    for record, entry in zip(project.images, document["images"], strict=True):
        frame = video_frame_of(project.image_path(record))
        if frame is None:
            continue
        relative = f"frames/{_safe_name(frame[0].stem)}/{frame[1]:06d}.jpg"
        _write_frame(project.image_path(record), folder / relative)
        entry["file_name"] = relative
        written += 1
    return written


def _write_frame(source: Path, target: Path) -> None:
    """A video frame as a JPEG file (quality 95)."""
    from PIL import Image

    from annotator.core.images import load_image

    target.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(load_image(source)).save(target, format="JPEG", quality=95)


def _export_coco_polygons(project: Project, dest: Path, steps: _Steps) -> ExportReport:
    from annotator.core import masks

    target = _coco_target(dest)
    document = _decoded_document(project, target)
    report = ExportReport("coco-polygons", target, len(project.images), 0, 1)
    entry_of = dict(
        zip(
            (a.id for a in project.all_annotations()),
            document["annotations"],
            strict=True,
        )
    )
    entries = []
    for record in project.images:
        steps.check()
        annotations = project.annotations_of(record.id)
        if annotations and _size_skipped(record, report):
            annotations = []
        for annotation in annotations:
            entry = entry_of[annotation.id]
            if annotation.iscrowd:
                entry["segmentation"] = annotation.rle
            else:
                mask = _mask(annotation, record, report)
                if mask is None:
                    continue
                polygons = masks.mask_to_polygons(mask)
                if not polygons.parts:
                    report.skipped.append(
                        f"Annotation {annotation.id} has an empty mask and was not exported."
                    )
                    continue
                entry["segmentation"] = [[round(v, 2) for v in part] for part in polygons.parts]
                _count_losses(report, annotation, polygons)
            entry["area"], entry["bbox"] = annotation.area, list(annotation.bbox)
            entries.append(entry)
        steps.advance()
    steps.check()
    document["annotations"] = entries
    document.pop(OUR_KEY, None)
    report.annotations = len(entries)
    atomic_write_bytes(target, serialize_document(document))
    return report


def _count_losses(report: ExportReport, annotation: Annotation, polygons) -> None:
    if polygons.holes:
        report.holes_lost += polygons.holes
        report.annotations_with_holes.append(annotation.id)
    report.tiny_parts += polygons.tiny_parts


# ------------------------------------------------------------------------------------------- PNG
def _export_png(project: Project, dest: Path, steps: _Steps) -> ExportReport:
    dest.mkdir(parents=True, exist_ok=True)
    report = ExportReport("png", dest)
    names = _unique_stems(project.images)
    class_dtype = (
        np.uint8 if max((c.id for c in project.categories), default=0) <= 255 else np.uint16
    )
    legend_images = []
    for record in project.images:
        steps.check()
        if _size_skipped(record, report):
            steps.advance()
            continue
        instances = np.zeros((record.height, record.width), np.uint16)
        classes = np.zeros((record.height, record.width), class_dtype)
        legend = {}
        index = 0
        for annotation in project.annotations_of(record.id):
            mask = _mask(annotation, record, report)
            if mask is None:
                continue
            index += 1
            instances[mask] = index
            classes[mask] = annotation.category_id
            legend[str(index)] = {
                "annotation_id": annotation.id,
                "category_id": annotation.category_id,
            }
        stem = names[record.id]
        _write_png(dest / f"{stem}_instances.png", instances)
        _write_png(dest / f"{stem}_classes.png", classes)
        legend_images.append({
            "image_id": record.id, "file_name": record.file_name,
            "instances_png": f"{stem}_instances.png", "classes_png": f"{stem}_classes.png",
            "instances": legend,
        })  # fmt: skip
        report.images += 1
        report.annotations += len(legend)
        report.files += 2
        steps.advance()
    legend_doc = {
        "instances_png": "uint16; 0 is background, k is the k-th annotation of the image (bottom to top)",
        "classes_png": f"{np.dtype(class_dtype).name}; 0 is background, else the category id",
        "categories": [
            {"id": c.id, "name": c.name, "color": list(c.color)} for c in project.categories
        ],
        "images": legend_images,
    }
    atomic_write_bytes(
        dest / "legend.json", json.dumps(legend_doc, indent=1, ensure_ascii=False).encode()
    )
    report.files += 1
    return report


def _write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    Image.fromarray(array).save(path, format="PNG")


def _unique_stems(images: list[ImageRecord]) -> dict[int, str]:
    """A file-name stem per image: its own stem, or stem_<id> where two images share one."""
    stems = {r.id: Path(r.file_name.replace("\\", "/")).stem for r in images}
    counts: dict[str, int] = {}
    for stem in stems.values():
        counts[stem] = counts.get(stem, 0) + 1
    return {i: (s if counts[s] == 1 else f"{s}_{i}") for i, s in stems.items()}


# --------------------------------------------------------------------------------------- cutouts
def _export_cutouts(project: Project, dest: Path, steps: _Steps) -> ExportReport:
    from annotator.core.images import load_image

    dest.mkdir(parents=True, exist_ok=True)
    report = ExportReport("cutouts", dest)
    names = _unique_stems(project.images)
    for record in project.images:
        steps.check()
        annotations = project.annotations_of(record.id)
        if not annotations or _size_skipped(record, report):
            steps.advance()
            continue
        try:
            pixels = load_image(project.image_path(record))
        except UserError as exc:
            report.skipped.append(
                f"{len(annotations)} cutout(s) of image {record.id} skipped: {exc}"
            )
            steps.advance()
            continue
        if pixels.shape[:2] != (record.height, record.width):
            report.skipped.append(
                f"{len(annotations)} cutout(s) of image {record.id} skipped: the file is "
                f"{pixels.shape[1]}x{pixels.shape[0]}, the project says {record.width}x{record.height}."
            )
            steps.advance()
            continue
        report.images += 1
        for annotation in annotations:
            x, y, w, h = (int(v) for v in annotation.bbox)
            if w == 0 or h == 0:
                continue
            whole = _mask(annotation, record, report)
            if whole is None:
                continue
            mask = whole[y : y + h, x : x + w]
            rgba = np.dstack(
                [pixels[y : y + h, x : x + w], np.where(mask, 255, 0).astype(np.uint8)]
            )
            folder = dest / _safe_name(project.category(annotation.category_id).name)
            folder.mkdir(exist_ok=True)
            _write_png(folder / f"{names[record.id]}_{annotation.id}.png", rgba)
            report.annotations += 1
            report.files += 1
        steps.advance()
    return report


def _safe_name(name: str) -> str:
    return re.sub(r"[^\w.-]+", "_", name).strip("._") or "unnamed"


# ------------------------------------------------------------------------------------------ YOLO
def _export_yolo(project: Project, dest: Path, steps: _Steps) -> ExportReport:
    from annotator.core.masks import mask_to_polygons

    dest.mkdir(parents=True, exist_ok=True)
    (dest / "images").mkdir(exist_ok=True)
    (dest / "labels").mkdir(exist_ok=True)
    report = ExportReport("yolo", dest)
    class_index = {c.id: i for i, c in enumerate(project.categories)}
    names = _unique_stems(project.images)
    for record in project.images:
        steps.check()
        source = project.image_path(record)
        if not _is_file(source):
            report.skipped.append(
                f"Image {record.id} ({record.file_name}) is missing: its labels were not exported."
            )
            steps.advance()
            continue
        if _size_skipped(record, report):
            steps.advance()
            continue
        lines = []
        for annotation in project.annotations_of(record.id):
            mask = _mask(annotation, record, report)
            if mask is None:
                continue
            polygons = mask_to_polygons(mask)
            _count_losses(report, annotation, polygons)
            scale = np.array([record.width, record.height], np.float64)
            for part in polygons.parts:
                xy = np.clip(np.asarray(part, np.float64).reshape(-1, 2) / scale, 0.0, 1.0)
                coords = " ".join(f"{v:.6f}" for v in xy.reshape(-1))
                lines.append(f"{class_index[annotation.category_id]} {coords}")
            report.annotations += 1
        stem = names[record.id]
        _link_or_copy(source, dest / "images" / f"{stem}{source.suffix.lower()}")  # video: a JPEG
        atomic_write_bytes(
            dest / "labels" / f"{stem}.txt", "".join(line + "\n" for line in lines).encode()
        )
        report.images += 1
        report.files += 2
        steps.advance()
    atomic_write_bytes(dest / "data.yaml", _data_yaml(project, dest).encode())
    report.files += 1
    return report


def _link_or_copy(source: Path, target: Path) -> None:
    from annotator.core.video import video_frame_of

    if target.exists():
        target.unlink()
    if video_frame_of(source) is not None:
        _write_frame(source, target)
        return
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _data_yaml(project: Project, dest: Path) -> str:
    # Written by hand (no YAML dependency); names are JSON strings, which YAML reads as quoted text.
    lines = [
        "# YOLO segmentation dataset written by Annotator.",
        f"path: {json.dumps(str(dest))}",
        "train: images",
        "val: images",
        f"nc: {len(project.categories)}",
        "names:",
    ]
    lines += [
        f"  {i}: {json.dumps(c.name, ensure_ascii=False)}" for i, c in enumerate(project.categories)
    ]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ sequences
def _sequences(project: Project) -> list[tuple[str, list[ImageRecord]]]:
    """(name, frames in order) of each sequence: the frames of one video file, or the images of
    one folder, in the project's order. Names are unique and safe as folder names."""
    from annotator.core.video import video_frame_of

    groups: dict[Path, list[ImageRecord]] = {}
    for record in project.images:
        path = project.image_path(record)
        frame = video_frame_of(path)
        groups.setdefault(frame[0] if frame is not None else path.parent, []).append(record)
    names: dict[str, int] = {}
    result = []
    for source, records in groups.items():
        name = _safe_name(source.stem if source.suffix else source.name) or "sequence"
        names[name] = names.get(name, 0) + 1
        result.append((name if names[name] == 1 else f"{name}_{names[name]}", records))
    return result


def _tracks_of(project: Project, records: list[ImageRecord]) -> dict[int, list[Annotation]]:
    """Track -> its annotations in the frames; an annotation without a track is one of its own
    (keyed by minus its id, after the real tracks)."""
    tracks: dict[int, list[Annotation]] = {}
    for record in records:
        for annotation in project.annotations_of(record.id):
            key = annotation.track if annotation.track is not None else -annotation.id
            tracks.setdefault(key, []).append(annotation)
    return dict(sorted(tracks.items(), key=lambda item: (item[0] < 0, abs(item[0]))))


def _frame_file(project: Project, record: ImageRecord, target: Path) -> None:
    source = project.image_path(record)
    if source.suffix.lower() in (".jpg", ".jpeg"):
        _link_or_copy(source, target)
    else:  # sequence tools read JPEG frames only
        _write_frame(source, target)


def _export_youtube_vis(project: Project, dest: Path, steps: _Steps) -> ExportReport:
    dest.mkdir(parents=True, exist_ok=True)
    report = ExportReport("youtube-vis", dest)
    videos, annotations = [], []
    for video_id, (name, records) in enumerate(_sequences(project), start=1):
        folder = dest / "JPEGImages" / name
        folder.mkdir(parents=True, exist_ok=True)
        file_names = []
        for position, record in enumerate(records):
            steps.check()
            _frame_file(project, record, folder / f"{position:05d}.jpg")
            file_names.append(f"{name}/{position:05d}.jpg")
            report.files += 1
            report.images += 1
            steps.advance()
        first = records[0]
        videos.append({
            "id": video_id, "name": name, "width": first.width, "height": first.height,
            "length": len(records), "file_names": file_names,
        })  # fmt: skip
        position_of = {r.id: i for i, r in enumerate(records)}
        for track, members in _tracks_of(project, records).items():
            segmentations: list = [None] * len(records)
            areas: list = [None] * len(records)
            boxes: list = [None] * len(records)
            for annotation in members:  # two annotations of a track on a frame: united
                i = position_of[annotation.image_id]
                mask = _mask(annotation, project.image(annotation.image_id), report)
                if mask is None:
                    continue
                if segmentations[i] is not None:
                    from annotator.core.masks import decode_rle

                    mask = mask | decode_rle(segmentations[i])
                from annotator.core.masks import encode_mask, rle_area, rle_bbox

                rle = encode_mask(mask)
                segmentations[i], areas[i], boxes[i] = rle, rle_area(rle), list(rle_bbox(rle))
                report.annotations += 1
            annotations.append({
                "id": len(annotations) + 1, "video_id": video_id,
                "category_id": members[0].category_id, "iscrowd": 0,
                "height": first.height, "width": first.width, "length": 1,
                "segmentations": segmentations, "areas": areas, "bboxes": boxes,
                OUR_KEY: {"track": track if track > 0 else None},
            })  # fmt: skip
    document = {
        "info": {"description": "exported by Annotator", "format": "YouTube-VIS"},
        "videos": videos,
        "categories": [
            {"id": c.id, "name": c.name, "supercategory": c.supercategory}
            for c in project.categories
        ],
        "annotations": annotations,
    }
    atomic_write_bytes(dest / "instances.json", serialize_document(document))
    report.files += 1
    return report


def _davis_palette() -> list[int]:
    """The palette of DAVIS's annotation PNGs (PASCAL VOC's): index i's colour from its bits."""
    palette = []
    for i in range(256):
        r = g = b = 0
        c = i
        for shift in range(7, -1, -1):
            r |= (c & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette += [r, g, b]
    return palette


def _export_davis(project: Project, dest: Path, steps: _Steps) -> ExportReport:
    from PIL import Image

    dest.mkdir(parents=True, exist_ok=True)
    report = ExportReport("davis", dest)
    palette = _davis_palette()
    names, legend = [], {}
    for name, records in _sequences(project):
        tracks = list(_tracks_of(project, records))
        if len(tracks) > 255:
            raise UserError(
                f"Sequence {name} has {len(tracks)} tracks; a DAVIS palette PNG holds at most 255."
            )
        # index = the track id where the ids fit a palette index (annotations without a track
        # take the free indexes), else the track's rank
        real = [t for t in tracks if t > 0]
        if all(t <= 255 for t in real):
            free = (i for i in range(1, 256) if i not in set(real))
            index_of = {t: (t if t > 0 else next(free)) for t in tracks}
        else:
            index_of = {t: i + 1 for i, t in enumerate(tracks)}
        legend[name] = {str(i): (t if t > 0 else None) for t, i in index_of.items()}
        res = "480p" if records[0].height == 480 else "Full-Resolution"
        images = dest / "JPEGImages" / res / name
        labels = dest / "Annotations" / res / name
        images.mkdir(parents=True, exist_ok=True)
        labels.mkdir(parents=True, exist_ok=True)
        for position, record in enumerate(records):
            steps.check()
            _frame_file(project, record, images / f"{position:05d}.jpg")
            indexes = np.zeros((record.height, record.width), np.uint8)
            for annotation in project.annotations_of(record.id):
                mask = _mask(annotation, record, report)
                if mask is None:
                    continue
                track = annotation.track if annotation.track is not None else -annotation.id
                indexes[mask] = index_of[track]
                report.annotations += 1
            png = Image.fromarray(indexes, mode="P")
            png.putpalette(palette)
            png.save(labels / f"{position:05d}.png", format="PNG")
            report.files += 2
            report.images += 1
            steps.advance()
        names.append(name)
    (dest / "ImageSets").mkdir(exist_ok=True)
    atomic_write_bytes(dest / "ImageSets" / "all.txt", "".join(n + "\n" for n in names).encode())
    atomic_write_bytes(
        dest / "tracks.json",
        json.dumps({"palette_index_to_track": legend}, indent=1).encode(),
    )
    report.files += 2
    return report
