"""The worker thread and its controller, without the window: responsiveness and staleness."""

from __future__ import annotations

import time

import numpy as np
import pytest
from PySide6.QtCore import QTimer

from annotator.engines.base import Prompts
from annotator.qt.inference import EmbeddingState, EngineSpec, InferenceController, InferenceWorker
from tests.qt.conftest import RecordingEngine

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def controller_for(qtbot):
    controllers = []

    def make(engine):
        worker = InferenceWorker(engine_loader=lambda spec: engine, cache_factory=None)
        controller = InferenceController(worker)
        controller.start(EngineSpec("tiny.pth"))
        qtbot.waitUntil(lambda: controller.engine_info is not None, timeout=30000)
        controllers.append(controller)
        return controller

    yield make
    for controller in controllers:
        controller.shutdown()


def _point(x, y):
    return Prompts(np.array([[x, y]], np.float32), np.array([1], np.int32), multimask=True)


def test_event_loop_keeps_turning_while_an_embedding_runs(
    qtbot, controller_for, tiny_engine, image_folder
):
    engine = RecordingEngine(tiny_engine, repeat_encode=3)  # ~1 s of real torch work
    controller = controller_for(engine)
    ticks: list[float] = []
    heartbeat = QTimer()
    heartbeat.setInterval(10)
    heartbeat.timeout.connect(lambda: ticks.append(time.perf_counter()))
    heartbeat.start()
    started = time.perf_counter()
    controller.set_image(str(image_folder / "img1.png"))
    qtbot.waitUntil(lambda: controller.embedding_ready, timeout=30000)
    heartbeat.stop()
    elapsed = time.perf_counter() - started
    gaps = np.diff(ticks)
    assert len(engine.encoded_shapes) == 1
    assert len(ticks) > elapsed / 0.1  # kept ticking (a 10 ms timer; generous on 2 shared cores)
    assert gaps.max() < 0.5, f"longest stall {gaps.max() * 1000:.0f} ms"


def test_clicks_wait_for_the_embedding_and_the_latest_wins(
    qtbot, controller_for, tiny_engine, image_folder
):
    engine = RecordingEngine(tiny_engine)
    engine.gate.clear()
    controller = controller_for(engine)
    answers = []
    controller.prediction_ready.connect(lambda revision, p: answers.append((revision, p)))
    controller.set_image(str(image_folder / "img1.png"))
    qtbot.waitUntil(engine.encoding.is_set, timeout=30000)
    assert controller.state is EmbeddingState.ENCODING
    for revision, x in ((1, 10.0), (2, 20.0), (3, 30.0)):
        controller.request_decode(revision, _point(x, 15.0))
    engine.gate.set()
    qtbot.waitUntil(lambda: len(answers) == 1, timeout=30000)
    qtbot.wait(50)
    assert [revision for revision, _ in answers] == [3]
    assert len(engine.decoded_prompts) == 1
    np.testing.assert_array_equal(engine.decoded_prompts[0].points, [[30.0, 15.0]])


def test_results_for_a_left_image_are_dropped(qtbot, controller_for, tiny_engine, image_folder):
    engine = RecordingEngine(tiny_engine)
    controller = controller_for(engine)
    answers = []
    controller.prediction_ready.connect(lambda revision, p: answers.append(revision))
    controller.set_image(str(image_folder / "img1.png"))
    qtbot.waitUntil(lambda: controller.embedding_ready, timeout=30000)
    engine.decode_gate.clear()
    controller.request_decode(1, _point(10, 10))
    qtbot.waitUntil(engine.decoding.is_set)  # the decode is running for img1...
    controller.set_image(str(image_folder / "img2.png"))  # ...when the user moves on
    engine.decode_gate.set()
    qtbot.waitUntil(lambda: controller.embedding_ready, timeout=30000)
    assert len(engine.decoded_prompts) == 1  # it was computed
    qtbot.wait(50)
    assert answers == []  # and dropped


def test_prefetch_encodes_the_next_images(qtbot, controller_for, tiny_engine, image_folder):
    engine = RecordingEngine(tiny_engine)
    controller = controller_for(engine)
    prefetched = []
    controller.worker.prefetched.connect(prefetched.append)
    paths = [str(image_folder / f"img{i}.png") for i in (1, 2, 3)]
    controller.set_image(paths[0])
    controller.set_prefetch(paths[1:])
    qtbot.waitUntil(lambda: prefetched == paths[1:], timeout=30000)
    assert len(engine.encoded_shapes) == 3
    # The prefetched image opens from memory: no new encode.
    hits = []
    controller.worker.encoded.connect(lambda result: hits.append(result.cache_hit))
    controller.set_image(paths[1])
    qtbot.waitUntil(lambda: controller.embedding_ready, timeout=30000)
    assert hits == [True] and len(engine.encoded_shapes) == 3


def test_navigation_cancels_queued_prefetch(qtbot, controller_for, tiny_engine, image_folder):
    engine = RecordingEngine(tiny_engine)
    controller = controller_for(engine)
    controller.worker.MEMORY_EMBEDDINGS = 1  # so every image switch needs an encode
    prefetched = []
    controller.worker.prefetched.connect(prefetched.append)
    paths = [str(image_folder / f"img{i}.png") for i in (1, 2, 3)]
    controller.set_image(paths[0])
    qtbot.waitUntil(lambda: controller.embedding_ready, timeout=30000)
    engine.gate.clear()
    controller.set_prefetch(paths[1:])
    qtbot.waitUntil(engine.encoding.is_set)  # prefetching paths[1], held
    controller.set_image(paths[0])  # navigation, with paths[2] still queued
    engine.gate.set()
    qtbot.waitUntil(lambda: controller.embedding_ready, timeout=30000)
    qtbot.wait(300)
    assert prefetched == [paths[1]]
    assert len(engine.encoded_shapes) == 3  # paths[0], paths[1] (prefetch), paths[0] again


def test_shutdown_while_encoding_joins_the_thread(qtbot, controller_for, tiny_engine, image_folder):
    import threading

    engine = RecordingEngine(tiny_engine)
    engine.gate.clear()
    controller = controller_for(engine)
    controller.set_image(str(image_folder / "img1.png"))
    qtbot.waitUntil(engine.encoding.is_set, timeout=30000)
    threading.Timer(0.2, engine.gate.set).start()
    controller.shutdown()
    assert controller.thread.isFinished()


def test_engine_failure_is_reported(qtbot, image_folder):
    from annotator.errors import UserError

    def broken(spec):
        raise UserError("tiny.pth is not a SAM checkpoint.")

    controller = InferenceController(InferenceWorker(engine_loader=broken, cache_factory=None))
    failures = []
    controller.engine_failed.connect(failures.append)
    controller.start(EngineSpec("tiny.pth"))
    qtbot.waitUntil(lambda: failures == ["tiny.pth is not a SAM checkpoint."], timeout=30000)
    assert controller.state is EmbeddingState.FAILED
    controller.shutdown()


class _StepTask:
    """A worker task of `steps` steps, each waiting until the test releases it."""

    def __init__(self, steps, fail_at=None):
        import threading

        self.steps = steps
        self.fail_at = fail_at
        self.release = threading.Semaphore(0)
        self.closed = False

    def run(self, context):
        try:
            for step in range(self.steps):
                self.release.acquire(timeout=20)
                if step == self.fail_at:
                    raise ValueError("step failed")
                context.progress(step + 1, self.steps)
                yield ("step", step, context.engine.name)
            return "done"
        finally:
            self.closed = True


def test_a_task_streams_its_steps_and_clicks_are_answered_between_them(
    qtbot, controller_for, tiny_engine, image_folder
):
    controller = controller_for(tiny_engine)
    controller.set_image(str(image_folder / "img1.png"))
    qtbot.waitUntil(lambda: controller.embedding_ready, timeout=30000)
    partials, progress, finished, predictions = [], [], [], []
    controller.task_partial.connect(partials.append)
    controller.task_progress.connect(lambda done, total: progress.append((done, total)))
    controller.task_finished.connect(finished.append)
    controller.prediction_ready.connect(lambda revision, p: predictions.append(revision))
    task = _StepTask(3)
    controller.run_task(task)
    task.release.release()
    qtbot.waitUntil(lambda: len(partials) == 1, timeout=10000)
    # The task waits in its second step; a click made now is answered before the third.
    controller.request_decode(7, _point(10, 10))
    task.release.release()
    qtbot.waitUntil(lambda: predictions == [7], timeout=10000)
    assert len(partials) == 2 and not finished
    task.release.release()
    qtbot.waitUntil(lambda: bool(finished), timeout=10000)
    assert [p[1] for p in partials] == [0, 1, 2]
    assert progress == [(1, 3), (2, 3), (3, 3)]
    assert finished[0].result == "done" and not finished[0].cancelled
    assert not controller.task_running


def test_a_cancelled_task_stops_and_delivers_nothing_more(
    qtbot, controller_for, tiny_engine, image_folder
):
    controller = controller_for(tiny_engine)
    partials, finished = [], []
    controller.task_partial.connect(partials.append)
    controller.task_finished.connect(finished.append)
    worker_finished = []
    controller.worker.task_finished.connect(worker_finished.append)
    task = _StepTask(100)
    controller.run_task(task)
    task.release.release()
    qtbot.waitUntil(lambda: len(partials) == 1, timeout=10000)
    controller.cancel_task()
    task.release.release()
    qtbot.waitUntil(lambda: bool(worker_finished), timeout=10000)
    assert worker_finished[0].cancelled and task.closed
    assert finished == [] and len(partials) == 1


def test_a_failing_task_ends_with_its_sentence(qtbot, controller_for, tiny_engine):
    from annotator.errors import UserError

    class Refuses:
        def run(self, context):
            raise UserError("Nothing to find.")
            yield  # a generator

    controller = controller_for(tiny_engine)
    finished, crashed = [], []
    controller.task_finished.connect(finished.append)
    controller.crashed.connect(crashed.append)
    controller.run_task(Refuses())
    qtbot.waitUntil(lambda: bool(finished), timeout=10000)
    assert finished[0].message == "Nothing to find." and finished[0].exc_info is None
    task = _StepTask(2, fail_at=0)
    controller.run_task(task)
    task.release.release()
    qtbot.waitUntil(lambda: len(finished) == 2, timeout=10000)
    assert finished[1].message == "step failed" and crashed  # a bug goes to the crash report
