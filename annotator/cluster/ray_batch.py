"""Running a batch command's per-image work on Ray worker actors (Ray Data `map_batches`).

The driver (the `annotator` command) lists the images and keeps the project; each worker actor
loads the model once (`ImageWorker.__init__`) and runs `annotator.engines.batch`'s function for
one image per call, the function the single-process command runs, with the Linear kernels the
driver chose (`fast_encoder.pin_linear_backend`), so the results are the same numbers. Results
stream back to the driver as each image finishes, in any order; the caller puts them in order.

Ray restarts an actor that dies (a killed or preempted worker: `max_restarts=-1`) and retries
the images it had (`max_task_retries=-1`), which Ray Data sets for actor pools. An image that
cannot be used is not an error of the run: the worker returns its one-sentence reason.
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from annotator.errors import UserError

logger = logging.getLogger(__name__)

EMBED, AUTO = "embed", "auto"
# A local runtime's object store holds only results (statuses, run-length masks): keep it small,
# it is shared memory.
_LOCAL_OBJECT_STORE_BYTES = 256 * 1024**2
_CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide: address None starts a local Ray runtime on this machine; actors None
    is one per GPU of the cluster, else one per `actor_cpus` CPU cores."""

    address: str | None = None
    actors: int | None = None
    actor_cpus: float = 1.0


@dataclass(frozen=True)
class WorkerJob:
    """What every worker actor loads and does (pickled to the workers)."""

    kind: str  # EMBED or AUTO
    checkpoint: str
    model_type: str = "auto"
    device: str = "auto"
    linear_backend: str | None = None  # the driver's choice of exact CPU kernels
    store: str | None = None  # embed: where to write; auto: read through (None: none)
    settings: object = None  # auto: AutoMaskSettings
    checkpoint_size: int | None = None  # its size on the driver (None: not there)
    # [ObjectRef of the driver's checkpoint bytes], for nodes that do not have it; a list so
    # that Ray does not fetch it for the workers that do.
    checkpoint_copy: list | None = None


@dataclass(frozen=True)
class ImageResult:
    """One image's outcome: `value` (embed: a status; auto: `batch.Segmented`) or `error`, the
    one sentence saying why the image could not be used."""

    index: int
    value: object = None
    error: str = ""


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise UserError("--ray needs Ray: pip install 'annotator[cluster]' (ray[data]).") from None
    return ray


def driver_linear_backend(checkpoint, device: str) -> str | None:
    """The CPU Linear kernels ("torch" or "mkldnn") this machine's single-process run would use
    for `checkpoint`, read from its shapes (the model is not built); None when the checkpoint
    is not a ViT SAM (the workers then choose, as their own runs would)."""
    from pathlib import Path

    from annotator.engines import fast_encoder
    from annotator.engines.families import read_state_dict

    path = Path(checkpoint).expanduser()
    if not path.is_file():
        return None  # only the workers have it: they choose
    state_dict = read_state_dict(path, mmap=True)
    lin1 = next((v for k, v in state_dict.items() if k.endswith("blocks.0.mlp.lin1.weight")), None)
    pos = next((v for k, v in state_dict.items() if k.endswith("image_encoder.pos_embed")), None)
    if lin1 is None or pos is None or pos.ndim != 4:
        return None
    from annotator.engines.sam import resolve_device

    rows = int(pos.shape[1]) * int(pos.shape[2])
    out_features, in_features = (int(n) for n in lin1.shape)
    return fast_encoder.choose_linear_backend_for_shape(
        in_features, out_features, rows, resolve_device(device)
    )


class ImageWorker:
    """A Ray Data actor: the model loaded once, then one image per call."""

    def __init__(self, job: WorkerJob) -> None:
        from annotator.engines import fast_encoder
        from annotator.engines.families import load_model
        from annotator.engines.store import EmbeddingStore

        self.job = job
        fast_encoder.pin_linear_backend(job.linear_backend)
        checkpoint = checkpoint_on_this_node(job, _fetch_object)
        self.engine = load_model(
            checkpoint, job.model_type, job.device, encoder="fast", decoder="torch"
        )
        store = EmbeddingStore(job.store) if job.store else None
        if job.kind == AUTO:
            from annotator.engines.cache import EmbeddingCache

            if not getattr(self.engine, "supports_automatic", True):
                raise UserError(f"{self.engine.name} cannot segment everything yet.")
            self.cache = EmbeddingCache(store=store)
        else:
            self.store = store

    def work(self, source: str, height: int, width: int):
        from annotator.engines import batch

        if self.job.kind == EMBED:
            return batch.embed_into_store(self.engine, source, self.store)
        return batch.segment_image(
            self.engine, self.cache, source, (height, width), self.job.settings
        )

    def __call__(self, rows: dict) -> dict:
        results = []
        for index, source, height, width in zip(
            rows["index"], rows["source"], rows["height"], rows["width"], strict=True
        ):
            try:
                result = ImageResult(int(index), self.work(str(source), int(height), int(width)))
            except UserError as exc:
                result = ImageResult(int(index), error=str(exc))
            except Exception as exc:  # a bug or a broken image decoder: this image, not the run
                logger.exception("image %s failed", source)
                result = ImageResult(int(index), error=f"{source}: {type(exc).__name__}: {exc}")
            results.append(pickle.dumps(result))
        return {"result": results}


def _has_checkpoint(job: WorkerJob, path: str) -> bool:
    return os.path.isfile(path) and (
        job.checkpoint_size is None or os.path.getsize(path) == job.checkpoint_size
    )


def checkpoint_on_this_node(job: WorkerJob, fetch: Callable[[object], bytes]) -> str:
    """The path of the job's checkpoint here: its own path when this node has the driver's file,
    else the driver's copy (fetched once per node into the temp folder). UserError if neither."""
    import tempfile
    from pathlib import Path

    path = os.path.expanduser(job.checkpoint)
    if _has_checkpoint(job, path):
        return path
    if not job.checkpoint_copy:
        raise UserError(f"The checkpoint {job.checkpoint} is not on {socket.gethostname()}.")
    folder = Path(tempfile.gettempdir()) / "annotator-checkpoints"
    local = folder / f"{job.checkpoint_size}-{Path(path).name}"
    if not _has_checkpoint(job, str(local)):
        from annotator.core.atomic import atomic_writer

        folder.mkdir(parents=True, exist_ok=True)
        with atomic_writer(local, durable=False) as out:  # several actors per node may race
            out.write(fetch(job.checkpoint_copy[0]))
    return str(local)


def _fetch_object(ref) -> bytes:
    import ray

    return ray.get(ref)


def _share_checkpoint(ray, job: WorkerJob) -> WorkerJob:
    """The job, with the driver's checkpoint bytes in the object store when some node lacks
    the file (one line per such node); UserError when no node and not the driver has it."""
    from dataclasses import replace
    from pathlib import Path

    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    path = Path(job.checkpoint)
    size = path.stat().st_size if path.is_file() else None
    job = replace(job, checkpoint_size=size)

    @ray.remote(num_cpus=0)
    def has_it(job):
        return _has_checkpoint(job, os.path.expanduser(job.checkpoint))

    nodes = [node for node in ray.nodes() if node.get("Alive")]
    answers = ray.get(
        [
            has_it.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)
            ).remote(job)
            for node in nodes
        ]
    )
    lacking = [
        node["NodeManagerAddress"] for node, ok in zip(nodes, answers, strict=True) if not ok
    ]
    if not lacking:
        return job
    if size is None:
        if len(lacking) == len(nodes):
            raise UserError(f"No node of the cluster has the checkpoint {job.checkpoint}.")
        for address in lacking:
            note(f"node {address} has no {job.checkpoint}: its workers cannot start.")
        return job
    for address in lacking:
        note(
            f"node {address} has no {job.checkpoint}: its workers load the driver's copy "
            f"({size / 1024**2:.0f} MB)."
        )
    return replace(job, checkpoint_copy=[ray.put(path.read_bytes())])


def run_images(
    job: WorkerJob,
    sources: Iterable[tuple[int, str, tuple[int, int] | None]],
    options: RayOptions,
    on_result: Callable[[ImageResult], None],
) -> None:
    """Run `job` on each (index, source, (H, W) or None) on Ray, calling `on_result` in this
    thread as each image lands (in any order). Raises UserError (one sentence) when the cluster
    cannot be reached or the run cannot go on; KeyboardInterrupt passes through."""
    ray = _import_ray()
    rows = [
        {"index": i, "source": str(s), "height": (size or (0, 0))[0], "width": (size or (0, 0))[1]}
        for i, s, size in sources
    ]
    if not rows:
        return
    if options.address is None and not os.path.isfile(os.path.expanduser(job.checkpoint)):
        raise UserError(f"Checkpoint {job.checkpoint} does not exist.")  # before a runtime starts
    _connect(ray, options)
    try:
        actors, cpus, gpus = _actor_shape(ray, options)
        if options.address is not None:  # a local runtime's workers see this machine's files
            job = _share_checkpoint(ray, job)
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False  # the command draws its own
        context.print_on_execution_start = False
        # Ray Data sets up its loggers on import; its INFO lines and the warning that its bars
        # are off would interleave with ours.
        logging.getLogger("ray.data").setLevel(logging.ERROR)
        dataset = ray.data.from_items(rows, override_num_blocks=len(rows))
        dataset = dataset.map_batches(
            ImageWorker,
            fn_constructor_kwargs={"job": job},
            batch_size=1,
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_cpus=cpus,
            num_gpus=gpus,
        )
        for row in dataset.iter_rows():
            on_result(pickle.loads(row["result"]))
    except (UserError, KeyboardInterrupt):
        raise
    except Exception as exc:
        raise UserError(f"The Ray run stopped: {_one_line(exc)}") from None
    finally:
        ray.shutdown()


def _connect(ray, options: RayOptions) -> None:
    """ray.init for the options; UserError at once for an address that does not answer (Ray
    itself would wait minutes)."""
    address = options.address
    if address is None:
        cpus = max(os.cpu_count() or 1, int((options.actors or 1) * options.actor_cpus + 0.999))
        ray.init(
            address="local",
            num_cpus=cpus,
            object_store_memory=_LOCAL_OBJECT_STORE_BYTES,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.WARNING,
        )
        return
    if address.startswith("ray://"):
        # Ray Data needs a driver inside the cluster: through a Ray Client connection (ray 2.60)
        # its executor fails on the client's worker ("no attribute 'core_worker'"), tried here.
        raise UserError(
            f"Ray Data does not run through a Ray Client address ({address}): run the command on "
            "a node of the cluster with --ray-address HOST:PORT (the head's port, 6379 by "
            "default) or auto, or send it there with `ray job submit`."
        )
    if address != "auto":
        _check_reachable(address)
    try:
        ray.init(address=address, log_to_driver=False, logging_level=logging.WARNING)
    except Exception as exc:
        raise UserError(
            f"Cannot connect to the Ray cluster at {address}: {_one_line(exc)}"
        ) from None


def _check_reachable(address: str) -> None:
    hostport = address.split("://", 1)[-1].rsplit("/", 1)[0]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise UserError(f"Bad --ray-address {address!r}: use HOST:PORT or auto.")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), _CONNECT_TIMEOUT_S):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UserError(f"Cannot reach the Ray cluster at {address}: {reason}.") from None


def _actor_shape(ray, options: RayOptions) -> tuple[int, float, float]:
    """(actors, CPUs per actor, GPUs per actor) for this cluster."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    cpus = float(options.actor_cpus)
    if gpus:
        return (options.actors or gpus), cpus, 1.0
    largest_node = max(
        (node["Resources"].get("CPU", 0) for node in ray.nodes() if node.get("Alive")), default=0
    )
    if cpus > largest_node:
        raise UserError(
            f"--ray-actor-cpus {cpus:g} is more than any node has ({largest_node:g} CPUs)."
        )
    total = float(resources.get("CPU", 1))
    actors = options.actors or max(1, int(total // cpus))
    if actors * cpus > total:
        note(
            f"the cluster has {total:g} CPUs: {int(total // cpus)} of the {actors} actors of "
            f"{cpus:g} CPUs start now, the others when nodes join."
        )
    return actors, cpus, 0.0


def _one_line(exc: BaseException) -> str:
    """The sentence of a UserError inside a Ray error, else the error's last line."""
    seen = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, UserError):
            return str(current)
        current = getattr(current, "cause", None) or current.__cause__ or current.__context__
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = lines[-1] if lines else type(exc).__name__
    return text if text.endswith(".") else text + "."


def note(message: str) -> None:
    print(f"annotator: {message}", file=sys.stderr)
