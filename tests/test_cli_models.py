"""`annotator models list|download|verify` against a local HTTP server and a test registry."""

from __future__ import annotations

import subprocess
import sys

import pytest
from models import FileServer, fake_checkpoint, registry_entry_for

from annotator.cli import main
from annotator.models import registry
from annotator.models.download import checkpoints_dir, part_path

DATA = fake_checkpoint(400_000, seed=3)
ENTRY = registry_entry_for(DATA, file_name="sam_vit_b_test.pth", model_type="vit_b")


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr(registry, "OFFICIAL_CHECKPOINTS", (ENTRY,))
    server = FileServer({ENTRY.file_name: DATA})
    monkeypatch.setenv("ANNOTATOR_MODEL_BASE_URL", server.url)
    yield server
    server.close()


def test_download_then_list_then_verify(server, capsys):
    assert main(["models", "list"]) == 0
    assert "not downloaded" in capsys.readouterr().out

    assert main(["models", "download", "vit_b"]) == 0
    out, err = capsys.readouterr()
    final = checkpoints_dir() / ENTRY.file_name
    assert out.strip() == str(final)
    assert final.read_bytes() == DATA
    assert "100%" in err  # the tqdm bar reached the end

    assert main(["models", "list"]) == 0
    assert "downloaded" in capsys.readouterr().out.replace("not downloaded", "")

    assert main(["models", "verify"]) == 0
    assert capsys.readouterr().out.startswith("OK")
    assert main(["models", "verify", "vit_b"]) == 0
    capsys.readouterr()

    final.write_bytes(DATA[:-1] + b"\0")
    assert main(["models", "verify", "vit_b"]) == 1
    assert capsys.readouterr().out.startswith("MISMATCH")


def test_partial_download_is_listed_and_resumed(server, capsys):
    partial = part_path(checkpoints_dir() / ENTRY.file_name)
    partial.parent.mkdir(parents=True)
    partial.write_bytes(DATA[:100_000])
    assert main(["models", "list"]) == 0
    assert "partial (25%" in capsys.readouterr().out
    assert main(["models", "download", "vit_b"]) == 0
    assert server.ranges == ["bytes=100000-"]


def test_verify_a_renamed_file_by_its_bytes(server, tmp_path, capsys):
    path = tmp_path / "my-model.pth"
    path.write_bytes(DATA)
    assert main(["models", "verify", str(path)]) == 0
    assert "OK" in capsys.readouterr().out
    path.write_bytes(b"something else")
    assert main(["models", "verify", str(path)]) == 1
    assert "UNKNOWN" in capsys.readouterr().out


def test_errors_are_one_line_and_exit_2(server, capsys):
    assert main(["models", "download", "vit_q"]) == 2
    assert "Unknown model type 'vit_q'" in capsys.readouterr().err
    assert main(["models", "verify"]) == 2  # nothing downloaded yet
    assert "annotator models download" in capsys.readouterr().err
    server.files.clear()  # the server answers 404 now
    assert main(["models", "download", "vit_b"]) == 2
    assert "HTTP 404" in capsys.readouterr().err


def test_models_list_from_the_real_entry_point():
    result = subprocess.run(
        [sys.executable, "-m", "annotator", "models", "list"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    for name in ("vit_b", "vit_l", "vit_h", "375 MB", "1.2 GB", "2.6 GB"):
        assert name in result.stdout
    rows = {
        line.split()[0]: line
        for line in result.stdout.splitlines()
        if line.startswith("  ") and not line.startswith("  TYPE")
    }
    from annotator.engines.families import FOLDER_TYPES, MODEL_TYPES

    assert set(rows) == set(MODEL_TYPES) - set(FOLDER_TYPES)  # every family's every official size
    assert "EfficientViT-SAM" in rows["efficientvit_sam_l0"]
    assert "about 139 MB" in rows["efficientvit_sam_l0"]  # no exact byte count was published
    assert "SAM-HQ" in rows["hq_vit_tiny"] and "43 MB" in rows["hq_vit_tiny"]
    assert all(" known " in row and "not downloaded" in row for row in rows.values())
    assert "efficientvit_sam_l0 1.3 s" in result.stdout  # the measured CPU time, quoted as such
    assert "2-core test machine" in result.stdout
    assert "types hf and sam3" in result.stdout  # folders are left out, and the list says so


def test_an_entry_without_sha256_is_listed_as_such_and_downloads(
    monkeypatch, tiny_sam_checkpoint, capsys
):
    import dataclasses

    data = tiny_sam_checkpoint.read_bytes()
    unhashed = dataclasses.replace(
        registry_entry_for(data, file_name="sam_unhashed.pth", model_type="custom"), sha256=None
    )
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setattr(registry, "OFFICIAL_CHECKPOINTS", (unhashed,))
    server = FileServer({unhashed.file_name: data})
    monkeypatch.setenv("ANNOTATOR_MODEL_BASE_URL", server.url)
    try:
        assert main(["models", "list"]) == 0
        (row,) = [line for line in capsys.readouterr().out.splitlines() if "custom" in line]
        assert " none " in row
        assert main(["models", "download", "custom"]) == 0
        capsys.readouterr()
    finally:
        server.close()
    assert main(["models", "verify", "custom"]) == 0
    assert capsys.readouterr().out.startswith("NO-HASH")
