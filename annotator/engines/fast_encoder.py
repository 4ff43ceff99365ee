"""A faster, exact SAM image encoder: the same weights and the same arithmetic up to float rounding.

Three changes to segment_anything's `ImageEncoderViT`, made by replacing modules on one model
instance (never by patching segment_anything's classes, so a stock SamPredictor in the same process
is untouched):

1. Attention through `torch.nn.functional.scaled_dot_product_attention`, with the decomposed
   relative-position bias (`add_decomposed_rel_pos`) passed as the attention mask and the queries
   processed in chunks of about 512. Stock attention materialises the whole 4096x4096 score matrix
   per head in the global blocks, then two more copies of it (bias added, softmax): ~2.4 GB for
   vit_b. Chunking bounds that to one chunk's bias, and SDPA's fused CPU kernel is faster too.
2. On CPU, the encoder's Linear layers through oneDNN with weights prepacked once
   (`torch.ops.mkldnn._linear_pointwise`), when timing both on this CPU says it is faster than
   torch's default GEMM. The choice is measured once per CPU model and cached on disk.
3. The patch embedding's output made contiguous: stock SAM keeps the whole residual stream as a
   permuted view of the convolution's output, so every LayerNorm and Linear copies its input.

On CUDA and MPS (1) and (3) are applied; their Linear is already fast.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from pathlib import Path

logger = logging.getLogger(__name__)

# Rows of the attention matrix (queries) handled at once: bounds the bias chunk to
# heads x 512 x tokens floats (vit_b global block: 12 x 512 x 4096 x 4 B = 100 MB).
DEFAULT_CHUNK_QUERIES = 512

LINEAR_BACKENDS = ("torch", "mkldnn")

_LINEAR_CACHE_FILE = "linear_backend.json"


def _classes():
    """Build (once) the nn.Module classes; torch is imported only when an encoder is made."""
    global _CLASSES
    if _CLASSES is not None:
        return _CLASSES
    import torch
    import torch.nn.functional as F
    from segment_anything.modeling.image_encoder import get_rel_pos

    nn = torch.nn

    class ChunkedSdpaAttention(nn.Module):
        """segment_anything's `Attention` (same parameters, shared) computed with chunked SDPA.

        Input and output: B x H x W x C float tokens (B = windows in windowed blocks).
        """

        def __init__(self, stock, chunk_queries: int = DEFAULT_CHUNK_QUERIES) -> None:
            super().__init__()
            self.num_heads = stock.num_heads
            self.scale = stock.scale
            self.qkv = stock.qkv
            self.proj = stock.proj
            self.use_rel_pos = stock.use_rel_pos
            if self.use_rel_pos:
                self.rel_pos_h = stock.rel_pos_h
                self.rel_pos_w = stock.rel_pos_w
            self.chunk_queries = chunk_queries

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            B, H, W, _ = x.shape
            heads = self.num_heads
            # (3, B, heads, H*W, head_dim), as in the stock module.
            qkv = self.qkv(x).reshape(B, H * W, 3, heads, -1).permute(2, 0, 3, 1, 4)
            q, k, v = qkv.unbind(0)
            head_dim = q.shape[-1]
            rel_h = rel_w = None
            if self.use_rel_pos:
                # add_decomposed_rel_pos, with the same einsums on the same (B*heads) layout so
                # the bias terms are bit-identical; they use the unscaled queries.
                Rh = get_rel_pos(H, H, self.rel_pos_h)
                Rw = get_rel_pos(W, W, self.rel_pos_w)
                r_q = q.reshape(B * heads, H, W, head_dim)
                rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, Rh).view(B, heads, H, W, H)
                rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, Rw).view(B, heads, H, W, W)
            rows = max(1, min(H, self.chunk_queries // max(W, 1)))
            # One buffer for every chunk's bias: fresh 100 MB allocations per chunk cost page
            # faults, and writing the broadcast sum straight into a contiguous buffer (out=)
            # avoids the copy that reshaping a broadcast result makes.
            bias_buffer = None
            if rel_h is not None:
                rel_h, rel_w = rel_h.to(q.dtype), rel_w.to(q.dtype)
                bias_buffer = q.new_empty(B * heads * rows * W * H * W)
            # Each chunk's B x heads x rows*W x head_dim result goes straight to its place in
            # the B x H x W x heads x head_dim output the stock module builds (no cat, one copy).
            out = q.new_empty(B, H, W, heads, head_dim)
            for top in range(0, H, rows):
                bottom = min(top + rows, H)
                chunk = self._attend(q, k, v, rel_h, rel_w, bias_buffer, (H, W), top, bottom)
                out[:, top:bottom] = chunk.view(B, heads, bottom - top, W, head_dim).permute(
                    0, 2, 3, 1, 4
                )
            return self.proj(out.view(B, H, W, heads * head_dim))

        def _attend(self, q, k, v, rel_h, rel_w, bias_buffer, size, top: int, bottom: int):
            """Attention of the queries in token rows [top, bottom) of an HxW grid to all keys.

            q, k, v: B x heads x H*W x head_dim; rel_h: B x heads x H x W x H; rel_w: ... x W;
            bias_buffer: flat, at least B*heads*(bottom-top)*W*H*W elements (or None: no bias).
            Returns B x heads x (bottom - top)*W x head_dim.
            """
            B, heads, _, _ = q.shape
            H, W = size
            rows = bottom - top
            mask = None
            if rel_h is not None:
                # attn[b, n, (y, x), (ky, kx)] += rel_h[b, n, y, x, ky] + rel_w[b, n, y, x, kx]
                mask = bias_buffer[: B * heads * rows * W * H * W].view(B, heads, rows, W, H, W)
                torch.add(
                    rel_h[:, :, top:bottom, :, :, None],
                    rel_w[:, :, top:bottom, :, None, :],
                    out=mask,
                )
                mask = mask.view(B, heads, rows * W, H * W)
            return F.scaled_dot_product_attention(
                q[:, :, top * W : bottom * W], k, v, attn_mask=mask, dropout_p=0.0, scale=self.scale
            )

    class ContiguousPatchEmbed(nn.Module):
        """segment_anything's PatchEmbed (shared), with its B x H x W x C output made contiguous.

        The stock output is a permuted view of the convolution's B x C x H x W result, and every
        later op (the residual adds included) keeps that layout, so each LayerNorm and Linear of
        every block first copies its input. Same values, one copy instead of dozens.
        """

        def __init__(self, stock) -> None:
            super().__init__()
            self.stock = stock

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.stock(x).contiguous()

    class MkldnnLinear(nn.Module):
        """An nn.Linear whose weight is prepacked once for oneDNN (float32, cpu only).

        Input ... x in_features float32; output ... x out_features. The original weight is not
        kept (prepacking copies it).
        """

        def __init__(self, linear, batch_size: int) -> None:
            super().__init__()
            self.in_features = linear.in_features
            self.out_features = linear.out_features
            weight = linear.weight.detach().float().contiguous()
            self.register_buffer(
                "packed_weight",
                torch.ops.mkldnn._reorder_linear_weight(weight, batch_size),
                persistent=False,
            )
            bias = linear.bias.detach().float().contiguous() if linear.bias is not None else None
            self.register_buffer("bias", bias, persistent=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.dtype != torch.float32:  # autocast or a caller's half input: not for oneDNN
                raise TypeError("MkldnnLinear takes float32 input only.")
            return torch.ops.mkldnn._linear_pointwise(
                x, self.packed_weight, self.bias, "none", [], ""
            )

    class Bf16Autocast(nn.Module):
        """Runs an encoder under bfloat16 autocast (lossy, opt-in); output float32."""

        def __init__(self, encoder, device: str) -> None:
            super().__init__()
            self.encoder = encoder
            self.device_type = torch.device(device).type

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            with torch.autocast(device_type=self.device_type, dtype=torch.bfloat16):
                return self.encoder(x).float()

    _CLASSES = {
        "ChunkedSdpaAttention": ChunkedSdpaAttention,
        "MkldnnLinear": MkldnnLinear,
        "ContiguousPatchEmbed": ContiguousPatchEmbed,
        "Bf16Autocast": Bf16Autocast,
    }
    return _CLASSES


_CLASSES: dict | None = None


def ChunkedSdpaAttention(stock, chunk_queries: int = DEFAULT_CHUNK_QUERIES):
    """A `ChunkedSdpaAttention` module sharing `stock`'s (segment_anything Attention) parameters."""
    return _classes()["ChunkedSdpaAttention"](stock, chunk_queries)


def MkldnnLinear(linear, batch_size: int):
    """A oneDNN-prepacked copy of an nn.Linear (float32, cpu)."""
    return _classes()["MkldnnLinear"](linear, batch_size)


def Bf16Autocast(encoder, device: str):
    """`encoder` wrapped to run under bfloat16 autocast; lossy."""
    return _classes()["Bf16Autocast"](encoder, device)


# --------------------------------------------------------------------------------------------


def make_fast_encoder(
    image_encoder,
    device: str = "cpu",
    *,
    linear: str = "auto",
    chunk_queries: int = DEFAULT_CHUNK_QUERIES,
):
    """Turn a segment_anything `ImageEncoderViT` into the fast exact encoder, IN PLACE.

    linear: "auto" (cpu: measure torch vs oneDNN once per CPU model, cached; else torch),
            "torch" or "mkldnn". Returns the same module, with `fast_linear_backend` set.
    The encoder's input and output are unchanged: 1x3xSxS normalised image -> 1xCxGxG features.
    """
    classes = _classes()
    if not isinstance(image_encoder.patch_embed, classes["ContiguousPatchEmbed"]):
        image_encoder.patch_embed = classes["ContiguousPatchEmbed"](image_encoder.patch_embed)
    for block in image_encoder.blocks:
        if not isinstance(block.attn, classes["ChunkedSdpaAttention"]):
            block.attn = classes["ChunkedSdpaAttention"](block.attn, chunk_queries)
    backend = linear
    if backend == "auto":
        backend = choose_linear_backend(image_encoder, device)
    if backend == "mkldnn":
        if not mkldnn_linear_available(device):
            raise ValueError("The oneDNN Linear backend needs a cpu with torch's mkldnn support.")
        _pack_linears(image_encoder)
    elif backend != "torch":
        raise ValueError(f"Unknown Linear backend {linear!r}: use auto, torch or mkldnn.")
    image_encoder.fast_linear_backend = backend
    return image_encoder


def linear_backend_of(image_encoder) -> str:
    """The Linear backend `make_fast_encoder` chose ("torch" or "mkldnn")."""
    return getattr(image_encoder, "fast_linear_backend", "torch")


def mkldnn_linear_available(device: str) -> bool:
    import torch

    return (
        str(device).startswith("cpu")
        and torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
    )


def _token_rows(image_encoder) -> int:
    """Rows a Linear sees per call in a global block: (S/patch)^2 tokens (4096 for SAM)."""
    grid = image_encoder.pos_embed.shape[1] if image_encoder.pos_embed is not None else 64
    return int(grid) * int(grid)


def _pack_linears(image_encoder) -> None:
    classes = _classes()
    batch = _token_rows(image_encoder)
    for block in image_encoder.blocks:
        block.attn.qkv = classes["MkldnnLinear"](block.attn.qkv, batch)
        block.attn.proj = classes["MkldnnLinear"](block.attn.proj, batch)
        block.mlp.lin1 = classes["MkldnnLinear"](block.mlp.lin1, batch)
        block.mlp.lin2 = classes["MkldnnLinear"](block.mlp.lin2, batch)


# --------------------------------------------------------------------------------------------
# Choosing the Linear backend: measured once per CPU, not assumed.


def cpu_identity() -> str:
    """CPU model name + core count + torch version: what the Linear timing depends on."""
    import torch

    model = platform.processor() or ""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{model or platform.machine()}|threads={torch.get_num_threads()}|torch={torch.__version__}"
    )


def _cache_path() -> Path:
    from annotator import paths

    return paths.cache_dir() / _LINEAR_CACHE_FILE


def _read_choices(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        logger.debug("No usable Linear-backend choices in %s", path, exc_info=True)
        return {}


def _write_choices(path: Path, choices: dict) -> None:
    """Atomic write; a failure only loses the cache (the choice is measured again next time)."""
    from annotator.core.atomic import atomic_write_bytes

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, json.dumps(choices, indent=1, sort_keys=True).encode())
    except OSError:
        logger.warning("Could not save the Linear-backend choice to %s", path, exc_info=True)


# A batch worker runs the Linear kernels its driver chose (`pin_linear_backend`), so that every
# worker computes what the driver's single-process run would, bit for bit, on CPUs of one kind.
_pinned_backend: str | None = None


def pin_linear_backend(backend: str | None) -> None:
    """Make "auto" take `backend` ("torch" or "mkldnn") instead of measuring; None: measure."""
    global _pinned_backend
    if backend is not None and backend not in LINEAR_BACKENDS:
        raise ValueError(f"Unknown Linear backend {backend!r}: use torch or mkldnn.")
    _pinned_backend = backend


def choose_linear_backend(image_encoder, device: str = "cpu") -> str:
    """ "mkldnn" if oneDNN's prepacked Linear is faster than torch's here and agrees with it,
    else "torch". Measured on one MLP-sized Linear of this encoder; cached per CPU and width."""
    if not mkldnn_linear_available(device):
        return "torch"
    if _pinned_backend is not None:
        return _pinned_backend
    return _measured_choice(image_encoder.blocks[0].mlp.lin1, _token_rows(image_encoder))


def choose_linear_backend_for_shape(
    in_features: int, out_features: int, rows: int, device: str = "cpu"
) -> str:
    """What `choose_linear_backend` picks for an encoder whose MLP Linear is in x out, seeing
    `rows` tokens, without the model (a batch driver that leaves the model to its workers)."""
    if not mkldnn_linear_available(device):
        return "torch"
    import torch

    return _measured_choice(torch.nn.Linear(int(in_features), int(out_features)), int(rows))


def _measured_choice(lin1, rows: int) -> str:
    key = f"{cpu_identity()}|{lin1.in_features}x{lin1.out_features}"
    path = _cache_path()
    choices = _read_choices(path)
    if choices.get(key) in LINEAR_BACKENDS:
        return choices[key]
    choice = measure_linear_backends(lin1, rows)["choice"]
    choices[key] = choice
    _write_choices(path, choices)
    return choice


def measure_linear_backends(linear, rows: int, repeat: int = 3) -> dict:
    """Time `linear` on a rows x in_features input through torch and through oneDNN.

    Returns {"torch": s, "mkldnn": s, "max_diff": float, "choice": name}: best-of-`repeat` times.
    """
    import torch

    classes = _classes()
    with torch.inference_mode():
        x = torch.randn(rows, linear.in_features, generator=torch.Generator().manual_seed(0))
        packed = classes["MkldnnLinear"](linear, rows)
        results = {}
        outputs = {}
        for name, fn in (("torch", linear), ("mkldnn", packed)):
            outputs[name] = fn(x)  # warm-up (oneDNN builds its kernel on first call)
            best = float("inf")
            for _ in range(repeat):
                start = time.perf_counter()
                fn(x)
                best = min(best, time.perf_counter() - start)
            results[name] = best
        diff = float((outputs["torch"] - outputs["mkldnn"]).abs().max())
        scale = float(outputs["torch"].abs().max()) or 1.0
    agrees = diff <= 1e-4 * max(1.0, scale)
    results["max_diff"] = diff
    results["choice"] = "mkldnn" if agrees and results["mkldnn"] < results["torch"] else "torch"
    return results
