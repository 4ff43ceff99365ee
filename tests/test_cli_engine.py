"""`annotator segment | info | embed` with a small random-weight checkpoint, and their errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotator.cli import main
from annotator.engines.cache import EmbeddingCache

REPO = Path(__file__).resolve().parents[1]


def _write_image(path: Path, width: int = 120, height: int = 90, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 10 + 1, width // 10 + 1, 3), dtype=np.uint8)
    Image.fromarray(small).resize((width, height), Image.BILINEAR).save(path)
    return path


def _read_mask(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        assert im.mode == "L"
        mask = np.asarray(im)
    assert set(np.unique(mask)) <= {0, 255}
    return mask == 255


def _iou(a, b) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


def _run_cli(*args: str, env_extra: dict | None = None, block_qt: bool = False):
    """Run `python -m annotator ARGS` in a subprocess (optionally with PySide6 made unimportable)."""
    code = "import sys\n"
    if block_qt:
        code += "sys.modules['PySide6'] = None\n"
    code += "from annotator.cli import main\nsys.exit(main(sys.argv[1:]))\n"
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=env,
    )


@pytest.fixture(scope="module")
def warm_model_files(tmp_path_factory, tiny_sam_checkpoint):
    """The decoder export and Linear-backend choice that loading the tiny SAM leaves in a cache."""
    import shutil

    folder = tmp_path_factory.mktemp("warm-cache")
    previous = os.environ.get("ANNOTATOR_CACHE_DIR")
    os.environ["ANNOTATOR_CACHE_DIR"] = str(folder)
    try:
        from annotator.engines.sam import load_sam

        load_sam(tiny_sam_checkpoint)
    finally:
        os.environ["ANNOTATOR_CACHE_DIR"] = previous or ""
    shutil.rmtree(folder / "embeddings", ignore_errors=True)
    return folder


@pytest.fixture(autouse=True)
def _warm_cache(warm_model_files):
    """Copy them into this test's own cache folder: each load then skips seconds of set-up
    (the decoder's reuse and re-export are tested in tests/engines/test_onnx_decoder.py)."""
    import shutil

    from annotator import paths

    shutil.copytree(warm_model_files, paths.cache_dir(), dirs_exist_ok=True)


@pytest.fixture
def stock_predictor(tiny_sam_reference):
    from segment_anything import SamPredictor

    return SamPredictor(tiny_sam_reference)


def test_segment_writes_the_same_mask_as_sam_predictor(
    tmp_path, tiny_sam_checkpoint, stock_predictor, capsys
):
    import torch

    image_path = _write_image(tmp_path / "photo.png", 150, 100)
    out = tmp_path / "mask.png"
    args = ["segment", str(image_path), "--checkpoint", str(tiny_sam_checkpoint)]
    args += ["--point", "60,40", "--negative", "100.5,80", "--box", "10,10,130,95"]
    assert main([*args, "--out", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    mask = _read_mask(out)
    assert mask.shape == (100, 150)

    # The stock predictor on the embedding the command cached (encoder equality with set_image
    # is tests/engines' business): the written mask is SamPredictor.predict's.
    entries = list(EmbeddingCache().root.glob("*.npz"))
    assert len(entries) == 1
    with np.load(entries[0]) as entry:
        stock_predictor.features = torch.from_numpy(entry["features"])
        stock_predictor.input_size = tuple(int(v) for v in entry["input_size"])
    stock_predictor.original_size, stock_predictor.is_image_set = (100, 150), True
    prompt = dict(
        point_coords=np.array([[60, 40], [100.5, 80]]),
        point_labels=np.array([1, 0]),
        box=np.array([10, 10, 130, 95]),
    )
    masks, _, _ = stock_predictor.predict(**prompt, multimask_output=False)
    assert _iou(mask, masks[0]) >= 0.999

    # --multimask keeps the highest-scoring of three; this run hits the embedding cache.
    stamp = entries[0].stat().st_mtime_ns
    assert main([*args, "--multimask", "--out", str(out)]) == 0
    masks, scores, _ = stock_predictor.predict(**prompt, multimask_output=True)
    assert _iou(_read_mask(out), masks[int(np.argmax(scores))]) >= 0.999
    assert list(EmbeddingCache().root.glob("*.npz")) == entries
    assert entries[0].stat().st_mtime_ns >= stamp  # touched by the hit, not rewritten away


def test_no_cache_leaves_the_cache_empty(tmp_path, tiny_sam_checkpoint):
    image_path = _write_image(tmp_path / "photo.png")
    out = tmp_path / "mask.png"
    args = ["segment", str(image_path), "--checkpoint", str(tiny_sam_checkpoint), "--no-cache"]
    assert main([*args, "--point", "5,5", "--out", str(out)]) == 0
    assert _read_mask(out).shape == (90, 120)
    assert not list(EmbeddingCache().root.glob("*.npz"))


def test_segment_without_checkpoint_uses_the_classic_engine(tmp_path, capsys):
    image_path = tmp_path / "disk.png"
    pixels = np.full((80, 100, 3), 40, np.uint8)
    yy, xx = np.mgrid[:80, :100]
    disk = (xx - 50) ** 2 + (yy - 40) ** 2 < 20**2
    pixels[disk] = (230, 60, 30)
    Image.fromarray(pixels).save(image_path)
    out = tmp_path / "mask.png"
    assert main(["segment", str(image_path), "--point", "50,40", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "classic" in captured.err.lower() and "Classic" in captured.out
    assert _iou(_read_mask(out), disk) > 0.85


def test_info_and_segment_run_with_qt_blocked(tmp_path, tiny_sam_checkpoint):
    image_path = _write_image(tmp_path / "photo.jpg")
    out = tmp_path / "mask.png"
    code = (
        "import sys\n"
        "sys.modules['PySide6'] = None\n"  # any import of Qt now fails
        "from annotator.cli import main\n"
        f"assert main(['info', {str(tiny_sam_checkpoint)!r}]) == 0\n"
        f"assert main(['segment', {str(image_path)!r}, '--checkpoint', "
        f"{str(tiny_sam_checkpoint)!r}, '--point', '30,30', '--out', {str(out)!r}]) == 0\n"
        "print('qt loaded' if any(m.startswith('PySide6.') for m in sys.modules) else 'no qt')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    assert "64 wide" in result.stdout and "4 blocks" in result.stdout
    assert result.stdout.strip().endswith("no qt")
    assert _read_mask(out).shape == (90, 120)


def _bad_inputs(tmp_path: Path, checkpoint: Path) -> dict[str, list[str]]:
    image = str(_write_image(tmp_path / "ok.png"))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (tmp_path / "fake.pth").write_bytes(b"definitely not a checkpoint")
    out = ["--out", str(tmp_path / "m.png")]
    ckpt = ["--checkpoint", str(checkpoint)]
    return {
        "missing image": ["segment", str(tmp_path / "nope.png"), "--point", "1,1", *out],
        "bad point syntax": ["segment", image, "--point", "12;4", *out],
        "point outside": ["segment", image, "--point", "500,5", *out],
        "negative outside": ["segment", image, "--point", "5,5", "--negative", "-1,5", *out],
        "bad box": ["segment", image, "--box", "50,50,10,60", *out],
        "no prompt": ["segment", image, *out],
        "unreadable image": ["segment", str(tmp_path / "broken.png"), "--point", "1,1", *out],
        "missing out folder": ["segment", image, "--point", "1,1", "--out", "/nonexistent/m.png"],
        "out not png": ["segment", image, "--point", "1,1", "--out", str(tmp_path / "m.jpg")],
        "missing --out": ["segment", image, "--point", "1,1"],
        "missing checkpoint": ["segment", image, "--point", "1,1", "--checkpoint", "/no.pth", *out],
        "wrong model type": [
            "segment",
            image,
            "--point",
            "1,1",
            *ckpt,
            "--model-type",
            "vit_h",
            *out,
        ],
        "not a checkpoint": ["info", str(tmp_path / "fake.pth")],
        "embed not a folder": ["embed", image, *ckpt],
    }


def test_bad_input_is_one_line_and_exit_2_in_process(tmp_path, tiny_sam_checkpoint, capsys):
    for name, argv in _bad_inputs(tmp_path, tiny_sam_checkpoint).items():
        assert main(argv) == 2, name
        err = capsys.readouterr().err
        assert err.startswith("annotator: ") and err.count("\n") == 1, (name, err)
        assert "Traceback" not in err


@pytest.mark.parametrize("case", ["bad point syntax", "not a checkpoint"])
def test_bad_input_in_a_real_process_has_no_traceback(tmp_path, tiny_sam_checkpoint, case):
    result = _run_cli(*_bad_inputs(tmp_path, tiny_sam_checkpoint)[case])
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("annotator: ")


def test_embed_fills_the_cache_and_resumes(tmp_path, tiny_sam_checkpoint, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(2):
        _write_image(folder / f"img{i}.png", 64 + i, 48, seed=i)
    (folder / "broken.jpg").write_bytes(b"nope")
    argv = ["embed", str(folder), "--checkpoint", str(tiny_sam_checkpoint)]

    assert main(argv) == 1  # one unreadable image: reported, the others done
    captured = capsys.readouterr()
    assert "2 encoded, 0 already cached, 1 unreadable" in captured.out
    assert "broken.jpg" in captured.err and "embedding" in captured.err  # the tqdm bar
    entries = sorted(EmbeddingCache().root.glob("*.npz"))
    assert len(entries) == 2

    entries[0].unlink()  # as if the first run had been interrupted before this one
    (folder / "broken.jpg").unlink()
    assert main(argv) == 0
    assert "1 encoded, 1 already cached, 0 unreadable" in capsys.readouterr().out
    assert len(list(EmbeddingCache().root.glob("*.npz"))) == 2
