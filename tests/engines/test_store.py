"""The shared embedding store: same keys and entries as the cache, read through on a local miss,
corrupt and foreign entries ignored (and left alone), read-only unless contributing, folders and
fsspec URLs alike, and one sentence for a store that cannot be written."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from annotator.engines.base import Embedding
from annotator.engines.cache import COMPUTED, FROM_CACHE, FROM_STORE, EmbeddingCache, image_key
from annotator.engines.store import EmbeddingStore, store_from_environment
from annotator.errors import UserError


def _image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (40, 56, 3), dtype=np.uint8)


class CountingEngine:
    name, device, fingerprint = "counting", "cpu", "counting-v1"

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, image):
        self.calls += 1
        features = np.random.default_rng(self.calls).standard_normal((1, 8, 4, 4))
        return Embedding(image.shape[:2], (32, 44), features.astype(np.float32), self.fingerprint)


@pytest.fixture(params=["folder", "memory"])
def store(request, tmp_path):
    if request.param == "folder":
        yield EmbeddingStore(tmp_path / "store")
        return
    pytest.importorskip("fsspec")
    location = f"memory://annotator-test-{os.getpid()}-{id(request)}/store"
    yield EmbeddingStore(location)
    import fsspec

    fs, root = fsspec.core.url_to_fs(location)
    if fs.exists(root):
        fs.rm(root, recursive=True)


def test_a_store_entry_is_a_cache_entry_under_the_same_key(store, tmp_path):
    engine, image = CountingEngine(), _image(1)
    embedding = engine.encode(image)
    key = image_key(image, engine.fingerprint)
    store.put(key, embedding)
    assert store.contains(key)
    cache = EmbeddingCache(tmp_path / "local")
    cache.path_for(key).parent.mkdir(parents=True)
    cache.path_for(key).write_bytes(store.read_bytes(key))  # copied as is
    loaded = cache.get(image, engine.fingerprint)
    assert loaded is not None
    np.testing.assert_array_equal(loaded.features, embedding.features)


def test_a_local_miss_reads_through_the_store_and_copies_the_hit(store, tmp_path):
    engine, image = CountingEngine(), _image(2)
    embedding = engine.encode(image)
    store.put(image_key(image, engine.fingerprint), embedding)
    cache = EmbeddingCache(tmp_path / "local", store=store)
    got, source = cache.encode_with_source(engine, image)
    assert source == FROM_STORE and engine.calls == 1  # not computed again
    np.testing.assert_array_equal(got.features, embedding.features)
    assert EmbeddingCache(tmp_path / "local").get(image, engine.fingerprint) is not None
    assert cache.encode_with_source(engine, image)[1] == FROM_CACHE


def test_corrupt_and_foreign_entries_are_recomputed_and_left_alone(store, tmp_path):
    engine = CountingEngine()
    torn, foreign = _image(3), _image(4)
    torn_key = image_key(torn, engine.fingerprint)
    store._write(store.entry_name(torn_key), b"PK\x03\x04 not a whole npz")
    other = Embedding((40, 56), (32, 44), np.zeros((1, 8, 4, 4), np.float32), "other-model")
    store.put(image_key(foreign, engine.fingerprint), other)
    cache = EmbeddingCache(tmp_path / "local", store=store)
    for image in (torn, foreign):
        got, source = cache.encode_with_source(engine, image)
        assert source == COMPUTED and got.fingerprint == engine.fingerprint
    assert engine.calls == 2
    assert store.read_bytes(torn_key).startswith(b"PK\x03\x04 not")  # a reader deletes nothing
    # Read-only: what was computed did not go to the store.
    assert store.get_by_key(torn_key, engine.fingerprint) is None


def test_a_contributing_cache_writes_what_it_computes(store, tmp_path):
    engine, image = CountingEngine(), _image(5)
    cache = EmbeddingCache(tmp_path / "local", store=store, contribute=True)
    computed, source = cache.encode_with_source(engine, image)
    assert source == COMPUTED
    stored = store.get_by_key(image_key(image, engine.fingerprint), engine.fingerprint, (40, 56))
    assert stored is not None
    np.testing.assert_array_equal(stored.features, computed.features)


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="needs POSIX, non-root")
def test_an_unwritable_store_is_one_sentence(tmp_path):
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        store = EmbeddingStore(folder)
        with pytest.raises(UserError, match="Cannot write to the embedding store"):
            store.check_writable()
        engine, image = CountingEngine(), _image(6)
        # Contributing to it is an optimisation: the embedding still comes back.
        cache = EmbeddingCache(tmp_path / "local", store=store, contribute=True)
        assert cache.encode_with_source(engine, image)[1] == COMPUTED
    finally:
        folder.chmod(0o700)


def test_a_store_that_is_a_file_cannot_be_written(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(UserError, match="Cannot write to the embedding store"):
        EmbeddingStore(blocker).check_writable()


def test_the_environment_names_the_store(monkeypatch, tmp_path):
    monkeypatch.delenv("ANNOTATOR_EMBEDDING_STORE", raising=False)
    assert store_from_environment() is None
    monkeypatch.setenv("ANNOTATOR_EMBEDDING_STORE", str(tmp_path / "shared"))
    assert store_from_environment().location == str(tmp_path / "shared")
