"""Automatic mask generation ("segment everything") that reuses the embedding the engine already has.

One entry point, `generate_proposals`, for every family that has an automatic mask generator of
its own; the results are that generator's (subclassed, so the point grids, crops, filters,
non-maximum suppressions and small-region clean-up are the package's own code), with each
crop's features taken from an `Embedding` (`_EmbeddingSteps`):

- SAM 2 / 2.1: sam2's `SAM2AutomaticMaskGenerator`, its `_process_batch` as shipped on the
  predictor state `Sam2Engine.predictor_features` unpacks (the same tensors `set_image` makes).
- SAM-HQ: segment_anything_hq's `SamAutomaticMaskGenerator` (hq_token_only=False), likewise on
  `HqEngine.predictor_features`.
- SAM 1, MobileSAM, EfficientViT-SAM: segment_anything's `SamAutomaticMaskGenerator`, with the
  decoder loop made leaner (below).

For every family the full-image crop takes its features from an `Embedding` (the window's, or the
embedding cache's) instead of running the image encoder again; other crops go through the
engine's own `encode` (the fast encoder where the family has one). SAM 1's leaner loop:

- The mask decoder's two-way transformer runs once for a batch of points on one shared copy of
  the image embedding (stock repeats it per point), and its attention projections over the 4096
  image tokens are folded into the 7 prompt tokens (see `two_way.py`): about half the
  multiply-adds per point, equal to stock up to float rounding (~1e-6 on the logits).
- The predicted-IoU filter runs before anything is upsampled: points whose three candidates all fail
  it skip the decoder's upscaling convolutions, and masks that fail it are never interpolated to the
  image size. The stability score is computed at the image size as segment_anything does.
- Full-size logits are made a few masks at a time, so memory stays bounded on large images, and
  the kept masks are run-length encoded in one pass (the same RLE as stock `mask_to_rle_pytorch`,
  whose per-mask scan of the whole batch's changes costs seconds on noisy masks).

Nothing here imports Qt; torch and the family's package are imported when the work starts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import numpy as np

from annotator.engines.base import Embedding
from annotator.engines.two_way import two_way_transformer
from annotator.errors import UserError

ProgressCallback = Callable[[int, int], None]
CancelledCallback = Callable[[], bool]

# Full-size float logits made at once while upsampling (2**25 floats = 128 MiB), whatever the
# image size; stock segment_anything makes 3 x points_per_batch of them at once.
_UPSAMPLE_BUDGET_PIXELS = 1 << 25


class Cancelled(Exception):
    """`generate_proposals` stopped because its `cancelled()` callback returned True."""


@dataclass(frozen=True)
class AutoMaskSettings:
    """Settings of automatic mask generation, with segment_anything's names and defaults.

    See `segment_anything.SamAutomaticMaskGenerator` for each one's meaning. The total number of
    decoder prompts per crop is points_per_side**2; crop layer n uses
    points_per_side / crop_n_points_downscale_factor**n points per side.
    """

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.88
    stability_score_thresh: float = 0.95
    stability_score_offset: float = 1.0
    box_nms_thresh: float = 0.7
    crop_n_layers: int = 0
    crop_nms_thresh: float = 0.7
    crop_overlap_ratio: float = 512 / 1500
    crop_n_points_downscale_factor: int = 1
    min_mask_region_area: int = 0

    def checked(self) -> AutoMaskSettings:
        """Return self, or raise UserError naming the first value out of range."""
        if int(self.points_per_side) < 1:
            raise UserError(f"points_per_side must be at least 1, not {self.points_per_side}.")
        if int(self.points_per_batch) < 1:
            raise UserError(f"points_per_batch must be at least 1, not {self.points_per_batch}.")
        for name in ("pred_iou_thresh", "stability_score_thresh", "box_nms_thresh"):
            value = getattr(self, name)
            if not 0.0 <= float(value) <= 1.0:
                raise UserError(f"{name} must be between 0 and 1, not {value}.")
        if not 0.0 <= float(self.crop_nms_thresh) <= 1.0:
            raise UserError(f"crop_nms_thresh must be between 0 and 1, not {self.crop_nms_thresh}.")
        if not 0.0 <= float(self.crop_overlap_ratio) < 1.0:
            raise UserError(
                f"crop_overlap_ratio must be at least 0 and below 1, not {self.crop_overlap_ratio}."
            )
        if not 0 <= int(self.crop_n_layers) <= 4:
            raise UserError(f"crop_n_layers must be between 0 and 4, not {self.crop_n_layers}.")
        if int(self.crop_n_points_downscale_factor) < 1:
            raise UserError(
                "crop_n_points_downscale_factor must be at least 1, "
                f"not {self.crop_n_points_downscale_factor}."
            )
        if float(self.stability_score_offset) <= 0.0:
            raise UserError(
                f"stability_score_offset must be above 0, not {self.stability_score_offset}."
            )
        if int(self.min_mask_region_area) < 0:
            raise UserError(
                f"min_mask_region_area must be 0 or more, not {self.min_mask_region_area}."
            )
        return self

    def generator_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `SamAutomaticMaskGenerator(model, **kwargs)`."""
        return asdict(self)


@dataclass(frozen=True, eq=False)
class Proposal:
    """One automatically generated mask, as one record of `SamAutomaticMaskGenerator.generate`.

    mask: HxW bool at the original image size, decoded from `rle` (segment_anything's
      uncompressed RLE) each time it is read: a list of proposals holds run lengths, not a full
      mask each (100 proposals of a 12-MP image would be 1.2 GB), and callers pack or encode
      them one at a time.
    predicted_iou: the decoder's own quality estimate (filtered by pred_iou_thresh).
    stability_score: IoU of the mask thresholded at +-stability_score_offset around the cutoff.
    bbox: (x, y, w, h) in original-image pixels, as segment_anything reports it (x + w is the
      right-most column of the mask, so w is one less than the width in pixels).
    point_coords: (X, Y) original-image pixels of the grid point that prompted the mask.
    crop_box: (x, y, w, h) of the image crop the mask was generated in.
    """

    rle: dict
    predicted_iou: float
    stability_score: float
    bbox: tuple[float, float, float, float]
    point_coords: tuple[float, float]
    crop_box: tuple[int, int, int, int]

    @property
    def mask(self) -> np.ndarray:
        return _rle_to_mask(self.rle)

    @property
    def area(self) -> int:
        """Pixels in the mask (the sum of the RLE's odd runs)."""
        return int(sum(self.rle["counts"][1::2]))


def supports_automatic(engine) -> bool:
    """Whether `generate_proposals` can run with `engine`: it needs the family's torch model
    (`.model`) and a family whose automatic mask generator it runs (SAM 1, MobileSAM and
    EfficientViT-SAM: segment_anything's; SAM 2 / 2.1: sam2's; SAM-HQ: segment_anything_hq's).
    A family without one says so with `supports_automatic = False` (the transformers layout)."""
    return getattr(engine, "model", None) is not None and bool(
        getattr(engine, "supports_automatic", True)
    )


def automatic_unavailable(engine_name: str) -> str:
    """The sentence for an engine that cannot segment everything (see `supports_automatic`)."""
    return (
        f"{engine_name} cannot segment everything yet; SAM, SAM 2, SAM-HQ, MobileSAM and "
        "EfficientViT-SAM checkpoints can."
    )


def count_steps(image_size: tuple[int, int], settings: AutoMaskSettings) -> int:
    """How many progress steps `generate_proposals` reports for an image of (H, W) pixels:
    one per image crop (its encoding, or taking the given embedding) plus one per point batch."""
    from segment_anything.utils.amg import build_all_layer_point_grids, generate_crop_boxes

    grids = build_all_layer_point_grids(
        settings.points_per_side, settings.crop_n_layers, settings.crop_n_points_downscale_factor
    )
    _, layer_idxs = generate_crop_boxes(
        tuple(image_size), settings.crop_n_layers, settings.crop_overlap_ratio
    )
    batch = int(settings.points_per_batch)
    return sum(1 + -(-len(grids[layer]) // batch) for layer in layer_idxs)


def generate_proposals(
    engine,
    image: np.ndarray,
    settings: AutoMaskSettings | None = None,
    *,
    embedding: Embedding | None = None,
    progress: ProgressCallback | None = None,
    cancelled: CancelledCallback | None = None,
) -> list[Proposal]:
    """Segment everything in `image`: what the engine family's own automatic mask generator,
    `Generator(engine.model, **settings.generator_kwargs()).generate(image)`, returns, as
    Proposals, in the same order (the last NMS's, best first). Generator: segment_anything's
    SamAutomaticMaskGenerator (SAM 1, MobileSAM, EfficientViT-SAM; decoded by the leaner loop
    below), sam2's SAM2AutomaticMaskGenerator (SAM 2 / 2.1) or segment_anything_hq's
    SamAutomaticMaskGenerator (SAM-HQ); the latter two run as shipped on the engine's features.

    engine: an engine that `supports_automatic`: `.model` (the family's torch model),
      `.family`, `.encode(image) -> Embedding` and `.fingerprint`; SAM 2 and SAM-HQ engines also
      `.predictor_features(embedding)` (their predictor's image state).
    image: HxWx3 uint8 RGB, as `annotator.core.images.load_image` returns it.
    settings: AutoMaskSettings (None: segment_anything's defaults).
    embedding: this image's embedding by this engine (e.g. from the embedding cache); used for the
      full-image crop, so with crop_n_layers=0 the image encoder does not run at all. None: encode.
    progress: progress(done, total) after each crop's encoding and each batch of points, called in
      the calling thread; total is `count_steps(image.shape[:2], settings)`, done ends at total.
    cancelled: polled before each crop and before each batch of points, and within a batch in
      SAM 1's loop (a batch takes seconds on a CPU; SAM 2's and SAM-HQ's run as shipped); when it
      returns True, `Cancelled` is raised (nothing partial returned).
    Raises UserError for settings out of range or an engine that cannot, ValueError for an
    embedding of another image size or another model. Slow (seconds to minutes on a CPU): call it from a worker thread.
    """
    import torch

    if not supports_automatic(engine):
        raise UserError(automatic_unavailable(getattr(engine, "name", type(engine).__name__)))
    settings = (settings or AutoMaskSettings()).checked()
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 RGB image, got {getattr(image, 'shape', None)}.")
    if embedding is not None:
        if tuple(embedding.original_size) != tuple(image.shape[:2]):
            raise ValueError(
                f"the embedding is of a {embedding.original_size} image, not {image.shape[:2]}."
            )
        fingerprint = getattr(engine, "fingerprint", None)
        if fingerprint is not None and embedding.fingerprint != fingerprint:
            raise ValueError("the embedding was made by another model; encode the image again.")
    family = getattr(engine, "family", "sam1")
    generator_class = {"sam2": _sam2_generator_class, "hq": _hq_generator_class}.get(
        family, _generator_class
    )()
    generator = generator_class(engine, settings, embedding, progress, cancelled)
    with torch.inference_mode():
        return generator.proposals(image)


class _EmbeddingSteps:
    """What the three generators share (mixed in before a family's own automatic mask
    generator, whose `_generate_masks`, `_process_batch`, NMS and clean-up then run as shipped):
    each crop's features from an `Embedding` (the given one for the full image, else the
    engine's `encode` of the crop, which equals the family predictor's `set_image`), progress
    steps, cancel polls and the result as Proposals.

    A subclass sets the family's predictor state from an Embedding (`_use_embedding`), clears it
    (`_release_image`), and says whether the family's `generate` runs `postprocess_small_regions`
    after `_generate_masks` (segment_anything and SAM-HQ do; sam2 instead fills holes and removes
    sprinkles in each mask's logits inside its predictor) and which extra keyword arguments its
    `_process_batch` takes.
    """

    cleans_small_regions_after = True
    batch_kwargs: dict = {}

    def _start(self, engine, settings, embedding, progress, cancelled) -> None:
        self.engine = engine
        self.settings = settings
        self.embedding = embedding
        self.progress = progress
        self.cancelled = cancelled
        self.steps_done = 0
        self.steps_total = 0

    # -- the whole image --------------------------------------------------------------------

    def proposals(self, image: np.ndarray) -> list[Proposal]:
        """The family generator's `generate(image)` as Proposals (masks at the original size)."""
        from segment_anything.utils.amg import box_xyxy_to_xywh

        self.steps_done = 0
        self.steps_total = count_steps(image.shape[:2], self.settings)
        self._report()
        data = self._generate_masks(image)
        if self.cleans_small_regions_after and self.min_mask_region_area > 0:
            data = self.postprocess_small_regions(
                data, self.min_mask_region_area, max(self.box_nms_thresh, self.crop_nms_thresh)
            )
        return [
            Proposal(
                rle=rle,
                predicted_iou=float(data["iou_preds"][i]),
                stability_score=float(data["stability_score"][i]),
                bbox=tuple(float(v) for v in box_xyxy_to_xywh(data["boxes"][i]).tolist()),
                point_coords=tuple(float(v) for v in data["points"][i].tolist()),
                crop_box=tuple(int(v) for v in box_xyxy_to_xywh(data["crop_boxes"][i])),
            )
            for i, rle in enumerate(data["rles"])
        ]

    def _report(self) -> None:
        if self.progress is not None:
            self.progress(self.steps_done, self.steps_total)

    def _step(self) -> None:
        self.steps_done += 1
        self._report()

    def _check_cancelled(self) -> None:
        if self.cancelled is not None and self.cancelled():
            raise Cancelled("automatic mask generation was cancelled")

    # -- one crop -----------------------------------------------------------------------------

    def _process_crop(self, image, crop_box, crop_layer_idx, orig_size, *batch_args):
        """The families' stock `_process_crop` (the three are the same), with features from an
        Embedding and progress/cancel. batch_args: what the family's `_generate_masks` passes on
        to `_process_batch` (SAM-HQ: multimask_output)."""
        import torch
        from segment_anything.utils.amg import (
            MaskData,
            batch_iterator,
            uncrop_boxes_xyxy,
            uncrop_points,
        )
        from torchvision.ops.boxes import batched_nms

        self._check_cancelled()
        self._use_embedding(self._crop_embedding(image, crop_box, orig_size))
        self._step()
        x0, y0, x1, y1 = crop_box
        cropped_im_size = (y1 - y0, x1 - x0)

        points_scale = np.array(cropped_im_size)[None, ::-1]
        points_for_image = self.point_grids[crop_layer_idx] * points_scale

        data = MaskData()
        for (points,) in batch_iterator(self.points_per_batch, points_for_image):
            self._check_cancelled()
            data.cat(
                self._process_batch(
                    points, cropped_im_size, crop_box, orig_size, *batch_args, **self.batch_kwargs
                )
            )
            self._step()
        self._release_image()

        boxes = data["boxes"]
        keep_by_nms = batched_nms(
            boxes.float(),
            data["iou_preds"],
            torch.zeros(len(boxes), device=boxes.device),
            iou_threshold=self.box_nms_thresh,
        )
        data.filter(keep_by_nms)
        data["boxes"] = uncrop_boxes_xyxy(data["boxes"], crop_box)
        data["points"] = uncrop_points(data["points"], crop_box)
        # Shaped Nx4 even when N is 0 (stock then fails in the NMS between crops).
        crop_boxes = torch.tensor([list(crop_box)] * len(data["rles"]), dtype=torch.int64)
        data["crop_boxes"] = crop_boxes.reshape(-1, 4)
        return data

    def _crop_embedding(self, image, crop_box, orig_size) -> Embedding:
        x0, y0, x1, y1 = crop_box
        whole = (x0, y0, x1, y1) == (0, 0, orig_size[1], orig_size[0])
        if whole and self.embedding is not None:
            return self.embedding
        return self.engine.encode(np.ascontiguousarray(image[y0:y1, x0:x1, :]))

    def _use_embedding(self, embedding: Embedding) -> None:
        raise NotImplementedError

    def _release_image(self) -> None:
        raise NotImplementedError


@lru_cache(maxsize=1)
def _sam2_generator_class():
    """sam2's SAM2AutomaticMaskGenerator on Embeddings, defined on first use (sam2 loads lazily).

    AutoMaskSettings map one to one onto its arguments of the same names (pred_iou_thresh's
    default is segment_anything's 0.88 here, sam2's own is 0.8); the arguments it has beyond them
    keep sam2's defaults: mask_threshold 0, use_m2m False, multimask_output True. As in sam2,
    min_mask_region_area acts through the predictor's hole and sprinkle filling (which needs
    sam2's compiled extension; without it sam2 warns and skips it, and so does this).
    """
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    class _Sam2EmbeddingMaskGenerator(_EmbeddingSteps, SAM2AutomaticMaskGenerator):
        cleans_small_regions_after = False  # sam2's generate does not
        batch_kwargs = {"normalize": True}  # as sam2's _process_crop calls it

        def __init__(self, engine, settings, embedding, progress, cancelled) -> None:
            SAM2AutomaticMaskGenerator.__init__(
                self, engine.model, output_mode="binary_mask", **settings.generator_kwargs()
            )
            self._start(engine, settings, embedding, progress, cancelled)

        def _use_embedding(self, embedding: Embedding) -> None:
            """Set the predictor's image state as `SAM2ImagePredictor.set_image` would have."""
            predictor = self.predictor
            predictor.reset_predictor()
            predictor._features = self.engine.predictor_features(embedding)
            predictor._orig_hw = [tuple(int(v) for v in embedding.original_size)]
            predictor._is_image_set = True

        def _release_image(self) -> None:
            self.predictor.reset_predictor()

    return _Sam2EmbeddingMaskGenerator


@lru_cache(maxsize=1)
def _hq_generator_class():
    """segment_anything_hq's SamAutomaticMaskGenerator on Embeddings, defined on first use. Its
    predictor decodes with hq_token_only=False (SAM's best mask plus the HQ mask: one mask per
    point), as `HqEngine.decode` does."""
    from segment_anything_hq import SamAutomaticMaskGenerator as HqAutomaticMaskGenerator

    class _HqEmbeddingMaskGenerator(_EmbeddingSteps, HqAutomaticMaskGenerator):
        def __init__(self, engine, settings, embedding, progress, cancelled) -> None:
            HqAutomaticMaskGenerator.__init__(
                self, engine.model, output_mode="binary_mask", **settings.generator_kwargs()
            )
            self._start(engine, settings, embedding, progress, cancelled)

        def _use_embedding(self, embedding: Embedding) -> None:
            """Set the predictor's image state as `SamPredictor.set_image` would have."""
            predictor = self.predictor
            predictor.reset_image()
            features, interm = self.engine.predictor_features(embedding)
            predictor.features, predictor.interm_features = features, interm
            predictor.original_size = tuple(int(v) for v in embedding.original_size)
            predictor.input_size = tuple(int(v) for v in embedding.input_size)
            predictor.is_image_set = True

        def _release_image(self) -> None:
            self.predictor.reset_image()

    return _HqEmbeddingMaskGenerator


@lru_cache(maxsize=1)
def _generator_class():
    """`_EmbeddingMaskGenerator`, defined on first use so that segment_anything loads lazily."""
    import torch
    from segment_anything import SamAutomaticMaskGenerator
    from segment_anything.utils.amg import (
        MaskData,
        batched_mask_to_box,
        calculate_stability_score,
        is_box_near_crop_edge,
        uncrop_masks,
    )

    class _EmbeddingMaskGenerator(_EmbeddingSteps, SamAutomaticMaskGenerator):
        """SamAutomaticMaskGenerator with features from Embeddings and a leaner decoder loop.

        `_generate_masks`, `postprocess_small_regions` and the per-crop NMS are stock; only the
        way a crop's features are obtained and how a batch of points is decoded differ.
        """

        def __init__(self, engine, settings, embedding, progress, cancelled) -> None:
            SamAutomaticMaskGenerator.__init__(
                self, engine.model, output_mode="binary_mask", **settings.generator_kwargs()
            )
            self._start(engine, settings, embedding, progress, cancelled)

        def _release_image(self) -> None:
            self.predictor.reset_image()

        def _use_embedding(self, embedding: Embedding) -> None:
            """Set the predictor's image state as `SamPredictor.set_image` would have."""
            predictor = self.predictor
            predictor.reset_image()
            features = torch.as_tensor(np.asarray(embedding.features), dtype=torch.float32)
            predictor.features = features.to(predictor.device)
            predictor.original_size = tuple(int(v) for v in embedding.original_size)
            predictor.input_size = tuple(int(v) for v in embedding.input_size)
            predictor.is_image_set = True

        # -- one batch of points ------------------------------------------------------------------

        def _process_batch(self, points, im_size, crop_box, orig_size) -> MaskData:
            """Stock `_process_batch` with the predicted-IoU filter moved before upsampling.

            points: Bx2 float (X, Y) pixels of the crop. Returns MaskData with rles, boxes
            (XYXY, crop frame), iou_preds, points and stability_score of the kept masks.
            """
            orig_h, orig_w = orig_size
            predictor, model = self.predictor, self.predictor.model

            transformed_points = predictor.transform.apply_coords(points, im_size)
            in_points = torch.as_tensor(transformed_points, device=predictor.device)
            in_labels = torch.ones(in_points.shape[0], dtype=torch.int, device=in_points.device)
            sparse, dense = model.prompt_encoder(
                points=(in_points[:, None, :], in_labels[:, None]), boxes=None, masks=None
            )
            low_res, iou_preds, point_index = self._decode(sparse, dense)
            self._check_cancelled()  # a batch takes seconds on a CPU: answer cancel sooner

            data = MaskData(
                masks=low_res.flatten(0, 1),
                iou_preds=iou_preds.flatten(0, 1),
                points=torch.as_tensor(points[point_index.cpu().numpy()].repeat(3, axis=0)),
            )
            if self.pred_iou_thresh > 0.0:
                data.filter(data["iou_preds"] > self.pred_iou_thresh)

            masks, stability = self._upsample_and_score(data["masks"])
            data["masks"] = masks
            data["stability_score"] = stability
            if self.stability_score_thresh > 0.0:
                data.filter(data["stability_score"] >= self.stability_score_thresh)

            data["boxes"] = batched_mask_to_box(data["masks"])
            keep_mask = ~is_box_near_crop_edge(data["boxes"], crop_box, [0, 0, orig_w, orig_h])
            if not torch.all(keep_mask):
                data.filter(keep_mask)

            data["masks"] = uncrop_masks(data["masks"], crop_box, orig_h, orig_w)
            data["rles"] = _masks_to_rle(data["masks"])
            del data["masks"]
            return data

        def _decode(self, sparse, dense):
            """SAM's mask decoder on one batch of single-point prompts (multimask output).

            sparse: Bx2x256 prompt embeddings; dense: Bx256x64x64 (no mask input: all equal).
            Returns low_res (Kx3x256x256 float32 logits), iou_preds (Kx3) and point_index (K
            int64 indices into the batch) for the K points with at least one candidate above
            pred_iou_thresh (all B points when the threshold is 0).
            """
            decoder = self.predictor.model.mask_decoder
            batch = sparse.shape[0]
            output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], 0)
            tokens = torch.cat((output_tokens.unsqueeze(0).expand(batch, -1, -1), sparse), dim=1)
            # One copy of the image for the whole batch (stock repeats it B times with
            # repeat_interleave); no mask input, so the dense embeddings are all equal.
            src = self.predictor.features + dense[:1]
            image_pe = self.predictor.model.prompt_encoder.get_dense_pe()
            hs, keys = two_way_transformer(decoder.transformer, src, image_pe, tokens)
            _, c, h, w = src.shape

            iou_preds = decoder.iou_prediction_head(hs[:, 0, :])[:, 1:]
            if self.pred_iou_thresh > 0.0:
                point_index = torch.nonzero((iou_preds > self.pred_iou_thresh).any(dim=1))[:, 0]
            else:
                point_index = torch.arange(batch, device=hs.device)
            if len(point_index) == 0:
                empty = torch.zeros((0, 3, 4 * h, 4 * w), dtype=hs.dtype, device=hs.device)
                return empty, iou_preds[point_index], point_index

            kept_keys = keys.expand(batch, -1, -1)[point_index]
            upscaled = decoder.output_upscaling(kept_keys.transpose(1, 2).reshape(-1, c, h, w))
            mask_tokens = hs[point_index, 1 : 1 + decoder.num_mask_tokens, :]
            hyper_in = torch.stack(
                [
                    decoder.output_hypernetworks_mlps[i](mask_tokens[:, i, :])
                    for i in range(1, decoder.num_mask_tokens)
                ],
                dim=1,
            )
            k, c_up, h_up, w_up = upscaled.shape
            low_res = (hyper_in @ upscaled.view(k, c_up, h_up * w_up)).view(k, -1, h_up, w_up)
            return low_res, iou_preds[point_index], point_index

        def _upsample_and_score(self, low_res):
            """Low-res logits Nx256x256 -> (NxHxW bool masks, N stability scores), stock math,
            a few masks at a time (H, W: the crop's size)."""
            predictor, model = self.predictor, self.predictor.model
            height, width = predictor.original_size
            if len(low_res) == 0:
                empty = torch.zeros((0, height, width), dtype=torch.bool, device=low_res.device)
                return empty, torch.zeros((0,), device=low_res.device)
            side = model.image_encoder.img_size
            chunk = max(1, _UPSAMPLE_BUDGET_PIXELS // max(height * width, side * side))
            masks, scores = [], []
            for start in range(0, len(low_res), chunk):
                self._check_cancelled()
                logits = model.postprocess_masks(
                    low_res[start : start + chunk, None],
                    predictor.input_size,
                    predictor.original_size,
                )[:, 0]
                scores.append(
                    calculate_stability_score(
                        logits, model.mask_threshold, self.stability_score_offset
                    )
                )
                masks.append(logits > model.mask_threshold)
            return torch.cat(masks), torch.cat(scores)

    return _EmbeddingMaskGenerator


def _masks_to_rle(masks) -> list[dict]:
    """segment_anything's `mask_to_rle_pytorch`, equal output (uncompressed COCO RLE: column-major
    run lengths, starting with a run of zeros), without its per-mask scan of every change of the
    whole batch. masks: NxHxW bool tensor."""
    import torch

    count, height, width = masks.shape
    flat = masks.permute(0, 2, 1).flatten(1)
    rows, cols = (flat[:, 1:] ^ flat[:, :-1]).nonzero(as_tuple=True)  # sorted by row
    per_mask = torch.bincount(rows, minlength=count).tolist() if count else []
    starts = flat[:, 0].tolist() if count else []
    cols = (cols + 1).cpu().numpy()
    out, offset = [], 0
    for i in range(count):
        changes = cols[offset : offset + per_mask[i]]
        offset += per_mask[i]
        bounds = np.concatenate(([0], changes, [height * width]))
        counts = [] if not starts[i] else [0]
        counts.extend(np.diff(bounds).tolist())
        out.append({"size": [height, width], "counts": counts})
    return out


def _rle_to_mask(rle: dict) -> np.ndarray:
    """segment_anything's `rle_to_mask` (HxW bool from an uncompressed RLE), vectorised."""
    height, width = rle["size"]
    counts = np.asarray(rle["counts"], dtype=np.int64)
    values = np.arange(len(counts)) % 2 == 1  # runs alternate, starting with zeros
    flat = np.repeat(values, counts)
    return np.ascontiguousarray(flat.reshape(width, height).transpose())
