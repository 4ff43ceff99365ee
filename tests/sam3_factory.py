"""A shrunk SAM 3 (transformers' `Sam3Config`, random weights) saved as a checkpoint folder the
way the hub publishes one: config.json, model.safetensors, the processor's configuration and the
CLIP tokenizer's files. The tokenizer is made from open-clip-torch's `bpe_simple_vocab_16e6.txt.gz`
(the BPE table CLIP and SAM 3 use), never downloaded."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

# Every dimension shrunk; the image is 112 px (8x8 patches of 14), the feature maps 32/16/8/4.
IMAGE_SIZE = 112
QUERY_GAIN = 20.0
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json")


def _bytes_to_unicode() -> dict[int, str]:
    """CLIP's byte -> printable character table (as open_clip.tokenizer.bytes_to_unicode)."""
    bs = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs), strict=True))


def write_clip_tokenizer_files(folder: Path) -> None:
    """vocab.json and merges.txt of CLIP's tokenizer (49408 tokens), from open_clip's BPE file."""
    import open_clip

    bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    lines = gzip.open(bpe, "rt", encoding="utf-8").read().split("\n")
    merges = [tuple(line.split()) for line in lines[1 : 49152 - 256 - 2 + 1]]
    vocab = list(_bytes_to_unicode().values())
    vocab = vocab + [v + "</w>" for v in vocab] + ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n", encoding="utf-8"
    )


def small_config():
    from transformers import Sam3Config

    return Sam3Config(
        vision_config=dict(
            backbone_config=dict(
                model_type="sam3_vit_model",
                hidden_size=32,
                intermediate_size=64,
                num_hidden_layers=2,
                num_attention_heads=2,
                image_size=IMAGE_SIZE,
                patch_size=14,
                window_size=4,
                global_attn_indexes=[1],
                pretrain_image_size=56,
            ),
            fpn_hidden_size=32,
            backbone_feature_sizes=[[32, 32], [16, 16], [8, 8]],
        ),
        text_config=dict(
            model_type="clip_text_model",
            vocab_size=49408,
            hidden_size=32,
            intermediate_size=64,
            projection_dim=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=32,
        ),
        geometry_encoder_config=dict(
            hidden_size=32, num_layers=1, num_attention_heads=2, intermediate_size=64
        ),
        detr_encoder_config=dict(
            hidden_size=32, num_layers=1, num_attention_heads=2, intermediate_size=64
        ),
        detr_decoder_config=dict(
            hidden_size=32, num_layers=2, num_queries=12, num_attention_heads=2,
            intermediate_size=64,
        ),
        mask_decoder_config=dict(hidden_size=32, num_attention_heads=2),
    )  # fmt: skip


def _spread(model, seed: int):
    """Weights at unit gain (std 1/sqrt(fan_in)) and random biases instead of transformers' small
    initialisation, so scores and mask logits spread out (at 0.02 every query scores 0.25 and
    every mask logit is 0: a mistake could not show)."""
    import torch

    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() >= 2:
                fan_in = param[0].numel()
                param.copy_(torch.randn(param.shape, generator=gen) / fan_in**0.5)
            elif name.endswith("bias"):
                param.copy_(torch.randn(param.shape, generator=gen) * 0.5)
        # Without a common offset in the pixel embeddings a mask is pixel-dependent, not empty.
        model.mask_decoder.instance_projection.bias.zero_()
    _spread_scores(model, gen)
    return model


def _spread_scores(model, gen) -> None:
    """At random weights the decoder's queries come out nearly alike (their scores differ by
    1e-3) and the presence score is low: centre the query projection on the average query of one
    forward pass and amplify the differences, and raise the presence score, so the instances
    spread over (0, 1) and a threshold keeps some and drops others."""
    import torch

    scoring = model.dot_product_scoring
    seen = {}

    def keep_queries(module, args, kwargs):
        seen["q"] = kwargs["decoder_hidden_states"][-1]

    handle = scoring.register_forward_pre_hook(keep_queries, with_kwargs=True)
    pixels = torch.randn((1, 3, IMAGE_SIZE, IMAGE_SIZE), generator=gen)
    ids = torch.full((1, 32), 49407)
    ids[0, :3] = torch.tensor([49406, 2368, 49407])
    mask = (torch.arange(32) < 3).long()[None]
    with torch.no_grad():
        out = model(pixel_values=pixels, input_ids=ids, attention_mask=mask)
        handle.remove()
        mean_query = seen["q"][0].mean(0)
        proj = scoring.query_proj
        proj.weight.mul_(QUERY_GAIN)
        proj.bias.copy_(-proj.weight @ mean_query)
        model.detr_decoder.presence_head.layer3.bias.sub_(out.presence_logits[0] - 2.0)


def build_sam3_folder(folder: Path, seed: int = 0, *, tokenizer: bool = True) -> Path:
    """Save a random-weight shrunk Sam3Model and its Sam3Processor in `folder`; returns it."""
    import torch
    from transformers import CLIPTokenizer, Sam3ImageProcessor, Sam3Model, Sam3Processor

    folder = Path(folder)
    torch.manual_seed(seed)
    model = _spread(Sam3Model(small_config()).eval(), seed)
    model.save_pretrained(folder)
    write_clip_tokenizer_files(folder / "_bpe")
    clip = CLIPTokenizer(str(folder / "_bpe" / "vocab.json"), str(folder / "_bpe" / "merges.txt"))
    image_processor = Sam3ImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    Sam3Processor(image_processor=image_processor, tokenizer=clip).save_pretrained(folder)
    for name in ("vocab.json", "merges.txt"):
        (folder / "_bpe" / name).unlink()
    (folder / "_bpe").rmdir()
    if not tokenizer:
        for path in folder.iterdir():
            if path.name.startswith(("vocab", "merges", "tokenizer", "special_tokens")):
                path.unlink()
    return folder
