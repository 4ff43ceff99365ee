"""The no-model engines (the app's ClassicEngine and the older GrabCutEngine): same interface and
geometry as SAM, sensible masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from annotator.engines.base import Prompts, Segmenter
from annotator.engines.classic import ClassicEngine, GrabCutEngine

ENGINES = [ClassicEngine, GrabCutEngine]


def _scene(height: int, width: int, seed: int = 0):
    """A red disk on a smooth grey-green texture: (image HxWx3 uint8, disk mask, (cx, cy, r))."""
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(60, 140, (max(2, height // 16), max(2, width // 16), 3)).astype(np.uint8)
    image = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    cx, cy, r = int(width * 0.4), int(height * 0.45), int(min(height, width) * 0.18)
    cv2.circle(image, (cx, cy), r, (220, 40, 50), -1)
    truth = np.zeros((height, width), np.uint8)
    cv2.circle(truth, (cx, cy), r, 1, -1)
    return image, truth.astype(bool), (cx, cy, r)


def _iou(a, b) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def _sam_postprocess(logits: np.ndarray, input_size, original_size) -> np.ndarray:
    """SAM's own low-res -> full-size mapping (Sam.postprocess_masks), in OpenCV."""
    import cv2

    up = cv2.resize(logits, (1024, 1024), interpolation=cv2.INTER_LINEAR)
    up = up[: input_size[0], : input_size[1]]
    return cv2.resize(up, original_size[::-1], interpolation=cv2.INTER_LINEAR) > 0


@pytest.fixture(scope="module", params=ENGINES, ids=lambda e: e.__name__)
def scene(request):
    image, truth, disk = _scene(600, 800)
    engine = request.param()
    return engine, engine.encode(image), truth, disk


def test_are_segmenters_named_as_no_model():
    for engine in (ClassicEngine(), GrabCutEngine()):
        assert isinstance(engine, Segmenter)
        assert "no model" in engine.name
    assert GrabCutEngine().fingerprint == "classic-grabcut-v1"
    assert ClassicEngine().fingerprint != GrabCutEngine().fingerprint


def test_one_click_finds_the_object(scene):
    engine, embedding, truth, (cx, cy, r) = scene
    prompts = Prompts(np.array([[cx, cy]], np.float32), np.array([1], np.int32))
    prediction = engine.decode(embedding, prompts)
    assert prediction.masks.shape == (3, 600, 800) and prediction.masks.dtype == bool
    assert prediction.scores.shape == (3,) and prediction.scores.dtype == np.float32
    assert prediction.low_res_logits.shape == (3, 256, 256)
    assert _iou(prediction.masks[prediction.best_index()], truth) > 0.9


def test_box_finds_the_object_single_mask(scene):
    engine, embedding, truth, (cx, cy, r) = scene
    box = np.array([cx - 1.2 * r, cy - 1.2 * r, cx + 1.2 * r, cy + 1.2 * r], np.float32)
    prediction = engine.decode(embedding, Prompts(box=box, multimask=False))
    assert prediction.masks.shape == (1, 600, 800)
    assert _iou(prediction.masks[0], truth) > 0.95
    assert not prediction.masks[0][:, : int(cx - 1.2 * r) - 2].any()  # nothing outside the box


def test_low_res_logits_are_in_sams_frame_and_refine(scene):
    engine, embedding, truth, (cx, cy, r) = scene
    first = engine.decode(
        embedding, Prompts(np.array([[cx, cy]], np.float32), np.array([1], np.int32))
    )
    best = first.best_index()
    logits = first.low_res_logits[best]
    as_sam = _sam_postprocess(logits, embedding.input_size, embedding.original_size)
    assert _iou(as_sam, first.masks[best]) > 0.95
    # Refinement: a background click far away plus the previous logits keeps the object.
    refined = engine.decode(
        embedding,
        Prompts(
            np.array([[cx, cy], [790, 590]], np.float32),
            np.array([1, 0], np.int32),
            mask_input=logits[None],
            multimask=False,
        ),
    )
    assert _iou(refined.masks[0], truth) > 0.9


def test_background_click_removes_a_region(scene):
    engine, embedding, truth, (cx, cy, r) = scene
    box = np.array([cx - 1.2 * r, cy - 1.2 * r, cx + 1.2 * r, cy + 1.2 * r], np.float32)
    prompts = Prompts(np.array([[cx + r * 0.8, cy]], np.float32), np.array([0], np.int32), box=box)
    mask = engine.decode(embedding, prompts).masks[0]
    assert not mask[int(cy), int(cx + r * 0.8)]


def test_degenerate_prompts(scene):
    engine, embedding, _, _ = scene
    with pytest.raises(ValueError):  # the Segmenter contract: prompts must not be empty
        engine.decode(embedding, Prompts())
    only_background = Prompts(np.array([[10, 10]], np.float32), np.array([0], np.int32))
    assert not engine.decode(embedding, only_background).masks.any()
    whole = Prompts(box=np.array([0, 0, 800, 600], np.float32), multimask=False)
    assert engine.decode(embedding, whole).masks.shape == (1, 600, 800)
    corner = Prompts(np.array([[799, 599]], np.float32), np.array([1], np.int32))
    assert engine.decode(embedding, corner).masks[0].shape == (600, 800)


@pytest.mark.parametrize("engine_class", ENGINES, ids=lambda e: e.__name__)
def test_large_image_is_downscaled_and_masks_come_back_full_size(engine_class):
    image, truth, (cx, cy, r) = _scene(2400, 3200, seed=1)
    engine = engine_class()
    embedding = engine.encode(image)
    working = getattr(embedding.features, "working", embedding.features)
    assert max(working.shape[:2]) == 1024
    assert embedding.input_size == (768, 1024) and embedding.original_size == (2400, 3200)
    prompts = Prompts(np.array([[cx, cy]], np.float32), np.array([1], np.int32), multimask=False)
    prediction = engine.decode(embedding, prompts)
    assert prediction.masks.shape == (1, 2400, 3200)
    assert _iou(prediction.masks[0], truth) > 0.9


def _flat_scene():
    """A wide flat orange region with a grey square inside it, on a textured background: the
    region's mask (without the square) and a point in it far from the square."""
    import cv2

    rng = np.random.default_rng(5)
    image = rng.integers(0, 256, (480, 640, 3)).astype(np.uint8)
    image = cv2.GaussianBlur(image, (0, 0), 1.5)
    region = np.zeros((480, 640), bool)
    region[60:420, 80:560] = True
    image[region] = (235, 130, 40)
    image[200:280, 400:480] = (128, 128, 128)
    region[200:280, 400:480] = False
    return image, region, (200, 240)


def test_one_click_on_a_flat_region_gives_the_region_not_a_dot():
    image, region, (x, y) = _flat_scene()
    engine = ClassicEngine()
    embedding = engine.encode(image)
    prediction = engine.decode(embedding, Prompts(np.array([[x, y]], np.float32), np.array([1])))
    mask = prediction.mask(prediction.best_index())
    assert _iou(mask, region) > 0.9


def test_a_correction_click_changes_the_mask_near_it_only():
    image, region, (x, y) = _flat_scene()
    engine = ClassicEngine()
    embedding = engine.encode(image)
    first = engine.decode(embedding, Prompts(np.array([[x, y]], np.float32), np.array([1])))
    best = first.best_index()
    kept = first.mask(best)
    # A background click in the middle of the grey square: the square stays out, the rest stays.
    points = np.array([[x, y], [440, 240]], np.float32)
    second = engine.decode(
        embedding,
        Prompts(
            points, np.array([1, 0]), mask_input=first.low_res_logits[best][None], multimask=False
        ),
    )
    mask = second.mask(0)
    assert not mask[240, 440] and mask[y, x]
    assert _iou(mask, kept) > 0.95


def test_feeding_the_logits_back_keeps_the_outline():
    """The low-res logits of a mask describe its outline to about a pixel at full size."""
    from annotator.engines.classic import _logits_to_size, _signed_distance_logits

    image, truth, _ = _scene(600, 800)
    embedding = ClassicEngine().encode(image)
    logits = _signed_distance_logits(truth, embedding)
    back = _logits_to_size(logits, embedding, truth.shape) > 0
    assert _iou(back, truth) > 0.99


def _first_then(engine, embedding, first_points, first_labels, points, labels):
    """Decode a first prompt, keep its best candidate, then decode `points` with its logits."""
    first = engine.decode(
        embedding, Prompts(np.array(first_points, np.float32), np.array(first_labels))
    )
    best = first.best_index()
    second = engine.decode(
        embedding,
        Prompts(
            np.array(points, np.float32),
            np.array(labels),
            mask_input=first.low_res_logits[best][None].copy(),
            multimask=False,
        ),
    )
    return first.mask(best), first.low_res_logits[best], second.mask(0)


def test_logits_of_this_engine_bring_back_its_exact_mask():
    """The 256x256 logits alone cannot hold a full-size outline; the engine remembers the mask
    behind each logits it gave, so refining with an already-right click changes no pixel."""
    from annotator.engines.classic import _logits_to_size

    image, region, (x, y) = _flat_scene()
    engine = ClassicEngine()
    embedding = engine.encode(image)
    kept, logits, again = _first_then(engine, embedding, [[x, y]], [1], [[x, y]], [1])
    through_logits = _logits_to_size(logits[None], embedding, kept.shape) > 0
    assert (through_logits != kept).any()  # the logits round trip is lossy on this mask ...
    assert np.array_equal(again, kept)  # ... the engine's answer is not
    # Logits it never gave (another engine's, a file's) still work, through the signed distance.
    other = ClassicEngine()
    foreign = other.decode(
        other.encode(image),
        Prompts(np.array([[x, y]], np.float32), np.array([1]), mask_input=logits[None].copy()),
    ).mask(0)
    assert np.array_equal(foreign, through_logits | _dot(kept.shape, x, y))


def _dot(shape, x, y):
    dot = np.zeros(shape, bool)
    dot[y, x] = True
    return dot


def test_a_correction_click_leaves_the_mask_away_from_it_pixel_for_pixel():
    image, region, (x, y) = _flat_scene()
    engine = ClassicEngine()
    embedding = engine.encode(image)
    kept, _, mask = _first_then(engine, embedding, [[x, y]], [1], [[x, y], [440, 240]], [1, 0])
    assert not mask[240, 440] and mask[y, x]
    rows, cols = np.ogrid[:480, :640]
    far = (rows - 240) ** 2 + (cols - 440) ** 2 > 150**2
    assert np.array_equal(mask[far], kept[far])


def test_a_box_around_the_astronauts_helmet_gives_the_helmet():
    """The issue's case, on the bundled photo: GrabCut alone kept only the helmet's white
    highlights (its black visor matches the black table outside the box); the engine keeps the
    answer that fills the box, whatever OpenCV's random state."""
    import cv2
    from PIL import Image

    import resources

    path = Path(resources.__file__).parent / "samples" / "astronaut.png"
    image = np.asarray(Image.open(path).convert("RGB"))
    engine = ClassicEngine()
    embedding = engine.encode(image)
    for bottom in (510, 512):  # around the helmet, bottom right (510: as drawn in the window)
        box = np.array([272, 340, 500, bottom], np.float32)
        for seed in range(4):
            cv2.setRNGSeed(seed)
            mask = engine.decode(embedding, Prompts(box=box, multimask=False)).mask(0)
            assert mask[400:460, 340:440].mean() > 0.95  # the visor
            assert mask[340:bottom, 272:500].mean() > 0.4  # the helmet, not its highlights
            assert not mask[:330].any() and not mask[:, :262].any()  # nothing far outside


def test_mask_quality_prefers_the_object_to_a_patch_or_a_leak():
    import cv2

    from annotator.engines.classic import mask_quality

    image, truth, (cx, cy, r) = _scene(600, 800)
    embedding = ClassicEngine().encode(image)
    features = embedding.features
    patch = np.zeros(truth.shape, np.uint8)
    cv2.circle(patch, (cx, cy), r // 2, 1, -1)
    leak = truth.copy()
    leak[cy - 40 : cy + 40, cx : cx + 2 * r] = True
    score = {
        name: mask_quality(features, m)
        for name, m in (("object", truth), ("patch", patch > 0), ("leak", leak))
    }
    assert score["object"] > score["patch"] and score["object"] > score["leak"]
    assert mask_quality(features, np.zeros(truth.shape, bool)) == 0.0


def test_a_first_clicks_candidates_come_best_first():
    """The window shows candidate 1 first and eval keeps the best score: the trimmed and filled
    copies that pad the list to three must not outscore the answers they were made from."""
    rng = np.random.default_rng(0)
    noise = rng.integers(0, 255, (120, 160, 3)).astype(np.uint8)
    flat, _, (x, y) = _flat_scene()
    image, _, (cx, cy, _) = _scene(600, 800)
    for picture, point in ((noise, (60, 50)), (flat, (x, y)), (image, (cx, cy))):
        engine = ClassicEngine()
        prompts = Prompts(np.array([point], np.float32), np.array([1]))
        prediction = engine.decode(engine.encode(picture), prompts)
        assert len(prediction.scores) == 3
        assert list(prediction.scores) == sorted(prediction.scores, reverse=True)
