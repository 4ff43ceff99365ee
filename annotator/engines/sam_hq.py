"""SAM-HQ (segment_anything_hq: SAM 1's ViT or MobileSAM's TinyViT encoder, SAM's prompt encoder,
and the HQ mask decoder, which also reads an early encoder feature map), equal to
`segment_anything_hq.SamPredictor` with its defaults (hq_token_only=False) on the same weights.

Like the reference, multimask output returns one mask (the best of SAM's three plus the HQ mask),
so Tab has a single candidate. The embedding holds both feature maps in one array, 1 x (256 + D)
x 64 x 64 float32 (the neck output, then the early ViT feature channels-first; D = the encoder's
width, or TinyViT's third stage width), so the disk cache stores it like SAM 1's.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from annotator.engines.base import Embedding, Prediction, Prompts
from annotator.errors import UserError

PREPROCESS_VERSION = 1


@dataclass(frozen=True)
class HqArchitecture:
    model_type: str  # "hq_vit_b" | "hq_vit_l" | "hq_vit_h" | "hq_vit_tiny" | "custom"
    encoder: Any  # sam.SamArchitecture (ViT) or mobilesam.TinyViTConfig
    vit_dim: int  # channels of the early feature the HQ decoder fuses

    @property
    def tiny(self) -> bool:
        from annotator.engines.mobilesam import TinyViTConfig

        return isinstance(self.encoder, TinyViTConfig)

    def describe(self) -> str:
        inner = self.encoder.describe()
        inner = inner.split(": ", 1)[1] if ": " in inner else inner  # drop SAM 1's type prefix
        return f"{self.model_type}: {inner}, HQ decoder on {self.vit_dim}-channel early features"

    def key(self) -> tuple:
        return ("hq", self.encoder.key() if not self.tiny else self.encoder, self.vit_dim)


def detect(state_dict: dict[str, Any], name: str):
    from annotator.engines import mobilesam, sam
    from annotator.engines.families import ModelInfo

    try:
        vit_dim = int(state_dict["mask_decoder.compress_vit_feat.0.weight"].shape[0])
    except (KeyError, AttributeError, IndexError) as exc:
        raise UserError(f"{name} has SAM-HQ's output token but not its feature fusion.") from exc
    if "image_encoder.patch_embed.seq.0.c.weight" in state_dict:
        encoder = mobilesam.tinyvit_config(state_dict, "image_encoder.", name)
        official = "hq_vit_tiny" if encoder == mobilesam.VIT_T and vit_dim == 160 else "custom"
    else:
        encoder = sam.architecture_from_state_dict(state_dict, name)
        official = f"hq_{encoder.model_type}" if encoder.model_type != "custom" else "custom"
    return ModelInfo("hq", official, HqArchitecture(official, encoder, vit_dim))


def build_model(architecture: HqArchitecture):
    """A segment_anything_hq `Sam` as its build_sam.py builds it, without random initialisation."""
    from segment_anything_hq import modeling

    from annotator.engines.families import skip_init
    from annotator.engines.sam import assemble_sam, vit_image_encoder

    a = architecture.encoder
    with skip_init():
        if architecture.tiny:
            image_encoder = modeling.TinyViT(**a.kwargs())
        else:
            image_encoder = vit_image_encoder(modeling, a)
        sam = assemble_sam(
            modeling,
            image_encoder,
            decoder_class=modeling.MaskDecoderHQ,
            vit_dim=architecture.vit_dim,
        )
    return sam.train(True)  # eval() after the weights are in (TinyViT caches from its biases)


def load(state_dict, info, path: Path, *, device: str, encoder: str, decoder: str):
    import torch

    from annotator.engines import families
    from annotator.engines.mobilesam import without_attention_caches

    sam = build_model(info.config)
    families.load_into(sam, without_attention_caches(state_dict), path.name, "SAM-HQ")
    sam = sam.float().eval().requires_grad_(False).to(torch.device(device))
    return HqEngine(
        sam,
        info,
        device=device,
        fingerprint=families.fingerprint(path, info, PREPROCESS_VERSION),
        encoder=encoder,
    )


class HqEngine:
    """A loaded SAM-HQ: the `Segmenter` protocol, step by step as segment_anything_hq's
    SamPredictor.set_image / predict (hq_token_only=False) compute it."""

    family = "hq"
    # Segment everything: segment_anything_hq's own SamAutomaticMaskGenerator on the engine's
    # embedding (annotator.engines.automatic).
    supports_automatic = True
    decoder_kind = "torch"

    def __init__(self, sam, info, *, device: str, fingerprint: str, encoder: str = "fast") -> None:
        from segment_anything_hq.utils.transforms import ResizeLongestSide

        self.model = sam
        self.info = info
        self.architecture = info.config
        self.device = device
        self.fingerprint = self.weights_fingerprint = fingerprint
        # HQ's ViT is SAM 1's (its blocks are segment_anything's code), so SAM 1's exact fast
        # encoder (chunked SDPA attention, measured Linear backend) applies to it in place; the
        # embedding is the same to float rounding, so it shares the cache with stock. bf16 and
        # TinyViT run as built.
        self.encoder_kind = "stock"
        self.linear_backend = "torch"
        if encoder == "fast" and not info.config.tiny:
            from annotator.engines import fast_encoder

            fast_encoder.make_fast_encoder(sam.image_encoder, device=device)
            self.linear_backend = fast_encoder.linear_backend_of(sam.image_encoder)
            self.encoder_kind = "fast"
        self.transform = ResizeLongestSide(sam.image_encoder.img_size)
        self.name = f"SAM-HQ {info.model_type} ({device})"
        self._lock = threading.Lock()
        self._hq_features = None  # (embedding, its fused HQ features): the last image's

    def encode(self, image: np.ndarray) -> Embedding:
        """HxWx3 uint8 RGB -> features 1 x (256 + D) x 64 x 64 float32 (see the module doc)."""
        import torch

        from annotator.engines.sam import _check_image

        image = _check_image(image)
        input_image = self.transform.apply_image(image)
        with self._lock, torch.inference_mode():
            tensor = torch.as_tensor(input_image, device=self.device)
            tensor = tensor.permute(2, 0, 1).contiguous()[None, :, :, :]
            features, interm = self.model.image_encoder(self.model.preprocess(tensor))
            early = interm[0].permute(0, 3, 1, 2)  # as MaskDecoderHQ reads it
            packed = torch.cat([features, early], dim=1).float().cpu().numpy()
        return Embedding(
            original_size=(int(image.shape[0]), int(image.shape[1])),
            input_size=(int(input_image.shape[0]), int(input_image.shape[1])),
            features=np.ascontiguousarray(packed, dtype=np.float32),
            fingerprint=self.fingerprint,
        )

    def decode(self, embedding: Embedding, prompts: Prompts) -> Prediction:
        """masks: CxHxW bool (C = 1: HQ's multimask answer is one mask too); scores: C float32;
        low_res_logits: Cx256x256 float32."""
        import torch

        if embedding.fingerprint != self.fingerprint:
            raise ValueError("This embedding was made by another model; encode the image again.")
        if prompts.is_empty():
            raise ValueError("decode needs at least one point or a box.")
        from annotator.engines.sam import prompt_tensors

        original_size = embedding.original_size
        coords, labels, box, mask_input = prompt_tensors(
            self.transform, prompts, original_size, self.device
        )
        model = self.model
        with self._lock, torch.inference_mode():
            features, (early,) = self.predictor_features(embedding)
            sparse, dense = model.prompt_encoder(
                points=(coords, labels) if coords is not None else None,
                boxes=box,
                masks=mask_input,
            )
            low_res, iou = self._decode_masks(
                embedding, features, early, sparse, dense, prompts.multimask
            )
            masks = model.postprocess_masks(low_res, embedding.input_size, original_size)
            masks = masks > model.mask_threshold
            return Prediction(
                masks=masks[0].cpu().numpy(),
                scores=iou[0].float().cpu().numpy(),
                low_res_logits=low_res[0].float().cpu().numpy(),
            )

    def predictor_features(self, embedding: Embedding):
        """The embedding as `SamPredictor.set_image` leaves it in the predictor: (features
        1x256x64x64, interm_features [1x64x64xD], the early feature MaskDecoderHQ fuses), on the
        engine's device."""
        import torch

        if embedding.fingerprint != self.fingerprint:
            raise ValueError("This embedding was made by another model; encode the image again.")
        packed = torch.as_tensor(np.asarray(embedding.features), device=self.device)
        features = packed[:, :256].contiguous()
        # B x 64 x 64 x D in the memory layout the encoder returns it in, so the fusion
        # convolutions take the same kernels: ViT's is a permuted NCHW tensor, TinyViT's a
        # view of its token sequence (NHWC contiguous).
        early = packed[:, 256:].permute(0, 2, 3, 1)
        if self.architecture.tiny:
            early = early.contiguous()
        return features, [early]

    def _decode_masks(self, embedding, features, early, sparse, dense, multimask: bool):
        """MaskDecoderHQ.forward(..., hq_token_only=False), with its image-only part (the fused
        HQ features: two upsampling stacks, the heaviest part of a click) computed once per
        embedding instead of at every click. Same operations on the same tensors: same values."""
        import torch

        decoder = self.model.mask_decoder
        cached = self._hq_features
        if cached is not None and cached[0] is embedding:
            hq_features = cached[1]
        else:
            vit_features = early.permute(0, 3, 1, 2)
            hq_features = decoder.embedding_encoder(features) + decoder.compress_vit_feat(
                vit_features
            )
            self._hq_features = (embedding, hq_features)
        masks, iou_pred = decoder.predict_masks(
            image_embeddings=features,
            image_pe=self.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            hq_features=hq_features,
        )
        tokens = decoder.num_mask_tokens
        if multimask:
            # SAM's best of its three masks, plus the HQ mask: one output.
            iou_pred, best = torch.max(iou_pred[:, 1 : tokens - 1], dim=1)
            iou_pred = iou_pred.unsqueeze(1)
            masks_sam = masks[:, 1 : tokens - 1][torch.arange(masks.size(0)), best].unsqueeze(1)
        else:
            iou_pred = iou_pred[:, 0:1]
            masks_sam = masks[:, 0:1]
        return masks_sam + masks[:, tokens - 1 : tokens], iou_pred

    def describe(self) -> str:
        return (
            f"{self.name}: {self.info.describe()}; encoder {self.encoder_kind}"
            f" (Linear {self.linear_backend}), decoder torch"
        )
