"""Whole-process start-up: `annotator segment` against each family's own script, in fresh
processes, interleaved (A B A B ...) so that other load on the machine hits both alike.

    python bench/bench_startup.py [FAMILY ...]    # vit_b, mobilesam, hq_tiny, sam2.1_t, efficientvit_l0

For each family, three commands on the same 1024x768 image and the same random-weight checkpoint
(at the official size; speed does not depend on the values):
- reference: the family's own README path in a fresh `python -c` (import, build with the
  checkpoint, set_image, predict one point);
- ours, new image: `annotator segment --no-cache` (the ONNX decoder already exported once, as
  after the first run on any machine);
- ours, cached: `annotator segment` with the image's embedding in the cache (decoder only).
Prints wall-clock medians and the ratios to the reference, and the CPU time the child used
(user + system, all threads; less sensitive than wall time to other load on a shared machine).
Nothing is asserted.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (sets THP_MEM_ALLOC_ENABLE)
from _common import BENCH_DIR, REPO, synthetic_image, vit_b_checkpoint

POINT = (400, 300)

_LOAD = f"""
import sys, numpy as np
from PIL import Image
image = np.array(Image.open(sys.argv[1]).convert("RGB"))
ckpt = sys.argv[2]
point = np.array([[{POINT[0]}, {POINT[1]}]]); label = np.array([1])
"""

# Each family's own way of running one click on one image, as its README shows it.
REFERENCE_SCRIPTS = {
    "vit_b": _LOAD
    + """
from segment_anything import SamPredictor, sam_model_registry
predictor = SamPredictor(sam_model_registry["vit_b"](checkpoint=ckpt))
predictor.set_image(image)
predictor.predict(point_coords=point, point_labels=label, multimask_output=True)
""",
    "mobilesam": _LOAD
    + """
from mobile_sam import SamPredictor, sam_model_registry
sam = sam_model_registry["vit_t"](checkpoint=ckpt); sam.eval()
predictor = SamPredictor(sam)
predictor.set_image(image)
predictor.predict(point_coords=point, point_labels=label, multimask_output=True)
""",
    "hq_tiny": _LOAD
    + """
from segment_anything_hq import SamPredictor, sam_model_registry
predictor = SamPredictor(sam_model_registry["vit_tiny"](checkpoint=ckpt))
predictor.set_image(image)
predictor.predict(point_coords=point, point_labels=label, multimask_output=True)
""",
    "sam2.1_t": _LOAD
    + """
from sam2.build_sam import build_sam2
from sam2.sam2_image_predictor import SAM2ImagePredictor
predictor = SAM2ImagePredictor(build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", ckpt, device="cpu"))
predictor.set_image(image)
predictor.predict(point_coords=point, point_labels=label, multimask_output=True)
""",
    "efficientvit_l0": _LOAD
    + """
import torch
from efficientsam.models.efficientvit.sam import EfficientViTSamPredictor
from efficientsam.sam_model_zoo import create_efficientvit_sam_model
model = create_efficientvit_sam_model("efficientvit-sam-l0", pretrained=False)
model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True)); model.eval()
predictor = EfficientViTSamPredictor(model)
predictor.set_image(image)
predictor.predict(point_coords=point, point_labels=label, multimask_output=True)
""",
}


def checkpoint_for(name: str) -> Path:
    if name == "vit_b":
        return vit_b_checkpoint()
    path = BENCH_DIR / f"{name}_random.pt"
    if not path.exists():  # written by bench_families.py, with each family's own builder
        subprocess.run(
            [sys.executable, str(REPO / "bench" / "bench_families.py"), name, "--no-vit-b"],
            check=True,
        )
    return path


def _run(argv: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, CPU seconds: user + system of the child and its threads)."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(argv, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise RuntimeError(f"{argv[:4]} failed: {result.stderr.strip()[-400:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def bench(name: str, repeat: int, workdir: Path) -> str:
    from PIL import Image

    ckpt = checkpoint_for(name)
    image_path = workdir / "image.png"
    if not image_path.exists():
        Image.fromarray(synthetic_image(768, 1024)).save(image_path)
    env = dict(os.environ)
    for var in ("CONFIG", "DATA", "CACHE"):
        env[f"ANNOTATOR_{var}_DIR"] = str(workdir / var.lower())
    reference = [sys.executable, "-c", REFERENCE_SCRIPTS[name], str(image_path), str(ckpt)]
    ours = [
        sys.executable, "-m", "annotator", "segment", str(image_path), "--checkpoint", str(ckpt),
        "--point", f"{POINT[0]},{POINT[1]}", "--out", str(workdir / "mask.png"),
    ]  # fmt: skip
    _run(ours, env)  # exports the ONNX decoder, measures the Linear backend, fills the cache
    runs: dict[str, list[tuple[float, float]]] = {"reference": [], "new image": [], "cached": []}
    for _ in range(repeat):
        runs["reference"].append(_run(reference, env))
        runs["new image"].append(_run([*ours, "--no-cache"], env))
        runs["cached"].append(_run(ours, env))
    wall = {key: statistics.median(v[0] for v in values) for key, values in runs.items()}
    cpu = {key: statistics.median(v[1] for v in values) for key, values in runs.items()}

    def cell(key: str) -> str:
        if key == "reference":
            return f"{wall[key]:.2f} s (CPU {cpu[key]:.1f} s)"
        return (
            f"{wall[key]:.2f} s ({wall[key] / wall['reference']:.2f}x; "
            f"CPU {cpu[key]:.1f} s, {cpu[key] / cpu['reference']:.2f}x)"
        )

    return f"| {name} | {cell('reference')} | {cell('new image')} | {cell('cached')} |"


def main(argv: list[str]) -> int:
    names = [a for a in argv if not a.startswith("--")] or list(REFERENCE_SCRIPTS)
    repeat = 3
    print(f"whole process, median of {repeat}, interleaved; load average {os.getloadavg()[0]:.1f}")
    print("| family | reference script | annotator segment, new image | cached embedding |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="annotator-startup-") as tmp:
        for name in names:
            try:
                print(bench(name, repeat, Path(tmp)), flush=True)
            except (ModuleNotFoundError, RuntimeError) as exc:
                print(f"| {name} | failed: {str(exc)[:200]} | | |", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
