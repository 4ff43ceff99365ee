"""The embedding cache: keys, round trip, LRU bound, corrupt and foreign entries, sharing."""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

from annotator.engines import cache as cache_module
from annotator.engines.base import Embedding
from annotator.engines.cache import EmbeddingCache


def _image(seed: int, shape=(64, 48, 3)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _embedding(image: np.ndarray, fingerprint: str = "model-a", seed: int = 0) -> Embedding:
    features = np.random.default_rng(seed).standard_normal((1, 8, 4, 4)).astype(np.float32)
    return Embedding(image.shape[:2], (32, 24), features, fingerprint)


class CountingEngine:
    """A stand-in Segmenter that counts encodes."""

    name, device, fingerprint = "counting", "cpu", "counting-v1"

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, image):
        self.calls += 1
        return _embedding(image, self.fingerprint, seed=self.calls)


def test_round_trip(tmp_path):
    cache = EmbeddingCache(tmp_path)
    image = _image(1)
    stored = _embedding(image)
    assert cache.get(image, "model-a") is None
    assert cache.put(image, stored) is not None
    loaded = cache.get(image, "model-a")
    assert loaded is not None
    assert loaded.original_size == stored.original_size and loaded.input_size == (32, 24)
    assert loaded.fingerprint == "model-a"
    assert loaded.features.dtype == np.float32
    np.testing.assert_array_equal(loaded.features, stored.features)


def test_key_depends_on_pixels_shape_fingerprint_and_version(monkeypatch):
    image = _image(2)
    changed = image.copy()
    changed[10, 10, 0] ^= 1
    reshaped = image.reshape(48, 64, 3)  # same bytes, other shape
    keys = {
        cache_module.image_key(image, "a"),
        cache_module.image_key(changed, "a"),
        cache_module.image_key(reshaped, "a"),
        cache_module.image_key(image, "b"),
    }
    assert len(keys) == 4
    assert cache_module.image_key(image.copy(), "a") == cache_module.image_key(image, "a")
    before = cache_module.image_key(image, "a")
    monkeypatch.setattr(cache_module, "PREPROCESS_VERSION", cache_module.PREPROCESS_VERSION + 1)
    assert cache_module.image_key(image, "a") != before


def test_other_model_or_other_image_misses(tmp_path):
    cache = EmbeddingCache(tmp_path)
    image = _image(3)
    cache.put(image, _embedding(image, "model-a"))
    assert cache.get(image, "model-b") is None
    assert cache.get(_image(4), "model-a") is None
    assert cache.get(image, "model-a") is not None


def test_encode_cached_encodes_once(tmp_path):
    cache, engine, image = EmbeddingCache(tmp_path), CountingEngine(), _image(5)
    first, hit_first = cache.encode_cached(engine, image)
    second, hit_second = cache.encode_cached(engine, image)
    assert (hit_first, hit_second) == (False, True)
    assert engine.calls == 1
    np.testing.assert_array_equal(first.features, second.features)


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.write_bytes(b""),
        lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
        lambda p: p.write_bytes(b"not a numpy file at all" * 10),
        lambda p: np.savez(open(p, "wb"), something_else=np.zeros(3)),
        lambda p: np.save(open(p, "wb"), np.array([object()], dtype=object), allow_pickle=True),
    ],
    ids=["empty", "truncated", "garbage", "other-npz", "pickle"],
)
def test_corrupt_entry_is_a_miss_and_is_recomputed(tmp_path, damage):
    cache, engine, image = EmbeddingCache(tmp_path), CountingEngine(), _image(6)
    cache.encode_cached(engine, image)
    path = cache.path_for(cache.key(image, engine.fingerprint))
    damage(path)
    assert cache.get(image, engine.fingerprint) is None
    assert not path.exists()
    embedding, hit = cache.encode_cached(engine, image)
    assert not hit and engine.calls == 2
    assert cache.get(image, engine.fingerprint) is not None


def test_foreign_entry_under_our_key_is_a_miss(tmp_path):
    cache, image = EmbeddingCache(tmp_path), _image(7)
    other = cache.put(image, _embedding(image, "model-a"))
    ours = cache.path_for(cache.key(image, "model-b"))
    os.replace(other, ours)  # an entry of another model under model-b's name
    assert cache.get(image, "model-b") is None
    assert not ours.exists()


def test_entry_for_another_image_size_is_a_miss(tmp_path):
    cache, image = EmbeddingCache(tmp_path), _image(8)
    wrong = Embedding((10, 10), (32, 24), np.zeros((1, 2), np.float32), "model-a")
    cache.put(image, wrong)
    assert cache.get(image, "model-a") is None


def test_least_recently_used_entries_are_evicted(tmp_path):
    images = [_image(10 + i) for i in range(4)]
    probe = EmbeddingCache(tmp_path / "probe")
    entry_size = probe.put(images[0], _embedding(images[0])).stat().st_size
    cache = EmbeddingCache(tmp_path / "lru", max_bytes=3 * entry_size + entry_size // 2)
    paths = [cache.put(img, _embedding(img)) for img in images[:3]]
    now = time.time()
    for age, path in zip((300, 200, 100), paths, strict=True):  # 0 oldest, 2 newest
        os.utime(path, (now - age, now - age))
    assert cache.get(images[0], "model-a") is not None  # a hit makes 0 the most recent
    cache.put(images[3], _embedding(images[3]))
    assert not paths[1].exists()  # the least recently used went
    assert paths[0].exists() and paths[2].exists()
    assert cache.total_bytes() <= cache.max_bytes


def test_evict_removes_stale_temp_files_only(tmp_path):
    cache = EmbeddingCache(tmp_path)
    stale, fresh = tmp_path / "abc.1.tmp", tmp_path / "def.2.tmp"
    stale.write_bytes(b"x")
    fresh.write_bytes(b"y")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    cache.evict()
    assert not stale.exists() and fresh.exists()


def test_non_array_features_and_unwritable_folder_do_not_raise(tmp_path):
    image = _image(20)
    cache = EmbeddingCache(tmp_path)
    assert cache.put(image, Embedding((64, 48), (64, 48), object(), "x")) is None
    assert list(tmp_path.iterdir()) == []
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    assert EmbeddingCache(blocked / "embeddings").put(image, _embedding(image)) is None


def test_default_folder_follows_the_cache_dir_setting(tmp_path, monkeypatch):
    monkeypatch.setenv("ANNOTATOR_CACHE_DIR", str(tmp_path / "elsewhere"))
    cache = EmbeddingCache()
    assert cache.root == tmp_path / "elsewhere" / "embeddings"
    assert cache.max_bytes == 2 * 1024**3


def test_concurrent_writers_and_readers_never_see_half_an_entry(tmp_path):
    image = _image(30, shape=(256, 256, 3))
    big = Embedding((256, 256), (1024, 1024), np.full((1, 256, 64, 64), 1.5, np.float32), "model-a")

    def work(i: int) -> str:
        cache = EmbeddingCache(Path(tmp_path))  # one instance per "process"
        if i % 2:
            cache.put(image, big)
            return "put"
        got = cache.get(image, "model-a")
        if got is not None:
            assert got.features.shape == (1, 256, 64, 64) and float(got.features[0, 0, 0, 0]) == 1.5
            return "hit"
        return "miss"

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, range(40)))
    assert results.count("put") == 20
    assert EmbeddingCache(tmp_path).get(image, "model-a") is not None
    assert not list(tmp_path.glob("*.tmp"))


def test_engines_that_opt_out_are_not_cached(tmp_path):
    class Uncached(CountingEngine):
        cacheable = False

    cache, engine, image = EmbeddingCache(tmp_path), Uncached(), _image(40)
    assert cache.encode_cached(engine, image)[1] is False
    assert cache.encode_cached(engine, image)[1] is False
    assert engine.calls == 2 and not list(tmp_path.iterdir())
