"""Image embeddings on disk, so an image is encoded once per model, ever.

An entry is keyed by the image's pixels (as `core.images.load_image` returns them), the engine's
model fingerprint and `PREPROCESS_VERSION`; it is one uncompressed .npz file (features 4 MB for
SAM). The folder is bounded in size: each `put` evicts the least recently used entries (by file
modification time, refreshed on every hit) until the total is under `max_bytes`.

Several processes (the app, `annotator embed`) may share the folder: entries are written under a
temporary name and renamed into place, so a reader sees a whole file or none; a file that cannot be
read or does not describe the image asked for is deleted and reported as a miss, never raised.

With a shared `EmbeddingStore` (`store.py`: a folder or fsspec URL that `annotator embed --store`
fills), a local miss looks there before computing: a valid entry is copied into this folder (so
the LRU bound and later hits work as for any entry); a corrupt or foreign one is ignored, never
trusted. The store is read-only unless `contribute` is set, then computed embeddings go there too.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import time
from pathlib import Path

import numpy as np

from annotator.core.atomic import atomic_writer
from annotator.engines.base import Embedding

logger = logging.getLogger(__name__)

# Bump when the pixels -> model-input preprocessing changes for every engine: old entries then
# stop matching (and age out by LRU).
PREPROCESS_VERSION = 1
DEFAULT_MAX_BYTES = 2 * 1024**3
ENTRY_SUFFIX = ".npz"
_TMP_SUFFIX = ".tmp"
_STALE_TMP_SECONDS = 3600  # a temp file this old was left by a crashed writer

# Where `encode_with_source` found an embedding.
COMPUTED, FROM_CACHE, FROM_STORE = "computed", "cache", "store"


def image_key(image: np.ndarray, fingerprint: str) -> str:
    """Hex blake2b of the pixels, their shape and dtype, the model fingerprint and the version."""
    digest = hashlib.blake2b(digest_size=20)
    digest.update(f"v{PREPROCESS_VERSION}|{fingerprint}|{image.shape}|{image.dtype.str}|".encode())
    digest.update(memoryview(np.ascontiguousarray(image)).cast("B"))
    return digest.hexdigest()


class EmbeddingCache:
    """A folder of embeddings, bounded to `max_bytes` with least-recently-used eviction."""

    def __init__(
        self,
        root: Path | None = None,
        max_bytes: int = DEFAULT_MAX_BYTES,
        *,
        store=None,
        contribute: bool = False,
    ) -> None:
        """store: an `EmbeddingStore` read through on a local miss (None: none). contribute:
        also write computed embeddings to the store."""
        if root is None:
            from annotator import paths

            root = paths.cache_dir() / "embeddings"
        self.root = Path(root)
        self.max_bytes = int(max_bytes)
        self.store = store
        self.contribute = bool(contribute) and store is not None

    def key(self, image: np.ndarray, fingerprint: str) -> str:
        return image_key(image, fingerprint)

    def path_for(self, key: str) -> Path:
        return self.root / f"{key}{ENTRY_SUFFIX}"

    # -- reading ----------------------------------------------------------------------------

    def get(self, image: np.ndarray, fingerprint: str) -> Embedding | None:
        """The cached embedding of `image` (HxWx3 uint8) for the model `fingerprint`, or None."""
        return self.get_by_key(self.key(image, fingerprint), fingerprint, image.shape[:2])

    def get_by_key(
        self, key: str, fingerprint: str, original_size: tuple[int, int] | None = None
    ) -> Embedding | None:
        path = self.path_for(key)
        try:
            embedding = _read_entry(path)
        except FileNotFoundError:
            return None
        except Exception:  # truncated, not an npz, missing fields: not ours any more
            logger.warning("Dropping the unreadable cache entry %s", path, exc_info=True)
            _remove(path)
            return None
        if embedding.fingerprint != fingerprint or (
            original_size is not None and embedding.original_size != tuple(original_size)
        ):
            _remove(path)  # a foreign entry under our name
            return None
        _touch(path)
        return embedding

    def contains(self, image: np.ndarray, fingerprint: str) -> bool:
        """Whether an entry exists (without reading or validating it)."""
        return self.path_for(self.key(image, fingerprint)).is_file()

    # -- writing ----------------------------------------------------------------------------

    def put(self, image: np.ndarray, embedding: Embedding) -> Path | None:
        """Store `embedding` of `image`; returns the entry's path (None if it cannot be cached).

        Features that are not a numeric numpy array (an engine's private object) are not cached.
        Write errors (disk full, read-only folder) are swallowed: the cache is an optimisation.
        """
        features = embedding.features
        if not isinstance(features, np.ndarray) or features.dtype == object:
            return None
        path = self.path_for(self.key(image, embedding.fingerprint))
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            _write_entry(path, embedding)
        except OSError:
            logger.warning("Could not write the cache entry %s", path, exc_info=True)
            return None
        self.evict()
        return path if path.exists() else None

    def evict(self) -> int:
        """Delete least recently used entries until the folder holds at most max_bytes.

        Returns the number of entries deleted. Also removes temp files of crashed writers.
        """
        entries = []
        now = time.time()
        try:
            scan = list(os.scandir(self.root))
        except OSError:
            logger.debug("Cannot list the cache folder %s", self.root, exc_info=True)
            return 0
        for item in scan:
            try:
                stat = item.stat()
            except OSError:  # deleted by another process meanwhile
                continue
            if item.name.endswith(_TMP_SUFFIX):
                if now - stat.st_mtime > _STALE_TMP_SECONDS:
                    _remove(Path(item.path))
            elif item.name.endswith(ENTRY_SUFFIX):
                entries.append((stat.st_mtime_ns, stat.st_size, Path(item.path)))
        total = sum(size for _, size, _ in entries)
        removed = 0
        for _, size, path in sorted(entries, key=lambda e: e[0]):
            if total <= self.max_bytes:
                break
            _remove(path)
            total -= size
            removed += 1
        return removed

    def total_bytes(self) -> int:
        if not self.root.is_dir():
            return 0
        return sum(p.stat().st_size for p in self.root.glob(f"*{ENTRY_SUFFIX}"))

    # -- the one call engines' users need ---------------------------------------------------

    def encode_cached(self, engine, image: np.ndarray) -> tuple[Embedding, bool]:
        """(embedding of `image` by `engine`, True if it came from the cache or the store).

        Engines whose `cacheable` attribute is False (the classic engine) are not cached.
        """
        embedding, source = self.encode_with_source(engine, image)
        return embedding, source != COMPUTED

    def encode_with_source(self, engine, image: np.ndarray) -> tuple[Embedding, str]:
        """(embedding of `image` by `engine`, where it came from: FROM_CACHE, FROM_STORE or
        COMPUTED). A store hit is copied into this cache; with `contribute`, a computed
        embedding is also written to the store."""
        if not getattr(engine, "cacheable", True):
            return engine.encode(image), COMPUTED
        key = self.key(image, engine.fingerprint)
        cached = self.get_by_key(key, engine.fingerprint, image.shape[:2])
        if cached is not None:
            return cached, FROM_CACHE
        if self.store is not None:
            stored = self.store.get_by_key(key, engine.fingerprint, image.shape[:2])
            if stored is not None:
                self.put(image, stored)
                return stored, FROM_STORE
        embedding = engine.encode(image)
        self.put(image, embedding)
        if self.contribute:
            from annotator.errors import UserError

            try:
                self.store.put(key, embedding)
            except UserError as exc:  # the store is an optimisation here, as the cache is
                logger.warning("%s", exc)
        return embedding, COMPUTED


def _write_entry(path: Path, embedding: Embedding) -> None:
    # Not durable (no fsync): after a power cut a torn entry is detected on read and recomputed.
    with atomic_writer(path, durable=False) as out:
        write_entry_to(out, embedding)


def write_entry_to(out, embedding: Embedding) -> None:
    """Write `embedding` as one entry (an uncompressed .npz) to the binary stream `out`."""
    np.savez(
        out,
        features=np.ascontiguousarray(embedding.features),
        original_size=np.asarray(embedding.original_size, np.int64),
        input_size=np.asarray(embedding.input_size, np.int64),
        fingerprint=np.asarray(embedding.fingerprint),
        version=np.asarray(PREPROCESS_VERSION, np.int64),
    )


def entry_bytes(embedding: Embedding) -> bytes:
    buffer = io.BytesIO()
    write_entry_to(buffer, embedding)
    return buffer.getvalue()


def _read_entry(path: Path) -> Embedding:
    with open(path, "rb") as handle:
        return read_entry_from(handle)


def read_entry_from(handle) -> Embedding:
    """The Embedding of one entry read from a seekable binary stream; raises on anything else."""
    with np.load(handle, allow_pickle=False) as data:
        if int(data["version"]) != PREPROCESS_VERSION:
            raise ValueError("entry of another preprocessing version")
        original_size = tuple(int(v) for v in data["original_size"])
        input_size = tuple(int(v) for v in data["input_size"])
        if len(original_size) != 2 or len(input_size) != 2:
            raise ValueError("malformed sizes")
        return Embedding(
            original_size=original_size,
            input_size=input_size,
            features=data["features"],
            fingerprint=str(data["fingerprint"]),
        )


def _touch(path: Path) -> None:
    try:
        os.utime(path)
    except OSError:
        pass


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except OSError:  # already gone (another process), or held open on Windows
        logger.debug("Could not remove %s", path, exc_info=True)
