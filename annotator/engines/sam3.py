"""SAM 3 (Meta, November 2025): every instance of a noun phrase or of an example box, run with
transformers (`Sam3Model` + `Sam3Processor`) from a checkpoint folder as the hub publishes it
(config.json with model_type "sam3", or "sam3_video" whose detector Sam3Model reads;
model.safetensors, or its shards and their index; the processor's configuration; the CLIP
tokenizer's files).

Why transformers and not Meta's `sam3` package: the package (0.1.4) does not run on a CPU as
shipped (hard-coded CUDA calls); transformers' classes do, on CPU and GPU, unpatched.

The embedding is the vision encoder's output that `Sam3Model.forward` reads: the first three FPN
levels (the fourth is dropped by forward), flattened and concatenated, float32; the position
encodings are a function of the shapes and are recomputed by the neck's own module, not stored.
`find` is the documented pipeline split in two: `model(vision_embeds=..., text_embeds=...,
input_boxes=...)` then `processor.post_process_instance_segmentation` (score threshold as given,
mask threshold the processor's 0.5), over slices of queries so a big image never holds every
query's full-size mask at once (each query's scores, box and mask depend on that query only, so
slicing changes nothing). Text embeddings are kept in memory per phrase.

Clicks: transformers' `Sam3TrackerModel` uses weights a detector folder does not hold, so this
engine does not serve clicks; `decode` says so in one sentence, and SAM, SAM 2 and the other
families keep serving clicks (Ctrl+M).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from annotator.core.proposals import CompactProposal
from annotator.engines.base import Embedding, Prediction, Prompts
from annotator.engines.hf import pack_feature_maps, unpack_feature_maps
from annotator.errors import UserError

PREPROCESS_VERSION = 1
MODEL_TYPES = ("sam3", "sam3_video")  # config.json's model_type
MASK_THRESHOLD = 0.5  # the processor's default: masks are sigmoid(logits) > 0.5
VISUAL_PROMPT = "visual"  # the processor's text for an example box without a phrase
QUERY_SLICE = 16  # queries post-processed at once (bounds full-size float masks in memory)
NO_CLICKS = (
    "SAM 3 finds objects by a phrase or an example box (Ctrl+F in the window, annotator find), "
    "not by clicks; for clicks use a SAM or SAM 2 checkpoint."
)
_TOKENIZER_SETS = (("tokenizer.json",), ("vocab.json", "merges.txt"))


@dataclass(frozen=True)
class Sam3Architecture:
    model_type: str  # "sam3"
    vit_width: int
    vit_blocks: int
    text_width: int
    text_blocks: int
    image_size: int
    queries: int

    def describe(self) -> str:
        return (
            f"(transformers layout): ViT {self.vit_width} wide, {self.vit_blocks} blocks, "
            f"{self.image_size} px; text encoder {self.text_width} wide, {self.text_blocks} "
            f"blocks; {self.queries} queries"
        )

    def key(self) -> tuple:
        return ("sam3", self.vit_width, self.vit_blocks, self.text_width, self.text_blocks,
                self.image_size, self.queries)  # fmt: skip


@dataclass(frozen=True)
class FoundInstance:
    """One instance SAM 3 found: its score (the processor's: query score x presence score),
    its box (x0, y0, x1, y1 in original-image pixels, as the processor scales it) and its mask
    packed (None when the mask is empty at the processor's mask threshold)."""

    score: float
    box: tuple[float, float, float, float]
    mask: CompactProposal | None


def is_sam3_config(config: dict) -> bool:
    return isinstance(config, dict) and config.get("model_type") in MODEL_TYPES


def detect_folder(path: Path, config: dict):
    """families.ModelInfo of a SAM 3 folder; UserError (one sentence) for what it lacks."""
    from annotator.engines.families import ModelInfo

    if weights_file(path) is None:
        raise UserError(
            f"{path.name} has no model.safetensors (only safetensors weights are read)."
        )
    if not any(all((path / n).is_file() for n in names) for names in _TOKENIZER_SETS):
        raise UserError(
            f"{path.name} has no tokenizer files (tokenizer.json, or vocab.json and merges.txt), "
            "which SAM 3 needs to read phrases: copy them from the same hub snapshot."
        )
    detector = config.get("detector_config") or config
    vit = (detector.get("vision_config") or {}).get("backbone_config") or {}
    text = detector.get("text_config") or {}
    arch = Sam3Architecture(
        "sam3",
        int(vit.get("hidden_size", 1024)),
        int(vit.get("num_hidden_layers", 32)),
        int(text.get("hidden_size", 1024)),
        int(text.get("num_hidden_layers", 24)),
        int(vit.get("image_size", 1008)),
        int((detector.get("detr_decoder_config") or {}).get("num_queries", 200)),
    )
    return ModelInfo("sam3", "sam3", arch)


def weights_file(path: Path) -> Path | None:
    """model.safetensors, or the first shard a model.safetensors.index.json names; None."""
    single = path / "model.safetensors"
    if single.is_file():
        return single
    try:
        index = json.loads((path / "model.safetensors.index.json").read_text(encoding="utf-8"))
        shards = sorted(set(index["weight_map"].values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    first = path / shards[0] if shards else None
    return first if first is not None and first.is_file() else None


def read_config(path: Path) -> dict:
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path.name}/config.json cannot be read as JSON.") from exc
    return config if isinstance(config, dict) else {}


def fingerprint(path: Path, info) -> str:
    from annotator.engines import families

    return families.fingerprint(weights_file(path), info, PREPROCESS_VERSION)


def _is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text or "can't allocate" in text or "not enough memory" in text
    )


def load_folder(path: Path, info, *, device: str) -> Sam3Engine:
    import logging

    import transformers
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity(logging.ERROR)
    hf_logging.disable_progress_bar()
    try:
        model = transformers.Sam3Model.from_pretrained(
            path, local_files_only=True, use_safetensors=True
        )
        processor = transformers.Sam3Processor.from_pretrained(path, local_files_only=True)
        model = model.float().eval().requires_grad_(False).to(device)
    except Exception as exc:
        if _is_out_of_memory(exc):
            raise UserError(
                f"There is not enough memory to load SAM 3 from {path.name} on {device} "
                "(the full model needs about 5 GB); close other programs or choose a smaller model."
            ) from exc
        if not isinstance(exc, (OSError, ValueError, TypeError, KeyError)):
            raise
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"{path.name} could not be loaded by transformers: {reason[:160]}") from exc
    return Sam3Engine(model, processor, info, device=device, fingerprint=fingerprint(path, info))


class Sam3Engine:
    """transformers' Sam3Model behind the Segmenter protocol, plus `find`."""

    family = "sam3"
    supports_automatic = False  # segment everything is SAM's point grid; SAM 3 finds by phrase
    supports_find = True
    supports_clicks = False
    encoder_kind = "stock"
    decoder_kind = "torch"

    def __init__(self, model, processor, info, *, device: str, fingerprint: str) -> None:
        self.model = model
        self.processor = processor
        self.info = info
        self.architecture = info.config
        self.device = device
        self.fingerprint = self.weights_fingerprint = fingerprint
        self.name = f"SAM 3 (transformers) ({device})"
        vision = model.config.vision_config
        fpn = int(vision.fpn_hidden_size)
        # The levels forward reads (it drops the last): channels x height x width each.
        sizes = [tuple(int(v) for v in s) for s in vision.backbone_feature_sizes]
        self._layout = [(fpn, h, w) for h, w in sizes]
        self._text: dict[str, tuple] = {}  # phrase -> (text embeddings output, attention mask)
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ encode
    def encode(self, image: np.ndarray) -> Embedding:
        """HxWx3 uint8 RGB -> the three FPN maps forward uses, flattened, float32."""
        import torch

        from annotator.engines.sam import _check_image

        image = _check_image(image)
        if not image.flags.writeable:  # the processor's torch.from_numpy warns on read-only arrays
            image = image.copy()
        with self._lock, torch.inference_mode():
            inputs = self.processor(images=image, return_tensors="pt")
            pixels = inputs["pixel_values"].to(self.device)
            levels = self.model.get_vision_features(pixel_values=pixels).fpn_hidden_states[:-1]
            features = pack_feature_maps(levels, self._layout, "SAM 3").float().cpu().numpy()
        return Embedding(
            original_size=(int(image.shape[0]), int(image.shape[1])),
            input_size=tuple(int(v) for v in pixels.shape[-2:]),
            features=np.ascontiguousarray(features, dtype=np.float32),
            fingerprint=self.fingerprint,
        )

    def _vision_embeds(self, embedding: Embedding):
        from transformers.models.sam3.modeling_sam3 import Sam3VisionEncoderOutput

        if embedding.fingerprint != self.fingerprint:
            raise ValueError("This embedding was made by another model; encode the image again.")
        maps = unpack_feature_maps(embedding.features, self._layout, self.device)
        encode_position = self.model.vision_encoder.neck.position_encoding
        positions = [encode_position(m.shape, m.device, m.dtype) for m in maps]
        # forward drops the last level of each tuple: pad with the last real one (never read).
        return Sam3VisionEncoderOutput(
            fpn_hidden_states=(*maps, maps[-1]), fpn_position_encoding=(*positions, positions[-1])
        )

    # ------------------------------------------------------------------ find
    def find(
        self,
        embedding: Embedding,
        text: str | None = None,
        box=None,
        threshold: float = 0.5,
    ) -> list[FoundInstance]:
        """Every instance of `text` (a noun phrase) and/or like the example `box` (x0, y0, x1,
        y1 in original-image pixels) scoring above `threshold`, best first. An example box
        without a phrase is the processor's "visual" prompt. Raises UserError for an empty
        phrase without a box."""
        import torch

        phrase = check_phrase(text, allow_empty=box is not None)
        with self._lock, torch.inference_mode():
            vision = self._vision_embeds(embedding)
            text_embeds, attention_mask = self._text_features(phrase or VISUAL_PROMPT)
            kwargs = {}
            if box is not None:
                boxes = self.processor(
                    original_sizes=[list(embedding.original_size)],
                    input_boxes=[[[float(v) for v in np.asarray(box).reshape(4)]]],
                    input_boxes_labels=[[1]],
                    return_tensors="pt",
                )
                kwargs["input_boxes"] = boxes["input_boxes"].to(self.device)
                kwargs["input_boxes_labels"] = boxes["input_boxes_labels"].to(self.device)
            out = self.model(
                vision_embeds=vision,
                text_embeds=text_embeds,
                attention_mask=attention_mask,
                **kwargs,
            )
            found = self._post_process(out, embedding.original_size, float(threshold))
        found.sort(key=lambda f: -f.score)
        return found

    def _text_features(self, phrase: str):
        if phrase not in self._text:
            tokens = self.processor(text=phrase, return_tensors="pt")
            mask = tokens["attention_mask"].to(self.device)
            embeds = self.model.get_text_features(
                input_ids=tokens["input_ids"].to(self.device), attention_mask=mask
            )
            if len(self._text) >= 64:  # a bounded memory of recent phrases
                self._text.pop(next(iter(self._text)))
            self._text[phrase] = (embeds, mask)
        return self._text[phrase]

    def _post_process(self, out, original_size, threshold: float) -> list[FoundInstance]:
        """processor.post_process_instance_segmentation over slices of the queries above the
        threshold (as it filters: score > threshold), each mask packed as soon as it is made."""
        from transformers.models.sam3.modeling_sam3 import Sam3ImageSegmentationOutput

        scores = out.pred_logits.sigmoid()
        if out.presence_logits is not None:
            scores = scores * out.presence_logits.sigmoid()
        kept = (scores[0] > threshold).nonzero().flatten()
        found = []
        for start in range(0, len(kept), QUERY_SLICE):
            index = kept[start : start + QUERY_SLICE]
            part = Sam3ImageSegmentationOutput(
                pred_masks=out.pred_masks[:, index],
                pred_boxes=out.pred_boxes[:, index],
                pred_logits=out.pred_logits[:, index],
                presence_logits=out.presence_logits,
            )
            result = self.processor.post_process_instance_segmentation(
                part, threshold=threshold, mask_threshold=MASK_THRESHOLD,
                target_sizes=[list(original_size)],
            )[0]  # fmt: skip
            masks = result["masks"].cpu().numpy().astype(bool)
            for score, box, mask in zip(
                result["scores"].float().cpu().numpy(),
                result["boxes"].float().cpu().numpy(),
                masks,
                strict=True,
            ):
                packed = CompactProposal.from_mask(mask, float(score), float(score))
                found.append(FoundInstance(float(score), tuple(float(v) for v in box), packed))
        return found

    # ------------------------------------------------------------------ clicks
    def decode(self, embedding: Embedding, prompts: Prompts) -> Prediction:
        raise UserError(NO_CLICKS)

    def describe(self) -> str:
        return f"{self.name}: {self.info.describe()}; encoder stock, decoder torch"


def check_phrase(text: str | None, *, allow_empty: bool = False) -> str:
    """The phrase, stripped; UserError for an empty one (unless an example box stands in)."""
    phrase = " ".join((text or "").split())
    if not phrase and not allow_empty:
        raise UserError("Type what to find first (a noun phrase such as “car” or “cell”).")
    return phrase
