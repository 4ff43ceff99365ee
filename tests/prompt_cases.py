"""The image and prompt combinations every engine-equivalence test uses (SAM 1 and the other
families): a 300x451 image (non-square, not a multiple of anything, so resize, pad and crop all
matter), single prompts the window produces, and a three-click refinement chain."""

from __future__ import annotations

import numpy as np

from annotator.engines.base import Prompts

HEIGHT, WIDTH = 300, 451


def _image() -> np.ndarray:
    """Smooth colour blobs plus noise, HxWx3 uint8."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    image = np.stack(
        [
            128 + 110 * np.sin(xx / 37.0 + c) * np.cos(yy / 23.0 - c) + rng.normal(0, 8, xx.shape)
            for c in range(3)
        ],
        axis=-1,
    )
    return np.clip(image, 0, 255).astype(np.uint8)


def _pts(*xy):
    return np.array(xy, np.float32).reshape(-1, 2)


def _lbl(*labels):
    return np.array(labels, np.int32)


BOX = np.array([60.0, 40.5, 300.0, 250.0], np.float32)

# name -> Prompts (without mask_input); six+ combinations the window produces.
CASES = {
    "fg_point": Prompts(points=_pts(120, 150), labels=_lbl(1), multimask=True),
    "fg_point_single": Prompts(points=_pts(120, 150), labels=_lbl(1), multimask=False),
    "fg_bg_points": Prompts(points=_pts((120, 150), (380, 60)), labels=_lbl(1, 0), multimask=False),
    "box": Prompts(box=BOX, multimask=False),
    "box_multimask": Prompts(box=BOX, multimask=True),
    "points_and_box": Prompts(
        points=_pts((200, 140), (90, 60)), labels=_lbl(1, 0), box=BOX, multimask=False
    ),
    "edge_point": Prompts(points=_pts(450.0, 299.0), labels=_lbl(1), multimask=True),
}

# A three-click refinement chain: the window feeds the best candidate's low-res logits back.
CHAIN = [
    Prompts(points=_pts(120, 150), labels=_lbl(1), multimask=True),
    Prompts(points=_pts((120, 150), (380, 60)), labels=_lbl(1, 0), multimask=False),
    Prompts(points=_pts((120, 150), (380, 60), (200, 230)), labels=_lbl(1, 0, 1), multimask=False),
]
