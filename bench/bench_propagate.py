"""Propagation speed and memory on the CPU: Annotator's propagator against sam2's own
SAM2VideoPredictor in the same process, random weights at the official sizes (speed does not
depend on their values), synthetic frames with one object prompted by a box on frame 0.

    python bench/bench_propagate.py [--sizes t,b+] [--heights 480,1080] [--frames 4]

Per row: frames per second of a whole run (frame loading, the prompt, propagation: frames over
seconds), the two runs stepped in lock-step frame by frame (which goes first alternates; after one
unmeasured warm-up run), so that other processes' load on a shared machine falls on both alike;
what each holds after the run (decoded frames, per-frame outputs; both also hold the current
frame's features, about 100 MiB, not counted) and that per 100 frames. The stock predictor decodes every frame up front into one
tensor and keeps every frame's memory; ours reads frames on demand and drops the memories the
model can no longer read (16 frames either side of the current and the prompted frames), so what it
holds stops growing: per 100 frames is the measured size of one frame's outputs (and for the stock,
of one decoded frame) times 100, for ours times the frames it keeps at most (66), extrapolated
from these short runs. Runs are short (a few frames on 2 shared cores): the memory attention reads more
memories as frames accumulate (up to 7), so later frames are slower than these first ones; the
figures are an honest lower bound of time, not a steady state. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (sets THP_MEM_ALLOC_ENABLE before torch)
from _common import synthetic_image

WIDTH_OF = {480: 854, 1080: 1920}


def _bytes(value) -> int:
    """Bytes of the tensors in `value` (nested dicts, lists), each storage once."""
    import torch

    seen: set[int] = set()
    total = 0

    def walk(value) -> None:
        nonlocal total
        if isinstance(value, torch.Tensor):
            key = value.untyped_storage().data_ptr()
            if key not in seen:
                seen.add(key)
                total += value.untyped_storage().nbytes()
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)

    walk(value)
    return total


def _frames(folder: Path, count: int, height: int) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    base = synthetic_image(height, WIDTH_OF[height])
    paths = []
    for i in range(count):
        frame = base.copy()
        frame[height // 4 : height // 2, 40 + 8 * i : 40 + 8 * i + height // 4] = (230, 40, 40)
        path = folder / f"{i:05d}.jpg"
        Image.fromarray(frame).save(path, quality=90)
        paths.append(path)
    return paths


def _box(height: int) -> tuple[float, float, float, float]:
    return (30.0, height / 4 - 10, 50.0 + height / 4, height / 2 + 10)


def run_both(stock, propagator, paths: list[Path], height: int) -> dict:
    """Both propagations over the same frames, stepped in lock-step (one frame of one, then of
    the other, which goes first alternating), so that the load of other processes on the machine
    falls on both alike. Returns per-run seconds (set-up: frame loading and the prompt; then the
    sum of the frame steps) and what each holds at the end."""
    import numpy as np
    import torch

    from annotator.core.images import load_image
    from annotator.engines.sam2_video import TrackPrompt

    seconds = {"ours": 0.0, "stock": 0.0}
    start = time.perf_counter()
    stock_state = stock.init_state(str(paths[0].parent))  # decodes every frame
    with torch.inference_mode():
        stock.add_new_points_or_box(stock_state, 0, 1, box=np.asarray(_box(height), np.float32))
    seconds["stock"] += time.perf_counter() - start
    start = time.perf_counter()
    ours_state = propagator.init_state(lambda i: load_image(paths[i]), len(paths))
    propagator.add_prompt(ours_state, TrackPrompt(1, 0, box=_box(height)))
    seconds["ours"] += time.perf_counter() - start

    def stock_frames():
        with torch.inference_mode():
            yield from stock.propagate_in_video(stock_state, start_frame_idx=0)

    runs = {"ours": propagator.propagate(ours_state, 0, "forward"), "stock": stock_frames()}
    for step in range(len(paths)):
        for name in ("ours", "stock") if step % 2 == 0 else ("stock", "ours"):
            start = time.perf_counter()
            next(runs[name])
            seconds[name] += time.perf_counter() - start
    return {
        "seconds": seconds,
        "stock_frames": _bytes(stock_state["images"]),
        "stock_outputs": _bytes(stock_state["output_dict_per_obj"]),
        "ours_outputs": _bytes(ours_state["output_dict_per_obj"]),
    }


def main() -> None:
    import torch

    from annotator.engines.sam2 import Sam2Architecture
    from annotator.engines.sam2_video import VideoPropagator, _build_predictor

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="t,b+")
    parser.add_argument("--heights", default="480,1080")
    parser.add_argument("--frames", type=int, default=4)
    args = parser.parse_args()
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; {args.frames} frames a run"
    )
    print(
        "size  frames  ours fps  stock fps  ratio | held after the run: ours  stock | "
        "per 100 frames: ours  stock"
    )
    work = Path(tempfile.mkdtemp(prefix="bench-propagate-"))
    for size in args.sizes.split(","):
        embed, stages = {"t": (96, (1, 2, 7, 2)), "b+": (112, (2, 3, 16, 3))}[size]
        bkg = (7, 7) if size != "b+" else (14, 14)
        arch = Sam2Architecture(f"sam2.1_hiera_{size}", "sam2.1", size, embed, stages, bkg, 8)
        stock = _build_predictor(arch)  # the stock class from the official config
        for p in stock.parameters():
            p.data.normal_(0, 0.02)
        stock = stock.float().eval().requires_grad_(False)
        ours = VideoPropagator(stock, "cpu", size)  # the same module: only the driving differs
        warm = _frames(work / f"{size}-warm", 2, 480)
        run_both(stock, ours, warm, 480)  # one-time allocations and kernel choices: not measured
        for height in map(int, args.heights.split(",")):
            paths = _frames(work / f"{size}-{height}", args.frames, height)
            measured = run_both(stock, ours, paths, height)
            ours_s, stock_s = measured["seconds"]["ours"], measured["seconds"]["stock"]
            n = args.frames
            # per frame: the outputs (memories, masks) of one frame; ours keeps at most the
            # window either side of the prompted frame and of the current one
            per_frame = measured["stock_outputs"] / n
            kept = min(100, 2 * (2 * ours.window + 1))
            ours_100 = per_frame * kept
            stock_100 = (per_frame + measured["stock_frames"] / n) * 100
            stock_held = measured["stock_outputs"] + measured["stock_frames"]
            print(
                f"{size:<5} {height:>4}p  {n / ours_s:8.3f}  {n / stock_s:9.3f}  "
                f"{stock_s / ours_s:5.2f}x | {measured['ours_outputs'] / 2**20:10.1f} MiB  "
                f"{stock_held / 2**20:6.1f} MiB | "
                f"{ours_100 / 2**20:10.0f} MiB  {stock_100 / 2**30:5.2f} GiB",
                flush=True,
            )


if __name__ == "__main__":
    main()
