"""`annotator segment | info | embed`: the segmentation engines from a terminal, without Qt.

annotator segment IMAGE --checkpoint CKPT --point 120,80 [--negative X,Y] [--box X0,Y0,X1,Y1]
                  [--multimask] [--no-cache] --out MASK.png
annotator info CKPT                      # the architecture found in a checkpoint
annotator embed FOLDER --checkpoint CKPT # fill the embedding cache for a folder (resumable)
annotator embed SOURCE --checkpoint CKPT --store URL [--ray [--ray-address A] [--ray-actors N]]
                                         # fill a shared embedding store, here or on Ray workers

Coordinates are pixels of the image as displayed (EXIF rotation applied), X to the right, Y down.
Every bad input becomes a UserError: one line on stderr, exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from annotator.cli import add_model_arguments, add_ray_arguments, ray_options
from annotator.errors import UserError


def register(subparsers) -> None:
    segment = subparsers.add_parser(
        "segment",
        help="segment one image from points and/or a box, write the mask as a PNG",
        description="Segment one image with SAM (or the classic no-model engine without a "
        "checkpoint) and write the mask as a 0/255 PNG at the image's size.",
    )
    segment.add_argument("image", type=Path, metavar="IMAGE")
    _add_model_arguments(segment, required=False)
    segment.add_argument(
        "--point", action="append", default=[], metavar="X,Y", help="foreground point (repeat)"
    )
    segment.add_argument(
        "--negative", action="append", default=[], metavar="X,Y", help="background point (repeat)"
    )
    segment.add_argument("--box", metavar="X0,Y0,X1,Y1", help="box around the object")
    segment.add_argument(
        "--multimask", action="store_true", help="predict three masks and keep the best-scoring"
    )
    segment.add_argument("--no-cache", action="store_true", help="do not use the embedding cache")
    segment.add_argument("--out", type=Path, required=True, metavar="MASK.png")
    segment.set_defaults(func=_segment)

    info = subparsers.add_parser(
        "info",
        help="print the SAM architecture of a checkpoint",
        description="Inspect a SAM checkpoint.",
    )
    info.add_argument("checkpoint", type=Path, metavar="CKPT")
    info.set_defaults(func=_info)

    embed = subparsers.add_parser(
        "embed",
        help="compute the SAM embeddings of every image in a folder into the cache or a store",
        description="Fill the embedding cache (or, with --store, a shared embedding store) for "
        "every image in SOURCE, with a progress bar. Images already there are skipped, so an "
        "interrupted run picks up where it stopped. With --ray the images are embedded on Ray "
        "worker actors, which read SOURCE and write --store where they run.",
    )
    embed.add_argument(
        "folder", metavar="SOURCE", help="a folder of images, or an fsspec URL (s3://bucket/dir)"
    )
    _add_model_arguments(embed, required=True)
    embed.add_argument(
        "--cache-gb", type=float, default=2.0, help="size bound of the cache in GB (default 2)"
    )
    embed.add_argument(
        "--store",
        metavar="URL",
        help="write the embeddings to this shared store (a folder or an fsspec URL) instead of "
        "the local cache; windows read it through ANNOTATOR_EMBEDDING_STORE",
    )
    add_ray_arguments(embed)
    embed.set_defaults(func=_embed)


def _add_model_arguments(parser: argparse.ArgumentParser, required: bool) -> None:
    default = None if required else os.environ.get("SAM_CHECKPOINT") or None
    parser.add_argument(
        "--checkpoint",
        type=Path,
        required=required,
        default=default,
        metavar="CKPT",
        help="SAM checkpoint (.pth)"
        + ("" if required else "; without one the classic engine (no model) is used"),
    )
    add_model_arguments(parser)


# -- argument parsing ------------------------------------------------------------------------


def parse_numbers(text: str, count: int, what: str) -> list[float]:
    """'12,34.5' -> [12.0, 34.5]; UserError unless exactly `count` finite numbers."""
    import math

    parts = [part.strip() for part in str(text).split(",")]
    try:
        values = [float(part) for part in parts]
    except ValueError:
        values = []
    if len(values) != count or not all(math.isfinite(v) for v in values):
        shape = ",".join(("X", "Y") if count == 2 else ("X0", "Y0", "X1", "Y1"))
        raise UserError(f"Bad {what} {text!r}: expected {shape} in pixels.")
    return values


def _prompts_from_args(args, width: int, height: int):
    """Prompts from --point/--negative/--box, checked against the image size (W, H)."""
    import numpy as np

    from annotator.engines.base import Prompts

    points, labels = [], []
    for texts, label, what in ((args.point, 1, "point"), (args.negative, 0, "negative point")):
        for text in texts:
            x, y = parse_numbers(text, 2, what)
            if not (0 <= x < width and 0 <= y < height):
                raise UserError(f"The {what} {x:g},{y:g} lies outside the {width}x{height} image.")
            points.append((x, y))
            labels.append(label)
    box = None
    if args.box is not None:
        x0, y0, x1, y1 = parse_numbers(args.box, 4, "box")
        if not (x0 < x1 and y0 < y1):
            raise UserError(f"Bad box {args.box!r}: X0 must be below X1 and Y0 below Y1.")
        if x0 < 0 or y0 < 0 or x1 > width or y1 > height:
            raise UserError(f"The box {args.box} reaches outside the {width}x{height} image.")
        box = np.array([x0, y0, x1, y1], np.float32)
    if not points and box is None:
        raise UserError("Give at least one --point or a --box.")
    return Prompts(
        points=np.array(points, np.float32).reshape(-1, 2),
        labels=np.array(labels, np.int32),
        box=box,
        multimask=bool(args.multimask),
    )


def _check_out_path(path: Path) -> Path:
    path = Path(path).expanduser()
    if path.suffix.lower() != ".png":
        raise UserError(f"The mask is written as PNG: name it *.png, not {path.name}.")
    if not path.parent.is_dir():
        raise UserError(f"The folder {path.parent} does not exist.")
    if path.is_dir():
        raise UserError(f"{path} is a folder.")
    return path


# -- engines -------------------------------------------------------------------------------


def _load_engine(args):
    """SamEngine for --checkpoint, or the classic engine when there is none."""
    if args.checkpoint is None:
        from annotator.engines.classic import ClassicEngine

        print("annotator: no --checkpoint: using the classic engine (no model).", file=sys.stderr)
        return ClassicEngine()
    checkpoint = Path(args.checkpoint).expanduser()
    if not checkpoint.exists():
        raise UserError(f"Checkpoint {checkpoint} does not exist.")
    from annotator.engines.families import load_model

    return load_model(checkpoint, model_type=args.model_type, device=args.device)


def _write_mask_png(mask, path: Path) -> None:
    """HxW bool -> 8-bit grayscale PNG of 0/255, written atomically."""
    import numpy as np
    from PIL import Image

    from annotator.core.atomic import atomic_writer

    try:
        with atomic_writer(path) as out:
            Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L").save(out, "PNG")
    except OSError as exc:
        raise UserError(f"Cannot write {path}: {exc.strerror or exc}.") from None


# -- commands ------------------------------------------------------------------------------


def _segment(args) -> int:
    from annotator.core.images import load_image, read_image_size

    width, height = read_image_size(args.image)  # cheap: bad input fails before the model loads
    prompts = _prompts_from_args(args, width, height)
    out = _check_out_path(args.out)
    image = load_image(args.image)
    engine = _load_engine(args)
    if args.no_cache:
        embedding = engine.encode(image)
    else:
        from annotator.engines.cache import EmbeddingCache
        from annotator.engines.store import store_from_environment

        embedding, _ = EmbeddingCache(store=store_from_environment()).encode_cached(engine, image)
    prediction = engine.decode(embedding, prompts)
    best = prediction.best_index()
    mask = prediction.mask(best)  # only the best one is upsampled
    _write_mask_png(mask, out)
    area = int(mask.sum())
    print(f"{out}: {area} px, score {float(prediction.scores[best]):.3f} ({engine.name})")
    return 0


def _info(args) -> int:
    from annotator.engines.families import inspect_checkpoint

    print(inspect_checkpoint(Path(args.checkpoint).expanduser()).describe())
    return 0


def image_sources(source: str) -> list:
    """The images of SOURCE: a folder's paths, or a URL prefix's URLs; UserError if none."""
    from annotator.core.images import is_url, list_image_urls, list_images

    images = list_image_urls(source) if is_url(source) else list_images(Path(source))
    if not images:
        raise UserError(f"{source} holds no images.")
    return images


def report_failures(failures: list[str]) -> None:
    """One line per distinct reason (a store that cannot be written fails every image alike)."""
    counts: dict[str, int] = {}
    for message in failures:
        counts[message] = counts.get(message, 0) + 1
    for message, count in counts.items():
        suffix = f" ({count} images)" if count > 1 else ""
        print(f"annotator: failed: {message}{suffix}", file=sys.stderr)


def _embed(args) -> int:
    if args.checkpoint is None:
        raise UserError("embed needs --checkpoint.")
    if not args.cache_gb > 0:
        raise UserError("--cache-gb must be a positive number.")
    options = ray_options(args)
    if options is not None and not args.store:
        raise UserError("embed --ray needs --store URL: the workers' own caches would help no one.")
    images = image_sources(args.folder)
    if args.store:
        return _embed_into_store(args, images, options)
    return _embed_into_cache(args, images)


def _embed_into_store(args, images: list, options) -> int:
    from tqdm import tqdm

    from annotator.core.images import is_url
    from annotator.engines import batch
    from annotator.engines.store import EmbeddingStore

    store = EmbeddingStore(args.store)
    if options is None or is_url(args.store) or Path(args.store).expanduser().exists():
        store.check_writable()  # else only the workers see the folder: they report it
    counts = {batch.ENCODED: 0, batch.ALREADY_STORED: 0}
    failures: list[str] = []
    with tqdm(total=len(images), desc="embedding", unit="image", file=sys.stderr) as bar:

        def landed(status: str | None, error: str) -> None:
            if error:
                failures.append(error)
            else:
                counts[status] += 1
            bar.update(1)
            bar.set_postfix(encoded=counts[batch.ENCODED], stored=counts[batch.ALREADY_STORED])

        if options is None:
            engine = _load_engine(args)
            for source in images:
                try:
                    landed(batch.embed_into_store(engine, source, store), "")
                except UserError as exc:
                    landed(None, str(exc))
        else:
            from annotator.cluster import ray_batch

            job = ray_batch.WorkerJob(
                ray_batch.EMBED,
                str(Path(args.checkpoint).expanduser().absolute()),
                args.model_type,
                args.device,
                ray_batch.driver_linear_backend(args.checkpoint, args.device),
                store=store.location,
            )
            ray_batch.run_images(
                job,
                ((i, str(source), None) for i, source in enumerate(images)),
                options,
                lambda result: landed(result.value, result.error),
            )
    report_failures(failures)
    print(
        f"{counts[batch.ENCODED]} encoded, {counts[batch.ALREADY_STORED]} already in the store, "
        f"{len(failures)} failed; store: {store.location}"
    )
    return 1 if failures else 0


def _embed_into_cache(args, images: list) -> int:
    from tqdm import tqdm

    from annotator.core.images import load_image
    from annotator.engines.cache import FROM_STORE, EmbeddingCache
    from annotator.engines.store import store_from_environment

    engine = _load_engine(args)
    store = store_from_environment()  # read through: copied, not computed, when it has them
    cache = EmbeddingCache(max_bytes=int(args.cache_gb * 1024**3), store=store)
    encoded = cached = copied = 0
    unreadable: list[str] = []
    warned = False
    with tqdm(images, desc="embedding", unit="image", file=sys.stderr) as bar:
        for path in bar:
            try:
                image = load_image(path)
            except UserError as exc:
                unreadable.append(str(path))
                bar.write(f"annotator: skipped: {exc}", file=sys.stderr)
                continue
            if cache.contains(image, engine.fingerprint):
                cached += 1
            else:
                _, source = cache.encode_with_source(engine, image)
                copied += source == FROM_STORE
                encoded += source != FROM_STORE
                entry = cache.path_for(cache.key(image, engine.fingerprint))
                if entry.exists() and not warned:
                    warned = _warn_if_too_small(cache, entry, len(images), bar)
            bar.set_postfix(encoded=encoded, cached=cached)
    from_store = f", {copied} copied from the store {store.location}" if store else ""
    print(
        f"{encoded} encoded, {cached} already cached, {len(unreadable)} unreadable "
        f"({engine.name}); cache: {cache.root}{from_store}"
    )
    return 1 if unreadable else 0


def _warn_if_too_small(cache, entry: Path, count: int, bar) -> bool:
    needed = entry.stat().st_size * count
    if needed <= cache.max_bytes:
        return False
    bar.write(
        f"annotator: {count} embeddings need about {needed / 1024**3:.1f} GB but the cache holds "
        f"{cache.max_bytes / 1024**3:.1f} GB: the oldest will be evicted (see --cache-gb).",
        file=sys.stderr,
    )
    return True
