"""`annotator embed --ray` and `annotator auto --ray` on a real two-node Ray cluster (127.0.0.1,
started once per session, stopped at the end) equal the single-process runs: the same store
entries, the same project (proposals, order, ids, masks), even after a Ctrl+C and a rerun. A
worker killed mid-run has its images retried; bad input is one sentence. Skipped when ray is not
installed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("ray")
pytest.importorskip("ray.data")
pytest.importorskip("torch")

from ray_cluster import LocalRayCluster, free_port  # noqa: E402
from sam_factory import PERMISSIVE_AUTO_SETTINGS  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

AUTO_ARGS = [
    arg
    for name, value in PERMISSIVE_AUTO_SETTINGS.items()
    for arg in ("--" + name.replace("_", "-"), str(value))
]


@pytest.fixture(scope="session")
def ray_cluster():
    cluster = LocalRayCluster(cpus_per_node=1).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def run_env(ray_cluster):
    """The test's environment (its own user folders) plus what a driver needs to join."""
    keys = ("PYTHONPATH", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN_PATH", "RAY_USAGE_STATS_ENABLED")
    return {**os.environ, **{key: ray_cluster.env[key] for key in keys}}


def _images(folder: Path, count: int, size=(96, 128), broken: bool = False) -> Path:
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(11)
    for index in range(count):
        height, width = size
        pixels = rng.integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8)
        pixels = np.kron(pixels, np.ones((16, 16, 1), np.uint8))
        Image.fromarray(pixels).save(folder / f"img{index + 1}.png")
    if broken:
        (folder / "broken.png").write_bytes(b"not a png")
    return folder


def _annotator(env, *args: str, wait: bool = True):
    command = [sys.executable, "-m", "annotator", *args]
    if not wait:  # to be sent Ctrl+C: as from a terminal, whatever this process inherited
        return subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            preexec_fn=_interruptible,
        )
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=500)


def _interruptible() -> None:
    """In the child before exec: SIGINT delivered and handled by default (an earlier test's
    library may have left it blocked or ignored in this process, and children inherit both)."""
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _store_entries(folder: Path) -> dict[str, np.ndarray]:
    entries = {}
    for path in sorted(folder.glob("*.npz")):
        with np.load(path) as data:
            entries[path.stem] = data["features"].copy()
    return entries


def test_embed_on_the_cluster_writes_the_local_runs_store(
    ray_cluster, run_env, tmp_path, tiny_sam_checkpoint
):
    images = _images(tmp_path / "images", 4, broken=True)
    base = ["embed", str(images), "--checkpoint", str(tiny_sam_checkpoint), "--device", "cpu"]
    local = _annotator(run_env, *base, "--store", str(tmp_path / "local-store"))
    assert local.returncode == 1, local.stderr  # the broken image
    on_ray = [*base, "--store", str(tmp_path / "ray-store"), "--ray"]
    on_ray += ["--ray-address", ray_cluster.address, "--ray-actors", "2"]
    first = _annotator(run_env, *on_ray)
    assert first.returncode == 1, first.stderr
    assert "4 encoded, 0 already in the store, 1 failed" in first.stdout
    assert "failed: Cannot read image" in first.stderr and "broken.png" in first.stderr
    assert "Traceback" not in first.stderr
    expected, got = _store_entries(tmp_path / "local-store"), _store_entries(tmp_path / "ray-store")
    assert len(expected) == 4 and got.keys() == expected.keys()  # the cache's keys
    for key, features in expected.items():
        np.testing.assert_array_equal(got[key], features)
    # (a rerun skips on the workers with the single process's function: tests/test_cli_store.py)


def test_auto_on_the_cluster_interrupted_and_resumed_writes_the_local_runs_project(
    ray_cluster, run_env, tmp_path, tiny_sam_checkpoint
):
    """Ctrl+C mid-run leaves a valid project; the rerun completes it; the result equals the
    single-process run's: proposals, order, ids, masks."""
    count = 12  # enough left after the first saved image for Ctrl+C to land mid-run (6 were
    # all finished within the signal's delivery once)
    images = _images(tmp_path / "images", count, broken=True)
    base = ["auto", str(images), "--checkpoint", str(tiny_sam_checkpoint), "--device", "cpu"]
    local = _annotator(run_env, *base, "--out", str(tmp_path / "local.json"), *AUTO_ARGS)
    assert local.returncode == 0, local.stderr
    out = tmp_path / "ray.json"
    on_ray = [*base, "--out", str(out), *AUTO_ARGS, "--ray", "--ray-address", ray_cluster.address]

    run = _annotator(run_env, *on_ray, "--ray-actors", "1", wait=False)
    try:
        deadline = time.monotonic() + 300
        while not _segmented_images(out):  # the sentinel: one image saved
            assert run.poll() is None, run.communicate()
            assert time.monotonic() < deadline, "no image was saved"
            time.sleep(0.05)
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 130, err.decode()
    assert "run the same command again to continue" in err.decode()
    done = _segmented_images(out)
    assert 0 < len(done) < count, "the run ended before Ctrl+C: nothing was tested"
    validate = _annotator(run_env, "validate", str(out))
    assert validate.returncode == 0, validate.stdout + validate.stderr

    rerun = _annotator(run_env, *on_ray, "--ray-actors", "2")
    assert rerun.returncode == 0, rerun.stderr
    assert f"{count - len(done)} image(s) segmented" in rerun.stdout
    assert f"{len(done)} skipped" in rerun.stdout
    assert "broken.png" in rerun.stderr and "Traceback" not in rerun.stderr
    expected = json.loads((tmp_path / "local.json").read_text())
    got = json.loads(out.read_text())
    assert len(expected["annotations"]) >= count  # something to compare
    assert got["images"] == expected["images"]
    assert got["categories"] == expected["categories"]
    assert got["annotations"] == expected["annotations"]  # ids, order, RLE masks, scores
    assert got["annotator"]["images"] == expected["annotator"]["images"]  # all done
    again = _annotator(run_env, *on_ray)
    assert "0 image(s) segmented" in again.stdout and f"{count} skipped" in again.stdout


def _segmented_images(project: Path) -> set[str]:
    """Ids of the images the saved project marks done (saves are atomic)."""
    if not project.exists():
        return set()
    return set(json.loads(project.read_text())["annotator"]["images"])


def test_a_worker_killed_mid_run_has_its_images_retried(
    ray_cluster, run_env, tmp_path, tiny_sam_checkpoint
):
    count = 10
    images = _images(tmp_path / "images", count, size=(64, 64))
    store = tmp_path / "store"
    title = "ray::MapWorker(MapBatches(ImageWorker))"
    earlier = set(ray_cluster.workers(title))  # an earlier test's actor may still be exiting
    run = _annotator(
        run_env,
        "embed",
        str(images),
        "--checkpoint",
        str(tiny_sam_checkpoint),
        "--device",
        "cpu",
        "--store",
        str(store),
        "--ray",
        "--ray-address",
        ray_cluster.address,
        "--ray-actors",
        "1",
        wait=False,
    )
    try:
        deadline = time.monotonic() + 300
        while not list(store.glob("*.npz")):  # the sentinel: the worker is embedding
            assert run.poll() is None, run.communicate()
            assert time.monotonic() < deadline, "no embedding was written"
            time.sleep(0.05)
        workers = sorted(set(ray_cluster.workers(title)) - earlier)
        assert len(workers) == 1, workers  # the run's one actor
        os.kill(workers[0], signal.SIGKILL)
        written_when_killed = len(list(store.glob("*.npz")))
        out, err = run.communicate(timeout=400)
    finally:
        if run.poll() is None:
            run.kill()
    assert written_when_killed < count, "the run ended before the kill: nothing was tested"
    assert run.returncode == 0, err.decode()
    text = out.decode()
    assert "0 failed" in text
    encoded, stored = (int(text.split(word)[0].split()[-1]) for word in (" encoded", " already"))
    assert encoded + stored == count and encoded >= written_when_killed
    assert len(list(store.glob("*.npz"))) == count


def test_an_unreachable_cluster_is_one_sentence(run_env, tmp_path, tiny_sam_checkpoint):
    images = _images(tmp_path / "images", 1)
    address = f"127.0.0.1:{free_port()}"
    result = _annotator(
        run_env,
        "embed",
        str(images),
        "--checkpoint",
        str(tiny_sam_checkpoint),
        "--store",
        str(tmp_path / "store"),
        "--ray",
        "--ray-address",
        address,
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith(f"annotator: Cannot reach the Ray cluster at {address}")
    )
    assert "Traceback" not in result.stderr


def test_a_ray_client_address_is_refused_in_one_sentence(tmp_path, tiny_sam_checkpoint):
    """Ray Data cannot run through Ray Client (ray://): said before anything starts."""
    images = _images(tmp_path / "images", 1)
    result = _annotator(
        dict(os.environ),
        "embed",
        str(images),
        "--checkpoint",
        str(tiny_sam_checkpoint),
        "--store",
        str(tmp_path / "store"),
        "--ray",
        "--ray-address",
        "ray://127.0.0.1:10001",
    )
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("annotator: Ray Data does not run through a Ray Client address")
    assert "Traceback" not in result.stderr and not (tmp_path / "store").exists()


def test_embed_on_ray_needs_a_store_and_the_store_must_be_writable(
    run_env, tmp_path, tiny_sam_checkpoint
):
    images = _images(tmp_path / "images", 1)
    base = ["embed", str(images), "--checkpoint", str(tiny_sam_checkpoint), "--ray"]
    no_store = _annotator(run_env, *base)
    assert no_store.returncode == 2 and "needs --store" in no_store.stderr
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    unwritable = _annotator(run_env, *base, "--store", str(blocker))
    assert unwritable.returncode == 2
    assert "Cannot write to the embedding store" in unwritable.stderr
    assert "Traceback" not in unwritable.stderr
