"""MobileSAM (TinyViT image encoder + SAM 1's prompt encoder and mask decoder), equal to
`mobile_sam.SamPredictor` on the same weights (identical masks with the torch decoder; the exported
ONNX decoder within float rounding).

The TinyViT configuration is read from tensor shapes (`tinyvit_config`; SAM-HQ's vit_tiny uses the
same encoder), the model is built with mobile_sam's own modules on the meta device and given the
checkpoint's tensors. The prompt encoder and mask decoder are SAM 1's, so the engine is SAM 1's
`SamEngine` with the stock encoder: the same preprocessing (ResizeLongestSide 1024, normalise, pad),
the same decode, and the exported ONNX decoder on the CPU (within float rounding of torch's).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from annotator.errors import UserError

PREPROCESS_VERSION = 1


@dataclass(frozen=True)
class TinyViTConfig:
    """mobile_sam.modeling.TinyViT's arguments, as read from a state dict (prefix stripped)."""

    embed_dims: tuple[int, ...]
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    window_sizes: tuple[int, ...]
    mlp_ratio: float
    mbconv_expand_ratio: float
    local_conv_size: int
    img_size: int = 1024

    def kwargs(self) -> dict:
        return dict(
            img_size=self.img_size,
            in_chans=3,
            num_classes=1000,
            embed_dims=list(self.embed_dims),
            depths=list(self.depths),
            num_heads=list(self.num_heads),
            window_sizes=list(self.window_sizes),
            mlp_ratio=self.mlp_ratio,
            drop_rate=0.0,
            drop_path_rate=0.0,
            use_checkpoint=False,
            mbconv_expand_ratio=self.mbconv_expand_ratio,
            local_conv_size=self.local_conv_size,
            layer_lr_decay=0.8,
        )

    def describe(self) -> str:
        dims = "/".join(map(str, self.embed_dims))
        depths = "/".join(map(str, self.depths))
        return f"TinyViT {dims} wide, {depths} blocks, {self.img_size}px input"


# mobile_sam/build_sam.py: build_sam_vit_t (SAM-HQ's vit_tiny is the same encoder).
VIT_T = TinyViTConfig(
    embed_dims=(64, 128, 160, 320),
    depths=(2, 2, 6, 2),
    num_heads=(2, 4, 5, 10),
    window_sizes=(7, 7, 14, 7),
    mlp_ratio=4.0,
    mbconv_expand_ratio=4.0,
    local_conv_size=3,
)


def tinyvit_config(state_dict: dict[str, Any], prefix: str, name: str) -> TinyViTConfig:
    """Read TinyViT's configuration from the shapes under `prefix` ("image_encoder.").

    layers.0 is a stack of MBConv blocks (conv1: expand x dim); layers 1.. are attention blocks:
    attn.attention_biases is heads x window^2, mlp.fc1 is (ratio * dim) x dim, local_conv.c is
    dim x 1 x k x k. Layer 0 has no attention: its heads and window are unused (the official 2, 7).
    """
    try:
        layer_ids = sorted(
            {
                int(m.group(1))
                for k in state_dict
                if (m := re.match(rf"{re.escape(prefix)}layers\.(\d+)\.", k))
            }
        )
        if not layer_ids or layer_ids != list(range(len(layer_ids))) or len(layer_ids) < 2:
            raise KeyError("layers")
        embed_dims, depths, heads, windows = [], [], [], []
        mlp_ratio = local_conv = None
        for i in layer_ids:
            blocks = {
                int(m.group(1))
                for k in state_dict
                if (m := re.match(rf"{re.escape(prefix)}layers\.{i}\.blocks\.(\d+)\.", k))
            }
            depths.append(len(blocks))
            p = f"{prefix}layers.{i}.blocks.0."
            if i == 0:
                conv1 = state_dict[p + "conv1.c.weight"]
                embed_dims.append(int(conv1.shape[1]))
                expand = int(conv1.shape[0]) / int(conv1.shape[1])
                heads.append(VIT_T.num_heads[0])
                windows.append(VIT_T.window_sizes[0])
                continue
            biases = state_dict[p + "attn.attention_biases"]
            dim = int(state_dict[p + "attn.norm.weight"].shape[0])
            embed_dims.append(dim)
            heads.append(int(biases.shape[0]))
            window = round(int(biases.shape[1]) ** 0.5)
            if window * window != int(biases.shape[1]):
                raise ValueError("window")
            windows.append(window)
            mlp_ratio = int(state_dict[p + "mlp.fc1.weight"].shape[0]) / dim
            local_conv = int(state_dict[p + "local_conv.c.weight"].shape[-1])
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise UserError(
            f"{name} looks like a TinyViT checkpoint but its encoder has missing or odd-shaped "
            "weights."
        ) from exc
    return TinyViTConfig(
        embed_dims=tuple(embed_dims),
        depths=tuple(depths),
        num_heads=tuple(heads),
        window_sizes=tuple(windows),
        mlp_ratio=float(mlp_ratio),
        mbconv_expand_ratio=float(expand),
        local_conv_size=int(local_conv),
    )


def without_attention_caches(state_dict: dict[str, Any]) -> dict[str, Any]:
    """TinyViT's eval() registers `attn.ab` (biases gathered by index) as a persistent buffer, so
    a model saved in eval mode has them: drop them, they are recomputed from the biases."""
    return {k: v for k, v in state_dict.items() if not k.endswith(".attn.ab")}


# -- the family adapter interface (annotator.engines.families) ------------------------------


@dataclass(frozen=True)
class MobileSamArchitecture:
    model_type: str  # "mobilesam_vit_t" | "custom"
    encoder: TinyViTConfig

    def describe(self) -> str:
        return f"{self.model_type}: {self.encoder.describe()}"

    def key(self) -> tuple:
        return ("mobilesam", self.encoder)


def detect(state_dict: dict[str, Any], name: str):
    from annotator.engines.families import ModelInfo

    if "mask_decoder.iou_token.weight" not in state_dict:
        raise UserError(f"{name} has a TinyViT image encoder but no SAM mask decoder weights.")
    config = tinyvit_config(state_dict, "image_encoder.", name)
    model_type = "mobilesam_vit_t" if config == VIT_T else "custom"
    return ModelInfo("mobilesam", model_type, MobileSamArchitecture(model_type, config))


def build_model(architecture: MobileSamArchitecture):
    """A mobile_sam `Sam` as mobile_sam/build_sam.py's build_sam_vit_t builds it, without random
    initialisation (TinyViT's constructor reads values back, so not on the meta device), in train
    mode until the weights are in: TinyViT's eval() gathers its `ab` caches from the biases."""
    # mobile_sam's Sam, PromptEncoder, MaskDecoder and TwoWayTransformer are segment_anything's
    # (the files differ in comments only): built from segment_anything, the model takes SAM 1's
    # exported ONNX decoder, regrouped two-way transformer and segment everything as they are.
    from mobile_sam.modeling import TinyViT
    from segment_anything import modeling

    from annotator.engines.families import skip_init
    from annotator.engines.sam import assemble_sam

    with skip_init():
        sam = assemble_sam(modeling, TinyViT(**architecture.encoder.kwargs()))
    return sam.train(True)


def load(state_dict, info, path: Path, *, device: str, encoder: str, decoder: str):
    import torch

    from annotator.engines import families
    from annotator.engines.sam import SamEngine

    sam = build_model(info.config)
    families.load_into(sam, without_attention_caches(state_dict), path.name, "MobileSAM")
    sam = sam.float().eval().requires_grad_(False).to(torch.device(device))
    engine = SamEngine(
        sam,
        architecture=info.config,
        device=device,
        fingerprint=families.fingerprint(path, info, PREPROCESS_VERSION),
        # SAM 1's exact fast encoder rewrites ViT blocks; TinyViT runs as mobile_sam builds it.
        encoder="stock",
        decoder=decoder,
    )
    engine.name = f"MobileSAM {info.model_type} ({device})"
    engine.family = "mobilesam"
    return engine
