"""Sequence projects: video frames read on demand, tracks in the file, and how a propagation's
results become one undo step (replacing what propagation made, keeping the person's frames)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from video_factory import write_video

from annotator.core import sequence
from annotator.core.coco import OUR_KEY, load_project, save_project
from annotator.core.project import Project, annotation_from_mask
from annotator.core.session import AnnotationSession
from annotator.core.validate import validate_project
from annotator.errors import UserError

_video = write_video


def _frames(folder: Path, count: int = 5) -> Project:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        Image.fromarray(np.full((20, 30, 3), 10 * i, np.uint8)).save(folder / f"f{i}.png")
    return Project.from_folder(folder)


def _box(y0, y1, x0, x1, shape=(20, 30)) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[y0:y1, x0:x1] = True
    return mask


def test_a_video_opens_as_one_image_per_frame_read_on_demand(tmp_path):
    from annotator.core.images import load_image

    decoded = _video(tmp_path / "clip.avi")
    session, _ = AnnotationSession.open(tmp_path / "clip.avi", journal=False)
    project = session.project
    assert [r.file_name for r in project.images] == [f"clip.avi/{i:06d}.jpg" for i in range(6)]
    assert (project.images[0].width, project.images[0].height) == (64, 48)
    # any order: a seek, then the next frame continues the decoder
    for i in (4, 1, 2, 5):
        assert np.array_equal(load_image(project.image_path(project.images[i])), decoded[i])
    project.insert_annotation(
        annotation_from_mask(1, project.images[2].id, 1, _box(10, 30, 16, 36, (48, 64)))
    )
    session.save()
    session.close()
    document = json.loads((tmp_path / "annotations.json").read_text())
    assert document[OUR_KEY]["images"]["3"] == {"video": "clip.avi", "frame": 2}
    assert document[OUR_KEY]["format_version"] == 2  # an older build refuses video frames
    again, report = load_project(tmp_path / "annotations.json")
    assert report.missing_images == [] and len(again.images) == 6
    assert validate_project(tmp_path / "annotations.json") == []
    # reopening the video opens its project
    session, _ = AnnotationSession.open(tmp_path / "clip.avi", journal=False)
    assert session.project.total_annotations() == 1
    session.close()


def test_validate_knows_video_frames(tmp_path):
    _video(tmp_path / "clip.avi", count=3)
    project = Project.from_images(
        [tmp_path / "clip.avi" / f"{i:06d}.jpg" for i in range(3)], tmp_path / "p.json"
    )
    save_project(project)
    document = json.loads((tmp_path / "p.json").read_text())
    document["images"][2]["file_name"] = "clip.avi/000007.jpg"
    document["images"][1]["file_name"] = "gone.mp4/000001.jpg"
    (tmp_path / "p.json").write_text(json.dumps(document))
    problems = [str(p) for p in validate_project(tmp_path / "p.json")]
    assert any("gone.mp4/000001.jpg is missing" in p for p in problems), problems
    assert any("frame 7 is past the end of the video (3 frames)" in p for p in problems), problems


def test_a_video_opencv_cannot_decode_is_one_sentence(tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all" * 100)
    with pytest.raises(UserError, match="OpenCV cannot decode the video") as caught:
        AnnotationSession.open(tmp_path / "broken.mp4", journal=False)
    assert "\n" not in str(caught.value)
    assert not (tmp_path / "annotations.json").exists()


def test_tracks_round_trip_and_a_file_without_tracks_stays_version_1(tmp_path):
    project = _frames(tmp_path / "frames")
    save_project(project)
    plain = json.loads(project.path.read_text())
    assert plain[OUR_KEY]["format_version"] == 1 and "tracks" not in plain[OUR_KEY]
    from dataclasses import replace

    ids = [r.id for r in project.images]
    project.insert_annotation(
        replace(annotation_from_mask(1, ids[0], 1, _box(2, 8, 2, 8)), track=4)
    )
    project.insert_annotation(
        replace(annotation_from_mask(2, ids[1], 1, _box(3, 9, 2, 8)), track=4, propagated=True)
    )
    project.insert_annotation(annotation_from_mask(3, ids[1], 2, _box(10, 15, 10, 20)))
    save_project(project)
    document = json.loads(project.path.read_text())
    assert document[OUR_KEY]["format_version"] == 2
    assert document[OUR_KEY]["tracks"] == {"1": {"track": 4}, "2": {"track": 4, "propagated": True}}
    again, _ = load_project(project.path)
    assert [(a.id, a.track, a.propagated) for a in again.all_annotations()] == [
        (1, 4, False), (2, 4, True), (3, None, False)
    ]  # fmt: skip


def test_an_older_build_refuses_a_file_with_tracks(tmp_path, monkeypatch):
    from dataclasses import replace

    from annotator.core import coco

    project = _frames(tmp_path / "frames", 2)
    image = project.images[0].id
    project.insert_annotation(replace(annotation_from_mask(1, image, 1, _box(2, 8, 2, 8)), track=1))
    save_project(project)
    monkeypatch.setattr(coco, "FORMAT_VERSION", 1)  # what a build before sequences reads
    with pytest.raises(UserError, match="newer Annotator"):
        load_project(project.path)


def _tracked_session(tmp_path):
    """5 frames; track 1: the person's mask on frame 0, propagated ones on 1..3, the person's
    edit on frame 2; an untracked annotation on frame 0."""
    from dataclasses import replace

    project = _frames(tmp_path / "frames")
    ids = [r.id for r in project.images]
    project.insert_annotation(
        replace(annotation_from_mask(1, ids[0], 1, _box(2, 8, 2, 8)), track=1)
    )
    for n, frame in enumerate((1, 2, 3)):
        project.insert_annotation(
            replace(
                annotation_from_mask(10 + n, ids[frame], 1, _box(2, 8, 3 + n, 9 + n)),
                track=1, propagated=True,
            )
        )  # fmt: skip
    project.insert_annotation(annotation_from_mask(20, ids[0], 2, _box(12, 18, 12, 28)))
    session = AnnotationSession.of(project, take_lock=False)
    session.edit_mask(11, _box(2, 9, 4, 12))  # the person corrects frame 2
    return session, ids


def test_a_hand_edit_makes_a_propagated_frame_the_persons_and_undo_restores_it(tmp_path):
    session, _ = _tracked_session(tmp_path)
    edited = session.project.annotation(11)
    assert (edited.track, edited.propagated) == (1, False)
    session.undo()
    assert session.project.annotation(11).propagated is True


def test_the_plan_prompts_with_the_start_frame_and_the_persons_frames(tmp_path):
    session, ids = _tracked_session(tmp_path)
    plan = sequence.plan_propagation(session.project, ids[0], "forward")
    assert plan.assign == {20: 2}  # plain Enter started a new track
    assert plan.categories == {1: 1, 2: 2}
    prompts = {(p.track, p.frame) for p in plan.prompts}
    assert prompts == {(1, 0), (2, 0), (1, 2)}  # frame 2 is the person's: a prompt
    assert plan.reach() == [0, 1, 2, 3, 4]
    only = sequence.plan_propagation(session.project, ids[2], "both", tracks={1}, max_frames=1)
    assert only.categories == {1: 1} and only.reach() == [2, 3, 1]


def test_results_replace_what_propagation_made_keep_the_persons_in_one_undo_step(tmp_path):
    from annotator.core.masks import encode_mask

    session, ids = _tracked_session(tmp_path)
    project = session.project
    before = {a.id: a for a in project.all_annotations()}
    plan = sequence.plan_propagation(project, ids[0], "forward")
    new = _box(4, 10, 5, 11)
    results = {
        0: {1: encode_mask(_box(2, 8, 2, 8)), 2: encode_mask(_box(12, 18, 12, 28))},
        1: {1: encode_mask(new), 2: encode_mask(_box(12, 18, 13, 29))},
        2: {1: encode_mask(new), 2: None},
        3: {1: None, 2: None},  # the object left: propagation's annotation goes
        4: {1: encode_mask(new), 2: encode_mask(_box(12, 18, 14, 29))},
    }
    session.push(sequence.propagation_command(project, plan, results))
    by_frame = {
        i: sorted((a.track, a.propagated) for a in project.annotations_of(image))
        for i, image in enumerate(ids)
    }
    assert by_frame == {
        0: [(1, False), (2, False)],
        1: [(1, True), (2, True)],
        2: [(1, False)],
        3: [],
        4: [(1, True), (2, True)],
    }
    assert np.array_equal(project.annotation(10).mask(), new)  # replaced in place
    assert project.annotation(11).rle == before[11].rle  # the person's frame kept
    session.undo()  # everything in one step
    assert {a.id: a for a in project.all_annotations()} == before


def test_a_frame_that_fails_mid_sequence_is_one_sentence_and_nothing_is_written(tmp_path):
    from annotator.cli.propagate_cmd import run_propagate

    project = _frames(tmp_path / "frames", 4)
    from dataclasses import replace

    project.insert_annotation(
        replace(annotation_from_mask(1, project.images[0].id, 1, _box(2, 8, 2, 8)), track=1)
    )
    save_project(project)
    saved = project.path.read_bytes()
    (tmp_path / "frames" / "f2.png").write_bytes(b"broken")

    class Reader:
        """Stands in for the engine: reads every frame as the predictor would."""

        def init_state(self, load, count, first=None):
            return (load, count)

        def add_prompt(self, state, prompt):
            pass

        def propagate(self, state, start, direction, max_frames, cancelled):
            from annotator.engines.sam2_video import FrameMasks

            load, count = state
            for i in range(start, count):
                load(i)
                yield FrameMasks(i, {1: _box(2, 8, 2, 8)})

    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"unused by the stand-in")
    with pytest.raises(UserError, match="Cannot read image .*f2.png") as caught:
        run_propagate(project.path, checkpoint, propagator=Reader())
    assert "\n" not in str(caught.value)
    assert project.path.read_bytes() == saved


def test_the_crash_journal_keeps_tracks():
    from dataclasses import replace

    from annotator.core.journal import _annotation_from, _annotation_json

    annotation = replace(annotation_from_mask(5, 1, 1, _box(2, 8, 2, 8)), track=9, propagated=True)
    assert _annotation_from(json.loads(json.dumps(_annotation_json(annotation)))) == annotation
    plain = annotation_from_mask(6, 1, 1, _box(2, 8, 2, 8))
    assert "track" not in _annotation_json(plain)
    assert _annotation_from(_annotation_json(plain)) == plain
