"""Every non-SAM-1 family against its own reference predictor, on the same random weights.

Each family's model is built with its own package (shrunk), saved as its official files are saved,
and loaded through the app's registry with --model-type auto (`families.load_model`). On the stock
path (decoder="torch") masks are identical to the reference predictor's and logits and scores
equal to float rounding (1e-6); on a faster path (the ONNX decoder) logits are within 1e-4 and
masks IoU >= 0.999. Prompts: seven single combinations (points, box, box + points, multimask) and
a three-click refinement chain feeding the best candidate's low-res logits back as mask_input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from family_factory import SPECS, FamilySpec  # noqa: E402
from prompt_cases import CASES, CHAIN, _image  # noqa: E402

from annotator.engines import families  # noqa: E402
from annotator.engines.base import Prompts  # noqa: E402

EXACT_TOL = 1e-6
FAST_TOL = 1e-4
MIN_IOU = 0.999


@dataclass
class Loaded:
    name: str
    spec: FamilySpec
    predictor: object
    engine: object
    embedding: object
    path: object


@pytest.fixture(scope="session", params=list(SPECS))
def loaded(request, family_checkpoint) -> Loaded:
    spec = SPECS[request.param]
    path, model = family_checkpoint(request.param)
    image = _image()
    predictor = spec.predictor(model)
    predictor.set_image(image)
    engine = families.load_model(path, "auto", device="cpu", encoder="stock", decoder="torch")
    return Loaded(request.param, spec, predictor, engine, engine.encode(image), path)


def _reference(predictor, prompts: Prompts, mask_input=None):
    masks, scores, logits = predictor.predict(
        point_coords=prompts.points if len(prompts.points) else None,
        point_labels=prompts.labels if len(prompts.points) else None,
        box=prompts.box,
        mask_input=mask_input,
        multimask_output=prompts.multimask,
    )
    # sam2's masks come back float32 0/1; the others bool.
    return np.asarray(masks) > 0, np.asarray(scores), np.asarray(logits)


def _with_mask(prompts: Prompts, mask_input) -> Prompts:
    return Prompts(
        points=prompts.points,
        labels=prompts.labels,
        box=prompts.box,
        mask_input=mask_input,
        multimask=prompts.multimask,
    )


def _iou(a, b) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _assert_equal(prediction, reference, fast: bool = False) -> None:
    masks, scores, logits = reference
    assert prediction.masks.dtype == np.bool_ and prediction.masks.shape == masks.shape
    assert prediction.low_res_logits.shape == logits.shape
    assert prediction.scores.shape == scores.shape
    tol = FAST_TOL if fast else EXACT_TOL
    np.testing.assert_allclose(prediction.low_res_logits, logits, rtol=0, atol=tol)
    np.testing.assert_allclose(prediction.scores, scores, rtol=0, atol=tol)
    if fast:
        for ours, theirs in zip(prediction.masks, masks, strict=True):
            assert _iou(ours, theirs) >= MIN_IOU
    else:
        np.testing.assert_array_equal(prediction.masks, masks)


def test_detected_from_the_file(loaded):
    info = families.inspect_checkpoint(loaded.path)
    assert info.family == loaded.spec.family
    assert info.model_type == loaded.spec.model_type
    assert loaded.engine.fingerprint == loaded.embedding.fingerprint
    assert info.title in loaded.engine.name


_REFERENCES: dict = {}


def _case_reference(loaded, case: str):
    """The reference predictor's answer to CASES[case], computed once per family."""
    key = (loaded.name, case)
    if key not in _REFERENCES:
        _REFERENCES[key] = _reference(loaded.predictor, CASES[case])
    return _REFERENCES[key]


@pytest.mark.parametrize("case", list(CASES))
def test_single_prompts_match_reference(case, loaded):
    _assert_equal(
        loaded.engine.decode(loaded.embedding, CASES[case]), _case_reference(loaded, case)
    )


def test_masks_are_not_trivial(loaded):
    """Random weights could answer all-true or all-false everywhere; then equality proves little."""
    fractions = [float(m.mean()) for case in CASES for m in _case_reference(loaded, case)[0]]
    assert sum(0.01 < f < 0.99 for f in fractions) >= len(fractions) // 2, fractions


def _chain(engine, embedding, predictor, fast: bool = False):
    ours_logits = theirs_logits = None
    for step, prompts in enumerate(CHAIN):
        reference = _reference(predictor, prompts, theirs_logits)
        prediction = engine.decode(embedding, _with_mask(prompts, ours_logits))
        _assert_equal(prediction, reference, fast=fast)
        best = int(np.argmax(reference[1]))
        assert prediction.best_index() == best, f"step {step}"
        theirs_logits = reference[2][best][None, :, :]
        ours_logits = prediction.low_res_logits[best][None, :, :]
    # The fed-back logits changed the answer.
    without = engine.decode(embedding, CHAIN[-1])
    assert not np.array_equal(without.low_res_logits, prediction.low_res_logits)


def test_three_click_chain_feeding_logits_back(loaded):
    _chain(loaded.engine, loaded.embedding, loaded.predictor)


def test_onnx_decoder_matches_reference(loaded, monkeypatch, shared_model_cache):
    if not loaded.spec.fast_decoder:
        pytest.skip(f"{loaded.name} has no exported decoder")
    monkeypatch.setenv("ANNOTATOR_CACHE_DIR", str(shared_model_cache))
    engine = families.load_model(loaded.path, "auto", device="cpu", decoder="onnx")
    assert engine.decoder_kind == "onnx"
    embedding = engine.encode(_image())
    np.testing.assert_array_equal(embedding.features, loaded.embedding.features)
    for case, prompts in CASES.items():
        _assert_equal(engine.decode(embedding, prompts), _case_reference(loaded, case), True)
    _chain(engine, embedding, loaded.predictor, fast=True)


def test_info_and_segment_commands_at_auto(
    loaded, tmp_path, monkeypatch, shared_model_cache, capsys
):
    """`annotator info` names the family; `annotator segment` (default paths: --model-type
    auto, the ONNX decoder where the family has one, the embedding cache) gives the reference's
    mask, and again from the cached embedding."""
    from PIL import Image

    from annotator.cli import main

    monkeypatch.setenv("ANNOTATOR_CACHE_DIR", str(shared_model_cache))
    assert main(["info", str(loaded.path)]) == 0
    printed = capsys.readouterr().out
    info = families.inspect_checkpoint(loaded.path)
    assert printed.strip() == info.describe() and printed.startswith(info.title)
    image = tmp_path / "image.png"
    Image.fromarray(_image()).save(image)
    reference = _case_reference(loaded, "fg_point_single")[0][0]
    for run in range(2):
        out = tmp_path / f"mask{run}.png"
        args = ["segment", str(image), "--checkpoint", str(loaded.path), "--point", "120,150"]
        assert main([*args, "--out", str(out)]) == 0
        with Image.open(out) as im:
            mask = np.asarray(im) == 255
        assert _iou(mask, reference) >= MIN_IOU
        if not (loaded.spec.fast_decoder or loaded.spec.fast_encoder):
            np.testing.assert_array_equal(mask, reference)


def _auto_settings(spec: FamilySpec, **changes):
    """sam_factory's permissive settings (random weights pass few masks at the defaults), with
    the family's own changes and `changes`."""
    from sam_factory import PERMISSIVE_AUTO_SETTINGS

    from annotator.engines.automatic import AutoMaskSettings

    return AutoMaskSettings(**{**PERMISSIVE_AUTO_SETTINGS, **dict(spec.auto_settings), **changes})


def test_segment_everything_matches_the_familys_generator(loaded):
    """Families that share SAM 1's decoder segment everything through generate_proposals' leaner
    decoder loop, as the family's own automatic mask generator does (to float rounding); the
    families without a generator say they cannot."""
    from annotator.engines.automatic import generate_proposals
    from annotator.qt.inference import supports_automatic

    if loaded.spec.generator is None:
        assert not supports_automatic(loaded.engine)
        return
    if loaded.spec.auto_exact:
        pytest.skip("compared exactly by test_segment_everything_equals_the_familys_generator")
    assert supports_automatic(loaded.engine)
    image = _image()[:192, :256].copy()
    settings = _auto_settings(loaded.spec)
    reference = loaded.spec.generator(loaded.predictor.model, **settings.generator_kwargs())
    proposals = generate_proposals(loaded.engine, image, settings)
    stock = reference.generate(image)
    assert len(proposals) == len(stock) > 0
    # Random weights give several masks of one shape: pair them by (score, area), not by IoU.
    stock.sort(key=lambda r: (round(r["predicted_iou"], 4), r["area"]))
    proposals = sorted(proposals, key=lambda p: (round(p.predicted_iou, 4), int(p.mask.sum())))
    for theirs, ours in zip(stock, proposals, strict=True):
        assert _iou(theirs["segmentation"], ours.mask) >= 0.99
        assert ours.predicted_iou == pytest.approx(theirs["predicted_iou"], abs=1e-3)
        assert ours.stability_score == pytest.approx(theirs["stability_score"], abs=1e-2)


def _assert_same_proposals(proposals, stock) -> None:
    """generate_proposals' answer is the generator's records, one for one, in order."""
    assert len(proposals) == len(stock) > 0
    for theirs, ours in zip(stock, proposals, strict=True):
        np.testing.assert_array_equal(ours.mask, theirs["segmentation"])
        assert ours.area == theirs["area"]
        assert ours.predicted_iou == pytest.approx(theirs["predicted_iou"], abs=FAST_TOL)
        assert ours.stability_score == pytest.approx(theirs["stability_score"], abs=FAST_TOL)
        assert ours.bbox == tuple(float(v) for v in theirs["bbox"])
        assert ours.point_coords == tuple(theirs["point_coords"][0])
        assert ours.crop_box == tuple(theirs["crop_box"])


def _no_encoding(image):
    raise AssertionError("the image encoder ran although the embedding was given")


def test_segment_everything_equals_the_familys_generator(loaded, monkeypatch):
    """SAM 2 / 2.1 and SAM-HQ: generate_proposals runs sam2's or segment_anything_hq's own
    generator on the engine's embedding: the same masks in the same order, without running the
    image encoder again (the given embedding serves the only crop); progress counts each step."""
    from annotator.engines.automatic import count_steps, generate_proposals
    from annotator.qt.inference import supports_automatic

    if not loaded.spec.auto_exact:
        pytest.skip(f"{loaded.name} runs SAM 1's decoder loop (compared to float rounding)")
    assert supports_automatic(loaded.engine)
    image = _image()
    settings = _auto_settings(loaded.spec)
    stock = loaded.spec.generator(loaded.predictor.model, **settings.generator_kwargs()).generate(
        image
    )
    monkeypatch.setattr(loaded.engine, "encode", _no_encoding)
    steps = []
    proposals = generate_proposals(
        loaded.engine,
        image,
        settings,
        embedding=loaded.embedding,
        progress=lambda done, total: steps.append((done, total)),
    )
    total = count_steps(image.shape[:2], settings)
    assert total == 1 + 2  # the embedding, then 16 grid points in batches of 8
    assert steps == [(done, total) for done in range(total + 1)]
    _assert_same_proposals(proposals, stock)


def test_segment_everything_with_crops_equals_sam2s_generator(loaded):
    """With crop layers each crop is encoded by the engine (as sam2's set_image does) and the
    crops' masks go through the generator's own NMS between crops: still the same records.
    (Random weights' masks span their crop, so those of the inner crops touch its edges and are
    dropped, by both, as near a crop edge.)"""
    from annotator.engines.automatic import count_steps, generate_proposals

    if loaded.name != "sam2.1":
        pytest.skip("the crop loop is the same code for every family: SAM 2 checks it")
    image = _image()[:160, :240].copy()
    settings = _auto_settings(
        loaded.spec, points_per_side=4, points_per_batch=16, crop_n_layers=1, crop_nms_thresh=0.7
    )
    stock = loaded.spec.generator(loaded.predictor.model, **settings.generator_kwargs()).generate(
        image
    )
    steps = []
    proposals = generate_proposals(
        loaded.engine, image, settings, progress=lambda done, total: steps.append(done)
    )
    assert count_steps(image.shape[:2], settings) == 5 * 2  # 5 crops: encoding + one batch each
    assert steps == list(range(11))
    _assert_same_proposals(proposals, stock)


def test_segment_everything_stops_when_cancelled(loaded):
    """cancelled() is polled before each crop and before each batch of points: True on the
    second poll stops after the crop's features are taken, before any point is decoded."""
    from annotator.engines.automatic import Cancelled, count_steps, generate_proposals
    from annotator.qt.inference import supports_automatic

    if not supports_automatic(loaded.engine):
        pytest.skip(f"{loaded.name} cannot segment everything")
    image = _image()
    settings = _auto_settings(loaded.spec)
    polls, steps = [], []

    def cancelled() -> bool:
        polls.append(True)
        return len(polls) >= 2

    with pytest.raises(Cancelled):
        generate_proposals(
            loaded.engine,
            image,
            settings,
            embedding=loaded.embedding,
            progress=lambda done, total: steps.append(done),
            cancelled=cancelled,
        )
    assert count_steps(image.shape[:2], settings) == 3
    assert steps == [0, 1] and len(polls) == 2


def test_fast_encoder_matches_reference(loaded):
    """Families whose encoder is SAM 1's ViT take its exact fast encoder by default."""
    engine = families.load_model(loaded.path, "auto", device="cpu", decoder="torch")
    assert (engine.encoder_kind == "fast") == loaded.spec.fast_encoder
    if not loaded.spec.fast_encoder:
        pytest.skip(f"{loaded.name} has no fast encoder")
    embedding = engine.encode(_image())
    assert embedding.fingerprint == loaded.embedding.fingerprint  # shares the cache with stock
    np.testing.assert_allclose(embedding.features, loaded.embedding.features, rtol=0, atol=FAST_TOL)
    for case, prompts in CASES.items():
        _assert_equal(engine.decode(embedding, prompts), _case_reference(loaded, case), True)
    _chain(engine, embedding, loaded.predictor, fast=True)
