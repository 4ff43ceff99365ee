"""EfficientViT-SAM (efficientsam: an EfficientViT backbone + neck as the image encoder, SAM 1's
prompt encoder and mask decoder), equal to `efficientsam.models.efficientvit.sam.
EfficientViTSamPredictor` on a model from `create_efficientvit_sam_model(name, pretrained=False)`.

Detection: `image_encoder.backbone.*` and `image_encoder.neck.*` keys; the variant (l0, l1, l2,
xl0, xl1) is the registered model whose every tensor name and shape the checkpoint has (each
candidate is built on the meta device: no memory, milliseconds). Configurations other than the
registered five are not read yet. Checkpoints are plain state dicts or {"state_dict": ...}.

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
class EfficientVitArchitecture:
    model_type: str  # "efficientvit_sam_l0" ...
    variant: str  # "l0" ...
    encoder_size: int  # input side of the image encoder (512 for L, 1024 for XL)

    def describe(self) -> str:
        return f"{self.model_type}: EfficientViT {self.variant.upper()}, {self.encoder_size}px encoder input"

    def key(self) -> tuple:
        return ("efficientvit", self.variant, self.encoder_size)


def _factory(variant: str):
    from efficientsam.models.efficientvit import sam as evsam

    return getattr(evsam, f"efficientvit_sam_{variant}")


def _shapes(variant: str) -> dict[str, tuple]:
    import torch

    with torch.device("meta"):
        model = _factory(variant)()
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def detect(state_dict: dict[str, Any], name: str):
    from annotator.engines.families import ModelInfo, require_package

    require_package("efficientvit")
    found = {k: tuple(getattr(v, "shape", ())) for k, v in state_dict.items()}
    for variant in VARIANTS:
        if _shapes(variant) == found:
            size = 1024 if variant.startswith("xl") else 512
            arch = EfficientVitArchitecture(f"efficientvit_sam_{variant}", variant, size)
            return ModelInfo("efficientvit", arch.model_type, arch)
    raise UserError(
        f"{name} is an EfficientViT-SAM checkpoint of a configuration other than "
        f"{', '.join(VARIANTS)} ({len(found)} tensors), which is not read yet."
    )


def build_model(architecture: EfficientVitArchitecture):
    """A segment_anything `Sam` with efficientsam's image encoder of the variant, on the meta
    device, norms' eps set as create_efficientvit_sam_model sets them."""
    import torch
    from efficientsam.models.nn.norm import set_norm_eps
    from segment_anything.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    with torch.device("meta"):
        reference = _factory(architecture.variant)()
        sam = Sam(
            image_encoder=reference.image_encoder,
            prompt_encoder=PromptEncoder(
                embed_dim=256,
                image_embedding_size=(64, 64),
                input_image_size=(1024, 1024),
                mask_in_chans=16,
            ),
            mask_decoder=MaskDecoder(
                num_multimask_outputs=3,
                transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
                transformer_dim=256,
                iou_head_depth=3,
                iou_head_hidden_dim=256,
            ),
            pixel_mean=[123.675, 116.28, 103.53],
            pixel_std=[58.395, 57.12, 57.375],
        )
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
        self.name = f"EfficientViT-SAM {info.config.variant.upper()} ({device})"
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
            features = self.model.image_encoder(tensor).float().cpu().numpy()
        return Embedding(
            original_size=original,
            input_size=(int(input_size[0]), int(input_size[1])),
            features=np.ascontiguousarray(features, dtype=np.float32),
            fingerprint=self.fingerprint,
        )

    def describe(self) -> str:
        return f"{self.name}: {self.info.describe()}; encoder stock, decoder {self.decoder_kind}"
