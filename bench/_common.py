"""Helpers shared by the benchmarks: a vit_b-sized random SAM, medians, peak memory in a child.

Speed does not depend on the weights' values, so benchmarks use the vit_b architecture with random
weights (tests/sam_factory.py), saved once to a temp file and reused by later runs.

    from _common import vit_b_checkpoint, median_time, interleaved_times, peak_rss_in_child

`THP_MEM_ALLOC_ENABLE=1` is set here before torch is imported (as the Makefile does for the app):
import this module before torch in a benchmark script.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

REPO = Path(__file__).resolve().parents[1]
for _p in (REPO, REPO / "tests"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

BENCH_DIR = Path(tempfile.gettempdir()) / "annotator-bench"


def vit_b_checkpoint() -> Path:
    """Path of a vit_b-architecture SAM checkpoint with random weights (built once, ~375 MB)."""
    from sam_factory import VIT_B_CONFIG, build_sam, save_checkpoint

    path = BENCH_DIR / "sam_vit_b_random.pth"
    if not path.exists():
        BENCH_DIR.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        save_checkpoint(build_sam(**VIT_B_CONFIG), tmp)
        os.replace(tmp, path)
    return path


def stock_vit_b(device: str = "cpu"):
    """segment_anything's own vit_b `Sam` with the random weights of `vit_b_checkpoint()`."""
    from sam_factory import VIT_B_CONFIG, load_reference

    return load_reference(vit_b_checkpoint(), VIT_B_CONFIG).to(device)


def synthetic_image(height: int, width: int, seed: int = 0):
    """An HxWx3 uint8 RGB image: smooth blobs plus noise (not constant, so masks vary)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.zeros((height, width, 3), np.float32)
    for channel in range(3):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        image[..., channel] = 128 + 100 * np.sin((xx - cx) / (width / 7)) * np.cos(
            (yy - cy) / (height / 5)
        )
    image += rng.normal(0, 10, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def median_time(fn: Callable[[], object], repeat: int = 3, warmup: int = 0) -> tuple[float, list]:
    """(median seconds, all timings) of `repeat` calls of `fn()` after `warmup` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times


def interleaved_times(fns: dict[str, Callable[[], object]], repeat: int = 3) -> dict[str, dict]:
    """Time several functions in alternation (A B A B ...), so that load from other processes on
    a shared machine hits all of them alike. Returns {name: {"median": wall s, "cpu": median
    process CPU s (all threads), "runs": [wall s, ...]}}."""
    walls: dict[str, list] = {name: [] for name in fns}
    cpus: dict[str, list] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            wall, cpu = time.perf_counter(), time.process_time()
            fn()
            walls[name].append(time.perf_counter() - wall)
            cpus[name].append(time.process_time() - cpu)
    return {
        name: {
            "median": statistics.median(walls[name]),
            "cpu": statistics.median(cpus[name]),
            "runs": walls[name],
        }
        for name in fns
    }


def _rss_bytes(field: str) -> int | None:
    """VmRSS / VmHWM of this process from /proc (Linux), in bytes; None elsewhere."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _reset_peak_rss() -> bool:
    """Reset this process's peak-RSS mark (Linux: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _child_measure(setup: Callable, run: Callable) -> dict:
    import resource

    state = setup()
    before = _rss_bytes("VmRSS") or 0
    reset = _reset_peak_rss()
    run(state)
    peak = _rss_bytes("VmHWM") if reset else None
    if peak is None:  # ru_maxrss: KiB on Linux, bytes on macOS; includes setup's own peak
        scale = 1 if sys.platform == "darwin" else 1024
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    return {"before": before, "peak": peak, "during": max(0, peak - before)}


def peak_rss_in_child(setup: Callable, run: Callable) -> dict:
    """Peak resident memory of `run(setup())`, measured in a fresh (spawned) Python process.

    `setup` and `run` must be module-level functions (picklable; the calling script needs an
    `if __name__ == "__main__":` guard). Returns bytes: {"before": RSS after setup, "peak": peak
    RSS of the process while `run` ran, "during": peak - before}.
    """
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
        return pool.submit(_child_measure, setup, run).result()


def gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.2f} GiB"


def ratio(ours: float, stock: float) -> str:
    return f"{ours / stock:.2f}x" if stock else "n/a"
