"""Prediction: immutable, masks made eagerly or lazily (once, thread-safely), same API either way."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from annotator.engines.base import Prediction


def _arrays(count: int = 3, size: tuple[int, int] = (5, 7)):
    rng = np.random.default_rng(count)
    masks = rng.random((count, *size)) > 0.5
    scores = np.array([0.2, 0.9, 0.5][:count], np.float32)
    logits = rng.standard_normal((count, 256, 256)).astype(np.float32)
    return masks, scores, logits


class _Maker:
    """make_mask that copies from known masks and counts its calls per index."""

    def __init__(self, masks: np.ndarray, gate: threading.Event | None = None) -> None:
        self.source = masks
        self.calls = [0] * len(masks)
        self.gate = gate

    def __call__(self, index: int, out: np.ndarray) -> None:
        self.calls[index] += 1
        if self.gate is not None:
            assert self.gate.wait(timeout=10)
        out[...] = self.source[index]


def test_eager_prediction_keeps_the_old_api():
    masks, scores, logits = _arrays()
    prediction = Prediction(masks=masks, scores=scores, low_res_logits=logits)
    np.testing.assert_array_equal(prediction.masks, masks)
    assert prediction.masks.shape == (3, 5, 7) and prediction.masks.dtype == bool
    np.testing.assert_array_equal(prediction.mask(2), masks[2])
    np.testing.assert_array_equal(prediction.mask(-1), masks[2])
    assert prediction.best_index() == 1 and len(prediction) == 3
    assert prediction.mask_size == (5, 7)
    assert all(prediction.is_made(i) for i in range(3))
    positional = Prediction(masks, scores, logits)
    np.testing.assert_array_equal(positional.low_res_logits, logits)


def test_prediction_is_immutable_from_the_callers_view():
    masks, scores, logits = _arrays()
    prediction = Prediction(masks=masks, scores=scores, low_res_logits=logits)
    with pytest.raises(AttributeError):
        prediction.scores = scores
    with pytest.raises(AttributeError):
        prediction.masks = masks
    with pytest.raises(ValueError):
        prediction.masks[0, 0, 0] = not masks[0, 0, 0]
    with pytest.raises(ValueError):
        prediction.mask(0)[0, 0] = True
    with pytest.raises(ValueError):
        prediction.scores[0] = 1.0
    with pytest.raises(ValueError):
        prediction.low_res_logits[0, 0, 0] = 1.0
    masks[0, 0, 0] = not masks[0, 0, 0]  # the producer's own array stays writable


def test_index_out_of_range_is_refused():
    masks, scores, logits = _arrays()
    prediction = Prediction.lazy(scores, logits, (5, 7), _Maker(masks))
    with pytest.raises(IndexError):
        prediction.mask(3)


def test_lazy_prediction_makes_eager_candidates_now_and_others_once_on_access():
    masks, scores, logits = _arrays()
    maker = _Maker(masks)
    prediction = Prediction.lazy(scores, logits, (5, 7), maker, eager=(1,))
    assert maker.calls == [0, 1, 0]
    assert [prediction.is_made(i) for i in range(3)] == [False, True, False]
    np.testing.assert_array_equal(prediction.mask(1), masks[1])
    np.testing.assert_array_equal(prediction.mask(2), masks[2])
    assert maker.calls == [0, 1, 1]
    np.testing.assert_array_equal(prediction.masks, masks)  # makes only the missing one
    np.testing.assert_array_equal(prediction.masks, masks)
    assert maker.calls == [1, 1, 1]
    assert not prediction.masks.flags.writeable
    assert "3 made" in repr(prediction)


def test_concurrent_readers_share_one_computation():
    """Readers on several threads while the mask is being made: made once, all see it."""
    masks, scores, logits = _arrays()
    gate = threading.Event()
    maker = _Maker(masks, gate)
    prediction = Prediction.lazy(scores, logits, (5, 7), maker)
    results: list[np.ndarray] = []
    started = threading.Barrier(5)

    def read() -> None:
        started.wait(timeout=10)
        results.append(prediction.masks)

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    started.wait(timeout=10)
    gate.set()  # let the first reader's make_mask finish
    for thread in threads:
        thread.join(timeout=10)
    assert maker.calls == [1, 1, 1]
    assert len(results) == 4
    for result in results:
        np.testing.assert_array_equal(result, masks)
