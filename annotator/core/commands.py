"""Undoable edits of a Project: the one undo mechanism for every user edit.

Each command records what it needs in `apply` and restores exactly that state in `revert`
(positions in lists included), so apply/revert/apply is idempotent. `UndoStack` has the semantics
of QUndoStack (push applies and drops the redo tail; a clean index that may become unreachable)
without Qt; the window wraps it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Protocol

from annotator.core.project import Annotation, Category, ImageRecord, Project


class Command(Protocol):
    text: str

    def apply(self, project: Project) -> None: ...

    def revert(self, project: Project) -> None: ...


class AddAnnotation:
    def __init__(self, annotation: Annotation, text: str = "Add annotation"):
        self.annotation = annotation
        self.text = text

    def apply(self, project: Project) -> None:
        project.insert_annotation(self.annotation)

    def revert(self, project: Project) -> None:
        project.remove_annotation(self.annotation.id)


class DeleteAnnotations:
    """Delete annotations (all or nothing: an unknown id changes nothing)."""

    def __init__(self, ids: Iterable[int], text: str | None = None):
        self.ids = tuple(dict.fromkeys(ids))
        self.text = text or (
            "Delete annotation" if len(self.ids) == 1 else f"Delete {len(self.ids)} annotations"
        )
        self._removed: list[tuple[int, Annotation]] = []

    def apply(self, project: Project) -> None:
        for annotation_id in self.ids:
            project.annotation(annotation_id)  # KeyError before anything changed
        self._removed = []
        for annotation_id in self.ids:
            position = project.annotation_position(annotation_id)
            self._removed.append((position, project.remove_annotation(annotation_id)))

    def revert(self, project: Project) -> None:
        for position, annotation in reversed(self._removed):
            project.insert_annotation(annotation, position)


class RelabelAnnotations:
    def __init__(self, ids: Iterable[int], category_id: int, text: str = "Change label"):
        self.ids = tuple(ids)
        self.category_id = category_id
        self.text = text
        self._old: list[Annotation] = []

    def apply(self, project: Project) -> None:
        project.category(self.category_id)  # raises KeyError for an unknown category
        self._old = [project.annotation(i) for i in self.ids]
        for old in self._old:
            project.replace_annotation(replace(old, category_id=self.category_id))

    def revert(self, project: Project) -> None:
        for old in self._old:
            project.replace_annotation(old)


class ReplaceAnnotation:
    """Swap an annotation for an edited value (same id and image), e.g. a refined mask."""

    def __init__(self, annotation: Annotation, text: str = "Edit annotation"):
        self.annotation = annotation
        self.text = text
        self._old: Annotation | None = None

    def apply(self, project: Project) -> None:
        self._old = project.replace_annotation(self.annotation)

    def revert(self, project: Project) -> None:
        project.replace_annotation(self._old)


class EditMask:
    """A new mask for one annotation (a brush stroke, an eraser stroke, a polygon or SAM mask
    added or cut, a clean-up). Records only the geometry it changes (RLE, area, bbox and the
    foreign `original`, which no longer holds), so it composes with a relabel of the same
    annotation. The RLE must be of the annotation's image size."""

    def __init__(self, annotation_id: int, rle: dict, text: str = "Edit mask"):
        from annotator.core.masks import rle_area, rle_bbox

        self.annotation_id = annotation_id
        self.rle = rle
        self.area = rle_area(rle)
        self.bbox = rle_bbox(rle)
        self.text = text
        self._before: tuple | None = None

    def apply(self, project: Project) -> None:
        old = project.annotation(self.annotation_id)
        if list(old.rle["size"]) != list(self.rle["size"]):
            raise ValueError(
                f"the new mask is {self.rle['size']}, annotation {old.id} is {old.rle['size']}"
            )
        if self.area == 0:
            raise ValueError("the mask would be empty")
        self._before = (old.rle, old.area, old.bbox, old.original, old.propagated)
        # an edited mask is the person's, no longer propagation's (re-propagation keeps it)
        project.replace_annotation(
            replace(
                old, rle=self.rle, area=self.area, bbox=self.bbox, original=None, propagated=False
            )
        )

    def revert(self, project: Project) -> None:
        rle, area, bbox, original, propagated = self._before
        current = project.annotation(self.annotation_id)
        project.replace_annotation(
            replace(
                current, rle=rle, area=area, bbox=bbox, original=original, propagated=propagated
            )
        )


class SetProjectSetting:
    """Change one of the project's own settings (None removes it)."""

    def __init__(self, key: str, value, text: str = "Change project setting"):
        self.key, self.value, self.text = key, value, text
        self._old = None

    def apply(self, project: Project) -> None:
        self._old = project.settings.get(self.key)
        project.set_setting(self.key, self.value)

    def revert(self, project: Project) -> None:
        project.set_setting(self.key, self._old)


class AddCategory:
    def __init__(self, category: Category, text: str | None = None):
        self.category = category
        self.text = text or f"Add label {category.name}"

    def apply(self, project: Project) -> None:
        project.insert_category(self.category)

    def revert(self, project: Project) -> None:
        project.remove_category(self.category.id)


class _ChangeCategory:
    def __init__(self, category_id: int, text: str):
        self.category_id = category_id
        self.text = text
        self._old: Category | None = None

    def _changed(self, category: Category) -> Category:
        raise NotImplementedError

    def apply(self, project: Project) -> None:
        self._old = project.category(self.category_id)
        project.replace_category(self._changed(self._old))

    def revert(self, project: Project) -> None:
        project.replace_category(self._old)


class RenameCategory(_ChangeCategory):
    def __init__(self, category_id: int, name: str, text: str | None = None):
        super().__init__(category_id, text or f"Rename label to {name}")
        self.name = name

    def _changed(self, category: Category) -> Category:
        return replace(category, name=self.name)


class RecolorCategory(_ChangeCategory):
    def __init__(
        self, category_id: int, color: tuple[int, int, int], text: str = "Change label colour"
    ):
        super().__init__(category_id, text)
        self.color = tuple(int(v) for v in color)

    def _changed(self, category: Category) -> Category:
        return replace(category, color=self.color)


class DeleteCategory:
    """Delete a category and its annotations; revert restores both at their positions."""

    def __init__(self, category_id: int, text: str = "Delete label"):
        self.category_id = category_id
        self.text = text
        self._index = 0
        self._category: Category | None = None
        self._annotations: DeleteAnnotations | None = None

    def apply(self, project: Project) -> None:
        ids = [a.id for a in project.annotations_of_category(self.category_id)]
        self._annotations = DeleteAnnotations(ids)
        self._annotations.apply(project)
        self._index, self._category = project.remove_category(self.category_id)

    def revert(self, project: Project) -> None:
        project.insert_category(self._category, self._index)
        self._annotations.revert(project)


class SetImageDone:
    """Mark an image done or not; records only the flag it changes."""

    def __init__(self, image_id: int, done: bool, text: str | None = None):
        self.image_id = image_id
        self.done = bool(done)
        self.text = text or ("Mark image done" if done else "Mark image not done")
        self._old = False

    def apply(self, project: Project) -> None:
        record = project.image(self.image_id)
        self._old = record.done
        project.replace_image(replace(record, done=self.done))

    def revert(self, project: Project) -> None:
        project.replace_image(replace(project.image(self.image_id), done=self._old))


class RecordSearch:
    """Record that SAM 3 (weights `model`, a fingerprint) searched an image for `phrase`."""

    def __init__(self, image_id: int, model: str, phrase: str, text: str | None = None):
        self.image_id = image_id
        self.pair = (str(model), str(phrase))
        self.text = text or f"Find “{phrase}”"
        self._old: tuple = ()

    def apply(self, project: Project) -> None:
        record = project.image(self.image_id)
        self._old = record.searched
        if self.pair not in record.searched:
            project.replace_image(replace(record, searched=(*record.searched, self.pair)))

    def revert(self, project: Project) -> None:
        project.replace_image(replace(project.image(self.image_id), searched=self._old))


class ReplaceImages:
    """Point images (same ids) at other files, e.g. those found by relinking. Records only the
    file name and path it changes, so it composes with any other edit of the same records."""

    def __init__(self, records: Iterable[ImageRecord], text: str = "Relink images"):
        self.locations = tuple((r.id, r.file_name, r.path) for r in records)
        self.text = text
        self._old: list[tuple[int, str, str]] = []

    def apply(self, project: Project) -> None:
        for image_id, _, _ in self.locations:
            project.image(image_id)  # KeyError before anything changed
        self._old = []
        for image_id, file_name, path in self.locations:
            old = project.image(image_id)
            self._old.append((image_id, old.file_name, old.path))
            project.replace_image(replace(old, file_name=file_name, path=path))

    def revert(self, project: Project) -> None:
        for image_id, file_name, path in reversed(self._old):
            record = project.image(image_id)
            project.replace_image(replace(record, file_name=file_name, path=path))


class AddImages:
    """Append new images (e.g. files that appeared in the project's folder since it was saved)."""

    def __init__(self, records: Iterable[ImageRecord], text: str | None = None):
        self.records = tuple(records)
        self.text = text or f"Add {len(self.records)} new image(s)"

    def apply(self, project: Project) -> None:
        for record in self.records:
            if project.has_image(record.id):
                raise ValueError(f"image id {record.id} exists already")
        for record in self.records:
            project.add_image(record)

    def revert(self, project: Project) -> None:
        for record in reversed(self.records):
            project.remove_image(record.id)


class CompositeCommand:
    """Several commands as one undo step (e.g. "accept all proposals"); reverted in reverse."""

    def __init__(self, text: str, commands: Iterable[Command]):
        self.text = text
        self.commands = list(commands)

    def apply(self, project: Project) -> None:
        done = []
        try:
            for command in self.commands:
                command.apply(project)
                done.append(command)
        except Exception:
            for command in reversed(done):  # all or nothing
                command.revert(project)
            raise

    def revert(self, project: Project) -> None:
        for command in reversed(self.commands):
            command.revert(project)


class UndoStack:
    """A linear history of applied commands with a movable index and a clean mark.

    index: commands[:index] are applied. The clean index is where the project matches the file;
    it becomes unreachable (None) when a push drops the tail that contained it.
    """

    def __init__(self, project: Project):
        self.project = project
        self._commands: list[Command] = []
        self._index = 0
        self._clean: int | None = 0
        self._listeners: list[Callable[[], None]] = []

    def push(self, command: Command) -> None:
        """Apply `command` and make it the newest step (an exception leaves the stack as it was)."""
        command.apply(self.project)
        if self._clean is not None and self._clean > self._index:
            self._clean = None
        del self._commands[self._index :]
        self._commands.append(command)
        self._index += 1
        self._changed()

    def undo(self) -> None:
        if self.can_undo():
            self._index -= 1
            self._commands[self._index].revert(self.project)
            self._changed()

    def redo(self) -> None:
        if self.can_redo():
            self._commands[self._index].apply(self.project)
            self._index += 1
            self._changed()

    def can_undo(self) -> bool:
        return self._index > 0

    def can_redo(self) -> bool:
        return self._index < len(self._commands)

    def undo_text(self) -> str:
        return self._commands[self._index - 1].text if self.can_undo() else ""

    def redo_text(self) -> str:
        return self._commands[self._index].text if self.can_redo() else ""

    def index(self) -> int:
        return self._index

    def count(self) -> int:
        return len(self._commands)

    def is_clean(self) -> bool:
        return self._clean == self._index

    def set_clean(self) -> None:
        self._clean = self._index
        self._changed()

    def set_clean_index(self, index: int | None) -> None:
        """Mark the state after commands[:index] as the file's (None: no reachable state is;
        a save of a state that later edits undid and replaced)."""
        self._clean = index
        self._changed()

    def clear(self) -> None:
        """Forget the history; the current state becomes clean (as QUndoStack.clear)."""
        self._commands.clear()
        self._index = 0
        self._clean = 0
        self._changed()

    def add_listener(self, callback: Callable[[], None]) -> None:
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[], None]) -> None:
        self._listeners.remove(callback)

    def _changed(self) -> None:
        for callback in list(self._listeners):
            callback()
