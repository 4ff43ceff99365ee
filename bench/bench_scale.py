"""A week of labelling at scale: 2,000 images x 25 annotations (640x480) in the real window.

    .venv/bin/python bench/bench_scale.py [--images 2000] [--per-image 25] [--turns 300]

Prints, with the goals of issue 11:
- time from `python -m annotator PROJECT.json` to the first painted frame (median of 3 launches;
  goal <= 1.5 s), in a fresh process;
- memory (RSS) growth over `--turns` page turns through the project with unsaved changes
  (goal <= 100 MB), after 10 warm-up turns;
- the page-turn stall: the longest the GUI thread is busy for one turn, the synchronous `go_to`
  and the slot that shows the loaded image with its overlay, each timed; median, p90 and max
  (goals: p90 <= 30 ms, max <= 50 ms);
- Accept All of 500 segment-everything proposals: one undo step; the time until the window has
  redrawn, and how many batches of events the view got (goal: 1).
- the journal's cost per edit on the GUI thread (median of 200 single-mask accepts; goal: well
  under 1 ms).
The window has no model (the classic engine), as a person who opens a project to review it.
Masks are SAM-like ellipses reused from a pool (bench_project_io.py); the images are one real
640x480 JPEG hard-linked 2,000 times.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from bench_project_io import HEIGHT, WIDTH, build_project  # noqa: E402

GOAL_LAUNCH_S = 1.5
GOAL_GROWTH_MB = 100
GOAL_P90_MS = 30
GOAL_MAX_MS = 50


def make_project(folder: Path, images: int, per_image: int) -> Path:
    from PIL import Image

    from annotator.core.coco import save_project

    project = build_project(folder, images, per_image)
    rng = np.random.default_rng(0)
    source = folder / "source.jpg"
    Image.fromarray(rng.integers(0, 255, (HEIGHT, WIDTH, 3), np.uint8)).save(source, quality=90)
    for record in project.images:
        target = folder / record.file_name
        target.unlink()
        os.link(source, target)
    return save_project(project)


def rss_mb() -> float:
    with open("/proc/self/statm") as stream:
        pages = int(stream.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def launch_seconds(path: Path, runs: int) -> list[tuple[float, float]]:
    """(seconds to the first frame, seconds to the project shown) of fresh launches."""
    results = []
    env = {**os.environ, "ANNOTATOR_BENCH_SHOWN": "1"}
    for _ in range(runs):
        start = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "annotator", str(path)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        shown = opened = None
        for line in process.stdout:
            if line.startswith("annotator-shown"):
                shown = time.perf_counter() - start
            if line.startswith("annotator-opened"):
                opened = time.perf_counter() - start
                break
        process.wait(timeout=300)
        if shown is None or opened is None:
            raise SystemExit("the window never reported its first frame and the project")
        results.append((shown, opened))
    return results


def in_window(path: Path, turns: int) -> dict:
    from PySide6.QtWidgets import QApplication

    from annotator.core.proposals import CompactProposal
    from annotator.core.session import AnnotationSession
    from annotator.qt.inference import EngineSpec
    from annotator.qt.main_window import MainWindow

    app = QApplication.instance() or QApplication([])
    session, _ = AnnotationSession.open(path)
    window = MainWindow(session, EngineSpec(None, device="cpu"))
    window.resize(1400, 900)
    window.show()
    window.start_inference()
    shown_ms: list[float] = []
    original = window._on_image_loaded

    def timed_loaded(*args):
        start = time.perf_counter()
        original(*args)
        shown_ms.append((time.perf_counter() - start) * 1000)

    window.loader.loaded.disconnect(window._on_image_loaded)
    window.loader.loaded.connect(timed_loaded)

    def settle(index: int) -> None:
        deadline = time.perf_counter() + 30
        while window.display is None or window.current_index != index:
            app.processEvents()
            if time.perf_counter() > deadline:
                raise SystemExit(f"image {index} never showed")
        app.processEvents()

    settle(0)
    # Unsaved changes from the start, as after a morning's work.
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[100:200, 100:300] = True
    window.session.add_mask(window.project.images[0].id, 1, mask)
    stalls: list[float] = []
    for index in range(1, 11):  # warm-up
        window.go_to(index)
        settle(index)
    start_rss = rss_mb()
    count = len(window.project.images)
    for turn in range(turns):
        index = 11 + turn % (count - 11)
        shown_ms.clear()
        start = time.perf_counter()
        window.go_to(index)
        sync_ms = (time.perf_counter() - start) * 1000
        settle(index)
        stalls.append(max([sync_ms, *shown_ms]))
    growth = rss_mb() - start_rss

    # Accept All of 500 proposals.
    window.go_to(0)
    settle(0)
    rng = np.random.default_rng(1)
    proposals = []
    for _ in range(500):
        m = np.zeros((HEIGHT, WIDTH), bool)
        y, x = int(rng.integers(0, HEIGHT - 40)), int(rng.integers(0, WIDTH - 40))
        m[y : y + int(rng.integers(5, 40)), x : x + int(rng.integers(5, 40))] = True
        proposals.append(CompactProposal.from_mask(m, 0.9, 0.9))
    record = window.current_record()
    window.session.set_proposals(record.id, str(window.project.image_path(record)), proposals)
    app.processEvents()
    batches = []
    window.session.add_listener(batches.append)
    start = time.perf_counter()
    window.accept_all_proposals()
    app.processEvents()
    accept_s = time.perf_counter() - start
    accept_batches = len(batches)
    undo_steps = window.stack.count()

    # The journal's cost per edit on the GUI thread: the delta and the append of one accept.
    from annotator.core.journal import Delta
    from annotator.core.project import ProjectEvent

    small = np.zeros((HEIGHT, WIDTH), bool)
    small[10:30, 10:40] = True
    journal = window.session._journal
    costs = []
    for n in range(200):
        annotation = window.session.add_mask(record.id, 1, small)
        events = [ProjectEvent("annotations", (annotation.id,), (record.id,))]
        t0 = time.perf_counter()
        journal.append(10**6 + n, "push", "Add annotation", Delta.of(window.project, events), 0.0)
        costs.append((time.perf_counter() - t0) * 1000)
    window.session.stack.set_clean()
    window.session._base_unsaved = False
    window.close()
    return {
        "growth_mb": growth,
        "stalls": stalls,
        "accept_s": accept_s,
        "batches": accept_batches,
        "undo_steps_after": undo_steps,
        "journal_ms": statistics.median(costs),
        "journal_max_ms": max(costs),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--per-image", type=int, default=25)
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--launches", type=int, default=3)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        env_dirs = {k: str(Path(tmp) / k) for k in ("cache", "data", "config", "log")}
        for name, var in (
            ("cache", "ANNOTATOR_CACHE_DIR"),
            ("data", "ANNOTATOR_DATA_DIR"),
            ("config", "ANNOTATOR_CONFIG_DIR"),
            ("log", "ANNOTATOR_LOG_DIR"),
        ):
            os.environ[var] = env_dirs[name]
        folder = Path(tmp) / "project"
        folder.mkdir()
        path = make_project(folder, args.images, args.per_image)
        total = args.images * args.per_image
        print(f"{args.images} images x {args.per_image} = {total} annotations, {WIDTH}x{HEIGHT}")
        launches = launch_seconds(path, args.launches)
        launch = statistics.median(t for t, _ in launches)
        opened = statistics.median(t for _, t in launches)
        result = in_window(path, args.turns)
    stalls = sorted(result["stalls"])
    p90 = stalls[int(0.9 * (len(stalls) - 1))]
    median = statistics.median(stalls)
    worst = stalls[-1]

    def verdict(ok: bool) -> str:
        return "met" if ok else "MISSED"

    print(
        f"window visible        : {launch:6.2f} s median of {len(launches)} "
        f"(goal <= {GOAL_LAUNCH_S} s: {verdict(launch <= GOAL_LAUNCH_S)}); the project shown "
        f"after {opened:.2f} s (read on a thread behind a busy bar)"
    )
    print(
        f"memory over {args.turns} turns : {result['growth_mb']:+6.1f} MB "
        f"(goal <= {GOAL_GROWTH_MB} MB: {verdict(result['growth_mb'] <= GOAL_GROWTH_MB)})"
    )
    print(
        f"page-turn stall       : median {median:.1f} ms, p90 {p90:.1f} ms, max {worst:.1f} ms "
        f"(goals p90 <= {GOAL_P90_MS} ms: {verdict(p90 <= GOAL_P90_MS)}, "
        f"max <= {GOAL_MAX_MS} ms: {verdict(worst <= GOAL_MAX_MS)})"
    )
    print(
        f"accept all 500        : {result['accept_s'] * 1000:.0f} ms to redrawn, "
        f"{result['batches']} batch of events (goal 1: {verdict(result['batches'] == 1)})"
    )
    print(
        f"journal per edit      : median {result['journal_ms']:.3f} ms, max "
        f"{result['journal_max_ms']:.3f} ms on the GUI thread (goal < 1 ms: "
        f"{verdict(result['journal_ms'] < 1)})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
