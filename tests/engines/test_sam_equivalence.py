"""SamEngine against segment_anything's SamPredictor on the same random-weight model.

Stock-module path (encoder="stock", decoder="torch"): identical boolean masks and embeddings.
Fast exact encoder (chunked SDPA + measured Linear backend): logits within 1e-4, mask IoU >= 0.999.
The image is 300x451 (non-square, not a multiple of anything) so resize, pad and crop all matter.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from prompt_cases import CASES, CHAIN, HEIGHT, WIDTH, _image  # noqa: E402

from annotator.engines.base import Prompts  # noqa: E402
from annotator.engines.sam import load_sam  # noqa: E402

LOGIT_TOL = 1e-4
MIN_IOU = 0.999


@pytest.fixture(scope="module")
def image():
    return _image()


@pytest.fixture(scope="module")
def predictor(tiny_sam_reference, image):
    from segment_anything import SamPredictor

    predictor = SamPredictor(tiny_sam_reference)
    predictor.set_image(image)
    return predictor


@pytest.fixture(scope="module")
def stock_engine(tiny_sam_checkpoint):
    return load_sam(tiny_sam_checkpoint, device="cpu", encoder="stock", decoder="torch")


@pytest.fixture(scope="module")
def fast_engine(tiny_sam_checkpoint):
    return load_sam(tiny_sam_checkpoint, device="cpu", encoder="fast", decoder="torch")


@pytest.fixture(scope="module")
def stock_embedding(stock_engine, image):
    return stock_engine.encode(image)


@pytest.fixture(scope="module")
def fast_embedding(fast_engine, image):
    return fast_engine.encode(image)


def _reference(predictor, prompts: Prompts, mask_input=None):
    masks, scores, logits = predictor.predict(
        point_coords=prompts.points if len(prompts.points) else None,
        point_labels=prompts.labels if len(prompts.points) else None,
        box=prompts.box,
        mask_input=mask_input,
        multimask_output=prompts.multimask,
    )
    return masks, scores, logits


def _with_mask(prompts: Prompts, mask_input) -> Prompts:
    return Prompts(
        points=prompts.points,
        labels=prompts.labels,
        box=prompts.box,
        mask_input=mask_input,
        multimask=prompts.multimask,
    )


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _assert_nontrivial(masks: np.ndarray) -> None:
    """A random model could answer all-true or all-false; then equality would prove little."""
    fractions = masks.reshape(len(masks), -1).mean(axis=1)
    assert np.all((fractions > 0.01) & (fractions < 0.99)), fractions


def _assert_identical(prediction, reference) -> None:
    masks, scores, logits = reference
    assert prediction.masks.dtype == np.bool_ and prediction.masks.shape == masks.shape
    assert prediction.scores.dtype == np.float32 and prediction.scores.shape == scores.shape
    assert prediction.low_res_logits.dtype == np.float32
    assert prediction.low_res_logits.shape == logits.shape == (len(masks), 256, 256)
    np.testing.assert_array_equal(prediction.masks, masks)
    np.testing.assert_allclose(prediction.low_res_logits, logits, rtol=0, atol=1e-6)
    np.testing.assert_allclose(prediction.scores, scores, rtol=0, atol=1e-6)


def _assert_close(prediction, reference) -> None:
    masks, scores, logits = reference
    assert prediction.masks.shape == masks.shape
    np.testing.assert_allclose(prediction.low_res_logits, logits, rtol=0, atol=LOGIT_TOL)
    np.testing.assert_allclose(prediction.scores, scores, rtol=0, atol=LOGIT_TOL)
    for ours, theirs in zip(prediction.masks, masks, strict=True):
        assert _iou(ours, theirs) >= MIN_IOU


# -- embeddings ------------------------------------------------------------------------------


def test_stock_embedding_equals_set_image(stock_embedding, predictor):
    assert stock_embedding.original_size == (HEIGHT, WIDTH)
    assert stock_embedding.input_size == tuple(predictor.input_size) == (681, 1024)
    features = stock_embedding.features
    assert features.dtype == np.float32 and features.shape == (1, 256, 64, 64)
    np.testing.assert_array_equal(features, predictor.features.numpy())


def test_fast_embedding_is_within_float_rounding(fast_embedding, fast_engine, predictor):
    assert fast_engine.encoder_kind == "fast"
    assert fast_embedding.fingerprint == fast_engine.fingerprint
    reference = predictor.features.numpy()
    assert not np.array_equal(fast_embedding.features, np.zeros_like(reference))
    np.testing.assert_allclose(fast_embedding.features, reference, rtol=0, atol=1e-4)


def test_fast_engine_leaves_stock_modules_alone(fast_engine, tiny_sam_reference):
    from segment_anything.modeling.image_encoder import Attention

    assert all(isinstance(b.attn, Attention) for b in tiny_sam_reference.image_encoder.blocks)
    assert not any(isinstance(b.attn, Attention) for b in fast_engine.model.image_encoder.blocks)


# -- single prompts --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def case_references(predictor):
    """SamPredictor's answer to each case, computed once for both paths."""
    references = {name: _reference(predictor, prompts) for name, prompts in CASES.items()}
    for masks, _, _ in references.values():
        _assert_nontrivial(masks)
    return references


@pytest.mark.parametrize("case", list(CASES))
def test_stock_path_matches_predictor(case, stock_engine, stock_embedding, case_references):
    prediction = stock_engine.decode(stock_embedding, CASES[case])
    _assert_identical(prediction, case_references[case])


@pytest.mark.parametrize("case", list(CASES))
def test_fast_encoder_matches_predictor(case, fast_engine, fast_embedding, case_references):
    prediction = fast_engine.decode(fast_embedding, CASES[case])
    _assert_close(prediction, case_references[case])


# -- a three-click refinement chain feeding low-res logits back ------------------------------


@pytest.mark.parametrize("path", ["stock", "fast"])
def test_three_click_chain_feeding_logits_back(
    path, stock_engine, stock_embedding, fast_engine, fast_embedding, predictor
):
    engine, embedding = (
        (stock_engine, stock_embedding) if path == "stock" else (fast_engine, fast_embedding)
    )
    ours_logits = theirs_logits = None
    for step, prompts in enumerate(CHAIN):
        reference = _reference(predictor, prompts, theirs_logits)
        prediction = engine.decode(embedding, _with_mask(prompts, ours_logits))
        _assert_nontrivial(reference[0])
        if path == "stock":
            _assert_identical(prediction, reference)
        else:
            _assert_close(prediction, reference)
        # What the window does: keep the best candidate's logits for the next click.
        best = int(np.argmax(reference[1]))
        assert prediction.best_index() == best, f"step {step}"
        theirs_logits = reference[2][best][None, :, :]
        ours_logits = prediction.low_res_logits[best][None, :, :]
    # The fed-back logits changed the answer: without them, the last mask differs.
    without = engine.decode(embedding, CHAIN[-1])
    assert not np.array_equal(without.low_res_logits, prediction.low_res_logits)


def test_bf16_encoder_is_opt_in_and_close(tiny_sam_checkpoint, image, predictor):
    engine = load_sam(tiny_sam_checkpoint, device="cpu", encoder="bf16", decoder="torch")
    embedding = engine.encode(image)
    assert embedding.features.dtype == np.float32
    assert np.isfinite(embedding.features).all()
    reference = predictor.features.numpy()
    # Lossy: not equal to stock, but the same embedding to about bf16 precision.
    difference = np.abs(embedding.features - reference)
    assert difference.max() > 0
    assert difference.mean() < 0.05 * np.abs(reference).mean()


def test_mask_input_accepts_1x256x256_and_256x256(stock_engine, stock_embedding, predictor):
    first = stock_engine.decode(stock_embedding, CASES["fg_point"])
    logits = first.low_res_logits[first.best_index()]
    prompts = CASES["fg_bg_points"]
    reference = _reference(predictor, prompts, logits[None, :, :])
    _assert_identical(stock_engine.decode(stock_embedding, _with_mask(prompts, logits)), reference)
    _assert_identical(
        stock_engine.decode(stock_embedding, _with_mask(prompts, logits[None, :, :])), reference
    )
