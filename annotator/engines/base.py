"""What every segmentation engine offers the window and the CLI: encode once, decode per prompt.

Coordinate frame everywhere: (X, Y) pixels of the original image as the user sees it (after EXIF
rotation), floats, origin at the top-left corner of the top-left pixel's centre as in
segment_anything. Values crossing threads are immutable (frozen dataclasses of numpy arrays, and
`Prediction`, whose masks may be made lazily but thread-safely): no torch tensors leave an engine.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True)
class Prompts:
    """One decode request.

    points: Nx2 float32, (X, Y) pixels of the original image (N may be 0).
    labels: N int32, 1 for a foreground point, 0 for a background point.
    box: 4 float32 XYXY in original-image pixels, or None.
    mask_input: 1x256x256 float32 low-resolution logits of a previous prediction, or None.
    multimask: ask for 3 candidates (True) or 1 (False), as SamPredictor's multimask_output.
    """

    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros((0,), np.int32))
    box: np.ndarray | None = None
    mask_input: np.ndarray | None = None
    multimask: bool = True

    def is_empty(self) -> bool:
        return len(self.points) == 0 and self.box is None


class Prediction:
    """Result of one decode; immutable, and safe to read from any thread.

    masks: CxHxW bool at the original image size (C = 3 with multimask, else 1), read-only.
    scores: C float32, the model's predicted IoU of each mask, read-only.
    low_res_logits: Cx256x256 float32, to feed back as a later `Prompts.mask_input` (one of
        them), read-only.

    An engine may make the full-size masks lazily (`Prediction.lazy`): it computes the mask
    that will be displayed (the best) before handing the prediction over, and the others on
    first access. `mask(i)` makes only candidate i; `masks` makes every missing one. Either
    blocks only for the upscaling of the missing candidates (a few ms each); concurrent
    readers wait for the same work instead of repeating it.
    """

    __slots__ = ("scores", "low_res_logits", "_masks", "_ready", "_make_mask", "_lock")

    def __init__(self, masks: np.ndarray, scores: np.ndarray, low_res_logits: np.ndarray) -> None:
        """A prediction whose masks (CxHxW bool) are all made already."""
        masks = np.asarray(masks)
        self._init(scores, low_res_logits, masks, ready=[True] * len(masks), make_mask=None)

    @classmethod
    def lazy(
        cls,
        scores: np.ndarray,
        low_res_logits: np.ndarray,
        mask_size: tuple[int, int],
        make_mask: Callable[[int, np.ndarray], None],
        eager: Iterable[int] = (),
    ) -> Prediction:
        """A prediction whose masks are made on demand by `make_mask(index, out)`.

        make_mask writes candidate `index`'s HxW bool mask (mask_size = (H, W)) into `out`; it
        must be safe to call from any thread and must not keep `out`. Candidates in `eager` are
        made now, by the calling thread; the others on first access.
        """
        masks = np.empty((len(scores), *mask_size), dtype=bool)
        prediction = cls.__new__(cls)
        prediction._init(
            scores, low_res_logits, masks, ready=[False] * len(masks), make_mask=make_mask
        )
        for index in eager:
            prediction.mask(index)
        return prediction

    def _init(self, scores, low_res_logits, masks, ready: list[bool], make_mask) -> None:
        set_ = object.__setattr__
        set_(self, "scores", _read_only(scores))
        set_(self, "low_res_logits", _read_only(low_res_logits))
        set_(self, "_masks", masks)  # written only by _make, under _lock, slot by slot
        set_(self, "_ready", ready)
        set_(self, "_make_mask", make_mask)
        set_(self, "_lock", threading.Lock())

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"Prediction is immutable; cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"Prediction is immutable; cannot delete {name!r}")

    def __repr__(self) -> str:
        made = sum(self._ready)
        return (
            f"Prediction(masks={self._masks.shape} ({made} made), "
            f"scores={np.array2string(np.asarray(self.scores), precision=3)})"
        )

    def __len__(self) -> int:
        """The number of candidates, C."""
        return len(self._ready)

    @property
    def mask_size(self) -> tuple[int, int]:
        """(H, W) of every mask: the original image size."""
        return (int(self._masks.shape[1]), int(self._masks.shape[2]))

    @property
    def masks(self) -> np.ndarray:
        """CxHxW bool, read-only; makes the candidates not made yet."""
        for index in range(len(self._ready)):
            self._make(index)
        return _read_only(self._masks)

    def mask(self, index: int) -> np.ndarray:
        """Candidate `index`'s HxW bool mask, read-only; made now if it was not yet."""
        index = range(len(self._ready))[index]  # IndexError / negative indices as a sequence
        self._make(index)
        return _read_only(self._masks[index])

    def is_made(self, index: int) -> bool:
        """Whether candidate `index`'s full-size mask exists already (no work to read it)."""
        return self._ready[index]

    def best_index(self) -> int:
        return int(np.argmax(self.scores))

    def _make(self, index: int) -> None:
        if self._ready[index]:  # set only after the mask is written: no lock needed to read
            return
        with self._lock:
            if not self._ready[index]:
                self._make_mask(index, self._masks[index])
                self._ready[index] = True


def _read_only(array: np.ndarray) -> np.ndarray:
    """A read-only view of `array` (the producer's own array stays writable to it)."""
    view = np.asarray(array).view()
    view.flags.writeable = False
    return view


@dataclass(frozen=True)
class Embedding:
    """An image encoded by one engine; opaque to everyone but that engine and the cache.

    original_size: (H, W) of the image in pixels.
    input_size: (h, w) of the resized image inside the model's square input (SAM: long side 1024).
    features: engine-specific array (SAM: 1x256x64x64 float32).
    fingerprint: the engine's model fingerprint; an embedding is only valid for that model.
    """

    original_size: tuple[int, int]
    input_size: tuple[int, int]
    features: Any
    fingerprint: str


@runtime_checkable
class Segmenter(Protocol):
    """An engine. Only ever called from one worker thread; it need not be thread-safe."""

    name: str  # shown in the UI, e.g. "SAM vit_b (cpu)" or "Classic (no model)"
    device: str  # "cpu", "cuda:0", "mps"
    fingerprint: str  # identifies the weights + preprocessing; keys the embedding cache

    def encode(self, image: np.ndarray) -> Embedding:
        """Encode an HxWx3 uint8 RGB image (as returned by `annotator.core.images.load_image`)."""
        ...

    def decode(self, embedding: Embedding, prompts: Prompts) -> Prediction:
        """Masks for prompts on an encoded image; `prompts` must not be empty."""
        ...
