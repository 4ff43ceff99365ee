"""SAM 3 through the app's loader against transformers' documented pipeline on the same random
weights (a shrunk Sam3Config saved as a hub folder with a CLIP tokenizer made from open_clip's BPE
file): `model(**processor(images=image, text=..., input_boxes=...))` then
`processor.post_process_instance_segmentation` at the same threshold. Same instances: count,
scores within 1e-4, boxes within 1e-3 px, mask IoU >= 0.999."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from annotator.engines import families  # noqa: E402
from annotator.engines.base import Prompts  # noqa: E402
from annotator.errors import UserError  # noqa: E402

PHRASES = ("cat", "person with a helmet")
BOX = (20.0, 15.0, 90.0, 70.0)


def _image() -> np.ndarray:
    rng = np.random.default_rng(3)
    image = (rng.random((90, 130, 3)) * 255).astype(np.uint8)
    image[20:60, 30:80] = (200, 60, 40)
    return image


@pytest.fixture(scope="module")
def reference(tiny_sam3_folder):
    from transformers import Sam3Model, Sam3Processor

    model = Sam3Model.from_pretrained(tiny_sam3_folder).eval()
    return model, Sam3Processor.from_pretrained(tiny_sam3_folder)


@pytest.fixture(scope="module")
def engine(tiny_sam3_folder):
    return families.load_model(tiny_sam3_folder, "auto", device="cpu")


def _reference_outputs(reference, **prompt):
    model, processor = reference
    inputs = processor(images=_image(), return_tensors="pt", **prompt)
    with torch.no_grad():
        out = model(**inputs)
    return out, processor, inputs["original_sizes"].tolist()


def _splitting_threshold(out) -> float:
    """A threshold in the widest gap between the query scores, so some instances pass and
    some do not."""
    scores = (out.pred_logits.sigmoid() * out.presence_logits.sigmoid())[0].sort().values
    gaps = scores[1:] - scores[:-1]
    widest = int(gaps.argmax())
    assert float(gaps[widest]) > 1e-3, "the factory's scores must spread"
    return float(scores[widest] + gaps[widest] / 2)


CASES = {
    "cat": dict(text="cat"),
    "person with a helmet": dict(text="person with a helmet"),
    "example box": dict(input_boxes=[[list(BOX)]], input_boxes_labels=[[1]]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_instances_equal_transformers_pipeline(engine, reference, case):
    out, processor, sizes = _reference_outputs(reference, **CASES[case])
    threshold = _splitting_threshold(out)
    expected = processor.post_process_instance_segmentation(
        out, threshold=threshold, mask_threshold=0.5, target_sizes=sizes
    )[0]
    embedding = engine.encode(_image())
    text = CASES[case].get("text")
    box = BOX if text is None else None
    found = engine.find(embedding, text=text, box=box, threshold=threshold)

    order = np.argsort(-expected["scores"].numpy(), kind="stable")
    assert 0 < len(found) == len(order) < out.pred_logits.shape[1]
    for instance, index in zip(found, order, strict=True):
        assert abs(instance.score - float(expected["scores"][index])) <= 1e-4
        np.testing.assert_allclose(instance.box, expected["boxes"][index].numpy(), atol=1e-3)
        mask = expected["masks"][index].numpy().astype(bool)
        ours = instance.mask.mask() if instance.mask is not None else np.zeros_like(mask)
        union = np.logical_or(ours, mask).sum()
        iou = np.logical_and(ours, mask).sum() / union if union else 1.0
        assert iou >= 0.999
        if instance.mask is not None:
            assert instance.mask.predicted_iou == pytest.approx(instance.score)


def test_detected_from_config_and_fingerprinted(tiny_sam3_folder, engine):
    info = families.inspect_checkpoint(tiny_sam3_folder)
    assert (info.family, info.model_type) == ("sam3", "sam3")
    assert info.describe().startswith("SAM 3 (transformers layout): ViT 32 wide, 2 blocks")
    assert engine.name == "SAM 3 (transformers) (cpu)"
    assert len(engine.fingerprint) == 16
    families.check_model_type(info, "sam3", tiny_sam3_folder.name)
    with pytest.raises(UserError, match="but vit_b was asked for"):
        families.check_model_type(info, "vit_b", tiny_sam3_folder.name)


def test_embedding_round_trips_the_cache(engine, tmp_path):
    from annotator.engines.cache import EmbeddingCache

    cache = EmbeddingCache(tmp_path / "cache")
    first, hit = cache.encode_cached(engine, _image())
    again, hit_again = cache.encode_cached(engine, _image())
    assert (hit, hit_again) == (False, True)
    np.testing.assert_array_equal(first.features, again.features)
    a = engine.find(first, text="cat", threshold=0.0)
    b = engine.find(again, text="cat", threshold=0.0)
    assert [i.score for i in a] == [i.score for i in b]


def test_bad_input_is_one_sentence(engine, tiny_sam3_folder, tmp_path):
    embedding = engine.encode(_image())
    with pytest.raises(UserError, match="Type what to find first"):
        engine.find(embedding, text="   ")
    with pytest.raises(UserError, match="not by clicks"):
        engine.decode(embedding, Prompts(points=np.array([[5, 5]], np.float32),
                                         labels=np.array([1], np.int32)))  # fmt: skip
    bare = tmp_path / "no-tokenizer"
    shutil.copytree(tiny_sam3_folder, bare)
    for path in bare.iterdir():
        if path.name.startswith(("tokenizer", "vocab", "merges")):
            path.unlink()
    with pytest.raises(UserError, match=r"no-tokenizer has no tokenizer files \(tokenizer.json"):
        families.load_model(bare, device="cpu")


def test_not_enough_memory_is_one_sentence(tiny_sam3_folder, monkeypatch):
    import transformers

    def out_of_memory(*args, **kwargs):
        raise RuntimeError(
            "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate"
        )

    monkeypatch.setattr(transformers.Sam3Model, "from_pretrained", out_of_memory)
    with pytest.raises(UserError, match="There is not enough memory to load SAM 3"):
        families.load_model(tiny_sam3_folder, device="cpu")


def test_a_sam3_video_folder_loads_its_detector(tiny_sam3_folder, engine, tmp_path):
    """The hub's facebook/sam3 folder is a Sam3VideoModel (model_type "sam3_video"): weights
    under detector_model.*, tracker_model.* and tracker_neck.*; its detector is what this engine
    runs. Written as save_pretrained writes it, without building the tracker (tracker weights
    stand in as two small tensors, which loading must ignore)."""
    from safetensors.torch import save_file
    from transformers import Sam3Model, Sam3Processor, Sam3VideoConfig

    detector = Sam3Model.from_pretrained(tiny_sam3_folder)
    folder = tmp_path / "sam3-video"
    Sam3VideoConfig(detector_config=detector.config.to_dict()).save_pretrained(folder)
    weights = {f"detector_model.{k}": v.contiguous() for k, v in detector.state_dict().items()}
    weights["tracker_model.mask_decoder.iou_token.weight"] = torch.ones(1, 8)
    weights["tracker_neck.conv.weight"] = torch.ones(2, 2)
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    Sam3Processor.from_pretrained(tiny_sam3_folder).save_pretrained(folder)
    assert json.loads((folder / "config.json").read_text())["model_type"] == "sam3_video"

    from_video = families.load_model(folder, device="cpu")
    image = _image()
    ours = from_video.find(from_video.encode(image), text="cat", threshold=0.0)
    expected = engine.find(engine.encode(image), text="cat", threshold=0.0)
    assert [f.score for f in ours] == pytest.approx([f.score for f in expected], abs=1e-6)


def test_a_sharded_folder_loads(tiny_sam3_folder, engine, tmp_path):
    from transformers import Sam3Model, Sam3Processor

    folder = tmp_path / "sharded"
    Sam3Model.from_pretrained(tiny_sam3_folder).save_pretrained(folder, max_shard_size="2MB")
    Sam3Processor.from_pretrained(tiny_sam3_folder).save_pretrained(folder)
    assert not (folder / "model.safetensors").exists()
    assert (folder / "model.safetensors.index.json").is_file()
    sharded = families.load_model(folder, device="cpu")
    image = _image()
    ours = sharded.find(sharded.encode(image), text="cat", threshold=0.0)
    expected = engine.find(engine.encode(image), text="cat", threshold=0.0)
    assert [f.score for f in ours] == pytest.approx([f.score for f in expected], abs=1e-6)
