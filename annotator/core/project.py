"""The project model: images, categories and annotations as plain immutable values.

`Project` is the one mutable container. Its low-level mutators (`insert_annotation`, ...) are
called only by `annotator.core.commands`, the one undo mechanism; each notifies listeners with a
`ProjectEvent`. Loading and saving live in `annotator.core.coco`.

Coordinates: masks are HxW bool arrays in original-image pixels; bbox is COCO [x, y, w, h] pixels.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from annotator.errors import UserError

# Colours given to categories that have none (foreign files), in order of appearance.
PALETTE = (
    (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48),
    (145, 30, 180), (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212),
    (0, 128, 128), (220, 190, 255), (170, 110, 40), (255, 250, 200), (128, 0, 0),
    (170, 255, 195), (128, 128, 0), (255, 215, 180), (0, 0, 128), (128, 128, 128),
)  # fmt: skip


# Project setting: a new or edited mask loses the pixels other annotations of its image hold.
MASKS_DO_NOT_OVERLAP = "masks_do_not_overlap"


def palette_color(index: int) -> tuple[int, int, int]:
    return PALETTE[index % len(PALETTE)]


@dataclass(frozen=True)
class Category:
    """A label. `extra`: foreign per-category keys (e.g. keypoints), written back verbatim."""

    id: int
    name: str
    color: tuple[int, int, int]
    supercategory: str = ""
    extra: Mapping = field(default_factory=dict)


@dataclass(frozen=True)
class Annotation:
    """One object on one image.

    rle: compressed COCO RLE {"size": [H, W], "counts": str} of the HxW bool mask.
    area: foreground pixels; bbox: COCO [x, y, w, h] pixel extent of the mask.
    extra: foreign per-annotation keys (e.g. "attributes", "score"), written back verbatim.
    track: in a sequence, the object this is one frame of (the same id on every frame), or None.
    propagated: made by propagation from another frame (re-propagation may replace it); a hand
        edit of the mask (`with_new_mask`, `commands.EditMask`) makes it the person's.
    original: for an annotation read from a file whose segmentation was not our compressed RLE
        (polygons, uncompressed RLE) or whose area/bbox differ from ours: those raw values, written
        back unchanged while the mask is unchanged. An edited mask makes a new Annotation without
        it (see `annotation_from_mask`). Relabelling keeps it (the mask did not change).
    Treat the mappings as read-only.
    """

    id: int
    image_id: int
    category_id: int
    rle: dict
    area: int
    bbox: tuple[float, float, float, float]
    iscrowd: int = 0
    extra: Mapping = field(default_factory=dict)
    original: Mapping | None = None
    track: int | None = None
    propagated: bool = False

    def mask(self) -> np.ndarray:
        """HxW bool mask, decoded from the RLE."""
        from annotator.core.masks import decode_rle

        return decode_rle(self.rle)


@dataclass(frozen=True)
class ImageRecord:
    """One image, known by its id.

    file_name: as read from the COCO file (relative to the project's image folder, or absolute),
        written back exactly so while it still names `path` (decision 0002); a new image's is
        relative to the project file.
    path: where the image is, absolute and normalised (`normalise_path`); "" until the project
        resolves it (`Project.add_image`). Every lookup goes through `path`, so a Save As into
        another folder changes no record: the file names are rebased when they are written.
    width, height: pixels as displayed. extra: foreign keys, written back verbatim.
    searched: the (model fingerprint, phrase) pairs SAM 3 has searched this image for (`annotator
        find`, Find in all images), so a rerun skips them; kept apart from `done`, which only a
        person sets.
    """

    id: int
    file_name: str
    width: int
    height: int
    done: bool = False
    extra: Mapping = field(default_factory=dict)
    path: str = ""
    searched: tuple[tuple[str, str], ...] = ()


def normalise_path(path: str | os.PathLike) -> str:
    """Absolute, with "." and ".." folded and separators unified (symbolic links are kept: the
    person's folder layout is theirs). `/b/../a/img.png` becomes `/a/img.png`. An fsspec URL
    (`s3://bucket/a.png`) is kept as it is."""
    from annotator.core.images import is_url

    if is_url(path):
        return str(path)
    return os.path.normpath(os.path.abspath(os.fspath(path)))


@dataclass(frozen=True)
class ProjectEvent:
    """What changed: kind is "annotations" (ids = annotation ids added, removed or changed),
    "categories" (ids = category ids), "images" (ids = image ids), "settings" (the project's
    settings) or "reset" (everything)."""

    kind: str
    ids: tuple[int, ...] = ()
    images: tuple[int, ...] = ()  # "annotations": the images whose annotation lists changed


def annotation_from_mask(
    annotation_id: int, image_id: int, category_id: int, mask: np.ndarray, iscrowd: int = 0
) -> Annotation:
    """A new annotation of an HxW bool mask (RLE, area and bbox computed). Raises ValueError on
    an empty mask."""
    from annotator.core.masks import encode_mask, rle_area, rle_bbox

    rle = encode_mask(mask)
    area = rle_area(rle)
    if area == 0:
        raise ValueError("the mask is empty")
    return Annotation(annotation_id, image_id, category_id, rle, area, rle_bbox(rle), iscrowd)


def with_new_mask(annotation: Annotation, mask: np.ndarray) -> Annotation:
    """`annotation` re-drawn: same id, image, category, crowd flag and foreign keys (`extra`), a
    new HxW bool mask; the raw foreign geometry (`original`) is dropped since it no longer holds."""
    new = annotation_from_mask(
        annotation.id, annotation.image_id, annotation.category_id, mask, annotation.iscrowd
    )
    return replace(new, extra=annotation.extra, track=annotation.track)


def default_categories() -> list[Category]:
    """The categories a new project starts with (resources/default_categories.json)."""
    from importlib.resources import files

    text = files("annotator.resources").joinpath("default_categories.json").read_text("utf-8")
    entries = json.loads(text)["categories"]
    return [
        Category(i + 1, e["name"], tuple(int(v) for v in e["color"]), e.get("supercategory", ""))
        for i, e in enumerate(entries)
    ]


class Project:
    """Images (display order), categories (display order) and annotations indexed by image.

    path: the project .json, or None before the first save. Relative image file names resolve
    against `image_folder()` (the project's folder, or `image_root` below it for foreign layouts
    such as CVAT's images/ folder).
    extra: foreign top-level keys (info, licenses, ...), written back verbatim.
    undecodable: raw annotation dicts that could not be read, written back verbatim on save.
    changes: a counter that grows with every mutation (a cheap "did anything change" check).
    """

    def __init__(
        self,
        path: Path | None = None,
        images: list[ImageRecord] | None = None,
        categories: list[Category] | None = None,
        annotations: list[Annotation] | None = None,
    ):
        self.path = Path(path) if path is not None else None
        self.image_root: str = ""  # folder of relative file names, relative to path.parent
        self.extra: dict = {}
        self.undecodable: list[dict] = []
        self.unreadable_images: list[str] = []  # sentences from from_folder/from_images
        # Our project settings (written under the file's "annotator" key), e.g.
        # MASKS_DO_NOT_OVERLAP; changed only by commands (SetProjectSetting).
        self.settings: dict = {}
        self.changes = 0
        self.images: list[ImageRecord] = []
        self.categories: list[Category] = []
        self._image_pos: dict[int, int] = {}
        self._categories: dict[int, Category] = {}
        self._annotations: dict[int, Annotation] = {}
        self._by_image: dict[int, list[int]] = {}
        self._listeners: list[Callable[[ProjectEvent], None]] = []
        for record in images or []:
            self.add_image(record, notify=False)
        for category in categories or []:
            self.insert_category(category, notify=False)
        for annotation in annotations or []:
            self.insert_annotation(annotation, notify=False)

    # ----------------------------------------------------------------------------- construction
    @classmethod
    def from_folder(cls, folder: Path, project_name: str = "annotations.json") -> Project:
        """A new project of the images directly inside `folder`, saved as folder/project_name."""
        from annotator.core.images import list_images

        folder = Path(folder)
        return cls.from_images(list_images(folder), folder / project_name)

    @classmethod
    def from_images(cls, paths: list[Path], project_path: Path) -> Project:
        """A new project of these images (default categories). Images whose header cannot be read
        are left out and described in `unreadable_images`."""
        from annotator.core.images import read_image_size

        project_path = Path(project_path).absolute()
        project = cls(project_path, categories=default_categories())
        for path in paths:
            try:
                width, height = read_image_size(path)
            except UserError as exc:
                project.unreadable_images.append(str(exc))
                continue
            project.add_image(
                ImageRecord(
                    len(project.images) + 1,
                    _relative_name(path, project_path.parent),
                    width,
                    height,
                    path=normalise_path(path),
                ),
                notify=False,
            )
        return project

    # ----------------------------------------------------------------------------- queries
    def image_folder(self) -> Path:
        base = self.path.parent if self.path is not None else Path.cwd()
        return base / self.image_root if self.image_root else base

    def image_path(self, image: ImageRecord) -> Path:
        """Where the image file is: the record's absolute, normalised path (an `ImageURL` for an
        image named by a URL, such as `annotator auto s3://bucket/prefix` writes)."""
        from annotator.core.images import ImageURL, is_url

        location = image.path or self.resolve_file_name(image.file_name)
        return ImageURL(location) if is_url(location) else Path(location)

    def resolve_file_name(self, file_name: str, folder: Path | None = None) -> str:
        """The normalised absolute path that `file_name` names from `folder` (default: the image
        folder). Windows separators written by other tools are understood everywhere."""
        from annotator.core.images import is_url

        if is_url(file_name):
            return file_name
        name = file_name if os.sep == "\\" else file_name.replace("\\", "/")
        return normalise_path(Path(folder or self.image_folder()) / name)

    def resolve_paths(self) -> None:
        """Give every record its absolute path from its file name (after loading, once the
        image folder is known); records that have one keep it."""
        for index, record in enumerate(self.images):
            if not record.path:
                self.images[index] = replace(record, path=self.resolve_file_name(record.file_name))

    def image(self, image_id: int) -> ImageRecord:
        try:
            return self.images[self._image_pos[image_id]]
        except KeyError:
            raise KeyError(f"no image with id {image_id}") from None

    def has_image(self, image_id: int) -> bool:
        return image_id in self._image_pos

    def image_index(self, image_id: int) -> int:
        return self._image_pos[image_id]

    def category(self, category_id: int) -> Category:
        try:
            return self._categories[category_id]
        except KeyError:
            raise KeyError(f"no category with id {category_id}") from None

    def has_category(self, category_id: int) -> bool:
        return category_id in self._categories

    def annotation(self, annotation_id: int) -> Annotation:
        try:
            return self._annotations[annotation_id]
        except KeyError:
            raise KeyError(f"no annotation with id {annotation_id}") from None

    def has_annotation(self, annotation_id: int) -> bool:
        return annotation_id in self._annotations

    def annotations_of(self, image_id: int) -> list[Annotation]:
        """The image's annotations, bottom to top (drawing order)."""
        return [self._annotations[i] for i in self._by_image.get(image_id, ())]

    def annotation_count(self, image_id: int) -> int:
        return len(self._by_image.get(image_id, ()))

    def all_annotations(self) -> list[Annotation]:
        """Every annotation, image by image in display order."""
        return [
            self._annotations[i]
            for record in self.images
            for i in self._by_image.get(record.id, ())
        ]

    def total_annotations(self) -> int:
        return len(self._annotations)

    def annotations_of_category(self, category_id: int) -> list[Annotation]:
        return [a for a in self.all_annotations() if a.category_id == category_id]

    def next_annotation_id(self) -> int:
        taken = [max(self._annotations, default=0)]
        taken += [r["id"] for r in self.undecodable if isinstance(r.get("id"), int)]
        return max(taken) + 1

    def next_category_id(self) -> int:
        return max(self._categories, default=0) + 1

    def next_image_id(self) -> int:
        return max(self._image_pos, default=0) + 1

    def state(self) -> tuple:
        """Everything the user can edit, as comparable values (tests compare before/after)."""
        return (
            tuple(self.images),
            tuple(self.categories),
            tuple(
                (image_id, tuple(ids)) for image_id, ids in sorted(self._by_image.items()) if ids
            ),
            tuple(sorted(self._annotations.items())),
            tuple(sorted(self.settings.items())),
        )

    # ----------------------------------------------------------------------------- listeners
    def add_listener(self, callback: Callable[[ProjectEvent], None]) -> None:
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[ProjectEvent], None]) -> None:
        self._listeners.remove(callback)

    def notify(self, event: ProjectEvent) -> None:
        self.changes += 1
        for callback in list(self._listeners):
            callback(event)

    # ----------------------------------------------------------------------------- mutators
    # Called by commands (undoable edits), loaders and relinking only.
    def insert_annotation(
        self, annotation: Annotation, index: int | None = None, notify=True
    ) -> None:
        """Add `annotation` at position `index` of its image's list (default: on top)."""
        if annotation.id in self._annotations:
            raise ValueError(f"annotation id {annotation.id} exists already")
        if annotation.image_id not in self._image_pos:
            raise ValueError(
                f"annotation {annotation.id} refers to unknown image {annotation.image_id}"
            )
        self._annotations[annotation.id] = annotation
        ids = self._by_image.setdefault(annotation.image_id, [])
        ids.insert(len(ids) if index is None else index, annotation.id)
        if notify:
            self.notify(ProjectEvent("annotations", (annotation.id,), (annotation.image_id,)))

    def annotation_position(self, annotation_id: int) -> int:
        annotation = self.annotation(annotation_id)
        return self._by_image[annotation.image_id].index(annotation_id)

    def remove_annotation(self, annotation_id: int, notify=True) -> Annotation:
        annotation = self._annotations.pop(annotation_id)
        self._by_image[annotation.image_id].remove(annotation_id)
        if notify:
            self.notify(ProjectEvent("annotations", (annotation_id,), (annotation.image_id,)))
        return annotation

    def replace_annotation(self, annotation: Annotation, notify=True) -> Annotation:
        """Swap in a new value with the same id and image; returns the old value."""
        old = self.annotation(annotation.id)
        if old.image_id != annotation.image_id:
            raise ValueError("an annotation cannot move to another image")
        self._annotations[annotation.id] = annotation
        if notify:
            self.notify(ProjectEvent("annotations", (annotation.id,)))
        return old

    def set_setting(self, key: str, value, notify=True) -> None:
        """Set one of our project settings (None removes it)."""
        if value is None:
            self.settings.pop(key, None)
        else:
            self.settings[key] = value
        if notify:
            self.notify(ProjectEvent("settings"))

    def insert_category(self, category: Category, index: int | None = None, notify=True) -> None:
        if category.id in self._categories:
            raise ValueError(f"category id {category.id} exists already")
        self._categories[category.id] = category
        self.categories.insert(len(self.categories) if index is None else index, category)
        if notify:
            self.notify(ProjectEvent("categories", (category.id,)))

    def remove_category(self, category_id: int, notify=True) -> tuple[int, Category]:
        category = self._categories.pop(category_id)
        index = self.categories.index(category)
        del self.categories[index]
        if notify:
            self.notify(ProjectEvent("categories", (category_id,)))
        return index, category

    def replace_category(self, category: Category, notify=True) -> Category:
        old = self.category(category.id)
        self._categories[category.id] = category
        self.categories[self.categories.index(old)] = category
        if notify:
            self.notify(ProjectEvent("categories", (category.id,)))
        return old

    def replace_image(self, record: ImageRecord, notify=True) -> ImageRecord:
        index = self._image_pos[record.id]
        old = self.images[index]
        self.images[index] = record
        if notify:
            self.notify(ProjectEvent("images", (record.id,)))
        return old

    def add_image(self, record: ImageRecord, notify=True, resolve=True) -> None:
        """Append `record`; with `resolve`, one without a path gets it from its file name now
        (loaders pass False and call `resolve_paths` once the image folder is known)."""
        if record.id in self._image_pos:
            raise ValueError(f"image id {record.id} exists already")
        if resolve and not record.path:
            record = replace(record, path=self.resolve_file_name(record.file_name))
        self._image_pos[record.id] = len(self.images)
        self.images.append(record)
        if notify:
            self.notify(ProjectEvent("images", (record.id,)))

    def remove_image(self, image_id: int, notify=True) -> tuple[int, ImageRecord]:
        """Remove an image without annotations (undo of adding it); returns (position, record)."""
        if self._by_image.get(image_id):
            raise ValueError(f"image {image_id} still has annotations")
        index = self._image_pos.pop(image_id)
        record = self.images.pop(index)
        self._by_image.pop(image_id, None)
        for later in self.images[index:]:
            self._image_pos[later.id] -= 1
        if notify:
            self.notify(ProjectEvent("images", (image_id,)))
        return index, record

    def snapshot(self) -> Project:
        """A copy that shares the immutable values and copies only the containers (milliseconds
        for 50,000 annotations): what a background autosave serialises while edits go on."""
        copy = Project.__new__(Project)
        copy.path = self.path
        copy.image_root = self.image_root
        copy.extra = dict(self.extra)
        copy.settings = dict(self.settings)
        copy.undecodable = list(self.undecodable)
        copy.unreadable_images = []
        copy.changes = self.changes
        copy.images = list(self.images)
        copy.categories = list(self.categories)
        copy._image_pos = dict(self._image_pos)
        copy._categories = dict(self._categories)
        copy._annotations = dict(self._annotations)
        copy._by_image = {k: list(v) for k, v in self._by_image.items()}
        copy._listeners = []
        return copy


def _relative_name(path: Path, base: Path) -> str:
    """`path` relative to `base` in POSIX form, or absolute when it is on another drive; a URL
    as it is."""
    from annotator.core.images import is_url

    if is_url(path):
        return str(path)
    path = Path(path).absolute()
    try:
        return Path(os.path.relpath(path, base)).as_posix()
    except ValueError:  # Windows: another drive
        return str(path)


def find_relinks(project: Project, folder: Path) -> list[ImageRecord]:
    """New records for the missing images found again by file name anywhere under `folder`
    (first match in walk order), with file names relative to the project's image folder."""
    folder = Path(folder)
    missing = [r for r in project.images if not project.image_path(r).is_file()]
    if not missing:
        return []
    wanted = {_base_name(r.file_name) for r in missing}
    found: dict[str, Path] = {}
    for root, dirs, names in os.walk(folder):
        dirs.sort()
        for name in sorted(names):
            if name in wanted and name not in found:
                found[name] = Path(root) / name
    base = project.image_folder()
    return [
        replace(
            record,
            file_name=_relative_name(found[_base_name(record.file_name)], base),
            path=normalise_path(found[_base_name(record.file_name)]),
        )
        for record in missing
        if _base_name(record.file_name) in found
    ]


def _base_name(file_name: str) -> str:
    return Path(file_name.replace("\\", "/")).name


def relink_images(project: Project, folder: Path) -> int:
    """Find missing images again by file name under `folder` and point the project at them;
    returns how many were relinked. Their annotations are untouched (they hang on image ids).
    The window does the same undoably: `UndoStack.push(ReplaceImages(find_relinks(...)))`."""
    records = find_relinks(project, folder)
    for record in records:
        project.replace_image(record, notify=False)
    if records:
        project.notify(ProjectEvent("images", tuple(r.id for r in records)))
    return len(records)
