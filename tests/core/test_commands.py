"""Every undoable edit restores the exact project state; the stack behaves like QUndoStack."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from annotator.core.commands import (
    AddAnnotation,
    AddCategory,
    CompositeCommand,
    DeleteAnnotations,
    DeleteCategory,
    EditMask,
    RecolorCategory,
    RelabelAnnotations,
    RenameCategory,
    ReplaceAnnotation,
    ReplaceImages,
    SetImageDone,
    UndoStack,
)
from annotator.core.masks import encode_mask
from annotator.core.project import Category, ImageRecord, Project, annotation_from_mask


def _project() -> Project:
    images = [ImageRecord(10, "a.png", 30, 20), ImageRecord(11, "b.png", 16, 16)]
    categories = [
        Category(3, "cat", (1, 2, 3)),
        Category(5, "dog", (4, 5, 6)),
        Category(9, "car", (7, 8, 9)),
    ]
    project = Project(None, images, categories)
    rng = np.random.default_rng(0)
    next_id = 100
    for record in images:
        for category_id in (3, 5, 3, 9):
            mask = rng.random((record.height, record.width)) < 0.3
            project.insert_annotation(
                annotation_from_mask(next_id, record.id, category_id, mask), notify=False
            )
            next_id += 1
    return project


def _mask(project: Project, image_id: int) -> np.ndarray:
    record = project.image(image_id)
    mask = np.zeros((record.height, record.width), bool)
    mask[2:6, 3:9] = True
    return mask


COMMANDS = {
    "add": lambda p: AddAnnotation(
        annotation_from_mask(p.next_annotation_id(), 10, 5, _mask(p, 10))
    ),
    "delete": lambda p: DeleteAnnotations([101, 104, 100, 107]),
    "relabel": lambda p: RelabelAnnotations([100, 105], 9),
    "replace": lambda p: ReplaceAnnotation(annotation_from_mask(102, 10, 3, _mask(p, 10))),
    "edit mask": lambda p: EditMask(102, encode_mask(_mask(p, 10)), "Paint"),
    "add category": lambda p: AddCategory(Category(p.next_category_id(), "bird", (0, 0, 0))),
    "rename": lambda p: RenameCategory(5, "puppy"),
    "recolor": lambda p: RecolorCategory(5, (255, 0, 0)),
    "delete category": lambda p: DeleteCategory(3),
    "done": lambda p: SetImageDone(11, True),
    "replace images": lambda p: ReplaceImages([replace(p.image(11), file_name="moved/b.png")]),
    "composite": lambda p: CompositeCommand(
        "accept all",
        [AddAnnotation(annotation_from_mask(200 + i, 11, 9, _mask(p, 11))) for i in range(3)],
    ),
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_undo_and_redo_restore_exact_state(name):
    project = _project()
    stack = UndoStack(project)
    before = project.state()
    stack.push(COMMANDS[name](project))
    after = project.state()
    assert after != before, "the command changed something"
    stack.undo()
    assert project.state() == before
    stack.redo()
    assert project.state() == after
    stack.undo()
    stack.redo()
    assert project.state() == after


def test_commands_do_what_they_say():
    project = _project()
    stack = UndoStack(project)
    stack.push(DeleteCategory(3))
    assert [c.id for c in project.categories] == [5, 9]
    assert all(a.category_id != 3 for a in project.all_annotations())
    assert project.total_annotations() == 4
    stack.undo()
    assert [c.id for c in project.categories] == [3, 5, 9], "restored at its position"
    stack.push(RelabelAnnotations([100], 5))
    assert project.annotation(100).category_id == 5
    stack.push(SetImageDone(10, True))
    assert project.image(10).done
    stack.push(RenameCategory(9, "truck"))
    assert project.category(9).name == "truck"


def test_stack_drops_redo_tail_and_tracks_clean_state():
    project = _project()
    stack = UndoStack(project)
    calls = []
    stack.add_listener(lambda: calls.append((stack.can_undo(), stack.can_redo(), stack.is_clean())))
    assert stack.is_clean() and not stack.can_undo() and stack.undo_text() == ""
    stack.push(RenameCategory(5, "a"))
    stack.push(RenameCategory(5, "b"))
    assert stack.undo_text() == "Rename label to b" and not stack.is_clean()
    stack.set_clean()
    stack.undo()
    assert stack.redo_text() == "Rename label to b" and not stack.is_clean()
    stack.redo()
    assert stack.is_clean()
    stack.undo()
    stack.push(RenameCategory(5, "c"))  # drops "b", which held the clean state
    assert not stack.can_redo() and stack.count() == 2
    stack.undo()
    stack.undo()
    assert project.category(5).name == "dog"
    reachable = [stack.is_clean()]
    while stack.can_redo():
        stack.redo()
        reachable.append(stack.is_clean())
    assert reachable == [False, False, False], "the clean state is unreachable now"
    stack.undo()
    stack.undo()
    assert calls and calls[-1] == (False, True, False)
    stack.clear()
    assert stack.is_clean() and not stack.can_redo()


def test_failed_command_leaves_stack_and_project_untouched():
    project = _project()
    stack = UndoStack(project)
    before = project.state()
    ok = AddAnnotation(annotation_from_mask(300, 10, 3, _mask(project, 10)))
    clash = AddAnnotation(annotation_from_mask(100, 10, 3, _mask(project, 10)))  # id 100 exists
    with pytest.raises(ValueError):
        stack.push(CompositeCommand("both", [ok, clash]))
    assert project.state() == before
    assert not stack.can_undo()
    with pytest.raises(KeyError):
        stack.push(RelabelAnnotations([100], 12345))
    assert project.state() == before
