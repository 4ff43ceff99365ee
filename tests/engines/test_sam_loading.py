"""Loading SAM checkpoints: architecture detection, refused files, weights_only, fingerprints."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from annotator.errors import UserError

torch = pytest.importorskip("torch")

from annotator.engines import sam as sam_engine  # noqa: E402
from annotator.engines.sam import (  # noqa: E402
    OFFICIAL_ARCHITECTURES,
    SamArchitecture,
    architecture_from_state_dict,
    build_sam_model,
    check_model_type,
    inspect_checkpoint,
    load_sam,
    resolve_device,
)

OTHER_CONFIGS = [
    # (embed_dim, depth, num_heads, global blocks): none of them an official layout.
    {"embed_dim": 32, "depth": 3, "num_heads": 4, "global_attn_indexes": (2,)},
    {"embed_dim": 48, "depth": 5, "num_heads": 3, "global_attn_indexes": (0, 3, 4)},
    {"embed_dim": 64, "depth": 2, "num_heads": 1, "global_attn_indexes": ()},
]


def _save(obj, path):
    torch.save(obj, path)
    return path


@pytest.fixture(scope="module")
def tiny_state_dict(tiny_sam_checkpoint):
    return torch.load(tiny_sam_checkpoint, map_location="cpu", weights_only=True)


# -- architecture detection ------------------------------------------------------------------


def test_fixture_checkpoint_is_detected_as_custom(tiny_sam_checkpoint, tiny_sam_config):
    arch = inspect_checkpoint(tiny_sam_checkpoint)
    assert arch.model_type == "custom"
    assert arch.embed_dim == tiny_sam_config["embed_dim"]
    assert arch.depth == tiny_sam_config["depth"]
    assert arch.num_heads == tiny_sam_config["num_heads"]
    assert arch.global_attn_indexes == tuple(tiny_sam_config["global_attn_indexes"])
    assert (arch.image_size, arch.patch_size, arch.window_size, arch.prompt_embed_dim) == (
        1024,
        16,
        14,
        256,
    )
    line = arch.describe()
    assert "custom" in line and "\n" not in line and "64 wide" in line


@pytest.mark.parametrize("config", OTHER_CONFIGS, ids=lambda c: f"d{c['embed_dim']}x{c['depth']}")
def test_other_configurations_are_detected_and_load(tmp_path, config):
    from sam_factory import build_sam, save_checkpoint

    path = save_checkpoint(build_sam(**config, seed=3), tmp_path / "other.pth")
    arch = inspect_checkpoint(path)
    assert (arch.embed_dim, arch.depth, arch.num_heads) == (
        config["embed_dim"],
        config["depth"],
        config["num_heads"],
    )
    assert arch.global_attn_indexes == tuple(config["global_attn_indexes"])
    engine = load_sam(path, encoder="stock", decoder="torch", device="cpu")
    assert engine.architecture == arch
    assert len(engine.model.image_encoder.blocks) == config["depth"]


@pytest.mark.parametrize("model_type", ["vit_b", "vit_l", "vit_h"])
def test_official_layouts_are_recognised_from_shapes(model_type):
    # The shapes of an official checkpoint, without allocating its weights (meta tensors).
    state_dict = build_sam_model(OFFICIAL_ARCHITECTURES[model_type], device="meta").state_dict()
    arch = architecture_from_state_dict(state_dict, f"sam_{model_type}.pth")
    assert arch == OFFICIAL_ARCHITECTURES[model_type]
    assert arch.model_type == model_type


def test_named_type_must_match():
    vit_b = OFFICIAL_ARCHITECTURES["vit_b"]
    check_model_type(vit_b, "vit_b", "sam_vit_b.pth")
    check_model_type(vit_b, "auto", "sam_vit_b.pth")
    with pytest.raises(UserError) as err:
        check_model_type(vit_b, "vit_h", "sam_vit_b.pth")
    assert str(err.value) == "sam_vit_b.pth is a vit_b checkpoint, but vit_h was asked for."


def test_custom_checkpoint_refused_when_a_type_is_named(tiny_sam_checkpoint):
    with pytest.raises(UserError, match=r"is a custom SAM checkpoint .*, but vit_b was asked for"):
        load_sam(tiny_sam_checkpoint, model_type="vit_b", device="cpu", decoder="torch")


def test_unknown_arguments_are_user_errors(tiny_sam_checkpoint):
    with pytest.raises(UserError, match="Unknown model type 'vit_x'"):
        load_sam(tiny_sam_checkpoint, model_type="vit_x")
    with pytest.raises(UserError, match="Unknown encoder"):
        load_sam(tiny_sam_checkpoint, encoder="turbo")
    with pytest.raises(UserError, match="Unknown decoder"):
        load_sam(tiny_sam_checkpoint, decoder="tensorrt")


# -- refused files ---------------------------------------------------------------------------


def test_missing_file(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        inspect_checkpoint(tmp_path / "nope.pth")


def test_truncated_file(tmp_path, tiny_sam_checkpoint):
    data = tiny_sam_checkpoint.read_bytes()
    path = tmp_path / "x.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError) as err:
        load_sam(path, device="cpu")
    assert str(err.value) == "x.pth is truncated or not a PyTorch file."


@pytest.mark.parametrize("content", [b"", b"hello, I am a text file\n", b"\x89PNG\r\n\x1a\n0000"])
def test_not_a_torch_file(tmp_path, content):
    path = tmp_path / "x.pth"
    path.write_bytes(content)
    with pytest.raises(UserError) as err:
        inspect_checkpoint(path)
    assert str(err.value) == "x.pth is truncated or not a PyTorch file."


def test_torch_file_that_is_not_sam(tmp_path):
    path = _save({"encoder.weight": torch.ones(3, 3)}, tmp_path / "x.pth")
    with pytest.raises(UserError) as err:
        inspect_checkpoint(path)
    assert str(err.value) == (
        "x.pth is a PyTorch file but not a SAM checkpoint (no image_encoder.pos_embed)."
    )
    path = _save([torch.ones(2)], tmp_path / "list.pth")
    with pytest.raises(UserError, match="list.pth is a PyTorch file but not a SAM checkpoint"):
        inspect_checkpoint(path)


def test_sam_checkpoint_with_missing_weights_is_refused(tmp_path, tiny_state_dict):
    broken = dict(tiny_state_dict)
    del broken["mask_decoder.output_upscaling.0.weight"]
    path = _save(broken, tmp_path / "broken.pth")
    with pytest.raises(UserError, match="broken.pth does not fit the SAM layout"):
        load_sam(path, device="cpu", decoder="torch")


class _RunsCode:
    """Unpickling this calls os.mkdir(marker): what a malicious checkpoint would do."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.mkdir, (self.marker,))


def test_checkpoint_with_code_is_refused_and_never_runs(tmp_path, tiny_state_dict):
    marker = tmp_path / "code-ran"
    evil = dict(tiny_state_dict)
    evil["payload"] = _RunsCode(marker)
    path = _save(evil, tmp_path / "evil.pth")
    with pytest.raises(UserError) as err:
        load_sam(path, device="cpu", decoder="torch")
    assert "could run code" in str(err.value)
    assert not marker.exists()


# -- accepted variants -----------------------------------------------------------------------


@pytest.mark.parametrize("wrap", ["model", "state_dict", "module."])
def test_wrapped_state_dicts_load(tmp_path, tiny_state_dict, tiny_sam_checkpoint, wrap):
    if wrap == "module.":
        obj = {f"module.{k}": v for k, v in tiny_state_dict.items()}
    else:
        obj = {wrap: tiny_state_dict, "epoch": 3}
    path = _save(obj, tmp_path / "wrapped.pth")
    engine = load_sam(path, device="cpu", encoder="stock", decoder="torch")
    reference = engine.model.state_dict()
    for key, value in tiny_state_dict.items():
        assert torch.equal(reference[key], value), key
    assert engine.architecture == inspect_checkpoint(tiny_sam_checkpoint)


def test_loaded_model_is_float32_eval_on_cpu(tiny_sam_checkpoint):
    engine = load_sam(tiny_sam_checkpoint, device="cpu", encoder="stock", decoder="torch")
    assert engine.device == "cpu"
    assert not engine.model.training
    tensors = [*engine.model.parameters(), *engine.model.buffers()]
    assert all(t.device.type == "cpu" and not t.is_meta for t in tensors)
    assert all(t.dtype == torch.float32 for t in tensors)
    assert engine.name == "SAM custom (cpu)"


# -- devices, fingerprints, decoder choice ---------------------------------------------------


def test_resolve_device():
    expected = "cuda:0" if torch.cuda.is_available() else None
    if expected is None:
        mps = getattr(torch.backends, "mps", None)
        expected = "mps" if mps is not None and mps.is_available() else "cpu"
    assert resolve_device("auto") == expected
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(UserError, match="Unknown device"):
        resolve_device("toaster")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            resolve_device("cuda")


def test_fingerprint_is_stable_and_tracks_weights(tmp_path, tiny_sam_checkpoint, tiny_sam_config):
    from sam_factory import build_sam, save_checkpoint

    first = load_sam(tiny_sam_checkpoint, device="cpu", encoder="stock", decoder="torch")
    copy = tmp_path / "copy.pth"
    copy.write_bytes(tiny_sam_checkpoint.read_bytes())
    again = load_sam(copy, device="cpu", encoder="fast", decoder="torch")
    other = save_checkpoint(build_sam(**tiny_sam_config, seed=7), tmp_path / "other.pth")
    different = load_sam(other, device="cpu", encoder="stock", decoder="torch")
    lossy = load_sam(tiny_sam_checkpoint, device="cpu", encoder="bf16", decoder="torch")
    assert first.fingerprint == again.fingerprint  # same bytes, another path, exact encoder
    assert first.fingerprint != different.fingerprint
    assert lossy.fingerprint != first.fingerprint  # lossy embeddings must not share the cache
    assert len(first.fingerprint) >= 16


def test_auto_decoder_falls_back_to_torch_when_onnx_is_unavailable(
    tiny_sam_checkpoint, monkeypatch
):
    # None in sys.modules makes `import annotator.engines.onnx_decoder` raise ImportError.
    monkeypatch.setitem(sys.modules, "annotator.engines.onnx_decoder", None)
    engine = load_sam(tiny_sam_checkpoint, device="cpu", encoder="stock", decoder="auto")
    assert engine.decoder_kind == "torch" and engine.onnx_decoder is None
    with pytest.raises(UserError, match="ONNX mask decoder could not be used"):
        load_sam(tiny_sam_checkpoint, device="cpu", encoder="stock", decoder="onnx")


def test_decode_refuses_foreign_embeddings_and_empty_prompts(tiny_sam_checkpoint):
    from annotator.engines.base import Embedding, Prompts

    engine = load_sam(tiny_sam_checkpoint, device="cpu", encoder="stock", decoder="torch")
    foreign = Embedding((10, 10), (1024, 1024), np.zeros((1, 256, 64, 64), np.float32), "other")
    point = Prompts(points=np.array([[1.0, 1.0]], np.float32), labels=np.array([1], np.int32))
    with pytest.raises(ValueError, match="another model"):
        engine.decode(foreign, point)
    mine = Embedding((10, 10), (1024, 1024), foreign.features, engine.fingerprint)
    with pytest.raises(ValueError, match="at least one point or a box"):
        engine.decode(mine, Prompts())


def test_importing_the_engine_module_loads_no_torch():
    code = (
        "import sys; import annotator.engines.sam, annotator.engines.fast_encoder; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "import os; assert os.environ['THP_MEM_ALLOC_ENABLE'] == '1'"
    )
    env = {k: v for k, v in os.environ.items() if k != "THP_MEM_ALLOC_ENABLE"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_architecture_is_a_frozen_value():
    arch = SamArchitecture("custom", 64, 4, 2, (1, 3))
    with pytest.raises(AttributeError):
        arch.depth = 5  # type: ignore[misc]
    assert arch.same_shape(SamArchitecture("vit_b", 64, 4, 2, (1, 3)))
    assert sam_engine.PREPROCESS_VERSION >= 1


def test_a_checkpoint_overwritten_in_place_does_not_change_a_loaded_model(
    tmp_path, tiny_sam_config
):
    """Checkpoints are read memory-mapped: every part must be copied into memory before it runs
    (the decoder at load, the image encoder at the first image), or a file copied over in place
    would change the weights under a running model."""
    from sam_factory import build_sam, save_checkpoint

    from annotator.engines.base import Prompts

    path = save_checkpoint(build_sam(**tiny_sam_config, seed=1), tmp_path / "a.pth")
    other = save_checkpoint(build_sam(**tiny_sam_config, seed=2), tmp_path / "b.pth")
    assert path.stat().st_size == other.stat().st_size  # overwritten byte for byte, no truncation
    image = np.random.default_rng(0).integers(0, 255, (40, 56, 3), dtype=np.uint8)
    prompts = Prompts(np.array([[20.0, 15.0]], np.float32), np.array([1], np.int32))

    engine = load_sam(path, device="cpu", decoder="torch")
    before = engine.encode(image)
    first = engine.decode(before, prompts)
    with open(path, "r+b") as f:  # as `cp b.pth a.pth` would
        f.write(other.read_bytes())
    after = engine.encode(image)
    np.testing.assert_array_equal(after.features, before.features)
    second = engine.decode(after, prompts)
    np.testing.assert_array_equal(second.low_res_logits, first.low_res_logits)
    # ...and the new file's weights do give another answer (the test can fail).
    fresh = load_sam(path, device="cpu", decoder="torch")
    assert not np.array_equal(fresh.encode(image).features, before.features)
