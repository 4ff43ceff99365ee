"""The edit journal: every change to a project, on disk before the next one is taken.

`<project>.journal` beside the project file is append-only JSON lines. The first line is a header
naming the base the records apply to: the project file as it was on disk (size and mtime) when the
session opened or last saved it, and the session's id. Each later line is one record: one change
of the undo stack (a push, an undo or a redo), holding the new values of everything that change
touched (`Delta`), so replaying needs no command classes and undo/redo replay as what they did.

Durability: `append` writes the whole line with one `os.write` on an O_APPEND descriptor, so it is
in the kernel when `append` returns and survives the process being killed (SIGKILL, the OOM
killer). `RecoveryWriter` (annotator.core.recovery) fsyncs it from its own thread at least once a
second, so a power cut loses at most the last second. The GUI thread pays one `json.dumps` and one
`write` per edit.

Folding: when an autosave snapshot that contains records up to `seq` N is safely on disk,
`compact(N)` rewrites the journal with only the records after N (atomically; appends wait on the
journal's lock for that moment). A torn last line (a kill in the middle of a write) is ignored on
reading: that is the edit in progress, which nothing promised to keep.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from annotator.core.atomic import atomic_writer
from annotator.core.project import Annotation, Category, ImageRecord, Project, ProjectEvent

log = logging.getLogger(__name__)

JOURNAL_VERSION = 1
# A journal line is at most this long when read back (a hostile or corrupt file cannot make us
# parse gigabytes as one record); ours stay far below it (one accepted mask is kilobytes).
MAX_LINE_BYTES = 256 << 20


def journal_path(project_path: Path) -> Path:
    project_path = Path(project_path)
    return project_path.with_name(project_path.name + ".journal")


def file_stamp(path: Path | None) -> list[int] | None:
    """[size, mtime_ns] of the file, or None when there is none: what a journal's base names."""
    if path is None:
        return None
    try:
        info = Path(path).stat()
    except OSError:
        return None
    return [info.st_size, info.st_mtime_ns]


# ---------------------------------------------------------------------------------- the delta
@dataclass
class Delta:
    """The new state of what one change touched (None: it no longer exists).

    annotations: id -> value; order: image id -> that image's annotation ids, bottom to top.
    categories: id -> value; category_order: every category id in display order, when a category
    was added or removed. images: id -> record; image_order: every image id, when images were
    added or removed.
    """

    annotations: dict[int, Annotation | None] = field(default_factory=dict)
    order: dict[int, list[int]] = field(default_factory=dict)
    categories: dict[int, Category | None] = field(default_factory=dict)
    category_order: list[int] | None = None
    images: dict[int, ImageRecord | None] = field(default_factory=dict)
    image_order: list[int] | None = None
    settings: dict | None = None  # all of the project's settings, when one changed

    @classmethod
    def of(cls, project: Project, events: list[ProjectEvent]) -> Delta:
        """What `events` changed, read from the project now."""
        delta = cls()
        touched_images: set[int] = set()
        for event in events:
            touched_images.update(event.images)
            if event.kind == "annotations":
                for annotation_id in event.ids:
                    delta.annotations[annotation_id] = (
                        project.annotation(annotation_id)
                        if project.has_annotation(annotation_id)
                        else None
                    )
            elif event.kind == "categories":
                for category_id in event.ids:
                    delta.categories[category_id] = (
                        project.category(category_id) if project.has_category(category_id) else None
                    )
            elif event.kind == "settings":
                delta.settings = dict(project.settings)
            elif event.kind == "images":
                for image_id in event.ids:
                    delta.images[image_id] = (
                        project.image(image_id) if project.has_image(image_id) else None
                    )
        for image_id in touched_images:
            if not project.has_image(image_id):
                continue
            delta.order[image_id] = [a.id for a in project.annotations_of(image_id)]
        if delta.categories:
            delta.category_order = [c.id for c in project.categories]
        if delta.images:
            delta.image_order = [r.id for r in project.images]
        return delta

    def to_json(self) -> dict:
        out: dict = {}
        if self.annotations:
            out["annotations"] = {
                str(k): (_annotation_json(v) if v else None) for k, v in self.annotations.items()
            }
        if self.order:
            out["order"] = {str(k): v for k, v in self.order.items()}
        if self.categories:
            out["categories"] = {
                str(k): (_category_json(v) if v else None) for k, v in self.categories.items()
            }
        if self.category_order is not None:
            out["category_order"] = self.category_order
        if self.images:
            out["images"] = {
                str(k): (_image_json(v) if v else None) for k, v in self.images.items()
            }
        if self.image_order is not None:
            out["image_order"] = self.image_order
        if self.settings is not None:
            out["settings"] = self.settings
        return out

    @classmethod
    def from_json(cls, data: Mapping) -> Delta:
        """Raises ValueError/KeyError/TypeError on a malformed record (the caller stops there)."""
        delta = cls()
        for k, v in data.get("annotations", {}).items():
            delta.annotations[int(k)] = _annotation_from(v) if v is not None else None
        for k, v in data.get("order", {}).items():
            delta.order[int(k)] = [int(i) for i in v]
        for k, v in data.get("categories", {}).items():
            delta.categories[int(k)] = _category_from(v) if v is not None else None
        if data.get("category_order") is not None:
            delta.category_order = [int(i) for i in data["category_order"]]
        for k, v in data.get("images", {}).items():
            delta.images[int(k)] = _image_from(v) if v is not None else None
        if data.get("image_order") is not None:
            delta.image_order = [int(i) for i in data["image_order"]]
        if data.get("settings") is not None:
            delta.settings = dict(data["settings"])
        return delta

    def apply_to(self, project: Project) -> None:
        """Make `project` hold these values (without notifying: replay runs before showing)."""
        images = {r.id: r for r in project.images}
        for image_id, record in self.images.items():
            if record is None:
                images.pop(image_id, None)
            else:
                images[image_id] = record
        if self.image_order is not None:
            order = [i for i in self.image_order if i in images]
        else:
            order = [r.id for r in project.images if r.id in images]
        project.images = [images[i] for i in order]
        project._image_pos = {image_id: n for n, image_id in enumerate(order)}
        for category_id, category in self.categories.items():
            if category is None:
                project._categories.pop(category_id, None)
            else:
                project._categories[category_id] = category
        if self.category_order is not None:
            ids = [i for i in self.category_order if i in project._categories]
        else:
            ids = [c.id for c in project.categories if c.id in project._categories]
        project.categories = [project._categories[i] for i in ids]
        for annotation_id, annotation in self.annotations.items():
            if annotation is None:
                project._annotations.pop(annotation_id, None)
            else:
                project._annotations[annotation_id] = annotation
        for image_id, ids in self.order.items():
            project._by_image[image_id] = [i for i in ids if i in project._annotations]
        if self.settings is not None:
            project.settings = dict(self.settings)


def _annotation_json(a: Annotation) -> dict:
    return {
        "id": a.id,
        "image_id": a.image_id,
        "category_id": a.category_id,
        "rle": a.rle,
        "area": a.area,
        "bbox": list(a.bbox),
        "iscrowd": a.iscrowd,
        "extra": dict(a.extra),
        "original": dict(a.original) if a.original is not None else None,
        **({"track": a.track, "propagated": a.propagated} if a.track is not None else {}),
    }


def _annotation_from(v: Mapping) -> Annotation:
    rle = v["rle"]
    if not (isinstance(rle, dict) and isinstance(rle.get("counts"), str)):
        raise ValueError("a journal annotation has no compressed RLE")
    return Annotation(
        int(v["id"]),
        int(v["image_id"]),
        int(v["category_id"]),
        {"size": [int(n) for n in rle["size"]], "counts": rle["counts"]},
        int(v["area"]),
        tuple(float(n) for n in v["bbox"]),
        int(v.get("iscrowd", 0)),
        dict(v.get("extra") or {}),
        dict(v["original"]) if v.get("original") is not None else None,
        int(v["track"]) if v.get("track") is not None else None,
        bool(v.get("propagated", False)),
    )


def _category_json(c: Category) -> dict:
    return {
        "id": c.id,
        "name": c.name,
        "color": list(c.color),
        "supercategory": c.supercategory,
        "extra": dict(c.extra),
    }


def _category_from(v: Mapping) -> Category:
    return Category(
        int(v["id"]),
        str(v["name"]),
        tuple(int(n) for n in v["color"]),
        str(v.get("supercategory", "")),
        dict(v.get("extra") or {}),
    )


def _image_json(r: ImageRecord) -> dict:
    return {
        "id": r.id,
        "file_name": r.file_name,
        "path": r.path,
        "width": r.width,
        "height": r.height,
        "done": r.done,
        "extra": dict(r.extra),
        "searched": [list(pair) for pair in r.searched],
    }


def _image_from(v: Mapping) -> ImageRecord:
    return ImageRecord(
        int(v["id"]),
        str(v["file_name"]),
        int(v["width"]),
        int(v["height"]),
        bool(v.get("done", False)),
        dict(v.get("extra") or {}),
        str(v.get("path", "")),
        tuple((str(m), str(p)) for m, p in v.get("searched") or ()),
    )


# ---------------------------------------------------------------------------------- the file
@dataclass(frozen=True)
class JournalRecord:
    seq: int
    action: str  # "push" | "undo" | "redo"
    text: str
    delta: Delta
    time: float


class Journal:
    """The open journal of one session (append from the GUI thread, fsync and compact from the
    recovery writer's thread; one lock orders them)."""

    def __init__(self, path: Path, header: dict, records: list[dict] | None = None):
        """Start `path` anew with `header` (and `records`, already JSON), atomically."""
        self.path = Path(path)
        self.header = dict(header)
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._unsynced = False
        self.last_seq = max((r["seq"] for r in records or ()), default=0)
        self._rewrite([self.header, *(records or [])])

    # ------------------------------------------------------------------ GUI thread
    def append(self, seq: int, action: str, text: str, delta: Delta, when: float) -> None:
        """Write one record (in the kernel when this returns). Raises OSError."""
        line = json.dumps(
            {"seq": seq, "action": action, "text": text, "time": when, "delta": delta.to_json()},
            ensure_ascii=False,
            separators=(",", ":"),
        )
        data = (line + "\n").encode("utf-8")
        with self._lock:
            if self._fd is None:
                raise OSError("the journal is closed")
            view = memoryview(data)
            while view:  # one write almost always; a short write (a full disk) continues
                written = os.write(self._fd, view)
                view = view[written:]
            self.last_seq = seq
            self._unsynced = True

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                try:
                    os.fsync(self._fd)
                except OSError:
                    pass
                os.close(self._fd)
                self._fd = None

    # ------------------------------------------------------------------ writer thread
    def sync(self) -> None:
        """fsync when something was appended since the last one."""
        with self._lock:
            if self._fd is None or not self._unsynced:
                return
            self._unsynced = False
            fd = os.dup(self._fd)
        try:
            os.fsync(fd)  # outside the lock: appends go on meanwhile
        finally:
            os.close(fd)

    def compact(self, through_seq: int, header: dict) -> None:
        """Keep only the records after `through_seq`, under a new header (an autosave holds the
        rest). Reads the tail back from the file itself, so nothing appended meanwhile is lost."""
        with self._lock:
            if self._fd is None:
                return
            _, records = read_journal_lines(self.path)
            keep = [r for r in records if r.get("seq", 0) > through_seq]
            self.header = dict(header)
            self._rewrite([self.header, *keep])

    def _rewrite(self, lines: list[dict]) -> None:
        with atomic_writer(self.path) as stream:
            for line in lines:
                stream.write(json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode())
                stream.write(b"\n")
        if self._fd is not None:
            os.close(self._fd)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        self._unsynced = False


def read_journal_lines(path: Path) -> tuple[dict | None, list[dict]]:
    """(header, record dicts) of a journal file; a torn or unparsable line ends the records (what
    follows it cannot be applied in order). Raises OSError when the file cannot be read."""
    header: dict | None = None
    records: list[dict] = []
    with open(path, "rb") as stream:
        for number, raw in enumerate(_lines(stream)):
            if not raw.endswith(b"\n"):
                break  # torn: the edit that was being written when the process died
            try:
                item = json.loads(raw)
            except (ValueError, RecursionError):
                break
            if not isinstance(item, dict):
                break
            if number == 0:
                header = item
            elif isinstance(item.get("seq"), int):
                records.append(item)
            else:
                break
    return header, records


def _lines(stream) -> Iterator[bytes]:
    while True:
        raw = stream.readline(MAX_LINE_BYTES)
        if not raw:
            return
        yield raw


def parse_records(records: list[dict]) -> tuple[list[JournalRecord], str | None]:
    """Typed records in order, and a sentence when one could not be read (replay stops there)."""
    parsed: list[JournalRecord] = []
    for item in records:
        try:
            parsed.append(
                JournalRecord(
                    int(item["seq"]),
                    str(item.get("action", "push")),
                    str(item.get("text", "")),
                    Delta.from_json(item.get("delta") or {}),
                    float(item.get("time", 0.0)),
                )
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            log.warning("journal record %s unreadable: %s", item.get("seq"), exc)
            return parsed, (
                f"Change {item.get('seq')} of the journal could not be read; the changes before "
                "it were recovered."
            )
    return parsed, None
