"""Small SAM models with random weights, built from segment_anything's own modules.

Random weights make masks meaningless, so tests compare our engine with segment_anything's
`SamPredictor` on the same model and prompts. The architecture is a scaled-down ViT SAM (same
image size, patch size, window size and decoder as the official models, a narrower and shallower
encoder) so the architecture detection sees a configuration that is not one of vit_b/l/h.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

TINY_CONFIG = {
    "embed_dim": 64,
    "depth": 4,
    "num_heads": 2,
    "global_attn_indexes": (1, 3),
}

# Segment-everything settings scaled to random weights: their predicted IoUs are about +-0.1 and
# their masks span the image, so segment_anything's defaults would keep nothing, and identical
# whole-image boxes would collapse to one mask under NMS. Both filters still drop masks.
PERMISSIVE_AUTO_SETTINGS = {
    "points_per_side": 4,
    "points_per_batch": 8,
    "pred_iou_thresh": 0.001,
    "stability_score_thresh": 0.5,
    "stability_score_offset": 0.01,
    "box_nms_thresh": 1.0,
    "crop_nms_thresh": 1.0,
}

VIT_B_CONFIG = {
    "embed_dim": 768,
    "depth": 12,
    "num_heads": 12,
    "global_attn_indexes": (2, 5, 8, 11),
}


def build_sam(embed_dim: int, depth: int, num_heads: int, global_attn_indexes, seed: int = 0):
    """A `segment_anything.modeling.Sam` with the official layout and random weights (eval mode)."""
    import torch
    from segment_anything.modeling import (
        ImageEncoderViT,
        MaskDecoder,
        PromptEncoder,
        Sam,
        TwoWayTransformer,
    )

    torch.manual_seed(seed)
    prompt_embed_dim, image_size, patch = 256, 1024, 16
    sam = Sam(
        image_encoder=ImageEncoderViT(
            depth=depth,
            embed_dim=embed_dim,
            img_size=image_size,
            mlp_ratio=4,
            norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
            num_heads=num_heads,
            patch_size=patch,
            qkv_bias=True,
            use_rel_pos=True,
            global_attn_indexes=tuple(global_attn_indexes),
            window_size=14,
            out_chans=prompt_embed_dim,
        ),
        prompt_encoder=PromptEncoder(
            embed_dim=prompt_embed_dim,
            image_embedding_size=(image_size // patch, image_size // patch),
            input_image_size=(image_size, image_size),
            mask_in_chans=16,
        ),
        mask_decoder=MaskDecoder(
            num_multimask_outputs=3,
            transformer=TwoWayTransformer(
                depth=2, embedding_dim=prompt_embed_dim, mlp_dim=2048, num_heads=8
            ),
            transformer_dim=prompt_embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
        ),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    # Parameters that segment_anything initialises to zero (positional embedding, relative
    # position tables) get random values too, so a bug in how they are used cannot hide.
    with torch.no_grad():
        for param in sam.parameters():
            if not param.any():
                param.normal_(0.0, 0.1)
    return sam.eval()


def save_checkpoint(sam, path: Path) -> Path:
    """Save like the official checkpoints: a plain state dict written by torch.save."""
    import torch

    path = Path(path)
    torch.save(sam.state_dict(), path)
    return path


def load_reference(path: Path, config: dict):
    """Load a checkpoint into a stock-built Sam of a known config, without any Annotator code."""
    import torch

    sam = build_sam(**config)
    sam.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return sam.eval()
