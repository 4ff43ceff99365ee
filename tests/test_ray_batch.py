"""The parts of annotator.cluster.ray_batch that need no cluster: where a worker finds the
checkpoint (its own file, else the driver's copy), and one sentence out of a Ray error."""

from __future__ import annotations

import socket

import pytest

from annotator.cluster.ray_batch import EMBED, WorkerJob, _one_line, checkpoint_on_this_node
from annotator.errors import UserError


def test_a_node_with_the_file_uses_it_without_fetching(tmp_path):
    checkpoint = tmp_path / "sam.pth"
    checkpoint.write_bytes(b"weights")
    job = WorkerJob(EMBED, str(checkpoint), checkpoint_size=7, checkpoint_copy=["ref"])
    assert checkpoint_on_this_node(job, fetch=pytest.fail) == str(checkpoint)


def test_a_node_without_the_file_loads_the_drivers_copy_once(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path / "node-temp"))
    (tmp_path / "node-temp").mkdir()
    fetched = []

    def fetch(ref):
        fetched.append(ref)
        return b"the driver's weights"

    job = WorkerJob(EMBED, str(tmp_path / "elsewhere" / "sam.pth"), checkpoint_size=20)
    with pytest.raises(UserError, match=f"is not on {socket.gethostname()}"):
        checkpoint_on_this_node(job, fetch)
    job = WorkerJob(EMBED, job.checkpoint, checkpoint_size=20, checkpoint_copy=["ref"])
    local = checkpoint_on_this_node(job, fetch)
    assert open(local, "rb").read() == b"the driver's weights"
    assert checkpoint_on_this_node(job, fetch) == local and fetched == ["ref"]


def test_a_node_whose_file_differs_from_the_drivers_takes_the_copy(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    stale = tmp_path / "sam.pth"
    stale.write_bytes(b"old")
    job = WorkerJob(EMBED, str(stale), checkpoint_size=3 + 1, checkpoint_copy=["ref"])
    assert checkpoint_on_this_node(job, lambda ref: b"new!") != str(stale)


def test_the_sentence_of_a_user_error_inside_a_ray_error():
    inner = UserError("The checkpoint x.pth is not on node-2.")

    class RayTaskError(Exception):
        cause = inner

    assert _one_line(RayTaskError("ray.exceptions...\n  long traceback")) == str(inner)
    assert _one_line(RuntimeError("first line\nthe last line")) == "the last line."


def test_workers_run_the_kernels_the_driver_would_choose(tiny_sam_checkpoint):
    pytest.importorskip("torch")
    from annotator.cluster.ray_batch import driver_linear_backend
    from annotator.engines import fast_encoder
    from annotator.engines.families import load_model

    choice = driver_linear_backend(tiny_sam_checkpoint, "cpu")  # from the shapes alone
    local = load_model(tiny_sam_checkpoint, device="cpu", encoder="fast", decoder="torch")
    assert local.image_encoder is not None  # built for the first image: the backend is chosen then
    assert local.linear_backend == choice  # what the single-process run picks here
    if not fast_encoder.mkldnn_linear_available("cpu"):
        pytest.skip("only torch's Linear here: nothing else to pin")
    other = "torch" if choice == "mkldnn" else "mkldnn"
    fast_encoder.pin_linear_backend(other)
    try:
        pinned = load_model(tiny_sam_checkpoint, device="cpu", encoder="fast", decoder="torch")
        assert pinned.image_encoder is not None  # built (pinned kernels) for the first image
        assert pinned.linear_backend == other
    finally:
        fast_encoder.pin_linear_backend(None)
