"""The commands and the shared embedding store: `annotator embed --store` writes what the cache
reads; `annotator auto` with $ANNOTATOR_EMBEDDING_STORE reads through it instead of encoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")


def _folder(tmp_path: Path) -> Path:
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for index in range(2):
        pixels = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        Image.fromarray(np.kron(pixels, np.ones((8, 8, 1), np.uint8))).save(
            folder / f"img{index + 1}.png"
        )
    return folder


def test_auto_reads_the_embeddings_embed_put_in_the_store(
    tmp_path, tiny_sam_checkpoint, monkeypatch, capsys
):
    from annotator.cli import main
    from annotator.cli.auto_cmd import run_auto
    from annotator.engines.automatic import AutoMaskSettings
    from annotator.engines.families import load_model

    folder, store = _folder(tmp_path), tmp_path / "store"
    argv = ["embed", str(folder), "--checkpoint", str(tiny_sam_checkpoint), "--device", "cpu"]
    assert main([*argv, "--store", str(store)]) == 0
    assert "2 encoded, 0 already in the store, 0 failed" in capsys.readouterr().out
    assert len(list(store.glob("*.npz"))) == 2
    assert main([*argv, "--store", str(store)]) == 0
    assert "0 encoded, 2 already in the store" in capsys.readouterr().out

    monkeypatch.setenv("ANNOTATOR_EMBEDDING_STORE", str(store))
    assert main(argv) == 0  # into the local cache: copied from the store, not computed
    printed = capsys.readouterr().out
    assert "0 encoded, 0 already cached, 0 unreadable" in printed and "2 copied from" in printed
    monkeypatch.setenv("ANNOTATOR_CACHE_DIR", str(tmp_path / "another-cache"))

    engine = load_model(tiny_sam_checkpoint, device="cpu", encoder="fast", decoder="torch")
    encoded = []
    original = engine.encode
    engine.encode = lambda image: encoded.append(image.shape) or original(image)
    settings = AutoMaskSettings(points_per_side=2, pred_iou_thresh=0, stability_score_thresh=0)
    report = run_auto(folder, tiny_sam_checkpoint, tmp_path / "p.json", settings, engine=engine)
    assert len(report.processed) == 2 and report.cache_hits == 2
    assert encoded == []  # every embedding came from the store
