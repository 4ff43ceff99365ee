"""`annotator propagate`: a folder of frames becomes a sequence project with a seeded track
propagated through it (the shrunk SAM 2.1 of the equivalence tests); a rerun replaces what the
first run made instead of adding to it; bad checkpoints and seeds are one sentence."""

from __future__ import annotations

import json
import shutil

import pytest

from annotator.cli import main

pytest.importorskip("sam2")


def test_a_folder_of_frames_becomes_a_sequence_project_and_a_rerun_replaces(
    tmp_path, sam2_video_checkpoint, sequence_frames, capsys
):
    frames = tmp_path / "frames"
    shutil.copytree(sequence_frames, frames)
    args = [
        "propagate", str(frames), "--checkpoint", str(sam2_video_checkpoint[0]),
        "--box", "2:8,18,36,48", "--direction", "both", "--frames", "0:5", "--label", "car",
        "--device", "cpu",
    ]  # fmt: skip
    assert main(args) == 0
    assert "5 frame(s) propagated for 1 track(s) from frame 2" in capsys.readouterr().out
    document = json.loads((frames / "annotations.json").read_text())
    ours = document["annotator"]
    assert ours["format_version"] == 2
    car = next(c["id"] for c in document["categories"] if c["name"] == "car")
    by_image = {a["image_id"]: a for a in document["annotations"]}
    assert all(a["category_id"] == car for a in by_image.values())
    names = {i["id"]: i["file_name"] for i in document["images"]}
    assert set(names[i] for i in by_image) <= {f"{n:05d}.jpg" for n in range(5)}
    seed = next(a for a in by_image.values() if names[a["image_id"]] == "00002.jpg")
    assert ours["tracks"][str(seed["id"])] == {"track": 1}  # the seed is the person's
    assert all(
        ours["tracks"][str(a["id"])] == {"track": 1, "propagated": True}
        for a in by_image.values()
        if a is not seed
    )
    first = sorted((a["id"], a["image_id"]) for a in by_image.values())

    # again from the seed's frame, no new seed: the seed's mask is now the prompt (a mask, not
    # the box: other masks may come); propagation's annotations are replaced, none added
    rerun = ["propagate", str(frames / "annotations.json"), "--checkpoint",
             str(sam2_video_checkpoint[0]), "--from-frame", "2", "--direction", "both",
             "--frames", "0:5", "--device", "cpu"]  # fmt: skip
    assert main(rerun) == 0
    again = json.loads((frames / "annotations.json").read_text())
    assert sorted((a["id"], a["image_id"]) for a in again["annotations"]) == first
    kept = next(a for a in again["annotations"] if a["id"] == seed["id"])
    assert kept["segmentation"] == seed["segmentation"]
    assert again["annotator"]["tracks"] == ours["tracks"]
    assert main(["validate", str(frames / "annotations.json")]) == 0


def test_a_checkpoint_that_is_not_sam2_is_one_sentence(
    tmp_path, tiny_sam_checkpoint, sequence_frames, capsys
):
    frames = tmp_path / "frames"
    shutil.copytree(sequence_frames, frames)
    code = main(
        ["propagate", str(frames), "--checkpoint", str(tiny_sam_checkpoint), "--box", "0:1,1,20,20"]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert "not SAM 2.x" in err and len(err.splitlines()) == 1
    assert not (frames / "annotations.json").exists()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--box", "9:1,1,5,5"], "the sequence has 8 frames"),
        (["--box", "1:5,5,1,1"], "X0<X1"),
        (["--frames", "x"], "is not a slice"),
        ([], "No frame has an annotation"),
    ],
)
def test_bad_seeds_are_one_sentence(tmp_path, sequence_frames, capsys, extra, message):
    frames = tmp_path / "frames"
    shutil.copytree(sequence_frames, frames)
    checkpoint = tmp_path / "unused.pt"
    checkpoint.write_bytes(b"x")
    assert main(["propagate", str(frames), "--checkpoint", str(checkpoint), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (frames / "annotations.json").exists()


def test_a_video_becomes_a_sequence_project_beside_it(tmp_path):
    """The video path of the command (frames named inside the video, saved beside it), with a
    stand-in for the engine that answers the seed's box as the mask on every frame."""
    import numpy as np
    from video_factory import write_video

    from annotator.cli.propagate_cmd import run_propagate
    from annotator.engines.sam2_video import FrameMasks

    write_video(tmp_path / "clip.avi", count=5)

    class BoxEverywhere:
        def init_state(self, load, count, first=None):
            return {"load": load, "count": count}

        def add_prompt(self, state, prompt):
            x0, y0, x1, y1 = map(int, prompt.box)
            state["mask"] = np.zeros(first_shape(state), bool)
            state["mask"][y0:y1, x0:x1] = True

        def propagate(self, state, start, direction, max_frames, cancelled):
            for i in range(start, state["count"]):
                state["load"](i)
                yield FrameMasks(i, {1: state["mask"]})

    def first_shape(state):
        return state["load"](0).shape[:2]

    checkpoint = tmp_path / "unused.pt"
    checkpoint.write_bytes(b"x")
    summary = run_propagate(
        tmp_path / "clip.avi", checkpoint, boxes=["1:4,10,30,30"], propagator=BoxEverywhere()
    )
    assert "4 frame(s) propagated for 1 track(s) from frame 1" in summary
    document = json.loads((tmp_path / "annotations.json").read_text())
    assert [i["file_name"] for i in document["images"]] == [
        f"clip.avi/{n:06d}.jpg" for n in range(5)
    ]
    assert document["annotator"]["images"]["2"] == {"video": "clip.avi", "frame": 1}
    frames = sorted(a["image_id"] for a in document["annotations"])
    assert frames == [2, 3, 4, 5] and len(document["annotator"]["tracks"]) == 4
