"""`annotator models list|download TYPE|verify [TYPE|PATH]`: the checkpoints from a terminal.

annotator models list             # every family's official models, what is downloaded, found
annotator models download vit_b   # resumable, verified download with a progress bar
annotator models download efficientvit_sam_l0   # any type name of `annotator models list`
annotator models verify           # SHA-256 of every downloaded official checkpoint
annotator models verify PATH      # is this file an official checkpoint, and which?
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list, download and verify model checkpoints",
        description="List, download and verify the official checkpoints of every model family.",
    )
    actions = parser.add_subparsers(dest="models_action", metavar="ACTION")
    parser.set_defaults(func=lambda args: _no_action(parser))

    list_parser = actions.add_parser("list", help="official models and the checkpoints found")
    list_parser.set_defaults(func=_list)

    download = actions.add_parser("download", help="download one official checkpoint")
    download.add_argument(
        "model_type", metavar="TYPE", help="a type from `annotator models list`, e.g. vit_b"
    )
    download.add_argument(
        "--dir", type=Path, default=None, help="folder to save into (default: the data folder)"
    )
    download.add_argument(
        "--base-url", default=None, help="mirror to download from (default: the publisher's)"
    )
    download.set_defaults(func=_download)

    verify = actions.add_parser("verify", help="check SHA-256 of downloaded checkpoints or a file")
    verify.add_argument(
        "target", nargs="?", metavar="TYPE|PATH", help="a model type or a checkpoint file"
    )
    verify.set_defaults(func=_verify)


def _no_action(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _list(args) -> int:
    from annotator.engines.families import FAMILIES
    from annotator.models import registry
    from annotator.models.discovery import find_checkpoints
    from annotator.models.download import checkpoints_dir

    folder = checkpoints_dir()
    print(f"Official checkpoints (data folder: {folder}):")
    print(f"  {'TYPE':21} {'FAMILY':17} {'SIZE':>12}  {'SHA-256':8} STATE")
    for info in registry.OFFICIAL_CHECKPOINTS:
        family = FAMILIES[info.family].title
        sha = "known" if info.sha256 else "none"
        state = _state(info, folder)
        print(f"  {info.model_type:21} {family:17} {info.size_text:>12}  {sha:8} {state}")
    fast = ", ".join(
        f"{r.info.model_type} {r.measured_embed_s:.1f} s"
        for r in registry.recommended_checkpoints(cuda=False)
    )
    if fast:
        print(f"Fast on a CPU, to embed a new image on {registry.MEASURED_ON}: {fast}.")
    print(
        "Hugging Face transformers folders (types hf and sam3) are not downloaded here: fetch one with "
        "huggingface-cli download and pass the folder as --checkpoint."
    )
    others = [c for c in find_checkpoints() if c.source != "data folder" or c.official is None]
    if others:
        print("Other checkpoints found:")
        for found in others:
            print(f"  {found.source:12} {found.path}")
    return 0


def _state(info, folder: Path) -> str:
    """ "downloaded", "wrong size", "partial (25%, resume with download)" or "not downloaded"."""
    from annotator.models.download import part_path

    final = folder / info.file_name
    part = part_path(final)
    if final.is_file():
        if info.size_bytes is None or final.stat().st_size == info.size_bytes:
            return "downloaded"
        return "wrong size"
    if part.is_file():
        expected = info.expected_bytes
        if not expected:
            return "partial (resume with download)"
        percent = min(99, 100 * part.stat().st_size / expected)
        return f"partial ({percent:.0f}%, resume with download)"
    return "not downloaded"


def _download(args) -> int:
    from tqdm import tqdm

    from annotator.models import registry
    from annotator.models.download import download_checkpoint

    info = registry.official_checkpoint(args.model_type)
    with tqdm(
        total=info.expected_bytes,
        unit="B",
        unit_scale=True,
        unit_divisor=1000,
        desc=info.file_name,
        file=sys.stderr,
        dynamic_ncols=True,
    ) as bar:

        def progress(done: int, total: int, speed: float, eta: float | None) -> None:
            if total and bar.total != total:  # the server's length, where the size is not known
                bar.total = total
            bar.update(done - bar.n)

        try:
            path = download_checkpoint(info, args.dir, base_url=args.base_url, progress=progress)
        except KeyboardInterrupt:
            bar.leave = False
            bar.close()
            print("annotator: interrupted; run the same command to resume.", file=sys.stderr)
            return 130
        except BaseException:
            bar.leave = False  # the error message is the last line, not a stale bar
            raise
    print(path)
    missing = registry.missing_package_hint(info.family)
    if missing:  # downloaded fine, but it will not load until the package is there
        print(f"annotator: {missing}", file=sys.stderr)
    return 0


def _verify(args) -> int:
    from annotator.errors import UserError
    from annotator.models import registry
    from annotator.models.discovery import identify_checkpoint, verify_checkpoint
    from annotator.models.download import checkpoints_dir

    target = args.target
    if target is None:
        pairs = [
            (info, checkpoints_dir() / info.file_name)
            for info in registry.OFFICIAL_CHECKPOINTS
            if (checkpoints_dir() / info.file_name).is_file()
        ]
        if not pairs:
            raise UserError(
                f"No official checkpoint is downloaded in {checkpoints_dir()}; "
                "try `annotator models download vit_b`."
            )
    elif target in {info.model_type for info in registry.OFFICIAL_CHECKPOINTS}:
        info = registry.official_checkpoint(target)
        pairs = [(info, checkpoints_dir() / info.file_name)]
    else:
        path = Path(target)
        info = registry.checkpoint_by_file_name(path.name) or identify_checkpoint(path)
        if info is None:
            print(f"UNKNOWN  {path}: not one of the official checkpoints")
            return 1
        pairs = [(info, path)]

    failures = 0
    for info, path in pairs:
        if info.sha256 is None:  # nothing published to compare with: say so, do not guess
            print(f"{'NO-HASH':8} {info.model_type}  {path} (no published SHA-256)")
            continue
        ok = verify_checkpoint(path, info.sha256)
        failures += not ok
        print(f"{'OK' if ok else 'MISMATCH':8} {info.model_type}  {path}")
    return 1 if failures else 0
