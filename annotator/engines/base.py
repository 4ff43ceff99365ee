"""What every segmentation engine offers the window and the CLI: encode once, decode per prompt.

Coordinate frame everywhere: (X, Y) pixels of the original image as the user sees it (after EXIF
rotation), floats, origin at the top-left corner of the top-left pixel's centre as in
segment_anything. Values crossing threads are frozen dataclasses of numpy arrays: no torch tensors
leave an engine.
"""

from __future__ import annotations

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


@dataclass(frozen=True)
class Prediction:
    """Result of one decode.

    masks: CxHxW bool at the original image size (C = 3 with multimask, else 1).
    scores: C float32, the model's predicted IoU of each mask.
    low_res_logits: Cx256x256 float32, to feed back as a later `Prompts.mask_input` (one of them).
    """

    masks: np.ndarray
    scores: np.ndarray
    low_res_logits: np.ndarray

    def best_index(self) -> int:
        return int(np.argmax(self.scores))


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

    name: str  # shown in the UI, e.g. "SAM vit_b (cpu)" or "Classic (GrabCut, no model)"
    device: str  # "cpu", "cuda:0", "mps"
    fingerprint: str  # identifies the weights + preprocessing; keys the embedding cache

    def encode(self, image: np.ndarray) -> Embedding:
        """Encode an HxWx3 uint8 RGB image (as returned by `annotator.core.images.load_image`)."""
        ...

    def decode(self, embedding: Embedding, prompts: Prompts) -> Prediction:
        """Masks for prompts on an encoded image; `prompts` must not be empty."""
        ...
