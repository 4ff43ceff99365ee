"""Segmentation engines without a model, behind the same `Segmenter` interface as SAM.

`ClassicEngine` (the app's, when no checkpoint is chosen) and `GrabCutEngine` (the engine of
earlier versions, kept for `annotator eval --no-model grabcut` and as ClassicEngine's GrabCut
step). Both let the app work out of the box and speak SAM's geometry, so the prompt session cannot
tell the difference: `Prediction.low_res_logits` are 256x256 logits in SAM's low-resolution frame
(the image resized so its long side is 1024, at 1/4 scale, padded at the bottom/right), and a
previous prediction's logits come back as `Prompts.mask_input`.

ClassicEngine, in short (details in its docstring; figures from `annotator eval` on DAVIS in the
README, reasons in decision 0012): a first click gets candidates (a region grown along the image
until edges stop it, so a click on a flat region gives the region; GrabCut around the click),
ordered by how object-like they look (`mask_quality`); a box gets GrabCut from the rectangle and
with its centre held, and keeps the answer that fills the box best; every later click relabels the
pixels near it that the mask got wrong and GrabCut refines only a window around them, on the
exact mask the previous logits came from (`MaskMemory`), so corrections add up pixel for pixel.

GrabCutEngine: how prompts seed GrabCut (inside a region of interest, the rest of the image is
background):
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

import itertools
from dataclasses import dataclass

import numpy as np

from annotator.engines.base import Embedding, Prediction, Prompts

MODEL_INPUT_SIZE = 1024  # SAM's frame, kept so low-res logits mean the same for every engine
LOW_RES_SIZE = 256
WORKING_SIDE = 1024  # encode keeps the image at most this long side
ROI_SIDE = 320  # GrabCut runs on the region of interest scaled to at most this long side
ITERATIONS = 3
LOGIT = 10.0  # magnitude of the logits this engine emits
CANDIDATE_SCORES = (0.9, 0.8, 0.7)

# ClassicEngine: measured with `annotator eval` on DAVIS (bench/bench_eval.py, decision 0012).
PROC_SIDE = 512  # geodesic distances are computed at this long side
EPSILON = 0.01  # cost of a step through a flat region (per pixel)
EDGE_WEIGHT = 1.0  # cost of a step across an edge of the image's typical (90th percentile) strength
TAU = 4.0  # geodesic reach of a correction click
REACH = 1.0  # a click's edit reaches this many times its distance r to the right label
WINDOW = 8.0  # GrabCut after a click may change only this many r around the relabelled pixels
BAND_CLICK = 2.0  # ... and there only this many r from the outline (at most BAND * sqrt(area))
BAND = 0.15  # the band's cap, times sqrt(area) of the mask
REFINE_ITERATIONS = 2  # GrabCut iterations after a click (a box gets ITERATIONS)
TAU_FIRST = 4.0  # geodesic reach of the first clicks
DISK = 0.05  # radius of the probable-object disk around a first click (of the long side)
BOX_CORES = (0.25, 0.45)  # ellipses (fractions of the box) held as object in a box's answers
RING = 0.1  # mask_quality compares a mask's colours with a ring this wide (times sqrt(area))
LOGIT_PER_PIXEL = 2.0  # logits per low-res pixel of signed distance


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
    def _grabcut(region: np.ndarray, seeds: np.ndarray, iterations: int = ITERATIONS) -> np.ndarray:
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
                iterations,
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


# ==============================================================================================
# The no-model engine the app uses: scored first answers, then clicks that edit locally.


class ClassicEngine:
    """First prompts get scored candidates; each later click corrects the mask near it only.

    encode keeps the working image (as GrabCutEngine) and, at a processing size (long side
    PROC_SIDE), an edge-cost map: EPSILON + EDGE_WEIGHT * g**2, g the CIELAB gradient magnitude
    over the image's own 90th percentile. decode:
    - first prompt, clicks only: two answers, each with its parts touching a positive click: the
      region geodesically within TAU_FIRST of a positive click (it stops at edges; a click on a
      flat region gives the region) plus a disk around it, refined by GrabCut; and GrabCut seeded
      by a window around the clicks (GrabCutEngine's answer). Each is scored by `mask_quality`
      (how strong the image's edges are along its outline, times how different its colours are
      from a ring around it) and the best come first;
    - first prompt with a box: GrabCut from the box as a rectangle, and with an ellipse at the
      box's centre held as object (a quarter and near half of the box): the answer that fits the
      box best wins (`_box_fit`: its bounding box matches the drawn box, which is drawn tight
      around its object, and it fills the box rather than scattering fragments across it);
    - later prompts (mask_input): the mask those logits came from, exactly (`MaskMemory`; or the
      mask the logits describe when they are not this engine's), and each click it gets wrong (a
      positive one outside it, a negative one inside) relabels the pixels near it: geodesically
      within TAU, nearer to it than to any click of the other label, within REACH times its
      distance r to the nearest pixel of its own label; GrabCut then refines only a window of
      WINDOW * r around the relabelled pixels (at most sqrt(area)), and in it only a band of
      BAND_CLICK * r around the outline: the rest of the mask stays as it was, pixel for pixel,
      so corrections add up instead of the whole outline being refitted at every click.
    Low-res logits hold the signed distance to the mask's outline (low-res pixels, clipped to
    +-LOGIT), so a mask from elsewhere comes back to about a pixel. Figures (`annotator eval` on
    DAVIS, bench/bench_eval.py) are in the README; decision 0012 says why.
    """

    name = "Classic (no model)"
    device = "cpu"
    fingerprint = "classic-edit-v3"
    cacheable = False

    def __init__(self) -> None:
        self._grabcut = GrabCutEngine()
        self._memory = MaskMemory()

    def encode(self, image: np.ndarray) -> Embedding:
        """The working image (long side <= 1024) plus the processing-size edge-cost map."""
        import cv2

        base = self._grabcut.encode(image)
        working = base.features
        work_h, work_w = working.shape[:2]
        scale = min(1.0, PROC_SIDE / max(work_h, work_w))
        proc_size = (max(1, round(work_w * scale)), max(1, round(work_h * scale)))
        proc = cv2.resize(working, proc_size, interpolation=cv2.INTER_AREA)
        costs = edge_costs(proc, EPSILON, EDGE_WEIGHT)
        features = ClassicFeatures(
            working, costs, next(_TOKENS), _edge_strength(costs), _colour_bins(working)
        )
        return Embedding(
            original_size=base.original_size,
            input_size=base.input_size,
            features=features,
            fingerprint=self.fingerprint,
        )

    def decode(self, embedding: Embedding, prompts: Prompts) -> Prediction:
        """CxHxW bool masks, C scores and Cx256x256 logits (C = 3 with multimask, else 1)."""
        if prompts.is_empty():
            raise ValueError("decode needs at least one point or a box")
        frame = _Frame(embedding, prompts)
        if prompts.mask_input is not None:
            previous = self._memory.recall(embedding.features.token, prompts.mask_input)
            if previous is None:  # logits from elsewhere (another engine, a file)
                previous = _logits_to_size(prompts.mask_input, embedding, frame.work_shape) > 0
            candidates = [self._correct(embedding, frame, previous)]
            scores = [CANDIDATE_SCORES[0]]
        elif prompts.box is not None:
            start = self._box_start(embedding, prompts)
            candidates = [self._correct(embedding, frame, start)]
            scores = [CANDIDATE_SCORES[0]]
        else:
            candidates, scores = self._click_starts(embedding, prompts, frame)
        if prompts.multimask and len(candidates) < 3:
            best = candidates[0].astype(np.uint8)
            extra = [
                _parts_touching(best, frame.work_points[frame.labels == 1]).astype(bool),
                _fill_holes(best).astype(bool),
            ]
            candidates += extra[: 3 - len(candidates)]
            # below every real candidate: they are the best one, trimmed or filled
            scores += [scores[-1] * 0.9**k for k in range(1, len(extra) + 1)]
        count = 3 if prompts.multimask else 1
        candidates, scores = candidates[:count], scores[:count]
        height, width = embedding.original_size
        masks = np.zeros((len(candidates), height, width), dtype=bool)
        logits = np.empty((len(candidates), LOW_RES_SIZE, LOW_RES_SIZE), np.float32)
        for i, candidate in enumerate(candidates):
            masks[i] = _resize_mask(candidate.astype(np.uint8), (height, width))
            logits[i] = _signed_distance_logits(candidate, embedding)
            self._memory.remember(embedding.features.token, logits[i], candidate)
        return Prediction(masks=masks, scores=np.array(scores, np.float32), low_res_logits=logits)

    # -- first prompts ----------------------------------------------------------------------

    def _click_starts(self, embedding, prompts: Prompts, frame) -> tuple[list, list]:
        """Scored answers to a first prompt of clicks, best first: HxW bool at the working
        size, each already holding its clicks' labels, and their scores (in (0, 1))."""
        grown = self._grow_start(embedding, frame)
        grab = self._grabcut_start(embedding, prompts, multimask=True)
        answers = [grown, _parts_touching(grown.astype(np.uint8), frame.positive_work())]
        answers += [grab[0], grab[1]]
        answers = [self._correct(embedding, frame, a.astype(bool)) for a in answers]
        unique = []
        for answer in answers:
            if not any(np.array_equal(answer, u) for u in unique):
                unique.append(answer)
        features = embedding.features
        quality = [mask_quality(features, a) for a in unique]
        order = np.argsort(-np.asarray(quality), kind="stable")
        return [unique[i] for i in order], [float(quality[i]) for i in order]

    def _grow_start(self, embedding, frame) -> np.ndarray:
        """The region geodesically within TAU_FIRST of a positive click (and nearer to it than
        to a negative one) plus a disk around each, refined by GrabCut over a window holding
        both. HxW bool at the working size."""
        import cv2

        costs = embedding.features.costs
        labels = frame.labels
        d_pos = _geodesic(costs, frame.proc_seeds[labels == 1])
        d_neg = _geodesic(costs, frame.proc_seeds[labels != 1])
        grown = ((d_pos < TAU_FIRST) & (d_pos < d_neg)).astype(np.uint8)
        work_h, work_w = frame.work_shape
        prior = cv2.resize(grown, (work_w, work_h), interpolation=cv2.INTER_NEAREST)
        radius = max(3, round(DISK * max(work_h, work_w)))
        for (x, y), label in zip(np.rint(frame.work_points).astype(int), labels, strict=True):
            if label == 1:
                cv2.circle(prior, (int(x), int(y)), radius, 1, -1)
        grab = self._grabcut
        points = frame.work_points
        prior = prior > 0
        x0, y0, x1, y1 = grab._region_of_interest(points, labels, None, prior, (work_h, work_w))
        seeds = grab._seed(points - (x0, y0), labels, None, prior, (x0, y0, x1, y1))
        window = (slice(y0, y1), slice(x0, x1))
        cut = grab._grabcut(embedding.features.working[window], seeds, REFINE_ITERATIONS)
        full = np.zeros((work_h, work_w), bool)
        full[window] = cut > 0
        return full

    def _grabcut_start(self, embedding: Embedding, prompts: Prompts, multimask: bool = False):
        """GrabCutEngine's answers to the prompts (without mask_input): list of HxW bool at the
        working size (its three candidates with multimask, else one)."""
        working = embedding.features.working
        grab = Embedding(working.shape[:2], embedding.input_size, working, embedding.fingerprint)
        height, width = embedding.original_size
        scale = np.array([working.shape[1] / width, working.shape[0] / height])
        points = np.asarray(prompts.points, np.float32).reshape(-1, 2) * scale
        box = None
        if prompts.box is not None:
            box = (np.asarray(prompts.box, np.float32).reshape(4) * np.tile(scale, 2)).astype(
                np.float32
            )
        asked = Prompts(points.astype(np.float32), prompts.labels, box, multimask=multimask)
        prediction = self._grabcut.decode(grab, asked)
        return [np.asarray(prediction.mask(i)) for i in range(len(prediction.scores))]

    def _box_start(self, embedding: Embedding, prompts: Prompts) -> np.ndarray:
        """The answer to a box (and its clicks, if any): GrabCut from the rectangle, and with an
        ellipse of BOX_CORES of the box at its centre held as object; the one that fits the box
        best (`_box_fit`). HxW bool at the working size."""
        import cv2

        working = embedding.features.working
        work_h, work_w = working.shape[:2]
        height, width = embedding.original_size
        box = np.asarray(prompts.box, np.float64).reshape(4) * np.tile(
            (work_w / width, work_h / height), 2
        )
        box = np.clip(box, 0, np.tile((work_w, work_h), 2))
        answers = [self._grabcut_start(embedding, prompts)[0].astype(bool)]
        grab = self._grabcut
        points = np.asarray(prompts.points, np.float64).reshape(-1, 2) * (
            work_w / width,
            work_h / height,
        )
        labels = np.asarray(prompts.labels).reshape(-1)
        x0, y0, x1, y1 = grab._region_of_interest(points, labels, box, None, (work_h, work_w))
        window = (slice(y0, y1), slice(x0, x1))
        base = grab._seed(points - (x0, y0), labels, box, None, (x0, y0, x1, y1))
        centre = ((box[0] + box[2]) / 2 - x0, (box[1] + box[3]) / 2 - y0)
        for core in BOX_CORES:
            seeds = base.copy()
            axes = (
                max(1, int(core * (box[2] - box[0]) / 2)),
                max(1, int(core * (box[3] - box[1]) / 2)),
            )
            core_mask = np.zeros(seeds.shape, np.uint8)
            cv2.ellipse(core_mask, (int(centre[0]), int(centre[1])), axes, 0, 0, 360, 1, -1)
            seeds[(core_mask > 0) & (seeds != cv2.GC_BGD)] = cv2.GC_FGD
            full = np.zeros((work_h, work_w), bool)
            full[window] = grab._grabcut(working[window], seeds) > 0
            answers.append(full)
        fits = [_box_fit(answer, box) for answer in answers]
        return answers[int(np.argmax(fits))]

    # -- corrections ------------------------------------------------------------------------

    def _correct(self, embedding, frame, previous: np.ndarray) -> np.ndarray:
        """`previous` (HxW bool, working size) corrected by the clicks it gets wrong, changed
        only near them; every click's own pixel ends with its label."""
        import cv2

        result = previous.copy()
        wrong_clicks = [
            i
            for i, ((row, col), label) in enumerate(
                zip(frame.work_seeds, frame.labels, strict=True)
            )
            if result[row, col] != (label == 1)
        ]
        if wrong_clicks:
            proc_h, proc_w = embedding.features.costs.shape
            coarse = cv2.resize(result.astype(np.uint8), (proc_w, proc_h), cv2.INTER_AREA) > 0
            edited = edit_with_clicks(
                coarse, embedding.features.costs, frame.proc_seeds, frame.labels, TAU, REACH
            )
            changed = edited != coarse
            if changed.any():
                result = self._refine_near(
                    embedding, frame, result, edited, changed, wrong_clicks[-1]
                )
        result[tuple(frame.work_seeds[frame.labels == 1].T)] = True
        result[tuple(frame.work_seeds[frame.labels != 1].T)] = False
        return result

    def _refine_near(self, embedding, frame, mask, edited, changed, index) -> np.ndarray:
        """GrabCut over a window around the relabelled pixels (`edited` and `changed` at the
        processing size): free only in a band around the edited outline; the window's border,
        the relabelled pixels and the clicks are held. HxW bool at the working size."""
        import cv2

        work_h, work_w = frame.work_shape
        size = (work_w, work_h)
        changed_w = cv2.resize(changed.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
        edited_w = cv2.resize(edited.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
        prior = np.where(changed_w, edited_w, mask)
        area = float(max(1, np.count_nonzero(prior)))
        row, col = frame.work_seeds[index]
        wanted = bool(frame.labels[index] == 1)
        wrong = (mask != wanted).astype(np.uint8)
        if wrong.all():
            r = np.sqrt(area)
        else:
            r = float(cv2.distanceTransform(wrong, cv2.DIST_L2, 3)[row, col])
        reach = max(16.0, min(WINDOW * r, np.sqrt(area)))
        ys, xs = np.nonzero(changed_w)
        y0, y1 = int(max(0, ys.min() - reach)), int(min(work_h, ys.max() + 1 + reach))
        x0, x1 = int(max(0, xs.min() - reach)), int(min(work_w, xs.max() + 1 + reach))
        window = (slice(y0, y1), slice(x0, x1))
        near, held, relabelled = prior[window], mask[window], changed_w[window]
        seeds = np.where(near, cv2.GC_PR_FGD, cv2.GC_PR_BGD).astype(np.uint8)
        inner = cv2.distanceTransform(near.astype(np.uint8), cv2.DIST_L2, 3)
        outer = cv2.distanceTransform((~near).astype(np.uint8), cv2.DIST_L2, 3)
        band = max(3.0, min(BAND_CLICK * r, BAND * np.sqrt(area)))
        seeds[(inner > band) & near] = cv2.GC_FGD
        seeds[(outer > band) & ~near] = cv2.GC_BGD
        seeds[relabelled & near] = cv2.GC_FGD
        seeds[relabelled & ~near] = cv2.GC_BGD
        border = np.zeros(near.shape, bool)  # where the window meets the rest of the mask
        border[0, :] |= y0 > 0
        border[-1, :] |= y1 < work_h
        border[:, 0] |= x0 > 0
        border[:, -1] |= x1 < work_w
        seeds[border & held] = cv2.GC_FGD
        seeds[border & ~held] = cv2.GC_BGD
        sure = max(2, round(max(seeds.shape) / 60))
        for (y, x), label in zip(frame.work_seeds, frame.labels, strict=True):
            if y0 <= y < y1 and x0 <= x < x1:
                value = cv2.GC_FGD if label == 1 else cv2.GC_BGD
                cv2.circle(seeds, (int(x - x0), int(y - y0)), sure, int(value), -1)
        cut = self._grabcut._grabcut(embedding.features.working[window], seeds, REFINE_ITERATIONS)
        cut = cut > 0
        cut[seeds == cv2.GC_FGD] = True  # GrabCut may run at a smaller size: held stays held
        cut[seeds == cv2.GC_BGD] = False
        result = mask.copy()
        result[window] = cut
        return result


class _Frame:
    """One decode's clicks in the engine's frames: points (x, y) at the working size, and
    (row, col) seeds at the working and processing sizes."""

    def __init__(self, embedding: Embedding, prompts: Prompts) -> None:
        features = embedding.features
        height, width = embedding.original_size
        self.work_shape = features.working.shape[:2]
        work_h, work_w = self.work_shape
        proc_h, proc_w = features.costs.shape
        points = np.asarray(prompts.points, np.float64).reshape(-1, 2)
        self.labels = np.asarray(prompts.labels).reshape(-1)
        self.work_points = (points + 0.5) * (work_w / width, work_h / height) - 0.5
        self.work_seeds = _seeds(self.work_points, (work_h, work_w))
        proc_points = (points + 0.5) * (proc_w / width, proc_h / height) - 0.5
        self.proc_seeds = _seeds(proc_points, (proc_h, proc_w))

    def positive_work(self) -> np.ndarray:
        return self.work_points[self.labels == 1]


def _seeds(points: np.ndarray, shape) -> np.ndarray:
    """Nx2 int (row, col) of Nx2 (x, y) points, inside an image of `shape`."""
    return np.clip(np.rint(points[:, ::-1]).astype(int), 0, (shape[0] - 1, shape[1] - 1))


class MaskMemory:
    """The masks behind the low-res logits this engine handed out, at the working size.

    The Segmenter interface carries a previous mask as SAM's 256x256 logits; a mask made at the
    working size (up to 1024 px) loses its finer outline there, and every click would start from
    a blurred copy. So the engine remembers what each of its logits came from (keyed by the
    embedding and a hash of the logits' bytes, packed bits, the last CAPACITY) and a later
    mask_input with the same values gets that mask back exactly. Thread-safe."""

    CAPACITY = 64

    def __init__(self) -> None:
        import threading
        from collections import OrderedDict

        self._masks: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    @staticmethod
    def _key(token: int, logits) -> tuple[int, bytes]:
        import hashlib

        values = np.ascontiguousarray(np.asarray(logits, np.float32).reshape(-1))
        return token, hashlib.blake2b(values.tobytes(), digest_size=16).digest()

    def remember(self, token: int, logits, mask: np.ndarray) -> None:
        key = self._key(token, logits)
        with self._lock:
            self._masks[key] = (np.packbits(mask), mask.shape)
            self._masks.move_to_end(key)
            while len(self._masks) > self.CAPACITY:
                self._masks.popitem(last=False)

    def recall(self, token: int, logits) -> np.ndarray | None:
        """The HxW bool mask behind `logits` (1x256x256 or 256x256), or None if unknown."""
        key = self._key(token, logits)
        with self._lock:
            entry = self._masks.get(key)
        if entry is None:
            return None
        bits, shape = entry
        return np.unpackbits(bits, count=shape[0] * shape[1]).reshape(shape).astype(bool)


_TOKENS = itertools.count(1)  # one per encoded image: MaskMemory's keys


def mask_quality(features: ClassicFeatures, mask: np.ndarray) -> float:
    """How much `mask` (HxW bool at the working size) looks like an object, in [0, 1): the mean
    edge strength along its outline (`features.edges`, at the processing size) times the
    total-variation distance between the colours inside it and in a ring around it
    (`features.colours`). 0 for an empty or full mask. Used only to order candidates."""
    import cv2

    if not mask.any() or mask.all():
        return 0.0
    proc_h, proc_w = features.edges.shape
    small = cv2.resize(mask.astype(np.uint8), (proc_w, proc_h), interpolation=cv2.INTER_NEAREST)
    outline = small - cv2.erode(small, np.ones((3, 3), np.uint8))
    if not outline.any():
        return 0.0
    edge = float(np.mean(features.edges[outline > 0]))
    m = mask.astype(np.uint8)
    width = max(3, int(RING * np.sqrt(np.count_nonzero(m))))
    ring = (cv2.dilate(m, np.ones((2 * width + 1, 2 * width + 1), np.uint8)) > 0) & (m == 0)
    if not ring.any():
        return 0.0
    bins = features.colours
    inside = np.bincount(bins[m > 0], minlength=512) / np.count_nonzero(m)
    around = np.bincount(bins[ring], minlength=512) / np.count_nonzero(ring)
    return edge * 0.5 * float(np.abs(inside - around).sum())


def _edge_strength(costs: np.ndarray) -> np.ndarray:
    """g / (1 + g) in [0, 1) per pixel of an edge-cost map (g its normalised gradient)."""
    g = np.sqrt(np.maximum(costs - EPSILON, 0) / EDGE_WEIGHT)
    return (g / (1.0 + g)).astype(np.float32)


def _colour_bins(image: np.ndarray) -> np.ndarray:
    """HxW int32 colour bin of an HxWx3 uint8 RGB image: CIELAB at 8 levels per channel."""
    import cv2

    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB) // 32
    return lab[..., 0].astype(np.int32) * 64 + lab[..., 1] * 8 + lab[..., 2]


def _box_fit(mask: np.ndarray, box: np.ndarray) -> float:
    """How well `mask` answers the box `box` (XYXY, the mask's pixels), in [0, 1]: the IoU of its
    bounding box with the box times the square root of the fraction of the box it covers (the
    white highlights of a black helmet span its box as well as the helmet does, but cover little
    of it). 0 for an empty mask."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return 0.0
    ix = max(0.0, min(box[2], xs.max() + 1) - max(box[0], xs.min()))
    iy = max(0.0, min(box[3], ys.max() + 1) - max(box[1], ys.min()))
    union = (box[2] - box[0]) * (box[3] - box[1]) + (xs.max() + 1 - xs.min()) * (
        ys.max() + 1 - ys.min()
    )
    x0, y0, x1, y1 = (int(v) for v in np.rint(box))
    cover = (
        float(mask[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)].mean())
        if x1 > x0 and y1 > y0
        else 0.0
    )
    return float(ix * iy / max(1e-9, union - ix * iy)) * float(np.sqrt(cover))


@dataclass(frozen=True)
class ClassicFeatures:
    """ClassicEngine's embedding features: the working image (HxWx3 uint8, long side <= 1024),
    the edge-cost map at the processing size (float64), a token naming this encoding (for
    MaskMemory), and what `mask_quality` reads: edge strength at the processing size (float32)
    and colour bins at the working size (int32)."""

    working: np.ndarray
    costs: np.ndarray
    token: int
    edges: np.ndarray
    colours: np.ndarray


def edge_costs(image: np.ndarray, epsilon: float, edge_weight: float) -> np.ndarray:
    """HxW float64 cost map of an HxWx3 uint8 RGB image: epsilon + edge_weight * g**2, g the
    CIELAB gradient magnitude over its 90th percentile (the scale follows the image's edges)."""
    import cv2

    lab = cv2.cvtColor(cv2.GaussianBlur(image, (0, 0), 1.0), cv2.COLOR_RGB2LAB).astype(np.float32)
    gx = cv2.Sobel(lab, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(lab, cv2.CV_32F, 0, 1, ksize=3)
    magnitude = np.sqrt((gx * gx + gy * gy).sum(axis=2))
    scale = float(np.percentile(magnitude, 90)) or 1.0
    g = np.minimum(magnitude / scale, 4.0)
    return (epsilon + edge_weight * g * g).astype(np.float64)


def edit_with_clicks(
    previous: np.ndarray,
    costs: np.ndarray,
    seeds: np.ndarray,
    labels: np.ndarray,
    tau: float,
    reach: float,
) -> np.ndarray:
    """`previous` (HxW bool) corrected, in click order, by the clicks it gets wrong.

    seeds: Nx2 int (row, col) at the cost map's size; labels: N, 1 positive, 0 negative. Every
    click's own pixel ends with its label."""
    import cv2

    result = previous.copy()
    height, width = result.shape
    positive = labels == 1
    for index, ((row, col), label) in enumerate(zip(seeds, labels, strict=True)):
        wanted = bool(label == 1)
        if result[row, col] == wanted:
            continue
        wrong = (result != wanted).astype(np.uint8)
        if wrong.all():
            limit = max(height, width) / 4
        else:
            distances = cv2.distanceTransform(wrong, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
            limit = float(distances[row, col])
        cap = max(2.0, reach * limit)
        r0, r1 = max(0, int(row - cap)), min(height, int(row + cap) + 1)
        c0, c1 = max(0, int(col - cap)), min(width, int(col + cap) + 1)
        window = costs[r0:r1, c0:c1]
        own = _geodesic(window, np.array([[row - r0, col - c0]]))
        others = seeds[(positive != wanted) & (np.arange(len(seeds)) != index)] - (r0, c0)
        inside = (others[:, 0] >= 0) & (others[:, 0] < r1 - r0)
        inside &= (others[:, 1] >= 0) & (others[:, 1] < c1 - c0)
        other = _geodesic(window, others[inside])
        rows, cols = np.ogrid[r0:r1, c0:c1]
        disk = (rows - row) ** 2 + (cols - col) ** 2 <= cap * cap
        region = (own < tau) & (own < other) & disk
        result[r0:r1, c0:c1][region] = wanted
    result[tuple(seeds[positive].T)] = True
    result[tuple(seeds[~positive].T)] = False
    return result


def _geodesic(costs: np.ndarray, seeds: np.ndarray) -> np.ndarray:
    """Geodesic distance (float64, costs' shape) from the (row, col) seeds; inf without seeds."""
    if len(seeds) == 0:
        return np.full(costs.shape, np.inf)
    from skimage.graph import MCP_Geometric

    distances, _ = MCP_Geometric(costs, fully_connected=True).find_costs(
        [(int(r), int(c)) for r, c in seeds]
    )
    return distances


def _logits_to_size(mask_input, embedding: Embedding, shape) -> np.ndarray:
    """1x256x256 logits in SAM's low-res frame -> float32 logits at `shape` (H, W)."""
    import cv2

    in_h, in_w = embedding.input_size
    crop_h, crop_w = _low_res_extent(in_h, in_w)
    logits = np.asarray(mask_input, np.float32).reshape(LOW_RES_SIZE, LOW_RES_SIZE)
    crop = np.ascontiguousarray(logits[:crop_h, :crop_w])
    return cv2.resize(crop, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def _signed_distance_logits(mask: np.ndarray, embedding: Embedding) -> np.ndarray:
    """256x256 float32 logits of an hxw bool mask: the signed distance to its outline in low-res
    pixels (positive inside) times LOGIT_PER_PIXEL, clipped to +-LOGIT; the padding is -LOGIT."""
    import cv2

    in_h, in_w = embedding.input_size
    crop_h, crop_w = _low_res_extent(in_h, in_w)
    m = mask.astype(np.uint8)
    inside = cv2.distanceTransform(m, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    outside = cv2.distanceTransform(1 - m, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    signed = np.where(m > 0, inside - 0.5, 0.5 - outside).astype(np.float32)  # outline at 0
    signed *= crop_w / m.shape[1]  # processing pixels -> low-res pixels
    out = np.full((LOW_RES_SIZE, LOW_RES_SIZE), -LOGIT, np.float32)
    resized = cv2.resize(signed, (crop_w, crop_h), interpolation=cv2.INTER_AREA)
    out[:crop_h, :crop_w] = np.clip(resized * LOGIT_PER_PIXEL, -LOGIT, LOGIT)
    return out
