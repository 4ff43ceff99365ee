"""Segment everything in the window: Ctrl+E on the worker, proposals, accept/undo, cancel.

The real worker thread and the tiny random-weight SAM (loaded through `load_sam`). Random weights
give low-contrast logits, so the settings are scaled to them as in tests/engines/test_automatic.py
(small stability offset, low thresholds, NMS thresholds of 1.0); on the first test image they
give three overlapping proposals of different sizes that leave some pixels uncovered.
"""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest
from sam_factory import PERMISSIVE_AUTO_SETTINGS

from annotator.engines.automatic import AutoMaskSettings, count_steps, generate_proposals
from tests.qt.conftest import RecordingEngine, click_image, key, wait_ready

pytestmark = pytest.mark.timeout(120)

PERMISSIVE = AutoMaskSettings(**PERMISSIVE_AUTO_SETTINGS)
# One crop layer: after the full image (its embedding reused), each of 4 crops is encoded through
# the engine, where RecordingEngine's gate can hold the run mid-way.
WITH_CROPS = AutoMaskSettings(
    **{**PERMISSIVE.generator_kwargs(), "crop_n_layers": 1, "crop_n_points_downscale_factor": 4}
)
CTRL = Qt.KeyboardModifier.ControlModifier
SHIFT = Qt.KeyboardModifier.ShiftModifier


class AutoEngine(RecordingEngine):
    """RecordingEngine with the segment_anything model that `generate_proposals` needs."""

    @property
    def model(self):
        return self.engine.model


@pytest.fixture(autouse=True)
def _no_prefetch(monkeypatch):
    """No pre-encoding of neighbours: every encode the engine records is the test's own."""
    monkeypatch.setattr("annotator.qt.main_window.PREFETCH_AHEAD", 0)


@pytest.fixture
def auto_window(qtbot, make_window, tiny_engine):
    """(window, engine) on the first image, embedding ready, permissive settings."""
    engine = AutoEngine(tiny_engine)
    window = make_window(engine)
    window.settings.auto_mask_settings = PERMISSIVE
    wait_ready(qtbot, window)
    return window, engine


def _current_image(window) -> np.ndarray:
    from annotator.core.images import load_image

    return load_image(window.project.image_path(window.current_record()))


def _direct_proposals(tiny_engine, window, settings=PERMISSIVE):
    image = _current_image(window)
    proposals = generate_proposals(
        tiny_engine, image, settings, embedding=tiny_engine.encode(image)
    )
    return [p for p in proposals if p.mask.any()]


def _run(qtbot, window) -> None:
    key(qtbot, window, Qt.Key.Key_E, CTRL)
    qtbot.waitUntil(lambda: window.proposals is not None and not window.controller.auto_running)


def _annotations(window):
    return window.project.annotations_of(window.current_record().id)


def test_ctrl_e_proposes_what_generate_proposals_returns_without_encoding_again(
    qtbot, auto_window, tiny_engine
):
    window, engine = auto_window
    encodes_before = len(engine.encoded_shapes)
    steps = []
    window.controller.auto_progress.connect(lambda done, total: steps.append((done, total)))
    key(qtbot, window, Qt.Key.Key_E, CTRL)
    assert window.auto_box.isVisible() and window.controller.auto_running
    qtbot.waitUntil(lambda: window.proposals is not None)
    assert not window.auto_box.isVisible()

    expected = _direct_proposals(tiny_engine, window)
    shown = window.proposals.items
    assert len(expected) >= 2 and len(shown) == len(expected)
    for compact, direct in zip(shown, expected, strict=True):
        np.testing.assert_array_equal(compact.mask(), direct.mask)
        assert compact.area == direct.area
        assert compact.predicted_iou == pytest.approx(direct.predicted_iou, abs=1e-6)
    # The cached embedding of the current image was used: the image encoder did not run again.
    assert len(engine.encoded_shapes) == encodes_before
    total = count_steps(_current_image(window).shape[:2], PERMISSIVE)
    assert steps[-1] == (total, total)
    assert window.canvas._proposals is not None and window.proposal_bar.isVisible()
    assert f"{len(expected)} proposals" in window.proposal_label.text()
    # The proposals are stored compactly (bit-packed crops), far below full bool masks.
    assert sum(p.nbytes for p in shown) < sum(p.mask.nbytes for p in expected) / 4


def test_click_accepts_the_smallest_proposal_under_it_and_undo_offers_it_again(
    qtbot, auto_window, tiny_engine
):
    window, _ = auto_window
    _run(qtbot, window)
    expected = _direct_proposals(tiny_engine, window)
    covering = np.sum([p.mask for p in expected], axis=0)
    rows, cols = np.nonzero(covering == covering.max())  # where the most proposals overlap
    y, x = int(rows[len(rows) // 2]), int(cols[len(cols) // 2])
    containing = [p for p in expected if p.mask[y, x]]
    assert len(containing) >= 2  # a real overlap: the smallest must win
    smallest = min(containing, key=lambda p: p.area)
    key(qtbot, window, Qt.Key.Key_2)  # accept into the second label

    QTest.mouseMove(window.canvas, window.canvas.image_to_widget(x, y).toPoint())
    hovered = window.canvas.hovered
    assert hovered is not None
    np.testing.assert_array_equal(hovered.mask(), smallest.mask)

    click_image(qtbot, window, x, y)
    (annotation,) = _annotations(window)
    np.testing.assert_array_equal(annotation.mask(), smallest.mask)
    assert annotation.category_id == window.project.categories[1].id
    assert annotation.extra["score"] == pytest.approx(smallest.predicted_iou, abs=1e-6)
    assert window.session.prompts.is_empty()  # the click accepted; it added no prompt
    assert len(window.proposals) == len(expected) - 1
    assert all(not np.array_equal(p.mask(), smallest.mask) for p in window.proposals)

    key(qtbot, window, Qt.Key.Key_Z, CTRL)  # one undo step
    assert _annotations(window) == []
    assert len(window.proposals) == len(expected)  # back on offer, in its rank
    for compact, direct in zip(window.proposals.items, expected, strict=True):
        np.testing.assert_array_equal(compact.mask(), direct.mask)
    key(qtbot, window, Qt.Key.Key_Z, CTRL | SHIFT)
    assert len(_annotations(window)) == 1 and len(window.proposals) == len(expected) - 1

    # A click outside every proposal is an ordinary prompt.
    rows, cols = np.nonzero(covering == 0)
    assert rows.size
    click_image(qtbot, window, int(cols[0]), int(rows[0]))
    assert len(window.session.prompts.points) == 1 and len(_annotations(window)) == 1
    # With the overlays hidden (H) nothing is accepted unseen: a click is a prompt.
    key(qtbot, window, Qt.Key.Key_H)
    click_image(qtbot, window, x, y)
    assert len(window.session.prompts.points) == 2 and len(_annotations(window)) == 1


def test_accept_all_is_one_undo_step_and_esc_discards(qtbot, auto_window, tiny_engine):
    window, _ = auto_window
    _run(qtbot, window)
    expected = _direct_proposals(tiny_engine, window)
    key(qtbot, window, Qt.Key.Key_E, CTRL | SHIFT)
    annotations = _annotations(window)
    assert len(annotations) == len(expected)
    for annotation, direct in zip(annotations, expected, strict=True):
        np.testing.assert_array_equal(annotation.mask(), direct.mask)
    assert len(window.proposals) == 0 and not window.proposal_bar.isVisible()
    assert window.canvas._proposals is None
    assert len(window.canvas._items) == len(expected)  # drawn as annotations now

    key(qtbot, window, Qt.Key.Key_Z, CTRL)  # ONE step takes them all back
    assert _annotations(window) == []
    assert len(window.proposals) == len(expected) and window.proposal_bar.isVisible()

    click_image(qtbot, window, 5, 5, Qt.MouseButton.RightButton)  # a prompt as well
    key(qtbot, window, Qt.Key.Key_Escape)  # first Esc: the proposals go, the prompt stays
    assert window.proposals is None and window.canvas._proposals is None
    assert not window.proposal_bar.isVisible() and len(window.session.prompts.points) == 1
    key(qtbot, window, Qt.Key.Key_Escape)  # second Esc: the prompts go
    assert window.session.prompts.is_empty()
    key(qtbot, window, Qt.Key.Key_Z, CTRL | SHIFT)  # redo of a discarded set: annotations only
    assert len(_annotations(window)) == len(expected) and window.proposals is None


def _hold_mid_run(qtbot, window, engine):
    """Start Ctrl+E with crop layers and hold it at its first crop encoding (after the full
    image's batches were decoded); returns the worker's AutoMasked results as they come."""
    finished = []
    window.controller.worker.auto_finished.connect(finished.append)
    window.settings.auto_mask_settings = WITH_CROPS
    engine.gate.clear()
    key(qtbot, window, Qt.Key.Key_E, CTRL)
    qtbot.waitUntil(engine.encoding.is_set)
    qtbot.waitUntil(lambda: window.auto_progress.value() >= 1)  # real progress, mid-run
    assert window.auto_box.isVisible() and window.auto_cancel.isVisible()
    return finished


def test_cancel_stops_the_run_and_shows_nothing(qtbot, auto_window):
    window, engine = auto_window
    encodes_before = len(engine.encoded_shapes)
    finished = _hold_mid_run(qtbot, window, engine)
    QTest.mouseClick(window.auto_cancel, Qt.MouseButton.LeftButton)
    assert not window.auto_box.isVisible() and not window.controller.auto_running
    engine.gate.set()
    qtbot.waitUntil(lambda: len(finished) == 1)
    assert finished[0].cancelled and finished[0].proposals == ()
    # It stopped after the crop encoding in progress: 1 of the 4 crops was encoded.
    assert len(engine.encoded_shapes) == encodes_before + 1
    qtbot.wait(50)
    assert window.proposals is None and window.canvas._proposals is None
    # A new run afterwards works.
    window.settings.auto_mask_settings = PERMISSIVE
    _run(qtbot, window)
    assert len(window.proposals) >= 2


def test_esc_cancels_a_running_segment_everything(qtbot, auto_window):
    window, engine = auto_window
    finished = _hold_mid_run(qtbot, window, engine)
    click_image(qtbot, window, 5, 5, Qt.MouseButton.RightButton)
    key(qtbot, window, Qt.Key.Key_Escape)
    assert not window.controller.auto_running and not window.auto_box.isVisible()
    assert len(window.session.prompts.points) == 1  # Esc cancelled the run, not the prompts
    engine.gate.set()
    qtbot.waitUntil(lambda: len(finished) == 1)
    assert finished[0].cancelled and window.proposals is None


def test_switching_images_mid_run_drops_the_result(qtbot, auto_window):
    window, engine = auto_window
    finished = _hold_mid_run(qtbot, window, engine)
    key(qtbot, window, Qt.Key.Key_N)
    assert window.current_index == 1
    assert not window.auto_box.isVisible() and not window.controller.auto_running
    engine.gate.set()
    qtbot.waitUntil(lambda: len(finished) == 1)
    assert finished[0].cancelled  # navigation stopped the work itself, not just its display
    wait_ready(qtbot, window)
    qtbot.wait(50)
    assert window.proposals is None and window.canvas._proposals is None
    # Ctrl+E on the new image proposes masks of the new image.
    window.settings.auto_mask_settings = PERMISSIVE
    _run(qtbot, window)
    assert window.proposals.items
    assert all(p.image_size == (100, 140) for p in window.proposals.items)


def test_a_second_ctrl_e_while_running_is_ignored(qtbot, auto_window):
    window, engine = auto_window
    finished = _hold_mid_run(qtbot, window, engine)
    assert window.segment_everything() is False
    assert "already running" in window.statusBar().currentMessage()
    engine.gate.set()
    qtbot.waitUntil(lambda: window.proposals is not None and len(finished) == 1)
    assert not finished[0].cancelled  # the first run went on to the end
    assert window.proposals.items


def test_classic_engine_says_segment_everything_needs_sam(qtbot, make_window):
    from annotator.engines.classic import ClassicEngine

    window = make_window(ClassicEngine())
    wait_ready(qtbot, window)
    key(qtbot, window, Qt.Key.Key_E, CTRL)
    assert "needs a SAM model" in window.statusBar().currentMessage()
    assert not window.controller.auto_running and not window.auto_box.isVisible()
    assert window.proposals is None
    # The worker refuses it too, with the same sentence, should a job reach it.
    finished = []
    window.controller.auto_finished.connect(finished.append)
    window.controller.request_auto_masks(PERMISSIVE)
    qtbot.waitUntil(lambda: len(finished) == 1)
    assert "needs a SAM model" in finished[0].message


def test_settings_dialog_defaults_validation_and_memory(qtbot, make_window, tiny_engine):
    from PySide6.QtWidgets import QDialogButtonBox

    from annotator.qt.settings import Settings

    window = make_window(AutoEngine(tiny_engine))
    defaults = AutoMaskSettings()
    assert window.settings.auto_mask_settings == defaults
    dialog = window.edit_auto_mask_settings()
    assert {name: spin.value() for name, spin in dialog.spins.items()} == {
        name: pytest.approx(getattr(defaults, name)) for name in dialog.spins
    }
    dialog.spins["points_per_side"].setValue(8)
    dialog.spins["pred_iou_thresh"].setValue(0.5)
    dialog.spins["stability_score_thresh"].setValue(0.7)
    dialog.spins["crop_n_layers"].setValue(1)
    dialog.spins["min_mask_region_area"].setValue(25)
    dialog.button_box.button(QDialogButtonBox.StandardButton.Ok).click()
    remembered = Settings().auto_mask_settings  # read back from the INI file
    assert (remembered.points_per_side, remembered.crop_n_layers) == (8, 1)
    assert (remembered.pred_iou_thresh, remembered.stability_score_thresh) == (0.5, 0.7)
    assert remembered.min_mask_region_area == 25
    assert remembered.box_nms_thresh == defaults.box_nms_thresh  # not in the dialog: kept

    # Out-of-range values are refused with checked()'s sentence and the dialog stays open.
    dialog = window.edit_auto_mask_settings()
    dialog._base = AutoMaskSettings(box_nms_thresh=3.0)
    dialog.button_box.button(QDialogButtonBox.StandardButton.Ok).click()
    assert dialog.isVisible() and "box_nms_thresh" in dialog.error_label.text()
    dialog.button_box.button(QDialogButtonBox.StandardButton.RestoreDefaults).click()
    assert dialog.spins["points_per_side"].value() == defaults.points_per_side
    dialog.reject()
    # A hand-edited, unreadable value falls back to the default.
    window.settings.qsettings.setValue("segment_everything/points_per_side", "many")
    assert window.settings.auto_mask_settings.points_per_side == defaults.points_per_side


def test_shortcut_sheet_and_menu_list_the_new_actions(qtbot, make_window, tiny_engine):
    window = make_window(AutoEngine(tiny_engine))
    text = window.show_shortcuts().browser.toPlainText()
    assert "Segment Everything" in text and "Accept All Proposals" in text
    assert "Ctrl+Shift+E" in text and "Left click on a proposal" in text
    menu_texts = [a.text() for menu in window.menuBar().actions() for a in menu.menu().actions()]
    assert "Segment Everything Se&ttings…" in menu_texts


def test_the_window_opens_a_project_written_by_annotator_auto(
    qtbot, make_window, tiny_engine, tiny_sam_checkpoint, image_folder, tmp_path
):
    from annotator.cli.auto_cmd import run_auto
    from annotator.core.session import AnnotationSession

    out = tmp_path / "auto.json"
    report = run_auto(image_folder, tiny_sam_checkpoint, out, PERMISSIVE, engine=tiny_engine)
    assert report.proposals > 0
    project = AnnotationSession.open(out, take_lock=False, journal=False)[0].project
    window = make_window(AutoEngine(tiny_engine), project)
    wait_ready(qtbot, window)
    annotations = _annotations(window)
    assert len(annotations) > 0 and window.project.images[0].done
    assert {item.key for item in window.canvas._items} == {a.id for a in annotations}
    assert window.annotation_panel.tree.topLevelItemCount() == len(annotations)
    image = _current_image(window)
    direct = _direct_proposals(tiny_engine, window)
    assert len(annotations) == len(direct)
    for annotation, proposal in zip(annotations, direct, strict=True):
        assert annotation.mask().shape == image.shape[:2]
        np.testing.assert_array_equal(annotation.mask(), proposal.mask)


def test_closing_during_a_run_ends_cleanly(qtbot, auto_window):
    import threading

    window, engine = auto_window
    encodes_before = len(engine.encoded_shapes)
    _hold_mid_run(qtbot, window, engine)
    opener = threading.Timer(0.3, engine.gate.set)  # the crop encoding ends after close starts
    opener.start()
    window.close()
    opener.join()
    assert not window.isVisible() and window.controller.thread.isFinished()
    # Closing cancelled the run: it stopped after the crop in progress, not after all 4.
    assert len(engine.encoded_shapes) == encodes_before + 1
