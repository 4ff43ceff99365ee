"""The window with each other SAM family's random-weight checkpoint, loaded the way the app loads
it (EngineSpec -> default_engine_loader -> the families registry, --model-type auto): a click
shows the engine's mask, Tab cycles the candidates it has, Enter saves the shown one."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from annotator.engines.base import Prompts
from tests.qt.conftest import click_image, key, wait_ready

pytestmark = pytest.mark.timeout(180)

FAMILIES = ["mobilesam", "hq_tiny", "sam2.1", "efficientvit", "hf", "hf_hq", "hf_sam2"]


@pytest.mark.parametrize("name", FAMILIES)
def test_click_and_enter_with_each_family(
    name, qtbot, make_window, family_checkpoint, monkeypatch, shared_model_cache
):
    from annotator.core.images import load_image
    from annotator.engines import families
    from annotator.qt.inference import EngineSpec, default_engine_loader

    monkeypatch.setenv("ANNOTATOR_CACHE_DIR", str(shared_model_cache))
    path, _ = family_checkpoint(name)
    engine = default_engine_loader(EngineSpec(str(path)))  # what the window's worker runs
    assert engine.family == families.inspect_checkpoint(path).family
    window = make_window(engine)
    wait_ready(qtbot, window, timeout=60000)
    click_image(qtbot, window, 80, 60)
    prompts = window.session.prompts
    qtbot.waitUntil(lambda: not prompts.pending and prompts.mask() is not None, timeout=30000)
    ((x, y),) = prompts.points
    image = load_image(window.project.image_path(window.current_record()))
    expected = engine.decode(
        engine.encode(image),
        Prompts(np.array([[x, y]], np.float32), np.array([1], np.int32), multimask=True),
    )
    np.testing.assert_array_equal(prompts.mask(), expected.masks[expected.best_index()])
    key(qtbot, window, Qt.Key.Key_Tab)  # cycles (or stays, with one candidate: SAM-HQ)
    shown = np.array(prompts.mask(), copy=True)
    key(qtbot, window, Qt.Key.Key_Return)
    annotations = window.project.annotations_of(window.current_record().id)
    if shown.any():  # random weights may answer an empty mask, which Enter does not keep
        (annotation,) = annotations
        np.testing.assert_array_equal(annotation.mask(), shown)
    else:
        assert annotations == []


def test_segment_everything_says_which_families_can():
    from annotator.engines.classic import ClassicEngine
    from annotator.qt.inference import NEEDS_SAM, needs_sam_message

    assert needs_sam_message(ClassicEngine.name) == NEEDS_SAM
    message = needs_sam_message("SAM (transformers) (cpu)")
    assert message.startswith("SAM (transformers) (cpu) cannot segment everything yet;")
    assert "SAM 2, SAM-HQ" in message and message.endswith("(Ctrl+M).")


@pytest.mark.parametrize("name", ["sam2.1", "hq_tiny", "hf_sam2"])
def test_ctrl_e_with_each_family(name, qtbot, make_window, family_checkpoint, monkeypatch):
    """Ctrl+E proposes what generate_proposals returns for SAM 2 and SAM-HQ (the worker passes
    the current image's embedding); the transformers layout says it cannot, in the status bar."""
    from sam_factory import PERMISSIVE_AUTO_SETTINGS

    from annotator.core.images import load_image
    from annotator.engines.automatic import AutoMaskSettings, generate_proposals
    from annotator.qt.inference import EngineSpec, default_engine_loader, needs_sam_message

    monkeypatch.setattr("annotator.qt.main_window.PREFETCH_AHEAD", 0)
    path, _ = family_checkpoint(name)
    engine = default_engine_loader(EngineSpec(str(path)))
    window = make_window(engine)
    settings = AutoMaskSettings(**{**PERMISSIVE_AUTO_SETTINGS, "points_per_side": 2})
    window.settings.auto_mask_settings = settings
    wait_ready(qtbot, window, timeout=60000)
    key(qtbot, window, Qt.Key.Key_E, Qt.KeyboardModifier.ControlModifier)
    if name == "hf_sam2":
        assert window.proposals is None and not window.controller.auto_running
        assert window.statusBar().currentMessage() == needs_sam_message(engine.name)
        return
    qtbot.waitUntil(
        lambda: window.proposals is not None and not window.controller.auto_running,
        timeout=60000,
    )
    image = load_image(window.project.image_path(window.current_record()))
    expected = [p for p in generate_proposals(engine, image, settings) if p.mask.any()]
    shown = window.proposals.items
    assert len(shown) == len(expected) > 0
    for compact, direct in zip(shown, expected, strict=True):
        np.testing.assert_array_equal(compact.mask(), direct.mask)
        assert compact.predicted_iou == pytest.approx(direct.predicted_iou, abs=1e-6)
