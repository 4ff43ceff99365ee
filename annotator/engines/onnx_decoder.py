"""SAM's prompt encoder + mask decoder exported to ONNX and run in onnxruntime.

Same semantics as `segment_anything.SamPredictor.predict`, about 3x faster on a CPU: the graph
returns the four low-resolution (256x256) candidates and their scores; the candidates that predict
would return (1..3 with multimask, 0 without) are then upscaled with OpenCV to the original image
size, cropping the padding by the real `Embedding.input_size` (segment_anything's own export crops
by the dummy image size it was exported with, which is wrong for other aspect ratios, #579).
Upscaling outside the graph lets big images take a faster int16 path (`upscale_masks`) and keeps
the graph free of the image size.

The app exports the decoder itself from the loaded checkpoint, once per model fingerprint, into the
user's cache folder; a file that is missing, corrupt or written by another version is re-exported.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from annotator.engines.base import Embedding, Prediction, Prompts

# Bump when the graph's inputs, outputs or semantics change: older files are then re-exported.
DECODER_FORMAT = "annotator-sam-decoder-v1"
INPUT_NAMES = ("image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input")
OUTPUT_NAMES = ("low_res_logits", "iou_predictions")
MODEL_INPUT_SIZE = 1024  # SAM's square input; the low-res logits cover it at 1/4 scale
LOW_RES_SIZE = 256
OPSET = 17
# Labels understood by the graph (as SamOnnxModel): -1 padding point, 0 background, 1 foreground,
# 2 and 3 the top-left and bottom-right box corners.
PAD_LABEL, BOX_TOP_LEFT_LABEL, BOX_BOTTOM_RIGHT_LABEL = -1.0, 2.0, 3.0
# For big images the last (largest) resize runs on int16 logits: OpenCV resizes int16 about twice
# as fast as float32. Its fixed-point weights (11 bits) move the 0-crossing by a fraction of a
# pixel, so only edge pixels can flip (measured: ~800 of 12 M pixels on a mask with long, wiggly
# edges; IoU with torch > 0.9999). The largest |logit| of a mask is scaled to this value.
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
    point_labels 1xN float, mask_input 1x1x256x256, has_mask_input 1) ->
    (low_res_logits 1x4x256x256, iou_predictions 1x4); candidate 0 is the single-mask output,
    1..3 the multimask outputs, exactly as MaskDecoder.predict_masks computes them.
    """
    import copy

    import torch

    class PromptsToLogits(torch.nn.Module):
        def __init__(self, sam) -> None:
            super().__init__()
            # Float32 copies on the CPU: the live model may sit on a GPU, and tracing must not
            # touch it. The two modules are small (~4 M parameters); the image encoder stays.
            self.prompt_encoder = copy.deepcopy(sam.prompt_encoder).float().cpu()
            self.mask_decoder = copy.deepcopy(sam.mask_decoder).float().cpu()
            self.img_size = float(sam.image_encoder.img_size)

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

        def forward(self, image_embeddings, point_coords, point_labels, mask_input, has_mask_input):
            return self.mask_decoder.predict_masks(
                image_embeddings=image_embeddings,
                image_pe=self.prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=self._embed_points(point_coords, point_labels),
                dense_prompt_embeddings=self._embed_mask(mask_input, has_mask_input),
            )

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
                dynamic_axes={"point_coords": {1: "num_points"}, "point_labels": {1: "num_points"}},
                opset_version=OPSET,
                do_constant_folding=True,
            )
        model = onnx.load(str(tmp))
        for key, value in (("annotator_format", DECODER_FORMAT), ("fingerprint", fingerprint)):
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        with open(tmp, "wb") as out:
            out.write(model.SerializeToString())
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
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
    # vit_b decoder, 1024x768): idle CPU 22.2 ms without spinning, 19.9 ms with it; busy CPU
    # 88 ms without, 123 ms with. bench/bench_decode.py prints both.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    return options


class OnnxMaskDecoder:
    """Decodes prompts on a SAM embedding with an exported decoder in onnxruntime (CPU)."""

    def __init__(self, path: Path, fingerprint: str = "", *, spin: bool = False) -> None:
        """Open the exported decoder at `path`; raise ValueError if it is not one of ours.

        spin: let onnxruntime's idle threads busy-wait (lower latency on an otherwise idle CPU).
        """
        import onnxruntime as ort

        self.path = Path(path)
        self.session = ort.InferenceSession(
            str(self.path), _session_options(spin), providers=["CPUExecutionProvider"]
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
        self._no_mask = np.zeros((1, 1, LOW_RES_SIZE, LOW_RES_SIZE), np.float32)

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
                decoder.check_against(sam_model)
                return decoder
            except Exception:  # corrupt, foreign or wrong: export again below
                pass
        export_decoder(sam_model, path, fingerprint)
        decoder = cls(path, fingerprint)
        decoder.check_against(sam_model)
        return decoder

    def check_against(self, sam_model, tolerance: float = 1e-3) -> None:
        """Raise ValueError unless this graph reproduces `sam_model`'s decoder on a probe.

        One fixed random embedding and prompt (points, box corners, a mask input) through both;
        costs one torch decode (~50 ms on a CPU). Catches a file whose weights were damaged
        but still parse, and any export that went wrong.
        """
        import torch

        rng = np.random.default_rng(20240401)
        features = rng.standard_normal((1, 256, 64, 64)).astype(np.float32)
        coords = rng.uniform(0, MODEL_INPUT_SIZE, (1, 4, 2)).astype(np.float32)
        labels = np.array([[1, 0, BOX_TOP_LEFT_LABEL, BOX_BOTTOM_RIGHT_LABEL]], np.float32)
        mask = rng.standard_normal((1, 1, LOW_RES_SIZE, LOW_RES_SIZE)).astype(np.float32)
        ours, _ = self.session.run(
            None,
            {
                "image_embeddings": features,
                "point_coords": coords,
                "point_labels": labels,
                "mask_input": mask,
                "has_mask_input": np.ones(1, np.float32),
            },
        )
        device = next(sam_model.mask_decoder.parameters()).device
        with torch.no_grad():
            tensor = lambda a: torch.from_numpy(a).to(device)  # noqa: E731
            sparse, dense = sam_model.prompt_encoder(
                points=(tensor(coords[:, :2]), tensor(labels[:, :2]).int()),
                boxes=tensor(coords[:, 2:].reshape(1, 4)),
                masks=tensor(mask),
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
        Cx256x256 float32 (C = 3 with multimask, else 1).
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
        masks = upscale_masks(low_res, embedding.input_size, embedding.original_size)
        return Prediction(
            masks=masks, scores=scores[0, chosen].astype(np.float32), low_res_logits=low_res
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
    limit = LARGE_OUTPUT_PIXELS if large_output_pixels is None else large_output_pixels
    out_h, out_w = original_size
    quantize = out_h * out_w > limit
    masks = np.empty((len(low_res), out_h, out_w), dtype=bool)
    for logits, mask in zip(low_res, masks, strict=True):
        _upscale_one(logits, input_size, mask, quantize)
    return masks


def _upscale_one(logits: np.ndarray, input_size, out: np.ndarray, quantize: bool) -> None:
    """One 256x256 float32 logit map -> `out` (HxW bool, written in place)."""
    import cv2

    crop_h, crop_w = input_size
    out_h, out_w = out.shape
    model_frame = cv2.resize(
        logits, (MODEL_INPUT_SIZE, MODEL_INPUT_SIZE), interpolation=cv2.INTER_LINEAR
    )[:crop_h, :crop_w]
    if quantize:
        peak = float(np.abs(model_frame).max())
        scale = _INT16_RANGE / peak if peak > 0 else 1.0
        model_frame = np.rint(model_frame * scale).astype(np.int16)
    full = cv2.resize(model_frame, (out_w, out_h), interpolation=cv2.INTER_LINEAR)
    np.greater(full, 0, out=out)
