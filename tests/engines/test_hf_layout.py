"""The transformers layouts of SAM, SAM-HQ and SAM 2 (a folder with config.json, model.safetensors and the
processor's configuration), loaded through the registry with --model-type auto, against
transformers' documented pipeline (SamModel/SamProcessor, SamHQModel/SamHQProcessor, Sam2Model/Sam2Processor) on the same random weights: `model(**processor(image,
input_points=..., input_labels=..., input_boxes=...), input_masks=...)` then
`processor.post_process_masks`. Identical masks, logits and scores to float rounding (1e-6), for
the seven single prompt combinations and a three-click chain feeding the low-res logits back."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from prompt_cases import CASES, CHAIN, _image  # noqa: E402

from annotator.engines import families  # noqa: E402
from annotator.engines.base import Prompts  # noqa: E402
from annotator.errors import UserError  # noqa: E402

TOL = 1e-6


@pytest.fixture(scope="session", params=["hf", "hf_hq", "hf_sam2"])
def hf_folder(request, family_checkpoint):
    """A shrunk SamModel / SamHQModel saved as a hub snapshot (family_factory.build_hf_sam)."""
    return family_checkpoint(request.param)[0]


@pytest.fixture(scope="session")
def reference(hf_folder):
    from family_factory import hf_classes

    model_class, processor_class, _ = hf_classes(_model_type(hf_folder))
    model = model_class.from_pretrained(hf_folder).eval()
    return model, processor_class.from_pretrained(hf_folder)


def _model_type(folder) -> str:
    return json.loads((folder / "config.json").read_text())["model_type"]


@pytest.fixture(scope="session")
def engine(hf_folder):
    return families.load_model(hf_folder, "auto", device="cpu")


@pytest.fixture(scope="session")
def embedding(engine):
    return engine.encode(_image())


def _reference(reference, prompts: Prompts, mask_input=None):
    model, processor = reference
    kwargs = {}
    if len(prompts.points):
        kwargs["input_points"] = [[prompts.points.tolist()]]
        kwargs["input_labels"] = [[prompts.labels.tolist()]]
    if prompts.box is not None:
        kwargs["input_boxes"] = [[prompts.box.tolist()]]
    inputs = processor(images=_image(), return_tensors="pt", **kwargs)
    if mask_input is not None:
        inputs["input_masks"] = torch.as_tensor(mask_input)[None]
    with torch.no_grad():
        out = model(**inputs, multimask_output=prompts.multimask)
    sizes = [inputs["original_sizes"]]
    if "reshaped_input_sizes" in inputs:  # SAM, SAM-HQ (SAM 2 resizes to a square)
        sizes.append(inputs["reshaped_input_sizes"])
    masks = processor.post_process_masks(out.pred_masks, *sizes)[0][0]
    return masks.numpy(), out.iou_scores[0, 0].numpy(), out.pred_masks[0, 0].numpy()


def _assert_equal(prediction, ref) -> None:
    masks, scores, logits = ref
    np.testing.assert_array_equal(prediction.masks, masks)
    np.testing.assert_allclose(prediction.low_res_logits, logits, rtol=0, atol=TOL)
    np.testing.assert_allclose(prediction.scores, scores, rtol=0, atol=TOL)


def test_detected_from_config_json(hf_folder, engine, capsys):
    from annotator.cli import main

    info = families.inspect_checkpoint(hf_folder)
    expected = _model_type(hf_folder)
    assert (info.family, info.model_type, info.config.hf_model_type) == ("hf", "hf", expected)
    assert main(["info", str(hf_folder)]) == 0
    assert capsys.readouterr().out.strip() == info.describe()
    families.load_model(hf_folder, "hf", device="cpu")  # the explicit type is accepted
    with pytest.raises(UserError, match=rf"{hf_folder.name} is a Hugging Face hf checkpoint, but"):
        families.load_model(hf_folder, "vit_b", device="cpu")


_CASE_REFERENCES: dict = {}


def _case_reference(reference, case: str):
    key = (id(reference[0]), case)
    if key not in _CASE_REFERENCES:
        _CASE_REFERENCES[key] = _reference(reference, CASES[case])
    return _CASE_REFERENCES[key]


@pytest.mark.parametrize("case", list(CASES))
def test_single_prompts_match_transformers(case, engine, embedding, reference):
    _assert_equal(engine.decode(embedding, CASES[case]), _case_reference(reference, case))


def test_masks_are_not_trivial(reference):
    fractions = [float(m.mean()) for c in CASES for m in _case_reference(reference, c)[0]]
    assert sum(0.01 < f < 0.99 for f in fractions) >= len(fractions) // 2, fractions


def test_three_click_chain_feeding_logits_back(engine, embedding, reference):
    ours_logits = theirs_logits = None
    for prompts in CHAIN:
        ref = _reference(reference, prompts, theirs_logits)
        asked = Prompts(prompts.points, prompts.labels, prompts.box, ours_logits, prompts.multimask)
        prediction = engine.decode(embedding, asked)
        _assert_equal(prediction, ref)
        best = int(np.argmax(ref[1]))
        theirs_logits = ref[2][best][None]
        ours_logits = prediction.low_res_logits[best][None]
    assert not np.array_equal(engine.decode(embedding, CHAIN[-1]).low_res_logits, ours_logits)


def test_segment_command_with_the_folder(hf_folder, reference, tmp_path):
    from PIL import Image

    from annotator.cli import main

    image = tmp_path / "image.png"
    Image.fromarray(_image()).save(image)
    out = tmp_path / "mask.png"
    args = ["segment", str(image), "--checkpoint", str(hf_folder), "--point", "120,150"]
    assert main([*args, "--out", str(out)]) == 0
    with Image.open(out) as im:
        mask = np.asarray(im) == 255
    np.testing.assert_array_equal(mask, _case_reference(reference, "fg_point_single")[0][0])


def test_other_transformers_layouts_are_one_sentence(tmp_path):
    for model_type, message in (
        ("sam3", "sam3 has no model.safetensors (only safetensors weights are read)."),
        ("bert", "is a transformers model of type 'bert', not a Segment Anything model."),
    ):
        folder = tmp_path / model_type
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"model_type": model_type}))
        with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")):
            families.load_model(folder, device="cpu")
    with pytest.raises(UserError, match="is a folder without config.json"):
        families.inspect_checkpoint(tmp_path)
