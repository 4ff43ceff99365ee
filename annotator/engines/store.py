"""The shared embedding store: embeddings that `annotator embed --store URL` computed, for everyone.

A store is a folder (a path, or a shared mount) or an fsspec URL (`s3://bucket/embeddings`,
`memory://...`): one entry per embedding, named and laid out exactly as an `EmbeddingCache`
entry (`<image_key>.npz`, the same key of pixels + model fingerprint + preprocessing version, the
same .npz fields), so an entry can be copied between the two as it is.

The store is never trusted: an entry that cannot be read, or that describes another model or
image size, is a miss (logged, left alone: the store is shared, and a reader may not delete what
a writer owns). Writes are whole or nothing: a folder entry is written under a temporary name and
renamed; an object store's single PUT is atomic by itself.

fsspec is imported only for a URL (`annotator[cluster]` installs it); a plain folder needs nothing.
"""

from __future__ import annotations

import io
import logging
import os
import uuid
from pathlib import Path

from annotator.core.images import is_url
from annotator.engines.base import Embedding
from annotator.engines.cache import ENTRY_SUFFIX, entry_bytes, read_entry_from
from annotator.errors import UserError

logger = logging.getLogger(__name__)

STORE_ENVIRONMENT_VARIABLE = "ANNOTATOR_EMBEDDING_STORE"


class EmbeddingStore:
    """A shared folder or object-store prefix of embedding cache entries."""

    def __init__(self, location: str | os.PathLike) -> None:
        text = str(location).strip()
        if not text:
            raise UserError("The embedding store location is empty.")
        if text.startswith("file://"):
            text = text[len("file://") :]
        self.location = text
        self._fs = None
        if is_url(text):
            try:
                import fsspec
            except ImportError:
                raise UserError(
                    f"The embedding store {text} is a URL, which needs fsspec: "
                    "pip install 'annotator[cluster]'."
                ) from None
            try:
                self._fs, self._root = fsspec.core.url_to_fs(text)
            except (ImportError, ValueError) as exc:
                raise UserError(f"Cannot use the embedding store {text}: {exc}.") from None
            self._root = self._root.rstrip("/")
        else:
            self._root = str(Path(text).expanduser())

    def __repr__(self) -> str:
        return f"EmbeddingStore({self.location!r})"

    def entry_name(self, key: str) -> str:
        return f"{self._root}/{key}{ENTRY_SUFFIX}"

    # -- reading ----------------------------------------------------------------------------

    def read_bytes(self, key: str) -> bytes | None:
        """The raw entry of `key`, or None when there is none (or it cannot be read)."""
        name = self.entry_name(key)
        try:
            if self._fs is None:
                return Path(name).read_bytes()
            return self._fs.cat_file(name)
        except FileNotFoundError:
            return None
        except Exception:  # permissions, network: a miss, the embedding is computed instead
            logger.warning("Cannot read the store entry %s", name, exc_info=True)
            return None

    def get_by_key(
        self, key: str, fingerprint: str, original_size: tuple[int, int] | None = None
    ) -> Embedding | None:
        """The stored embedding of `key` if it is whole and made by `fingerprint` for an image of
        `original_size`; else None."""
        data = self.read_bytes(key)
        if data is None:
            return None
        try:
            embedding = read_entry_from(io.BytesIO(data))
        except Exception:
            logger.warning("Ignoring the unreadable store entry %s", self.entry_name(key))
            return None
        if embedding.fingerprint != fingerprint or (
            original_size is not None and embedding.original_size != tuple(original_size)
        ):
            logger.warning("Ignoring the foreign store entry %s", self.entry_name(key))
            return None
        return embedding

    def contains(self, key: str) -> bool:
        """Whether an entry exists under `key` (without reading or validating it)."""
        name = self.entry_name(key)
        try:
            if self._fs is None:
                return Path(name).is_file()
            return bool(self._fs.exists(name))
        except Exception:
            return False

    # -- writing ----------------------------------------------------------------------------

    def put(self, key: str, embedding: Embedding) -> None:
        """Write `embedding` under `key`, whole or not at all. Raises UserError (one sentence)
        when the store cannot be written."""
        import numpy as np

        if not isinstance(embedding.features, np.ndarray) or embedding.features.dtype == object:
            return  # an engine's private object: not storable, as in the cache
        self._write(self.entry_name(key), entry_bytes(embedding))

    def check_writable(self) -> None:
        """Raise UserError unless an entry can be written here (writes and removes a probe)."""
        name = f"{self._root}/.probe-{uuid.uuid4().hex}"
        self._write(name, b"")
        try:
            if self._fs is None:
                Path(name).unlink()
            else:
                self._fs.rm_file(name)
        except Exception:
            logger.debug("Could not remove the probe %s", name, exc_info=True)

    def _write(self, name: str, data: bytes) -> None:
        try:
            if self._fs is None:
                from annotator.core.atomic import atomic_writer

                Path(self._root).mkdir(parents=True, exist_ok=True)
                with atomic_writer(Path(name), durable=False) as out:
                    out.write(data)
            else:
                self._fs.makedirs(self._root, exist_ok=True)
                self._fs.pipe_file(name, data)
        except Exception as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise UserError(
                f"Cannot write to the embedding store {self.location}: {reason}."
            ) from None


def store_from_environment() -> EmbeddingStore | None:
    """The store named by $ANNOTATOR_EMBEDDING_STORE, or None when it is unset or empty."""
    location = os.environ.get(STORE_ENVIRONMENT_VARIABLE, "").strip()
    return EmbeddingStore(location) if location else None
