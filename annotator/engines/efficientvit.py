"""EfficientViT-SAM (efficientsam: an EfficientViT backbone + neck as the image encoder, SAM 1's
prompt encoder and mask decoder), equal to `efficientsam.models.efficientvit.sam.
EfficientViTSamPredictor` on a model from `create_efficientvit_sam_model(name, pretrained=False)`.

Detection: `image_encoder.backbone.*` and `image_encoder.neck.*` keys; the backbone's and neck's
configuration is read from tensor names and shapes (`read_config`), and named l0, l1, l2, xl0 or
xl1 when it is one of the registered models' (each read the same way from a meta-device build).
The encoder's input size is in no shape: 512 px for 5-stage (L) backbones, 1024 for 6-stage (XL)
ones, as efficientsam registers them. Checkpoints are plain state dicts or {"state_dict": ...}.

efficientsam's prompt encoder, mask decoder and two-way transformer are copies of segment_anything's
(the files differ in comments only), so the model is built as a segment_anything `Sam` holding
efficientsam's image encoder: SAM 1's engine decodes it (the exported ONNX decoder on the CPU,
within float rounding), and only the image preprocessing is EfficientViT's own: resize the long
side to 512 (L) or 1024 (XL) px, scale to [0, 1], normalise, pad to a square. Prompts and masks use
the 1024 px frame as SAM's do. create_efficientvit_sam_model sets every norm's eps to 1e-6 (the
decoder's LayerNorms too), and so does this loader.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from annotator.engines.base import Embedding
from annotator.engines.sam import SamEngine
from annotator.errors import UserError

PREPROCESS_VERSION = 1
VARIANTS = ("l0", "l1", "l2", "xl0", "xl1")
_NORM_EPS = 1e-6  # efficientsam.sam_model_zoo.REGISTERED_EFFICIENTVIT_SAM_MODEL


@dataclass(frozen=True)
class EfficientVitConfig:
    """EfficientViTLargeBackbone's and SamNeck's arguments, as read from a state dict."""

    width_list: tuple[int, ...]
    depth_list: tuple[int, ...]
    block_list: tuple[str, ...]
    expand_list: tuple[float, ...]
    fewer_norm_list: tuple[bool, ...]
    qkv_dim: int
    neck_in_channels: tuple[int, ...]
    neck_head_width: int
    neck_head_depth: int
    neck_expand_ratio: float
    neck_middle_op: str

    @property
    def encoder_size(self) -> int:
        """Input side of the image encoder: efficientsam trains its 5-stage (L) models at 512 px
        and its 6-stage (XL) ones at 1024 px; no shape says it."""
        return 1024 if len(self.width_list) >= 6 else 512

    def fid_list(self) -> list[str]:
        """The stages the neck reads, deepest first (as every registered model)."""
        last = len(self.width_list) - 1
        return [f"stage{last - i}" for i in range(len(self.neck_in_channels))]


@dataclass(frozen=True)
class EfficientVitArchitecture:
    model_type: str  # "efficientvit_sam_l0" ... | "custom"
    variant: str  # "l0" ... | "custom"
    config: EfficientVitConfig

    @property
    def encoder_size(self) -> int:
        return self.config.encoder_size

    def describe(self) -> str:
        c = self.config
        widths = "/".join(map(str, c.width_list))
        depths = "/".join(map(str, c.depth_list))
        return (
            f"{self.model_type}: EfficientViT {widths} wide, {depths} blocks, "
            f"{self.encoder_size}px encoder input"
        )

    def key(self) -> tuple:
        return ("efficientvit", self.config)


def _factory(variant: str):
    from efficientsam.models.efficientvit import sam as evsam

    return getattr(evsam, f"efficientvit_sam_{variant}")


def _block_kind(state_dict, prefix: str) -> str:
    """'res' | 'fmb' | 'mb' | 'att' | 'att@3' for the block whose keys start with prefix."""
    if prefix + "context_module.main.qkv.conv.weight" in state_dict:
        kernel = int(state_dict[prefix + "context_module.main.aggreg.0.0.weight"].shape[-1])
        return "att@3" if kernel == 3 else "att"
    for kind, key in (("res", "main.conv1.conv.weight"), ("fmb", "main.spatial_conv.conv.weight"),
                      ("mb", "main.inverted_conv.conv.weight")):  # fmt: skip
        if prefix + key in state_dict:
            return kind
    raise KeyError(prefix)


def _expand_and_fewer_norm(state_dict, prefix: str, kind: str) -> tuple[float, bool]:
    first = {"res": "conv1", "fmb": "spatial_conv", "mb": "inverted_conv"}[kind]
    weight = state_dict[f"{prefix}main.{first}.conv.weight"]
    expand = 1.0 if kind == "res" else int(weight.shape[0]) / int(weight.shape[1])
    return expand, f"{prefix}main.{first}.conv.bias" in state_dict


def read_config(state_dict: dict[str, Any], name: str) -> EfficientVitConfig:
    """Read an EfficientViT-SAM image encoder's configuration from tensor names and shapes.

    backbone.stages.S.op_list: stage 0 is a stem conv then `depth` blocks; later stages are a
    strided downsampling block (MBConv, or FusedMBConv in fmb stages, expand x4) then `depth`
    blocks. A block's kind shows in its keys (conv1: ResBlock; spatial_conv: FusedMBConv;
    inverted_conv: MBConv; context_module: EfficientViT attention, aggregation kernel 5 or 3), its
    expansion in its first conv's shape, "fewer norm" in that conv having a bias.
    """
    import re

    prefix = "image_encoder.backbone.stages."
    try:
        stage_ids = sorted(
            {
                int(m.group(1))
                for k in state_dict
                if (m := re.match(r"image_encoder\.backbone\.stages\.(\d+)\.", k))
            }
        )
        if not stage_ids or stage_ids != list(range(len(stage_ids))):
            raise KeyError("stages")
        widths, depths, blocks, expands, fewer = [], [], [], [], []
        qkv_dim = 32
        for s in stage_ids:
            ops = sorted(
                {int(m.group(1)) for k in state_dict
                 if (m := re.match(rf"image_encoder\.backbone\.stages\.{s}\.op_list\.(\d+)\.", k))}
            )  # fmt: skip
            depths.append(len(ops) - 1)
            p = f"{prefix}{s}.op_list."
            if s == 0:
                widths.append(int(state_dict[p + "0.conv.weight"].shape[0]))
            else:
                widths.append(int(state_dict[p + "0.main.point_conv.conv.weight"].shape[0]))
            if len(ops) > 1:
                kind = _block_kind(state_dict, p + "1.")
                if kind.startswith("att"):
                    local = f"{p}1.local_module."
                    expand, few = _expand_and_fewer_norm(state_dict, local, "mb")
                    qkv_dim = int(
                        state_dict[p + "1.context_module.main.aggreg.0.1.weight"].shape[1]
                    )
                    _, few = _expand_and_fewer_norm(state_dict, p + "0.", "mb")
                else:
                    expand, few = _expand_and_fewer_norm(state_dict, p + "1.", kind)
            elif s == 0:  # the stem alone: the block arguments are unused
                kind, expand, few = "res", 1.0, False
            else:  # only the downsampling block: its kind and expansion (x4) tell
                kind = _block_kind(state_dict, p + "0.")
                expand, few = _expand_and_fewer_norm(state_dict, p + "0.", kind)
                expand /= 4
            blocks.append(kind)
            expands.append(expand)
            fewer.append(few)
        neck = "image_encoder.neck."
        inputs = sorted(
            {
                int(m.group(1))
                for k in state_dict
                if (m := re.match(r"image_encoder\.neck\.input_ops\.(\d+)\.", k))
            }
        )
        in_channels = tuple(
            int(state_dict[f"{neck}input_ops.{i}.op_list.0.conv.weight"].shape[1]) for i in inputs
        )
        head_width = int(state_dict[f"{neck}input_ops.0.op_list.0.conv.weight"].shape[0])
        middle = sorted(
            {
                int(m.group(1))
                for k in state_dict
                if (m := re.match(r"image_encoder\.neck\.middle\.op_list\.(\d+)\.", k))
            }
        )
        middle_op = _block_kind(state_dict, f"{neck}middle.op_list.0.")
        neck_expand, _ = _expand_and_fewer_norm(state_dict, f"{neck}middle.op_list.0.", middle_op)
    except (KeyError, AttributeError, IndexError, ValueError, TypeError) as exc:
        raise UserError(
            f"{name} looks like an EfficientViT-SAM checkpoint but its image encoder has missing "
            "or odd-shaped weights."
        ) from exc
    return EfficientVitConfig(
        width_list=tuple(widths),
        depth_list=tuple(depths),
        block_list=tuple(blocks),
        expand_list=tuple(expands),
        fewer_norm_list=tuple(fewer),
        qkv_dim=qkv_dim,
        neck_in_channels=in_channels,
        neck_head_width=head_width,
        neck_head_depth=len(middle),
        neck_expand_ratio=neck_expand,
        neck_middle_op=middle_op,
    )


_OFFICIAL: dict[str, EfficientVitConfig] = {}


def official_configs() -> dict[str, EfficientVitConfig]:
    """variant -> its configuration, read the same way from each registered model built on the
    meta device (no memory, milliseconds)."""
    import torch

    if not _OFFICIAL:
        for variant in VARIANTS:
            with torch.device("meta"):
                model = _factory(variant)()
            shapes = {f"{k}": v for k, v in model.state_dict().items()}
            _OFFICIAL[variant] = read_config(shapes, variant)
    return _OFFICIAL


def detect(state_dict: dict[str, Any], name: str):
    from annotator.engines.families import ModelInfo, require_package

    config = read_config(state_dict, name)
    require_package("efficientvit")
    variant = next((v for v, c in official_configs().items() if c == config), "custom")
    model_type = f"efficientvit_sam_{variant}" if variant != "custom" else "custom"
    arch = EfficientVitArchitecture(model_type, variant, config)
    return ModelInfo("efficientvit", model_type, arch)


def build_image_encoder(config: EfficientVitConfig):
    """efficientsam's EfficientViTSamImageEncoder of `config` (on the current default device)."""
    from efficientsam.models.efficientvit.backbone import EfficientViTLargeBackbone
    from efficientsam.models.efficientvit.sam import EfficientViTSamImageEncoder, SamNeck

    backbone = EfficientViTLargeBackbone(
        width_list=list(config.width_list),
        depth_list=list(config.depth_list),
        block_list=list(config.block_list),
        expand_list=list(config.expand_list),
        fewer_norm_list=list(config.fewer_norm_list),
        qkv_dim=config.qkv_dim,
    )
    neck = SamNeck(
        fid_list=config.fid_list(),
        in_channel_list=list(config.neck_in_channels),
        head_width=config.neck_head_width,
        head_depth=config.neck_head_depth,
        expand_ratio=config.neck_expand_ratio,
        middle_op=config.neck_middle_op,
    )
    return EfficientViTSamImageEncoder(backbone, neck)


def build_model(architecture: EfficientVitArchitecture):
    """A segment_anything `Sam` with efficientsam's image encoder of the configuration, on the
    meta device, norms' eps set as create_efficientvit_sam_model sets them."""
    import torch
    from efficientsam.models.nn.norm import set_norm_eps
    from segment_anything import modeling

    from annotator.engines.sam import assemble_sam

    with torch.device("meta"):
        sam = assemble_sam(modeling, build_image_encoder(architecture.config))
    set_norm_eps(sam, _NORM_EPS)
    # Prompts and masks live in the 1024 px frame (EfficientViTSam.image_size[0]).
    sam.image_encoder.img_size = 1024
    return sam.eval()


def load(state_dict, info, path: Path, *, device: str, encoder: str, decoder: str):
    import torch

    from annotator.engines import families
    from annotator.engines.sam import _restore_constant_buffers

    sam = build_model(info.config)
    families.load_into(sam, state_dict, path.name, "EfficientViT-SAM")
    _restore_constant_buffers(sam)
    families.check_no_meta(sam, path.name)
    sam = sam.float().eval().requires_grad_(False).to(torch.device(device))
    return EfficientVitEngine(
        sam,
        info,
        device=device,
        fingerprint=families.fingerprint(path, info, PREPROCESS_VERSION),
        decoder=decoder,
    )


class EfficientVitEngine(SamEngine):
    """SAM 1's engine with EfficientViT's image preprocessing and encoder."""

    family = "efficientvit"

    def __init__(self, sam, info, *, device: str, fingerprint: str, decoder: str) -> None:
        import torchvision.transforms as transforms
        from efficientsam.models.efficientvit.sam import SamPad, SamResize

        super().__init__(
            sam,
            architecture=info.config,
            device=device,
            fingerprint=fingerprint,
            encoder="stock",
            decoder=decoder,
        )
        self.info = info
        variant = info.config.variant
        self.name = (
            f"EfficientViT-SAM {variant.upper() if variant != 'custom' else variant} ({device})"
        )
        size = info.config.encoder_size
        # EfficientViTSam.transform, as the predictor applies it.
        self.encoder_transform = transforms.Compose(
            [
                SamResize(size),
                transforms.ToTensor(),
                transforms.Normalize(
                    mean=[123.675 / 255, 116.28 / 255, 103.53 / 255],
                    std=[58.395 / 255, 57.12 / 255, 57.375 / 255],
                ),
                SamPad(size),
            ]
        )

    def encode(self, image: np.ndarray) -> Embedding:
        """HxWx3 uint8 RGB -> features 1x256x64x64 float32, as EfficientViTSamPredictor.set_image."""
        import torch

        from annotator.engines.sam import _check_image

        image = _check_image(image)
        if not image.flags.writeable:  # torchvision's ToTensor warns on read-only arrays
            image = image.copy()
        original = (int(image.shape[0]), int(image.shape[1]))
        input_size = self.transform.get_preprocess_shape(*original, self.transform.target_length)
        with self._lock, torch.inference_mode():
            tensor = self.encoder_transform(image).unsqueeze(dim=0).to(self.device)
            features = self.image_encoder(tensor).float().cpu().numpy()
        return Embedding(
            original_size=original,
            input_size=(int(input_size[0]), int(input_size[1])),
            features=np.ascontiguousarray(features, dtype=np.float32),
            fingerprint=self.fingerprint,
        )

    def describe(self) -> str:
        return f"{self.name}: {self.info.describe()}; encoder stock, decoder {self.decoder_kind}"
