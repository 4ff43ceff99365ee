"""Find SAM checkpoints where people keep them, and check one against the registry.

Looked up in this order (the first is what the app uses unless the person picks another):
1. `$SAM_CHECKPOINT` (a path to a .pth file), the convention of several SAM tools;
2. the path saved in the app's settings (passed in: settings are Qt's, this module is not);
3. the app's data folder, `annotator.paths.data_dir() / "checkpoints"`, where downloads go.

`.part` files (unfinished downloads) are never returned.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from annotator.errors import UserError
from annotator.models.registry import CheckpointInfo, checkpoint_by_file_name

ENV_VAR = "SAM_CHECKPOINT"
_SUFFIXES = (".pth", ".pt")


@dataclass(frozen=True)
class FoundCheckpoint:
    """A checkpoint file that exists.

    path: absolute path of the file.
    source: where it was found: "environment", "settings" or "data folder".
    size_bytes: the file's size.
    official: the registry entry when the file name is an official one, else None.
    """

    path: Path
    source: str
    size_bytes: int
    official: CheckpointInfo | None

    @property
    def model_type(self) -> str | None:
        """The registry's type ("vit_b", "sam2.1_hiera_t"...) for an official file name; None (read
        it from the weights)."""
        return self.official.model_type if self.official else None

    @property
    def looks_complete(self) -> bool:
        """False when an official file name has the wrong size (a truncated copy); where the
        registry knows no exact size, only an empty file counts as incomplete."""
        if self.official is None:
            return True
        if self.official.size_bytes is None:
            return self.size_bytes > 0
        return self.size_bytes == self.official.size_bytes


def find_checkpoints(settings_path: str | os.PathLike | None = None) -> list[FoundCheckpoint]:
    """Every existing checkpoint from `$SAM_CHECKPOINT`, `settings_path` and the data folder.

    In that order, each file once (by resolved path); data-folder files sorted by name.
    Paths that do not exist are skipped (the caller may warn about `$SAM_CHECKPOINT` separately).
    """
    candidates: list[tuple[Path, str]] = []
    env_value = os.environ.get(ENV_VAR)
    if env_value:
        candidates.append((Path(env_value).expanduser(), "environment"))
    if settings_path:
        candidates.append((Path(settings_path).expanduser(), "settings"))
    candidates.extend((p, "data folder") for p in _data_folder_files())

    found: list[FoundCheckpoint] = []
    seen: set[Path] = set()
    for path, source in candidates:
        if not path.is_file():
            continue
        resolved = path.resolve()
        if resolved in seen:
            continue
        seen.add(resolved)
        found.append(
            FoundCheckpoint(
                path=resolved,
                source=source,
                size_bytes=resolved.stat().st_size,
                official=checkpoint_by_file_name(resolved.name),
            )
        )
    return found


def _data_folder_files() -> list[Path]:
    from annotator.models.download import checkpoints_dir

    folder = checkpoints_dir()
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in _SUFFIXES and p.is_file())


def verify_checkpoint(path: str | os.PathLike, sha256: str) -> bool:
    """True when the file at `path` has the SHA-256 `sha256` (hex, any case).

    Reads the whole file (about 1 s per GB). Raises UserError when the file does not exist.
    """
    from annotator.models.download import file_sha256

    path = Path(path)
    if not path.is_file():
        raise UserError(f"There is no checkpoint file at {path}.")
    return file_sha256(path) == sha256.lower()


def identify_checkpoint(path: str | os.PathLike) -> CheckpointInfo | None:
    """The official checkpoint whose bytes `path` holds (by size then SHA-256), whatever its name.

    Entries without a SHA-256 cannot be recognised by their bytes; entries without an exact size
    are hashed against whatever the file's size.
    """
    from annotator.models.download import file_sha256
    from annotator.models.registry import OFFICIAL_CHECKPOINTS

    path = Path(path)
    if not path.is_file():
        raise UserError(f"There is no checkpoint file at {path}.")
    size = path.stat().st_size
    same_size = [
        info
        for info in OFFICIAL_CHECKPOINTS
        if info.sha256 is not None and info.size_bytes in (size, None)
    ]
    if not same_size:
        return None
    digest = file_sha256(path)
    return next((info for info in same_size if info.sha256 == digest), None)
