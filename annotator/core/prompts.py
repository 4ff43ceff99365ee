"""The prompts a person is building on one image, with their history and predictions (no Qt).

A `PromptSession` is the state between "first click" and "Enter": foreground/background points,
at most one box, the prediction each step produced, and which of SAM's candidates is chosen.

Coordinates: (X, Y) float pixels of the original image, as in `annotator.engines.base`.

Refinement follows SamPredictor.predict's docstring: the first prompt, when it is a single point
(ambiguous), asks for 3 candidates; every later prompt feeds the chosen candidate's low-res
logits back as `mask_input` and asks for one mask.

Every edit bumps `revision`. A prediction is stored only if it was computed for the current
revision, so a result that arrives after the person clicked again (or pressed Backspace) is
dropped instead of shown.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from annotator.engines.base import Prediction, Prompts


@dataclass(frozen=True)
class PromptStep:
    """The prompt state after one edit, plus what the engine answered for it.

    points: Nx2 float32, (X, Y) pixels of the original image; labels: N int32 (1 fg, 0 bg).
    box: 4 float32 XYXY in original-image pixels, or None.
    revision: the session revision this state was created at.
    prediction: the engine's answer for exactly these prompts, or None while pending.
    candidate: index of the chosen mask in `prediction` (the best score by default).
    """

    points: np.ndarray
    labels: np.ndarray
    box: np.ndarray | None
    revision: int
    prediction: Prediction | None = None
    candidate: int = 0


class PromptSession:
    """Points, box, history and candidates for the object being segmented on one image."""

    def __init__(self) -> None:
        self._steps: list[PromptStep] = []
        self.revision = 0

    # ----------------------------------------------------------------- state
    @property
    def steps(self) -> tuple[PromptStep, ...]:
        return tuple(self._steps)

    def is_empty(self) -> bool:
        return not self._steps

    @property
    def points(self) -> np.ndarray:
        """Nx2 float32 (X, Y) original-image pixels of every point, oldest first."""
        return self._steps[-1].points if self._steps else np.zeros((0, 2), np.float32)

    @property
    def labels(self) -> np.ndarray:
        """N int32: 1 foreground, 0 background, aligned with `points`."""
        return self._steps[-1].labels if self._steps else np.zeros((0,), np.int32)

    @property
    def box(self) -> np.ndarray | None:
        """4 float32 XYXY in original-image pixels, or None."""
        return self._steps[-1].box if self._steps else None

    # ----------------------------------------------------------------- edits
    def add_point(self, x: float, y: float, positive: bool) -> int:
        """Add a foreground (positive) or background point; returns the new revision."""
        points = np.concatenate([self.points, np.array([[x, y]], np.float32)])
        labels = np.concatenate([self.labels, np.array([1 if positive else 0], np.int32)])
        return self._push(points, labels, self.box)

    def set_box(self, x0: float, y0: float, x1: float, y1: float) -> int:
        """Set (replace) the box from two corners in any order; returns the new revision."""
        box = np.array([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], np.float32)
        return self._push(self.points, self.labels, box)

    def undo_last(self) -> bool:
        """Remove the last prompt (Backspace); the prediction before it shows again."""
        if not self._steps:
            return False
        self._steps.pop()
        self.revision += 1
        return True

    def clear(self) -> None:
        """Forget every prompt (Esc, accept, or a new image)."""
        self._steps.clear()
        self.revision += 1

    def _push(self, points: np.ndarray, labels: np.ndarray, box: np.ndarray | None) -> int:
        self.revision += 1
        self._steps.append(PromptStep(points, labels, box, self.revision))
        return self.revision

    # ----------------------------------------------------------------- engine
    def to_prompts(self) -> Prompts:
        """The engine request for the current state (must not be empty).

        With a previous step's prediction at hand, its chosen candidate's 1x256x256 logits go
        in as `mask_input` and one mask is asked for; otherwise a lone point asks for 3.
        """
        if not self._steps:
            raise ValueError("no prompts to decode")
        current = self._steps[-1]
        previous = self._previous_prediction_step()
        if previous is not None:
            logits = previous.prediction.low_res_logits[previous.candidate]
            return Prompts(
                points=current.points,
                labels=current.labels,
                box=current.box,
                mask_input=np.ascontiguousarray(logits[None], dtype=np.float32),
                multimask=False,
            )
        ambiguous = len(current.points) == 1 and current.box is None
        return Prompts(current.points, current.labels, current.box, None, multimask=ambiguous)

    def _previous_prediction_step(self) -> PromptStep | None:
        # Only the step directly before: if it never got a prediction (clicks made while the
        # embedding was computing), there are no logits to refine and we decode from scratch.
        if len(self._steps) < 2:
            return None
        previous = self._steps[-2]
        return previous if previous.prediction is not None else None

    def set_prediction(self, revision: int, prediction: Prediction) -> bool:
        """Store the engine's answer for `revision`; False (dropped) if the state moved on."""
        if not self._steps or self._steps[-1].revision != revision:
            return False
        self._steps[-1] = replace(
            self._steps[-1], prediction=prediction, candidate=prediction.best_index()
        )
        return True

    # ----------------------------------------------------------------- candidates
    @property
    def prediction(self) -> Prediction | None:
        """The current step's prediction (None while it is being computed)."""
        return self._steps[-1].prediction if self._steps else None

    @property
    def pending(self) -> bool:
        """True when the current prompts have no prediction yet."""
        return bool(self._steps) and self._steps[-1].prediction is None

    @property
    def candidate_count(self) -> int:
        prediction = self.prediction
        return 0 if prediction is None else len(prediction.scores)

    @property
    def candidate(self) -> int:
        return self._steps[-1].candidate if self._steps else 0

    def cycle_candidate(self, step: int = 1) -> bool:
        """Choose the next of the current candidates (Tab); False if there is only one."""
        count = self.candidate_count
        if count < 2:
            return False
        last = self._steps[-1]
        self._steps[-1] = replace(last, candidate=(last.candidate + step) % count)
        return True

    def shown_step(self) -> PromptStep | None:
        """The newest step that has a prediction: what the canvas shows.

        While the current step is pending, the previous mask stays visible instead of blinking
        away; it belongs to this same image and prompt history, so it is never a stale result.
        """
        for step in reversed(self._steps):
            if step.prediction is not None:
                return step
        return None

    def mask(self) -> np.ndarray | None:
        """HxW bool: the chosen candidate of the shown step, or None."""
        step = self.shown_step()
        return None if step is None else step.prediction.mask(step.candidate)

    def score(self) -> float | None:
        """The model's predicted IoU of `mask()`, or None."""
        step = self.shown_step()
        return None if step is None else float(step.prediction.scores[step.candidate])

    def accepted_mask(self) -> np.ndarray | None:
        """HxW bool to turn into an annotation: the current step's chosen mask, only if ready."""
        prediction = self.prediction
        return None if prediction is None else prediction.mask(self.candidate)
