"""Model work off the GUI thread: one worker on one QThread, and the controller that talks to it.

The worker is the only code that touches the engine (load, encode, decode), so the engine needs
no locks. The GUI thread never waits for it: requests go into a mailbox of single slots (the
latest request replaces a waiting one of the same kind) and results come back as queued signals
carrying frozen dataclasses of numpy arrays.

Staleness: every request carries (generation, key, revision). The controller bumps `generation`
whenever the image changes and drops any result whose generation or key is not current; the
PromptSession drops predictions whose revision is not its current one. So a result for an image
or prompt state the user has left is never shown.

Priorities inside the worker: load the engine, then decode (a person is waiting on a click), then
encode the current image, then segment everything (Ctrl+E), then pre-encode the next images into
the cache, one at a time, so a click or a navigation is answered after at most one prefetch job.

Segment everything takes seconds to minutes; it runs on the same worker (the only code touching
the engine) and polls the job's `cancel` event between batches of points. The controller sets that
event on navigation, on a model change and on shutdown, and drops the job's result by
(generation, key, serial) like any other; the Cancel button sets it too.

Longer work of other kinds (find a phrase in every image, propagate masks through frames) is a
`WorkerTask`: a generator the worker steps through. Between two steps the worker answers the
waiting click and embedding jobs, so a person keeps labelling while a task streams its results
(`task_partial`) and progress; the task ends with `task_finished`. One task runs at a time; a new
one, a model change or shutdown cancels the running one, whose later results are dropped by serial.
"""

from __future__ import annotations

import gc
import logging
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from PySide6.QtCore import QObject, QThread, Signal, Slot

from annotator.engines.base import Embedding, Prediction, Prompts, Segmenter
from annotator.engines.cache import COMPUTED, FROM_STORE
from annotator.errors import UserError

CLASSIC_NAME = "Classic (no model)"


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineSpec:
    """Which engine to load: a SAM checkpoint, or None for the classic (no model) engine."""

    checkpoint: str | None = None
    model_type: str = "auto"
    device: str = "auto"


@dataclass(frozen=True)
class EngineInfo:
    name: str
    device: str
    fingerprint: str
    automatic: bool = False  # can segment everything (a SAM engine with its `model`)
    find: bool = False  # can find by phrase or example box (SAM 3)
    clicks: bool = True  # decodes clicks and boxes (SAM 3 here does not)


NEEDS_SAM = (
    "Segment everything needs a SAM model; the classic engine cannot propose masks. "
    "Choose a checkpoint with Ctrl+M."
)


def needs_sam_message(engine_name: str) -> str:
    """Why segment everything is unavailable with the engine called `engine_name`."""
    from annotator.engines.automatic import automatic_unavailable

    if engine_name.lower().startswith("classic"):
        return NEEDS_SAM
    return f"{automatic_unavailable(engine_name)[:-1]} (Ctrl+M)."


def supports_automatic(engine) -> bool:
    """Whether `generate_proposals` can run with `engine` (`automatic.supports_automatic`)."""
    from annotator.engines.automatic import supports_automatic as engine_supports_automatic

    return engine_supports_automatic(engine)


@dataclass(frozen=True)
class EncodeJob:
    generation: int
    key: str  # the image's path as a string: names it in the worker's memory
    path: str


@dataclass(frozen=True)
class DecodeJob:
    generation: int
    key: str  # the image's path as a string (as EncodeJob.key)
    revision: int
    prompts: Prompts


@dataclass(frozen=True)
class AutoMaskJob:
    """Segment everything on one image. cancel: set by the GUI thread to stop it early."""

    generation: int
    key: str  # the image's path as a string (as EncodeJob.key)
    serial: int  # which Ctrl+E run: a restarted run's late results are dropped
    settings: object  # AutoMaskSettings
    cancel: threading.Event


@dataclass(frozen=True)
class AutoMasked:
    """How a segment-everything run ended: proposals (a list of CompactProposal, best first), or
    cancelled, or a one-sentence failure message."""

    generation: int
    key: str
    serial: int
    proposals: tuple = ()
    cancelled: bool = False
    message: str = ""
    seconds: float = 0.0


class TaskContext:
    """What a `WorkerTask` may use on the worker thread: the engine, embeddings (memory, disk
    cache, encoder, as clicks get them), images, progress, and its cancel flag."""

    def __init__(self, worker: InferenceWorker, job: TaskJob) -> None:
        self._worker = worker
        self._job = job

    @property
    def engine(self) -> Segmenter:
        return self._worker.engine

    def embedding_for(self, path: str) -> tuple[Embedding, bool]:
        """(embedding, cache_hit) of the image at `path`."""
        embedding, source = self._worker._embedding_for(path, path)
        return embedding, source != COMPUTED

    def load_image(self, path: str):
        """HxWx3 uint8 RGB, as `annotator.core.images.load_image`."""
        return self._worker._load_image(path)

    def progress(self, done: int, total: int) -> None:
        self._worker.task_progress.emit(self._job.serial, int(done), int(total))

    def cancelled(self) -> bool:
        return self._job.cancel.is_set()


class WorkerTask(Protocol):
    """A long job on the worker: `run(context)` is a generator.

    Each `yield value` ends one step: a value that is not None goes to the window as a partial
    result (`task_partial`), as it lands; between steps the worker answers waiting clicks. The
    generator's return value is the final result (`TaskFinished.result`). A task checks
    `context.cancelled()` where it can stop early; the worker also stops at the next step.
    Values must be plain (numpy arrays, frozen dataclasses): they cross threads.
    """

    def run(self, context: TaskContext) -> Iterator[Any]: ...


@dataclass(frozen=True)
class TaskJob:
    serial: int
    task: WorkerTask
    cancel: threading.Event


@dataclass(frozen=True)
class TaskFinished:
    """How a task ended: its result, or cancelled, or a one-sentence failure (exc_info set when
    the failure was a bug, for the crash report)."""

    serial: int
    result: Any = None
    cancelled: bool = False
    message: str = ""
    seconds: float = 0.0
    exc_info: tuple | None = None


@dataclass(frozen=True)
class Encoded:
    generation: int
    key: str
    cache_hit: bool
    seconds: float
    # Where the embedding came from: FROM_MEMORY, or engines.cache's FROM_CACHE, FROM_STORE, COMPUTED.
    source: str


@dataclass(frozen=True)
class Decoded:
    generation: int
    key: str
    revision: int
    prediction: Prediction
    seconds: float


@dataclass(frozen=True)
class Failure:
    """A job that failed. exc_info: (type, value, traceback) when the failure was not a
    UserError (a bug or a broken install): the window sends it to the crash report."""

    generation: int
    key: str
    message: str
    exc_info: tuple | None = None


def _failure(generation: int, key: str, exc: Exception) -> Failure:
    if isinstance(exc, UserError):
        return Failure(generation, key, str(exc))
    log.error("worker job failed", exc_info=exc)
    return Failure(generation, key, str(exc) or type(exc).__name__, sys.exc_info())


class EmbeddingState(Enum):
    """What the status bar says about the current image's embedding."""

    NO_ENGINE = "no model"
    LOADING_MODEL = "loading model"
    WAITING = "waiting"
    ENCODING = "embedding"
    READY = "ready"
    FAILED = "failed"


def default_engine_loader(spec: EngineSpec) -> Segmenter:
    """Load what `spec` names; runs in the worker (imports torch there, not on the GUI thread)."""
    if spec.checkpoint:
        from annotator.engines.families import load_model

        return load_model(spec.checkpoint, model_type=spec.model_type, device=spec.device)
    from annotator.engines.classic import ClassicEngine

    return ClassicEngine()


def _engine_info(engine) -> EngineInfo:
    return EngineInfo(
        engine.name,
        engine.device,
        engine.fingerprint,
        supports_automatic(engine),
        bool(getattr(engine, "supports_find", False)),
        bool(getattr(engine, "supports_clicks", True)),
    )


FROM_MEMORY = "memory"  # the embedding was in the worker's memory (beside the cache's sources)


def _default_cache():
    """The local cache, reading through the shared store that $ANNOTATOR_EMBEDDING_STORE (else
    the setting) names; a store that cannot be used is logged and left out, never fatal."""
    from annotator.engines.cache import EmbeddingCache
    from annotator.engines.store import EmbeddingStore, store_from_environment
    from annotator.qt.settings import Settings

    settings = Settings()
    try:
        store = store_from_environment()
        if store is None and settings.embedding_store:
            store = EmbeddingStore(settings.embedding_store)
    except UserError as exc:
        log.warning("Not reading the embedding store: %s", exc)
        store = None
    return EmbeddingCache(store=store, contribute=settings.embedding_store_contribute)


class InferenceWorker(QObject):
    """Lives on the worker thread. Public `submit_*` methods are called from the GUI thread."""

    engine_loaded = Signal(object)  # EngineInfo
    engine_failed = Signal(str)
    encode_started = Signal(int, str)  # generation, key
    encoded = Signal(object)  # Encoded
    decoded = Signal(object)  # Decoded
    failed = Signal(object)  # Failure
    prefetched = Signal(str)  # key
    auto_progress = Signal(int, int, int)  # serial, done, total
    auto_finished = Signal(object)  # AutoMasked
    task_progress = Signal(int, int, int)  # serial, done, total
    task_partial = Signal(int, object)  # serial, a value the task yielded
    task_finished = Signal(object)  # TaskFinished
    _wake = Signal()

    MEMORY_EMBEDDINGS = 4  # current image + prefetched neighbours (SAM: 4 MiB each)

    def __init__(
        self,
        engine_loader: Callable[[EngineSpec], Segmenter] = default_engine_loader,
        cache_factory: Callable[[], object] | None = _default_cache,
        image_loader: Callable[[str], object] | None = None,
    ) -> None:
        super().__init__()
        self._engine_loader = engine_loader
        self._cache_factory = cache_factory
        self._image_loader = image_loader
        self._mailbox_lock = threading.Lock()  # guards only the mailbox slots below
        self._engine_spec: EngineSpec | None = None
        self._encode: EncodeJob | None = None
        self._decode: DecodeJob | None = None
        self._auto: AutoMaskJob | None = None
        self._task: TaskJob | None = None
        self._prefetch: list[str] = []
        self._stopping = False
        # Worker-thread state: never touched from the GUI thread.
        self.engine: Segmenter | None = None
        self._cache = None
        # key -> (embedding, where it came from when it entered memory)
        self._embeddings: OrderedDict[str, tuple[Embedding, str]] = OrderedDict()
        self._wake.connect(self._drain)

    # ---------------------------------------------------------------- GUI-thread side
    def submit_engine(self, spec: EngineSpec) -> None:
        with self._mailbox_lock:
            self._engine_spec = spec
            self._prefetch = []
        self._wake.emit()

    def submit_encode(self, job: EncodeJob) -> None:
        with self._mailbox_lock:
            self._encode = job
            self._decode = None
            self._auto = None  # of the previous image (the controller also set its cancel)
            self._prefetch = []  # navigation cancels what is queued
        self._wake.emit()

    def submit_auto(self, job: AutoMaskJob) -> None:
        with self._mailbox_lock:
            self._auto = job
        self._wake.emit()

    def submit_task(self, job: TaskJob) -> None:
        with self._mailbox_lock:
            self._task = job
        self._wake.emit()

    def submit_decode(self, job: DecodeJob) -> None:
        with self._mailbox_lock:
            self._decode = job
        self._wake.emit()

    def submit_prefetch(self, paths: list[str]) -> None:
        with self._mailbox_lock:
            self._prefetch = list(paths)
        self._wake.emit()

    def stop(self) -> None:
        """Drop everything waiting; the job in progress finishes, then the thread can quit."""
        with self._mailbox_lock:
            self._stopping = True
            self._engine_spec = self._encode = self._decode = self._auto = self._task = None
            self._prefetch = []

    # ---------------------------------------------------------------- worker-thread side
    # Mailbox slots in the order the worker serves them: a click first, then the embedding a
    # person waits for, then the long jobs; between two steps of a task only the first two.
    _SLOTS = ("_engine_spec", "_decode", "_encode", "_auto", "_task")
    _INTERACTIVE_SLOTS = ("_decode", "_encode")

    def _take(self, slots: tuple[str, ...] = _SLOTS):
        with self._mailbox_lock:
            if self._stopping:
                return None
            for slot in slots:
                job = getattr(self, slot)
                if job is not None:
                    setattr(self, slot, None)
                    return job
            if slots is self._SLOTS and self._prefetch and self.engine is not None:
                return ("prefetch", self._prefetch.pop(0))
            return None

    @Slot()
    def _drain(self) -> None:
        while (job := self._take()) is not None:
            if isinstance(job, EngineSpec):
                self._load_engine(job)
            elif isinstance(job, DecodeJob):
                self._run_decode(job)
            elif isinstance(job, EncodeJob):
                self._run_encode(job)
            elif isinstance(job, AutoMaskJob):
                self._run_auto(job)
            elif isinstance(job, TaskJob):
                self._run_task(job)
            else:
                self._run_prefetch(job[1])

    def _load_engine(self, spec: EngineSpec) -> None:
        # A full garbage collection holds the GIL for as long as it scans every object: with
        # transformers and a model loaded that is 0.3-0.5 s, a visible freeze of the window.
        # The loaded engine's objects are frozen out of collection; unfrozen before the next
        # load so a replaced engine's cycles can still be freed.
        gc.unfreeze()
        try:
            engine = self._engine_loader(spec)
            if self._cache is None and self._cache_factory is not None:
                self._cache = self._cache_factory()
        except Exception as exc:  # UserError or a broken install: the window shows the sentence
            log.warning("Loading %s failed", spec, exc_info=True)
            self.engine_failed.emit(str(exc))
            if self.engine is not None:  # the window keeps working with the model it had
                self.engine_loaded.emit(_engine_info(self.engine))
            gc.freeze()
            return
        self.engine = engine
        self._embeddings.clear()
        gc.freeze()
        self.engine_loaded.emit(_engine_info(engine))

    def _load_image(self, path: str):
        if self._image_loader is not None:
            return self._image_loader(path)
        from annotator.core.images import load_image

        return load_image(path)

    def _embedding_for(self, key: str, path: str) -> tuple[Embedding, str]:
        """The embedding of the image at `path` and where it came from: memory (FROM_MEMORY),
        the disk cache, the shared store (FROM_STORE), or the encoder (COMPUTED)."""
        if key in self._embeddings:
            self._embeddings.move_to_end(key)
            embedding, origin = self._embeddings[key]
            # A prefetched embedding that came from the store still says so when it is shown.
            return embedding, FROM_STORE if origin == FROM_STORE else FROM_MEMORY
        image = self._load_image(path)
        if self._cache is not None:
            embedding, source = self._cache.encode_with_source(self.engine, image)
        else:
            embedding, source = self.engine.encode(image), COMPUTED
        self._embeddings[key] = (embedding, source)
        while len(self._embeddings) > self.MEMORY_EMBEDDINGS:
            self._embeddings.popitem(last=False)
        return embedding, source

    def _run_encode(self, job: EncodeJob) -> None:
        if self.engine is None:
            return
        self.encode_started.emit(job.generation, job.key)
        start = time.perf_counter()
        try:
            _, source = self._embedding_for(job.key, job.path)
        except Exception as exc:
            self.failed.emit(_failure(job.generation, job.key, exc))
            return
        seconds = time.perf_counter() - start
        self.encoded.emit(Encoded(job.generation, job.key, source != COMPUTED, seconds, source))

    def _run_decode(self, job: DecodeJob) -> None:
        if self.engine is None:
            return
        start = time.perf_counter()
        try:
            # Normally in memory (the controller decodes only after `encoded`); re-encoded if
            # prefetching pushed it out.
            embedding, _ = self._embedding_for(job.key, job.key)
            prediction = self.engine.decode(embedding, job.prompts)
        except Exception as exc:
            self.failed.emit(_failure(job.generation, job.key, exc))
            return
        self.decoded.emit(
            Decoded(job.generation, job.key, job.revision, prediction, time.perf_counter() - start)
        )

    def _run_auto(self, job: AutoMaskJob) -> None:
        """Segment everything on the job's image, with its embedding from memory when there.

        The embedding is passed whatever the crop layers: with crop_n_layers == 0 the image
        encoder does not run at all; with crops it still serves the full-image crop.
        """
        from annotator.core.proposals import CompactProposal
        from annotator.engines.automatic import Cancelled, generate_proposals

        def finish(**result) -> None:
            self.auto_finished.emit(AutoMasked(job.generation, job.key, job.serial, **result))

        if self.engine is None:
            finish(message="No model is loaded.")
            return
        if not supports_automatic(self.engine):
            finish(message=needs_sam_message(getattr(self.engine, "name", "Classic")))
            return
        if job.cancel.is_set():
            finish(cancelled=True)
            return
        start = time.perf_counter()
        try:
            embedding, _ = self._embedding_for(job.key, job.key)
            image = self._load_image(job.key)
            proposals = generate_proposals(
                self.engine,
                image,
                job.settings,
                embedding=embedding,
                progress=lambda done, total: self.auto_progress.emit(job.serial, done, total),
                cancelled=job.cancel.is_set,
            )
            compact = []
            while proposals:  # one full-size mask at a time: decoded, packed, dropped
                proposal = proposals.pop(0)
                packed = CompactProposal.from_mask(
                    proposal.mask, proposal.predicted_iou, proposal.stability_score
                )
                if packed is not None:  # the small-region clean-up can empty a mask
                    compact.append(packed)
        except Cancelled:
            finish(cancelled=True)
            return
        except Exception as exc:
            log.warning("Segment everything failed", exc_info=True)
            finish(message=str(exc))
            return
        finish(proposals=tuple(compact), seconds=time.perf_counter() - start)

    def _run_task(self, job: TaskJob) -> None:
        def finish(**result) -> None:
            self.task_finished.emit(TaskFinished(job.serial, **result))

        if self.engine is None:
            finish(message="No model is loaded.")
            return
        start = time.perf_counter()
        try:
            steps = job.task.run(TaskContext(self, job))
            while True:
                if job.cancel.is_set():
                    steps.close()
                    finish(cancelled=True, seconds=time.perf_counter() - start)
                    return
                try:
                    value = next(steps)
                except StopIteration as stop:
                    finish(result=stop.value, seconds=time.perf_counter() - start)
                    return
                if value is not None and not job.cancel.is_set():
                    self.task_partial.emit(job.serial, value)
                while (waiting := self._take(self._INTERACTIVE_SLOTS)) is not None:
                    if isinstance(waiting, DecodeJob):
                        self._run_decode(waiting)
                    else:
                        self._run_encode(waiting)
        except Exception as exc:
            failure = _failure(0, "", exc)
            finish(
                message=failure.message,
                exc_info=failure.exc_info,
                seconds=time.perf_counter() - start,
            )

    def _run_prefetch(self, path: str) -> None:
        try:
            self._embedding_for(path, path)
        except Exception:
            log.info("Prefetching %s failed", path, exc_info=True)
            return  # a broken neighbour is reported when the user opens it
        self.prefetched.emit(path)


class InferenceController(QObject):
    """GUI-thread side: owns the worker thread, tracks the current image, drops stale results.

    Use: `start(spec)`; `set_image(path)` on navigation; `request_decode(revision, prompts)` on
    every prompt edit (held until the embedding is ready); `set_prefetch(paths)`; `shutdown()`.
    """

    engine_ready = Signal(object)  # EngineInfo
    engine_failed = Signal(str)
    state_changed = Signal(object, str)  # EmbeddingState, detail for the status bar
    prediction_ready = Signal(int, object)  # revision, Prediction (current image only)
    error = Signal(str)
    crashed = Signal(object)  # exc_info of an unexpected worker failure
    auto_progress = Signal(int, int)  # done, total of the running segment-everything job
    auto_finished = Signal(object)  # AutoMasked of the running job (current image only)
    task_progress = Signal(int, int)  # done, total of the running task
    task_partial = Signal(object)  # a value the running task yielded
    task_finished = Signal(object)  # TaskFinished of the running task

    def __init__(self, worker: InferenceWorker | None = None, parent=None) -> None:
        super().__init__(parent)
        self.worker = worker or InferenceWorker()
        self.thread = QThread()
        self.thread.setObjectName("annotator-inference")
        self.worker.moveToThread(self.thread)
        self.generation = 0
        self.key: str | None = None
        self.engine_info: EngineInfo | None = None
        self.state = EmbeddingState.NO_ENGINE
        self.embedding_ready = False
        self.last_encode_seconds: float | None = None
        self.encode_started_at: float | None = None
        self._waiting_decode: DecodeJob | None = None
        self._prefetch: list[str] = []
        self._auto_job: AutoMaskJob | None = None
        self._auto_serial = 0
        self._task_job: TaskJob | None = None
        self._task_serial = 0
        self.worker.engine_loaded.connect(self._on_engine_loaded)
        self.worker.engine_failed.connect(self._on_engine_failed)
        self.worker.encode_started.connect(self._on_encode_started)
        self.worker.encoded.connect(self._on_encoded)
        self.worker.decoded.connect(self._on_decoded)
        self.worker.failed.connect(self._on_failed)
        self.worker.auto_progress.connect(self._on_auto_progress)
        self.worker.auto_finished.connect(self._on_auto_finished)
        self.worker.task_progress.connect(self._on_task_progress)
        self.worker.task_partial.connect(self._on_task_partial)
        self.worker.task_finished.connect(self._on_task_finished)

    # ---------------------------------------------------------------- requests
    def start(self, spec: EngineSpec) -> None:
        if not self.thread.isRunning():
            self.thread.start()
        self.load_engine(spec)

    def load_engine(self, spec: EngineSpec) -> None:
        self.cancel_auto()
        self.cancel_task()
        self.engine_info = None
        self.embedding_ready = False
        self.generation += 1
        self._set_state(EmbeddingState.LOADING_MODEL, spec.checkpoint or CLASSIC_NAME)
        self.worker.submit_engine(spec)
        if self.key is not None:
            self._submit_encode()

    def set_image(self, path: str | None) -> None:
        """The user moved to another image: everything about the previous one is now stale."""
        self.cancel_auto()
        self.generation += 1
        self.key = path
        self.embedding_ready = False
        self._waiting_decode = None
        self._prefetch = []  # navigation cancels the queue; the window sends the new one
        if path is None:
            return
        self._submit_encode()
        if self.engine_info is not None:
            self._set_state(EmbeddingState.WAITING, "")

    def _submit_encode(self) -> None:
        self.worker.submit_encode(EncodeJob(self.generation, self.key, self.key))

    def request_decode(self, revision: int, prompts: Prompts) -> None:
        """Decode `prompts` on the current image now, or as soon as its embedding lands."""
        if self.key is None:
            return
        job = DecodeJob(self.generation, self.key, revision, prompts)
        if self.embedding_ready:
            self.worker.submit_decode(job)
        else:
            self._waiting_decode = job  # latest click wins

    def set_prefetch(self, paths: list[str]) -> None:
        """Images to pre-encode (in order) once the current one is ready."""
        self._prefetch = [p for p in paths if p != self.key]
        if self.embedding_ready:
            self.worker.submit_prefetch(self._prefetch)

    @property
    def auto_running(self) -> bool:
        """A segment-everything job of the current image is queued or running."""
        return self._auto_job is not None

    def request_auto_masks(self, settings) -> bool:
        """Segment everything on the current image with `settings` (AutoMaskSettings).

        Returns False (and does nothing) when there is no image or a job is already running.
        Progress comes as `auto_progress(done, total)`, the end as `auto_finished(AutoMasked)`.
        """
        if self.key is None or self._auto_job is not None:
            return False
        self._auto_serial += 1
        self._auto_job = AutoMaskJob(
            self.generation, self.key, self._auto_serial, settings, threading.Event()
        )
        self.worker.submit_auto(self._auto_job)
        return True

    def cancel_auto(self) -> None:
        """Stop the segment-everything job, if any; its result, whenever it lands, is dropped."""
        if self._auto_job is not None:
            self._auto_job.cancel.set()
            self._auto_job = None

    @property
    def task_serial(self) -> int | None:
        """The serial of the task queued or running, or None."""
        return self._task_job.serial if self._task_job is not None else None

    @property
    def task_running(self) -> bool:
        """A task is queued or running (its results will still be delivered)."""
        return self._task_job is not None

    def run_task(self, task: WorkerTask) -> int:
        """Run `task` on the worker (cancelling the running one); returns its serial.

        It runs whatever image is shown (navigation does not cancel it); its partial results come
        as `task_partial(value)`, progress as `task_progress(done, total)`, the end as
        `task_finished(TaskFinished)`. A model change, `cancel_task()` or shutdown cancels it.
        """
        self.cancel_task()
        self._task_serial += 1
        self._task_job = TaskJob(self._task_serial, task, threading.Event())
        self.worker.submit_task(self._task_job)
        return self._task_serial

    def cancel_task(self) -> None:
        """Stop the running task at its next step; nothing it sends afterwards is delivered."""
        if self._task_job is not None:
            self._task_job.cancel.set()
            self._task_job = None

    def shutdown(self) -> None:
        """Stop cleanly: drop queued work, let the running job finish, join the thread."""
        self.cancel_auto()  # a segment-everything run stops at its next batch
        self.cancel_task()  # a task stops at its next step
        self.worker.stop()
        if self.thread.isRunning():
            self.thread.quit()
            self.thread.wait()

    # ---------------------------------------------------------------- results
    def _current(self, generation: int, key: str) -> bool:
        return generation == self.generation and key == self.key

    def _set_state(self, state: EmbeddingState, detail: str) -> None:
        self.state = state
        self.state_changed.emit(state, detail)

    def _on_engine_loaded(self, info: EngineInfo) -> None:
        self.engine_info = info
        self.engine_ready.emit(info)
        if self.key is not None and not self.embedding_ready:
            self._set_state(EmbeddingState.WAITING, "")

    def _on_engine_failed(self, message: str) -> None:
        self.engine_info = None
        self._set_state(EmbeddingState.FAILED, message)
        self.engine_failed.emit(message)

    def _on_encode_started(self, generation: int, key: str) -> None:
        if self._current(generation, key):
            self.encode_started_at = time.perf_counter()
            self._set_state(EmbeddingState.ENCODING, "")

    def _on_encoded(self, result: Encoded) -> None:
        if not self._current(result.generation, result.key):
            return
        if not result.cache_hit:
            self.last_encode_seconds = result.seconds
        self.embedding_ready = True
        detail = "from the shared store" if result.source == FROM_STORE else "cached"
        self._set_state(EmbeddingState.READY, detail if result.cache_hit else "")
        if self._waiting_decode is not None:
            job, self._waiting_decode = self._waiting_decode, None
            self.worker.submit_decode(job)
        if self._prefetch:
            self.worker.submit_prefetch(self._prefetch)

    def _on_decoded(self, result: Decoded) -> None:
        if self._current(result.generation, result.key):
            self.prediction_ready.emit(result.revision, result.prediction)

    def _on_failed(self, failure: Failure) -> None:
        if not self._current(failure.generation, failure.key):
            return
        if not self.embedding_ready:
            self._set_state(EmbeddingState.FAILED, failure.message)
        self.error.emit(failure.message)
        if failure.exc_info is not None:
            self.crashed.emit(failure.exc_info)

    def _is_auto_job(self, generation: int, key: str, serial: int) -> bool:
        job = self._auto_job
        return (
            job is not None
            and self._current(generation, key)
            and (job.generation, job.key, job.serial) == (generation, key, serial)
        )

    def _on_auto_progress(self, serial: int, done: int, total: int) -> None:
        job = self._auto_job
        if job is not None and job.serial == serial and not job.cancel.is_set():
            self.auto_progress.emit(done, total)

    def _on_auto_finished(self, result: AutoMasked) -> None:
        if not self._is_auto_job(result.generation, result.key, result.serial):
            return  # cancelled by navigation, a model change or a restart: never shown
        self._auto_job = None
        self.auto_finished.emit(result)

    def _is_task(self, serial: int) -> bool:
        job = self._task_job
        return job is not None and job.serial == serial and not job.cancel.is_set()

    def _on_task_progress(self, serial: int, done: int, total: int) -> None:
        if self._is_task(serial):
            self.task_progress.emit(done, total)

    def _on_task_partial(self, serial: int, value: object) -> None:
        if self._is_task(serial):
            self.task_partial.emit(value)

    def _on_task_finished(self, result: TaskFinished) -> None:
        if not self._is_task(result.serial):
            return  # cancelled or replaced: never delivered
        self._task_job = None
        self.task_finished.emit(result)
        if result.exc_info is not None:
            self.crashed.emit(result.exc_info)

    def encode_progress(self) -> float | None:
        """0..1 estimate of the running embedding from the last one's duration, or None."""
        if self.state is not EmbeddingState.ENCODING or self.encode_started_at is None:
            return None
        if not self.last_encode_seconds:
            return None
        elapsed = time.perf_counter() - self.encode_started_at
        return min(0.99, elapsed / self.last_encode_seconds)
