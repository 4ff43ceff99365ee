"""`annotator find` with a shrunk random-weight SAM 3: every instance above the threshold is an
annotation of its phrase's category with its score; the project validates and opens; a rerun
skips what was searched (recorded apart from the done mark); Ctrl+C leaves a valid project that a
rerun completes; bad input is one sentence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from annotator.cli import main  # noqa: E402
from annotator.core.found import Search  # noqa: E402

SIZES = [(90, 130), (64, 64), (80, 100)]
THRESHOLD = "0.5"


@pytest.fixture
def image_folder(tmp_path) -> Path:
    from PIL import Image

    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(5)
    for i, (height, width) in enumerate(SIZES):
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(
            folder / f"img{i + 1}.png"
        )
    return folder


@pytest.fixture(scope="module")
def engine(tiny_sam3_folder):
    from annotator.engines.families import load_model

    return load_model(tiny_sam3_folder, device="cpu")


def _expected(engine, folder: Path, phrase: str) -> dict[str, list[float]]:
    from annotator.core.images import load_image

    out = {}
    for path in sorted(folder.glob("*.png")):
        found = engine.find(
            engine.encode(load_image(path)), text=phrase, threshold=float(THRESHOLD)
        )
        out[path.name] = sorted(round(f.score, 6) for f in found if f.mask is not None)
    return out


def _scores(document, phrase: str) -> dict[str, list[float]]:
    names = {i["id"]: Path(i["file_name"]).name for i in document["images"]}
    category = next(c["id"] for c in document["categories"] if c["name"] == phrase)
    out = {name: [] for name in names.values()}
    for a in document["annotations"]:
        if a["category_id"] == category:
            out[names[a["image_id"]]].append(a["score"])
    return {k: sorted(v) for k, v in out.items()}


def test_find_writes_a_project_validate_accepts(image_folder, tmp_path, tiny_sam3_folder, engine):
    out = tmp_path / "found.json"
    args = ["find", str(image_folder), "--checkpoint", str(tiny_sam3_folder)]
    args += ["--text", "cat", "--text", "person with a helmet", "--threshold", THRESHOLD]
    assert main([*args, "--out", str(out), "--device", "cpu"]) == 0
    document = json.loads(out.read_text())
    for phrase in ("cat", "person with a helmet"):
        expected = _expected(engine, image_folder, phrase)
        assert sum(map(len, expected.values())) > 0
        assert _scores(document, phrase) == expected
    flags = document["annotator"]["images"]
    assert len(flags) == len(SIZES)
    for entry in flags.values():
        assert "done" not in entry  # the person's mark stays theirs
        assert [s["phrase"] for s in entry["searched"]] == ["cat", "person with a helmet"]
        assert {s["model"] for s in entry["searched"]} == {engine.fingerprint}
    assert main(["validate", str(out)]) == 0

    from annotator.core.coco import load_project, project_document

    project, _ = load_project(out)  # the window's loader
    assert all(len(r.searched) == 2 for r in project.images)
    again = project_document(project)
    assert again["annotator"]["images"] == flags  # lossless round trip

    before = out.read_bytes()
    assert main([*args, "--out", str(out), "--device", "cpu"]) == 0  # rerun: nothing to search
    assert out.read_bytes() == before


def test_interrupted_run_leaves_a_valid_project_and_rerun_completes(
    image_folder, tmp_path, tiny_sam3_folder, engine
):
    from annotator.cli.find_cmd import run_find

    out = tmp_path / "found.json"

    def stop_after_first(name, count):
        raise KeyboardInterrupt

    search = [Search("cat")]
    with pytest.raises(KeyboardInterrupt):
        run_find(image_folder, tiny_sam3_folder, out, search, engine=engine,
                 on_image_saved=stop_after_first)  # fmt: skip
    assert main(["validate", str(out)]) == 0
    first = json.loads(out.read_text())
    assert len(first["annotator"]["images"]) == 1
    report = run_find(image_folder, tiny_sam3_folder, out, search, engine=engine)
    assert (len(report.processed), len(report.skipped)) == (2, 1)
    assert _scores(json.loads(out.read_text()), "cat") == _expected(engine, image_folder, "cat")
    report = run_find(image_folder, tiny_sam3_folder, out, [Search("dog")], engine=engine)
    assert len(report.processed) == 3  # another phrase is another search


def test_example_box_on_one_image(image_folder, tmp_path, tiny_sam3_folder, engine):
    from annotator.core.images import load_image

    image = image_folder / "img1.png"
    out = tmp_path / "box.json"
    args = ["find", str(image), "--checkpoint", str(tiny_sam3_folder), "--box", "10,10,60,50"]
    assert main([*args, "--label", "blob", "--threshold", "0", "--out", str(out)]) == 0
    document = json.loads(out.read_text())
    found = engine.find(engine.encode(load_image(image)), box=(10, 10, 60, 50), threshold=0.0)
    assert _scores(document, "blob")["img1.png"] == sorted(
        round(f.score, 6) for f in found if f.mask is not None
    )
    (entry,) = document["annotator"]["images"].values()
    assert entry["searched"][0]["phrase"] == "box 10,10,60,50"


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--text", "  "], "Type what to find first"),
        ([], "Say what to find"),
        (["--text", "cat", "--threshold", "1.5"], "--threshold must be at least 0 and below 1"),
        (["--box", "5,5,1,1"], "is not X0,Y0,X1,Y1"),
        (["--text", "cat", "--label", "x"], "--label names the category of --box instances"),
    ],
)
def test_bad_input_is_one_sentence(
    image_folder, tmp_path, tiny_sam3_folder, capsys, extra, message
):
    args = ["find", str(image_folder), "--checkpoint", str(tiny_sam3_folder), *extra]
    assert main([*args, "--out", str(tmp_path / "p.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "p.json").exists()


def test_box_needs_one_image_and_find_needs_sam3(image_folder, tmp_path, tiny_sam3_folder, capsys,
                                                 tiny_sam_checkpoint):  # fmt: skip
    args = ["find", str(image_folder), "--checkpoint", str(tiny_sam3_folder), "--box", "1,1,9,9"]
    assert main([*args, "--out", str(tmp_path / "p.json")]) == 2
    assert "give one image, not a folder" in capsys.readouterr().err
    args = ["find", str(image_folder), "--checkpoint", str(tiny_sam_checkpoint), "--text", "cat"]
    assert main([*args, "--out", str(tmp_path / "p.json")]) == 2
    assert "annotator find needs a SAM 3 checkpoint folder" in capsys.readouterr().err
