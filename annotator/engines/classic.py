"""A segmentation engine without a model: OpenCV GrabCut seeded by the same prompts as SAM.

It lets the app work out of the box, before any checkpoint is downloaded, behind the same
`Segmenter` interface, and speaks SAM's geometry so the prompt session cannot tell the difference:
`Prediction.low_res_logits` are 256x256 logits in SAM's low-resolution frame (the image resized so
its long side is 1024, at 1/4 scale, padded at the bottom/right), and a previous prediction's logits
come back as `Prompts.mask_input` to seed the next GrabCut.

How prompts seed GrabCut (inside a region of interest, the rest of the image is background):
- box: outside it definitely background, inside probably foreground (as GC_INIT_WITH_RECT);
- foreground click: a small disk of definite foreground; without a box or previous mask, also a
  larger disk of probable foreground inside a window around the clicks;
- background click: a small disk of definite background;
- mask_input: logit > 0 probably foreground, else probably background.
GrabCut runs on the region of interest scaled to at most `ROI_SIDE` pixels (about 100 ms), and the
result is scaled back to the image.

multimask gives three candidates: the GrabCut result (score 0.9), only its connected parts that
touch a foreground click (0.8; the result itself if no click lies inside it), and the result with
its holes filled (0.7). GrabCut has no quality estimate: the scores only order the candidates.
"""

from __future__ import annotations

import numpy as np

from annotator.engines.base import Embedding, Prediction, Prompts

MODEL_INPUT_SIZE = 1024  # SAM's frame, kept so low-res logits mean the same for every engine
LOW_RES_SIZE = 256
WORKING_SIDE = 1024  # encode keeps the image at most this long side
ROI_SIDE = 320  # GrabCut runs on the region of interest scaled to at most this long side
ITERATIONS = 3
LOGIT = 10.0  # magnitude of the logits this engine emits
CANDIDATE_SCORES = (0.9, 0.8, 0.7)


def sam_input_size(height: int, width: int) -> tuple[int, int]:
    """(h, w) of an HxW image resized so its long side is 1024 (ResizeLongestSide)."""
    scale = MODEL_INPUT_SIZE / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


class GrabCutEngine:
    """OpenCV GrabCut behind the Segmenter interface; no model, no torch."""

    name = "Classic (GrabCut, no model)"
    device = "cpu"
    fingerprint = "classic-grabcut-v1"
    cacheable = False  # encode only shrinks the image: caching it would just copy pixels to disk

    def encode(self, image: np.ndarray) -> Embedding:
        """Keep the HxWx3 uint8 RGB image, shrunk to a long side of at most 1024 (features)."""
        import cv2

        height, width = image.shape[:2]
        if max(height, width) > WORKING_SIDE:
            work_h, work_w = sam_input_size(height, width)
            working = cv2.resize(image, (work_w, work_h), interpolation=cv2.INTER_AREA)
        else:
            working = np.ascontiguousarray(image)
        return Embedding(
            original_size=(height, width),
            input_size=sam_input_size(height, width),
            features=working,
            fingerprint=self.fingerprint,
        )

    def decode(self, embedding: Embedding, prompts: Prompts) -> Prediction:
        """CxHxW bool masks, C scores and Cx256x256 logits (C = 3 with multimask, else 1)."""
        if prompts.is_empty():
            raise ValueError("decode needs at least one point or a box")
        working = embedding.features
        work_h, work_w = working.shape[:2]
        height, width = embedding.original_size
        to_work = np.array([work_w / width, work_h / height])
        points = np.asarray(prompts.points, np.float64).reshape(-1, 2) * to_work
        labels = np.asarray(prompts.labels).reshape(-1)
        box = None
        if prompts.box is not None:
            box = np.asarray(prompts.box, np.float64).reshape(4) * np.tile(to_work, 2)
        previous = None
        if prompts.mask_input is not None:
            previous = self._logits_to_working(prompts.mask_input, embedding, (work_h, work_w)) > 0

        x0, y0, x1, y1 = self._region_of_interest(points, labels, box, previous, (work_h, work_w))
        seeds = self._seed(points - (x0, y0), labels, box, previous, (x0, y0, x1, y1))
        result = self._grabcut(working[y0:y1, x0:x1], seeds)
        candidates = [result]
        if prompts.multimask:
            fg_points = points[labels == 1] - (x0, y0)
            candidates += [_parts_touching(result, fg_points), _fill_holes(result)]

        masks = np.zeros((len(candidates), height, width), dtype=bool)
        logits = np.empty((len(candidates), LOW_RES_SIZE, LOW_RES_SIZE), np.float32)
        for i, candidate in enumerate(candidates):
            in_working = np.zeros((work_h, work_w), np.uint8)
            in_working[y0:y1, x0:x1] = candidate
            masks[i] = _resize_mask(in_working, (height, width))
            logits[i] = self._working_to_logits(in_working, embedding)
        scores = np.array(CANDIDATE_SCORES[: len(candidates)], np.float32)
        return Prediction(masks=masks, scores=scores, low_res_logits=logits)

    # -- geometry ---------------------------------------------------------------------------

    @staticmethod
    def _region_of_interest(points, labels, box, previous, shape) -> tuple[int, int, int, int]:
        """XYXY integer window in working pixels: the prompts' extent plus a margin."""
        height, width = shape
        extent = []
        if box is not None:
            extent.append(np.sort(box.reshape(2, 2), axis=0))
        fg = points[labels == 1]
        if len(fg):
            extent.append(fg)
        if previous is not None and previous.any():
            ys, xs = np.nonzero(previous)
            extent.append(np.array([[xs.min(), ys.min()], [xs.max() + 1, ys.max() + 1]]))
        if not extent:  # background clicks only: nothing to grow from
            extent.append(points)
        corners = np.concatenate(extent)
        lo, hi = corners.min(axis=0), corners.max(axis=0)
        size = hi - lo
        if box is None and previous is None:  # clicks only: a window around them
            margin = np.maximum(max(48.0, 0.2 * max(height, width)), 0.5 * size)
        else:
            margin = np.maximum(8.0, 0.1 * size)
        x0, y0 = np.floor(np.maximum(lo - margin, 0)).astype(int)
        x1, y1 = np.ceil(np.minimum(hi + margin, (width, height))).astype(int)
        return int(x0), int(y0), max(int(x1), int(x0) + 1), max(int(y1), int(y0) + 1)

    @staticmethod
    def _seed(points, labels, box, previous, roi) -> np.ndarray:
        """GrabCut's initial labels (GC_BGD/GC_FGD/GC_PR_BGD/GC_PR_FGD) over the ROI."""
        import cv2

        x0, y0, x1, y1 = roi
        roi_h, roi_w = y1 - y0, x1 - x0
        seeds = np.full((roi_h, roi_w), cv2.GC_PR_BGD, np.uint8)
        if previous is not None:
            seeds[previous[y0:y1, x0:x1]] = cv2.GC_PR_FGD
        if box is not None:
            bx0, by0, bx1, by1 = np.rint(box - (x0, y0, x0, y0)).astype(int)
            inside = np.zeros_like(seeds, dtype=bool)
            inside[max(by0, 0) : max(by1, 0), max(bx0, 0) : max(bx1, 0)] = True
            if previous is None:
                seeds[inside] = cv2.GC_PR_FGD
            seeds[~inside] = cv2.GC_BGD
        sure_radius = max(2, round(max(roi_h, roi_w) / 60))
        wide_radius = max(sure_radius + 1, round(max(roi_h, roi_w) / 8))
        grow = box is None and previous is None
        for (x, y), label in zip(np.rint(points).astype(int), labels, strict=True):
            if label == 1 and grow:
                cv2.circle(seeds, (int(x), int(y)), wide_radius, int(cv2.GC_PR_FGD), -1)
        for (x, y), label in zip(np.rint(points).astype(int), labels, strict=True):
            value = cv2.GC_FGD if label == 1 else cv2.GC_BGD
            cv2.circle(seeds, (int(x), int(y)), sure_radius, int(value), -1)
        return seeds

    @staticmethod
    def _grabcut(region: np.ndarray, seeds: np.ndarray) -> np.ndarray:
        """uint8 0/1 foreground of `region` (hxwx3 RGB) from GrabCut seeded by `seeds` (hxw)."""
        import cv2

        foreground = (seeds == cv2.GC_FGD) | (seeds == cv2.GC_PR_FGD)
        if not foreground.any():
            return np.zeros(seeds.shape, np.uint8)
        if foreground.all() or not ((seeds == cv2.GC_BGD) | (seeds == cv2.GC_PR_BGD)).any():
            # GrabCut needs background samples: take the border of the region as probable ones.
            seeds = seeds.copy()
            for edge in (seeds[0], seeds[-1], seeds[:, 0], seeds[:, -1]):
                edge[edge != cv2.GC_FGD] = cv2.GC_PR_BGD
        roi_h, roi_w = seeds.shape
        scale = min(1.0, ROI_SIDE / max(roi_h, roi_w))
        small_size = (max(1, round(roi_w * scale)), max(1, round(roi_h * scale)))
        if scale < 1.0:
            small = cv2.resize(region, small_size, interpolation=cv2.INTER_AREA)
            small_seeds = cv2.resize(seeds, small_size, interpolation=cv2.INTER_NEAREST)
        else:
            small, small_seeds = np.ascontiguousarray(region), seeds.copy()
        try:
            cv2.grabCut(
                cv2.cvtColor(small, cv2.COLOR_RGB2BGR),
                small_seeds,
                None,
                np.zeros((1, 65), np.float64),
                np.zeros((1, 65), np.float64),
                ITERATIONS,
                cv2.GC_INIT_WITH_MASK,
            )
        except cv2.error:  # degenerate colour statistics: keep the seeds as the answer
            pass
        result = ((small_seeds == cv2.GC_FGD) | (small_seeds == cv2.GC_PR_FGD)).astype(np.uint8)
        if scale < 1.0:
            result = _resize_mask(result, (roi_h, roi_w)).astype(np.uint8)
        return result

    @staticmethod
    def _logits_to_working(mask_input, embedding: Embedding, shape) -> np.ndarray:
        """1x256x256 logits in SAM's low-res frame -> float32 logits at the working size."""
        import cv2

        in_h, in_w = embedding.input_size
        crop_h, crop_w = _low_res_extent(in_h, in_w)
        logits = np.asarray(mask_input, np.float32).reshape(LOW_RES_SIZE, LOW_RES_SIZE)
        crop = np.ascontiguousarray(logits[:crop_h, :crop_w])
        return cv2.resize(crop, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)

    @staticmethod
    def _working_to_logits(mask: np.ndarray, embedding: Embedding) -> np.ndarray:
        """hxw 0/1 mask at the working size -> 256x256 float32 logits (+-LOGIT, padding -LOGIT)."""
        import cv2

        in_h, in_w = embedding.input_size
        crop_h, crop_w = _low_res_extent(in_h, in_w)
        signed = mask.astype(np.float32) * (2 * LOGIT) - LOGIT
        out = np.full((LOW_RES_SIZE, LOW_RES_SIZE), -LOGIT, np.float32)
        out[:crop_h, :crop_w] = cv2.resize(signed, (crop_w, crop_h), interpolation=cv2.INTER_AREA)
        return out


def _low_res_extent(in_h: int, in_w: int) -> tuple[int, int]:
    """Rows and columns of the 256x256 low-res frame covered by the image (not padding)."""
    scale = LOW_RES_SIZE / MODEL_INPUT_SIZE
    return max(1, round(in_h * scale)), max(1, round(in_w * scale))


def _resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """0/1 uint8 mask -> bool mask of `shape` (H, W), with bilinear (smooth) edges."""
    import cv2

    if mask.shape == tuple(shape):
        return mask.astype(bool)
    scaled = cv2.resize(mask * np.uint8(255), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return scaled > 127


def _parts_touching(mask: np.ndarray, points: np.ndarray) -> np.ndarray:
    """The connected components of `mask` (0/1 uint8) under any of `points` (Nx2 X, Y)."""
    import cv2

    count, components = cv2.connectedComponents(mask, connectivity=8)
    keep = set()
    for x, y in np.rint(points).astype(int):
        if 0 <= y < mask.shape[0] and 0 <= x < mask.shape[1] and components[y, x] > 0:
            keep.add(int(components[y, x]))
    if count <= 1 or not keep:
        return mask.copy()
    return np.isin(components, sorted(keep)).astype(np.uint8)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """`mask` (0/1 uint8) with every enclosed background region set to foreground."""
    import cv2

    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(mask)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    return filled


ClassicEngine = GrabCutEngine
