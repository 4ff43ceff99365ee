"""Mask edits through the session: one undo step each, byte-identical RLE after undo/redo,
only what changes recorded, emptied annotations deleted, saved and reloaded pixel-exact."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from annotator.core.coco import load_project
from annotator.core.commands import EditMask, RelabelAnnotations
from annotator.core.mask_edit import fill_holes, polygon_mask, smooth, stroke_mask
from annotator.core.masks import decode_rle
from annotator.core.session import AnnotationSession

H, W = 20, 30


def _session(tmp_path) -> AnnotationSession:
    folder = tmp_path / "proj"
    folder.mkdir()
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(folder / "a.png")
    session, _ = AnnotationSession.open(folder)
    session.save()
    return session


def _square(r0, r1, c0, c1) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[r0:r1, c0:c1] = True
    return mask


def test_each_edit_is_one_undo_step_and_undo_redo_restore_identical_rle(tmp_path):
    session = _session(tmp_path)
    image = session.project.images[0].id
    annotation = session.add_mask(image, 1, _square(2, 10, 2, 12))
    rles = [json.dumps(annotation.rle)]
    stroke = stroke_mask((H, W), [(12, 5), (20, 5)], 1.5)
    edits = [
        lambda: session.add_to_mask(annotation.id, stroke, "Paint"),
        lambda: session.cut_from_mask(annotation.id, _square(4, 6, 4, 6), "Erase"),
        lambda: session.clean_up([annotation.id], "fill_holes"),
        lambda: session.add_to_mask(
            annotation.id, polygon_mask((H, W), [(0, 15), (8, 15), (4, 19)])
        ),
    ]
    masks = [annotation.mask()]
    for edit in edits:
        count = session.stack.count()
        result = edit()
        assert session.stack.count() == count + 1
        current = session.project.annotation(annotation.id)
        assert result.changed == int((current.mask() != masks[-1]).sum()) > 0
        masks.append(current.mask())
        rles.append(json.dumps(current.rle))
    np.testing.assert_array_equal(masks[1], masks[0] | stroke)
    np.testing.assert_array_equal(masks[3], fill_holes(masks[2]))
    assert masks[3][4:6, 4:6].all()  # the erased square was a hole: filled
    for index in range(len(edits) - 1, -1, -1):
        session.undo()
        assert json.dumps(session.project.annotation(annotation.id).rle) == rles[index]
    for index in range(1, len(edits) + 1):
        session.redo()
        current = session.project.annotation(annotation.id)
        assert json.dumps(current.rle) == rles[index]
        assert current.area == masks[index].sum()
    # Saved as compressed RLE and reloaded pixel-exact.
    path = session.save()
    (saved,) = json.loads(path.read_text())["annotations"]
    assert isinstance(saved["segmentation"]["counts"], str)
    np.testing.assert_array_equal(decode_rle(saved["segmentation"]), masks[-1])
    loaded, _ = load_project(path)
    np.testing.assert_array_equal(loaded.annotation(annotation.id).mask(), masks[-1])
    session.close()


def test_an_unchanged_edit_pushes_nothing_and_an_emptied_mask_is_deleted(tmp_path):
    session = _session(tmp_path)
    image = session.project.images[0].id
    annotation = session.add_mask(image, 1, _square(2, 5, 2, 5))
    count = session.stack.count()
    assert session.add_to_mask(annotation.id, _square(3, 4, 3, 4)).changed == 0
    assert session.stack.count() == count
    result = session.cut_from_mask(annotation.id, _square(0, 10, 0, 10), "Erase")
    assert result.deleted == (annotation.id,) and result.changed == 9
    assert not session.project.has_annotation(annotation.id)
    assert session.stack.count() == count + 1
    session.undo()
    assert session.project.annotation(annotation.id) == annotation
    session.close()


def test_edit_mask_records_only_the_geometry_so_it_composes_with_a_relabel(tmp_path):
    session = _session(tmp_path)
    image = session.project.images[0].id
    annotation = session.add_mask(image, 1, _square(2, 5, 2, 5))
    session.edit_mask(annotation.id, _square(2, 8, 2, 8))
    session.push(RelabelAnnotations([annotation.id], 2))
    edited = session.project.annotation(annotation.id)
    assert edited.category_id == 2 and edited.area == 36
    # Undo the edit under the relabel (as a command applied out of order would).
    command = session.stack._commands[-2]
    assert isinstance(command, EditMask)
    command.revert(session.project)
    back = session.project.annotation(annotation.id)
    assert back.category_id == 2 and back.rle == annotation.rle and back.area == 9
    session.close()


def test_a_foreign_annotation_keeps_its_polygon_until_edited(tmp_path):
    folder = tmp_path / "foreign"
    folder.mkdir()
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(folder / "a.png")
    polygon = [2.0, 2.0, 12.0, 2.0, 12.0, 10.0, 2.0, 10.0]
    coco = {
        "images": [{"id": 1, "file_name": "a.png", "width": W, "height": H}],
        "categories": [{"id": 1, "name": "thing"}],
        "annotations": [
            {"id": 7, "image_id": 1, "category_id": 1, "segmentation": [polygon],
             "area": 80, "bbox": [2, 2, 10, 8], "iscrowd": 0},
            {"id": 8, "image_id": 1, "category_id": 1, "segmentation": [polygon],
             "area": 80, "bbox": [2, 2, 10, 8], "iscrowd": 0},
        ],
    }  # fmt: skip
    path = folder / "annotations.json"
    path.write_text(json.dumps(coco))
    session, _ = AnnotationSession.open(path)
    before = session.project.annotation(7).mask()
    session.clean_up([7], "smooth", 2)
    session.save()
    saved = {a["id"]: a for a in json.loads(path.read_text())["annotations"]}
    assert saved[8]["segmentation"] == [polygon]  # untouched: written back as read
    assert isinstance(saved[7]["segmentation"], dict)  # edited: now our compressed RLE
    np.testing.assert_array_equal(decode_rle(saved[7]["segmentation"]), smooth(before, 2))
    session.undo()
    assert session.project.annotation(7).original is not None  # undo brings the polygon back
    session.close()


def test_clean_up_of_several_annotations_is_one_step(tmp_path):
    session = _session(tmp_path)
    image = session.project.images[0].id
    first = session.add_mask(image, 1, _square(2, 8, 2, 8) & ~_square(4, 5, 4, 5))
    second = session.add_mask(image, 1, _square(10, 16, 10, 16) & ~_square(12, 13, 12, 13))
    count = session.stack.count()
    result = session.clean_up([first.id, second.id], "fill_holes")
    assert result.changed == 2 and session.stack.count() == count + 1
    assert session.project.annotation(first.id).area == 36
    assert session.project.annotation(second.id).area == 36
    session.undo()
    assert session.project.annotation(first.id) == first
    assert session.project.annotation(second.id) == second
    session.close()


def test_merge_keeps_the_lowest_id_and_split_gives_the_8_connected_parts(tmp_path):
    session = _session(tmp_path)
    image = session.project.images[0].id
    a = session.add_mask(image, 2, _square(2, 6, 2, 6))
    b = session.add_mask(image, 1, _square(10, 12, 10, 20))
    c = session.add_mask(image, 3, _square(5, 8, 5, 8))  # overlaps a
    count = session.stack.count()
    merged = session.merge([c.id, b.id, a.id])
    assert session.stack.count() == count + 1
    assert merged.id == a.id and merged.category_id == 2
    union = _square(2, 6, 2, 6) | _square(10, 12, 10, 20) | _square(5, 8, 5, 8)
    np.testing.assert_array_equal(merged.mask(), union)
    assert [x.id for x in session.project.annotations_of(image)] == [a.id]
    parts = session.split(a.id)
    assert session.stack.count() == count + 2
    assert parts[0].id == a.id and len(parts) == 2  # a and c touch: one 8-connected part
    np.testing.assert_array_equal(parts[0].mask(), _square(2, 6, 2, 6) | _square(5, 8, 5, 8))
    np.testing.assert_array_equal(parts[1].mask(), _square(10, 12, 10, 20))
    assert parts[1].category_id == 2
    diagonal = np.zeros((H, W), bool)
    diagonal[0, 0] = diagonal[1, 1] = True  # 8-connected: one part
    single = session.add_mask(image, 1, diagonal)
    with pytest.raises(ValueError):
        session.split(single.id)
    session.undo()  # the diagonal
    session.undo()  # the split
    np.testing.assert_array_equal(session.project.annotation(a.id).mask(), union)
    session.undo()  # the merge
    assert [x.id for x in session.project.annotations_of(image)] == [a.id, b.id, c.id]
    assert session.project.annotation(b.id) == b and session.project.annotation(c.id) == c
    session.close()


def test_masks_do_not_overlap_is_an_undoable_saved_project_setting(tmp_path):
    from annotator.core.journal import Delta
    from annotator.core.project import ProjectEvent

    session = _session(tmp_path)
    image = session.project.images[0].id
    below = session.add_mask(image, 1, _square(2, 10, 2, 10))
    assert not session.masks_do_not_overlap
    session.set_masks_do_not_overlap(True)
    assert session.masks_do_not_overlap and session.stack.undo_text() == "Masks do not overlap"
    new = session.add_mask(image, 1, _square(5, 15, 5, 15))
    np.testing.assert_array_equal(new.mask(), _square(5, 15, 5, 15) & ~_square(2, 10, 2, 10))
    session.add_to_mask(below.id, _square(0, 20, 0, 4))  # grows, but not into `new`
    np.testing.assert_array_equal(
        session.project.annotation(below.id).mask(), _square(2, 10, 2, 10) | _square(0, 20, 0, 4)
    )
    session.add_to_mask(new.id, _square(0, 20, 0, 30))  # takes only free pixels
    np.testing.assert_array_equal(
        session.project.annotation(new.id).mask(),
        ~(session.project.annotation(below.id).mask()),
    )
    with pytest.raises(ValueError, match="do not overlap"):
        session.add_mask(image, 1, _square(0, 5, 0, 3))  # all taken
    path = session.save()
    assert json.loads(path.read_text())["annotator"]["settings"] == {"masks_do_not_overlap": True}
    loaded, _ = load_project(path)
    assert loaded.settings == {"masks_do_not_overlap": True}
    assert loaded.state() == session.project.state()
    # The journal carries the setting (crash recovery replays it).
    delta = Delta.from_json(
        json.loads(json.dumps(Delta.of(session.project, [ProjectEvent("settings")]).to_json()))
    )
    fresh, _ = load_project(path)
    fresh.settings = {}
    delta.apply_to(fresh)
    assert fresh.settings == {"masks_do_not_overlap": True}
    for _ in range(3):
        session.undo()
    session.undo()  # the setting
    assert not session.masks_do_not_overlap and session.project.settings == {}
    session.close()


def test_accepted_proposals_keep_off_taken_pixels_when_masks_do_not_overlap(tmp_path):
    from annotator.core.proposals import CompactProposal

    session = _session(tmp_path)
    image = session.project.images[0].id
    existing = session.add_mask(image, 1, _square(0, 10, 0, 10))
    session.set_masks_do_not_overlap(True)
    proposals = [
        CompactProposal.from_mask(_square(5, 15, 5, 15), 0.9, 0.9),
        CompactProposal.from_mask(_square(8, 18, 8, 18), 0.8, 0.8),
        CompactProposal.from_mask(_square(2, 4, 2, 4), 0.7, 0.7),  # all taken: stays on offer
    ]
    session.set_proposals(image, "key", proposals)
    assert session.accept_all_proposals(1) == 2
    first, second = session.project.annotations_of(image)[1:]
    np.testing.assert_array_equal(first.mask(), _square(5, 15, 5, 15) & ~existing.mask())
    np.testing.assert_array_equal(
        second.mask(), _square(8, 18, 8, 18) & ~_square(5, 15, 5, 15) & ~existing.mask()
    )
    assert first.extra["score"] == pytest.approx(0.9)
    assert len(session.proposals) == 1
    with pytest.raises(ValueError, match="do not overlap"):
        session.accept_proposal(session.proposals.items[0], 1)
    session.close()


def test_mask_edits_and_the_setting_come_back_from_the_journal_after_a_crash(tmp_path):
    session = _session(tmp_path)
    image = session.project.images[0].id
    annotation = session.add_mask(image, 1, _square(2, 10, 2, 12))
    session.add_to_mask(annotation.id, stroke_mask((H, W), [(12, 5), (20, 5)], 1.5), "Paint")
    session.cut_from_mask(annotation.id, _square(4, 6, 4, 6), "Erase")
    session.set_masks_do_not_overlap(True)
    edited = session.project.state()
    session._stop_journal()  # as a kill leaves it: no save, no clean close
    session.lock.release()
    reopened, _ = AnnotationSession.open(session.project.path)
    assert reopened.recovery is not None
    reopened.restore_recovery()
    assert reopened.project.state() == edited
    np.testing.assert_array_equal(
        reopened.project.annotation(annotation.id).mask(),
        session.project.annotation(annotation.id).mask(),
    )
    reopened.close(discard=True)
