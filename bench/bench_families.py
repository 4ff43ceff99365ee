"""Embed and click time per model family, Annotator's engine against the family's own predictor,
in the same run (random weights at the official sizes; speed does not depend on their values).

    python bench/bench_families.py [FAMILY ...] [--no-vit-b]    # mobilesam, hq_tiny, sam2.1_t, efficientvit_l0

Each row: set_image vs encode (median of 2, interleaved), predict vs decode for one point
(median of 15), on a 1024x768 image; the engine loads through `families.load_model` with its default
paths (the ONNX decoder where the family shares SAM's). At the end, a first mask on a new
image with the fastest family (encode + decode) is raced against stock vit_b's set_image + predict,
interleaved (skip it with --no-vit-b). Nothing is asserted.
"""

from __future__ import annotations

import sys

import _common  # noqa: F401  (sets THP_MEM_ALLOC_ENABLE before torch)
from _common import BENCH_DIR, interleaved_times, synthetic_image


def _mobilesam():
    from mobile_sam import SamPredictor, sam_model_registry

    return sam_model_registry["vit_t"](), SamPredictor, "plain"


def _hq_tiny():
    from segment_anything_hq import SamPredictor, sam_model_registry

    return sam_model_registry["vit_tiny"](), SamPredictor, "plain"


def _sam2_t():
    from sam2.build_sam import build_sam2
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    model = build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=None, device="cpu")
    return model, SAM2ImagePredictor, "model"


def _efficientvit_l0():
    from efficientsam.models.efficientvit.sam import EfficientViTSamPredictor
    from efficientsam.sam_model_zoo import create_efficientvit_sam_model

    model = create_efficientvit_sam_model("efficientvit-sam-l0", pretrained=False)
    return model, EfficientViTSamPredictor, "plain"


FASTEST = "efficientvit_l0"  # the family with the fastest first mask on a CPU (this table)

BUILDERS = {
    "mobilesam": _mobilesam,
    "hq_tiny": _hq_tiny,
    "sam2.1_t": _sam2_t,
    "efficientvit_l0": _efficientvit_l0,
}


def first_mask_race(name: str) -> tuple[float, float]:
    """(stock vit_b, ours with family `name`) median seconds of a first mask on a new image,
    interleaved in this process: segment_anything's set_image + predict against our encode +
    decode (one point, 1024x768). The ratio is issue 12's goal for the fastest family."""
    import numpy as np
    from _common import stock_vit_b
    from segment_anything import SamPredictor

    from annotator.engines import families
    from annotator.engines.base import Prompts

    predictor = SamPredictor(stock_vit_b())
    engine = families.load_model(_checkpoint(name), device="cpu")
    image = synthetic_image(768, 1024)
    point = np.array([[400.0, 300.0]], np.float32)
    prompts = Prompts(points=point, labels=np.array([1], np.int32), multimask=True)

    def stock():
        predictor.set_image(image)
        predictor.predict(point_coords=point, point_labels=np.array([1]), multimask_output=True)

    def ours():
        engine.decode(engine.encode(image), prompts).mask(0)

    ours()  # the first image builds the encoder (a one-time cost of the model, not of an image)
    times = interleaved_times({"stock": stock, "ours": ours}, repeat=2)
    return times["stock"]["median"], times["ours"]["median"]


def _checkpoint(name: str):
    import torch

    path = BENCH_DIR / f"{name}_random.pt"
    if not path.exists():
        model, _, layout = BUILDERS[name]()
        BENCH_DIR.mkdir(parents=True, exist_ok=True)
        state = model.eval().state_dict()
        torch.save({"model": state} if layout == "model" else state, path)
    return path


def bench(name: str) -> str:
    import numpy as np
    import torch

    from annotator.engines import families
    from annotator.engines.base import Prompts

    model, predictor_class, layout = BUILDERS[name]()
    model = model.eval()
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    path = BENCH_DIR / f"{name}_random.pt"
    state = model.state_dict()
    torch.save({"model": state} if layout == "model" else state, path)  # the model benched
    image = synthetic_image(768, 1024)
    predictor = predictor_class(model)
    engine = families.load_model(path, device="cpu")
    point = np.array([[400.0, 300.0]], np.float32)
    prompts = Prompts(points=point, labels=np.array([1], np.int32), multimask=True)
    embeds = interleaved_times(
        {"reference": lambda: predictor.set_image(image), "ours": lambda: engine.encode(image)},
        repeat=2,
    )
    embedding = engine.encode(image)
    clicks = interleaved_times(
        {
            "reference": lambda: predictor.predict(
                point_coords=point, point_labels=np.array([1]), multimask_output=True
            ),
            "ours": lambda: engine.decode(embedding, prompts).mask(0),
        },
        repeat=15,
    )
    e_ref, e_ours = embeds["reference"]["median"], embeds["ours"]["median"]
    c_ref, c_ours = clicks["reference"]["median"], clicks["ours"]["median"]
    return (
        f"| {name} | {e_ref:.2f} s | {e_ours:.2f} s ({e_ours / e_ref:.2f}x) "
        f"| {c_ref * 1000:.0f} ms | {c_ours * 1000:.0f} ms ({c_ours / c_ref:.2f}x) "
        f"| {getattr(engine, 'decoder_kind', 'torch')} |"
    )


def main(argv: list[str]) -> int:
    names = [a for a in argv if a in BUILDERS] or list(BUILDERS)
    print("| family | reference set_image | encode | reference predict | decode | decoder |")
    print("|---|---|---|---|---|---|")
    for name in names:
        try:
            print(bench(name), flush=True)
        except ModuleNotFoundError as exc:
            print(f"| {name} | skipped: {exc.name} is not installed | | | | |", flush=True)
    if "--no-vit-b" not in argv:
        # Issue 12's goal: the fastest family's first mask on a new image in at most 0.07x
        # stock vit_b's (set_image + predict), interleaved in this run.
        stock, ours = first_mask_race(FASTEST)
        print(
            f"first mask on a new image: stock vit_b {stock:.2f} s, {FASTEST} {ours:.2f} s "
            f"({ours / stock:.3f}x)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
