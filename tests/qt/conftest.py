"""Fixtures for the window tests: the tiny random-weight SAM, engines that can be held, windows.

Every window here runs the real worker thread with the real SAM engine (small random weights,
loaded through `load_sam`); wrappers only add observation (recorded decode requests) or a gate
that holds `encode` until the test releases it, so "mid-embedding" is a state, not a race.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

IMAGE_SIZES = ((160, 120), (140, 100), (120, 90))  # (width, height)


@pytest.fixture(scope="session")
def tiny_engine(tiny_sam_checkpoint):
    """The tiny SAM as the window loads it (torch decoder: exact and no ONNX export per test)."""
    from annotator.engines.sam import load_sam

    return load_sam(tiny_sam_checkpoint, device="cpu", decoder="torch")


class RecordingEngine:
    """Delegates to a real engine; records every decode request; `gate` can hold `encode`."""

    def __init__(self, engine, repeat_encode: int = 1) -> None:
        self.engine = engine
        self.name, self.device, self.fingerprint = engine.name, engine.device, engine.fingerprint
        self.decoded_prompts = []
        self.encoded_shapes = []
        self.gate = threading.Event()
        self.gate.set()
        self.encoding = threading.Event()  # set while encode runs
        self.decode_gate = threading.Event()
        self.decode_gate.set()
        self.decoding = threading.Event()  # set while decode runs
        self.repeat_encode = repeat_encode  # real torch work, to make an embedding last

    def encode(self, image):
        self.encoding.set()
        try:
            if not self.gate.wait(timeout=30):
                raise RuntimeError("test gate never opened")
            for _ in range(self.repeat_encode):
                embedding = self.engine.encode(image)
            self.encoded_shapes.append(image.shape)
            return embedding
        finally:
            self.encoding.clear()

    def decode(self, embedding, prompts):
        self.decoding.set()
        try:
            if not self.decode_gate.wait(timeout=30):
                raise RuntimeError("test gate never opened")
            self.decoded_prompts.append(prompts)
            return self.engine.decode(embedding, prompts)
        finally:
            self.decoding.clear()


@pytest.fixture
def recording_engine(tiny_engine):
    return RecordingEngine(tiny_engine)


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """Three small images with structure (so masks differ), in natural order."""
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(7)
    for index, (width, height) in enumerate(IMAGE_SIZES):
        yy, xx = np.mgrid[0:height, 0:width]
        image = np.zeros((height, width, 3), np.uint8)
        image[..., 0] = (xx * 255 // width).astype(np.uint8)
        image[..., 1] = (yy * 255 // height).astype(np.uint8)
        disk = (xx - width / 2) ** 2 + (yy - height / 2) ** 2 < (height / 3) ** 2
        image[disk] = (240, 240, 40 * index)
        image = np.clip(image + rng.integers(0, 20, image.shape), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(folder / f"img{index + 1}.png")
    return folder


@pytest.fixture
def make_window(qtbot, image_folder):
    """make_window(engine) -> a shown MainWindow on a new project of `image_folder`."""
    from PySide6.QtWidgets import QApplication

    from annotator.core.project import Project
    from annotator.qt.inference import EngineSpec, InferenceWorker
    from annotator.qt.main_window import MainWindow

    windows = []

    def make(engine, project=None):
        project = project or Project.from_folder(image_folder)
        worker = InferenceWorker(engine_loader=lambda spec: engine, cache_factory=None)
        window = MainWindow(project, EngineSpec("tiny.pth"), worker=worker)
        # Not qtbot.addWidget: qtbot closes its widgets before fixtures tear down, and a window
        # with unsaved changes would ask (modal) first. Closed below, marked clean.
        window.resize(1000, 700)
        window.show()
        qtbot.waitExposed(window)
        window.activateWindow()
        # Window shortcuts (Tab, Enter, Ctrl+S...) go to the active window only.
        qtbot.waitUntil(lambda: QApplication.activeWindow() is window)
        window.start_inference()
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.session.stack.set_clean()  # no "unsaved changes" question at teardown
        window.session._base_unsaved = False
        window.close()
        window.controller.shutdown()  # joined even if a test left the window open
        window.deleteLater()


def wait_ready(qtbot, window, timeout=20000) -> None:
    """Until the current image is shown and its embedding is ready."""
    qtbot.waitUntil(
        lambda: window.display is not None and window.controller.embedding_ready, timeout=timeout
    )


def click_image(qtbot, window, x: float, y: float, button=None) -> None:
    """A real mouse click on the canvas at image coordinate (x, y)."""
    from PySide6.QtCore import Qt
    from PySide6.QtTest import QTest

    point = window.canvas.image_to_widget(x, y).toPoint()
    QTest.mouseClick(window.canvas, button or Qt.MouseButton.LeftButton, pos=point)


def key(qtbot, window, key_code, modifier=None) -> None:
    from PySide6.QtCore import Qt

    qtbot.keyClick(window.canvas, key_code, modifier or Qt.KeyboardModifier.NoModifier)
