"""The ONNX decoder against segment_anything's SamPredictor on the same small random-weight SAM."""

from __future__ import annotations

import numpy as np
import pytest

from annotator.engines.base import Embedding, Prompts

ATOL = 1e-4


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


@pytest.fixture(scope="module")
def decoder(tiny_sam_reference, tmp_path_factory):
    from annotator.engines.onnx_decoder import OnnxMaskDecoder

    folder = tmp_path_factory.mktemp("decoders")
    return OnnxMaskDecoder.load_or_export(tiny_sam_reference, "tiny-test", folder)


def _smooth_image(height: int, width: int, seed: int) -> np.ndarray:
    import cv2

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (max(2, height // 32), max(2, width // 32), 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


# (height, width): a portrait image smaller than the model input (masks scaled down) and a wide
# landscape one larger than it (scaled up), neither with the 4:3 ratio of the export's dummy input.
SIZES = [(450, 300), (1000, 1500)]


@pytest.fixture(scope="module", params=SIZES, ids=lambda s: f"{s[1]}x{s[0]}")
def encoded(request, tiny_sam_reference):
    """(SamPredictor with the image set, our Embedding built from the predictor's features)."""
    from segment_anything import SamPredictor

    height, width = request.param
    predictor = SamPredictor(tiny_sam_reference)
    predictor.set_image(_smooth_image(height, width, seed=height))
    embedding = Embedding(
        original_size=tuple(predictor.original_size),
        input_size=tuple(predictor.input_size),
        features=predictor.features.numpy(),
        fingerprint="tiny-test",
    )
    return predictor, embedding


def _stock(predictor, prompts: Prompts):
    points = prompts.points if len(prompts.points) else None
    return predictor.predict(
        point_coords=points,
        point_labels=prompts.labels if points is not None else None,
        box=prompts.box,
        mask_input=prompts.mask_input,
        multimask_output=prompts.multimask,
    )


def _assert_same(prediction, stock) -> None:
    masks, scores, low_res = stock
    assert prediction.masks.shape == masks.shape and prediction.masks.dtype == bool
    assert prediction.low_res_logits.shape == low_res.shape
    assert prediction.low_res_logits.dtype == np.float32
    np.testing.assert_allclose(prediction.low_res_logits, low_res, atol=ATOL, rtol=0)
    np.testing.assert_allclose(prediction.scores, scores, atol=ATOL, rtol=0)
    for ours, theirs in zip(prediction.masks, masks, strict=True):
        assert _iou(ours, theirs) >= 0.999


def _pts(*xy) -> np.ndarray:
    return np.array(xy, np.float32).reshape(-1, 2)


def _prompt_cases(height: int, width: int) -> dict[str, Prompts]:
    w, h = width, height
    box = np.array([0.2 * w, 0.25 * h, 0.7 * w, 0.8 * h], np.float32)
    return {
        "one point, multimask": Prompts(_pts(0.4 * w, 0.5 * h), np.array([1], np.int32)),
        "one point, single": Prompts(
            _pts(0.6 * w, 0.3 * h), np.array([1], np.int32), multimask=False
        ),
        "fg fg bg points, single": Prompts(
            _pts(0.3 * w, 0.3 * h, 0.5 * w, 0.6 * h, 0.9 * w, 0.1 * h),
            np.array([1, 1, 0], np.int32),
            multimask=False,
        ),
        "box, single": Prompts(box=box, multimask=False),
        "box, multimask": Prompts(box=box, multimask=True),
        "box and points, multimask": Prompts(
            _pts(0.45 * w, 0.5 * h, 0.25 * w, 0.3 * h), np.array([1, 0], np.int32), box=box
        ),
        "point on the last pixel": Prompts(_pts(w - 1, h - 1), np.array([1], np.int32)),
    }


@pytest.mark.parametrize(
    "case",
    [
        "one point, multimask",
        "one point, single",
        "fg fg bg points, single",
        "box, single",
        "box, multimask",
        "box and points, multimask",
        "point on the last pixel",
    ],
)
def test_matches_sam_predictor(decoder, encoded, case):
    predictor, embedding = encoded
    prompts = _prompt_cases(*embedding.original_size)[case]
    _assert_same(decoder.decode(embedding, prompts), _stock(predictor, prompts))


def test_three_click_refinement_chain_feeds_logits_back(decoder, encoded):
    """First click multimask; each later click adds a point and the best previous logits."""
    predictor, embedding = encoded
    height, width = embedding.original_size
    clicks = [(0.4 * width, 0.5 * height, 1), (0.7 * width, 0.4 * height, 0)]
    clicks.append((0.3 * width, 0.7 * height, 1))
    ours_logits = stock_logits = None
    for step in range(len(clicks)):
        points = _pts(*[c for x, y, _ in clicks[: step + 1] for c in (x, y)])
        labels = np.array([lab for _, _, lab in clicks[: step + 1]], np.int32)
        ours = decoder.decode(
            embedding, Prompts(points, labels, mask_input=ours_logits, multimask=step == 0)
        )
        stock = _stock(
            predictor, Prompts(points, labels, mask_input=stock_logits, multimask=step == 0)
        )
        _assert_same(ours, stock)
        best = ours.best_index()
        assert best == int(np.argmax(stock[1]))
        ours_logits = ours.low_res_logits[best][None]
        stock_logits = stock[2][best][None]


def test_empty_prompts_are_refused(decoder, encoded):
    with pytest.raises(ValueError):
        decoder.decode(encoded[1], Prompts())


def test_export_is_reused_and_corrupt_files_are_replaced(tiny_sam_reference, tmp_path):
    from annotator.engines.onnx_decoder import OnnxMaskDecoder

    first = OnnxMaskDecoder.load_or_export(tiny_sam_reference, "fp-1", tmp_path)
    path = tmp_path / "fp-1.onnx"
    assert first.path == path and path.is_file()
    stamp = path.stat().st_mtime_ns
    OnnxMaskDecoder.load_or_export(tiny_sam_reference, "fp-1", tmp_path)
    assert path.stat().st_mtime_ns == stamp  # reused, not exported again

    path.write_bytes(path.read_bytes()[:1000])  # truncated by a crash or a full disk
    again = OnnxMaskDecoder.load_or_export(tiny_sam_reference, "fp-1", tmp_path)
    assert again.session is not None and path.stat().st_size > 1000
    # no temp files left; the stamp of the verified file beside it
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fp-1.onnx", "fp-1.onnx.verified"]


def test_a_verified_file_is_not_checked_again_until_its_bytes_change(
    tiny_sam_reference, tmp_path, monkeypatch
):
    import onnx
    from onnx import numpy_helper

    from annotator.engines.onnx_decoder import OnnxMaskDecoder

    OnnxMaskDecoder.load_or_export(tiny_sam_reference, "fp-v", tmp_path)
    checks = []
    real_check = OnnxMaskDecoder.check_against
    monkeypatch.setattr(
        OnnxMaskDecoder, "check_against", lambda self, m: checks.append(1) or real_check(self, m)
    )
    OnnxMaskDecoder.load_or_export(tiny_sam_reference, "fp-v", tmp_path)
    assert checks == []  # the stamp matches these bytes under this onnxruntime
    path = tmp_path / "fp-v.onnx"
    model = onnx.load(str(path))
    biggest = max(model.graph.initializer, key=lambda t: np.prod(t.dims))
    biggest.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(biggest) * 1.5, biggest.name))
    onnx.save(model, str(path))  # damaged after it was verified, still well-formed
    repaired = OnnxMaskDecoder.load_or_export(tiny_sam_reference, "fp-v", tmp_path)
    assert len(checks) == 2  # the damaged file checked (and refused), the new export checked
    real_check(repaired, tiny_sam_reference)


def test_file_of_another_model_is_not_reused(decoder, tiny_sam_reference, tmp_path):
    import shutil

    from annotator.engines.onnx_decoder import OnnxMaskDecoder

    shutil.copy(decoder.path, tmp_path / "fp-b.onnx")  # exported as "tiny-test"
    with pytest.raises(ValueError):
        OnnxMaskDecoder(tmp_path / "fp-b.onnx", "fp-b")
    replaced = OnnxMaskDecoder.load_or_export(tiny_sam_reference, "fp-b", tmp_path)
    assert replaced.fingerprint == "fp-b"


def test_physical_cores_is_positive():
    from annotator.engines.onnx_decoder import physical_cores

    assert 1 <= physical_cores() <= (__import__("os").cpu_count() or 1)


def test_file_with_damaged_weights_is_detected_and_replaced(decoder, tiny_sam_reference, tmp_path):
    import onnx
    from onnx import numpy_helper

    from annotator.engines.onnx_decoder import OnnxMaskDecoder

    model = onnx.load(str(decoder.path))
    biggest = max(model.graph.initializer, key=lambda t: np.prod(t.dims))
    damaged = numpy_helper.to_array(biggest) * 1.5  # still a well-formed file
    biggest.CopyFrom(numpy_helper.from_array(damaged, biggest.name))
    path = tmp_path / "tiny-test.onnx"
    onnx.save(model, str(path))
    loaded = OnnxMaskDecoder(path, "tiny-test")  # parses, right format and fingerprint...
    with pytest.raises(ValueError):
        loaded.check_against(tiny_sam_reference)  # ...but not this model
    repaired = OnnxMaskDecoder.load_or_export(tiny_sam_reference, "tiny-test", tmp_path)
    repaired.check_against(tiny_sam_reference)
    assert onnx.load(str(path)).graph.initializer != model.graph.initializer


@pytest.mark.parametrize("path", ["float32", "int16"])
@pytest.mark.parametrize("original_size", [(2100, 2800), (3000, 1400), (200, 150)])
def test_upscaling_matches_sam_postprocess(tiny_sam_reference, original_size, path):
    """Both upscaling paths against Sam.postprocess_masks, on smooth logits with many edges."""
    import cv2
    import torch

    from annotator.engines.onnx_decoder import upscale_masks

    rng = np.random.default_rng(sum(original_size))
    noise = rng.standard_normal((256, 256, 3)).astype(np.float32)
    low_res = np.ascontiguousarray(cv2.GaussianBlur(noise, (0, 0), 8).transpose(2, 0, 1) * 100)
    height, width = original_size
    scale = 1024 / max(height, width)
    input_size = (int(height * scale + 0.5), int(width * scale + 0.5))
    limit = 0 if path == "int16" else 10**9
    ours = upscale_masks(low_res, input_size, original_size, large_output_pixels=limit)
    with torch.no_grad():
        logits = tiny_sam_reference.postprocess_masks(
            torch.from_numpy(low_res)[None], input_size, original_size
        )
    stock = (logits[0] > tiny_sam_reference.mask_threshold).numpy()
    assert ours.shape == stock.shape and ours.dtype == bool
    for a, b in zip(ours, stock, strict=True):
        assert 0.1 < b.mean() < 0.9  # the probe has real edges
        assert _iou(a, b) >= 0.9995


def test_only_the_best_mask_is_made_before_decode_returns(decoder, encoded):
    """The displayed candidate is ready; the others are made on first access (also from another
    thread, as the window reads them) and equal SamPredictor's."""
    import threading

    from annotator.engines.onnx_decoder import upscale_masks

    predictor, embedding = encoded
    prompts = _prompt_cases(*embedding.original_size)["box and points, multimask"]
    prediction = decoder.decode(embedding, prompts)
    best = prediction.best_index()
    assert [prediction.is_made(i) for i in range(3)] == [i == best for i in range(3)]
    other = (best + 1) % 3
    made: list[np.ndarray] = []
    reader = threading.Thread(target=lambda: made.append(prediction.mask(other)))
    reader.start()
    reader.join(timeout=30)
    assert prediction.is_made(other) and not prediction.is_made(3 - best - other)
    eager = upscale_masks(prediction.low_res_logits, embedding.input_size, embedding.original_size)
    np.testing.assert_array_equal(made[0], eager[other])
    np.testing.assert_array_equal(prediction.masks, eager)
    _assert_same(prediction, _stock(predictor, prompts))


def test_big_image_candidates_match_sam_predictor(decoder, tiny_sam_reference):
    """Above LARGE_OUTPUT_PIXELS (the int16 upscaling, scratch buffer reused across decodes)."""
    from segment_anything import SamPredictor

    height, width = 1800, 2400  # 4.3 M pixels per mask
    predictor = SamPredictor(tiny_sam_reference)
    predictor.set_image(_smooth_image(height, width, seed=7))
    embedding = Embedding(
        (height, width), tuple(predictor.input_size), predictor.features.numpy(), "tiny-test"
    )
    for case in ("one point, multimask", "box, single"):
        prompts = _prompt_cases(height, width)[case]
        _assert_same(decoder.decode(embedding, prompts), _stock(predictor, prompts))
