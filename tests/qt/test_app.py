"""Opening PATH (folder, image, project file, nothing) and the settings kept across runs."""

from __future__ import annotations

import pytest

from annotator.core.session import AnnotationSession
from annotator.errors import UserError
from annotator.qt.app import samples_project_path


def open_project(path):
    """What the window opens for `path` (a session's project and its notes)."""
    session, report = AnnotationSession.open(path, take_lock=False, journal=False)
    return session.project, report.messages


def test_folder_opens_as_a_new_project_saved_inside_it(image_folder):
    project, messages = open_project(image_folder)
    assert project.path == image_folder / "annotations.json"
    assert [r.file_name for r in project.images] == ["img1.png", "img2.png", "img3.png"]
    assert messages == []


def test_folder_with_a_project_reopens_it(image_folder):
    from annotator.core.coco import save_project
    from annotator.core.commands import AddCategory, UndoStack
    from annotator.core.project import Category

    project, _ = open_project(image_folder)
    UndoStack(project).push(AddCategory(Category(99, "tree", (1, 2, 3))))
    save_project(project)
    reopened, _ = open_project(image_folder)
    assert reopened.category(99).name == "tree"


def test_one_image_and_a_project_file(image_folder):
    project, _ = open_project(image_folder / "img2.png")
    assert [r.file_name for r in project.images] == ["img2.png"]
    from annotator.core.coco import save_project

    save_project(project)
    same, _ = open_project(project.path)
    assert same.state() == project.state()


def test_no_path_opens_the_samples_in_a_writable_place(tmp_path):
    project, _ = open_project(None)
    assert project.path == samples_project_path()
    assert str(tmp_path) in str(project.path)  # the test's data folder, not the package
    assert len(project.images) >= 3
    assert all(project.image_path(r).is_file() for r in project.images)


def test_bad_paths_say_why(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        open_project(tmp_path / "missing")
    odd = tmp_path / "notes.txt"
    odd.write_text("x")
    with pytest.raises(UserError, match="neither"):
        open_project(odd)


def test_settings_are_remembered(qtbot, image_folder):
    from annotator.qt.settings import Settings

    settings = Settings()
    settings.opacity = 0.7
    settings.checkpoint = "/models/sam_vit_b.pth"
    settings.device = "cpu"
    for name in ("a.json", "b.json", "a.json"):
        settings.add_recent_project(name)
    settings.sync()
    again = Settings()
    assert again.opacity == pytest.approx(0.7)
    assert again.checkpoint == "/models/sam_vit_b.pth"
    assert again.device == "cpu"
    assert again.recent_projects == ["a.json", "b.json"]


def test_window_restores_opacity_and_geometry(qtbot, make_window, recording_engine):
    window = make_window(recording_engine)
    window.opacity_slider.setValue(70)
    window.resize(900, 650)
    window.stack.set_clean()
    window.close()
    second = make_window(recording_engine)
    assert second.opacity_slider.value() == 70
    assert second.canvas.opacity == pytest.approx(0.7)


def test_second_window_on_one_project_is_warned(qtbot, make_window, recording_engine):
    from annotator.core.lock import lock_path

    first = make_window(recording_engine)
    assert first.lock_warning is None
    assert lock_path(first.project.path).exists()
    second = make_window(recording_engine)
    assert second.lock_warning is not None
    assert "already open in another window" in second.lock_warning.text()
    second.lock_warning.close()
    first.close()  # the holder's lock goes with its window; the second's never took it
    assert not lock_path(first.project.path).exists()
