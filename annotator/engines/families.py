"""One registry of model families: which family and size a checkpoint holds, and one loader.

`detect_family(state_dict)` reads the family from the checkpoint's keys and its configuration from
tensor shapes (so the official sizes and any other configuration the family's package can build,
the tests' shrunk models too, go through the same code); `load_model` hands the state dict to that
family's adapter module, which builds the model with the family's own package (on the meta device
where the package allows: no random initialisation) and wraps it in a `Segmenter`.

| family | adapter | explicit types | reference package (extra) |
| --- | --- | --- | --- |
| SAM 1 | engines/sam.py | vit_b, vit_l, vit_h | segment-anything (always installed) |
| SAM 2 / 2.1 | engines/sam2.py | sam2_hiera_t/s/b+/l, sam2.1_hiera_t/s/b+/l | sam2 (`sam2`) |
| SAM-HQ | engines/sam_hq.py | hq_vit_b/l/h, hq_vit_tiny | segment-anything-hq (`hq`) |
| MobileSAM | engines/mobilesam.py | mobilesam_vit_t | mobilesam-mirror (`mobilesam`) |
| EfficientViT-SAM | engines/efficientvit.py | efficientvit_sam_l0/l1/l2/xl0/xl1 | efficientsam (`efficientvit`) |
| transformers layout (a folder) | engines/hf.py | hf | transformers (`hf`) |
| SAM 3 (a transformers folder) | engines/sam3.py | sam3 | transformers (`sam3`) |

Nothing here imports torch at module level: `import annotator.engines.families` is cheap.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from annotator.errors import UserError


@dataclass(frozen=True)
class Family:
    key: str  # "sam1", "sam2", "hq", "mobilesam", "efficientvit"
    title: str  # shown to people: "SAM 2.1", "SAM-HQ"...
    adapter: str  # module with detect(state_dict, name) and load(...)
    package: str  # import name of the reference package
    extra: str  # pip extra of annotator that installs it ("" = always installed)
    type_names: tuple[str, ...]


FAMILIES: dict[str, Family] = {
    f.key: f
    for f in (
        Family("sam1", "SAM", "annotator.engines.sam", "segment_anything", "",
               ("vit_b", "vit_l", "vit_h")),
        Family("sam2", "SAM 2", "annotator.engines.sam2", "sam2", "sam2",
               tuple(f"{v}_hiera_{s}" for v in ("sam2", "sam2.1") for s in ("t", "s", "b+", "l"))),
        Family("hq", "SAM-HQ", "annotator.engines.sam_hq", "segment_anything_hq", "hq",
               ("hq_vit_b", "hq_vit_l", "hq_vit_h", "hq_vit_tiny")),
        Family("mobilesam", "MobileSAM", "annotator.engines.mobilesam", "mobile_sam", "mobilesam",
               ("mobilesam_vit_t",)),
        Family("efficientvit", "EfficientViT-SAM", "annotator.engines.efficientvit",
               "efficientsam", "efficientvit",
               tuple(f"efficientvit_sam_{s}" for s in ("l0", "l1", "l2", "xl0", "xl1"))),
        Family("hf", "Hugging Face", "annotator.engines.hf", "transformers", "hf", ("hf",)),
        Family("sam3", "SAM 3", "annotator.engines.sam3", "transformers", "sam3", ("sam3",)),
    )
}  # fmt: skip

# Every explicit --model-type name (besides "auto"), one scheme for all families.
MODEL_TYPES: tuple[str, ...] = tuple(n for f in FAMILIES.values() for n in f.type_names)
# The types that name a transformers folder (several files), not one checkpoint file: the model
# manager does not download those.
FOLDER_TYPES: tuple[str, ...] = ("hf", "sam3")


@dataclass(frozen=True)
class ModelInfo:
    """What a checkpoint holds.

    family: a FAMILIES key. model_type: one of MODEL_TYPES, or "custom" for a configuration that
    is none of the official sizes. config: the family adapter's architecture (frozen, with
    `describe()` and `key()`: a tuple of everything that changes the modules built).
    """

    family: str
    model_type: str
    config: Any

    @property
    def title(self) -> str:
        return FAMILIES[self.family].title

    def describe(self) -> str:
        """One line for `annotator info` and the status bar."""
        return f"{self.title} {self.config.describe()}"

    def what(self) -> str:
        """'a SAM-HQ hq_vit_b checkpoint' / 'a custom MobileSAM checkpoint (...)'."""
        if self.model_type == "custom":
            return f"a custom {self.title} checkpoint ({self.config.describe()})"
        return f"{_a(self.title)} {self.title} {self.model_type} checkpoint"


def _a(word: str) -> str:
    return "an" if word[:1].upper() in "AEIOU" else "a"


def _adapter(family: str):
    return importlib.import_module(FAMILIES[family].adapter)


def family_of_keys(state_dict: dict[str, Any]) -> str | None:
    """The family whose layout the state dict's keys have, or None (no shapes read)."""
    has = state_dict.__contains__
    if any(k.startswith("image_encoder.trunk.") for k in state_dict) and any(
        k.startswith("sam_mask_decoder.") for k in state_dict
    ):
        return "sam2"
    if any(k.startswith("image_encoder.backbone.") for k in state_dict) and any(
        k.startswith("image_encoder.neck.") for k in state_dict
    ):
        return "efficientvit"
    if has("mask_decoder.hf_token.weight"):
        return "hq"
    if has("image_encoder.patch_embed.seq.0.c.weight") and any(
        k.startswith("image_encoder.layers.") for k in state_dict
    ):
        return "mobilesam"
    if has("image_encoder.pos_embed") or has("mask_decoder.iou_token.weight"):
        return "sam1"
    return None


def detect_family(state_dict: dict[str, Any], name: str = "checkpoint") -> ModelInfo:
    """The family and configuration of a state dict (`name`: the file name, for messages).

    Raises UserError with one sentence naming what was found when no family fits.
    """
    family = family_of_keys(state_dict)
    if family is None:
        sample = ", ".join(sorted({k.split(".")[0] for k in state_dict})[:4]) or "nothing"
        raise UserError(
            f"{name} is a PyTorch file but not a checkpoint of a known Segment Anything family "
            f"(its top-level weights are {sample})."
        )
    return _adapter(family).detect(state_dict, name)


def read_state_dict(path: Path, *, mmap: bool) -> dict[str, Any]:
    """The checkpoint's state dict (plain, {"model": ...} or {"state_dict": ...}), read with
    torch.load(weights_only=True); raises UserError for a missing, damaged or unsafe file."""
    from annotator.engines.sam import _read_state_dict

    return _read_state_dict(path, mmap=mmap)


def inspect_checkpoint(path) -> ModelInfo:
    """What the checkpoint at `path` holds (memory-mapped: reads shapes, not weights); a folder
    is read as a transformers layout (its config.json)."""
    path = Path(path).expanduser()
    if path.is_dir():
        return _detect_folder(path)
    return detect_family(read_state_dict(path, mmap=True), path.name)


def _detect_folder(path: Path) -> ModelInfo:
    from annotator.engines import hf, sam3

    if not hf.is_hf_folder(path):
        raise UserError(f"{path} is a folder without config.json, not a transformers model folder.")
    config = sam3.read_config(path)
    if sam3.is_sam3_config(config):
        return sam3.detect_folder(path, config)
    return hf.detect_folder(path)


def check_model_type(found: ModelInfo, model_type: str, name: str) -> None:
    """Raise UserError unless `model_type` is "auto" or names what `found` (in file `name`) is."""
    if model_type == "auto":
        return
    if model_type not in MODEL_TYPES:
        raise UserError(f"Unknown model type {model_type!r}: use auto, {', '.join(MODEL_TYPES)}.")
    if found.model_type != model_type:
        raise UserError(f"{name} is {found.what()}, but {model_type} was asked for.")


def require_package(family: str) -> None:
    """Raise UserError naming the extra to install when the family's reference package is missing."""
    import warnings

    fam = FAMILIES[family]
    if family == "sam1":
        from annotator.engines.sam import segment_anything_modeling

        try:
            segment_anything_modeling()
        except ModuleNotFoundError as exc:
            raise UserError(
                "SAM checkpoints need the Python package segment_anything (not installed): "
                "install it with pip install segment-anything."
            ) from exc
        return
    try:
        # timm warns about its deprecated module paths and about TinyViT names that mobile_sam and
        # segment_anything_hq register again: nothing a user can act on.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.filterwarnings("ignore", message="Overwriting tiny_vit", category=UserWarning)
            importlib.import_module(fam.package)
    except ModuleNotFoundError as exc:
        hint = (
            "make install"
            if family == "sam2"
            else f"pip install 'annotator[{fam.extra}]'"
            if fam.extra
            else f"pip install {fam.package}"
        )
        missing = exc.name or fam.package
        raise UserError(
            f"This is {_a(fam.title)} {fam.title} checkpoint, which needs the Python package {missing} "
            f"(not installed): install it with {hint}."
        ) from exc


def import_package_lazily(name: str) -> None:
    """Make `import name.submodule` work without running `name/__init__.py` yet.

    segment_anything's __init__ imports its predictor, whose transforms import torchvision (and
    torchvision torch._dynamo): 1-3 s of a start-up that needs only `segment_anything.modeling`.
    The package module is created from its spec and put in sys.modules; its __init__ runs the
    first time anyone reads a name it defines (`from segment_anything import SamPredictor`), so
    every other importer sees the package as usual. Raises ModuleNotFoundError when absent.
    """
    import importlib.util
    import sys

    if name in sys.modules:
        return
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None or spec.submodule_search_locations is None:
        raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    package = importlib.util.module_from_spec(spec)

    def __getattr__(attribute: str):
        # Submodules already imported are attributes already; anything else is the __init__'s.
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        del package.__getattr__
        spec.loader.exec_module(package)
        return getattr(package, attribute)

    package.__getattr__ = __getattr__
    sys.modules[name] = package


def load_model(
    checkpoint,
    model_type: str = "auto",
    device: str = "auto",
    *,
    encoder: str = "fast",
    decoder: str = "auto",
):
    """Load any family's checkpoint into its engine (a `Segmenter`).

    checkpoint: a .pth/.pt file, or a transformers model folder. model_type: "auto" or one of MODEL_TYPES (checked against the
    file). device: "auto" or a torch device. encoder/decoder: SAM 1's speed paths ("fast",
    "stock", "bf16"; "auto", "torch", "onnx"); other families take the paths they have and
    ignore the rest. Raises UserError with one sentence for any bad file or argument.
    """
    from annotator.engines import sam

    if model_type != "auto" and model_type not in MODEL_TYPES:
        raise UserError(f"Unknown model type {model_type!r}: use auto, {', '.join(MODEL_TYPES)}.")
    if encoder not in sam.ENCODERS:
        raise UserError(f"Unknown encoder {encoder!r}: use {', '.join(sam.ENCODERS)}.")
    if decoder not in sam.DECODERS:
        raise UserError(f"Unknown decoder {decoder!r}: use {', '.join(sam.DECODERS)}.")
    path = Path(checkpoint).expanduser()
    if path.is_dir():
        from annotator.engines import hf

        info = _detect_folder(path)
        check_model_type(info, model_type, path.name)
        require_package(info.family)
        if info.family == "sam3":
            from annotator.engines import sam3

            return sam3.load_folder(path, info, device=sam.resolve_device(device))
        return hf.load_folder(path, info, device=sam.resolve_device(device))
    # Memory-mapped: only what is touched is read (a cached embedding needs the decoder alone);
    # each part is copied into memory before it first runs (copy_into_memory).
    state_dict = read_state_dict(path, mmap=True)
    info = detect_family(state_dict, path.name)
    check_model_type(info, model_type, path.name)
    require_package(info.family)
    resolved = sam.resolve_device(device)
    engine = _adapter(info.family).load(
        state_dict, info, path, device=resolved, encoder=encoder, decoder=decoder
    )
    if not getattr(engine, "copies_encoder_on_first_use", False):
        copy_into_memory(engine.model)
    return engine


def copy_into_memory(module) -> None:
    """Give every cpu parameter and buffer of `module` memory of its own (a copy).

    Checkpoints are read memory-mapped, and a mapped tensor reads the file for as long as it lives:
    a checkpoint copied over in place while the window runs would change the weights under the
    model (or fault the process). So every part of a model is copied before it first runs: all
    of it when it loads, or (SamEngine) the prompt encoder and mask decoder when it loads and the
    image encoder before its first image. Tensors shared by two modules stay shared.
    """
    import torch

    copies: dict[int, Any] = {}
    with torch.no_grad():
        for sub in module.modules():
            for param in sub._parameters.values():
                if param is None or param.device.type != "cpu" or param.layout != torch.strided:
                    continue
                if id(param) not in copies:
                    param.data = param.data.clone()
                    copies[id(param)] = param
            for name, buffer in sub._buffers.items():
                if buffer is None or buffer.device.type != "cpu" or buffer.layout != torch.strided:
                    continue
                if id(buffer) not in copies:
                    copies[id(buffer)] = buffer.clone()
                sub._buffers[name] = copies[id(buffer)]


def fingerprint(path: Path, info: ModelInfo, preprocess_version: int) -> str:
    """Identity of weights + family + preprocessing (keys the embedding cache): sha256 of the
    family, its preprocessing version, the configuration, the file size and its first and last
    4 MiB (hex, 16 characters). SAM 1 keeps its own (`sam.checkpoint_fingerprint`)."""
    import hashlib

    from annotator.engines.sam import _FINGERPRINT_EDGE_BYTES as edge

    digest = hashlib.sha256()
    size = path.stat().st_size
    digest.update(f"{info.family}|{preprocess_version}|{size}|{info.config.key()}|".encode())
    with open(path, "rb") as f:
        digest.update(f.read(edge))
        if size > edge:
            f.seek(max(edge, size - edge))
            digest.update(f.read())
    return digest.hexdigest()[:16]


def load_into(module, state_dict, name: str, title: str):
    """Assign the checkpoint's tensors to a module built on the meta device (strict), float32,
    eval, no grad; raises UserError naming the first mismatch."""
    try:
        module.load_state_dict(state_dict, strict=True, assign=True)
    except RuntimeError as exc:
        lines = str(exc).strip().splitlines()
        detail = lines[1].strip() if len(lines) > 1 else lines[0] if lines else ""
        raise UserError(
            f"{name} does not fit the {title} layout read from its shapes ({detail[:160]})."
        ) from exc
    return module


def check_no_meta(module, name: str) -> None:
    leftovers = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if leftovers:
        raise UserError(f"{name} lacks weights for {leftovers[0]}.")


class skip_init:
    """Build modules on the cpu without random initialisation: `torch.nn.init`'s fillers do
    nothing inside (the weights are assigned from the checkpoint right after). For packages whose
    constructors read values back (`.item()`), which the meta device cannot do; non-persistent
    buffers are computed as usual."""

    _NAMES = (
        "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_",
        "dirac_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
        "orthogonal_", "sparse_",
    )  # fmt: skip

    def __enter__(self):
        import torch

        self._saved = {
            n: getattr(torch.nn.init, n) for n in self._NAMES if hasattr(torch.nn.init, n)
        }
        for name in self._saved:
            setattr(torch.nn.init, name, _keep)
        return self

    def __exit__(self, *exc):
        import torch

        for name, fn in self._saved.items():
            setattr(torch.nn.init, name, fn)
        return False


def _keep(tensor, *args, **kwargs):
    return tensor
