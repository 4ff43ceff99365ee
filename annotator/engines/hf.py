"""The Hugging Face transformers layout of SAM (a folder or hub snapshot with config.json,
model.safetensors and the processor's configuration), run with transformers itself
(`SamModel` + `SamProcessor`) and of SAM-HQ (`SamHQModel` + `SamHQProcessor`), equal to
transformers' documented pipeline (`model(**processor(image, input_points=...))` then
`processor.post_process_masks`).

Detection reads config.json's `model_type`: "sam", "sam_hq" and "sam2" (Sam2Model +
Sam2Processor) are loaded; SAM 3 ("sam3") is its own family (engines/sam3.py); others are refused with one sentence. Weights are read from
model.safetensors only (never a pickle), with `local_files_only`: nothing is downloaded. The
embedding is the vision encoder's 1x256x64x64 output, as SAM 1's; SAM-HQ's also holds the first
intermediate (global-attention) ViT feature its decoder fuses, channels-first after it, as
engines/sam_hq.py packs it; SAM 2's is its three feature maps flattened and concatenated. transformers' SAM-HQ answers three masks for multimask (SAM's three,
each plus the HQ mask, sorted by score), unlike segment_anything_hq's one.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from annotator.engines.base import Embedding, Prediction, Prompts
from annotator.errors import UserError

PREPROCESS_VERSION = 1
LOADED_TYPES = ("sam", "sam_hq", "sam2")
KNOWN_TYPES = {"sam": "SAM", "sam_hq": "SAM-HQ", "sam2": "SAM 2"}


@dataclass(frozen=True)
class HfArchitecture:
    model_type: str  # "hf"
    hf_model_type: str  # config.json's model_type: "sam"
    hidden_size: int
    num_hidden_layers: int
    global_attn_indexes: tuple[int, ...]

    def describe(self) -> str:
        blocks = ",".join(map(str, self.global_attn_indexes))
        return (
            f"hf ({self.hf_model_type}, transformers layout): "
            f"{'Hiera' if self.hf_model_type == 'sam2' else 'ViT'} {self.hidden_size} wide, "
            f"{self.num_hidden_layers} blocks, global attention in blocks {blocks}"
        )

    def key(self) -> tuple:
        return ("hf", self.hf_model_type, self.hidden_size, self.num_hidden_layers,
                self.global_attn_indexes)  # fmt: skip


def is_hf_folder(path: Path) -> bool:
    return path.is_dir() and (path / "config.json").is_file()


def detect_folder(path: Path):
    """families.ModelInfo of a transformers folder; UserError (one sentence) otherwise."""
    from annotator.engines.families import ModelInfo

    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"{path.name}/config.json cannot be read as JSON.") from exc
    model_type = str(config.get("model_type", "")) if isinstance(config, dict) else ""
    if model_type not in LOADED_TYPES:
        if model_type in KNOWN_TYPES:
            raise UserError(
                f"{path.name} is a transformers {KNOWN_TYPES[model_type]} model "
                f"(model_type {model_type!r}), which Annotator does not load yet; the family's "
                "own checkpoint file works."
            )
        raise UserError(
            f"{path.name} is a transformers model of type {model_type or 'unknown'!r}, "
            "not a Segment Anything model."
        )
    if not (path / "model.safetensors").is_file():
        raise UserError(
            f"{path.name} has no model.safetensors (only safetensors weights are read)."
        )
    vision = config.get("vision_config") or {}
    if model_type == "sam2":  # a Hiera backbone: width, blocks over all stages, global blocks
        hiera = vision.get("backbone_config") or {}
        width = int(hiera.get("hidden_size", 96))
        depth = int(sum(hiera.get("blocks_per_stage", (1, 2, 7, 2))))
        global_blocks = hiera.get("global_attention_blocks", (5, 7, 9))
    else:
        width = int(vision.get("hidden_size", 768))
        depth = int(vision.get("num_hidden_layers", 12))
        global_blocks = vision.get("global_attn_indexes", (2, 5, 8, 11))
    arch = HfArchitecture("hf", model_type, width, depth, tuple(int(i) for i in global_blocks))
    return ModelInfo("hf", "hf", arch)


def fingerprint(path: Path, info) -> str:
    from annotator.engines import families

    return families.fingerprint(path / "model.safetensors", info, PREPROCESS_VERSION)


def load_folder(path: Path, info, *, device: str):
    import logging

    import transformers
    from transformers.utils import logging as hf_logging

    model_class, processor_class = {
        "sam": (transformers.SamModel, transformers.SamProcessor),
        "sam_hq": (transformers.SamHQModel, transformers.SamHQProcessor),
        "sam2": (transformers.Sam2Model, transformers.Sam2Processor),
    }[info.config.hf_model_type]

    hf_logging.set_verbosity(logging.ERROR)
    hf_logging.disable_progress_bar()
    try:
        model = model_class.from_pretrained(path, local_files_only=True, use_safetensors=True)
        processor = processor_class.from_pretrained(path, local_files_only=True)
    except (OSError, ValueError) as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise UserError(f"{path.name} could not be loaded by transformers: {reason[:160]}") from exc
    model = model.float().eval().requires_grad_(False).to(device)
    return HfSamEngine(model, processor, info, device=device, fingerprint=fingerprint(path, info))


class HfSamEngine:
    """transformers' SamModel or SamHQModel behind the Segmenter protocol."""

    family = "hf"
    supports_automatic = False  # segment everything runs segment_anything's decoder loop
    encoder_kind = "stock"
    decoder_kind = "torch"

    def __init__(self, model, processor, info, *, device: str, fingerprint: str) -> None:
        self.model = model
        self.processor = processor
        self.info = info
        self.architecture = info.config
        self.device = device
        self.fingerprint = self.weights_fingerprint = fingerprint
        self.kind = info.config.hf_model_type
        self.hq = self.kind == "sam_hq"
        title = {"sam": "SAM", "sam_hq": "SAM-HQ", "sam2": "SAM 2"}[self.kind]
        self.name = f"{title} (transformers) ({device})"
        if self.kind == "sam2":
            # get_image_embeddings: [stride 4, stride 8, stride 16] maps of hidden/8, hidden/4
            # and hidden channels (the decoder's own projections of the FPN levels).
            hidden = int(model.config.mask_decoder_config.hidden_size)
            sizes = [tuple(int(v) for v in size) for size in model.backbone_feature_sizes]
            self._layout = [(hidden // 8, *sizes[0]), (hidden // 4, *sizes[1]), (hidden, *sizes[2])]
        self._lock = threading.Lock()

    def encode(self, image: np.ndarray) -> Embedding:
        """HxWx3 uint8 RGB -> the vision encoder's 1x256x64x64 float32 output."""
        import torch

        from annotator.engines.sam import _check_image

        image = _check_image(image)
        if not image.flags.writeable:  # the processor's torch.from_numpy warns on read-only arrays
            image = image.copy()
        with self._lock, torch.inference_mode():
            inputs = self.processor(images=image, return_tensors="pt")
            pixels = inputs["pixel_values"].to(self.device)
            if self.kind == "sam2":
                maps = self.model.get_image_embeddings(pixels)
                features = pack_feature_maps(maps, self._layout, "SAM 2")
            elif self.hq:
                features, intermediate = self.model.get_image_embeddings(pixels)
                early = intermediate[0].permute(0, 3, 1, 2)  # B x D x 64 x 64
                features = torch.cat([features, early], dim=1)
            else:
                features = self.model.get_image_embeddings(pixels)
            features = features.float().cpu().numpy()
        if "reshaped_input_sizes" in inputs:
            reshaped = [int(v) for v in np.asarray(inputs["reshaped_input_sizes"])[0]]
        else:  # SAM 2 resizes (not letterboxes) to a square
            reshaped = [int(v) for v in inputs["pixel_values"].shape[-2:]]
        return Embedding(
            original_size=(int(image.shape[0]), int(image.shape[1])),
            input_size=(reshaped[0], reshaped[1]),
            features=np.ascontiguousarray(features, dtype=np.float32),
            fingerprint=self.fingerprint,
        )

    def decode(self, embedding: Embedding, prompts: Prompts) -> Prediction:
        """As the processor normalises prompts and SamModel.forward decodes them; masks from
        processor.post_process_masks. masks CxHxW bool, scores C, low_res_logits Cx256x256."""
        import torch

        if embedding.fingerprint != self.fingerprint:
            raise ValueError("This embedding was made by another model; encode the image again.")
        if prompts.is_empty():
            raise ValueError("decode needs at least one point or a box.")
        if self.kind == "sam2":
            return self._decode_sam2(embedding, prompts)
        processor, device = self.processor, self.device
        original = embedding.original_size
        kwargs = {}
        if len(prompts.points):
            coords = processor._normalize_coordinates(
                processor.target_size, np.asarray(prompts.points, np.float64), original
            )
            # float64, as the processor hands them over
            kwargs["input_points"] = torch.from_numpy(np.asarray(coords))[None, None].to(device)
            labels = torch.from_numpy(np.asarray(prompts.labels, np.int64))
            kwargs["input_labels"] = labels[None, None].to(device)
        if prompts.box is not None:
            box = processor._normalize_coordinates(
                processor.target_size,
                np.asarray(prompts.box, np.float64)[None],
                original,
                is_bounding_box=True,
            )
            kwargs["input_boxes"] = torch.from_numpy(np.asarray(box))[None].to(device)
        if prompts.mask_input is not None:
            mask = torch.tensor(np.asarray(prompts.mask_input), dtype=torch.float, device=device)
            kwargs["input_masks"] = mask.reshape(1, 1, *mask.shape[-2:])
        with self._lock, torch.inference_mode():
            features = torch.as_tensor(np.asarray(embedding.features), device=device)
            if self.hq:
                kwargs["intermediate_embeddings"] = [features[:, 256:].permute(0, 2, 3, 1)]
                features = features[:, :256]
            out = self.model(
                image_embeddings=features, multimask_output=prompts.multimask, **kwargs
            )
            low_res = out.pred_masks[0, 0]  # C x 256 x 256
            masks = processor.post_process_masks(
                out.pred_masks.cpu(), [list(original)], [list(embedding.input_size)]
            )[0][0]
            return Prediction(
                masks=masks.numpy(),
                scores=out.iou_scores[0, 0].float().cpu().numpy(),
                low_res_logits=low_res.float().cpu().numpy(),
            )

    def _decode_sam2(self, embedding: Embedding, prompts: Prompts) -> Prediction:
        """Prompts through Sam2Processor(original_sizes=...) as the documented pipeline does,
        Sam2Model.forward on the cached feature maps, masks from post_process_masks."""
        import torch

        processor, device = self.processor, self.device
        original = [list(embedding.original_size)]
        kwargs = {}
        if len(prompts.points):
            kwargs["input_points"] = [[np.asarray(prompts.points).tolist()]]
            kwargs["input_labels"] = [[np.asarray(prompts.labels).tolist()]]
        if prompts.box is not None:
            kwargs["input_boxes"] = [[np.asarray(prompts.box).tolist()]]
        inputs = processor(original_sizes=original, return_tensors="pt", **kwargs)
        inputs = {k: v.to(device) for k, v in inputs.items() if k != "original_sizes"}
        if prompts.mask_input is not None:
            mask = torch.tensor(np.asarray(prompts.mask_input), dtype=torch.float, device=device)
            inputs["input_masks"] = mask.reshape(1, 1, *mask.shape[-2:])
        with self._lock, torch.inference_mode():
            maps = unpack_feature_maps(embedding.features, self._layout, device)
            out = self.model(image_embeddings=maps, multimask_output=prompts.multimask, **inputs)
            masks = processor.post_process_masks(out.pred_masks.cpu(), original)[0][0]
            return Prediction(
                masks=masks.numpy(),
                scores=out.iou_scores[0, 0].float().cpu().numpy(),
                low_res_logits=out.pred_masks[0, 0].float().cpu().numpy(),
            )

    def describe(self) -> str:
        return f"{self.name}: {self.info.describe()}; encoder stock, decoder torch"


def pack_feature_maps(maps, layout, title: str):
    """1xCxHxW feature maps (torch) -> one flat tensor, after checking their (C, H, W) against
    `layout`; the multi-level embeddings of SAM 2 and SAM 3 are cached as one array this way."""
    import torch

    shapes = [tuple(m.shape[1:]) for m in maps]
    if shapes != [tuple(level) for level in layout]:
        raise ValueError(f"unexpected {title} feature maps {shapes}")
    return torch.cat([m.reshape(-1) for m in maps])


def unpack_feature_maps(features, layout, device) -> list:
    """The inverse of `pack_feature_maps`: a flat array -> 1xCxHxW torch views on `device`.
    Raises ValueError when the size is not the layout's (an embedding of another model)."""
    import torch

    flat = torch.as_tensor(np.asarray(features), device=device)
    maps, start = [], 0
    for channels, height, width in layout:
        n = channels * height * width
        maps.append(flat[start : start + n].view(1, channels, height, width))
        start += n
    if start != flat.numel():
        raise ValueError("This embedding was made by another model; encode the image again.")
    return maps
