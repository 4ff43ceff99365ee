"""SAM 3 on the CPU: the full-size architecture (transformers' default Sam3Config, 840M
parameters, random weights: speed does not depend on their values), in the real window.

One process, one run (building the model takes ~17 s and ~5 GB): the window starts with a worker
whose engine loader imports transformers and builds the model there (the one-time import and the
build are the LOADING_MODEL phase, reported apart), then embeds one 1024x768 image (ENCODING), then
finds two phrases on it one after the other (FIND, each a worker task as Ctrl+F runs it). A 10 ms
heartbeat on the GUI thread measures the longest event-loop stall of each phase (goal <= 50 ms
while encoding and finding). Prints the encode time, each phrase's time and their median, and the
process's peak memory.

    python bench/bench_sam3.py [--device cpu] [--phrases cat "person with a helmet"]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import BENCH_DIR, synthetic_image  # noqa: E402


def full_size_engine(device: str):
    """The full-size SAM 3 with random weights behind the app's engine, its processor built
    from the default image processor and the CLIP tokenizer made from open_clip's BPE file."""
    from sam3_factory import write_clip_tokenizer_files
    from transformers import CLIPTokenizer, Sam3Config, Sam3ImageProcessor, Sam3Model, Sam3Processor

    from annotator.engines.families import ModelInfo
    from annotator.engines.sam3 import Sam3Architecture, Sam3Engine

    folder = BENCH_DIR / "sam3-tokenizer"
    write_clip_tokenizer_files(folder)
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
    processor = Sam3Processor(image_processor=Sam3ImageProcessor(), tokenizer=tokenizer)
    config = Sam3Config()
    model = Sam3Model(config).eval().requires_grad_(False).to(device)
    vit = config.vision_config.backbone_config
    text = config.text_config
    arch = Sam3Architecture(
        "sam3", vit.hidden_size, vit.num_hidden_layers, text.hidden_size,
        text.num_hidden_layers, vit.image_size, config.detr_decoder_config.num_queries,
    )  # fmt: skip
    info = ModelInfo("sam3", "sam3", arch)
    return Sam3Engine(model, processor, info, device=device, fingerprint="bench-random-sam3")


def run(device: str, phrases: list[str]) -> dict:
    import numpy as np
    from PIL import Image
    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from annotator.core.project import Project
    from annotator.qt.inference import EmbeddingState, EngineSpec, InferenceWorker
    from annotator.qt.main_window import MainWindow

    assert "transformers" not in sys.modules, "the GUI thread must not import transformers"
    work = Path(tempfile.mkdtemp(prefix="bench-sam3-"))
    os.environ["ANNOTATOR_CACHE_DIR"] = str(work / "cache")  # a real encode, not a cache hit
    image_path = work / "street.png"
    Image.fromarray(synthetic_image(768, 1024)).save(image_path)
    app = QApplication.instance() or QApplication([])
    project = Project.from_images([image_path], work / "annotations.json")
    loaded_at = {}

    def loader(spec):
        start = time.perf_counter()
        engine = full_size_engine(device)
        loaded_at["seconds"] = time.perf_counter() - start
        return engine

    worker = InferenceWorker(engine_loader=loader)
    window = MainWindow(project, EngineSpec("sam3-full-random", device=device), worker=worker)
    window.resize(1400, 900)
    window.show()
    draws: list[tuple[float, float, int]] = []  # (start, end, proposals) of outline drawing
    set_proposals = window.canvas.set_proposals

    def timed_set_proposals(proposals):
        start = time.perf_counter()
        set_proposals(proposals)
        draws.append((start, time.perf_counter(), len(proposals or ())))

    window.canvas.set_proposals = timed_set_proposals
    phase = {"name": "LOADING_MODEL"}
    ticks: list[tuple[float, str]] = []
    heartbeat = QTimer()
    heartbeat.setInterval(10)
    heartbeat.timeout.connect(lambda: ticks.append((time.perf_counter(), phase["name"])))
    heartbeat.start()
    window.start_inference()

    def wait(condition, what: str, limit: float = 1800) -> None:
        deadline = time.perf_counter() + limit
        while not condition():
            if time.perf_counter() > deadline:
                raise SystemExit(f"timed out waiting for {what}")
            if window.controller.state is EmbeddingState.FAILED:
                raise SystemExit(f"failed: {window.state_label.text()}")
            app.processEvents()
            time.sleep(0.001)

    wait(lambda: window.controller.engine_info is not None, "the model")
    phase["name"] = "ENCODING"
    wait(lambda: window.controller.state is EmbeddingState.READY, "the embedding")
    encode_seconds = window.controller.last_encode_seconds
    phrase_seconds, counts = [], []
    finished = []
    window.controller.task_finished.connect(finished.append)
    window.finder.bar.threshold.setValue(5)
    for phrase in phrases:
        phase["name"] = "FIND"
        window.finder.bar.phrase.setText(phrase)
        finished.clear()
        assert window.finder.find()
        wait(lambda: bool(finished), f"find {phrase!r}")
        phrase_seconds.append(finished[0].seconds)
        counts.append(len(window.proposals) if window.proposals is not None else 0)
    phase["name"] = "DONE"
    heartbeat.stop()
    window.session.stack.set_clean()
    window.close()
    window.controller.shutdown()
    times = np.array([t for t, _ in ticks])
    gaps, names = np.diff(times), [name for _, name in ticks[1:]]
    for i in range(len(gaps)):  # a gap that holds the GUI thread's drawing of the outlines
        if any(s < times[i + 1] and e > times[i] for s, e, n in draws if n):
            names[i] = "DRAW"
    stalls = {}
    for name in ("LOADING_MODEL", "ENCODING", "FIND", "DRAW"):
        mine = [g for g, n in zip(gaps, names, strict=True) if n == name]
        if mine:
            stalls[name] = (max(mine), float(np.percentile(mine, 99)), len(mine))
    return {
        "load": loaded_at.get("seconds", float("nan")),
        "encode": encode_seconds,
        "phrases": phrase_seconds,
        "counts": counts,
        "stalls": stalls,
        "draws": [(e - s, n) for s, e, n in draws if n],
        "peak_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--phrases", nargs="+", default=["cat", "person with a helmet"])
    args = parser.parse_args()
    import torch

    result = run(args.device, args.phrases)
    print(
        f"SAM 3 full size (random weights), {args.device}, torch threads {torch.get_num_threads()}"
    )
    print(f"import transformers + build the model (in the worker): {result['load']:.1f} s")
    print(f"encode 1024x768: {result['encode']:.1f} s")
    for phrase, seconds, count in zip(
        args.phrases, result["phrases"], result["counts"], strict=True
    ):
        print(f"find {phrase!r}: {seconds:.2f} s ({count} proposals above 0.05)")
    print(f"per phrase: median {statistics.median(result['phrases']):.2f} s")
    for name, (longest, p99, count) in result["stalls"].items():
        goal = " (goal <= 50 ms)" if name in ("ENCODING", "FIND") else ""
        print(
            f"event-loop stall while {name}: longest {longest * 1000:.0f} ms, "
            f"p99 {p99 * 1000:.0f} ms over {count} ticks{goal}"
        )
    for seconds, count in result["draws"]:
        print(f"drawing {count} outlines (GUI thread): {seconds * 1000:.0f} ms")
    print(f"peak memory: {result['peak_gb']:.1f} GB")


if __name__ == "__main__":
    main()
