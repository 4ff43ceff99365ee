"""SAM's prompt encoder + mask decoder exported to ONNX and run in onnxruntime.

Same semantics as `segment_anything.SamPredictor.predict` (logits within ~1e-6), about 3x faster
on a CPU at 1024x768 and 4x at 4000x3000:

- The graph returns the four low-resolution (256x256) candidates and their scores. It is
  rewritten for speed, not re-trained or approximated: the transformer's products with the 4096
  image tokens go through the few prompt tokens (`annotator.engines.two_way`), the
  two ConvTranspose2d of the upscaling are MatMuls in token layout with a fused LayerNorm, and
  without a previous mask a 4x4 mask_input makes the unused mask branch nearly free.
- The candidates predict would return (1..3 with multimask, 0 without) are upscaled with OpenCV
  to the original image size, cropping the padding by the real `Embedding.input_size`
  (segment_anything's own export crops by the dummy image size it was exported with, which is
  wrong for other aspect ratios, #579). Only the best one (the one displayed) is upscaled before
  `decode` returns; the others when first read (`Prediction.lazy`). Big images take a faster
  int16 path (`upscale_masks`); the graph stays free of the image size.

The app exports the decoder itself from the loaded checkpoint, once per model fingerprint, into the
user's cache folder; a file that is missing, corrupt or written by another version is re-exported.
"""

from __future__ import annotations

import logging
import os
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from annotator.core.atomic import atomic_write_bytes
from annotator.engines.base import Embedding, Prediction, Prompts

logger = logging.getLogger(__name__)

# Bump when the graph's inputs, outputs or semantics change: older files are then re-exported.
DECODER_FORMAT = "annotator-sam-decoder-v3"
INPUT_NAMES = ("image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input")
OUTPUT_NAMES = ("low_res_logits", "iou_predictions")
MODEL_INPUT_SIZE = 1024  # SAM's square input; the low-res logits cover it at 1/4 scale
LOW_RES_SIZE = 256
# Without a previous mask (has_mask_input 0) the mask branch's output is multiplied by 0, so
# decode feeds a 4x4 mask_input: the branch (two stride-2 convolutions) then makes 1x1 instead of
# 64x64 features, and the no-mask embedding broadcasts over the image (saves ~1 ms a click).
NO_MASK_SIZE = 4
OPSET = 17
# Labels understood by the graph (as SamOnnxModel): -1 padding point, 0 background, 1 foreground,
# 2 and 3 the top-left and bottom-right box corners.
PAD_LABEL, BOX_TOP_LEFT_LABEL, BOX_BOTTOM_RIGHT_LABEL = -1.0, 2.0, 3.0
# For big images both resizes run on int16 logits: OpenCV resizes int16 about twice as fast as
# float32 and needs no float model-frame pass. Its fixed-point weights (11 bits) move the 0-crossing
# by a fraction of a pixel, so only edge pixels can flip (measured: ~250 of 12 M pixels on a mask
# with long, wiggly edges; IoU with torch > 0.9999). The largest |logit| of a mask is scaled to
# this value.
_INT16_RANGE = 32000.0
# Per-mask output size (pixels) above which that path pays off; below it float32 stays exact.
LARGE_OUTPUT_PIXELS = 2_500_000


def physical_cores() -> int:
    """Number of physical CPU cores (hyper-threads slow onnxruntime down), at least 1."""
    try:
        import psutil  # optional

        count = psutil.cpu_count(logical=False)
        if count:
            return int(count)
    except ImportError:
        pass
    try:
        cores = set()
        physical_id = core_id = None
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as info:
            for line in info:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "physical id":
                    physical_id = value.strip()
                elif key == "core id":
                    core_id = value.strip()
                elif not key and core_id is not None:
                    cores.add((physical_id, core_id))
                    physical_id = core_id = None
        if core_id is not None:
            cores.add((physical_id, core_id))
        if cores:
            return len(cores)
    except OSError:
        pass
    return max(1, (os.cpu_count() or 2) // 2)


def _export_module(sam_model):
    """A torch module wrapping `sam_model`'s prompt encoder and mask decoder for tracing.

    forward(image_embeddings 1x256x64x64, point_coords 1xNx2 in the 1024-px model-input frame,
    point_labels 1xN float, mask_input 1x1x256x256 (or 1x1x4x4 with has_mask_input 0),
    has_mask_input 1) -> (low_res_logits 1x4x256x256, iou_predictions 1x4); candidate 0 is the
    single-mask output, 1..3 the multimask outputs, as MaskDecoder.predict_masks computes them
    (to float rounding). Raises ValueError for a decoder whose transformer or upscaling is not
    SAM's.
    """
    import copy

    import torch

    from annotator.engines.two_way import is_regroupable, regrouped_forward

    if not is_regroupable(sam_model.mask_decoder.transformer):
        raise ValueError("the mask decoder's transformer is not SAM's TwoWayTransformer")

    class PromptsToLogits(torch.nn.Module):
        def __init__(self, sam) -> None:
            super().__init__()
            # Float32 copies on the CPU: the live model may sit on a GPU, and tracing must not
            # touch it. The two modules are small (~4 M parameters); the image encoder stays.
            self.prompt_encoder = copy.deepcopy(sam.prompt_encoder).float().cpu()
            self.mask_decoder = copy.deepcopy(sam.mask_decoder).float().cpu()
            self.img_size = float(sam.image_encoder.img_size)
            self.grid = tuple(int(n) for n in sam.prompt_encoder.image_embedding_size)
            self.num_image_tokens = self.grid[0] * self.grid[1]
            # Per-model constants, computed once: the dense positional encoding and the two
            # ConvTranspose2d weights as C_in x (kh*kw*C_out) matrices (see _upscaled_logits).
            with torch.no_grad():
                image_pe = self.prompt_encoder.get_dense_pe()  # 1xCxhxw
                self.register_buffer("key_pe", image_pe.flatten(2).permute(0, 2, 1).clone())
                up = self.mask_decoder.output_upscaling
                for name, conv in (("up1", up[0]), ("up2", up[3])):
                    if tuple(conv.kernel_size) != (2, 2) or tuple(conv.stride) != (2, 2):
                        raise ValueError("the mask decoder's upscaling is not SAM's (2x2, /2)")
                    c_in, c_out, kh, kw = conv.weight.shape
                    weight = conv.weight.permute(0, 2, 3, 1).reshape(c_in, kh * kw * c_out)
                    self.register_buffer(f"{name}_weight", weight.contiguous().clone())
                    self.register_buffer(f"{name}_bias", conv.bias.repeat(kh * kw).clone())
                    setattr(self, f"{name}_channels", int(c_out))

        def _embed_points(self, coords: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            # As PromptEncoder._embed_points/_embed_boxes, with masks instead of indexing so
            # that the number of points stays dynamic.
            encoder = self.prompt_encoder
            embedding = encoder.pe_layer._pe_encoding((coords + 0.5) / self.img_size)
            labels = labels.unsqueeze(-1).expand_as(embedding)
            embedding = embedding * (labels != -1)
            embedding = embedding + encoder.not_a_point_embed.weight * (labels == -1)
            for i in range(encoder.num_point_embeddings):
                embedding = embedding + encoder.point_embeddings[i].weight * (labels == i)
            return embedding

        def _embed_mask(self, mask_input: torch.Tensor, has_mask: torch.Tensor) -> torch.Tensor:
            encoder = self.prompt_encoder
            no_mask = encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
            return has_mask * encoder.mask_downscaling(mask_input) + (1 - has_mask) * no_mask

        def _upscaled_logits(self, src: torch.Tensor, hyper_in: torch.Tensor) -> torch.Tensor:
            """MaskDecoder's output_upscaling + hypernetwork product, in token layout.

            src: 1x(h*w)xC transformer output (image tokens, row-major); hyper_in: 1xMxC/8.
            Returns 1xMx4hx4w logits. Each ConvTranspose2d(kernel 2, stride 2) is a MatMul
            giving every token its 2x2 children (a, b, channel), so LayerNorm2d normalises the
            last axis (one fused LayerNormalization, no NCHW reductions) and only the final
            M-channel logits are shuffled into image order.
            """
            up = self.mask_decoder.output_upscaling
            norm, first_act, second_act = up[1], up[2], up[4]
            tokens = src.reshape(-1, self.up1_weight.shape[0])  # (h*w) x C
            x = torch.matmul(tokens, self.up1_weight) + self.up1_bias  # (h*w) x (2*2*C1)
            x = x.reshape(-1, self.up1_channels)  # (h*w*2*2) x C1
            x = first_act(
                torch.nn.functional.layer_norm(
                    x, (norm.weight.shape[0],), norm.weight, norm.bias, norm.eps
                )
            )
            x = torch.matmul(x, self.up2_weight) + self.up2_bias  # (h*w*4) x (2*2*C2)
            x = second_act(x.reshape(-1, self.up2_channels))  # (h*w*16) x C2
            logits = torch.matmul(
                x, hyper_in.reshape(-1, self.up2_channels).transpose(0, 1)
            )  # (h*w*16) x M
            h, w = self.grid
            # Rows are ordered (i, j, a, b, a2, b2): pixel (4i + 2a + a2, 4j + 2b + b2).
            logits = logits.reshape(h, w, 2, 2, 2, 2, -1).permute(6, 0, 2, 4, 1, 3, 5)
            return logits.reshape(1, -1, 4 * h, 4 * w)

        def forward(self, image_embeddings, point_coords, point_labels, mask_input, has_mask_input):
            # As MaskDecoder.predict_masks for one prompt set, up to the upscaling (above).
            decoder = self.mask_decoder
            sparse = self._embed_points(point_coords, point_labels)
            output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], 0)
            tokens = torch.cat((output_tokens[None], sparse), dim=1)
            src = image_embeddings + self._embed_mask(mask_input, has_mask_input)
            # The regrouped TwoWayTransformer (two_way.py) with the precomputed key_pe.
            keys = src.flatten(2).permute(0, 2, 1)
            hs, src = regrouped_forward(decoder.transformer, keys, self.key_pe, tokens)
            mask_tokens_out = hs[:, 1 : 1 + decoder.num_mask_tokens, :]
            hyper_in = torch.stack(
                [
                    mlp(mask_tokens_out[:, i, :])
                    for i, mlp in enumerate(decoder.output_hypernetworks_mlps)
                ],
                dim=1,
            )
            return self._upscaled_logits(src, hyper_in), decoder.iou_prediction_head(hs[:, 0, :])

    return PromptsToLogits(sam_model).eval()


def export_decoder(sam_model, path: Path, fingerprint: str = "") -> Path:
    """Export `sam_model`'s prompt encoder + mask decoder to the ONNX file `path`, atomically.

    The file is written next to `path` under a temporary name and moved into place, so another
    process never sees half a file.
    """
    import warnings

    import onnx
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = _export_module(sam_model)
    embed_dim = sam_model.prompt_encoder.embed_dim
    grid_h, grid_w = sam_model.prompt_encoder.image_embedding_size
    mask_h, mask_w = sam_model.prompt_encoder.mask_input_size
    dummy = (
        torch.randn(1, embed_dim, grid_h, grid_w),
        torch.randint(0, MODEL_INPUT_SIZE, (1, 3, 2), dtype=torch.float32),
        torch.tensor([[1.0, 0.0, PAD_LABEL]]),
        torch.zeros(1, 1, mask_h, mask_w),
        torch.zeros(1),
    )
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings about Python floats in the graph
            torch.onnx.export(
                module,
                dummy,
                str(tmp),
                dynamo=False,  # the TorchScript exporter: no onnxscript needed
                input_names=list(INPUT_NAMES),
                output_names=list(OUTPUT_NAMES),
                dynamic_axes={
                    "point_coords": {1: "num_points"},
                    "point_labels": {1: "num_points"},
                    # Without a previous mask, decode feeds a 4x4 one: see NO_MASK_SIZE.
                    "mask_input": {2: "mask_height", 3: "mask_width"},
                },
                opset_version=OPSET,
                do_constant_folding=True,
            )
        model = onnx.load(str(tmp))
        for key, value in (("annotator_format", DECODER_FORMAT), ("fingerprint", fingerprint)):
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        atomic_write_bytes(path, model.SerializeToString())
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _session_options(spin: bool = False):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = physical_cores()
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # By default idle worker threads sleep instead of spinning: the app encodes the next images
    # while the user clicks, and spinning threads steal those cores. Measured here (2 cores,
    # vit_b decoder, 1024x768): idle CPU 12.1 ms without spinning, 11.1 ms with it (graph v2;
    # v1: 22.2 / 19.9); busy CPU (v1) 88 ms without, 123 ms with. bench/bench_decode.py prints
    # both.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return options


def _verified_stamp(path: Path) -> Path:
    return path.with_name(path.name + ".verified")


def _stamp_text(path: Path) -> str:
    """What a verified decoder file's stamp holds: the file's SHA-256 and the onnxruntime and
    format that reproduced the model with it."""
    import hashlib

    import onnxruntime as ort

    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return f"{DECODER_FORMAT} onnxruntime={ort.__version__} sha256={digest}\n"


def _is_verified(path: Path) -> bool:
    """Whether `check_against` passed for exactly these bytes under this onnxruntime: then the
    two torch decodes of the check (a second or more at start-up, torch's first calls) are
    skipped. Any change to the file, the runtime or the format checks it again."""
    try:
        return _verified_stamp(path).read_text(encoding="utf-8") == _stamp_text(path)
    except (OSError, UnicodeDecodeError):
        return False


def _mark_verified(path: Path) -> None:
    try:
        atomic_write_bytes(_verified_stamp(path), _stamp_text(path).encode())
    except OSError:  # a read-only cache: the check simply runs again next time
        logger.info("Could not write %s", _verified_stamp(path), exc_info=True)


class OnnxMaskDecoder:
    """Decodes prompts on a SAM embedding with an exported decoder in onnxruntime (CPU)."""

    def __init__(self, path: Path, fingerprint: str = "", *, spin: bool = False) -> None:
        """Open the exported decoder at `path`; raise ValueError if it is not one of ours.

        spin: let onnxruntime's idle threads busy-wait (lower latency on an otherwise idle CPU).
        """
        import onnxruntime as ort

        self.path = Path(path)
        self.session = ort.InferenceSession(
            str(self.path),
            _session_options(spin),
            providers=["CPUExecutionProvider"],
            # Its CPU kernel takes ~6 ms on 4096x256 where Add + LayerNormalization take ~0.6.
            disabled_optimizers=["SkipLayerNormFusion"],
        )
        meta = self.session.get_modelmeta().custom_metadata_map
        inputs = tuple(i.name for i in self.session.get_inputs())
        outputs = tuple(o.name for o in self.session.get_outputs())
        if meta.get("annotator_format") != DECODER_FORMAT or (inputs, outputs) != (
            INPUT_NAMES,
            OUTPUT_NAMES,
        ):
            raise ValueError(f"{self.path} is not an {DECODER_FORMAT} decoder")
        if fingerprint and meta.get("fingerprint") != fingerprint:
            raise ValueError(f"{self.path} was exported from another model")
        self.fingerprint = meta.get("fingerprint", "")
        self._no_mask = np.zeros((1, 1, NO_MASK_SIZE, NO_MASK_SIZE), np.float32)
        self._scratch = _Scratch()

    @classmethod
    def load_or_export(cls, sam_model, fingerprint: str, cache_dir: Path) -> OnnxMaskDecoder:
        """The decoder of `sam_model`, from `cache_dir/<fingerprint>.onnx`, exported if needed.

        A present, loadable file of this format and fingerprint that reproduces the model on a
        probe (`check_against`) is reused; anything else there (corrupt, truncated, another
        version, damaged weights) is replaced by a fresh export. Raises if the export itself
        fails or does not match the model (the caller then falls back to torch).
        """
        path = Path(cache_dir) / f"{fingerprint}.onnx"
        if path.is_file():
            try:
                decoder = cls(path, fingerprint)
                if not _is_verified(path):
                    decoder.check_against(sam_model)
                    _mark_verified(path)
                return decoder
            except Exception:  # corrupt, foreign or wrong: export again below
                logger.warning("Exporting the ONNX decoder again over %s", path, exc_info=True)
        export_decoder(sam_model, path, fingerprint)
        decoder = cls(path, fingerprint)
        decoder.check_against(sam_model)
        _mark_verified(path)
        return decoder

    def check_against(self, sam_model, tolerance: float = 1e-3) -> None:
        """Raise ValueError unless this graph reproduces `sam_model`'s decoder on a probe.

        One fixed random embedding and prompt (points, box corners), with a mask input and
        without one (the 4x4 no-mask input), through both; costs two torch decodes (~100 ms on a
        CPU). Catches a file whose weights were damaged but still parse, and any export or
        runtime that went wrong.
        """
        import torch

        rng = np.random.default_rng(20240401)
        features = rng.standard_normal((1, 256, 64, 64)).astype(np.float32)
        coords = rng.uniform(0, MODEL_INPUT_SIZE, (1, 4, 2)).astype(np.float32)
        labels = np.array([[1, 0, BOX_TOP_LEFT_LABEL, BOX_BOTTOM_RIGHT_LABEL]], np.float32)
        mask = rng.standard_normal((1, 1, LOW_RES_SIZE, LOW_RES_SIZE)).astype(np.float32)
        device = next(sam_model.mask_decoder.parameters()).device
        tensor = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
        for mask_input in (mask, None):
            ours, _ = self.session.run(
                None,
                {
                    "image_embeddings": features,
                    "point_coords": coords,
                    "point_labels": labels,
                    "mask_input": self._no_mask if mask_input is None else mask_input,
                    "has_mask_input": np.full(1, mask_input is not None, np.float32),
                },
            )
            with torch.no_grad():
                sparse, dense = sam_model.prompt_encoder(
                    points=(tensor(coords[:, :2]), tensor(labels[:, :2]).int()),
                    boxes=tensor(coords[:, 2:].reshape(1, 4)),
                    masks=None if mask_input is None else tensor(mask_input),
                )
                reference, _ = sam_model.mask_decoder.predict_masks(
                    image_embeddings=tensor(features),
                    image_pe=sam_model.prompt_encoder.get_dense_pe(),
                    sparse_prompt_embeddings=sparse,
                    dense_prompt_embeddings=dense,
                )
            reference = reference.float().cpu().numpy()
            error = float(np.abs(ours - reference).max())
            if not error <= tolerance * (1.0 + float(np.abs(reference).max())):
                raise ValueError(f"{self.path} differs from the model by {error:.3g}")

    # -- decoding ---------------------------------------------------------------------------

    def decode(self, embedding: Embedding, prompts: Prompts) -> Prediction:
        """Masks for `prompts`, as SamPredictor.predict(..., multimask_output=prompts.multimask).

        masks: CxHxW bool at embedding.original_size; scores: C float32; low_res_logits:
        Cx256x256 float32 (C = 3 with multimask, else 1). Only the best candidate's full-size
        mask is made before returning; the others are made on first access (Prediction.lazy).
        """
        if prompts.is_empty():
            raise ValueError("decode needs at least one point or a box")
        coords, labels = self._sparse_inputs(embedding, prompts)
        if prompts.mask_input is not None:
            mask_input = np.asarray(prompts.mask_input, np.float32).reshape(
                1, 1, LOW_RES_SIZE, LOW_RES_SIZE
            )
            has_mask = np.ones(1, np.float32)
        else:
            mask_input, has_mask = self._no_mask, np.zeros(1, np.float32)
        features = np.ascontiguousarray(embedding.features, dtype=np.float32)
        low_res, scores = self.session.run(
            None,
            {
                "image_embeddings": features,
                "point_coords": coords,
                "point_labels": labels,
                "mask_input": mask_input,
                "has_mask_input": has_mask,
            },
        )
        chosen = slice(1, None) if prompts.multimask else slice(0, 1)
        low_res = np.ascontiguousarray(low_res[0, chosen])
        scores = scores[0, chosen].astype(np.float32)
        # The displayed candidate (the best) is upscaled now; the others when first read.
        return Prediction.lazy(
            scores,
            low_res,
            embedding.original_size,
            _MaskUpscaler(low_res, embedding.input_size, self._scratch),
            eager=(int(np.argmax(scores)),),
        )

    @staticmethod
    def _sparse_inputs(embedding: Embedding, prompts: Prompts) -> tuple[np.ndarray, np.ndarray]:
        """Points (and box corners) in the model-input frame, as SamPredictor orders them.

        Returns coords 1xNx2 float32 and labels 1xN float32: the clicks, then either the box's
        two corners (labels 2, 3) or, without a box, one padding point (label -1).
        """
        coords = [np.asarray(prompts.points, np.float64).reshape(-1, 2)]
        labels = [np.asarray(prompts.labels, np.float64).reshape(-1)]
        if prompts.box is not None:
            coords.append(np.asarray(prompts.box, np.float64).reshape(2, 2))
            labels.append(np.array([BOX_TOP_LEFT_LABEL, BOX_BOTTOM_RIGHT_LABEL]))
        else:
            coords.append(np.zeros((1, 2)))
            labels.append(np.array([PAD_LABEL]))
        coords_all = np.concatenate(coords)
        # ResizeLongestSide.apply_coords: scale in float64, then torch casts to float32.
        (old_h, old_w), (new_h, new_w) = embedding.original_size, embedding.input_size
        coords_all *= (new_w / old_w, new_h / old_h)  # the padding point stays at (0, 0)
        return (
            coords_all.astype(np.float32)[None],
            np.concatenate(labels).astype(np.float32)[None],
        )


def upscale_masks(
    low_res: np.ndarray,
    input_size: tuple[int, int],
    original_size: tuple[int, int],
    large_output_pixels: int | None = None,
) -> np.ndarray:
    """Cx256x256 float32 logits -> CxHxW bool masks (logit > 0) at original_size (H, W).

    As Sam.postprocess_masks: bilinear (half-pixel centres, like F.interpolate with
    align_corners=False) to the 1024x1024 model input, crop to input_size (h, w), bilinear to
    original_size. Outputs above `large_output_pixels` (default LARGE_OUTPUT_PIXELS) per mask take
    the int16 path (see _INT16_RANGE); smaller ones stay in float32.
    """
    out_h, out_w = original_size
    masks = np.empty((len(low_res), out_h, out_w), dtype=bool)
    upscaler = _MaskUpscaler(low_res, input_size, large_output_pixels=large_output_pixels)
    for index, mask in enumerate(masks):
        upscaler(index, mask)
    return masks


class _Scratch:
    """One reusable int16 full-size buffer (a fresh 24 MB array per mask costs ~1 ms of page
    faults at 4000x3000). Used by whoever gets it first; a concurrent user (a lazy candidate
    made on the GUI thread while the worker decodes) allocates its own instead of waiting."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buffer = np.empty((0, 0), np.int16)

    @contextmanager
    def borrow(self, shape: tuple[int, int]):
        if not self._lock.acquire(blocking=False):
            yield np.empty(shape, np.int16)
            return
        try:
            if self._buffer.shape != shape:
                self._buffer = np.empty(shape, np.int16)
            yield self._buffer
        finally:
            self._lock.release()


class _MaskUpscaler:
    """make_mask(index, out) for Prediction.lazy: candidate `index` of Cx256x256 float32 logits
    -> `out` (HxW bool, written in place), as `upscale_masks`. Keeps only the logits it was
    given; thread-safe."""

    def __init__(
        self,
        low_res: np.ndarray,
        input_size: tuple[int, int],
        scratch: _Scratch | None = None,
        large_output_pixels: int | None = None,
    ) -> None:
        self.low_res = low_res
        self.input_size = input_size
        self.scratch = scratch or _Scratch()
        self.limit = LARGE_OUTPUT_PIXELS if large_output_pixels is None else large_output_pixels

    def __call__(self, index: int, out: np.ndarray) -> None:
        import cv2

        crop_h, crop_w = self.input_size
        out_h, out_w = out.shape
        logits = self.low_res[index]
        model_size = (MODEL_INPUT_SIZE, MODEL_INPUT_SIZE)
        if out_h * out_w <= self.limit:
            model_frame = cv2.resize(logits, model_size, interpolation=cv2.INTER_LINEAR)
            full = cv2.resize(
                model_frame[:crop_h, :crop_w], (out_w, out_h), interpolation=cv2.INTER_LINEAR
            )
            np.greater(full, 0, out=out)
            return
        # Quantised before both resizes: 65 k values to scale instead of ~800 k.
        peak = float(np.abs(logits).max())
        scale = _INT16_RANGE / peak if peak > 0 else 1.0
        quantized = np.rint(logits * scale).astype(np.int16)
        model_frame = cv2.resize(quantized, model_size, interpolation=cv2.INTER_LINEAR)
        with self.scratch.borrow((out_h, out_w)) as full:
            cv2.resize(
                model_frame[:crop_h, :crop_w],
                (out_w, out_h),
                dst=full,
                interpolation=cv2.INTER_LINEAR,
            )
            np.greater(full, 0, out=out)
