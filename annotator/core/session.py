"""`AnnotationSession`: one open project and everything that changes it, without Qt.

The session owns the project, the one undo stack, the prompt session of the current image, the
segment-everything proposals on offer, the one "unsaved" state, the project's lock, the journal
and autosave (crash recovery), and the decoded-mask cache. The window is a view bound to it (it
listens to `SessionEvent`s and calls the session's methods); the CLI commands that write a
project open, lock and save through it.

Notifications are batched: every undo-stack change is one batch, and `with session.batch():`
makes several one, so accepting 500 proposals is one undo step, one journal record and one list
of events for the view. Events carry ids only; listeners read the project.

Durability (see annotator.core.journal and annotator.core.recovery): each undo-stack change is
written to the journal before the method returns; a background thread fsyncs it within half a
second and folds it into an autosave snapshot from time to time. Opening a project whose journal
applies to the file as it is offers the recovered state (`recovery`); `restore_recovery()` takes
it and continues that journal, `decline_recovery()` sets the files aside until the next save.

Threads: every method runs on the caller's (GUI) thread; only the RecoveryWriter has its own.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from annotator.core.commands import (
    AddAnnotation,
    AddCategory,
    AddImages,
    Command,
    CompositeCommand,
    DeleteAnnotations,
    DeleteCategory,
    EditMask,
    RecolorCategory,
    RelabelAnnotations,
    RenameCategory,
    ReplaceImages,
    SetImageDone,
    SetProjectSetting,
    UndoStack,
)
from annotator.core.journal import Delta, Journal, file_stamp, journal_path, read_journal_lines
from annotator.core.mask_cache import MaskCache
from annotator.core.project import (
    MASKS_DO_NOT_OVERLAP,
    Annotation,
    Category,
    ImageRecord,
    Project,
    ProjectEvent,
    annotation_from_mask,
    palette_color,
)
from annotator.core.prompts import PromptSession
from annotator.core.proposals import (
    AcceptProposal,
    CompactProposal,
    ProposalSet,
    proposal_annotation,
)
from annotator.core.recovery import (
    FOLD_EVERY_RECORDS,
    FOLD_EVERY_S,
    Recovery,
    RecoveryWriter,
    decline_recovery,
    find_recovery,
    recovery_files,
    remove_files,
)
from annotator.errors import UserError

log = logging.getLogger(__name__)

PROJECT_NAME = "annotations.json"


@dataclass(frozen=True)
class SessionEvent:
    """What changed, for views. kind:
    "annotations", "categories", "images": those ids were added, removed or changed;
    "reset": everything (a new project or a restored state);
    "proposals": the proposals on offer changed; "dirty": the unsaved state flipped;
    "history": undo/redo availability or texts changed; "path": the project file changed;
    "revisit": an undo or redo changed these images (a view shows one of them);
    "message": `text` is a sentence for the person (a failed journal write, say)."""

    kind: str
    ids: frozenset[int] = frozenset()
    text: str = ""
    images: frozenset[int] = frozenset()  # "annotations": the images whose lists changed


@dataclass
class SaveJob:
    """A save in flight: `write()` runs on any thread (the snapshot is the session's own)."""

    snapshot: Project
    target: Path
    index: int  # the undo-stack index the snapshot is of
    seq: int  # the last journal record the snapshot holds

    def write(self) -> None:
        """Serialise and write atomically. Raises UserError (the file intact)."""
        from annotator.core.coco import save_project

        save_project(self.snapshot, self.target)


@dataclass
class OpenReport:
    """Sentences for the person about what opening found (nothing in it was dropped)."""

    messages: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class EditResult:
    """What a mask edit did: pixels changed (all annotations together), annotations deleted
    because the edit left them empty."""

    changed: int
    deleted: tuple[int, ...] = ()


def _sized(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    mask = np.asarray(mask, bool)
    if mask.shape != tuple(shape):
        raise ValueError(f"the mask is {mask.shape}, the image {tuple(shape)}")
    return mask


class AnnotationSession:
    """One open project. Construct with `open()` (a path) or directly with a Project."""

    def __init__(
        self,
        project: Project,
        *,
        journal: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.project = project
        self.stack = UndoStack(project)
        self.prompts = PromptSession()
        self.proposals: ProposalSet | None = None
        self.proposals_image_id: int | None = None
        self.masks = MaskCache()
        self.recovery: Recovery | None = None  # unsaved work found on open, until decided
        self.lock = None  # the ProjectLock we hold, or None
        self.lock_holder = None  # who else holds the lock when we could not take it
        self._journal_enabled = journal
        self._clock = clock
        self._session_id = uuid.uuid4().hex
        self._journal: Journal | None = None
        self._writer: RecoveryWriter | None = None
        self._seq = 0
        self._folded_seq = 0
        self._first_unfolded: float | None = None
        self._base_unsaved = False  # the state differs from the file without an undo step
        self._save_low_water: int | None = None  # lowest undo index since a save was prepared
        self._base_seq = 0
        self._was_dirty = False
        self._listeners: list[Callable[[list[SessionEvent]], None]] = []
        self._depth = 0
        self._project_events: list[ProjectEvent] = []
        self._op_events: list[ProjectEvent] = []
        self._extra_events: list[SessionEvent] = []
        self._closed = False
        project.add_listener(self._on_project_event)
        self.stack.add_listener(self._on_stack_changed)

    # ================================================================== opening
    @classmethod
    def open(
        cls, path: Path | None, *, take_lock: bool = True, journal: bool = True
    ) -> tuple[AnnotationSession, OpenReport]:
        """Open a folder of images (its `annotations.json` if there is one, with images added
        since as one undoable step), one image, a project .json, or None (the bundled samples).

        Raises UserError with one sentence for what cannot be opened; nothing is written then.
        """
        return cls.from_read(read_project(path), take_lock=take_lock, journal=journal)

    @classmethod
    def from_read(
        cls, read: ReadProject, *, take_lock: bool = True, journal: bool = True
    ) -> tuple[AnnotationSession, OpenReport]:
        """The session of what `read_project` read (on any thread): takes the lock and adds the
        folder's new images as one undoable step. Fast: call it on the GUI thread."""
        session = cls(read.project, journal=journal)
        if take_lock:
            session._take_lock(read.project.path)
        session.recovery = read.recovery
        if read.added:
            session.push(
                AddImages(read.added, f"Add {len(read.added)} new image(s) from the folder")
            )
        return session, OpenReport(list(read.messages))

    @classmethod
    def of(cls, project: Project, *, take_lock: bool = True) -> AnnotationSession:
        """A session of a project already in memory (a new one, or one a test built)."""
        session = cls(project)
        if take_lock:
            session._take_lock(project.path)
        return session

    # ================================================================== events
    def add_listener(self, callback: Callable[[list[SessionEvent]], None]) -> None:
        self._listeners.append(callback)

    def remove_listener(self, callback: Callable[[list[SessionEvent]], None]) -> None:
        if callback in self._listeners:
            self._listeners.remove(callback)

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Gather the notifications of everything inside into one list of events."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if self._depth == 0:
                self._flush()

    def _on_project_event(self, event: ProjectEvent) -> None:
        self._project_events.append(event)
        self._op_events.append(event)
        if event.kind == "annotations":
            self.masks.forget(i for i in event.ids if not self.project.has_annotation(i))
        if self._depth == 0:
            self._flush()

    def _emit(self, kind: str, ids=(), text: str = "") -> None:
        self._extra_events.append(SessionEvent(kind, frozenset(ids), text))
        if self._depth == 0:
            self._flush()

    def _flush(self) -> None:
        dirty = self.dirty
        if dirty != self._was_dirty:
            self._was_dirty = dirty
            self._extra_events.append(SessionEvent("dirty"))
        if not self._project_events and not self._extra_events:
            return
        merged: dict[tuple[str, str], set[int]] = {}
        images: set[int] = set()
        for event in self._project_events:
            merged.setdefault((event.kind, ""), set()).update(event.ids)
            images.update(event.images)
        for event in self._extra_events:
            merged.setdefault((event.kind, event.text), set()).update(event.ids)
        events = [
            SessionEvent(
                kind,
                frozenset(ids),
                text,
                frozenset(images) if kind == "annotations" else frozenset(),
            )
            for (kind, text), ids in merged.items()
        ]
        self._project_events, self._extra_events = [], []
        for callback in list(self._listeners):
            callback(events)

    # ================================================================== undo stack
    def push(self, command: Command) -> None:
        """Apply `command` as one undo step (one journal record, one batch of events).
        Raises KeyError/ValueError (nothing changed) when it does not apply."""
        self._stack_op("push", command.text, lambda: self.stack.push(command))

    def undo(self) -> None:
        if self.stack.can_undo():
            self._stack_op("undo", self.stack.undo_text(), self.stack.undo)

    def redo(self) -> None:
        if self.stack.can_redo():
            self._stack_op("redo", self.stack.redo_text(), self.stack.redo)

    def _stack_op(self, action: str, text: str, run: Callable[[], None]) -> None:
        if action == "undo" and self._save_low_water is not None:
            self._save_low_water = min(self._save_low_water, self.stack.index() - 1)
        with self.batch():
            self._op_events = []
            try:
                run()
            finally:
                events, self._op_events = self._op_events, []
            if events:
                self._journal_record(action, text, events)
                if action != "push":  # undo/redo: where it happened, so a view can go there
                    touched = {i for e in events if e.kind == "annotations" for i in e.images}
                    touched |= {i for e in events if e.kind == "images" for i in e.ids}
                    if touched:
                        self._emit("revisit", touched)

    def _on_stack_changed(self) -> None:
        self._emit("history")

    @property
    def dirty(self) -> bool:
        """The one "unsaved" state: the undo stack is off its clean index, or the state came
        from somewhere other than the file (restored unsaved work)."""
        return self._base_unsaved or not self.stack.is_clean()

    # ================================================================== journal
    def _journal_header(self) -> dict:
        return {
            "journal": 1,
            "session": self._session_id,
            "base": file_stamp(self.project.path),
            "base_seq": self._base_seq,  # the file holds the changes up to this record
            "project": str(self.project.path),
        }

    def _ensure_journal(self) -> Journal | None:
        if self._journal is not None or not self._journal_enabled or self.project.path is None:
            return self._journal
        if self.recovery is not None:
            self.decline_recovery()  # editing on without restoring: keep those files aside
        try:
            self._journal = Journal(journal_path(self.project.path), self._journal_header())
        except OSError as exc:
            self._journal_enabled = False
            self._emit(
                "message",
                text=f"Changes cannot be journalled beside the project ({exc.strerror or exc}); "
                "save often.",
            )
            return None
        self._writer = RecoveryWriter(self._journal)
        return self._journal

    def _journal_record(self, action: str, text: str, events: list[ProjectEvent]) -> None:
        journal = self._ensure_journal()
        if journal is None:
            return
        self._seq += 1
        try:
            journal.append(self._seq, action, text, Delta.of(self.project, events), time.time())
        except OSError as exc:
            self._emit("message", text=f"A change could not be journalled: {exc.strerror or exc}.")
            return
        if self._first_unfolded is None:
            self._first_unfolded = self._clock()
        self.tick()

    def tick(self) -> None:
        """Fold the journal into an autosave when due, and report the writer's failures. The
        window calls this from a timer too; it costs a snapshot only when a fold is due."""
        if self._writer is None:
            return
        for message in self._writer.take_errors():
            self._emit("message", text=message)
        unfolded = self._seq - self._folded_seq
        due = unfolded >= FOLD_EVERY_RECORDS or (
            unfolded > 0
            and self._first_unfolded is not None
            and self._clock() - self._first_unfolded >= FOLD_EVERY_S
        )
        if due:
            self.fold()

    def fold(self) -> None:
        """Hand the writer a snapshot of now (it writes the autosave and shortens the journal)."""
        if self._writer is None or self._seq == self._folded_seq:
            return
        self._writer.snapshot(
            self.project.snapshot(), self._session_id, self._seq, self._journal.header
        )
        self._folded_seq = self._seq
        self._first_unfolded = None

    def wait_for_disk(self, timeout: float = 30.0) -> bool:
        """Block until queued autosaves are written (tests; never the GUI thread in use)."""
        return self._writer is None or self._writer.wait_idle(timeout)

    def _stop_journal(self) -> None:
        if self._writer is not None:
            self._writer.stop()
            self._writer = None
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        self._seq = self._folded_seq = self._base_seq = 0
        self._first_unfolded = None

    # ================================================================== recovery
    def restore_recovery(self) -> None:
        """Take the unsaved work found on open: the project becomes that state (unsaved) and
        the journal it came from continues."""
        recovery = self.recovery
        if recovery is None:
            return
        self.recovery = None
        self.close_proposals()
        self.prompts.clear()
        self.project.remove_listener(self._on_project_event)
        self.stack.remove_listener(self._on_stack_changed)
        recovered = recovery.project
        recovered.path = self.project.path
        self.project = recovered
        self.stack = UndoStack(recovered)
        recovered.add_listener(self._on_project_event)
        self.stack.add_listener(self._on_stack_changed)
        self.masks.clear()
        self._base_unsaved = True
        if recovery.session_id is not None and self._journal_enabled:
            self._session_id = recovery.session_id
            base_seq = (recovery.header or {}).get("base_seq", 0)
            self._base_seq = base_seq if isinstance(base_seq, int) else 0
            try:
                self._journal = Journal(
                    journal_path(self.project.path), recovery.header, recovery.records
                )
                self._writer = RecoveryWriter(self._journal)
                self._seq = self._journal.last_seq
                self._folded_seq = min((r["seq"] for r in recovery.records), default=1) - 1
                self._first_unfolded = self._clock()
            except OSError as exc:
                self._emit("message", text=f"The journal cannot continue: {exc.strerror or exc}.")
        else:
            self._ensure_journal()
            self._journal_full_state()
        self._emit("reset")
        self._emit("history")

    def _journal_full_state(self) -> None:
        """Record the whole state once (a restored autosave without a journal to continue)."""
        p = self.project
        events = [
            ProjectEvent("images", tuple(r.id for r in p.images)),
            ProjectEvent("categories", tuple(c.id for c in p.categories)),
            ProjectEvent(
                "annotations",
                tuple(a.id for a in p.all_annotations()),
                tuple(r.id for r in p.images),
            ),
        ]
        self._journal_record("push", "Restore unsaved work", events)
        self.fold()

    def decline_recovery(self) -> None:
        """Set the found recovery files aside (`.declined`; the next save removes them)."""
        if self.recovery is None:
            return
        self.recovery = None
        decline_recovery(self.project.path)

    # ================================================================== lock
    def _take_lock(self, path: Path | None) -> None:
        from annotator.core.lock import ProjectLock

        if self.lock is not None:
            self.lock.release()
            self.lock = None
        self.lock_holder = None
        if path is None:
            return
        lock = ProjectLock(path)
        try:
            holder = lock.acquire()
        except UserError as exc:  # e.g. a read-only folder: work on, saving will say more
            self._emit("message", text=str(exc))
            return
        if holder is None:
            self.lock = lock
        else:
            self.lock_holder = holder

    def require_lock(self) -> None:
        """For CLI commands: raise UserError when another process holds the project."""
        if self.lock_holder is not None:
            raise UserError(
                f"{self.project.path.name} is open in another window "
                f"({self.lock_holder.describe()}); close it there first."
            )

    # ================================================================== saving
    def save(self, path: Path | None = None) -> Path:
        """Write the project now (to `path`: Save As). Raises UserError with the file intact.
        The window saves in the background instead: `prepare_save`, `SaveJob.write` on a
        thread, `finish_save`."""
        job = self.prepare_save(path)
        job.write()
        return self.finish_save(job)

    def prepare_save(self, path: Path | None = None) -> SaveJob:
        """A save of the state now (a snapshot: editing may go on while it is written).
        Save As checks the target's lock first. Raises UserError."""
        target = Path(path).absolute() if path is not None else self.project.path
        if target is None:
            raise UserError("The project has no file yet: choose where to save it.")
        if target != self.project.path:
            _check_not_locked(target)
        self._save_low_water = self.stack.index()
        return SaveJob(self.project.snapshot(), target, self.stack.index(), self._seq)

    def finish_save(self, job: SaveJob) -> Path:
        """After `job.write()` succeeded (on this thread): the file holds the state at
        `job.index`; edits made meanwhile stay unsaved and stay in the journal."""
        written, old_path = job.target, self.project.path
        moving = written != old_path
        if moving:
            self.project.path = written
            self.project.image_root = job.snapshot.image_root
        unchanged = self._save_low_water is not None and self._save_low_water >= job.index
        self.stack.set_clean_index(job.index if unchanged else None)
        self._save_low_water = None
        self._base_unsaved = False
        self.recovery = None
        self._rebase_journal(job.seq, old_path)
        if moving:
            self._take_lock(written)
            self._emit("path")
        self._emit("history")
        return written

    def _rebase_journal(self, saved_seq: int, old_path: Path | None) -> None:
        """The file now holds everything up to `saved_seq`: a new journal (a new session id, so
        no autosave of before the save is ever replayed) keeps only the changes made while the
        file was written; the old recovery files go."""
        written = self.project.path
        keep: list[dict] = []
        if self._journal is not None and self._seq > saved_seq:
            try:
                keep = [
                    r for r in read_journal_lines(self._journal.path)[1] if r["seq"] > saved_seq
                ]
            except OSError as exc:
                log.warning("journal unreadable after a save: %s", exc)
        last_seq = self._seq
        self._stop_journal()
        files = recovery_files(written)
        if old_path is not None and old_path != written:
            files += recovery_files(old_path)
        remove_files(files)
        self._session_id = uuid.uuid4().hex
        if not keep:
            self._base_seq = 0
            return
        self._base_seq = saved_seq
        try:
            self._journal = Journal(journal_path(written), self._journal_header(), keep)
        except OSError as exc:
            self._emit("message", text=f"Changes cannot be journalled: {exc.strerror or exc}.")
            return
        self._writer = RecoveryWriter(self._journal)
        self._seq, self._folded_seq = last_seq, saved_seq
        self._first_unfolded = self._clock()

    def close(self, discard: bool = False) -> None:
        """End the session: stop the writer, release the lock. A saved session leaves no
        recovery files; an unsaved one keeps them unless `discard` (the person chose so)."""
        if self._closed:
            return
        self._closed = True
        self.close_proposals()
        self._stop_journal()
        if self.project.path is not None and (discard or not self.dirty):
            if self.recovery is None:
                remove_files(recovery_files(self.project.path)[:2])
        if self.lock is not None:
            self.lock.release()
            self.lock = None
        self.project.remove_listener(self._on_project_event)
        self._listeners.clear()

    # ================================================================== edits
    def add_mask(
        self, image_id: int, category_id: int, mask: np.ndarray, text: str = "Add annotation"
    ) -> Annotation:
        """A new annotation of the HxW bool `mask` (one undo step). ValueError when empty."""
        self.project.category(category_id)
        mask = np.asarray(mask, bool)
        if self.masks_do_not_overlap:
            mask = mask & ~self._taken(image_id, mask.shape, ())
            if not mask.any():
                raise ValueError(
                    "every pixel of it belongs to other annotations (masks do not overlap)"
                )
        annotation = annotation_from_mask(
            self.project.next_annotation_id(), image_id, category_id, mask
        )
        self.push(AddAnnotation(annotation, text))
        return annotation

    def edit_masks(self, masks: dict[int, np.ndarray], text: str = "Edit mask") -> EditResult:
        """Give annotations new HxW bool masks (of their image's size): one undo step for all,
        recording only the masks that change; none changed, nothing is pushed.

        A mask edited to nothing deletes its annotation in that same step (an annotation always
        has pixels; erasing an object away means removing it, and Ctrl+Z brings it back).
        Raises KeyError (an unknown id) or ValueError (a wrong size) before anything changes."""
        from annotator.core.masks import encode_mask

        commands: list[Command] = []
        changed, deleted = 0, []
        taken: dict[int, np.ndarray] = {}
        for annotation_id, mask in masks.items():
            annotation = self.project.annotation(annotation_id)
            mask = np.array(mask, dtype=bool)  # a copy: the caller's buffer may change
            size = tuple(annotation.rle["size"])
            if mask.shape != size:
                raise ValueError(f"the mask is {mask.shape}, annotation {annotation_id} {size}")
            if self.masks_do_not_overlap:
                image_id = annotation.image_id
                if image_id not in taken:
                    taken[image_id] = self._taken(image_id, size, masks.keys())
                mask &= ~taken[image_id]
            old = self.masks.mask(annotation)
            count = int(np.count_nonzero(old != mask))
            if count == 0:
                continue
            changed += count
            if not mask.any():
                commands.append(DeleteAnnotations([annotation_id]))
                deleted.append(annotation_id)
                continue
            command = EditMask(annotation_id, encode_mask(mask), text)
            commands.append(command)
            # Cached under the new RLE before the redraw the push causes: no decode for it.
            self.masks.put(replace(annotation, rle=command.rle), mask)
        if commands:
            if deleted:
                text = f"{text} (deleted {len(deleted)} emptied)"
            self.push(commands[0] if len(commands) == 1 else CompositeCommand(text, commands))
        return EditResult(changed, tuple(deleted))

    @property
    def masks_do_not_overlap(self) -> bool:
        """The project setting: new and edited masks lose the pixels others hold."""
        return bool(self.project.settings.get(MASKS_DO_NOT_OVERLAP, False))

    def set_masks_do_not_overlap(self, on: bool) -> None:
        """Turn the setting on or off (one undo step; saved in the project file)."""
        if bool(on) != self.masks_do_not_overlap:
            self.push(
                SetProjectSetting(
                    MASKS_DO_NOT_OVERLAP,
                    True if on else None,  # off is the default: nothing written
                    "Masks do not overlap" if on else "Masks may overlap",
                )
            )

    def _taken_by_others(self, annotation: Annotation) -> np.ndarray:
        return self._taken(annotation.image_id, tuple(annotation.rle["size"]), (annotation.id,))

    def _without_taken(self, annotation: Annotation, taken: np.ndarray) -> Annotation | None:
        """`annotation` without the `taken` pixels (None when nothing is left)."""
        mask = self.masks.mask(annotation) & ~taken
        if not mask.any():
            return None
        new = annotation_from_mask(
            annotation.id, annotation.image_id, annotation.category_id, mask, annotation.iscrowd
        )
        new = replace(new, extra=annotation.extra)
        self.masks.put(new, mask)
        return new

    def _taken(self, image_id: int, shape, exclude) -> np.ndarray:
        """HxW bool: the pixels the image's annotations (but `exclude`) hold."""
        taken = np.zeros(tuple(shape), bool)
        exclude = set(exclude)
        for annotation in self.project.annotations_of(image_id):
            if annotation.id not in exclude:
                mask = self.masks.mask(annotation)
                if mask.shape == taken.shape:
                    taken |= mask
        return taken

    def edit_mask(self, annotation_id: int, mask: np.ndarray, text: str = "Edit mask"):
        """`edit_masks` for one annotation."""
        return self.edit_masks({annotation_id: mask}, text)

    def add_to_mask(self, annotation_id: int, mask: np.ndarray, text: str = "Add to mask"):
        """The annotation's mask united with the HxW bool `mask` (one undo step)."""
        old = self.masks.mask(self.project.annotation(annotation_id))
        return self.edit_mask(annotation_id, old | _sized(mask, old.shape), text)

    def cut_from_mask(self, annotation_id: int, mask: np.ndarray, text: str = "Cut from mask"):
        """The annotation's mask without the HxW bool `mask` (one undo step; emptied: deleted)."""
        old = self.masks.mask(self.project.annotation(annotation_id))
        return self.edit_mask(annotation_id, old & ~_sized(mask, old.shape), text)

    def clean_up(self, ids, operation: str, amount: int = 0) -> EditResult:
        """A clean-up of each annotation in `ids`, one undo step for all: "fill_holes"
        (background 4-connected), "remove_islands" (foreground 8-connected parts of fewer than
        `amount` pixels), "smooth" (opening then closing with a disc of radius `amount`)."""
        from annotator.core import mask_edit

        texts = {
            "fill_holes": "Fill holes",
            "remove_islands": f"Remove islands under {amount} px",
            "smooth": f"Smooth (radius {amount})",
        }
        if operation not in texts:
            raise ValueError(f"unknown clean-up {operation!r}")
        masks = {}
        for annotation_id in ids:
            mask = self.masks.mask(self.project.annotation(annotation_id))
            if operation == "fill_holes":
                masks[annotation_id] = mask_edit.fill_holes(mask)
            elif operation == "remove_islands":
                masks[annotation_id] = mask_edit.remove_islands(mask, int(amount))
            else:
                masks[annotation_id] = mask_edit.smooth(mask, int(amount))
        return self.edit_masks(masks, texts[operation])

    def merge(self, ids) -> Annotation:
        """Two or more annotations of one image become one (one undo step): the lowest id keeps
        its id, label and foreign keys, with the union of the masks; the others are deleted.
        Raises ValueError (fewer than two, several images) or KeyError."""
        from annotator.core.masks import encode_mask

        ids = sorted(dict.fromkeys(ids))
        annotations = [self.project.annotation(i) for i in ids]
        if len(annotations) < 2:
            raise ValueError("select two or more annotations to merge")
        if len({a.image_id for a in annotations}) > 1:
            raise ValueError("annotations on different images cannot be merged")
        keep = annotations[0]
        union = np.zeros(tuple(keep.rle["size"]), bool)
        for annotation in annotations:
            union |= self.masks.mask(annotation)
        commands: list[Command] = []
        if self.masks.mask(keep).sum() != union.sum():
            commands.append(EditMask(keep.id, encode_mask(union), "Merge"))
        commands.append(DeleteAnnotations(ids[1:]))
        self.push(CompositeCommand(f"Merge {len(ids)} annotations", commands))
        return self.project.annotation(keep.id)

    def split(self, annotation_id: int) -> list[Annotation]:
        """An annotation of several parts (8-connected) becomes one per part (one undo step):
        it keeps its largest part (the first of equals), each other part is a new annotation of
        its label, crossing and foreign keys, on top. Returns them all, the original first.
        Raises ValueError for a one-part mask."""
        from annotator.core.mask_edit import components
        from annotator.core.masks import encode_mask

        annotation = self.project.annotation(annotation_id)
        parts = components(self.masks.mask(annotation))
        if len(parts) < 2:
            raise ValueError(f"annotation {annotation_id} has one part only")
        largest = max(range(len(parts)), key=lambda n: (int(parts[n].sum()), -n))
        rest = [p for n, p in enumerate(parts) if n != largest]
        next_id = self.project.next_annotation_id()
        new = [
            replace(
                annotation_from_mask(
                    next_id + n, annotation.image_id, annotation.category_id, part,
                    annotation.iscrowd,
                ),
                extra=annotation.extra,
            )
            for n, part in enumerate(rest)
        ]  # fmt: skip
        commands: list[Command] = [
            EditMask(annotation_id, encode_mask(parts[largest]), "Split"),
            *(AddAnnotation(a) for a in new),
        ]
        self.push(CompositeCommand(f"Split into {len(parts)} parts", commands))
        return [self.project.annotation(annotation_id), *new]

    def delete_annotations(self, ids) -> None:
        self.push(DeleteAnnotations(ids))

    def relabel(self, ids, category_id: int) -> None:
        self.push(RelabelAnnotations(ids, category_id))

    def set_done(self, image_id: int, done: bool) -> None:
        self.push(SetImageDone(image_id, done))

    def relink(self, records: list[ImageRecord]) -> None:
        self.push(ReplaceImages(records))

    def add_category(self, name: str, color=None) -> Category:
        category = Category(
            self.project.next_category_id(),
            name,
            tuple(color) if color else palette_color(len(self.project.categories)),
        )
        self.push(AddCategory(category))
        return category

    def rename_category(self, category_id: int, name: str) -> None:
        self.push(RenameCategory(category_id, name))

    def recolor_category(self, category_id: int, color) -> None:
        self.push(RecolorCategory(category_id, color))

    def delete_category(self, category_id: int) -> None:
        self.push(DeleteCategory(category_id))

    # ================================================================== proposals
    def set_proposals(self, image_id: int, key: str, proposals: list[CompactProposal]) -> None:
        """Offer segment-everything proposals for image `image_id` (replacing any on offer)."""
        self.close_proposals()
        self.proposals = ProposalSet(key, list(proposals), on_change=self._proposals_changed)
        self.proposals_image_id = image_id
        self._emit("proposals")

    def accept_proposal(self, proposal: CompactProposal, category_id: int) -> Annotation:
        """One proposal becomes an annotation of `category_id` (one undo step)."""
        annotation = proposal_annotation(
            self.project.next_annotation_id(), self.proposals_image_id, category_id, proposal
        )
        if self.masks_do_not_overlap:
            annotation = self._without_taken(annotation, self._taken_by_others(annotation))
            if annotation is None:
                raise ValueError(
                    "every pixel of it belongs to other annotations (masks do not overlap)"
                )
        self.push(AcceptProposal(annotation, proposal, self.proposals))
        return annotation

    def accept_all_proposals(self, category_id: int) -> int:
        """Every proposal on offer becomes an annotation, best first: one undo step, one
        journal record, one batch of events. Returns how many."""
        if self.proposals is None or not len(self.proposals):
            return 0
        self.project.category(category_id)
        first_id = self.project.next_annotation_id()
        image_id = self.proposals_image_id
        commands = []
        taken = None
        for proposal in self.proposals.items:
            annotation = proposal_annotation(
                first_id + len(commands), image_id, category_id, proposal
            )
            if self.masks_do_not_overlap:  # best first: each takes only what is still free
                if taken is None:
                    taken = self._taken_by_others(annotation)
                annotation = self._without_taken(annotation, taken)
                if annotation is None:
                    continue  # nothing of it is free: it stays on offer
                taken |= self.masks.mask(annotation)
            commands.append(AcceptProposal(annotation, proposal, self.proposals))
        if not commands:
            return 0
        self.push(CompositeCommand(f"Accept {len(commands)} proposals", commands))
        return len(commands)

    def close_proposals(self) -> None:
        if self.proposals is not None:
            self.proposals.close()
            self.proposals = None
            self.proposals_image_id = None
            self._emit("proposals")

    def _proposals_changed(self) -> None:
        self._emit("proposals")

    # ================================================================== views
    def masks_of(self, image_id: int) -> list[tuple[Annotation, np.ndarray]]:
        """The image's annotations with their decoded masks (bottom to top). An annotation whose
        RLE cannot be decoded (a hand-edited file) is left out and named in a "message" event;
        it stays in the project and is written back as it was."""
        out, broken = [], []
        for annotation in self.project.annotations_of(image_id):
            try:
                out.append((annotation, self.masks.mask(annotation)))
            except ValueError:
                broken.append(annotation.id)
        if broken:
            ids = ", ".join(map(str, broken[:10]))
            self._emit("message", text=f"Annotation(s) {ids} have corrupt masks and are not shown.")
        return out

    def masks_decoded(self, image_id: int, masks: dict) -> None:
        """Masks of `image_id` decoded off this thread ({annotation id: (rle, mask)}), for the
        cache; those of annotations changed meanwhile (another RLE now) are dropped."""
        for annotation in self.project.annotations_of(image_id):
            entry = masks.get(annotation.id)
            if entry is not None and entry[0] is annotation.rle:
                self.masks.put(annotation, entry[1])

    def looking_at(self, image_ids) -> None:
        """The view shows these images now: the mask cache keeps only theirs."""
        self.masks.keep_images(image_ids)


def _check_not_locked(target: Path) -> None:
    """Save As: refuse a target another live window holds."""
    from annotator.core.lock import lock_holder_of

    holder = lock_holder_of(target)
    if holder is not None:
        raise UserError(
            f"{target.name} is open in another window ({holder.describe()}); "
            "choose another file or close it there."
        )


@dataclass
class ReadProject:
    """What opening a path read from disk, before any session exists (see `read_project`)."""

    project: Project
    messages: list[str]
    added: list[ImageRecord]  # the folder's images the project does not list yet
    recovery: Recovery | None


def read_project(path: Path | None) -> ReadProject:
    """Read what `AnnotationSession.open(path)` opens, touching nothing but files: safe on a
    background thread (a 50,000-annotation project takes a second or two). Raises UserError."""
    project, messages, added = _read_project(path)
    recovery = find_recovery(project.path, project) if project.path is not None else None
    return ReadProject(project, messages, added, recovery)


def _read_project(path: Path | None) -> tuple[Project, list[str], list[ImageRecord]]:
    """(project, messages, images to add as an undoable step) for a path the person gave."""
    from annotator.core.coco import add_new_images, load_project
    from annotator.core.images import is_image_file, list_images

    if path is None:
        from annotator.paths import data_dir, samples_folder

        project_path = data_dir() / "samples-project" / PROJECT_NAME
        if project_path.is_file():
            project, report = load_project(project_path)
            return project, report.messages(), []
        project_path.parent.mkdir(parents=True, exist_ok=True)
        project = Project.from_images(list_images(samples_folder()), project_path)
        return project, list(project.unreadable_images), []
    path = Path(path).expanduser().absolute()
    if not path.exists():
        raise UserError(f"{path} does not exist.")
    if path.is_dir():
        project_path = path / PROJECT_NAME
        if not project_path.exists():
            project = Project.from_folder(path, PROJECT_NAME)
            messages = [] if project.images else [f"{path} has no images."]
            return project, messages + list(project.unreadable_images), []
        project, report = load_project(project_path)
        # The new files become one undoable step, not a silent difference from the file.
        probe = project.snapshot()
        added, warnings = add_new_images(probe, list_images(path))
        messages = report.messages() + warnings
        if added:
            messages.append(f"{len(added)} new image(s) found in the folder were added.")
        if not project.images and not added:
            messages.append(f"{path} has no images.")
        return project, messages, added
    if path.suffix.lower() == ".json":
        project, report = load_project(path)
        return project, report.messages(), []
    from annotator.core.video import is_video_file

    if is_video_file(path):
        from annotator.core.sequence import video_project

        project = video_project(path)
        return project, list(project.unreadable_images), []
    if is_image_file(path):
        existing = path.parent / PROJECT_NAME
        if existing.is_file():
            project, report = load_project(existing)
            if any(project.image_path(r).resolve() == path.resolve() for r in project.images):
                return project, report.messages(), []
        project = Project.from_images([path], path.parent / PROJECT_NAME)
        return project, list(project.unreadable_images), []
    raise UserError(f"{path.name} is neither a folder, an image nor a project .json file.")
