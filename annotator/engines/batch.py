"""The work on one image of a batch command, the same in one process and on a Ray worker.

`annotator embed --store` and `annotator auto` call these per image in their own loop; with
`--ray` each worker actor calls the same function on the images it is given (annotator.cluster),
so the two runs compute the same thing by construction. Each raises UserError (one sentence) for
an image that cannot be used; the caller reports it and goes on with the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

ENCODED, ALREADY_STORED = "encoded", "already stored"


def embed_into_store(engine, source, store) -> str:
    """Put the embedding of the image at `source` (a path or URL) into `store` unless it is
    there: returns ENCODED or ALREADY_STORED. The key is the embedding cache's, so a cache
    reading through the store finds it."""
    from annotator.core.images import load_image
    from annotator.engines.cache import image_key

    image = load_image(source)
    key = image_key(image, engine.fingerprint)
    if store.contains(key):
        return ALREADY_STORED
    store.put(key, engine.encode(image))
    return ENCODED


@dataclass(frozen=True)
class Segmented:
    """What segmenting one image gave: its proposals (best first) and where its embedding came
    from (`cache.COMPUTED`, `FROM_CACHE` or `FROM_STORE`)."""

    proposals: tuple
    embedding_source: str


def segment_image(
    engine, cache, source, expected_size: tuple[int, int], settings, progress=None
) -> Segmented:
    """Segment everything in the image at `source`, which the project says is (H, W) pixels.

    cache: an EmbeddingCache (its store read through); settings: AutoMaskSettings; progress:
    `generate_proposals`' callback. Raises UserError for an unreadable image or one whose size
    changed since it was added to the project.
    """
    from annotator.core.images import load_image
    from annotator.engines.automatic import generate_proposals
    from annotator.errors import UserError

    image = load_image(source)
    height, width = expected_size
    if image.shape[:2] != (height, width):
        name = str(source).replace("\\", "/").rsplit("/", 1)[-1]
        raise UserError(
            f"{name} is {image.shape[1]}x{image.shape[0]} pixels but the project says "
            f"{width}x{height}; it was left out."
        )
    embedding, embedding_source = cache.encode_with_source(engine, image)
    proposals = generate_proposals(engine, image, settings, embedding=embedding, progress=progress)
    return Segmented(tuple(proposals), embedding_source)
