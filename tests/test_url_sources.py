"""Images named by fsspec URLs (an object store; here fsspec's in-process memory file system):
`annotator auto` on a URL prefix writes each image's URL as its file_name, the project opens
again with those URLs, and the window shows such an image and computes its embedding."""

from __future__ import annotations

import io
import uuid

import numpy as np
import pytest

fsspec = pytest.importorskip("fsspec")
pytest.importorskip("torch")


@pytest.fixture
def bucket():
    """A memory:// prefix holding two PNG images and a text file; removed afterwards."""
    from PIL import Image

    prefix = f"memory://bucket-{uuid.uuid4().hex}/images"
    fs, root = fsspec.core.url_to_fs(prefix)
    rng = np.random.default_rng(2)
    for index, (height, width) in enumerate([(48, 64), (64, 40)]):
        pixels = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(np.kron(pixels, np.ones((8, 8, 1), np.uint8))).save(buffer, "PNG")
        fs.pipe_file(f"{root}/img{index + 1}.png", buffer.getvalue())
    fs.pipe_file(f"{root}/notes.txt", b"not an image")
    yield prefix
    fs.rm(root.rsplit("/", 1)[0], recursive=True)


def test_auto_on_a_url_prefix_names_images_by_url(bucket, tmp_path, tiny_sam_checkpoint):
    from annotator.cli.auto_cmd import run_auto
    from annotator.core.images import load_image
    from annotator.core.session import AnnotationSession
    from annotator.engines.automatic import AutoMaskSettings

    settings = AutoMaskSettings(points_per_side=2, pred_iou_thresh=0, stability_score_thresh=0)
    out = tmp_path / "project.json"
    report = run_auto(bucket, tiny_sam_checkpoint, out, settings, device="cpu")
    assert len(report.processed) == 2 and report.unreadable == []
    session, _ = AnnotationSession.open(out, journal=False)
    try:
        project = session.project
        names = [record.file_name for record in project.images]
        assert names == [f"{bucket}/img1.png", f"{bucket}/img2.png"]
        assert all(record.done for record in project.images)
        first = project.image_path(project.images[0])
        assert str(first) == names[0] and load_image(first).shape == (48, 64, 3)
    finally:
        session.close()
    again = run_auto(bucket, tiny_sam_checkpoint, out, settings, device="cpu")
    assert again.processed == [] and len(again.skipped) == 2  # not added twice


def test_the_window_shows_an_image_named_by_a_url(qtbot, bucket, tmp_path, tiny_sam_checkpoint):
    from annotator.core.images import list_image_urls
    from annotator.core.project import Project
    from annotator.engines.sam import load_sam
    from annotator.qt.inference import EngineSpec, InferenceWorker
    from annotator.qt.main_window import MainWindow
    from tests.qt.conftest import RecordingEngine, wait_ready

    engine = RecordingEngine(load_sam(tiny_sam_checkpoint, device="cpu", decoder="torch"))
    project = Project.from_images(list_image_urls(bucket), tmp_path / "project.json")
    worker = InferenceWorker(engine_loader=lambda spec: engine, cache_factory=None)
    window = MainWindow(project, EngineSpec("tiny.pth"), worker=worker)
    try:
        window.show()
        qtbot.waitExposed(window)
        window.start_inference()
        wait_ready(qtbot, window)
        assert window.display.width == 64 and window.display.height == 48
        assert engine.encoded_shapes[0] == (48, 64, 3)
    finally:
        window.session.stack.set_clean()
        window.session._base_unsaved = False
        window.close()
        window.controller.shutdown()
        window.deleteLater()
