"""The official Segment Anything checkpoints: where they live, how big they are, their SHA-256.

Facts from Meta's segment_anything release (README "Model Checkpoints"). The six hex characters in
each file name are the start of the file's MD5, not of its SHA-256, so the SHA-256 here is the only
check that a downloaded file is the real one.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Where Meta serves the checkpoints; `ANNOTATOR_MODEL_BASE_URL` replaces it (tests, mirrors).
OFFICIAL_BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything/"


@dataclass(frozen=True)
class CheckpointInfo:
    """One downloadable checkpoint.

    model_type: the segment_anything registry key ("vit_b", "vit_l", "vit_h").
    file_name: the file's name on the server and in the data folder.
    url: the full official URL (used unless a base URL override is given).
    size_bytes: the exact file size in bytes.
    sha256: the lowercase hex SHA-256 of the whole file.
    title / description: what a person reads when choosing (speed against quality).
    """

    model_type: str
    file_name: str
    url: str
    size_bytes: int
    sha256: str
    title: str
    description: str

    @property
    def size_text(self) -> str:
        """The size as a person reads it, e.g. "375 MB" or "2.4 GB" (decimal units)."""
        return format_bytes(self.size_bytes)


OFFICIAL_CHECKPOINTS: tuple[CheckpointInfo, ...] = (
    CheckpointInfo(
        model_type="vit_b",
        file_name="sam_vit_b_01ec64.pth",
        url=OFFICIAL_BASE_URL + "sam_vit_b_01ec64.pth",
        size_bytes=375_042_383,
        sha256="ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912",
        title="ViT-B (base)",
        description="Fastest and smallest; good masks for most objects. Best on a laptop CPU.",
    ),
    CheckpointInfo(
        model_type="vit_l",
        file_name="sam_vit_l_0b3195.pth",
        url=OFFICIAL_BASE_URL + "sam_vit_l_0b3195.pth",
        size_bytes=1_249_524_607,
        sha256="3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622",
        title="ViT-L (large)",
        description="Sharper edges on thin and small parts; about 3x slower than ViT-B per image.",
    ),
    CheckpointInfo(
        model_type="vit_h",
        file_name="sam_vit_h_4b8939.pth",
        url=OFFICIAL_BASE_URL + "sam_vit_h_4b8939.pth",
        size_bytes=2_564_550_879,
        sha256="a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e",
        title="ViT-H (huge)",
        description="Best quality, slowest (about 4x ViT-B); wants a GPU or patience.",
    ),
)


def official_checkpoint(model_type: str) -> CheckpointInfo:
    """The official checkpoint of `model_type` ("vit_b", "vit_l" or "vit_h").

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
