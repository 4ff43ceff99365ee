"""The window's cache reads through the shared embedding store: an image whose embedding a batch
run put there opens without being encoded, and the status bar says where it came from; the
window does not write to the store unless the setting allows it."""

from __future__ import annotations

import pytest

from annotator.engines import batch
from annotator.engines.cache import EmbeddingCache, image_key
from annotator.engines.store import EmbeddingStore
from tests.qt.conftest import RecordingEngine, wait_ready

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def window_reading_store(qtbot, image_folder):
    """window(engine) -> a shown MainWindow whose worker builds the default (store-reading)
    cache, on a new project of `image_folder`."""
    from annotator.core.project import Project
    from annotator.qt.inference import EngineSpec, InferenceWorker
    from annotator.qt.main_window import MainWindow

    windows = []

    def make(engine):
        worker = InferenceWorker(engine_loader=lambda spec: engine)  # the default cache factory
        window = MainWindow(
            Project.from_folder(image_folder), EngineSpec("tiny.pth"), worker=worker
        )
        window.resize(1000, 700)
        window.show()
        qtbot.waitExposed(window)
        window.start_inference()
        windows.append(window)
        return window

    yield make
    for window in windows:
        window.session.stack.set_clean()
        window.session._base_unsaved = False
        window.close()
        window.controller.shutdown()
        window.deleteLater()


def _fill_store(store: EmbeddingStore, engine, paths) -> None:
    for path in paths:  # what `annotator embed --store` does per image
        assert batch.embed_into_store(engine, path, store) == batch.ENCODED


def test_the_window_opens_an_image_from_the_store_without_encoding(
    qtbot, window_reading_store, tiny_engine, image_folder, tmp_path, monkeypatch
):
    store = EmbeddingStore(tmp_path / "shared-store")
    _fill_store(store, tiny_engine, [image_folder / "img1.png"])
    monkeypatch.setenv("ANNOTATOR_EMBEDDING_STORE", store.location)
    engine = RecordingEngine(tiny_engine)
    window = window_reading_store(engine)
    wait_ready(qtbot, window)
    assert engine.encoded_shapes == []  # not computed
    assert window.state_label.text() == "Embedding ready (from the shared store)"
    from annotator.core.images import load_image

    image = load_image(image_folder / "img1.png")
    assert EmbeddingCache().get(image, tiny_engine.fingerprint) is not None  # copied locally


def test_the_store_setting_is_read_only_unless_contributing(
    qtbot, window_reading_store, tiny_engine, image_folder, tmp_path, monkeypatch
):
    from annotator.core.images import load_image
    from annotator.qt.settings import Settings

    monkeypatch.delenv("ANNOTATOR_EMBEDDING_STORE", raising=False)
    store = EmbeddingStore(tmp_path / "shared-store")
    _fill_store(store, tiny_engine, [image_folder / "img2.png"])  # not the first image
    settings = Settings()
    settings.embedding_store = store.location
    settings.sync()
    engine = RecordingEngine(tiny_engine)
    window = window_reading_store(engine)
    wait_ready(qtbot, window)  # img1: not in the store, computed
    assert engine.encoded_shapes[0] == (120, 160, 3)
    assert window.state_label.text() == "Embedding ready"
    key = image_key(load_image(image_folder / "img1.png"), tiny_engine.fingerprint)
    assert not store.contains(key)  # read only: the window did not write it
    window.go_to(1)
    wait_ready(qtbot, window)
    assert (100, 140, 3) not in engine.encoded_shapes  # img2 (maybe prefetched) never encoded
    assert window.state_label.text() == "Embedding ready (from the shared store)"


def test_a_contributing_window_writes_what_it_computes(
    qtbot, window_reading_store, tiny_engine, image_folder, tmp_path, monkeypatch
):
    from annotator.core.images import load_image
    from annotator.qt.settings import Settings

    store = EmbeddingStore(tmp_path / "shared-store")
    monkeypatch.setenv("ANNOTATOR_EMBEDDING_STORE", store.location)
    settings = Settings()
    settings.embedding_store_contribute = True
    settings.sync()
    window = window_reading_store(RecordingEngine(tiny_engine))
    wait_ready(qtbot, window)
    key = image_key(load_image(image_folder / "img1.png"), tiny_engine.fingerprint)
    assert store.get_by_key(key, tiny_engine.fingerprint) is not None
