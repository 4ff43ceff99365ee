"""SAM 2 and SAM 2.1 (sam2: Hiera image encoder with an FPN neck, SAM 2's prompt encoder and mask
decoder with high-resolution features), equal to `sam2.sam2_image_predictor.SAM2ImagePredictor`
on a model from `sam2.build_sam.build_sam2` (its defaults: the dynamic multimask fallback on, no
hole filling), for the image path; the video parts of the checkpoint are loaded but not used.

Detection: `image_encoder.trunk.*` and `sam_mask_decoder.*` keys; SAM 2.1 has
`no_obj_embed_spatial`. The Hiera width comes from the patch embedding, the stages from where the
blocks change width (a block with `proj`), the window-position table size from its shape. The
head count and the global-attention blocks are not in any shape: the official sizes (t, s, b+, l)
take them from sam2's own configs; any other size is read with one head in the first stage,
window sizes (8, 4, 14, 7), and global attention in the last block of the third stage (what the
tests' shrunk model uses).

The model is built from sam2's own hydra config (the official one of the size, or tiny's with
the trunk and neck overridden) and sam2's classes, without random initialisation. The embedding is
one float32 array: the 1x256x64x64 image embedding, then the two high-resolution maps
(1x32x256x256 and 1x64x128x128 for the 1024 px model), flattened and concatenated, so the disk
cache stores it like SAM 1's. The input is the image resized (not letterboxed) to 1024x1024.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from annotator.engines.base import Embedding, Prediction, Prompts
from annotator.errors import UserError

PREPROCESS_VERSION = 1

# (embed_dim, stages) -> size letter, from sam2's configs.
_OFFICIAL = {
    (96, (1, 2, 7, 2)): "t",
    (96, (1, 2, 11, 2)): "s",
    (112, (2, 3, 16, 3)): "b+",
    (144, (2, 6, 36, 4)): "l",
}

# What build_sam2(..., apply_postprocessing=True), the default, adds to every config.
_POSTPROCESSING = [
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
]


@dataclass(frozen=True)
class Sam2Architecture:
    model_type: str  # "sam2_hiera_t" ... "sam2.1_hiera_l" | "custom"
    version: str  # "sam2" | "sam2.1"
    size: str  # "t" | "s" | "b+" | "l" | "custom"
    embed_dim: int
    stages: tuple[int, ...]
    window_pos_embed_bkg: tuple[int, int]
    window_spec0: int

    def describe(self) -> str:
        stages = "/".join(map(str, self.stages))
        version = "2.1" if self.version == "sam2.1" else "2"
        return f"{self.model_type}: SAM {version} Hiera {self.embed_dim} wide, {stages} blocks"

    def key(self) -> tuple:
        return (
            self.version,
            self.size,
            self.embed_dim,
            self.stages,
            self.window_pos_embed_bkg,
            self.window_spec0,
        )

    def config_name(self) -> str:
        size = self.size if self.size != "custom" else "t"
        return f"configs/{self.version}/{self.version}_hiera_{size}.yaml"

    def overrides(self) -> list[str]:
        """Hydra overrides on top of config_name() (none for an official size)."""
        if self.size != "custom":
            return []
        c = self.embed_dim
        trunk = "++model.image_encoder.trunk"
        first_global = sum(self.stages[:3]) - 1
        window_spec = [self.window_spec0, 4, 14, 7]
        return [
            f"{trunk}.embed_dim={c}",
            f"{trunk}.num_heads=1",
            f"{trunk}.stages=[{','.join(map(str, self.stages))}]",
            f"{trunk}.global_att_blocks=[{first_global}]",
            f"{trunk}.window_pos_embed_bkg_spatial_size=[{self.window_pos_embed_bkg[0]},"
            f"{self.window_pos_embed_bkg[1]}]",
            f"{trunk}.window_spec=[{','.join(map(str, window_spec))}]",
            f"++model.image_encoder.neck.backbone_channel_list=[{8 * c},{4 * c},{2 * c},{c}]",
        ]


def detect(state_dict: dict[str, Any], name: str):
    from annotator.engines.families import ModelInfo

    prefix = "image_encoder.trunk."
    try:
        embed_dim = int(state_dict[prefix + "patch_embed.proj.weight"].shape[0])
        blocks = sorted(
            {
                int(m.group(1))
                for k in state_dict
                if (m := re.match(r"image_encoder\.trunk\.blocks\.(\d+)\.", k))
            }
        )
        if not blocks or blocks != list(range(len(blocks))):
            raise KeyError("blocks")
        starts = [0] + [i for i in blocks if f"{prefix}blocks.{i}.proj.weight" in state_dict]
        bounds = [*starts, len(blocks)]
        stages = tuple(b - a for a, b in zip(bounds, bounds[1:], strict=False))
        bkg = tuple(int(s) for s in state_dict[prefix + "pos_embed"].shape[-2:])
        window0 = int(state_dict[prefix + "pos_embed_window"].shape[-1])
    except (KeyError, AttributeError, IndexError, ValueError) as exc:
        raise UserError(
            f"{name} looks like a SAM 2 checkpoint but its Hiera image encoder has missing or "
            "odd-shaped weights."
        ) from exc
    if len(stages) != 4:
        raise UserError(f"{name} is a SAM 2 checkpoint with {len(stages)} Hiera stages, not 4.")
    version = "sam2.1" if "no_obj_embed_spatial" in state_dict else "sam2"
    size = _OFFICIAL.get((embed_dim, stages), "custom")
    if size != "custom" and (bkg, window0) != ((7, 7) if size != "b+" else (14, 14), 8):
        size = "custom"
    model_type = f"{version}_hiera_{size}" if size != "custom" else "custom"
    arch = Sam2Architecture(model_type, version, size, embed_dim, stages, bkg, window0)
    return ModelInfo("sam2", model_type, arch)


def build_model(architecture: Sam2Architecture):
    """SAM2Base from sam2's hydra config, as build_sam2 builds it, without random initialisation."""
    import sam2  # noqa: F401  (initialises hydra's config module "sam2")
    from hydra import compose
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from annotator.engines.families import skip_init

    cfg = compose(
        config_name=architecture.config_name(),
        overrides=[*architecture.overrides(), *_POSTPROCESSING],
    )
    OmegaConf.resolve(cfg)
    with skip_init():
        return instantiate(cfg.model, _recursive_=True)


def load(state_dict, info, path: Path, *, device: str, encoder: str, decoder: str):
    import torch

    from annotator.engines import families

    model = build_model(info.config)
    families.load_into(model, state_dict, path.name, "SAM 2")
    model = model.float().eval().requires_grad_(False).to(torch.device(device))
    return Sam2Engine(
        model, info, device=device, fingerprint=families.fingerprint(path, info, PREPROCESS_VERSION)
    )


class Sam2Engine:
    """A loaded SAM 2 / 2.1: the `Segmenter` protocol, step by step as SAM2ImagePredictor's
    set_image / predict compute it (mask_threshold 0, no hole filling)."""

    family = "sam2"
    # Segment everything: sam2's own SAM2AutomaticMaskGenerator on the engine's embedding
    # (annotator.engines.automatic).
    supports_automatic = True
    encoder_kind = "stock"
    decoder_kind = "torch"

    def __init__(self, model, info, *, device: str, fingerprint: str) -> None:
        from sam2.utils.transforms import SAM2Transforms

        self.model = model
        self.info = info
        self.architecture = info.config
        self.device = device
        self.fingerprint = self.weights_fingerprint = fingerprint
        self.resolution = int(model.image_size)
        self.transforms = SAM2Transforms(resolution=self.resolution, mask_threshold=0.0)
        grid = self.resolution // 16
        # (channels, side) of image_embed, then the high-resolution maps (as the predictor's
        # _bb_feat_sizes: strides 16, 4, 8).
        self._layout = [(256, grid), (32, grid * 4), (64, grid * 2)]
        self.name = f"SAM 2 {info.model_type} ({device})".replace("SAM 2 sam2.1", "SAM 2.1 sam2.1")
        self._lock = threading.Lock()

    def encode(self, image: np.ndarray) -> Embedding:
        """HxWx3 uint8 RGB -> features: one float32 vector (see the module doc)."""
        import torch

        from annotator.engines.sam import _check_image

        image = _check_image(image)
        if not image.flags.writeable:  # torchvision's ToTensor warns on read-only arrays
            image = image.copy()
        model = self.model
        with self._lock, torch.inference_mode():
            input_image = self.transforms(image)[None, ...].to(self.device)
            backbone_out = model.forward_image(input_image)
            _, vision_feats, _, _ = model._prepare_backbone_features(backbone_out)
            if model.directly_add_no_mem_embed:
                vision_feats[-1] = vision_feats[-1] + model.no_mem_embed
            # As the predictor: strides 4, 8, 16 -> [hi-res 4, hi-res 8, image_embed].
            bb_sizes = [
                (side, side) for _, side in (self._layout[1], self._layout[2], self._layout[0])
            ]
            feats = [
                feat.permute(1, 2, 0).view(1, -1, *size)
                for feat, size in zip(vision_feats[::-1], bb_sizes[::-1], strict=True)
            ][::-1]
            ordered = [feats[-1], feats[0], feats[1]]  # image_embed first (self._layout)
            packed = torch.cat([f.reshape(-1) for f in ordered]).float().cpu().numpy()
        return Embedding(
            original_size=(int(image.shape[0]), int(image.shape[1])),
            input_size=(self.resolution, self.resolution),
            features=np.ascontiguousarray(packed, dtype=np.float32),
            fingerprint=self.fingerprint,
        )

    def _unpack(self, features: np.ndarray):
        import torch

        flat = torch.as_tensor(np.asarray(features), device=self.device)
        parts, start = [], 0
        for channels, side in self._layout:
            n = channels * side * side
            parts.append(flat[start : start + n].view(1, channels, side, side))
            start += n
        if start != flat.numel():
            raise ValueError("This embedding was made by another model; encode the image again.")
        return parts[0], [parts[1], parts[2]]

    def predictor_features(self, embedding: Embedding) -> dict:
        """The embedding as `SAM2ImagePredictor.set_image` leaves it in the predictor's
        `_features`: {"image_embed": 1x256x64x64, "high_res_feats": [1x32x256x256, 1x64x128x128]}
        (for the 1024 px model), float32 tensors on the engine's device."""
        if embedding.fingerprint != self.fingerprint:
            raise ValueError("This embedding was made by another model; encode the image again.")
        image_embed, high_res = self._unpack(embedding.features)
        return {"image_embed": image_embed, "high_res_feats": high_res}

    def decode(self, embedding: Embedding, prompts: Prompts) -> Prediction:
        """masks: CxHxW bool; scores: C float32; low_res_logits: Cx256x256 float32 (clamped to
        +-32, as the predictor returns them), C = 3 with multimask, else 1."""
        import torch

        if embedding.fingerprint != self.fingerprint:
            raise ValueError("This embedding was made by another model; encode the image again.")
        if prompts.is_empty():
            raise ValueError("decode needs at least one point or a box.")
        device, orig_hw = self.device, embedding.original_size
        t = self.transforms
        model = self.model
        with self._lock, torch.inference_mode():
            image_embed, high_res = self._unpack(embedding.features)
            concat_points = None
            if len(prompts.points):
                coords = torch.as_tensor(
                    np.asarray(prompts.points), dtype=torch.float, device=device
                )
                coords = t.transform_coords(coords, normalize=True, orig_hw=orig_hw)[None, ...]
                labels = torch.as_tensor(np.asarray(prompts.labels), dtype=torch.int, device=device)
                concat_points = (coords, labels[None, ...])
            if prompts.box is not None:
                box = torch.as_tensor(np.asarray(prompts.box), dtype=torch.float, device=device)
                box_coords = t.transform_boxes(box, normalize=True, orig_hw=orig_hw).reshape(
                    -1, 2, 2
                )
                box_labels = torch.tensor([[2, 3]], dtype=torch.int, device=device)
                if concat_points is not None:
                    concat_points = (
                        torch.cat([box_coords, concat_points[0]], dim=1),
                        torch.cat([box_labels, concat_points[1]], dim=1),
                    )
                else:
                    concat_points = (box_coords, box_labels)
            mask_input = None
            if prompts.mask_input is not None:
                mask_input = torch.tensor(prompts.mask_input, dtype=torch.float, device=device)
                mask_input = mask_input.reshape(1, 1, *mask_input.shape[-2:])
            sparse, dense = model.sam_prompt_encoder(
                points=concat_points, boxes=None, masks=mask_input
            )
            low_res, iou, _, _ = model.sam_mask_decoder(
                image_embeddings=image_embed,
                image_pe=model.sam_prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=prompts.multimask,
                repeat_image=False,
                high_res_features=high_res,
            )
            masks = t.postprocess_masks(low_res, orig_hw) > 0.0
            low_res = torch.clamp(low_res, -32.0, 32.0)
            return Prediction(
                masks=masks[0].cpu().numpy(),
                scores=iou[0].float().cpu().numpy(),
                low_res_logits=low_res[0].float().cpu().numpy(),
            )

    def describe(self) -> str:
        return f"{self.name}: {self.info.describe()}; encoder stock, decoder torch"
