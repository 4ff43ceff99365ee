"""The optional "searched" record of SAM 3 searches: round-trips through the project file and the
journal, is undoable, is independent of the done mark, and `annotator validate` names malformed
entries (which loading skips)."""

from __future__ import annotations

import json

from PIL import Image

from annotator.core.coco import OUR_KEY, load_project, save_project
from annotator.core.commands import RecordSearch, SetImageDone, UndoStack
from annotator.core.journal import _image_from, _image_json
from annotator.core.project import Project
from annotator.core.validate import validate_project


def _project(tmp_path) -> Project:
    paths = []
    for n in range(2):
        path = tmp_path / f"img{n}.png"
        Image.new("RGB", (20, 10)).save(path)
        paths.append(path)
    return Project.from_images(paths, tmp_path / "p.json")


def test_round_trip_undo_and_done_kept_apart(tmp_path):
    project = _project(tmp_path)
    stack = UndoStack(project)
    stack.push(RecordSearch(1, "abc123", "cat"))
    stack.push(RecordSearch(1, "abc123", "box 1,2,3,4 dog"))
    stack.push(SetImageDone(2, True))
    assert project.image(1).searched == (("abc123", "cat"), ("abc123", "box 1,2,3,4 dog"))
    assert not project.image(1).done
    save_project(project)
    ours = json.loads((tmp_path / "p.json").read_text())[OUR_KEY]["images"]
    assert ours == {
        "1": {"searched": [{"model": "abc123", "phrase": "cat"},
                           {"model": "abc123", "phrase": "box 1,2,3,4 dog"}]},
        "2": {"done": True},
    }  # fmt: skip
    loaded, _ = load_project(tmp_path / "p.json")
    assert loaded.image(1).searched == project.image(1).searched
    assert (loaded.image(1).done, loaded.image(2).done, loaded.image(2).searched) == (
        False,
        True,
        (),
    )
    assert _image_from(_image_json(project.image(1))) == project.image(1)
    stack.undo()
    stack.undo()
    assert project.image(1).searched == (("abc123", "cat"),)
    assert validate_project(tmp_path / "p.json") == []


def test_validate_names_malformed_entries_loading_skips(tmp_path):
    project = _project(tmp_path)
    save_project(project)
    path = tmp_path / "p.json"
    document = json.loads(path.read_text())
    document[OUR_KEY]["images"] = {
        "1": {"searched": [{"model": "m", "phrase": "cat"}, {"model": 3}]},
        "2": {"searched": "cat"},
    }
    path.write_text(json.dumps(document))
    problems = [str(p) for p in validate_project(path)]
    assert problems == [
        'annotator.images["1"].searched[1]: must be {"model": text, "phrase": text}',
        'annotator.images["2"].searched: must be a list, found text',
    ]
    loaded, _ = load_project(path)
    assert loaded.image(1).searched == (("m", "cat"),)
    assert loaded.image(2).searched == ()
