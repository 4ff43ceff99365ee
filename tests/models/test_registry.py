"""The checkpoint registry: every family's official files, each figure with its source."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from annotator.engines.families import FAMILIES, FOLDER_TYPES, MODEL_TYPES
from annotator.errors import UserError
from annotator.models import registry
from annotator.models.registry import OFFICIAL_CHECKPOINTS, official_checkpoint

ENTRIES = {info.model_type: info for info in OFFICIAL_CHECKPOINTS}


@pytest.mark.parametrize("info", OFFICIAL_CHECKPOINTS, ids=lambda info: info.model_type)
def test_every_entry_has_a_known_type_and_says_where_its_figures_came_from(info):
    assert info.model_type in MODEL_TYPES
    assert info.model_type in FAMILIES[info.family].type_names
    assert info.url.startswith("https://") and info.url.endswith("/" + info.file_name)
    # The source names where the URL came from and where the size or hash were read.
    assert "URL:" in info.source and "SHA-256" in info.source
    assert "huggingface.co" in info.source or "MODELS.md" in info.source
    if info.sha256 is None:
        assert info.note, "an entry without a SHA-256 must say how it is checked"
        assert info.size_bytes is not None, "without a SHA-256 only the exact size is left"
    else:
        assert re.fullmatch(r"[0-9a-f]{64}", info.sha256)
    if info.size_bytes is None:
        assert info.approx_bytes and info.size_text.startswith("about ")
        assert "no source found gives the exact byte count" in info.source


def test_every_official_type_of_every_file_family_is_listed_once():
    file_types = [t for t in MODEL_TYPES if t not in FOLDER_TYPES]  # folders, not one file
    assert sorted(ENTRIES) == sorted(file_types)
    assert len(ENTRIES) == len(OFFICIAL_CHECKPOINTS)
    names = [info.file_name for info in OFFICIAL_CHECKPOINTS]
    assert len(set(names)) == len(names)  # a base-URL mirror holds them side by side
    hashes = [info.sha256 for info in OFFICIAL_CHECKPOINTS if info.sha256]
    assert len(set(hashes)) == len(hashes)


def test_the_download_names_serve_the_cli_too():
    assert official_checkpoint("efficientvit_sam_l0").family == "efficientvit"
    assert official_checkpoint("sam2.1_hiera_b+").file_name == "sam2.1_hiera_base_plus.pt"
    with pytest.raises(UserError, match="Unknown model type 'sam3'.*mobilesam_vit_t"):
        official_checkpoint("sam3")


def test_cpu_recommendations_are_the_fast_families_with_their_measured_times():
    picks = registry.recommended_checkpoints(cuda=False)
    assert [p.info.model_type for p in picks] == [
        "efficientvit_sam_l0",
        "mobilesam_vit_t",
        "sam2.1_hiera_t",
    ]
    times = [p.measured_embed_s for p in picks]
    assert times == sorted(times) and times[-1] < registry.MEASURED_CPU_EMBED_S["vit_b"]
    assert "1.3 s" in picks[0].timing_text and "2-core test machine" in picks[0].timing_text
    assert "will differ" in picks[0].timing_text


def test_cuda_recommendations_go_by_quality_without_cpu_times():
    picks = registry.recommended_checkpoints(cuda=True)
    assert picks[0].info.model_type == "sam2.1_hiera_l"
    assert all(p.measured_embed_s is None and p.timing_text == "" for p in picks)


def test_guessing_cuda_does_not_import_torch():
    code = (
        "import sys; from annotator.models import registry; registry.cuda_likely(); "
        "registry.recommended_checkpoints(); print('torch' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert out.strip() == "False"


def test_cuda_is_taken_from_torch_once_it_is_imported(monkeypatch):
    class FakeCuda:
        @staticmethod
        def is_available():
            return True

    monkeypatch.setitem(sys.modules, "torch", type("FakeTorch", (), {"cuda": FakeCuda}))
    assert registry.cuda_likely() is True
    monkeypatch.setattr(FakeCuda, "is_available", staticmethod(lambda: False))
    assert registry.cuda_likely() is False


def test_a_missing_family_package_is_named_with_its_install_command(monkeypatch):
    import importlib.util

    assert registry.missing_package_hint("sam1") == ""  # segment_anything is always installed
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None)
    assert registry.missing_package_hint("mobilesam") == (
        "Needs the mobile_sam package: pip install 'annotator[mobilesam]'."
    )
    assert registry.missing_package_hint("sam2").endswith("make install.")
