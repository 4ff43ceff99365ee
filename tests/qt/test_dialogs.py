"""First-run, About and crash dialogs, driven offscreen with pytest-qt."""

from __future__ import annotations

import threading

import pytest

pytest.importorskip("PySide6")

from models import FileServer, fake_checkpoint, registry_entry_for  # noqa: E402
from PySide6.QtCore import QTimer  # noqa: E402
from PySide6.QtWidgets import QApplication, QDialog, QLabel, QPushButton  # noqa: E402

from annotator.models.download import checkpoints_dir, part_path  # noqa: E402
from annotator.qt.about import AboutDialog, sample_licences  # noqa: E402
from annotator.qt.crash import CrashDialog, install_excepthook  # noqa: E402
from annotator.qt.first_run import FirstRunDialog  # noqa: E402

DATA = fake_checkpoint(500_000, seed=11)
ENTRY = registry_entry_for(DATA, file_name="sam_dialog_test.pth")


def _button(dialog, prefix: str) -> QPushButton:
    (button,) = [b for b in dialog.findChildren(QPushButton) if b.text().startswith(prefix)]
    return button


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    server = FileServer({ENTRY.file_name: DATA})
    yield server
    server.close()


# ---------------------------------------------------------------------------- first run


def test_first_run_on_a_cpu_recommends_the_fast_families_with_measured_times(qtbot):
    dialog = FirstRunDialog(cuda=False)
    qtbot.addWidget(dialog)
    choices = dialog.model_choices()
    assert len(choices) == 3
    expected = (
        ("EfficientViT-SAM L0, about 139 MB", "1.3 s"),
        ("MobileSAM (ViT-T), 41 MB", "3.0 s"),
        ("SAM 2.1 Hiera-T (tiny), 156 MB", "5.2 s"),
    )
    for choice, (title, seconds) in zip(choices, expected, strict=True):
        assert choice.startswith(title)
        # Quoted as measured on the test machine, never as a promise about this computer.
        assert f"Measured: {seconds} to embed a new image on a 2-core test machine" in choice
        assert "your computer will differ" in choice
    assert dialog.selected_checkpoint().model_type == "efficientvit_sam_l0"
    texts = [label.text() for label in dialog.findChildren(QLabel)]
    assert any(t.startswith("Recommended for this computer (no CUDA GPU") for t in texts)
    assert any("annotator models download TYPE" in t for t in texts)


def test_first_run_with_cuda_recommends_by_quality_without_cpu_times(qtbot):
    dialog = FirstRunDialog(cuda=True)
    qtbot.addWidget(dialog)
    choices = dialog.model_choices()
    assert choices[0].startswith("SAM 2.1 Hiera-L (large), 898 MB")
    assert not any("Measured" in choice for choice in choices)
    assert dialog.selected_checkpoint().model_type == "sam2.1_hiera_l"


def test_a_recommended_family_without_its_package_says_what_to_install(qtbot, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "efficientsam" else real(name)
    )
    dialog = FirstRunDialog(cuda=False)
    qtbot.addWidget(dialog)
    first, second, _ = dialog.model_choices()
    assert "pip install 'annotator[efficientvit]'" in first
    assert "pip install" not in second


def test_continue_without_a_model_returns_none(qtbot):
    dialog = FirstRunDialog()
    qtbot.addWidget(dialog)
    dialog.show()
    qtbot.mouseClick(_button(dialog, "Continue without a model"), _left())
    assert dialog.result() == QDialog.DialogCode.Accepted
    assert dialog.chosen_path() is None


def test_choosing_a_file_returns_it(qtbot, tmp_path):
    checkpoint = tmp_path / "my_sam.pth"
    checkpoint.write_bytes(b"weights")
    dialog = FirstRunDialog()
    qtbot.addWidget(dialog)
    assert dialog.use_file(checkpoint)
    assert dialog.result() == QDialog.DialogCode.Accepted
    assert dialog.chosen_path() == checkpoint.resolve()


def test_a_truncated_official_checkpoint_is_refused(qtbot, tmp_path):
    truncated = tmp_path / "sam_vit_b_01ec64.pth"
    truncated.write_bytes(b"x" * 1000)
    dialog = FirstRunDialog()
    qtbot.addWidget(dialog)
    assert not dialog.use_file(truncated)
    assert dialog.chosen_path() is None
    assert "incomplete download" in dialog.status_text()
    assert not dialog.use_file(tmp_path / "missing.pth")
    assert "no file" in dialog.status_text()


def test_download_in_the_dialog_returns_the_verified_path(qtbot, server):
    dialog = FirstRunDialog(checkpoints=(ENTRY,), base_url=server.url)
    qtbot.addWidget(dialog)
    dialog.show()
    with qtbot.waitSignal(dialog.accepted, timeout=20_000):
        qtbot.mouseClick(_button(dialog, "Download"), _left())
        assert dialog.is_downloading()
    expected = checkpoints_dir() / ENTRY.file_name
    assert dialog.chosen_path() == expected
    assert expected.read_bytes() == DATA
    assert not dialog.is_downloading()


def test_failed_download_explains_and_keeps_the_dialog_usable(qtbot, monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    bad = FileServer({ENTRY.file_name: DATA}, corrupt=True)
    try:
        dialog = FirstRunDialog(checkpoints=(ENTRY,), base_url=bad.url)
        qtbot.addWidget(dialog)
        dialog.start_download()
        qtbot.waitUntil(lambda: not dialog.is_downloading(), timeout=20_000)
    finally:
        bad.close()
    assert "corrupt" in dialog.status_text()
    assert dialog.result() != QDialog.DialogCode.Accepted
    assert dialog.chosen_path() is None
    assert _button(dialog, "Download").isEnabled()
    assert not (checkpoints_dir() / ENTRY.file_name).exists()
    assert not part_path(checkpoints_dir() / ENTRY.file_name).exists()


def _left():
    from PySide6.QtCore import Qt

    return Qt.MouseButton.LeftButton


# ---------------------------------------------------------------------------- about


def test_about_shows_version_model_device_and_sample_licences(qtbot):
    dialog = AboutDialog("9.8.7", "vit_b (sam_vit_b_01ec64.pth)", "cpu")
    qtbot.addWidget(dialog)
    summary = dialog.summary()
    assert "Annotator 9.8.7" in summary and "vit_b" in summary and "Device: cpu" in summary
    rows = sample_licences()
    assert [r[0] for r in rows] == ["coffee.png", "chelsea.png", "astronaut.png", "rocket.jpg"]
    table = dialog.samples_table
    assert table.rowCount() == 4
    cells = {table.item(r, 0).text(): table.item(r, 2).text() for r in range(4)}
    assert cells["coffee.png"].startswith("CC0") and "public domain" in cells["rocket.jpg"]
    dialog.copy_details()
    assert QApplication.clipboard().text() == summary


def test_app_icon_has_every_bundled_size(qapp):
    from annotator.qt.about import app_icon

    sizes = {(s.width(), s.height()) for s in app_icon().availableSizes()}
    assert {(16, 16), (48, 48), (256, 256), (512, 512)} <= sizes


def test_about_without_a_model_says_classic_engine(qtbot):
    dialog = AboutDialog("1.0", None, None)
    qtbot.addWidget(dialog)
    assert "none (classic engine)" in dialog.summary()


# ---------------------------------------------------------------------------- crash hook


class _DialogCloser:
    """Polls for the crash dialog, records what it shows and what had happened, closes it."""

    def __init__(self, events: list):
        self.events = events
        self.reports: list[str] = []  # the report text each dialog showed
        self.headlines: list[str] = []  # its labels' text
        self.timer = QTimer()
        self.timer.setInterval(10)
        self.timer.timeout.connect(self._poll)
        self.timer.start()

    def _poll(self):
        for widget in QApplication.topLevelWidgets():
            if isinstance(widget, CrashDialog) and widget.isVisible():
                self.events.append("dialog")
                self.reports.append(widget.report_view.toPlainText())
                self.headlines.append(" ".join(w.text() for w in widget.findChildren(QLabel)))
                widget.copy_report()
                widget.reject()


@pytest.fixture
def crash_hook(qtbot, tmp_path):
    events: list = []

    def autosave():
        events.append("autosave")

    handler = install_excepthook(autosave, lambda: None, reports_dir=tmp_path / "reports")
    closer = _DialogCloser(events)
    yield handler, events, closer
    closer.timer.stop()
    handler.uninstall()


def _raise_in_slot():
    raise ValueError("boom from a slot")


@pytest.mark.qt_no_exception_capture
def test_crash_in_a_slot_autosaves_then_shows_the_report_and_the_app_goes_on(
    qtbot, crash_hook, tmp_path
):
    handler, events, closer = crash_hook
    QTimer.singleShot(0, _raise_in_slot)
    qtbot.waitUntil(lambda: "dialog" in events, timeout=5000)
    assert events == ["autosave", "dialog"]
    (report,) = handler.reports
    assert report.summary == "ValueError: boom from a slot"
    assert "Traceback (most recent call last)" in report.text
    assert "_raise_in_slot" in report.text and "Python " in report.text
    assert closer.reports == [report.text]
    assert QApplication.clipboard().text() == report.text  # the Copy button's job
    (saved,) = (tmp_path / "reports").iterdir()
    assert saved.read_text() == report.text
    # the event loop still runs: a later timer fires
    fired = []
    QTimer.singleShot(0, lambda: fired.append(True))
    qtbot.waitUntil(lambda: bool(fired), timeout=2000)


@pytest.mark.qt_no_exception_capture
def test_crash_in_a_thread_is_reported_on_the_gui_thread(qtbot, crash_hook):
    handler, events, _ = crash_hook

    def work():
        raise RuntimeError("worker failed")

    thread = threading.Thread(target=work, name="worker-1")
    thread.start()
    thread.join()
    qtbot.waitUntil(lambda: "dialog" in events, timeout=5000)
    assert events == ["autosave", "dialog"]
    assert handler.reports[0].thread_name == "worker-1"
    assert "RuntimeError: worker failed" in handler.reports[0].text


@pytest.mark.qt_no_exception_capture
def test_failing_autosave_is_reported_not_raised(qtbot, tmp_path):
    def autosave():
        raise OSError("disk full")

    handler = install_excepthook(autosave, lambda: None, reports_dir=tmp_path)
    events: list = []
    closer = _DialogCloser(events)
    try:
        QTimer.singleShot(0, _raise_in_slot)
        qtbot.waitUntil(lambda: "dialog" in events, timeout=5000)
    finally:
        closer.timer.stop()
        handler.uninstall()
    headline = closer.headlines[0]
    assert "autosave failed" in headline and "disk full" in headline


@pytest.mark.qt_no_exception_capture
def test_the_same_error_repeating_shows_one_dialog(qtbot, crash_hook):
    handler, events, _ = crash_hook
    for _ in range(3):
        try:
            _raise_in_slot()
        except ValueError as exc:
            handler.excepthook(type(exc), exc, exc.__traceback__)
    assert events.count("autosave") == 3
    assert events.count("dialog") == 1


@pytest.mark.qt_no_exception_capture
def test_a_failing_dialog_does_not_recurse_and_the_next_crash_still_shows(
    qtbot, crash_hook, monkeypatch, capsys
):
    handler, events, _ = crash_hook
    import annotator.qt.crash as crash

    real_dialog = crash.CrashDialog

    def broken(*args, **kwargs):
        raise RuntimeError("the dialog itself broke")

    monkeypatch.setattr(crash, "CrashDialog", broken)
    try:
        raise KeyError("first")
    except KeyError as exc:
        handler.excepthook(type(exc), exc, exc.__traceback__)  # must not raise
    assert "the dialog itself broke" in capsys.readouterr().err
    monkeypatch.setattr(crash, "CrashDialog", real_dialog)
    try:
        raise KeyError("second")
    except KeyError as exc:
        handler.excepthook(type(exc), exc, exc.__traceback__)
    assert events == ["autosave", "autosave", "dialog"]


def test_uninstall_restores_the_previous_hooks(qapp, tmp_path):
    import sys

    before, before_thread = sys.excepthook, threading.excepthook
    handler = install_excepthook(lambda: None, lambda: None, reports_dir=tmp_path)
    assert sys.excepthook == handler.excepthook
    handler.uninstall()
    assert sys.excepthook is before and threading.excepthook is before_thread


# ---------------------------------------------------------------------------- startup


def test_startup_uses_a_found_checkpoint_without_asking(qtbot, tmp_path, monkeypatch):
    from annotator.qt.first_run import startup_checkpoint

    monkeypatch.setattr(FirstRunDialog, "exec", lambda self: pytest.fail("asked anyway"))
    mine = tmp_path / "mine.pth"
    mine.write_bytes(b"weights")
    assert startup_checkpoint(str(mine)) == mine.resolve()
    monkeypatch.setenv("SAM_CHECKPOINT", str(mine))
    assert startup_checkpoint(None) == mine.resolve()


def test_startup_asks_when_nothing_usable_is_found(qtbot, tmp_path, monkeypatch):
    from annotator.qt.first_run import startup_checkpoint

    truncated = checkpoints_dir() / "sam_vit_b_01ec64.pth"
    truncated.parent.mkdir(parents=True)
    truncated.write_bytes(b"partial")  # a truncated official file is not offered
    assert startup_checkpoint(None, ask=False) is None
    chosen = tmp_path / "picked.pth"
    chosen.write_bytes(b"weights")
    monkeypatch.setattr(FirstRunDialog, "exec", lambda self: self.use_file(chosen))
    assert startup_checkpoint(None) == chosen.resolve()
    monkeypatch.setattr(FirstRunDialog, "exec", lambda self: self.continue_without_model())
    assert startup_checkpoint(None) is None
