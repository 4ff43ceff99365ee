"""PromptSession without Qt or a model: refinement, candidates, history, stale results."""

from __future__ import annotations

import numpy as np
import pytest

from annotator.core.prompts import PromptSession
from annotator.engines.base import Prediction


def _prediction(count: int, seed: int, scores=None) -> Prediction:
    rng = np.random.default_rng(seed)
    masks = rng.random((count, 8, 10)) > 0.5
    scores = np.asarray(scores if scores is not None else rng.random(count), np.float32)
    logits = rng.standard_normal((count, 256, 256)).astype(np.float32)
    return Prediction(masks=masks, scores=scores, low_res_logits=logits)


def test_first_single_point_asks_for_three_candidates_without_logits():
    session = PromptSession()
    session.add_point(3.5, 4.0, positive=True)
    prompts = session.to_prompts()
    assert prompts.multimask is True
    assert prompts.mask_input is None
    np.testing.assert_array_equal(prompts.points, [[3.5, 4.0]])
    assert prompts.points.dtype == np.float32
    np.testing.assert_array_equal(prompts.labels, [1])


def test_first_box_asks_for_one_mask():
    session = PromptSession()
    session.set_box(9, 8, 1, 2)
    prompts = session.to_prompts()
    assert prompts.multimask is False
    np.testing.assert_array_equal(prompts.box, [1, 2, 9, 8])


def test_later_prompt_feeds_back_the_chosen_candidate_logits():
    session = PromptSession()
    revision = session.add_point(1, 1, True)
    first = _prediction(3, 0, scores=[0.2, 0.9, 0.5])
    assert session.set_prediction(revision, first)
    assert session.candidate == 1  # best score by default
    assert session.cycle_candidate()
    assert session.candidate == 2
    session.add_point(5, 5, False)
    prompts = session.to_prompts()
    assert prompts.multimask is False
    assert prompts.mask_input.shape == (1, 256, 256)
    np.testing.assert_array_equal(prompts.mask_input[0], first.low_res_logits[2])
    np.testing.assert_array_equal(prompts.labels, [1, 0])


def test_tab_cycles_all_candidates_and_wraps():
    session = PromptSession()
    revision = session.add_point(1, 1, True)
    prediction = _prediction(3, 1, scores=[0.9, 0.1, 0.2])
    session.set_prediction(revision, prediction)
    seen = []
    for _ in range(4):
        seen.append(session.candidate)
        np.testing.assert_array_equal(session.mask(), prediction.masks[session.candidate])
        assert session.score() == pytest.approx(prediction.scores[session.candidate])
        session.cycle_candidate()
    assert seen == [0, 1, 2, 0]


def test_single_candidate_does_not_cycle():
    session = PromptSession()
    revision = session.set_box(0, 0, 4, 4)
    session.set_prediction(revision, _prediction(1, 2))
    assert not session.cycle_candidate()


def test_stale_prediction_is_dropped():
    session = PromptSession()
    old = session.add_point(1, 1, True)
    session.add_point(2, 2, True)
    assert not session.set_prediction(old, _prediction(3, 3))
    assert session.mask() is None
    assert session.pending


def test_backspace_restores_the_mask_before_the_last_prompt():
    session = PromptSession()
    first_revision = session.add_point(1, 1, True)
    first = _prediction(3, 4, scores=[0.1, 0.2, 0.8])
    session.set_prediction(first_revision, first)
    second_revision = session.add_point(6, 2, False)
    second = _prediction(1, 5)
    session.set_prediction(second_revision, second)
    np.testing.assert_array_equal(session.mask(), second.masks[0])
    assert session.undo_last()
    np.testing.assert_array_equal(session.points, [[1, 1]])
    np.testing.assert_array_equal(session.mask(), first.masks[2])
    assert session.candidate_count == 3
    # the late result for the removed step must not come back
    assert not session.set_prediction(second_revision, second)
    assert session.undo_last()
    assert session.is_empty() and session.mask() is None
    assert not session.undo_last()


def test_previous_mask_stays_visible_while_next_is_pending():
    session = PromptSession()
    revision = session.add_point(1, 1, True)
    first = _prediction(3, 6)
    session.set_prediction(revision, first)
    session.add_point(3, 3, True)
    assert session.pending
    np.testing.assert_array_equal(session.mask(), first.masks[first.best_index()])
    assert session.accepted_mask() is None  # Enter waits for the current answer


def test_clicks_before_any_prediction_decode_from_scratch():
    session = PromptSession()
    session.add_point(1, 1, True)
    session.add_point(2, 2, True)
    prompts = session.to_prompts()
    assert prompts.mask_input is None
    assert prompts.multimask is False  # two points are not ambiguous
    assert len(prompts.points) == 2


def test_clear_bumps_revision_and_empties():
    session = PromptSession()
    revision = session.add_point(1, 1, True)
    session.clear()
    assert session.revision > revision
    assert session.is_empty()
    with pytest.raises(ValueError):
        session.to_prompts()


def test_box_and_points_combine():
    session = PromptSession()
    session.add_point(2, 2, True)
    session.set_box(0, 0, 5, 5)
    prompts = session.to_prompts()
    np.testing.assert_array_equal(prompts.box, [0, 0, 5, 5])
    assert len(prompts.points) == 1
