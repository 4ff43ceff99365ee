"""generate_proposals against segment_anything's SamAutomaticMaskGenerator on the same model.

The engine is loaded from the tiny random-weight checkpoint through the real loader (fast encoder);
the reference is segment_anything's own generator on the same weights in a stock-built Sam. Random
weights make low-contrast logits (about +-0.2), predicted IoUs of about +-0.1 and masks that
cover the whole image, so the settings here are scaled to them: a small stability offset, low
thresholds (some masks pass, some do not, both filters take effect), and NMS thresholds of 1.0
(whole-image boxes would otherwise all collapse into one and the comparison would be of a single
mask). Proposals are matched one-to-one by best mask IoU.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from sam_factory import PERMISSIVE_AUTO_SETTINGS  # noqa: E402

from annotator.engines.automatic import (  # noqa: E402
    AutoMaskSettings,
    Cancelled,
    count_steps,
    generate_proposals,
)
from annotator.errors import UserError  # noqa: E402

HEIGHT, WIDTH = 192, 256
MIN_IOU = 0.99

# Scaled to random weights (see the module docstring and tests/sam_factory.py).
BASE = PERMISSIVE_AUTO_SETTINGS
CASES = {
    "no_crops": AutoMaskSettings(**BASE),
    # One case covers both crop layers and the small-region clean-up: each crop costs an encoding.
    "crops_and_small_regions": AutoMaskSettings(
        **BASE, crop_n_layers=1, crop_n_points_downscale_factor=4, min_mask_region_area=400
    ),
}


def _image() -> np.ndarray:
    """Flat background with four coloured shapes, HxWx3 uint8."""
    image = np.full((HEIGHT, WIDTH, 3), 90, np.uint8)
    image[20:80, 30:100] = (230, 40, 40)
    image[100:170, 150:235] = (40, 200, 60)
    image[110:150, 25:75] = (30, 30, 220)
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    image[(yy - 50) ** 2 + (xx - 190) ** 2 < 30**2] = (240, 240, 0)
    return image


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return _image()


@pytest.fixture(scope="module")
def engine(tiny_sam_checkpoint):
    from annotator.engines.sam import load_sam

    return load_sam(tiny_sam_checkpoint, device="cpu", encoder="fast", decoder="torch")


@pytest.fixture(scope="module")
def embedding(engine, image):
    return engine.encode(image)


class _CountingEngine:
    """The real engine, counting the images it is asked to encode."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.model = engine.model
        self.fingerprint = engine.fingerprint
        self.encoded: list[tuple[int, int]] = []

    def encode(self, image):
        self.encoded.append(image.shape[:2])
        return self.engine.encode(image)


@pytest.fixture(scope="module")
def results(engine, embedding, image, tiny_sam_reference) -> dict:
    """case -> (stock records, our proposals, sizes encoded by our engine, progress calls)."""
    from segment_anything import SamAutomaticMaskGenerator

    out = {}
    for name, settings in CASES.items():
        stock = SamAutomaticMaskGenerator(tiny_sam_reference, **settings.generator_kwargs())
        counting, steps = _CountingEngine(engine), []
        proposals = generate_proposals(
            counting,
            image,
            settings,
            embedding=embedding,
            progress=lambda done, total, steps=steps: steps.append((done, total)),
        )
        out[name] = (stock.generate(image), proposals, counting.encoded, steps)
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


def _assert_match(stock: list[dict], proposals) -> None:
    """Same count; a one-to-one matching (greedy on best IoU) with every IoU >= MIN_IOU."""
    assert len(proposals) == len(stock)
    ious = np.array([[_iou(s["segmentation"], p.mask) for p in proposals] for s in stock])
    unmatched_stock, unmatched_ours = set(range(len(stock))), set(range(len(proposals)))
    for flat in np.argsort(-ious, axis=None):
        i, j = np.unravel_index(flat, ious.shape)
        if i in unmatched_stock and j in unmatched_ours:
            assert ious[i, j] >= MIN_IOU, (i, j, ious[i, j])
            assert proposals[j].predicted_iou == pytest.approx(stock[i]["predicted_iou"], abs=1e-3)
            assert proposals[j].stability_score == pytest.approx(
                stock[i]["stability_score"], abs=1e-2
            )
            unmatched_stock.discard(i)
            unmatched_ours.discard(j)
    assert not unmatched_stock and not unmatched_ours


@pytest.mark.parametrize("case", list(CASES))
def test_proposals_match_stock_generator(case, results):
    settings = CASES[case]
    stock, proposals, _, _ = results[case]
    assert len(stock) >= 3, "the settings must make the stock generator keep several masks"
    # Both filters took effect: fewer masks than the 3 candidates of each full-image grid point.
    assert len(stock) < 3 * settings.points_per_side**2
    _assert_match(stock, proposals)
    for proposal in proposals:
        assert proposal.mask.shape == (HEIGHT, WIDTH) and proposal.mask.dtype == bool
        assert proposal.area > 0
        assert len(proposal.bbox) == 4 and len(proposal.point_coords) == 2


def test_given_embedding_is_reused_and_only_crops_are_encoded(results):
    assert results["no_crops"][2] == []
    crops = results["crops_and_small_regions"][2]
    assert len(crops) == 4  # the four crops of layer 1; the whole image came from `embedding`
    assert all(h < HEIGHT and w < WIDTH for h, w in crops)


def test_small_region_clean_up_changes_masks(results):
    """The min_mask_region_area case is not vacuous: the clean-up changes the proposals."""
    plain = results["no_crops"][1]
    cleaned = results["crops_and_small_regions"][1]
    assert sorted(p.area for p in plain) != sorted(p.area for p in cleaned)


@pytest.mark.parametrize("case", list(CASES))
def test_progress_counts_every_step(case, results):
    steps = results[case][3]
    total = count_steps((HEIGHT, WIDTH), CASES[case])
    assert steps == [(done, total) for done in range(total + 1)]


def test_progress_step_count():
    settings = CASES["no_crops"]
    assert count_steps((HEIGHT, WIDTH), settings) == 1 + 16 // settings.points_per_batch
    crops = CASES["crops_and_small_regions"]
    assert count_steps((HEIGHT, WIDTH), crops) == (1 + 2) + 4 * (1 + 1)


def test_cancel_stops_without_finishing(engine, embedding, image):
    reported = []

    def after_first_batch() -> bool:
        return len(reported) >= 3  # (0, total), the crop's embedding, the first batch

    with pytest.raises(Cancelled):
        generate_proposals(
            engine,
            image,
            CASES["no_crops"],
            embedding=embedding,
            progress=lambda done, total: reported.append(done),
            cancelled=after_first_batch,
        )
    assert reported == [0, 1, 2]  # nothing ran on after cancel() said so


def test_bad_settings_and_mismatched_embedding_are_refused(engine, embedding, image):
    with pytest.raises(UserError, match="points_per_side"):
        generate_proposals(engine, image, AutoMaskSettings(points_per_side=0))
    with pytest.raises(UserError, match="pred_iou_thresh"):
        AutoMaskSettings(pred_iou_thresh=1.5).checked()
    with pytest.raises(ValueError, match="image"):
        generate_proposals(engine, image[:100], CASES["no_crops"], embedding=embedding)
    with pytest.raises(ValueError, match="another model"):
        other = type(embedding)(
            embedding.original_size, embedding.input_size, embedding.features, "other"
        )
        generate_proposals(engine, image, CASES["no_crops"], embedding=other)


def test_defaults_are_segment_anythings():
    import inspect

    from segment_anything import SamAutomaticMaskGenerator

    stock = inspect.signature(SamAutomaticMaskGenerator.__init__).parameters
    for name, value in AutoMaskSettings().generator_kwargs().items():
        assert stock[name].default == value, name


def test_run_length_encoding_equals_segment_anythings():
    from segment_anything.utils.amg import mask_to_rle_pytorch, rle_to_mask

    from annotator.engines.automatic import _masks_to_rle, _rle_to_mask

    generator = torch.Generator().manual_seed(0)
    masks = torch.rand((6, 37, 53), generator=generator) > 0.5
    masks[1] = False  # empty
    masks[2] = True  # full
    masks[3, :, :5] = True  # starts with a run of ones
    masks[4] = False
    masks[4, -1, -1] = True  # one pixel, last in column-major order
    for batch in (masks, masks[:1], masks[:0]):
        stock = mask_to_rle_pytorch(batch)
        assert _masks_to_rle(batch) == stock
        for rle, mask in zip(stock, batch, strict=True):
            decoded = _rle_to_mask(rle)
            assert decoded.dtype == bool and np.array_equal(decoded, rle_to_mask(rle))
            assert np.array_equal(decoded, mask.numpy())


def test_an_engine_without_a_generator_is_refused_in_one_sentence(image):
    class TransformersLike:  # as HfSamEngine: a model, but no generator of its family
        name = "SAM (transformers) (cpu)"
        model = object()
        supports_automatic = False

    with pytest.raises(UserError, match=r"^SAM \(transformers\) \(cpu\) cannot segment everything"):
        generate_proposals(TransformersLike(), image)
