"""`annotator embed --ray` against the single-process `annotator embed --store`: images per second
for 1, 2 and 4 worker actors, the start-up of a Ray run, and Ray's overhead per image.

Both paths run the same per-image function (`engines.batch.embed_into_store`): the single process
in a loop after loading the model; Ray through `cluster.ray_batch.run_images`, as the command
does (connect, start the actors, each loads the model, results stream back). Figures:

- single: median seconds per image (the model already loaded), with torch's default threads (as
  `annotator embed` runs) and with the threads one actor gets (`--actor-cpus`; Ray sets
  OMP_NUM_THREADS to an actor's CPUs). On a loaded machine more threads can be slower.
- ray N: start-up (run start to the first image landing: runtime, actors, model loads), the
  steady rate (images after the first over the time from the first landing to the last, so
  start-up is not in it; results can land in bursts, so not a median of gaps) and the whole run.
- overhead per image: 1-actor steady seconds per image minus the single process's at the same
  threads: what Ray adds to each image (scheduling, the trip through the object store, the result
  coming back).

Here (no address) each Ray run starts a local runtime with the CPUs the actors ask for; on a
real cluster point it at the cluster, a folder every node sees, and the real model:

    .venv/bin/python bench/bench_cluster.py                     # tiny random SAM, this machine
    .venv/bin/python bench/bench_cluster.py --ray-address auto --model vit_b \
        --work-dir /shared/bench --images 64 --actors 4,8,16 --actor-cpus 4
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import _common  # noqa: F401  (sys.path, THP before torch)


def _checkpoint(model: str, folder: Path) -> Path:
    if model == "vit_b":
        from _common import vit_b_checkpoint

        return vit_b_checkpoint()
    from sam_factory import TINY_CONFIG, build_sam, save_checkpoint

    path = folder / "tiny_sam.pth"
    if not path.exists():
        save_checkpoint(build_sam(**TINY_CONFIG), path)
    return path


def _write_images(folder: Path, count: int) -> list[Path]:
    from _common import synthetic_image
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(count):
        path = folder / f"img{index + 1}.png"
        Image.fromarray(synthetic_image(768, 1024, seed=index)).save(path)
        paths.append(path)
    return paths


def _single(checkpoint: Path, images: list[Path], store_dir: Path, threads: int) -> list[float]:
    import torch

    from annotator.engines import batch
    from annotator.engines.families import load_model
    from annotator.engines.store import EmbeddingStore

    torch.set_num_threads(threads)
    engine = load_model(checkpoint, device="cpu", encoder="fast", decoder="torch")
    store = EmbeddingStore(store_dir)
    times = []
    for path in images:
        start = time.perf_counter()
        assert batch.embed_into_store(engine, path, store) == batch.ENCODED
        times.append(time.perf_counter() - start)
    return times


def _on_ray(checkpoint: Path, images, store_dir: Path, address, actors: int, cpus: float):
    from annotator.cluster import ray_batch

    job = ray_batch.WorkerJob(
        ray_batch.EMBED,
        str(checkpoint),
        device="cpu",
        linear_backend=ray_batch.driver_linear_backend(checkpoint, "cpu"),
        store=str(store_dir),
    )
    landed = []
    errors = []

    def on_result(result) -> None:
        landed.append(time.perf_counter())
        if result.error:
            errors.append(result.error)

    start = time.perf_counter()
    ray_batch.run_images(
        job,
        [(i, str(p), None) for i, p in enumerate(images)],
        ray_batch.RayOptions(address, actors, cpus),
        on_result,
    )
    end = time.perf_counter()
    if errors:
        raise SystemExit(f"{len(errors)} image(s) failed: {errors[0]}")
    steady = (landed[-1] - landed[0]) / (len(landed) - 1) if len(landed) > 1 else float("nan")
    return {"startup": landed[0] - start, "per_image": steady, "total": end - start}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=("tiny", "vit_b"), default="tiny")
    parser.add_argument("--images", type=int, default=12)
    parser.add_argument("--actors", default="1,2,4", help="actor counts, comma-separated")
    parser.add_argument("--actor-cpus", type=float, default=1.0)
    parser.add_argument("--ray-address", default=None)
    parser.add_argument("--work-dir", type=Path, default=None, help="a folder every node sees")
    args = parser.parse_args(argv)

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="bench-cluster-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        checkpoint = _checkpoint(args.model, work)
        images = _write_images(work / "images", args.images)
        print(f"{args.images} images 1024x768, model {args.model} (random weights), cpu")
        import torch

        default_threads = torch.get_num_threads()
        actor_threads = max(1, int(args.actor_cpus))
        single = {}
        for threads in sorted({default_threads, actor_threads}):
            store = work / f"store-single-{threads}"
            single[threads] = statistics.median(_single(checkpoint, images, store, threads))
            shutil.rmtree(store, ignore_errors=True)
            print(
                f"single process, {threads} thread(s): {single[threads] * 1000:8.1f} ms/image median "
                f"({1 / single[threads]:6.2f} images/s), model loaded before"
            )
        torch.set_num_threads(default_threads)
        baseline = single[actor_threads]
        one_actor = None
        for actors in (int(n) for n in args.actors.split(",")):
            store = work / f"store-ray-{actors}"
            figures = _on_ray(checkpoint, images, store, args.ray_address, actors, args.actor_cpus)
            if actors == 1:
                one_actor = figures["per_image"]
            print(
                f"ray {actors} actor(s): {1 / figures['per_image']:6.2f} images/s steady "
                f"(x{baseline / figures['per_image']:.2f} the single process at "
                f"{actor_threads} thread(s), x{single[default_threads] / figures['per_image']:.2f} "
                f"at {default_threads}), start-up {figures['startup']:5.1f} s, "
                f"whole run {figures['total']:5.1f} s"
            )
            shutil.rmtree(store, ignore_errors=True)
        if one_actor is not None:
            print(
                f"overhead per image: {(one_actor - baseline) * 1000:+.1f} ms (1 actor's steady "
                f"time per image minus the single process's at {actor_threads} thread(s))"
            )
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
