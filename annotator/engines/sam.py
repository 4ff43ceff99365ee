"""Segment Anything (SAM v1, ViT encoders) as an Annotator engine: checkpoint inspection, loading,
encode (image -> embedding) and decode (embedding + prompts -> masks), equal to `SamPredictor`.

Loading reads the architecture from the checkpoint's tensor shapes, so the official vit_b / vit_l /
vit_h files and any other ViT SAM configuration go through the same code. Checkpoints are read with
`torch.load(weights_only=True)`: a checkpoint never runs code.

Speed on CPU: glibc's allocator returns the encoder's large temporaries to the OS and faults them
in again on every block; `THP_MEM_ALLOC_ENABLE=1` makes torch's CPU allocator use transparent huge
pages instead, which must be set before torch is imported. The Makefile exports it, and importing
this module sets it (`os.environ.setdefault`) for processes that import it before torch.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from annotator.engines.base import Embedding, Prediction, Prompts
from annotator.errors import UserError

logger = logging.getLogger(__name__)

os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

# Bump when anything that changes an embedding for the same weights changes (resize, normalise,
# pad, encoder numerics beyond float rounding): it is part of every fingerprint.
PREPROCESS_VERSION = 1

MODEL_TYPES = ("vit_b", "vit_l", "vit_h")
ENCODERS = ("fast", "stock", "bf16")
DECODERS = ("auto", "torch", "onnx")

# How many bytes from each end of the checkpoint go into the fingerprint (hashing a 2.4 GB file
# whole would take seconds at every start).
_FINGERPRINT_EDGE_BYTES = 4 << 20


@dataclass(frozen=True)
class SamArchitecture:
    """The shape of a ViT SAM, as read from its state dict (segment_anything/build_sam.py)."""

    model_type: str  # "vit_b" | "vit_l" | "vit_h" | "custom"
    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    image_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    prompt_embed_dim: int = 256

    def describe(self) -> str:
        """One line for `annotator info` and the status bar."""
        blocks = ",".join(str(i) for i in self.global_attn_indexes)
        return (
            f"{self.model_type}: ViT {self.embed_dim} wide, {self.depth} blocks, "
            f"{self.num_heads} heads, global attention in blocks {blocks}, "
            f"{self.image_size}px input"
        )

    def key(self) -> tuple:
        """Everything that changes the modules built (the type name aside)."""
        return _shape_key(self)

    def same_shape(self, other: SamArchitecture) -> bool:
        """Whether two architectures build the same modules (the type name aside)."""
        return _shape_key(self) == _shape_key(other)


def _shape_key(arch: SamArchitecture) -> tuple:
    return (
        arch.embed_dim,
        arch.depth,
        arch.num_heads,
        tuple(arch.global_attn_indexes),
        arch.image_size,
        arch.patch_size,
        arch.window_size,
        arch.prompt_embed_dim,
    )


OFFICIAL_ARCHITECTURES = {
    "vit_b": SamArchitecture("vit_b", 768, 12, 12, (2, 5, 8, 11)),
    "vit_l": SamArchitecture("vit_l", 1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": SamArchitecture("vit_h", 1280, 32, 16, (7, 15, 23, 31)),
}


# --------------------------------------------------------------------------------------------
# Reading checkpoints


def _read_state_dict(path: Path, *, mmap: bool) -> dict[str, Any]:
    """The checkpoint's state dict, read into memory or (mmap=True) memory-mapped.

    Memory-mapping reads only what is touched (inspecting a 2.4 GB file takes milliseconds), but
    every tensor then shares one mapping of the whole file, which stays resident as long as any of
    them lives: the model loads without it, so replaced weights (the packed Linear layers) free
    their memory.

    Accepts a plain state dict (the official files) or one wrapped as {"model": ...} or
    {"state_dict": ...}; strips a DataParallel "module." prefix. Raises UserError otherwise.
    """
    import pickle

    import torch

    name = path.name
    if not path.exists():
        raise UserError(f"{path} does not exist.")
    if not path.is_file():
        raise UserError(f"{path} is not a file.")
    # mmap needs the zip format (torch >= 1.6); older files are read into memory.
    use_mmap = mmap and zipfile.is_zipfile(path)
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True, mmap=use_mmap)
    except pickle.UnpicklingError as exc:
        # weights_only names the callable it refused ("GLOBAL posix.system"); other unpickling
        # failures ("Unsupported operand") mean the bytes are not a pickle at all.
        if "GLOBAL" in str(exc) or "unsupported global" in str(exc).lower():
            raise UserError(
                f"{name} contains Python objects other than tensors and was not loaded, "
                "because loading it could run code."
            ) from exc
        raise UserError(f"{name} is truncated or not a PyTorch file.") from exc
    except MemoryError:
        raise
    except Exception as exc:  # torch reports damage with many exception types
        logger.warning("torch.load failed on %s", path, exc_info=True)
        raise UserError(f"{name} is truncated or not a PyTorch file.") from exc

    if isinstance(loaded, dict):
        for wrapper in ("model", "state_dict"):
            if isinstance(loaded.get(wrapper), dict):
                loaded = loaded[wrapper]
                break
    if not isinstance(loaded, dict) or not all(isinstance(k, str) for k in loaded):
        raise UserError(
            f"{name} is a PyTorch file but not a SAM checkpoint (it holds no state dict)."
        )
    if loaded and all(k.startswith("module.") for k in loaded):
        loaded = {k[len("module.") :]: v for k, v in loaded.items()}
    return loaded


def architecture_from_state_dict(state_dict: dict[str, Any], name: str) -> SamArchitecture:
    """Read a ViT SAM's architecture from tensor shapes; `name` is the file name for messages.

    image_encoder.pos_embed: 1 x G x G x D (G = image_size / patch_size, D = embed width);
    patch_embed.proj.weight: D x 3 x P x P; blocks.N.attn.rel_pos_h: (2S - 1) x head_dim, with
    S = G in global-attention blocks and S = window size elsewhere; neck.0.weight: C x D x 1 x 1.
    """
    pos = state_dict.get("image_encoder.pos_embed")
    if pos is None or not hasattr(pos, "shape"):
        raise UserError(
            f"{name} is a PyTorch file but not a SAM checkpoint (no image_encoder.pos_embed)."
        )
    if "mask_decoder.iou_token.weight" not in state_dict:
        raise UserError(
            f"{name} is a PyTorch file but not a SAM checkpoint (no mask_decoder weights)."
        )
    try:
        _, grid_h, grid_w, embed_dim = (int(s) for s in pos.shape)
        patch_size = int(state_dict["image_encoder.patch_embed.proj.weight"].shape[-1])
        prompt_embed_dim = int(state_dict["image_encoder.neck.0.weight"].shape[0])
        block_ids = sorted(
            {
                int(m.group(1))
                for k in state_dict
                if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", k))
            }
        )
        depth = len(block_ids)
        if depth == 0 or block_ids != list(range(depth)) or grid_h != grid_w:
            raise KeyError("blocks")
        global_blocks, window_sizes, head_dims = [], set(), set()
        for i in block_ids:
            rel_pos_h = state_dict[f"image_encoder.blocks.{i}.attn.rel_pos_h"]
            span = (int(rel_pos_h.shape[0]) + 1) // 2
            head_dims.add(int(rel_pos_h.shape[1]))
            if span == grid_h:
                global_blocks.append(i)
            else:
                window_sizes.add(span)
    except (KeyError, ValueError, TypeError, IndexError) as exc:
        raise UserError(
            f"{name} looks like a SAM checkpoint but its image encoder is not a ViT SAM "
            "with relative positions (missing or odd-shaped encoder weights)."
        ) from exc
    if len(head_dims) != 1 or len(window_sizes) > 1 or embed_dim % next(iter(head_dims)):
        raise UserError(
            f"{name} looks like a SAM checkpoint but its attention tables have inconsistent shapes."
        )
    found = SamArchitecture(
        model_type="custom",
        embed_dim=embed_dim,
        depth=depth,
        num_heads=embed_dim // head_dims.pop(),
        global_attn_indexes=tuple(global_blocks),
        image_size=grid_h * patch_size,
        patch_size=patch_size,
        window_size=window_sizes.pop() if window_sizes else 14,
        prompt_embed_dim=prompt_embed_dim,
    )
    for official in OFFICIAL_ARCHITECTURES.values():
        if found.same_shape(official):
            return official
    return found


def inspect_checkpoint(path) -> SamArchitecture:
    """The architecture of the SAM checkpoint at `path` (reads tensor shapes; fast: memory-mapped).

    Raises UserError when the file is missing, truncated, not a PyTorch file, holds code, or is not
    a ViT SAM checkpoint.
    """
    path = Path(path)
    return architecture_from_state_dict(_read_state_dict(path, mmap=True), path.name)


def check_model_type(found: SamArchitecture, model_type: str, name: str) -> None:
    """Raise UserError unless `model_type` is "auto" or names the type `found` in file `name`."""
    if model_type == "auto":
        return
    if model_type not in MODEL_TYPES:
        raise UserError(f"Unknown model type {model_type!r}: use auto, {', '.join(MODEL_TYPES)}.")
    if found.model_type != model_type:
        what = (
            f"a {found.model_type} checkpoint"
            if found.model_type != "custom"
            else f"a custom SAM checkpoint ({found.describe()})"
        )
        raise UserError(f"{name} is {what}, but {model_type} was asked for.")


def resolve_device(device: str = "auto") -> str:
    """ "auto" -> "cuda:0" if CUDA works, else "mps" if Apple's GPU works, else "cpu".

    A named device ("cpu", "cuda", "cuda:1", "mps") is checked and returned in torch's spelling;
    raises UserError if it is not available here.
    """
    import torch

    device = (device or "auto").strip().lower()
    mps_ok = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda:0"
        return "mps" if mps_ok else "cpu"
    try:
        parsed = torch.device(device)
    except RuntimeError as exc:
        raise UserError(f"Unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps.") from exc
    if parsed.type == "cpu":
        return "cpu"
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"Device {device} was asked for, but CUDA is not available here.")
        index = parsed.index or 0
        if index >= torch.cuda.device_count():
            raise UserError(
                f"Device {device} was asked for, but only {torch.cuda.device_count()} "
                "CUDA device(s) exist here."
            )
        return f"cuda:{index}"
    if parsed.type == "mps":
        if not mps_ok:
            raise UserError(
                f"Device {device} was asked for, but Apple's MPS is not available here."
            )
        return "mps"
    raise UserError(f"Unknown device {device!r}: use auto, cpu, cuda, cuda:N or mps.")


def checkpoint_fingerprint(path: Path, architecture: SamArchitecture) -> str:
    """Stable identity of weights + preprocessing: sha256 of the file size, its first and last
    4 MiB, the architecture and PREPROCESS_VERSION (hex, 16 characters)."""
    digest = hashlib.sha256()
    size = path.stat().st_size
    digest.update(f"sam-v1|{PREPROCESS_VERSION}|{size}|{_shape_key(architecture)}|".encode())
    with open(path, "rb") as f:
        digest.update(f.read(_FINGERPRINT_EDGE_BYTES))
        if size > _FINGERPRINT_EDGE_BYTES:
            f.seek(max(_FINGERPRINT_EDGE_BYTES, size - _FINGERPRINT_EDGE_BYTES))
            digest.update(f.read())
    return digest.hexdigest()[:16]


# --------------------------------------------------------------------------------------------
# Building the model


SAM_PIXEL_MEAN = (123.675, 116.28, 103.53)
SAM_PIXEL_STD = (58.395, 57.12, 57.375)


def vit_image_encoder(modeling, a: SamArchitecture):
    """build_sam.py's ViT image encoder of `a`, from `modeling` (segment_anything.modeling, or a
    family's copy of it such as segment_anything_hq.modeling)."""
    from functools import partial

    import torch

    return modeling.ImageEncoderViT(
        depth=a.depth,
        embed_dim=a.embed_dim,
        img_size=a.image_size,
        mlp_ratio=4,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=a.num_heads,
        patch_size=a.patch_size,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=tuple(a.global_attn_indexes),
        window_size=a.window_size,
        out_chans=a.prompt_embed_dim,
    )


def assemble_sam(
    modeling,
    image_encoder,
    *,
    embed_dim: int = 256,
    image_size: int = 1024,
    grid: int = 64,
    decoder_class=None,
    **decoder_kwargs,
):
    """build_sam.py's `Sam` around `image_encoder`: its prompt encoder and two-way mask decoder
    (`modeling.MaskDecoder`, or `decoder_class` with `decoder_kwargs`, e.g. MaskDecoderHQ), from
    `modeling`. Every family that shares SAM's prompt encoder and decoder is built here."""
    import torch

    decoder_class = decoder_class or modeling.MaskDecoder
    # The prompt encoder is built on the cpu whatever the device around (its few kB are then
    # replaced by the checkpoint's): on the meta device its one `torch.randn` imports
    # torch._dynamo, 0.7-1 s of start-up.
    with torch.device("cpu"):
        prompt_encoder = modeling.PromptEncoder(
            embed_dim=embed_dim,
            image_embedding_size=(grid, grid),
            input_image_size=(image_size, image_size),
            mask_in_chans=16,
        )
    return modeling.Sam(
        image_encoder=image_encoder,
        prompt_encoder=prompt_encoder,
        mask_decoder=decoder_class(
            num_multimask_outputs=3,
            transformer=modeling.TwoWayTransformer(
                depth=2, embedding_dim=embed_dim, mlp_dim=2048, num_heads=8
            ),
            transformer_dim=embed_dim,
            iou_head_depth=3,
            iou_head_hidden_dim=256,
            **decoder_kwargs,
        ),
        pixel_mean=list(SAM_PIXEL_MEAN),
        pixel_std=list(SAM_PIXEL_STD),
    )


def segment_anything_modeling():
    """`segment_anything.modeling`, imported without the package's __init__ (which imports
    torchvision, seconds of start-up; see families.import_package_lazily)."""
    import importlib

    from annotator.engines.families import import_package_lazily

    import_package_lazily("segment_anything")
    return importlib.import_module("segment_anything.modeling")


def build_sam_model(architecture: SamArchitecture, device: str = "meta"):
    """A segment_anything `Sam` of `architecture` (eval mode), as build_sam.py builds it.

    On the "meta" device nothing is allocated or randomly initialised: load weights with
    `load_state_dict(..., assign=True)` and then call `_restore_constant_buffers`.
    """
    from contextlib import nullcontext

    import torch

    from annotator.engines.families import skip_init

    modeling = segment_anything_modeling()
    a = architecture
    # On meta, torch.nn.init's fillers would run through torch._refs, which imports
    # torch._dynamo (about a second): they have nothing to fill there anyway.
    with torch.device(device), skip_init() if device == "meta" else nullcontext():
        sam = assemble_sam(
            modeling,
            vit_image_encoder(modeling, a),
            embed_dim=a.prompt_embed_dim,
            image_size=a.image_size,
            grid=a.image_size // a.patch_size,
        )
    return sam.eval()


def _restore_constant_buffers(sam) -> None:
    """Sam's pixel_mean/pixel_std are not in the state dict: rebuild them after a meta build."""
    import torch

    sam.register_buffer(
        "pixel_mean", torch.tensor([123.675, 116.28, 103.53]).view(-1, 1, 1), persistent=False
    )
    sam.register_buffer(
        "pixel_std", torch.tensor([58.395, 57.12, 57.375]).view(-1, 1, 1), persistent=False
    )


def _model_from_state_dict(state_dict, architecture: SamArchitecture, name: str):
    """The Sam with the checkpoint's weights, float32, on the cpu.

    Built on the meta device and given the loaded tensors themselves (assign=True): no random
    initialisation (seconds for vit_h) and no second copy of the weights.
    """
    import torch

    sam = build_sam_model(architecture, device="meta")
    try:
        sam.load_state_dict(state_dict, strict=True, assign=True)
    except RuntimeError as exc:
        logger.warning("load_state_dict refused %s", name, exc_info=True)
        first = str(exc).strip().splitlines()
        detail = first[1].strip() if len(first) > 1 else first[0] if first else ""
        raise UserError(
            f"{name} does not fit the SAM layout read from its shapes ({detail[:160]})."
        ) from exc
    _restore_constant_buffers(sam)
    leftovers = [n for n, t in [*sam.named_parameters(), *sam.named_buffers()] if t.is_meta]
    if leftovers:
        raise UserError(f"{name} lacks weights for {leftovers[0]}.")
    return sam.float().eval().requires_grad_(False).to(torch.device("cpu"))


def load_sam(
    checkpoint,
    model_type: str = "auto",
    device: str = "auto",
    *,
    encoder: str = "fast",
    decoder: str = "auto",
) -> SamEngine:
    """Load a SAM checkpoint into an engine.

    checkpoint: path of a .pth file (plain state dict, or {"model": ...} / {"state_dict": ...}).
    model_type: "auto" (read from the shapes), "vit_b", "vit_l" or "vit_h" (checked).
    device: "auto" (cuda, then mps, then cpu) or a named torch device.
    encoder: "fast" (exact: chunked SDPA attention, Linear backend measured on this CPU),
             "stock" (segment_anything's modules untouched) or "bf16" (lossy, opt-in).
    decoder: "auto" (ONNX Runtime on cpu when it exports and runs, else torch), "torch", "onnx".
    Raises UserError with one sentence for any bad file or argument. Slow (seconds): call it from
    a worker thread.
    """
    if encoder not in ENCODERS:
        raise UserError(f"Unknown encoder {encoder!r}: use {', '.join(ENCODERS)}.")
    if decoder not in DECODERS:
        raise UserError(f"Unknown decoder {decoder!r}: use {', '.join(DECODERS)}.")
    if model_type not in ("auto", *MODEL_TYPES):
        raise UserError(f"Unknown model type {model_type!r}: use auto, {', '.join(MODEL_TYPES)}.")
    path = Path(checkpoint).expanduser()
    state_dict = _read_state_dict(path, mmap=True)  # SamEngine copies each part before it runs
    architecture = architecture_from_state_dict(state_dict, path.name)
    check_model_type(architecture, model_type, path.name)
    resolved = resolve_device(device)
    return _load(state_dict, architecture, path, resolved, encoder, decoder)


def _load(state_dict, architecture: SamArchitecture, path: Path, device, encoder, decoder):
    sam = _model_from_state_dict(state_dict, architecture, path.name)
    del state_dict
    sam = sam.to(device)
    fingerprint = checkpoint_fingerprint(path, architecture)
    return SamEngine(
        sam,
        architecture=architecture,
        device=device,
        fingerprint=fingerprint,
        encoder=encoder,
        decoder=decoder,
    )


# The family adapter interface (annotator.engines.families).


def detect(state_dict, name: str):
    """families.ModelInfo of a SAM 1 state dict."""
    from annotator.engines.families import ModelInfo

    architecture = architecture_from_state_dict(state_dict, name)
    return ModelInfo("sam1", architecture.model_type, architecture)


def load(state_dict, info, path: Path, *, device: str, encoder: str, decoder: str) -> SamEngine:
    return _load(state_dict, info.config, path, device, encoder, decoder)


# --------------------------------------------------------------------------------------------
# The engine


class SamEngine:
    """A loaded SAM: `encode` an image once, `decode` prompts on it many times.

    Implements `annotator.engines.base.Segmenter`. Results equal `SamPredictor.set_image` /
    `SamPredictor.predict` on the same model (exactly with encoder="stock", decoder="torch"; to
    float rounding with the fast encoder or the ONNX decoder). Only ever used from one thread.
    """

    family = (
        "sam1"  # annotator.engines.families key (MobileSAM and EfficientViT-SAM reuse the class)
    )
    # The image encoder is built (and its weights copied out of the mapped checkpoint) on the
    # first `encode`: a cached embedding is answered by the decoder alone (families.load_model).
    copies_encoder_on_first_use = True

    def __init__(
        self,
        sam,
        *,
        architecture: SamArchitecture,
        device: str,
        fingerprint: str,
        encoder: str = "fast",
        decoder: str = "auto",
    ) -> None:
        self.model = sam
        self.architecture = architecture
        self.device = device
        self.encoder_kind = encoder
        # Lossy encoders produce other embeddings: they must not share cache entries. The exact
        # fast encoder shares them with stock (same embedding to ~1e-5). The decoder depends on
        # the weights only.
        self.weights_fingerprint = fingerprint
        self.fingerprint = fingerprint if encoder != "bf16" else f"{fingerprint}-bf16"
        self.transform = ResizeLongestSide(sam.image_encoder.img_size)
        self.linear_backend = "torch"
        self._image_encoder = None  # built by the `image_encoder` property, on first use
        from annotator.engines.families import copy_into_memory

        copy_into_memory(sam.prompt_encoder)
        copy_into_memory(sam.mask_decoder)
        self.onnx_decoder = self._build_onnx_decoder(decoder)
        self.decoder_kind = "onnx" if self.onnx_decoder is not None else "torch"
        self.name = f"SAM {architecture.model_type} ({device})"
        self._lock = threading.Lock()  # cheap insurance: the torch model is not re-entrant

    # -- construction ------------------------------------------------------------------------

    @property
    def image_encoder(self):
        """The module that maps a 1x3xSxS normalised, padded image to 1xCx64x64 features; built
        on first use (the fast encoder's packing takes a second or more for vit_b), its weights
        then copied out of the memory-mapped checkpoint."""
        if self._image_encoder is None:
            from annotator.engines.families import copy_into_memory

            encoder = self._build_image_encoder(self.encoder_kind)
            copy_into_memory(self.model.image_encoder)
            self._image_encoder = encoder
        return self._image_encoder

    def _build_image_encoder(self, encoder: str):
        """The module that maps a 1x3xSxS normalised, padded image to 1xCx64x64 features."""
        if encoder == "stock":
            return self.model.image_encoder
        from annotator.engines import fast_encoder

        # oneDNN's prepacked Linear takes float32 only: bf16 autocast keeps torch's Linear.
        linear = "torch" if encoder == "bf16" else "auto"
        fast = fast_encoder.make_fast_encoder(
            self.model.image_encoder, device=self.device, linear=linear
        )
        self.linear_backend = fast_encoder.linear_backend_of(fast)
        if encoder == "bf16":
            return fast_encoder.Bf16Autocast(fast, device=self.device)
        return fast

    def _build_onnx_decoder(self, decoder: str):
        """An OnnxMaskDecoder for decoder="onnx", or "auto" on cpu if it works, else None."""
        if decoder == "torch" or (decoder == "auto" and not self.device.startswith("cpu")):
            return None
        try:
            from annotator import paths
            from annotator.engines.onnx_decoder import OnnxMaskDecoder

            return OnnxMaskDecoder.load_or_export(
                self.model, self.weights_fingerprint, paths.cache_dir() / "decoders"
            )
        except Exception as exc:  # any failure: the torch decoder gives the same answers
            logger.warning(
                "The ONNX mask decoder could not be used%s",
                "" if decoder == "onnx" else "; falling back to the torch decoder",
                exc_info=True,
            )
            if decoder == "onnx":
                reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise UserError(f"The ONNX mask decoder could not be used: {reason}") from exc
            return None

    # -- Segmenter -------------------------------------------------------------------------------

    def encode(self, image: np.ndarray) -> Embedding:
        """Embed an HxWx3 uint8 RGB image; features are 1x256x64x64 float32 (numpy, cpu).

        Preprocessing is SamPredictor.set_image's: ResizeLongestSide to 1024 (PIL bilinear),
        normalise by pixel mean/std, pad bottom/right to 1024x1024.
        """
        import torch

        image = _check_image(image)
        input_image = self.transform.apply_image(image)
        with self._lock, torch.inference_mode():
            tensor = torch.as_tensor(input_image, device=self.device)
            tensor = tensor.permute(2, 0, 1).contiguous()[None, :, :, :]
            features = self.image_encoder(self.model.preprocess(tensor))
            features = features.float().cpu().numpy()
        return Embedding(
            original_size=(int(image.shape[0]), int(image.shape[1])),
            input_size=(int(input_image.shape[0]), int(input_image.shape[1])),
            features=np.ascontiguousarray(features, dtype=np.float32),
            fingerprint=self.fingerprint,
        )

    def decode(self, embedding: Embedding, prompts: Prompts) -> Prediction:
        """Masks for `prompts` on `embedding`, as SamPredictor.predict returns them.

        masks: CxHxW bool at the original size; scores: C float32; low_res_logits: Cx256x256
        float32 (C = 3 if prompts.multimask else 1).
        """
        if embedding.fingerprint != self.fingerprint:
            raise ValueError("This embedding was made by another model; encode the image again.")
        if prompts.is_empty():
            raise ValueError("decode needs at least one point or a box.")
        if self.onnx_decoder is not None:
            return self.onnx_decoder.decode(embedding, prompts)
        return self.decode_torch(embedding, prompts)

    def decode_torch(self, embedding: Embedding, prompts: Prompts) -> Prediction:
        """SamPredictor.predict + predict_torch, step by step, on a cached embedding."""
        import torch

        device, original_size = self.device, embedding.original_size
        coords, labels, box, mask_input = prompt_tensors(
            self.transform, prompts, original_size, device
        )
        model = self.model
        with self._lock, torch.inference_mode():
            features = torch.as_tensor(embedding.features, device=device)
            sparse, dense = model.prompt_encoder(
                points=(coords, labels) if coords is not None else None,
                boxes=box,
                masks=mask_input,
            )
            low_res, iou = model.mask_decoder(
                image_embeddings=features,
                image_pe=model.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=prompts.multimask,
            )
            masks = model.postprocess_masks(low_res, embedding.input_size, original_size)
            masks = masks > model.mask_threshold
            return Prediction(
                masks=masks[0].cpu().numpy(),
                scores=iou[0].float().cpu().numpy(),
                low_res_logits=low_res[0].float().cpu().numpy(),
            )

    def describe(self) -> str:
        """One line: type, device, encoder and decoder paths."""
        return (
            f"{self.name}: {self.architecture.describe()}; encoder {self.encoder_kind}"
            f" (Linear {self.linear_backend if self._image_encoder is not None else 'chosen at the first image'})"
            f", decoder {self.decoder_kind}"
        )


def prompt_tensors(transform, prompts: Prompts, original_size, device):
    """(coords 1xNx2 float, labels 1xN int, box 1x4 float, mask_input 1x1x256x256 float), each
    None when absent, in the model's input frame, as SamPredictor.predict makes them; shared by
    every engine whose prompt encoder is SAM's."""
    import torch

    coords = labels = box = mask_input = None
    if len(prompts.points):
        points = transform.apply_coords(np.asarray(prompts.points), original_size)
        coords = torch.as_tensor(points, dtype=torch.float, device=device)[None, :, :]
        labels = torch.as_tensor(np.asarray(prompts.labels), dtype=torch.int, device=device)
        labels = labels[None, :]
    if prompts.box is not None:
        boxes = transform.apply_boxes(np.asarray(prompts.box), original_size)
        box = torch.as_tensor(boxes, dtype=torch.float, device=device)[None, :]
    if prompts.mask_input is not None:
        # A copy: the logits come from an immutable (read-only) Prediction.
        mask_input = torch.tensor(prompts.mask_input, dtype=torch.float, device=device)
        mask_input = mask_input.reshape(1, 1, *mask_input.shape[-2:])
    return coords, labels, box, mask_input


class ResizeLongestSide:
    """segment_anything's ResizeLongestSide for numpy inputs, without its torchvision import
    (torchvision's import takes 1-3 s, most of a start-up with a cached embedding).

    apply_image: HxWx3 uint8 -> hxwx3 uint8, the long side `target_length`, PIL bilinear, as
    torchvision's `resize(to_pil_image(image), size)` does on a PIL image. apply_coords /
    apply_boxes: (X, Y) original-image pixels -> the resized image's, as float64. The equality
    tests compare every engine built on it with SamPredictor.
    """

    def __init__(self, target_length: int) -> None:
        self.target_length = target_length

    def apply_image(self, image: np.ndarray) -> np.ndarray:
        from PIL import Image

        height, width = self.get_preprocess_shape(
            image.shape[0], image.shape[1], self.target_length
        )
        pil = Image.fromarray(np.ascontiguousarray(image))  # HxWx3 uint8: RGB
        return np.array(pil.resize((width, height), Image.BILINEAR))

    def apply_coords(self, coords: np.ndarray, original_size: tuple[int, ...]) -> np.ndarray:
        old_h, old_w = original_size
        new_h, new_w = self.get_preprocess_shape(old_h, old_w, self.target_length)
        coords = np.array(coords, dtype=float)  # a copy, as segment_anything's deepcopy
        coords[..., 0] = coords[..., 0] * (new_w / old_w)
        coords[..., 1] = coords[..., 1] * (new_h / old_h)
        return coords

    def apply_boxes(self, boxes: np.ndarray, original_size: tuple[int, ...]) -> np.ndarray:
        return self.apply_coords(np.asarray(boxes).reshape(-1, 2, 2), original_size).reshape(-1, 4)

    @staticmethod
    def get_preprocess_shape(oldh: int, oldw: int, long_side_length: int) -> tuple[int, int]:
        scale = long_side_length * 1.0 / max(oldh, oldw)
        newh, neww = oldh * scale, oldw * scale
        return int(newh + 0.5), int(neww + 0.5)


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        raise ValueError(f"encode expects an HxWx3 uint8 RGB image, got shape {shape}.")
    if image.dtype != np.uint8:
        raise ValueError(f"encode expects uint8 pixels, got {image.dtype}.")
    return image
