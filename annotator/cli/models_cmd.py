"""`annotator models list|download TYPE|verify [TYPE|PATH]`: the SAM checkpoints from a terminal.

annotator models list             # the official models, what is downloaded, what else was found
annotator models download vit_b   # resumable, verified download with a progress bar
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
        help="list, download and verify SAM checkpoints",
        description="List, download and verify the official SAM checkpoints.",
    )
    actions = parser.add_subparsers(dest="models_action", metavar="ACTION")
    parser.set_defaults(func=lambda args: _no_action(parser))

    list_parser = actions.add_parser("list", help="official models and the checkpoints found")
    list_parser.set_defaults(func=_list)

    download = actions.add_parser("download", help="download one official checkpoint")
    download.add_argument("model_type", metavar="TYPE", help="vit_b, vit_l or vit_h")
    download.add_argument(
        "--dir", type=Path, default=None, help="folder to save into (default: the data folder)"
    )
    download.add_argument(
        "--base-url", default=None, help="mirror to download from (default: Meta's server)"
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
    from annotator.models import registry
    from annotator.models.discovery import find_checkpoints
    from annotator.models.download import checkpoints_dir, part_path

    folder = checkpoints_dir()
    print(f"Official SAM checkpoints (data folder: {folder}):")
    for info in registry.OFFICIAL_CHECKPOINTS:
        final = folder / info.file_name
        part = part_path(final)
        if final.is_file():
            state = "downloaded" if final.stat().st_size == info.size_bytes else "wrong size"
        elif part.is_file():
            percent = 100 * part.stat().st_size / info.size_bytes
            state = f"partial ({percent:.0f}%, resume with download)"
        else:
            state = "not downloaded"
        print(f"  {info.model_type:6} {info.size_text:>7}  {state:16} {info.description}")
    others = [c for c in find_checkpoints() if c.source != "data folder" or c.official is None]
    if others:
        print("Other checkpoints found:")
        for found in others:
            print(f"  {found.source:12} {found.path}")
    return 0


def _download(args) -> int:
    from tqdm import tqdm

    from annotator.models.download import download_checkpoint
    from annotator.models.registry import official_checkpoint

    info = official_checkpoint(args.model_type)
    with tqdm(
        total=info.size_bytes,
        unit="B",
        unit_scale=True,
        unit_divisor=1000,
        desc=info.file_name,
        file=sys.stderr,
        dynamic_ncols=True,
    ) as bar:

        def progress(done: int, total: int, speed: float, eta: float | None) -> None:
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
            print(f"UNKNOWN  {path}: not one of the official SAM checkpoints")
            return 1
        pairs = [(info, path)]

    failures = 0
    for info, path in pairs:
        ok = verify_checkpoint(path, info.sha256)
        failures += not ok
        print(f"{'OK' if ok else 'MISMATCH':8} {info.model_type}  {path}")
    return 1 if failures else 0
