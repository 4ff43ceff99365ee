"""Sequence exports: YouTube-VIS (per-frame RLE per track), DAVIS (palette PNGs, index = track),
and COCO of a video project with its frames extracted to JPEG files that pycocotools' users read."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image
from video_factory import write_video as _video

from annotator.core.export import export_project
from annotator.core.masks import decode_rle
from annotator.core.project import Project, annotation_from_mask
from annotator.errors import UserError


@pytest.fixture
def video_project(tmp_path):
    """A 4-frame video; track 3 on frames 0..2, track 7 on frames 1 and 3, one untracked."""
    _video(tmp_path / "clip.avi", count=4)
    project = Project.from_images(
        [tmp_path / "clip.avi" / f"{i:06d}.jpg" for i in range(4)], tmp_path / "p.json"
    )
    ids = [r.id for r in project.images]
    masks = {}
    next_id = 1
    for track, frames in ((3, (0, 1, 2)), (7, (1, 3)), (None, (2,))):
        for frame in frames:
            mask = np.zeros((48, 64), bool)
            mask[5 + frame : 20 + frame, (track or 12) * 4 : (track or 12) * 4 + 12] = True
            annotation = annotation_from_mask(next_id, ids[frame], 1, mask)
            project.insert_annotation(replace(annotation, track=track))
            masks[(track, frame)] = mask
            next_id += 1
    return project, masks


def test_youtube_vis_has_one_annotation_per_track_with_per_frame_rle(video_project, tmp_path):
    project, masks = video_project
    report = export_project(project, "youtube-vis", tmp_path / "ytvis")
    document = json.loads((tmp_path / "ytvis" / "instances.json").read_text())
    [video] = document["videos"]
    assert video["length"] == 4 and (video["width"], video["height"]) == (64, 48)
    assert video["file_names"] == [f"clip/{i:05d}.jpg" for i in range(4)]
    for name in video["file_names"]:
        assert Image.open(tmp_path / "ytvis" / "JPEGImages" / name).size == (64, 48)
    by_track = {a["annotator"]["track"]: a for a in document["annotations"]}
    assert sorted(by_track, key=str) == [3, 7, None]
    for (track, frame), mask in masks.items():
        segmentations = by_track[track]["segmentations"]
        assert np.array_equal(decode_rle(segmentations[frame]), mask)
    assert [s is None for s in by_track[7]["segmentations"]] == [True, False, True, False]
    assert report.annotations == len(masks)


def test_davis_palette_pngs_index_is_the_track(video_project, tmp_path):
    project, masks = video_project
    export_project(project, "davis", tmp_path / "davis")
    labels = tmp_path / "davis" / "Annotations" / "Full-Resolution" / "clip"
    frames = tmp_path / "davis" / "JPEGImages" / "Full-Resolution" / "clip"
    assert sorted(p.name for p in frames.iterdir()) == [f"{i:05d}.jpg" for i in range(4)]
    legend = json.loads((tmp_path / "davis" / "tracks.json").read_text())
    untracked = next(
        int(i) for i, t in legend["palette_index_to_track"]["clip"].items() if t is None
    )
    for frame in range(4):
        png = Image.open(labels / f"{frame:05d}.png")
        assert png.mode == "P"
        indexes = np.asarray(png)
        for (track, at), mask in masks.items():
            if at == frame:
                assert (indexes[mask] == (track or untracked)).all()
    assert (tmp_path / "davis" / "ImageSets" / "all.txt").read_text() == "clip\n"


def test_davis_refuses_more_than_255_tracks(tmp_path):
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "f.png")
    project = Project.from_folder(tmp_path)
    for i in range(256):
        mask = np.zeros((20, 20), bool)
        mask.flat[i] = True
        project.insert_annotation(
            replace(annotation_from_mask(i + 1, project.images[0].id, 1, mask), track=i + 1)
        )
    with pytest.raises(UserError, match="at most 255"):
        export_project(project, "davis", tmp_path / "davis")


def test_coco_of_a_video_extracts_its_frames(video_project, tmp_path):
    from pycocotools.coco import COCO

    project, masks = video_project
    export_project(project, "coco", tmp_path / "out" / "coco.json")
    coco = COCO(str(tmp_path / "out" / "coco.json"))
    for image in coco.dataset["images"]:
        assert image["file_name"].startswith("frames/clip/")
        assert Image.open(tmp_path / "out" / image["file_name"]).size == (64, 48)
    assert len(coco.dataset["annotations"]) == len(masks)
    assert coco.dataset["annotator"]["images"]["1"] == {"video": "../clip.avi", "frame": 0}
