"""Small random-weight models of the other SAM families, built with each family's own package and
saved the way its official checkpoints are saved.

Each builder returns (model, reference predictor class, how to save). The configurations are shrunk
so a CI machine builds and runs them in seconds, and are none of the official sizes, so detection
must read them from the shapes. Parameters initialised to zero get random values (as sam_factory
does) so a mistake in how they are used cannot hide.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


def _randomise_zeros(model, seed: int = 0):
    import torch

    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for param in model.parameters():
            if param.numel() and not param.any():
                param.copy_(torch.randn(param.shape, generator=gen) * 0.1)
    return model


# MobileSAM's TinyViT, shrunk: the last width must stay 320 (TinyViT's last PatchMerging keeps the
# 64x64 grid only for widths 320/448/576).
TINYVIT_SMALL = dict(
    embed_dims=[32, 48, 64, 320],
    depths=[1, 1, 2, 1],
    num_heads=[1, 2, 2, 4],
    window_sizes=[7, 7, 14, 7],
    mlp_ratio=2.0,
    mbconv_expand_ratio=4.0,
    local_conv_size=3,
)


def _tinyvit(module):
    return module.TinyViT(
        img_size=1024,
        in_chans=3,
        num_classes=1000,
        drop_rate=0.0,
        drop_path_rate=0.0,
        use_checkpoint=False,
        layer_lr_decay=0.8,
        **TINYVIT_SMALL,
    )


def build_mobilesam(seed: int = 0):
    import torch
    from mobile_sam.modeling import MaskDecoder, PromptEncoder, Sam, TwoWayTransformer, tiny_vit_sam

    torch.manual_seed(seed)
    sam = Sam(
        image_encoder=_tinyvit(tiny_vit_sam),
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
    return _randomise_zeros(sam, seed).eval()


def mobilesam_predictor(model):
    from mobile_sam import SamPredictor

    return SamPredictor(model)


def save_plain(model, path: Path) -> Path:
    """SAM 1, MobileSAM, SAM-HQ, EfficientViT-SAM: a plain state dict."""
    import torch

    torch.save(model.state_dict(), path)
    return path


def save_wrapped(key: str):
    def save(model, path: Path) -> Path:
        import torch

        torch.save({key: model.state_dict()}, path)
        return path

    return save


def _hq_decoder(vit_dim: int):
    from segment_anything_hq.modeling import MaskDecoderHQ, TwoWayTransformer

    return MaskDecoderHQ(
        num_multimask_outputs=3,
        transformer=TwoWayTransformer(depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8),
        transformer_dim=256,
        iou_head_depth=3,
        iou_head_hidden_dim=256,
        vit_dim=vit_dim,
    )


def _hq_sam(image_encoder, vit_dim: int):
    from segment_anything_hq.modeling import PromptEncoder, Sam

    return Sam(
        image_encoder=image_encoder,
        prompt_encoder=PromptEncoder(
            embed_dim=256,
            image_embedding_size=(64, 64),
            input_image_size=(1024, 1024),
            mask_in_chans=16,
        ),
        mask_decoder=_hq_decoder(vit_dim),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )


def build_hq_vit(seed: int = 0):
    """SAM-HQ with a shrunk ViT encoder (sam_factory's TINY_CONFIG)."""
    from functools import partial

    import torch
    from sam_factory import TINY_CONFIG
    from segment_anything_hq.modeling import ImageEncoderViT

    torch.manual_seed(seed)
    c = TINY_CONFIG
    encoder = ImageEncoderViT(
        depth=c["depth"],
        embed_dim=c["embed_dim"],
        img_size=1024,
        mlp_ratio=4,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=c["num_heads"],
        patch_size=16,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=tuple(c["global_attn_indexes"]),
        window_size=14,
        out_chans=256,
    )
    return _randomise_zeros(_hq_sam(encoder, c["embed_dim"]), seed).eval()


def build_hq_tiny(seed: int = 0):
    """SAM-HQ light (vit_tiny), shrunk TinyViT: the fused feature is the third stage's."""
    import torch
    from segment_anything_hq.modeling import tiny_vit_sam

    torch.manual_seed(seed)
    encoder = _tinyvit(tiny_vit_sam)
    return _randomise_zeros(_hq_sam(encoder, TINYVIT_SMALL["embed_dims"][2]), seed).eval()


def hq_predictor(model):
    from segment_anything_hq import SamPredictor

    return SamPredictor(model)


# SAM 2.1 with a shrunk Hiera: 32 wide, stages 1/1/2/1 (global attention in block 3, the last of
# the third stage, one head): what the adapter reads any non-official Hiera as.
SAM2_SMALL_OVERRIDES = [
    "++model.image_encoder.trunk.embed_dim=32",
    "++model.image_encoder.trunk.num_heads=1",
    "++model.image_encoder.trunk.stages=[1,1,2,1]",
    "++model.image_encoder.trunk.global_att_blocks=[3]",
    "++model.image_encoder.trunk.window_pos_embed_bkg_spatial_size=[7,7]",
    "++model.image_encoder.trunk.window_spec=[8,4,14,7]",
    "++model.image_encoder.neck.backbone_channel_list=[256,128,64,32]",
]


def build_sam2_small(seed: int = 0, version: str = "sam2.1"):
    """Through sam2's own builder (build_sam2, its default post-processing), no weights."""
    import torch
    from sam2.build_sam import build_sam2

    torch.manual_seed(seed)
    model = build_sam2(
        f"configs/{version}/{version}_hiera_t.yaml",
        ckpt_path=None,
        device="cpu",
        hydra_overrides_extra=list(SAM2_SMALL_OVERRIDES),
    )
    return _randomise_zeros(model, seed).eval()


# The video parts shrunk too, as far as the shapes show them (the app's loader reads both): one
# memory-attention layer, two memories.
SAM2_VIDEO_MEMORY_OVERRIDES = [
    "++model.memory_attention.num_layers=1",
    "++model.num_maskmem=2",
]


def build_sam2_video_small(seed: int = 0, extra: tuple[str, ...] = ()):
    """The stock SAM2VideoPredictor (build_sam2_video_predictor, its default post-processing) of
    the shrunk SAM 2.1 with a shrunk memory; `extra`: more hydra overrides."""
    import torch
    from sam2.build_sam import build_sam2_video_predictor

    torch.manual_seed(seed)
    model = build_sam2_video_predictor(
        "configs/sam2.1/sam2.1_hiera_t.yaml",
        ckpt_path=None,
        device="cpu",
        hydra_overrides_extra=[*SAM2_SMALL_OVERRIDES, *SAM2_VIDEO_MEMORY_OVERRIDES, *extra],
    )
    return _randomise_zeros(model, seed).eval()


def write_sequence_frames(folder: Path, count: int = 8, size=(72, 96)) -> list[Path]:
    """`count` JPEG frames 00000.jpg... (names sam2's frame loader accepts) of two shapes moving
    over noise."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    height, width = size
    paths = []
    for i in range(count):
        frame = (rng.random((height, width, 3)) * 60).astype(np.uint8)
        frame[18:48, 8 + 3 * i : 36 + 3 * i] = (220, 60, 40)
        frame[50:66, 70 - 2 * i : 88 - 2 * i] = (40, 200, 90)
        path = folder / f"{i:05d}.jpg"
        Image.fromarray(frame).save(path, quality=95)
        paths.append(path)
    return paths


def sam2_predictor(model):
    from sam2.sam2_image_predictor import SAM2ImagePredictor

    return SAM2ImagePredictor(model)


def build_efficientvit_small(seed: int = 0):
    """EfficientViT-SAM with a shrunk L-type backbone (widths 16..128, one block per stage, the
    default block kinds) and neck, from efficientsam's own classes, norms' eps 1e-6 as
    create_efficientvit_sam_model sets them for its registered models."""
    import torch
    from efficientsam.models.efficientvit.backbone import EfficientViTLargeBackbone
    from efficientsam.models.efficientvit.sam import (
        EfficientViTSamImageEncoder,
        SamNeck,
        build_efficientvit_sam,
    )
    from efficientsam.models.nn.norm import set_norm_eps

    torch.manual_seed(seed)
    backbone = EfficientViTLargeBackbone(
        width_list=[16, 32, 64, 96, 128], depth_list=[1, 1, 1, 1, 1]
    )
    neck = SamNeck(
        fid_list=["stage4", "stage3", "stage2"],
        in_channel_list=[128, 96, 64],
        head_width=64,
        head_depth=1,
        expand_ratio=1,
        middle_op="fmb",
    )
    model = build_efficientvit_sam(EfficientViTSamImageEncoder(backbone, neck), 512)
    set_norm_eps(model, 1e-6)
    return _randomise_zeros(model, seed).eval()


def efficientvit_predictor(model):
    from efficientsam.models.efficientvit.sam import EfficientViTSamPredictor

    return EfficientViTSamPredictor(model)


def mobilesam_generator(model, **settings):
    from mobile_sam import SamAutomaticMaskGenerator

    return SamAutomaticMaskGenerator(model, **settings)


def sam2_generator(model, **settings):
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    return SAM2AutomaticMaskGenerator(model, **settings)


def hq_generator(model, **settings):
    from segment_anything_hq import SamAutomaticMaskGenerator

    return SamAutomaticMaskGenerator(model, **settings)


def efficientvit_generator(model, **settings):
    from efficientsam.models.efficientvit.sam import EfficientViTSamAutomaticMaskGenerator

    return EfficientViTSamAutomaticMaskGenerator(model, **settings)


@dataclass(frozen=True)
class FamilySpec:
    package: str  # the reference package (skips when missing)
    build: Callable  # () -> model
    predictor: Callable  # model -> reference predictor
    save: Callable  # (model, path) -> path, as the official files are saved
    family: str  # what detection must say
    filename: str
    fast_decoder: bool = False  # the family can take the exported ONNX decoder
    fast_encoder: bool = False  # SAM 1's exact fast ViT encoder applies (the default path)
    model_type: str = "custom"  # the shrunk configurations are none of the official ones
    generator: Callable | None = None  # (model, **settings) -> the family's segment-everything
    # changes to sam_factory.PERMISSIVE_AUTO_SETTINGS so that this random model's masks pass
    auto_settings: tuple = ()
    # generate_proposals runs the generator's own batch code (not SAM 1's leaner loop): the
    # same masks in the same order, compared exactly
    auto_exact: bool = False


SPECS = {
    "mobilesam": FamilySpec(
        "mobile_sam", build_mobilesam, mobilesam_predictor, save_plain, "mobilesam",
        "mobile_sam.pt", fast_decoder=True, generator=mobilesam_generator,
    ),
    "hq_vit": FamilySpec(
        "segment_anything_hq", build_hq_vit, hq_predictor, save_plain, "hq",
        "sam_hq_vit_b.pth", fast_encoder=True, generator=hq_generator, auto_exact=True,
    ),
    "hq_tiny": FamilySpec(
        "segment_anything_hq", build_hq_tiny, hq_predictor, save_plain, "hq",
        "sam_hq_vit_tiny.pth", generator=hq_generator, auto_exact=True,
    ),
    "sam2.1": FamilySpec(
        "sam2", build_sam2_small, sam2_predictor, save_wrapped("model"), "sam2",
        "sam2.1_hiera_small_test.pt", generator=sam2_generator, auto_exact=True,
    ),
    "efficientvit": FamilySpec(
        "efficientsam", build_efficientvit_small, efficientvit_predictor,
        save_wrapped("state_dict"), "efficientvit", "efficientvit_sam_test.pt",
        fast_decoder=True, generator=efficientvit_generator,
        # its predicted IoUs are all slightly negative: no IoU filter
        auto_settings=(("pred_iou_thresh", 0.0),),
    ),
}  # fmt: skip


def build_hf_sam(seed: int = 0, hq: bool = False):
    """transformers' SamModel (or SamHQModel), shrunk (ViT 64 wide, 4 blocks). transformers
    initialises with tiny values: weights get N(0, 0.1) so that masks vary."""
    import torch
    import transformers

    torch.manual_seed(seed)
    config_class = transformers.SamHQConfig if hq else transformers.SamConfig
    model_class = transformers.SamHQModel if hq else transformers.SamModel
    vision = dict(
        hidden_size=64, num_hidden_layers=4, num_attention_heads=2, global_attn_indexes=[1, 3]
    )
    extra = {"mask_decoder_config": {"vit_dim": 64}} if hq else {}  # the fused ViT width
    config = config_class(vision_config=vision, **extra)
    model = model_class(config).eval()
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1 or not param.any():
                param.normal_(0.0, 0.1)
    return model


def build_hf_sam2(seed: int = 0):
    """transformers' Sam2Model with a shrunk Hiera (32 wide, stages 1/1/2/1)."""
    import torch
    import transformers

    torch.manual_seed(seed)
    hiera = transformers.Sam2HieraDetConfig(
        hidden_size=32,
        blocks_per_stage=[1, 1, 2, 1],
        embed_dim_per_stage=[32, 64, 128, 256],
        num_attention_heads_per_stage=[1, 1, 1, 1],
        global_attention_blocks=[3],
    )
    vision = transformers.Sam2VisionConfig(
        backbone_config=hiera, backbone_channel_list=[256, 128, 64, 32]
    )
    model = transformers.Sam2Model(transformers.Sam2Config(vision_config=vision)).eval()
    with torch.no_grad():
        for param in model.parameters():
            if param.dim() > 1 or not param.any():
                param.normal_(0.0, 0.1)
    return model


def hf_classes(model_type: str):
    """(model class, processor class, image processor class) of a transformers model_type."""
    import transformers

    return {
        "sam": (transformers.SamModel, transformers.SamProcessor, transformers.SamImageProcessor),
        "sam_hq": (
            transformers.SamHQModel, transformers.SamHQProcessor, transformers.SamImageProcessor
        ),
        "sam2": (
            transformers.Sam2Model, transformers.Sam2Processor, transformers.Sam2ImageProcessor
        ),
    }[model_type]  # fmt: skip


def save_hf(model, folder: Path) -> Path:
    """As a hub snapshot: save_pretrained of the model (config.json, model.safetensors) and of
    its processor."""
    _, processor_class, image_processor_class = hf_classes(model.config.model_type)
    model.save_pretrained(folder)
    processor_class(image_processor=image_processor_class()).save_pretrained(folder)
    return folder


# Checkpoints the tests build but that have no reference predictor of the SamPredictor kind.
EXTRA_SPECS = {
    "hf": FamilySpec("transformers", build_hf_sam, None, save_hf, "hf", "sam-tiny"),
    "hf_hq": FamilySpec(
        "transformers", lambda: build_hf_sam(hq=True), None, save_hf, "hf", "sam-hq-tiny"
    ),
    "hf_sam2": FamilySpec("transformers", build_hf_sam2, None, save_hf, "hf", "sam2-tiny"),
}
