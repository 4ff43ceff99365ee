"""File → Export… and File → Relink Images…, driven through their real dialogs."""

from __future__ import annotations

import shutil
import threading

import numpy as np
import pytest


@pytest.fixture
def project_with_masks(image_folder):
    from annotator.core.coco import save_project
    from annotator.core.project import Project, annotation_from_mask

    project = Project.from_folder(image_folder)
    for index, record in enumerate(project.images):
        mask = np.zeros((record.height, record.width), bool)
        mask[10 : 30 + index, 20:50] = True
        project.insert_annotation(
            annotation_from_mask(index + 1, record.id, project.categories[0].id, mask)
        )
    save_project(project)
    return project


def test_export_dialog_suggests_a_destination_per_format(qtbot, project_with_masks):
    from annotator.qt.file_dialogs import ExportDialog

    dialog = ExportDialog(project_with_masks)
    qtbot.addWidget(dialog)
    assert dialog.fmt() == "coco"
    assert dialog.dest().suffix == ".json"
    dialog.format_box.setCurrentIndex(dialog.format_box.findData("png"))
    assert dialog.dest().name == "annotations-png"


def test_export_runs_off_the_gui_thread_and_pycocotools_reads_it(
    qtbot, project_with_masks, tmp_path
):
    from pycocotools.coco import COCO

    from annotator.qt.file_dialogs import export_with_progress

    parent = _parent(qtbot)
    dest = tmp_path / "out.json"
    report = export_with_progress(parent, project_with_masks, "coco", dest)
    assert report.annotations == 3
    coco = COCO(str(dest))
    assert len(coco.anns) == 3
    for annotation in project_with_masks.all_annotations():
        assert np.array_equal(
            coco.annToMask(coco.anns[annotation.id]).astype(bool), annotation.mask()
        )


def test_export_failure_is_a_user_error(qtbot, project_with_masks, tmp_path):
    from annotator.errors import UserError
    from annotator.qt.file_dialogs import export_with_progress

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(UserError):
        export_with_progress(_parent(qtbot), project_with_masks, "png", blocker / "sub")


def test_relink_finds_moved_images_by_name(qtbot, project_with_masks, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog, QMessageBox

    from annotator.core.commands import ReplaceImages, UndoStack
    from annotator.qt.file_dialogs import choose_relinks, missing_images

    project = project_with_masks
    moved = tmp_path / "moved" / "deeper"
    moved.mkdir(parents=True)
    for record in project.images:
        shutil.move(project.image_path(record), moved / record.file_name)
    assert len(missing_images(project)) == 3
    messages = []
    monkeypatch.setattr(
        QFileDialog, "getExistingDirectory", lambda *a, **k: str(tmp_path / "moved")
    )
    monkeypatch.setattr(QMessageBox, "information", lambda *a, **k: messages.append(a[2]))
    records = choose_relinks(_parent(qtbot), project)
    assert "Found 3 of 3" in messages[0]
    stack = UndoStack(project)
    stack.push(ReplaceImages(records))
    assert missing_images(project) == []
    assert len(project.all_annotations()) == 3  # annotations kept
    stack.undo()
    assert len(missing_images(project)) == 3


def _parent(qtbot):
    from PySide6.QtWidgets import QWidget

    widget = QWidget()
    qtbot.addWidget(widget)
    return widget


def test_window_relink_action_is_one_undo_step(
    qtbot, make_window, recording_engine, image_folder, tmp_path, monkeypatch
):
    from PySide6.QtWidgets import QFileDialog, QMessageBox

    from annotator.qt.file_dialogs import missing_images

    window = make_window(recording_engine)
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    for record in window.project.images:
        shutil.move(window.project.image_path(record), moved / record.file_name)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(moved))
    monkeypatch.setattr(QMessageBox, "information", lambda *a, **k: None)
    window.actions["relink_images"].trigger()
    assert missing_images(window.project) == []
    assert window.is_dirty()
    qtbot.waitUntil(lambda: window.display is not None, timeout=10000)
    window.actions["undo"].trigger()
    assert len(missing_images(window.project)) == 3


def test_an_unexpected_export_error_closes_the_dialog_with_one_sentence(
    qtbot, project_with_masks, tmp_path, monkeypatch, caplog
):
    import annotator.core.export
    from annotator.errors import UserError
    from annotator.qt.file_dialogs import ExportProgress

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire\nsecond line")

    monkeypatch.setattr(annotator.core.export, "export_project", broken)
    parent = _parent(qtbot)
    dialog = ExportProgress(parent, project_with_masks, "png", tmp_path / "out")
    dialog.start()
    assert dialog.isVisible()
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=10000)
    assert isinstance(dialog.result, UserError)
    message = str(dialog.result)
    assert message == "The export failed unexpectedly (RuntimeError: disk on fire second line)."
    (record,) = [r for r in caplog.records if r.name == "annotator"]
    assert record.exc_info and record.exc_info[0] is RuntimeError, "logged with its traceback"


def test_export_with_progress_raises_the_sentence_of_an_unexpected_error(
    qtbot, project_with_masks, tmp_path, monkeypatch
):
    import annotator.core.export
    from annotator.errors import UserError
    from annotator.qt.file_dialogs import export_with_progress

    monkeypatch.setattr(annotator.core.export, "_export_png", lambda *a: 1 / 0)
    with pytest.raises(UserError, match=r"failed unexpectedly \(ZeroDivisionError"):
        export_with_progress(_parent(qtbot), project_with_masks, "png", tmp_path / "out")


def test_cancel_stops_the_export_between_images_and_leaves_no_file(
    qtbot, project_with_masks, tmp_path, monkeypatch
):
    from PySide6.QtCore import Qt

    import annotator.core.masks
    from annotator.core.export import ExportCancelled
    from annotator.qt.file_dialogs import ExportProgress

    entered, go = threading.Event(), threading.Event()
    real = annotator.core.masks.mask_to_polygons
    calls = []

    def held(mask):  # the first image's first mask waits until the test has pressed Cancel
        calls.append(1)
        entered.set()
        assert go.wait(timeout=30)
        return real(mask)

    monkeypatch.setattr(annotator.core.masks, "mask_to_polygons", held)
    dest = tmp_path / "out.json"
    parent = _parent(qtbot)
    dialog = ExportProgress(parent, project_with_masks, "coco-polygons", dest)
    dialog.start()
    qtbot.waitUntil(entered.is_set, timeout=10000)
    qtbot.mouseClick(dialog.cancel_button, Qt.MouseButton.LeftButton)
    assert dialog.isVisible(), "stays until the thread has stopped"
    go.set()
    qtbot.waitUntil(lambda: not dialog.isVisible(), timeout=10000)
    assert isinstance(dialog.result, ExportCancelled)
    assert str(dialog.result) == "Export cancelled after 1 of 3 image(s); nothing was written."
    assert len(calls) == 1, "no image after the cancel"
    assert not dest.exists() and not list(tmp_path.glob(".out.json*"))
