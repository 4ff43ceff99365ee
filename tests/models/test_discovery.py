"""Checkpoint discovery: `$SAM_CHECKPOINT`, the settings path, the data folder; verification."""

from __future__ import annotations

import hashlib

import pytest

from annotator.errors import UserError
from annotator.models import registry
from annotator.models.discovery import find_checkpoints, identify_checkpoint, verify_checkpoint
from annotator.models.download import checkpoints_dir
from models import fake_checkpoint, registry_entry_for


def _write(path, data=b"weights"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_nothing_found_on_a_fresh_machine():
    assert find_checkpoints() == []


def test_sources_in_order_and_each_file_once(tmp_path, monkeypatch):
    env_file = _write(tmp_path / "elsewhere" / "env.pth")
    settings_file = _write(tmp_path / "mine" / "custom.pth")
    data_b = _write(checkpoints_dir() / "sam_vit_b_01ec64.pth")
    data_x = _write(checkpoints_dir() / "a_finetune.pt")
    _write(checkpoints_dir() / "sam_vit_l_0b3195.pth.part")  # unfinished: never offered
    _write(checkpoints_dir() / "notes.txt")
    monkeypatch.setenv("SAM_CHECKPOINT", str(env_file))

    found = find_checkpoints(settings_path=settings_file)
    assert [(f.path, f.source) for f in found] == [
        (env_file.resolve(), "environment"),
        (settings_file.resolve(), "settings"),
        (data_x.resolve(), "data folder"),
        (data_b.resolve(), "data folder"),
    ]
    assert found[3].model_type == "vit_b" and found[0].model_type is None
    # the same file named twice is listed once, under its first source
    monkeypatch.setenv("SAM_CHECKPOINT", str(data_b))
    again = find_checkpoints(settings_path=data_b)
    assert [(f.path, f.source) for f in again] == [
        (data_b.resolve(), "environment"),
        (data_x.resolve(), "data folder"),
    ]


def test_missing_paths_are_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv("SAM_CHECKPOINT", str(tmp_path / "gone.pth"))
    assert find_checkpoints(settings_path=tmp_path / "also-gone.pth") == []


def test_truncated_official_file_does_not_look_complete():
    _write(checkpoints_dir() / "sam_vit_h_4b8939.pth", b"only a few bytes")
    (found,) = find_checkpoints()
    assert found.official is registry.official_checkpoint("vit_h")
    assert not found.looks_complete


def test_verify_checkpoint(tmp_path):
    path = _write(tmp_path / "x.pth", b"abc" * 1000)
    digest = hashlib.sha256(b"abc" * 1000).hexdigest()
    assert verify_checkpoint(path, digest)
    assert verify_checkpoint(path, digest.upper())
    assert not verify_checkpoint(path, "0" * 64)
    with pytest.raises(UserError, match="no checkpoint file"):
        verify_checkpoint(tmp_path / "missing.pth", digest)


def test_identify_a_renamed_official_checkpoint(tmp_path, monkeypatch):
    data = fake_checkpoint(50_000)
    entry = registry_entry_for(data, model_type="vit_l")
    monkeypatch.setattr(registry, "OFFICIAL_CHECKPOINTS", (entry,))
    assert identify_checkpoint(_write(tmp_path / "renamed.bin", data)) is entry
    other = bytearray(data)
    other[0] ^= 1
    assert identify_checkpoint(_write(tmp_path / "other.bin", bytes(other))) is None
    assert identify_checkpoint(_write(tmp_path / "short.bin", data[:10])) is None
