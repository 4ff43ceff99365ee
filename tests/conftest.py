"""Shared fixtures. Heavy imports (torch, Qt) stay inside fixtures so core tests start fast."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
sys.path.insert(0, str(Path(__file__).parent))

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "resources" / "samples"


@pytest.fixture(autouse=True)
def _isolated_user_dirs(tmp_path, monkeypatch):
    """Keep every test away from the real user's cache, data, settings and log folders."""
    monkeypatch.setenv("ANNOTATOR_CACHE_DIR", str(tmp_path / "user-cache"))
    monkeypatch.setenv("ANNOTATOR_DATA_DIR", str(tmp_path / "user-data"))
    monkeypatch.setenv("ANNOTATOR_CONFIG_DIR", str(tmp_path / "user-config"))
    monkeypatch.setenv("ANNOTATOR_LOG_DIR", str(tmp_path / "user-logs"))
    monkeypatch.delenv("SAM_CHECKPOINT", raising=False)


@pytest.fixture(scope="session")
def tiny_sam_config() -> dict:
    from sam_factory import TINY_CONFIG

    return dict(TINY_CONFIG)


@pytest.fixture(scope="session")
def tiny_sam_checkpoint(tmp_path_factory, tiny_sam_config) -> Path:
    """A real `.pth` file (plain state dict) of a small random-weight SAM."""
    from sam_factory import build_sam, save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "tiny_sam.pth"
    return save_checkpoint(build_sam(**tiny_sam_config), path)


@pytest.fixture(scope="session")
def tiny_sam_reference(tiny_sam_checkpoint, tiny_sam_config):
    """The same checkpoint loaded into a stock-built Sam, for comparison with SamPredictor."""
    from sam_factory import load_reference

    return load_reference(tiny_sam_checkpoint, tiny_sam_config)


@pytest.fixture(scope="session")
def sample_paths() -> list[Path]:
    return sorted(p for p in SAMPLES.iterdir() if p.suffix.lower() in {".png", ".jpg"})


@pytest.fixture(scope="session")
def family_checkpoint(tmp_path_factory):
    """family_checkpoint(name) -> (path, model): a random-weight model of another SAM family
    (tests/family_factory.py), built with its own package once per session and saved as its
    official files are saved. Skips when the family's package is not installed."""
    built: dict = {}

    def get(name: str):
        from family_factory import EXTRA_SPECS, SPECS

        if name not in built:
            spec = SPECS.get(name) or EXTRA_SPECS[name]
            pytest.importorskip(spec.package)
            model = spec.build()
            path = spec.save(model, tmp_path_factory.mktemp(name) / spec.filename)
            built[name] = (path, model)
        return built[name]

    return get


@pytest.fixture(scope="session")
def sam2_video_checkpoint(tmp_path_factory):
    """(path, stock SAM2VideoPredictor): the shrunk SAM 2.1 with a shrunk memory
    (family_factory.build_sam2_video_small) saved as official checkpoints are ({"model": ...})."""
    pytest.importorskip("sam2")
    import torch
    from family_factory import build_sam2_video_small

    model = build_sam2_video_small()
    path = tmp_path_factory.mktemp("sam2video") / "sam2.1_hiera_video_test.pt"
    torch.save({"model": model.state_dict()}, path)
    return path, model


@pytest.fixture(scope="session")
def sequence_frames(tmp_path_factory) -> Path:
    """A folder of 8 JPEG frames 00000.jpg... (family_factory.write_sequence_frames)."""
    from family_factory import write_sequence_frames

    folder = tmp_path_factory.mktemp("sequence") / "frames"
    write_sequence_frames(folder, 8)
    return folder


@pytest.fixture(scope="session")
def shared_model_cache(tmp_path_factory):
    """One cache folder for exported decoders, so the tests that load the same family through
    the default path (ONNX decoder) export it once."""
    return tmp_path_factory.mktemp("shared-model-cache")


@pytest.fixture(scope="session")
def tiny_sam3_folder(tmp_path_factory) -> Path:
    """A shrunk random-weight SAM 3 checkpoint folder with its tokenizer (tests/sam3_factory.py),
    built once per session."""
    pytest.importorskip("transformers")
    pytest.importorskip("open_clip")
    from sam3_factory import build_sam3_folder

    return build_sam3_folder(tmp_path_factory.mktemp("sam3") / "tiny-sam3")
