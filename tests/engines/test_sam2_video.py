"""Propagation equals sam2's SAM2VideoPredictor: identical boolean masks per frame, on a shrunk
random-weight SAM 2.1 saved as a checkpoint and loaded through the app's loader, frames read
lazily through the app's image loader."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("sam2")


@pytest.fixture(scope="module")
def propagator(sam2_video_checkpoint):
    from annotator.engines.sam2_video import load_propagator

    return load_propagator(sam2_video_checkpoint[0], "cpu")


def _frame_loader(folder):
    from annotator.core.images import load_image

    paths = sorted(folder.glob("*.jpg"))
    return (lambda i: load_image(paths[i])), len(paths)


def _reference(predictor, folder, prompts, start, reverse_passes):
    """sam2's own: init_state on the JPEG folder, the prompts, propagate_in_video."""
    import torch

    state = predictor.init_state(str(folder))
    with torch.inference_mode():
        for kind, frame, obj, value in prompts:
            if kind == "mask":
                predictor.add_new_mask(state, frame, obj, value)
            elif kind == "points":
                predictor.add_new_points_or_box(
                    state, frame, obj, points=value[0].astype(np.float32),
                    labels=value[1].astype(np.int32),
                )  # fmt: skip
            else:
                predictor.add_new_points_or_box(
                    state, frame, obj, box=np.asarray(value, np.float32)
                )
        masks = {}
        for reverse in reverse_passes:
            for frame, obj_ids, logits in predictor.propagate_in_video(
                state, start_frame_idx=start, reverse=reverse
            ):
                masks[frame] = {o: (logits[i, 0] > 0.0).numpy() for i, o in enumerate(obj_ids)}
    return masks


def _ours(propagator, folder, prompts, start, direction):
    from annotator.engines.sam2_video import TrackPrompt

    load, count = _frame_loader(folder)
    state = propagator.init_state(load, count)
    for kind, frame, obj, value in prompts:
        if kind == "mask":
            propagator.add_prompt(state, TrackPrompt(obj, frame, mask=value))
        elif kind == "points":
            propagator.add_prompt(state, TrackPrompt(obj, frame, points=value[0], labels=value[1]))
        else:
            propagator.add_prompt(state, TrackPrompt(obj, frame, box=value))
    return {r.frame: r.masks for r in propagator.propagate(state, start, direction)}


def _assert_identical(ours, reference, count):
    assert sorted(ours) == sorted(reference) == list(range(count))
    for frame in reference:
        assert sorted(ours[frame]) == sorted(reference[frame])
        for obj, mask in reference[frame].items():
            assert ours[frame][obj].dtype == bool
            assert np.array_equal(ours[frame][obj], mask), (frame, obj)


def test_points_and_box_both_directions_equal_the_video_predictor(
    propagator, sam2_video_checkpoint, sequence_frames
):
    prompts = [
        ("points", 3, 1, (np.array([[20.0, 32.0], [60.0, 10.0]]), np.array([1, 0]))),
        ("box", 3, 2, (60.0, 46.0, 86.0, 68.0)),
    ]
    reference = _reference(sam2_video_checkpoint[1], sequence_frames, prompts, 3, [False, True])
    ours = _ours(propagator, sequence_frames, prompts, 3, "both")
    _assert_identical(ours, reference, 8)
    # the random model still tracks something: not all frames empty for both objects
    assert any(m.any() for f in ours.values() for m in f.values())


def test_mask_prompt_backward_equals_the_video_predictor(
    propagator, sam2_video_checkpoint, sequence_frames
):
    mask = np.zeros((72, 96), bool)
    mask[18:48, 29:57] = True  # the red shape on the last frame
    prompts = [("mask", 7, 5, mask)]
    reference = _reference(sam2_video_checkpoint[1], sequence_frames, prompts, 7, [True])
    ours = _ours(propagator, sequence_frames, prompts, 7, "backward")
    _assert_identical(ours, reference, 8)
    assert ours[7][5].sum() > 0


def test_dropping_out_of_reach_frames_changes_no_mask_and_bounds_memory(sequence_frames):
    """With a model that reads back 2 frames (memories and object pointers), the outputs the
    window drops are never read: masks equal the stock predictor's, which keeps them all."""
    from family_factory import build_sam2_video_small

    from annotator.engines.sam2_video import TrackPrompt, VideoPropagator

    stock = build_sam2_video_small(extra=("++model.max_obj_ptrs_in_encoder=2",))
    prompts = [("points", 0, 1, (np.array([[20.0, 32.0]]), np.array([1])))]
    reference = _reference(stock, sequence_frames, prompts, 0, [False])

    propagator = VideoPropagator(stock, "cpu", "stock, windowed")
    assert propagator.window == 2
    load, count = _frame_loader(sequence_frames)
    state = propagator.init_state(load, count)
    propagator.add_prompt(state, TrackPrompt(1, 0, points=np.array([[20.0, 32.0]]), labels=[1]))
    ours, kept = {}, []
    for result in propagator.propagate(state, 0, "forward"):
        ours[result.frame] = result.masks
        kept.append(len(state["output_dict_per_obj"][0]["non_cond_frame_outputs"]))
    _assert_identical(ours, reference, 8)
    # the conditioning frame's neighbours (2) plus the last 2 (and the one just made)
    assert max(kept) <= 5 and kept[-1] < len(ours) - 1
