"""The window as a view of its session: opening in the background, Discard then a failed open,
worker failures, one redraw per batch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from annotator.core.journal import journal_path
from annotator.core.proposals import CompactProposal
from annotator.errors import UserError
from tests.qt.conftest import RecordingEngine, click_image, key, wait_ready
from tests.qt.test_dialogs import crash_hook  # noqa: F401  (a fixture)

pytestmark = pytest.mark.timeout(120)


def _accept_one(qtbot, window):
    wait_ready(qtbot, window)
    click_image(qtbot, window, 60, 50)
    qtbot.waitUntil(lambda: window.session.prompts.mask() is not None)
    key(qtbot, window, Qt.Key.Key_Return)
    assert window.project.total_annotations() == 1 and window.is_dirty()


def test_discard_then_a_failed_open_keeps_the_project_and_its_journal(
    qtbot, make_window, tiny_engine, monkeypatch, tmp_path
):
    window = make_window(RecordingEngine(tiny_engine))
    _accept_one(qtbot, window)
    journal = journal_path(window.project.path)
    assert journal.exists()
    before = window.project.state()
    errors = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Discard)
    monkeypatch.setattr(QMessageBox, "critical", lambda _parent, _title, text: errors.append(text))
    broken = tmp_path / "broken.json"
    broken.write_text('{"images": [}')
    assert window.files.open_path(broken)
    qtbot.waitUntil(lambda: bool(errors), timeout=10000)
    assert "not valid JSON" in errors[0]
    assert window.project.state() == before and window.is_dirty()
    assert journal.exists()  # Discard applies only once another project has opened
    assert window.centralWidget().isEnabled()  # no longer busy


def test_open_in_background_switches_and_discards_the_old_work(
    qtbot, make_window, tiny_engine, monkeypatch, tmp_path
):
    from PIL import Image

    from annotator.core.lock import lock_path

    window = make_window(RecordingEngine(tiny_engine))
    _accept_one(qtbot, window)
    old_path = window.project.path
    other = tmp_path / "other"
    other.mkdir()
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(other / "x.png")
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Discard)
    assert window.files.open_path(other)
    qtbot.waitUntil(lambda: window.project.path == other / "annotations.json", timeout=10000)
    assert not window.is_dirty() and len(window.project.images) == 1
    assert not journal_path(old_path).exists()  # discarded, now that the new one is open
    assert not lock_path(old_path).exists() and lock_path(window.project.path).exists()


class FailingDecode(RecordingEngine):
    def __init__(self, engine, error):
        super().__init__(engine)
        self.error = error

    def decode(self, embedding, prompts):
        raise self.error


@pytest.mark.qt_no_exception_capture
def test_an_unexpected_worker_error_reaches_the_crash_report(
    qtbot,
    make_window,
    tiny_engine,
    crash_hook,  # noqa: F811
):
    handler, events, _ = crash_hook
    window = make_window(FailingDecode(tiny_engine, RuntimeError("decoder bug")))
    wait_ready(qtbot, window)
    click_image(qtbot, window, 60, 50)
    qtbot.waitUntil(lambda: "dialog" in events, timeout=10000)
    (report,) = handler.reports
    assert report.summary == "RuntimeError: decoder bug"
    assert "in decode" in report.text  # the worker's own traceback, not the GUI thread's


@pytest.mark.qt_no_exception_capture
def test_a_user_error_on_the_worker_is_a_sentence_not_a_crash(
    qtbot,
    make_window,
    tiny_engine,
    crash_hook,  # noqa: F811
):
    handler, events, _ = crash_hook
    window = make_window(FailingDecode(tiny_engine, UserError("The prompt is off the image.")))
    wait_ready(qtbot, window)
    messages = []
    window.controller.error.connect(messages.append)
    click_image(qtbot, window, 60, 50)
    qtbot.waitUntil(lambda: bool(messages), timeout=10000)
    assert messages == ["The prompt is off the image."]
    assert handler.reports == [] and "dialog" not in events


def test_accept_all_redraws_once(qtbot, make_window, tiny_engine, monkeypatch):
    window = make_window(RecordingEngine(tiny_engine))
    wait_ready(qtbot, window)
    record = window.current_record()
    proposals = []
    for n in range(30):
        mask = np.zeros((record.height, record.width), bool)
        mask[n : n + 10, 2 * n : 2 * n + 12] = True
        proposals.append(CompactProposal.from_mask(mask, 0.9, 0.95))
    window.session.set_proposals(record.id, str(window.project.image_path(record)), proposals)
    redraws = []
    original = window.canvas.set_overlay_items
    monkeypatch.setattr(
        window.canvas,
        "set_overlay_items",
        lambda items: (redraws.append(len(items)), original(items)),
    )
    assert window.accept_all_proposals()
    assert redraws == [30]  # one overlay rebuild for thirty annotations
    assert window.stack.count() == 1 and window.proposals is not None and not len(window.proposals)
    window.session.undo()
    assert len(window.proposals) == 30 and window.project.total_annotations() == 0


def test_the_window_shows_at_once_and_the_project_loads_behind_a_busy_bar(qtbot, image_folder):
    from annotator.qt.inference import EngineSpec, InferenceWorker
    from annotator.qt.main_window import MainWindow

    worker = InferenceWorker(engine_loader=lambda spec: None, cache_factory=None)
    window = MainWindow(None, EngineSpec(None), worker=worker)
    qtbot.addWidget(window)
    window.show()
    window.files.open_in_background(Path(image_folder))
    assert not window.centralWidget().isEnabled() and window.files.opening is not None
    qtbot.waitUntil(lambda: window.files.opening is None, timeout=10000)
    assert window.project.path == image_folder / "annotations.json"
    assert len(window.project.images) == 3 and window.centralWidget().isEnabled()
    window.controller.shutdown()


def test_labelling_goes_on_while_ctrl_s_writes(qtbot, make_window, tiny_engine, monkeypatch):
    """The save writes a snapshot on the I/O thread; an edit made meanwhile stays unsaved."""
    import threading

    from annotator.core.coco import load_project
    from annotator.core.session import SaveJob

    window = make_window(RecordingEngine(tiny_engine))
    _accept_one(qtbot, window)
    release, writing = threading.Event(), threading.Event()
    original = SaveJob.write

    def slow_write(job):
        writing.set()
        assert release.wait(10)
        original(job)

    monkeypatch.setattr(SaveJob, "write", slow_write)
    key(qtbot, window, Qt.Key.Key_S, Qt.KeyboardModifier.ControlModifier)
    assert writing.wait(10)
    window.toggle_done()  # an edit while the file is being written: the GUI is not waiting
    release.set()
    qtbot.waitUntil(lambda: window.files.saving is None, timeout=10000)
    saved, _ = load_project(window.project.path)
    assert saved.total_annotations() == 1 and not saved.images[0].done
    assert window.is_dirty() and window.windowTitle().endswith("*")


def test_undo_of_an_edit_on_another_image_shows_that_image(qtbot, make_window, tiny_engine):
    window = make_window(RecordingEngine(tiny_engine))
    _accept_one(qtbot, window)
    first = window.current_record().id
    key(qtbot, window, Qt.Key.Key_N)
    assert window.current_record().id != first
    key(qtbot, window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert window.current_record().id == first and window.project.total_annotations() == 0
    key(qtbot, window, Qt.Key.Key_N)
    key(
        qtbot,
        window,
        Qt.Key.Key_Z,
        Qt.KeyboardModifier.ShiftModifier | Qt.KeyboardModifier.ControlModifier,
    )
    assert window.current_record().id == first and window.project.total_annotations() == 1


def test_save_as_writes_in_the_background_and_the_lock_follows(
    qtbot, make_window, tiny_engine, monkeypatch, tmp_path
):
    from PIL import Image
    from PySide6.QtWidgets import QFileDialog

    from annotator.core.coco import load_project
    from annotator.core.lock import lock_path
    from annotator.core.session import AnnotationSession

    window = make_window(RecordingEngine(tiny_engine))
    _accept_one(qtbot, window)
    old = window.project.path
    target = tmp_path / "elsewhere" / "copy.json"
    target.parent.mkdir()
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    window.actions["save_as"].trigger()
    qtbot.waitUntil(lambda: window.files.saving is None, timeout=10000)
    assert window.project.path == target and not window.is_dirty()
    assert load_project(target)[0].total_annotations() == 1
    assert lock_path(target).exists() and not lock_path(old).exists()
    # A target another window holds is refused before anything is written.
    held = tmp_path / "held"
    held.mkdir()
    Image.fromarray(np.zeros((30, 40, 3), np.uint8)).save(held / "h.png")
    other, _ = AnnotationSession.open(held)
    other.save()
    held_bytes = other.project.path.read_bytes()
    errors = []
    monkeypatch.setattr(QMessageBox, "critical", lambda _p, _t, text: errors.append(text))
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", lambda *a, **k: (str(other.project.path), "")
    )
    window.actions["save_as"].trigger()
    assert errors and "open in another window" in errors[0]
    assert window.project.path == target and window.files.saving is None
    assert other.project.path.read_bytes() == held_bytes
    other.close()
