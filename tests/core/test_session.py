"""AnnotationSession without Qt: open, edit, undo, Save As, journal and recovery, batching."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from annotator.core.coco import load_project, save_project
from annotator.core.journal import journal_path
from annotator.core.mask_cache import MaskCache
from annotator.core.project import Project
from annotator.core.proposals import CompactProposal
from annotator.core.recovery import autosave_path
from annotator.core.session import AnnotationSession
from annotator.errors import UserError

H, W = 16, 24


def _folder(folder: Path, count: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n in range(count):
        Image.fromarray(np.full((H, W, 3), n * 40, np.uint8)).save(folder / f"img{n}.png")
    return folder


def _saved_session(tmp_path: Path, count: int = 2) -> AnnotationSession:
    folder = _folder(tmp_path / "proj", count)
    session, _ = AnnotationSession.open(folder)
    session.save()
    return session


def _mask(n: int) -> np.ndarray:
    mask = np.zeros((H, W), bool)
    mask[1 : 2 + n % 10, 2 : 4 + n % 15] = True
    return mask


def test_open_edit_undo_redo_and_save(tmp_path):
    session = _saved_session(tmp_path)
    assert not session.dirty
    image = session.project.images[0].id
    before = session.project.state()
    session.add_mask(image, 1, _mask(1))
    assert session.dirty
    after = session.project.state()
    session.undo()
    assert session.project.state() == before and not session.dirty
    session.redo()
    assert session.project.state() == after
    written = session.save()
    assert not session.dirty
    assert load_project(written)[0].state()[3] == after[3]
    session.close()


def test_events_are_batched_one_list_per_change(tmp_path):
    session = _saved_session(tmp_path)
    lists = []
    session.add_listener(lists.append)
    image = session.project.images[0].id
    proposals = [CompactProposal.from_mask(_mask(n), 0.9, 0.9) for n in range(40)]
    session.set_proposals(image, "key", proposals)
    lists.clear()
    assert session.accept_all_proposals(1) == 40
    assert len(lists) == 1  # one redraw for forty annotations
    kinds = {e.kind for e in lists[0]}
    assert {"annotations", "proposals", "dirty", "history"} <= kinds
    annotations = next(e for e in lists[0] if e.kind == "annotations")
    assert len(annotations.ids) == 40
    lists.clear()
    session.undo()  # one step: all forty back on offer
    assert len(lists) == 1 and len(session.proposals) == 40
    assert session.project.total_annotations() == 0
    session.close()


def test_save_as_then_undo_keeps_every_image_found(tmp_path):
    """Mark done, Save As into another folder, undo: the records kept their paths."""
    session = _saved_session(tmp_path)
    record = session.project.images[0]
    session.set_done(record.id, True)
    other = tmp_path / "elsewhere" / "deep"
    other.mkdir(parents=True)
    session.save(other / "copy.json")
    session.undo()
    for image in session.project.images:
        assert session.project.image_path(image).is_file()
    assert not session.project.images[0].done
    session.save()
    reopened, report = load_project(other / "copy.json")
    assert not report.missing_images
    names = [r.file_name for r in reopened.images]
    assert names == ["../../proj/img0.png", "../../proj/img1.png"]
    session.close()


def test_file_names_are_written_back_as_read_and_paths_normalised(tmp_path):
    folder = _folder(tmp_path / "p")
    sub = folder / "sub"
    sub.mkdir()
    document = {
        "images": [
            {"id": 7, "file_name": "sub/../img0.png", "width": W, "height": H},
            {"id": 9, "file_name": str(folder / "img1.png"), "width": W, "height": H},
        ],
        "categories": [{"id": 1, "name": "a"}],
        "annotations": [],
    }
    (folder / "annotations.json").write_text(json.dumps(document))
    session, _ = AnnotationSession.open(folder / "annotations.json")
    assert session.project.images[0].path == str(folder / "img0.png")
    session.set_done(7, True)
    session.save()
    written = json.loads((folder / "annotations.json").read_text())
    assert [i["file_name"] for i in written["images"]] == [
        "sub/../img0.png",
        str(folder / "img1.png"),
    ]
    session.close()


def test_new_images_in_the_folder_are_one_undoable_step(tmp_path):
    session = _saved_session(tmp_path)
    session.close()
    Image.fromarray(np.zeros((H, W, 3), np.uint8)).save(tmp_path / "proj" / "new.png")
    session, report = AnnotationSession.open(tmp_path / "proj")
    assert len(session.project.images) == 3 and session.dirty
    assert any("1 new image" in m for m in report.messages)
    session.undo()
    assert len(session.project.images) == 2 and not session.dirty
    session.close()


def test_delete_annotations_is_all_or_nothing(tmp_path):
    session = _saved_session(tmp_path)
    a = session.add_mask(session.project.images[0].id, 1, _mask(1))
    before = session.project.state()
    with pytest.raises(KeyError):
        session.delete_annotations([a.id, 999])
    assert session.project.state() == before
    session.close()


def test_journal_record_is_on_disk_when_the_edit_returns(tmp_path):
    session = _saved_session(tmp_path)
    session.add_mask(session.project.images[0].id, 1, _mask(1))
    lines = journal_path(session.project.path).read_bytes().splitlines()
    assert len(lines) == 2  # header + the record, written before add_mask returned
    assert json.loads(lines[1])["text"] == "Add annotation"
    session.close(discard=True)
    assert not journal_path(session.project.path).exists()


_KILLED_CHILD = textwrap.dedent(
    """
    import sys, numpy as np
    from annotator.core.session import AnnotationSession
    session, _ = AnnotationSession.open(sys.argv[1])
    image = session.project.images[0].id
    for n in range(int(sys.argv[2])):
        mask = np.zeros((16, 24), bool); mask[1:3 + n, 2:5 + n] = True
        session.add_mask(image, 1, mask)
    session.relabel([session.project.annotations_of(image)[0].id], 2)
    session.undo()
    session.wait_for_disk()  # a fold that was due is on disk (the journal still has the rest)
    print("edited", flush=True)
    sys.stdin.read()  # wait to be killed
    """
)


@pytest.mark.parametrize("edits", [3, 250])  # 250: past a fold into the autosave
def test_sigkill_loses_no_accepted_edit(tmp_path, edits):
    session = _saved_session(tmp_path)
    path = session.project.path
    session.close()
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_CHILD, str(path), str(edits)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert child.stdout.readline().strip() == b"edited"
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    records = len(journal_path(path).read_bytes().splitlines()) - 1
    if edits > 200:  # folded: the autosave holds the first 200 changes, the journal the rest
        assert autosave_path(path).exists() and records == edits + 2 - 200
    else:
        assert records == edits + 2
    reopened, _ = AnnotationSession.open(path)
    recovery = reopened.recovery
    assert recovery is not None
    project = recovery.project
    assert project.total_annotations() == edits
    assert {a.category_id for a in project.all_annotations()} == {1}  # the relabel was undone
    areas = sorted(a.area for a in project.all_annotations())
    assert areas == sorted((min(3 + n, 16) - 1) * (min(5 + n, 24) - 2) for n in range(edits))
    reopened.restore_recovery()
    assert reopened.dirty and reopened.project.total_annotations() == edits
    # A second crash after restoring: the continued journal still holds everything.
    reopened.add_mask(reopened.project.images[1].id, 1, _mask(3))
    reopened._stop_journal()  # as a kill would leave it (no save, no clean close)
    again, _ = AnnotationSession.open(path)
    assert again.recovery.project.total_annotations() == edits + 1
    again.decline_recovery()
    assert not journal_path(path).exists()
    assert journal_path(path).with_name(journal_path(path).name + ".declined").exists()
    again.save()
    assert not journal_path(path).with_name(journal_path(path).name + ".declined").exists()
    again.close()


def test_a_journal_of_another_version_of_the_file_is_not_offered(tmp_path):
    session = _saved_session(tmp_path)
    path = session.project.path
    session.add_mask(session.project.images[0].id, 1, _mask(1))
    session._stop_journal()  # crash
    other, _ = load_project(path)
    other.extra["info"] = {"changed": "by another tool"}
    save_project(other)  # the file changed since the journal's base
    reopened, _ = AnnotationSession.open(path)
    assert reopened.recovery is None
    reopened.close()


def test_failed_save_keeps_the_file_and_the_unsaved_state(tmp_path, monkeypatch):
    session = _saved_session(tmp_path)
    path = session.project.path
    before = path.read_bytes()
    session.add_mask(session.project.images[0].id, 1, _mask(1))

    def full_disk(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("annotator.core.coco.atomic_write_bytes", full_disk)
    with pytest.raises(UserError, match="No space left"):
        session.save()
    assert path.read_bytes() == before
    assert session.dirty
    assert journal_path(path).exists()  # the journal still holds the edit
    session.close()


def test_save_as_checks_the_target_lock_first(tmp_path):
    first = _saved_session(tmp_path)
    other_folder = _folder(tmp_path / "other")
    second, _ = AnnotationSession.open(other_folder)
    second.save()
    target = second.project.path
    target_bytes = target.read_bytes()
    with pytest.raises(UserError, match="open in another window"):
        first.save(target)
    assert target.read_bytes() == target_bytes
    second.close()
    first.close()


def test_mask_cache_is_bounded_by_bytes_and_images():
    project = Project(None)
    from annotator.core.project import ImageRecord, annotation_from_mask

    for image_id in range(1, 6):
        project.add_image(ImageRecord(image_id, f"{image_id}.png", 100, 100, path=f"/x/{image_id}"))
    cache = MaskCache(max_bytes=3 * 100 * 100)
    masks = []
    for image_id in range(1, 6):
        mask = np.zeros((100, 100), bool)
        mask[image_id : image_id + 10, 5:20] = True
        annotation = annotation_from_mask(image_id, image_id, 1, mask)
        masks.append(annotation)
        assert np.array_equal(cache.mask(annotation), mask)
        assert cache.nbytes <= cache.max_bytes
    assert len(cache) == 3
    cache.keep_images([5])
    assert len(cache) == 1 and cache.nbytes == 100 * 100


def test_an_autosave_without_journal_is_offered_and_a_failed_autosave_is_reported(
    tmp_path, monkeypatch
):
    from annotator.core import recovery
    from annotator.core.recovery import write_snapshot

    session = _saved_session(tmp_path)
    path = session.project.path
    session.add_mask(session.project.images[0].id, 1, _mask(2))
    edited = session.project.state()
    write_snapshot(session.project.snapshot(), "older-build", 1)  # no journal names it
    session._stop_journal()
    journal_path(path).unlink()
    os.utime(autosave_path(path), (os.path.getmtime(path) + 5,) * 2)
    reopened, _ = AnnotationSession.open(path)
    assert reopened.recovery is not None and reopened.recovery.session_id is None
    reopened.restore_recovery()
    assert reopened.project.state() == edited and reopened.dirty

    def full_disk(*_args, **_kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(recovery, "atomic_write_bytes", full_disk)
    messages = []
    reopened.add_listener(lambda events: messages.extend(e.text for e in events if e.text))
    reopened.add_mask(reopened.project.images[1].id, 1, _mask(4))
    reopened.fold()
    assert reopened.wait_for_disk()
    reopened.tick()
    assert any("No space left" in m for m in messages)
    assert journal_path(path).exists()  # the edit is still in the journal
    reopened.close(discard=True)


@pytest.mark.parametrize("save_as", [False, True])
def test_edits_made_while_a_save_is_written_stay_unsaved_and_journalled(tmp_path, save_as):
    session = _saved_session(tmp_path)
    image = session.project.images[0].id
    session.add_mask(image, 1, _mask(1))
    target = tmp_path / "elsewhere.json" if save_as else None
    job = session.prepare_save(target)  # the state with one annotation
    session.add_mask(image, 1, _mask(2))  # made while the file is written
    job.write()
    written = session.finish_save(job)
    assert session.dirty  # the second annotation is not in the file
    assert load_project(written)[0].total_annotations() == 1
    session._stop_journal()  # a crash now
    reopened, _ = AnnotationSession.open(written)
    assert reopened.recovery is not None
    assert reopened.recovery.project.total_annotations() == 2
    reopened.close()


def test_a_save_of_a_state_later_undone_leaves_no_clean_point(tmp_path):
    session = _saved_session(tmp_path)
    image = session.project.images[0].id
    session.add_mask(image, 1, _mask(1))
    job = session.prepare_save()
    session.undo()
    session.add_mask(image, 2, _mask(5))  # replaces the saved state's history
    job.write()
    session.finish_save(job)
    assert session.dirty
    session.undo()
    assert session.dirty  # the empty state is not the file's either
    session.close(discard=True)
