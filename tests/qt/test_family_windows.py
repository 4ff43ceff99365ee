"""The window with each other SAM family's random-weight checkpoint, loaded the way the app loads
it (EngineSpec -> default_engine_loader -> the families registry, --model-type auto): a click
shows the engine's mask, Enter saves it."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from annotator.engines.base import Prompts

from .conftest import click_image, wait_ready

FAMILIES = ["mobilesam", "hq_tiny", "sam2.1", "efficientvit", "hf", "hf_hq", "hf_sam2"]


@pytest.mark.parametrize("name", FAMILIES)
def test_click_and_enter_with_each_family(
    name, qtbot, image_folder, family_checkpoint, monkeypatch, shared_model_cache
):
    from PySide6.QtWidgets import QApplication

    from annotator.core.images import load_image
    from annotator.core.project import Project
    from annotator.engines import families
    from annotator.qt.inference import EngineSpec, InferenceWorker, default_engine_loader
    from annotator.qt.main_window import MainWindow

    monkeypatch.setenv("ANNOTATOR_CACHE_DIR", str(shared_model_cache))
    path, _ = family_checkpoint(name)
    loaded = []

    def loader(spec):
        loaded.append(default_engine_loader(spec))
        return loaded[-1]

    worker = InferenceWorker(engine_loader=loader, cache_factory=None)
    window = MainWindow(Project.from_folder(image_folder), EngineSpec(str(path)), worker=worker)
    try:
        window.resize(1000, 700)
        window.show()
        qtbot.waitExposed(window)
        window.activateWindow()
        qtbot.waitUntil(lambda: QApplication.activeWindow() is window)
        window.start_inference()
        wait_ready(qtbot, window, timeout=60000)
        (engine,) = loaded
        assert engine.family == families.inspect_checkpoint(path).family
        click_image(qtbot, window, 80, 60)
        qtbot.waitUntil(lambda: window.session.prediction is not None, timeout=30000)
        ((x, y),) = window.session.points
        image = load_image(window.project.image_path(window.current_record()))
        expected = engine.decode(
            engine.encode(image),
            Prompts(np.array([[x, y]], np.float32), np.array([1], np.int32), multimask=True),
        )
        np.testing.assert_array_equal(window.session.mask(), expected.masks[expected.best_index()])
        qtbot.keyClick(window, Qt.Key.Key_Tab)  # cycles (or stays, with one candidate)
        shown = window.session.mask().copy()
        qtbot.keyClick(window, Qt.Key.Key_Return)
        annotations = window.project.annotations_of(window.current_record().id)
        if shown.any():  # random weights may answer an empty mask, which Enter does not keep
            (annotation,) = annotations
            np.testing.assert_array_equal(annotation.mask(), shown)
        else:
            assert annotations == []
    finally:
        window.stack.set_clean()
        window._restored_unsaved = False
        window.close()
        window.controller.shutdown()
        window.deleteLater()
