"""Image embedding: stock `SamPredictor.set_image` vs `SamEngine.encode` (vit_b, random weights).

Prints, for 1024x768 and 4000x3000 images: median seconds of each over --repeat runs in this
process and their ratio; peak resident memory of each, measured in a fresh child process; how far
the fast (exact) and bf16 (lossy, opt-in) embeddings and masks are from stock.
Goals (issue 4): embedding time <= 0.45x stock and peak memory <= 0.5x stock on the exact path.

    .venv/bin/python bench/bench_embedding.py [--repeat 3] [--sizes 1024x768,4000x3000]
        [--no-memory] [--no-bf16]
"""

from __future__ import annotations

import argparse
import functools

import _common  # sets THP_MEM_ALLOC_ENABLE before anything imports torch
import numpy as np
from _common import gib, interleaved_times, peak_rss_in_child, ratio, synthetic_image

TIME_GOAL, MEMORY_GOAL = 0.45, 0.5


def _prompts(width: int, height: int):
    """A few prompt sets spread over the image (original pixels)."""
    from annotator.engines.base import Prompts

    def pt(fx, fy):
        return [fx * width, fy * height]

    box = np.array([0.2 * width, 0.25 * height, 0.7 * width, 0.8 * height], np.float32)
    return [
        Prompts(np.array([pt(0.3, 0.4)], np.float32), np.array([1], np.int32), multimask=True),
        Prompts(
            np.array([pt(0.6, 0.5), pt(0.1, 0.9)], np.float32),
            np.array([1, 0], np.int32),
            multimask=False,
        ),
        Prompts(box=box, multimask=False),
        Prompts(np.array([pt(0.5, 0.5)], np.float32), np.array([1], np.int32), box=box),
    ]


def _iou(a, b) -> float:
    union = np.logical_or(a, b).sum()
    return 1.0 if union == 0 else float(np.logical_and(a, b).sum() / union)


def _compare_masks(engine, embedding, predictor, width: int, height: int) -> tuple[float, float]:
    """(smallest mask IoU, largest low-res logit difference) of `engine` vs the stock predictor."""
    worst_iou, worst_logit = 1.0, 0.0
    for prompts in _prompts(width, height):
        masks, _, logits = predictor.predict(
            point_coords=prompts.points if len(prompts.points) else None,
            point_labels=prompts.labels if len(prompts.points) else None,
            box=prompts.box,
            multimask_output=prompts.multimask,
        )
        ours = engine.decode(embedding, prompts)
        for a, b in zip(ours.masks, masks, strict=True):
            worst_iou = min(worst_iou, _iou(a, b))
        worst_logit = max(worst_logit, float(np.abs(ours.low_res_logits - logits).max()))
    return worst_iou, worst_logit


# -- child-process memory measurements (module-level: they are pickled to a spawned process) --


def _setup_stock(height: int, width: int):
    from segment_anything import SamPredictor

    return SamPredictor(_common.stock_vit_b()), synthetic_image(height, width)


def _run_stock(state) -> None:
    predictor, image = state
    predictor.set_image(image)


def _setup_engine(height: int, width: int, encoder: str):
    from annotator.engines.sam import load_sam

    engine = load_sam(_common.vit_b_checkpoint(), device="cpu", encoder=encoder, decoder="torch")
    return engine, synthetic_image(height, width)


def _run_engine(state) -> None:
    engine, image = state
    engine.encode(image)


def _peak(setup, run) -> dict:
    return peak_rss_in_child(setup, run)


# ---------------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sizes", default="1024x768,4000x3000", help="WIDTHxHEIGHT,...")
    parser.add_argument("--no-memory", action="store_true", help="skip the child-process peaks")
    parser.add_argument("--no-bf16", action="store_true", help="skip the lossy bf16 option")
    args = parser.parse_args()
    sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]

    import torch
    from segment_anything import SamPredictor

    from annotator.engines.sam import load_sam

    checkpoint = _common.vit_b_checkpoint()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, vit_b random weights")
    predictor = SamPredictor(_common.stock_vit_b())
    fast = load_sam(checkpoint, device="cpu", encoder="fast", decoder="torch")
    print(f"fast engine: {fast.describe()}")
    bf16 = None
    if not args.no_bf16:
        bf16 = load_sam(checkpoint, device="cpu", encoder="bf16", decoder="torch")

    for width, height in sizes:
        _bench_size(width, height, predictor, fast, bf16, args)
    return 0


def _bench_size(width: int, height: int, predictor, fast, bf16, args) -> None:
    """Time, compare and measure the memory of one image size; prints its lines."""
    image = synthetic_image(height, width)
    print(f"\n== {width}x{height} ==")
    fns = {"stock": lambda: predictor.set_image(image), "fast": lambda: fast.encode(image)}
    if bf16 is not None:
        fns["bf16"] = lambda: bf16.encode(image)
    times = interleaved_times(fns, args.repeat)  # alternated: shared-CPU load hits all alike
    stock = times["stock"]
    print(f"stock set_image : median {stock['median']:6.2f} s  {_fmt(stock)}")
    for name, label in (("fast", "fast encode    "), ("bf16", "bf16 (lossy)   ")):
        if name not in times:
            continue
        ours = times[name]
        goal = ""
        if name == "fast":
            met = ours["median"] <= TIME_GOAL * stock["median"]
            goal = f"  (goal <= {TIME_GOAL}x: {'met' if met else 'MISSED'})"
        print(
            f"{label} : median {ours['median']:6.2f} s  {_fmt(ours)}  "
            f"ratio {ratio(ours['median'], stock['median'])} "
            f"(cpu {ratio(ours['cpu'], stock['cpu'])}){goal}"
        )
    for name, engine in (("fast", fast), ("bf16", bf16)):
        if engine is None:
            continue
        embedding = engine.encode(image)
        feature_diff = float(np.abs(embedding.features - predictor.features.numpy()).max())
        iou, logit = _compare_masks(engine, embedding, predictor, width, height)
        print(
            f"{name} vs stock{' ' * (6 - len(name))}: embedding max |diff| {feature_diff:.2e}, "
            f"mask IoU min {iou:.5f}, low-res logit max |diff| {logit:.2e}"
        )
    if not args.no_memory:
        stock_mem = _peak(functools.partial(_setup_stock, height, width), _run_stock)
        fast_mem = _peak(functools.partial(_setup_engine, height, width, "fast"), _run_engine)
        print(
            f"peak RSS (child): stock {gib(stock_mem['peak'])} "
            f"(+{gib(stock_mem['during'])} during set_image), "
            f"fast {gib(fast_mem['peak'])} (+{gib(fast_mem['during'])} during encode), "
            f"ratio {ratio(fast_mem['peak'], stock_mem['peak'])} (goal <= {MEMORY_GOAL}x: "
            f"{'met' if fast_mem['peak'] <= MEMORY_GOAL * stock_mem['peak'] else 'MISSED'})"
        )


def _fmt(timing: dict) -> str:
    runs = ", ".join(f"{t:.2f}" for t in timing["runs"])
    return f"runs [{runs}] cpu {timing['cpu']:.2f} s"


if __name__ == "__main__":
    raise SystemExit(main())
