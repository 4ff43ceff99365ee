"""Decoded masks of the images being looked at, bounded by bytes.

A 640x480 annotation decodes to a 300 KB bool mask; keeping every mask ever shown grew the window
by 7 MB a page turn. The cache keeps the masks of the images it is told to keep (the current one
and its neighbours), least recently used first out when it passes `max_bytes`.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from annotator.core.project import Annotation

DEFAULT_MAX_BYTES = 192 << 20


class MaskCache:
    def __init__(self, max_bytes: int = DEFAULT_MAX_BYTES):
        self.max_bytes = max_bytes
        self.nbytes = 0
        # annotation id -> (rle it was decoded from, image id, HxW bool mask)
        self._entries: OrderedDict[int, tuple[dict, int, np.ndarray]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def mask(self, annotation: Annotation) -> np.ndarray:
        """The HxW bool mask of `annotation` (decoded once while its RLE is unchanged)."""
        entry = self._entries.get(annotation.id)
        if entry is not None and entry[0] is annotation.rle:
            self._entries.move_to_end(annotation.id)
            return entry[2]
        mask = annotation.mask()
        self.put(annotation, mask)
        return mask

    def put(self, annotation: Annotation, mask: np.ndarray) -> None:
        """Keep `mask`, decoded elsewhere (the image loader's thread) from `annotation.rle`."""
        self._drop(annotation.id)
        self._entries[annotation.id] = (annotation.rle, annotation.image_id, mask)
        self.nbytes += mask.nbytes
        while self.nbytes > self.max_bytes and len(self._entries) > 1:
            self._drop(next(iter(self._entries)))

    def keep_images(self, image_ids) -> None:
        """Forget every mask that is not on one of `image_ids`."""
        keep = set(image_ids)
        for annotation_id in [k for k, v in self._entries.items() if v[1] not in keep]:
            self._drop(annotation_id)

    def forget(self, annotation_ids) -> None:
        for annotation_id in annotation_ids:
            self._drop(annotation_id)

    def clear(self) -> None:
        self._entries.clear()
        self.nbytes = 0

    def _drop(self, annotation_id: int) -> None:
        entry = self._entries.pop(annotation_id, None)
        if entry is not None:
            self.nbytes -= entry[2].nbytes
