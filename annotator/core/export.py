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
from annotator.core.coco import OUR_KEY, project_document, serialize_document
from annotator.core.limits import size_problem
from annotator.core.project import Annotation, ImageRecord, Project
from annotator.errors import UserError

FORMATS = {
    "coco": "COCO JSON with compressed RLE masks (as saved)",
    "coco-polygons": "COCO JSON with polygons (holes are lost)",
    "png": "instance-id and class-id PNG per image, with legend.json",
    "cutouts": "one transparent RGBA PNG per annotation",
    "yolo": "YOLO segmentation labels, images and data.yaml",
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
    atomic_write_bytes(target, serialize_document(document))
    return ExportReport("coco", target, len(project.images), project.total_annotations(), 1)


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
        if not source.is_file():
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
        _link_or_copy(source, dest / "images" / f"{stem}{source.suffix.lower()}")
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
    if target.exists():
        target.unlink()
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
