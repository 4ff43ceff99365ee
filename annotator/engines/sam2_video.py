"""Propagation through a sequence with SAM 2 / 2.1's video predictor, equal to
`sam2.sam2_video_predictor.SAM2VideoPredictor` as `build_sam2_video_predictor` builds it.

The stock predictor's `init_state` decodes every frame of the video into one tensor (12 MiB per
frame at 1024 px: a 10-minute clip needs more memory than a laptop has) and keeps every frame's
memory features for the life of the state. Here the predictor is the stock class, driven through
its own `add_new_points_or_box` / `add_new_mask` / `propagate_in_video`, with two changes to the
state it works on, neither of which changes a mask:

- `images` is a lazy sequence: frame i is read (through the project's image loader, so a video file
  is decoded on demand) and transformed exactly as sam2's JPEG loader does (PIL resize to the model
  size, /255, mean/std in float32) when the predictor asks for it. The predictor caches only the
  current frame's features itself.
- after each frame, the outputs of frames the predictor can no longer look at are dropped: it reads
  the memories of the last `num_maskmem` frames and the object pointers of the last
  `max_obj_ptrs_in_encoder` frames in the direction of travel, plus the conditioning (prompted)
  frames. A frame further than that window from the current frame and from every conditioning
  frame (a pass in the other direction starts at a conditioning frame) is never read again.
  Memory is flat in the number of frames; its state lives on the CPU (`offload_state_to_cpu`).

The model is built from the same hydra config as the image adapter (`annotator.engines.sam2`,
official size or the shapes' overrides) with the video predictor's class and post-processing, and
shares the image engine's weights when built from one (`from_image_engine`): no second copy.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from annotator.errors import UserError

DIRECTIONS = ("forward", "backward", "both")

# What build_sam2_video_predictor(..., apply_postprocessing=True) adds to every config.
_VIDEO_OVERRIDES = [
    "++model._target_=sam2.sam2_video_predictor.SAM2VideoPredictor",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_via_stability=true",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_delta=0.05",
    "++model.sam_mask_decoder_extra_args.dynamic_multimask_stability_thresh=0.98",
    "++model.binarize_mask_from_pts_for_mem_enc=true",
    "++model.fill_hole_area=8",
]
_IMG_MEAN = (0.485, 0.456, 0.406)
_IMG_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class TrackPrompt:
    """What the person gave for one track on one frame: clicks (xy pixels, labels 1/0) and/or a box
    (x0, y0, x1, y1 pixels), or a mask (HxW bool) instead."""

    track: int
    frame: int
    points: np.ndarray | None = None
    labels: np.ndarray | None = None
    box: tuple[float, float, float, float] | None = None
    mask: np.ndarray | None = None


@dataclass(frozen=True)
class FrameMasks:
    """One frame's result: track id -> HxW bool mask (empty masks included: the object is gone)."""

    frame: int
    masks: dict[int, np.ndarray] = field(default_factory=dict)


def memory_overrides(state_dict) -> list[str]:
    """Hydra overrides for the memory parts whose size shows in the shapes (the number of memory
    attention layers, of memories), where they differ from sam2's configs (4 and 7): shrunk models
    build too. What no shape shows (how many object pointers are read) stays the config's."""
    import re

    layers = {
        int(m.group(1))
        for k in state_dict
        if (m := re.match(r"memory_attention\.layers\.(\d+)\.", k))
    }
    overrides = []
    if layers and len(layers) != 4:
        overrides.append(f"++model.memory_attention.num_layers={len(layers)}")
    tpos = state_dict.get("maskmem_tpos_enc")
    if tpos is not None and int(tpos.shape[0]) != 7:
        overrides.append(f"++model.num_maskmem={int(tpos.shape[0])}")
    return overrides


def _build_predictor(architecture, extra_overrides=()):
    import sam2  # noqa: F401  (initialises hydra's config module "sam2")
    from hydra import compose
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from annotator.engines.families import skip_init

    cfg = compose(
        config_name=architecture.config_name(),
        overrides=[*architecture.overrides(), *extra_overrides, *_VIDEO_OVERRIDES],
    )
    OmegaConf.resolve(cfg)
    _quiet_stock_progress()
    with skip_init():
        return instantiate(cfg.model, _recursive_=True)


def _quiet_stock_progress() -> None:
    """propagate_in_video wraps its frames in tqdm, which would draw a second progress bar on the
    terminal under ours (and into the window's log): it gets the frames plainly instead."""
    import sam2.sam2_video_predictor as stock

    stock.tqdm = lambda iterable, *args, **kwargs: iterable


class VideoPropagator:
    """A SAM 2.x video predictor and how to run it over a sequence with bounded memory."""

    def __init__(self, predictor, device: str, name: str) -> None:
        self.predictor = predictor
        self.device = device
        self.name = name
        model = predictor
        reach = model.num_maskmem
        if model.use_obj_ptrs_in_encoder:
            reach = max(reach, model.max_obj_ptrs_in_encoder)
        # frames further than this from the current one are never read again (module doc)
        self.window = int(reach)

    @classmethod
    def from_state_dict(cls, state_dict, info, device: str, name: str) -> VideoPropagator:
        import torch

        from annotator.engines import families

        predictor = _build_predictor(info.config, memory_overrides(state_dict))
        families.load_into(predictor, state_dict, name, "SAM 2 video")
        predictor = predictor.float().eval().requires_grad_(False).to(torch.device(device))
        return cls(predictor, device, name)

    @classmethod
    def from_image_engine(cls, engine) -> VideoPropagator:
        """The video predictor sharing `engine`'s (a loaded SAM 2.x image engine) weights."""
        if getattr(engine, "family", None) != "sam2":
            title = getattr(engine, "name", "This model")
            raise UserError(
                f"{title} cannot propagate through frames: propagation needs a SAM 2 or SAM 2.1 "
                "checkpoint."
            )
        cached = getattr(engine, "_video_propagator", None)
        if cached is None:
            cached = cls.from_state_dict(
                engine.model.state_dict(), engine.info, engine.device, engine.name
            )
            engine._video_propagator = cached  # built once per engine
        return cached

    # ------------------------------------------------------------------------------ running
    def init_state(self, load_frame: Callable[[int], np.ndarray], frame_count: int, first=None):
        """The predictor's inference state over `frame_count` frames read by `load_frame(i)`
        (HxWx3 uint8 RGB), as `SAM2VideoPredictor.init_state` makes it but with lazy frames."""
        from collections import OrderedDict

        import torch

        model = self.predictor
        images = _LazyFrames(load_frame, frame_count, model.image_size)
        if first is None:
            first = load_frame(0)
        height, width = first.shape[:2]
        device = model.device
        state = {
            "images": images,
            "num_frames": frame_count,
            "offload_video_to_cpu": True,
            "offload_state_to_cpu": True,
            "video_height": int(height),
            "video_width": int(width),
            "device": device,
            "storage_device": torch.device("cpu"),
            "point_inputs_per_obj": {},
            "mask_inputs_per_obj": {},
            "cached_features": {},
            "constants": {},
            "obj_id_to_idx": OrderedDict(),
            "obj_idx_to_id": OrderedDict(),
            "obj_ids": [],
            "output_dict_per_obj": {},
            "temp_output_dict_per_obj": {},
            "frames_tracked_per_obj": {},
        }
        return state

    def add_prompt(self, state, prompt: TrackPrompt) -> None:
        import torch

        model = self.predictor
        with torch.inference_mode(), _quiet():
            if prompt.mask is not None:
                model.add_new_mask(state, prompt.frame, prompt.track, np.asarray(prompt.mask, bool))
                return
            points = labels = None
            if prompt.points is not None and len(prompt.points):
                points = np.asarray(prompt.points, np.float32).reshape(-1, 2)
                labels = np.asarray(prompt.labels, np.int32).reshape(-1)
            box = None if prompt.box is None else np.asarray(prompt.box, np.float32)
            model.add_new_points_or_box(
                state, prompt.frame, prompt.track, points=points, labels=labels, box=box
            )

    def propagate(
        self,
        state,
        start: int,
        direction: str = "forward",
        max_frames: int | None = None,
        cancelled: Callable[[], bool] = lambda: False,
    ) -> Iterator[FrameMasks]:
        """Each frame's masks, frame by frame, from `start` (which comes first, prompted or not) in
        `direction` ("both": forward, then backward from `start`), `max_frames` frames past start
        each way (None: to the end). Stops when `cancelled()`."""
        import torch

        if direction not in DIRECTIONS:
            raise UserError(f"Unknown direction {direction!r}: use {', '.join(DIRECTIONS)}.")
        passes = {"forward": [False], "backward": [True], "both": [False, True]}[direction]
        model = self.predictor
        for reverse in passes:
            with torch.inference_mode(), _quiet():
                frames = model.propagate_in_video(
                    state, start_frame_idx=start, max_frame_num_to_track=max_frames,
                    reverse=reverse,
                )  # fmt: skip
                for frame_idx, obj_ids, masks in frames:
                    result = FrameMasks(
                        int(frame_idx),
                        {
                            int(obj): (masks[i, 0] > 0.0).cpu().numpy()
                            for i, obj in enumerate(obj_ids)
                        },
                    )
                    self._forget_out_of_reach(state, int(frame_idx))
                    if reverse and passes == [False, True] and frame_idx == start:
                        continue  # the start frame came with the forward pass
                    yield result
                    if cancelled():
                        frames.close()
                        return

    def _forget_out_of_reach(self, state, current: int) -> None:
        window = self.window
        for outputs in state["output_dict_per_obj"].values():
            conditioning = list(outputs["cond_frame_outputs"])
            stale = [
                t
                for t in outputs["non_cond_frame_outputs"]
                if abs(t - current) > window and all(abs(t - c) > window for c in conditioning)
            ]
            for t in stale:
                del outputs["non_cond_frame_outputs"][t]


@contextmanager
def _quiet():
    """sam2 built without its CUDA extension warns on every mask that it skips the hole filling
    (the stock predictor skips it the same way): not news to the person."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*cannot import name '_C'")
        yield


class _LazyFrames(Sequence):
    """Frame i as the predictor's JPEG loader makes it (3xSxS float32, normalised), on demand."""

    def __init__(self, load_frame: Callable[[int], np.ndarray], count: int, size: int) -> None:
        import torch

        self._load = load_frame
        self._count = count
        self._size = int(size)
        self._mean = torch.tensor(_IMG_MEAN, dtype=torch.float32)[:, None, None]
        self._std = torch.tensor(_IMG_STD, dtype=torch.float32)[:, None, None]

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index):
        import torch
        from PIL import Image

        if not 0 <= index < self._count:
            raise IndexError(index)
        rgb = self._load(int(index))
        resized = np.array(Image.fromarray(rgb).convert("RGB").resize((self._size, self._size)))
        tensor = torch.from_numpy(resized / 255.0).permute(2, 0, 1).to(torch.float32)
        tensor -= self._mean
        tensor /= self._std
        return tensor


def load_propagator(checkpoint, device: str = "auto") -> VideoPropagator:
    """A SAM 2.x checkpoint's video predictor; UserError (one sentence) for any other file."""
    from annotator.engines import families, sam

    path = Path(checkpoint).expanduser()
    if path.is_dir():
        raise UserError(
            f"{path} is a folder; propagation needs a SAM 2 or SAM 2.1 checkpoint file (.pt)."
        )
    state_dict = families.read_state_dict(path, mmap=False)
    info = families.detect_family(state_dict, path.name)
    if info.family != "sam2":
        raise UserError(
            f"{path.name} is a {info.title} checkpoint, not SAM 2.x: propagation needs a SAM 2 "
            "or SAM 2.1 checkpoint."
        )
    families.require_package("sam2")
    name = f"{info.model_type} ({path.name})"
    return VideoPropagator.from_state_dict(state_dict, info, sam.resolve_device(device), name)
