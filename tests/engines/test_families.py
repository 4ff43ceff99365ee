"""The families registry: detection from keys and shapes (official sizes and others), the explicit
type names, one-sentence errors for unknown, mismatched and not-installed families."""

from __future__ import annotations

import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")

from annotator.engines import families  # noqa: E402
from annotator.errors import UserError  # noqa: E402


def _shapes_of(module) -> dict:
    """A state dict of meta tensors (shapes only): what detection reads."""
    return {k: torch.empty(v.shape, device="meta") for k, v in module.state_dict().items()}


def test_explicit_type_names_follow_one_scheme():
    assert families.MODEL_TYPES[:3] == ("vit_b", "vit_l", "vit_h")
    for name in ("sam2_hiera_t", "sam2.1_hiera_b+", "hq_vit_tiny", "hq_vit_h", "mobilesam_vit_t",
                 "efficientvit_sam_l0", "efficientvit_sam_xl1"):  # fmt: skip
        assert name in families.MODEL_TYPES
    assert len(set(families.MODEL_TYPES)) == len(families.MODEL_TYPES)


def test_unknown_layout_is_one_sentence(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(2, 3, 1, 1), "fc.bias": torch.zeros(2)}, path)
    with pytest.raises(UserError) as info:
        families.load_model(path, device="cpu")
    message = str(info.value)
    assert message == (
        "resnet.pth is a PyTorch file but not a checkpoint of a known Segment Anything family "
        "(its top-level weights are conv1, fc)."
    )


def test_sam1_still_detected_as_sam1(tiny_sam_checkpoint):
    info = families.inspect_checkpoint(tiny_sam_checkpoint)
    assert (info.family, info.model_type) == ("sam1", "custom")
    assert info.describe().startswith("SAM custom: ViT 64 wide")


def test_mismatched_explicit_type_names_what_was_found(family_checkpoint):
    path, _ = family_checkpoint("mobilesam")
    with pytest.raises(UserError, match=r"is a custom MobileSAM checkpoint \(.*\), but vit_b was"):
        families.load_model(path, model_type="vit_b", device="cpu")
    with pytest.raises(UserError, match="Unknown model type 'sam4'"):
        families.load_model(path, model_type="sam4", device="cpu")


def test_missing_package_names_the_extra(family_checkpoint, monkeypatch):
    path, _ = family_checkpoint("mobilesam")
    monkeypatch.setitem(sys.modules, "mobile_sam", None)
    with pytest.raises(UserError) as info:
        families.load_model(path, device="cpu")
    assert str(info.value) == (
        "This is a MobileSAM checkpoint, which needs the Python package mobile_sam (not "
        "installed): install it with pip install 'annotator[mobilesam]'."
    )


def test_sam2_official_sizes_and_versions_from_shapes(family_checkpoint):
    pytest.importorskip("sam2")
    from annotator.engines import sam2 as sam2_engine

    for version in ("sam2", "sam2.1"):
        for size in ("t", "b+"):
            arch = sam2_engine.Sam2Architecture("x", version, size, 0, (), (0, 0), 0)
            model = sam2_engine.build_model(arch)  # uninitialised: shapes only
            info = families.detect_family(_shapes_of(model))
            assert (info.family, info.model_type) == ("sam2", f"{version}_hiera_{size}")
    # The shrunk 2.1 test model without 2.1's extra weights reads as SAM 2.
    path, model = family_checkpoint("sam2.1")
    shapes = _shapes_of(model)
    assert families.detect_family(shapes).config.version == "sam2.1"
    del shapes["no_obj_embed_spatial"]
    assert families.detect_family(shapes).config.version == "sam2"


def test_tinyvit_official_sizes_from_shapes():
    pytest.importorskip("mobile_sam")
    pytest.importorskip("segment_anything_hq")
    from annotator.engines import mobilesam, sam_hq

    vit_t = mobilesam.MobileSamArchitecture("mobilesam_vit_t", mobilesam.VIT_T)
    info = families.detect_family(_shapes_of(mobilesam.build_model(vit_t)))
    assert (info.family, info.model_type) == ("mobilesam", "mobilesam_vit_t")
    hq_tiny = sam_hq.HqArchitecture("hq_vit_tiny", mobilesam.VIT_T, 160)
    info = families.detect_family(_shapes_of(sam_hq.build_model(hq_tiny)))
    assert (info.family, info.model_type) == ("hq", "hq_vit_tiny")


def test_efficientvit_registered_models_from_shapes():
    pytest.importorskip("efficientsam")
    from efficientsam.sam_model_zoo import REGISTERED_EFFICIENTVIT_SAM_MODEL

    for name, (factory, _, _) in REGISTERED_EFFICIENTVIT_SAM_MODEL.items():
        with torch.device("meta"):
            model = factory()
        info = families.detect_family(model.state_dict())
        assert (info.family, info.model_type) == ("efficientvit", name.replace("-", "_"))
        assert info.config.encoder_size == model.image_size[1]


def test_efficientvit_damaged_layout_is_one_sentence(family_checkpoint):
    _, model = family_checkpoint("efficientvit")
    shapes = _shapes_of(model)
    del shapes["image_encoder.neck.middle.op_list.0.main.spatial_conv.conv.weight"]
    with pytest.raises(UserError, match="odd.pt looks like an EfficientViT-SAM checkpoint but"):
        families.detect_family(shapes, "odd.pt")


def test_adapters_import_without_torch():
    code = (
        "import sys\n"
        "import annotator.engines.families, annotator.engines.sam2, annotator.engines.sam_hq\n"
        "import annotator.engines.mobilesam, annotator.engines.efficientvit\n"
        "heavy = [m for m in ('torch', 'sam2', 'mobile_sam', 'efficientsam', 'timm') if m in sys.modules]\n"
        "print(' '.join(heavy))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
