"""The official checkpoints of every model family: where they live, their size, their SHA-256.

Every figure here comes from a public source, named in the entry's `source` (docs/decisions/
0011-model-manager-families.md has the whole table and how it was found):

- URLs: the publishers' own scripts and READMEs (segment_anything's README, facebookresearch/sam2
  `checkpoints/download_ckpts.sh`, SysCV/sam-hq's README, ChaoningZhang/MobileSAM's README,
  mit-han-lab/efficientvit `applications/efficientvit_sam/README.md`).
- Byte counts and SHA-256: the Git LFS pointers (`oid sha256:...`, `size N`) of the same files on
  the Hugging Face hub, in the publishers' own hub repositories where the hub shows them (facebook/*,
  lkeab/hq-sam, mit-han-lab/efficientvit-sam), otherwise in byte-identical mirrors whose SHA-256
  matches the publisher's page. An LFS oid is the SHA-256 of the whole file.

`size_bytes` is None where no source gives the exact byte count (the hub pages round to three
digits: `approx_bytes` keeps that figure for display); the SHA-256 then is the check. `sha256` is
None where no trustworthy SHA-256 was found; the download then checks the size and that the file
loads with `torch.load(weights_only=True)` as the family and size it should be (`note` says so).

SAM 1: the six hex characters in each file name are the start of the file's MD5, not of its
SHA-256, so the SHA-256 here is the only check that a downloaded file is the real one.
"""

from __future__ import annotations

import os
import shutil
import sys
from dataclasses import dataclass

#: Where Meta serves the SAM 1 checkpoints. `ANNOTATOR_MODEL_BASE_URL` replaces every entry's
#: URL with base + file name (tests, mirrors); file names are unique across the registry.
OFFICIAL_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything/"
SAM2_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/072824/"
SAM2_1_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824/"
HQ_BASE_URL = "https://huggingface.co/lkeab/hq-sam/resolve/main/"
MOBILESAM_URL = "https://github.com/ChaoningZhang/MobileSAM/raw/master/weights/mobile_sam.pt"
EFFICIENTVIT_BASE_URL = "https://huggingface.co/mit-han-lab/efficientvit-sam/resolve/main/"

NO_SHA256_NOTE = (
    "No trustworthy SHA-256 is published for this file: the download is checked by its size and "
    "by loading it (weights only) as the model it should be."
)


@dataclass(frozen=True)
class CheckpointInfo:
    """One downloadable checkpoint.

    model_type: the type name of `annotator.engines.families.MODEL_TYPES` ("vit_b",
        "sam2.1_hiera_t", "efficientvit_sam_l0"...), the same for `annotator models download`.
    file_name: the file's name on the server and in the data folder.
    url: the full official URL (used unless a base URL override is given).
    size_bytes: the exact file size in bytes, or None where no source gives it.
    sha256: the lowercase hex SHA-256 of the whole file, or None where none is trustworthy.
    title / description: what a person reads when choosing (speed against quality).
    family: the `families.FAMILIES` key ("sam1", "sam2", "hq", "mobilesam", "efficientvit").
    source: where the URL, the size and the SHA-256 were read (URLs, commits).
    approx_bytes: the rounded size a hub page shows, for display when size_bytes is None.
    note: what a person should know about how this file is checked, or "".
    """

    model_type: str
    file_name: str
    url: str
    size_bytes: int | None
    sha256: str | None
    title: str
    description: str
    family: str = "sam1"
    source: str = ""
    approx_bytes: int | None = None
    note: str = ""

    @property
    def size_text(self) -> str:
        """The size as a person reads it: "375 MB", "2.6 GB", or "about 139 MB" (decimal units)."""
        if self.size_bytes is not None:
            return format_bytes(self.size_bytes)
        if self.approx_bytes is not None:
            return "about " + format_bytes(self.approx_bytes)
        return "size unknown"

    @property
    def expected_bytes(self) -> int | None:
        """The exact size if known, else the rounded one (progress bars, percentages)."""
        return self.size_bytes if self.size_bytes is not None else self.approx_bytes


_SAM1_SOURCE = (
    "URL: facebookresearch/segment-anything README 'Model Checkpoints'; size and SHA-256: "
    "/work/shared/MODELS.md, the same as the LFS pointers of byte copies on the Hugging Face hub "
    "(e.g. huggingface.co/mashb1t/misc commit 78e1813)"
)
# Corroboration that Meta's server and the hub hold the same bytes for SAM 2.1: tools that
# download from Meta's URLs pin the hub's SHA-256.
_INTEL_PIN = (
    "the same SHA-256 is pinned for this dl.fbaipublicfiles.com URL by "
    "InterDigitalInc/CompressAI-Vision scripts/install.sh (commit 012d084) and an Intel "
    "MODEL_MAP in public code"
)
_SAM2_URL_SOURCE = "URL: facebookresearch/sam2 checkpoints/download_ckpts.sh"
_HQ_URL_SOURCE = (
    "URL: SysCV/sam-hq README 'Model Checkpoints' (links to huggingface.co/lkeab/hq-sam)"
)
_EVIT_SOURCE = (
    "URL: mit-han-lab/efficientvit applications/efficientvit_sam/README.md; SHA-256 and rounded "
    "size: Git LFS details of huggingface.co/mit-han-lab/efficientvit-sam/blob/main/{name} "
    "(the same short hashes in huggingface.co/fastforks/efficientvit-sam; the full ones pinned to "
    "this URL by InterDigitalInc/CompressAI-Vision scripts/install.sh, commit 012d084); no "
    "source found gives the exact byte count"
)


def _sam2(
    kind: str,
    size: str,
    file_size: int | None,
    sha: str,
    approx: int | None,
    title: str,
    description: str,
    source: str,
) -> CheckpointInfo:
    version = kind.partition("_hiera_")[0]  # "sam2" or "sam2.1"
    name = kind + ".pt"
    base = SAM2_1_BASE_URL if version == "sam2.1" else SAM2_BASE_URL
    return CheckpointInfo(
        model_type=f"{version}_hiera_{size}", file_name=name, url=base + name,
        size_bytes=file_size, sha256=sha, title=title, description=description, family="sam2",
        source=f"{_SAM2_URL_SOURCE}; {source}", approx_bytes=approx,
    )  # fmt: skip


def _evit(size: str, sha: str, approx: int, title: str, description: str) -> CheckpointInfo:
    name = f"efficientvit_sam_{size}.pt"
    return CheckpointInfo(
        model_type=f"efficientvit_sam_{size}", file_name=name, url=EFFICIENTVIT_BASE_URL + name,
        size_bytes=None, sha256=sha, title=title, description=description, family="efficientvit",
        source=_EVIT_SOURCE.format(name=name), approx_bytes=approx,
        note="The exact size is not published: the download is checked by its SHA-256.",
    )  # fmt: skip


def _hq(size: str, file_size: int, sha: str, commit: str, title: str, description: str):
    name = f"sam_hq_vit_{size}.pth"
    return CheckpointInfo(
        model_type=f"hq_vit_{size}", file_name=name, url=HQ_BASE_URL + name,
        size_bytes=file_size, sha256=sha, title=title, description=description, family="hq",
        source=f"{_HQ_URL_SOURCE}; size and SHA-256: LFS pointer in "
        f"huggingface.co/lkeab/hq-sam/commit/{commit}",
    )  # fmt: skip


OFFICIAL_CHECKPOINTS: tuple[CheckpointInfo, ...] = (
    CheckpointInfo(
        model_type="vit_b",
        file_name="sam_vit_b_01ec64.pth",
        url=OFFICIAL_BASE_URL + "sam_vit_b_01ec64.pth",
        size_bytes=375_042_383,
        sha256="ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
        title="SAM ViT-B (base)",
        description="The original SAM's smallest model; good masks for most objects.",
        source=_SAM1_SOURCE,
    ),
    CheckpointInfo(
        model_type="vit_l",
        file_name="sam_vit_l_0b3195.pth",
        url=OFFICIAL_BASE_URL + "sam_vit_l_0b3195.pth",
        size_bytes=1_249_524_607,
        sha256="3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
        title="SAM ViT-L (large)",
        description="Sharper edges on thin and small parts; about 3x slower than ViT-B per image.",
        source=_SAM1_SOURCE,
    ),
    CheckpointInfo(
        model_type="vit_h",
        file_name="sam_vit_h_4b8939.pth",
        url=OFFICIAL_BASE_URL + "sam_vit_h_4b8939.pth",
        size_bytes=2_564_550_879,
        sha256="a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
        title="SAM ViT-H (huge)",
        description="The original SAM's best quality, slowest (about 4x ViT-B); wants a GPU.",
        source=_SAM1_SOURCE,
    ),
    # SAM 2 (July 2024). Hashes: LFS details of Meta's hub repos facebook/sam2-hiera-*.
    _sam2("sam2_hiera_tiny", "t", 155_906_050,
          "65b50056e05bcb13694174f51bb6da89c894b57b75ccdf0ba6352c597c5d1125", None,
          "SAM 2 Hiera-T (tiny)", "First SAM 2 release, smallest; SAM 2.1 tiny replaces it.",
          "size and SHA-256: LFS pointer in huggingface.co/facebook/sam2-hiera-tiny/commit/a8e4b46"),
    _sam2("sam2_hiera_small", "s", None,
          "95949964d4e548409021d47b22712d5f1abf2564cc0c3c765ba599a24ac7dce3", 184_000_000,
          "SAM 2 Hiera-S (small)", "First SAM 2 release, small; SAM 2.1 small replaces it.",
          "SHA-256 and rounded size: LFS details of "
          "huggingface.co/facebook/sam2-hiera-small/blob/refs%2Fpr%2F1/sam2_hiera_small.pt; "
          "no source found gives the exact byte count"),
    _sam2("sam2_hiera_base_plus", "b+", 323_493_298,
          "d0bb7f236400a49669ffdd1be617959a8b1d1065081789d7bbff88eded3a8071", None,
          "SAM 2 Hiera-B+ (base plus)", "First SAM 2 release, base+; SAM 2.1 base+ replaces it.",
          "SHA-256: LFS details of huggingface.co/facebook/sam2-hiera-base-plus (blob b470a6f); "
          "exact size: LFS pointer of the same SHA-256 in "
          "huggingface.co/merve/sam2-hiera-base-plus/commit/838f027"),
    _sam2("sam2_hiera_large", "l", 897_952_466,
          "7442e4e9b732a508f80e141e7c2913437a3610ee0c77381a66658c3a445df87b", None,
          "SAM 2 Hiera-L (large)", "First SAM 2 release, large; SAM 2.1 large replaces it.",
          "SHA-256: LFS details of huggingface.co/merve/sam2-hiera-large (Hugging Face staff copy) "
          "and fffiloni/SAM2-Image-Predictor; exact size: LFS pointer in "
          "huggingface.co/spaces/sahirp/text_2_segment_any_vid/commit/cd3178c"),
    # SAM 2.1 (September 2024).
    _sam2("sam2.1_hiera_tiny", "t", 156_008_466,
          "7402e0d864fa82708a20fbd15bc84245c2f26dff0eb43a4b5b93452deb34be69", None,
          "SAM 2.1 Hiera-T (tiny)",
          "Meta's newest image and video model, smallest; a good balance on a CPU.",
          "SHA-256: LFS details of huggingface.co/facebook/sam2.1-hiera-tiny; exact size: LFS "
          "pointer in huggingface.co/camenduru/sam2-1-hiera/commit/cdd35a4 (same SHA-256)"),
    _sam2("sam2.1_hiera_small", "s", 184_416_285,
          "6d1aa6f30de5c92224f8172114de081d104bbd23dd9dc5c58996f0cad5dc4d38", None,
          "SAM 2.1 Hiera-S (small)", "Meta's newest image and video model, small.",
          "size and SHA-256: LFS pointer in huggingface.co/camenduru/sam2-1-hiera/commit/cdd35a4 "
          "(a copy of Meta's files; tiny matches facebook/sam2.1-hiera-tiny); " + _INTEL_PIN),
    _sam2("sam2.1_hiera_base_plus", "b+", 323_606_802,
          "a2345aede8715ab1d5d31b4a509fb160c5a4af1970f199d9054ccfb746c004c5", None,
          "SAM 2.1 Hiera-B+ (base plus)",
          "Meta's newest image and video model, base+; finer masks than tiny, about 2x slower.",
          "size and SHA-256: LFS pointers in huggingface.co/camenduru/sam2-1-hiera/commit/cdd35a4 "
          "and huggingface.co/Promethe-us/sam2/commit/d105770; " + _INTEL_PIN),
    _sam2("sam2.1_hiera_large", "l", 898_083_611,
          "2647878d5dfa5098f2f8649825738a9345572bae2d4350a2468587ece47dd318", None,
          "SAM 2.1 Hiera-L (large)",
          "Meta's newest and largest image and video model; best SAM 2.1 masks, wants a GPU.",
          "size and SHA-256: LFS pointers in huggingface.co/camenduru/sam2-1-hiera/commit/cdd35a4 "
          "and huggingface.co/datasets/phenanthra/tmp (discussion 2); " + _INTEL_PIN),
    # SAM-HQ: ViT-B/L/H and the light ViT-Tiny, on the authors' hub repository.
    _hq("b", 379_335_069, "14a9d662cd6f5a9c2dba6d40ab0058d88d287e4a18fd6fdc6ad5fb1a3fdeaa57",
        "8a94b5e", "SAM-HQ ViT-B", "SAM with a high-quality output token for finer boundaries."),
    _hq("l", 1_254_865_805, "e1a6c385d62bf005ded91a54d5ec55c985cfc4103ef89c08d90f39f04934c343",
        "519b37f", "SAM-HQ ViT-L", "SAM-HQ on SAM's ViT-L; about 3x slower than ViT-B."),
    _hq("h", 2_570_940_653, "a7ac14a085326d9fa6199c8c698c4f0e7280afdbb974d2c4660ec60877b45e35",
        "67ab824", "SAM-HQ ViT-H", "SAM-HQ on SAM's ViT-H, its authors' best; wants a GPU."),
    _hq("tiny", 42_526_881, "0f32c075ccdd870ae54db2f7630e7a0878ede5a2b06d05d6fe02c65a82fb7196",
        "a3a77cd", "Light SAM-HQ (ViT-Tiny)",
        "SAM-HQ on MobileSAM's tiny encoder: small and fast on a CPU."),
    CheckpointInfo(
        model_type="mobilesam_vit_t",
        file_name="mobile_sam.pt",
        url=MOBILESAM_URL,
        size_bytes=40_728_226,
        sha256="6dbb90523a35330fedd7f1d3dfc66f995213d81b29a5ca8108dbcdd4e37d6c2f",
        title="MobileSAM (ViT-T)",
        description="SAM's decoder with a 6M-parameter encoder: 41 MB, fast on a CPU.",
        family="mobilesam",
        source=(
            "URL: ChaoningZhang/MobileSAM README (weights/mobile_sam.pt); size and SHA-256: LFS "
            "pointers in huggingface.co/xingren23/comfyflow-models/commit/8297c11 and "
            "huggingface.co/iulia-elisa/XAMI-model/commit/a82e1f7, the same SHA-256 on the "
            "authors' hub Space dhkim2810/MobileSAM, and tools that pin that URL with "
            "40_728_226 bytes and this SHA-256"
        ),
    ),
    # EfficientViT-SAM: L0-L2 work at 512 px, XL0/XL1 at 1024 px.
    _evit("l0", "c4f994b01a16d48bcf2fbbb089448cfbf58fae5811edfa8113c953b8b8cc64b8", 139_000_000,
          "EfficientViT-SAM L0", "The fastest family here on a CPU; SAM-like masks at 512 px."),
    _evit("l1", "fa151df2b9b96896accd505470755cdd293a4c50cdabac95478f3fbd86d9152b", 191_000_000,
          "EfficientViT-SAM L1", "A little finer than L0, a little slower."),
    _evit("l2", "d4bfd842224cbb99de09acc3325e81ac5b7e8725c8fbdab152305e5d934bfe4a", 246_000_000,
          "EfficientViT-SAM L2", "The largest of the 512 px models."),
    _evit("xl0", "9bc2f87bd23d6e6d1f7b5beff910f98835c7c333fac73e695bac0bec685968f8", 468_000_000,
          "EfficientViT-SAM XL0", "Works at 1024 px like SAM; finer than the L models, slower."),
    _evit("xl1", "10f42277679427c1183dcff19758e536aa86bcc4304e4b387ff48865784be05c", 814_000_000,
          "EfficientViT-SAM XL1", "The family's best (its authors' COCO and LVIS figures)."),
)  # fmt: skip


#: Seconds `set_image` took for one new 1024x768 image with the family's reference package
#: (random weights, median of 3) on this project's 2-core CI-class machine (AMD EPYC, torch
#: 2.14.1): the table of issue #12 and /work/shared/MODELS.md "Newer families". A person's machine
#: differs; these are quoted as measured there, never as what the person will see. Clicks after
#: the embedding took 0.16-0.5 s with every family there.
MEASURED_CPU_EMBED_S: dict[str, float] = {
    "efficientvit_sam_l0": 1.3,
    "mobilesam_vit_t": 3.0,
    "hq_vit_tiny": 3.3,
    "sam2.1_hiera_t": 5.2,
    "efficientvit_sam_xl0": 6.4,
    "sam2.1_hiera_b+": 11.5,
    "vit_b": 23.7,
    "hq_vit_b": 24.4,
}
MEASURED_ON = "a 2-core test machine (random weights, 1024x768, the family's own code)"


@dataclass(frozen=True)
class Recommendation:
    """A model recommended for this machine, with why and (on a CPU) the measured time."""

    info: CheckpointInfo
    reason: str
    measured_embed_s: float | None

    @property
    def timing_text(self) -> str:
        """ "Measured: 1.3 s to embed a new image on a 2-core test machine (...)...", or "" if
        not measured (recommendations for CUDA)."""
        if self.measured_embed_s is None:
            return ""
        return (
            f"Measured: {self.measured_embed_s:.1f} s to embed a new image on {MEASURED_ON}; "
            "your computer will differ."
        )


# Why each is on the list: on a CPU the embedding time decides how it feels (measured above);
# with CUDA every family embeds fast, so the list goes by quality instead.
_CPU_PICKS = (
    ("efficientvit_sam_l0", "The fastest here on a CPU; SAM-like masks, computed at 512 px."),
    ("mobilesam_vit_t", "SAM's own decoder with a tiny encoder; a 41 MB download."),
    ("sam2.1_hiera_t", "Meta's newest model: better masks, and it tracks objects through video."),
)
_CUDA_PICKS = (
    ("sam2.1_hiera_l", "Meta's newest and largest: the best SAM 2.1 masks, and video tracking."),
    ("hq_vit_h", "SAM-HQ's largest, which its authors made for finer object boundaries."),
    ("sam2.1_hiera_b+", "Close to SAM 2.1 large at about a third of the download."),
)


def recommended_checkpoints(cuda: bool | None = None) -> tuple[Recommendation, ...]:
    """The short list the first-run dialog and the model menu offer, best first.

    cuda: whether a CUDA GPU will run the model; None asks `cuda_likely()` (never imports torch).
    """
    if cuda is None:
        cuda = cuda_likely()
    picks = _CUDA_PICKS if cuda else _CPU_PICKS
    by_type = {info.model_type: info for info in OFFICIAL_CHECKPOINTS}
    return tuple(
        Recommendation(
            by_type[model_type],
            reason,
            None if cuda else MEASURED_CPU_EMBED_S.get(model_type),
        )
        for model_type, reason in picks
        if model_type in by_type  # a registry cut down (tests, a mirror) offers what it has
    )


def missing_package_hint(family: str) -> str:
    """ "Needs the efficientsam package: pip install 'annotator[efficientvit]'." when the family's
    reference package is not installed, else "".

    find_spec looks the package up on sys.path without importing it (no torch on the GUI thread).
    """
    import importlib.util

    from annotator.engines.families import FAMILIES

    fam = FAMILIES[family]
    if not fam.extra:
        return ""
    try:
        if importlib.util.find_spec(fam.package) is not None:
            return ""
    except (ImportError, ValueError):
        pass
    hint = "make install" if family == "sam2" else f"pip install 'annotator[{fam.extra}]'"
    return f"Needs the {fam.package} package: {hint}."


def cuda_likely() -> bool:
    """Whether CUDA is probably usable, without importing torch (1-2 s, too slow for a dialog).

    When torch is already imported its answer counts; otherwise an NVIDIA driver on the machine
    (`nvidia-smi` on PATH, or Linux's /proc/driver/nvidia) is taken as a yes.
    """
    torch = sys.modules.get("torch")
    if torch is not None:
        try:
            return bool(torch.cuda.is_available())
        except Exception:  # a broken CUDA install: recommend for the CPU
            return False
    return shutil.which("nvidia-smi") is not None or os.path.exists("/proc/driver/nvidia/version")


def official_checkpoint(model_type: str) -> CheckpointInfo:
    """The official checkpoint of `model_type` (a `families.MODEL_TYPES` name, e.g. "vit_b").

    Raises UserError naming the known types when `model_type` is not one of them.
    """
    for info in OFFICIAL_CHECKPOINTS:
        if info.model_type == model_type:
            return info
    from annotator.errors import UserError

    known = ", ".join(i.model_type for i in OFFICIAL_CHECKPOINTS)
    raise UserError(f"Unknown model type {model_type!r}; choose one of {known}.")


def checkpoint_by_file_name(file_name: str) -> CheckpointInfo | None:
    """The official checkpoint whose file name is `file_name`, or None."""
    for info in OFFICIAL_CHECKPOINTS:
        if info.file_name == file_name:
            return info
    return None


def format_bytes(n: float) -> str:
    """Bytes as a person reads them in decimal units: 999 B, 12 kB, 375 MB, 1.2 GB."""
    n = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            if unit == "B":
                return f"{int(n)} B"
            return f"{n:.1f} {unit}" if abs(n) < 10 else f"{n:.0f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")
