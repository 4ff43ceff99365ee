"""Command line: `annotator [PATH]` opens the window; `annotator COMMAND ...` runs headless.

Nothing here imports torch or Qt at module level: each command imports what it needs when it runs,
so `annotator --version` and `annotator validate` start in a fraction of a second.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from annotator import __version__
from annotator.errors import UserError

logger = logging.getLogger(__name__)

VERBOSE_FLAGS = ("-v", "--verbose")

# Each module defines `register(subparsers)`, adding its commands with `set_defaults(func=...)`;
# `func(args) -> int` is the exit status.
_COMMAND_MODULES = (
    "annotator.cli.engine_cmds",
    "annotator.cli.project_cmds",
    "annotator.cli.auto_cmd",
    "annotator.cli.models_cmd",
    "annotator.cli.eval_cmd",
    "annotator.cli.find_cmd",  # SAM 3 text prompts
    "annotator.cli.propagate_cmd",  # sequences and video
)


def _model_types() -> tuple[str, ...]:
    from annotator.engines.families import MODEL_TYPES as FAMILY_TYPES  # no torch: cheap

    return ("auto", *FAMILY_TYPES)


MODEL_TYPES = _model_types()


class _Parser(argparse.ArgumentParser):
    """Bad arguments are one line on stderr and exit status 2, like every other bad input."""

    def error(self, message: str):
        raise UserError(f"{message} (see: {self.prog} --help).")


def add_verbose_argument(parser: argparse.ArgumentParser) -> None:
    """-v/--verbose, listed in every --help; main() takes it out of argv before parsing, so it
    is accepted before or after the command name."""
    parser.add_argument(
        *VERBOSE_FLAGS,
        action="store_true",
        help="also write the log (DEBUG included) to stderr",
    )


def _split_verbose(argv: list[str]) -> tuple[list[str], bool]:
    """argv without -v/--verbose (up to a `--`), and whether one was there."""
    end = argv.index("--") if "--" in argv else len(argv)
    kept = [arg for arg in argv[:end] if arg not in VERBOSE_FLAGS]
    return kept + argv[end:], len(kept) != end


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--model-type and --device, the same for the window and every command that loads SAM."""
    parser.add_argument(
        "--model-type",
        default="auto",
        choices=MODEL_TYPES,
        help="SAM architecture; auto reads it from the checkpoint",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")


def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    """--ray and its options, the same for every batch command (annotator.cluster)."""
    group = parser.add_argument_group("Ray cluster (pip install 'annotator[cluster]')")
    group.add_argument("--ray", action="store_true", help="run the images on Ray worker actors")
    group.add_argument(
        "--ray-address",
        metavar="ADDRESS",
        help="an existing cluster, from one of its nodes: HOST:PORT (the head's) or auto "
        "(default: a local Ray runtime on this machine)",
    )
    group.add_argument(
        "--ray-actors",
        type=int,
        metavar="N",
        help="worker actors, each loading the model once (default: one per GPU, else one per "
        "--ray-actor-cpus cores)",
    )
    group.add_argument(
        "--ray-actor-cpus",
        type=float,
        default=1.0,
        metavar="N",
        help="CPU cores each actor takes (default 1)",
    )


def ray_options(args):
    """The RayOptions of parsed --ray-* arguments (checked), or None without --ray."""
    if not args.ray:
        if args.ray_address or args.ray_actors is not None:
            raise UserError("--ray-address and --ray-actors need --ray.")
        return None
    if args.ray_actors is not None and args.ray_actors < 1:
        raise UserError("--ray-actors must be at least 1.")
    if not args.ray_actor_cpus > 0:
        raise UserError("--ray-actor-cpus must be a positive number.")
    from annotator.cluster.ray_batch import RayOptions

    return RayOptions(args.ray_address or None, args.ray_actors, float(args.ray_actor_cpus))


def _command_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="annotator", description="Headless Annotator commands.")
    parser.add_argument("--version", action="version", version=f"annotator {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real missing dependency inside the module: surface it
                raise
            continue
        module.register(subparsers)
    _add_verbose_everywhere(parser)
    return parser


def _add_verbose_everywhere(parser: argparse.ArgumentParser) -> None:
    """-v in the help of the parser and of every (nested) command below it."""
    add_verbose_argument(parser)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command in {id(p): p for p in action.choices.values()}.values():  # aliases once
                _add_verbose_everywhere(command)


def _gui_parser(commands: list[str]) -> argparse.ArgumentParser:
    parser = _Parser(
        prog="annotator",
        description="Label images with Segment Anything. Commands: "
        + ", ".join(commands)
        + " (annotator COMMAND --help).",
    )
    parser.add_argument("--version", action="version", version=f"annotator {__version__}")
    parser.add_argument(
        "path",
        nargs="?",
        help="a folder of images, one image, or a project .json (default: the bundled samples)",
    )
    parser.add_argument("--checkpoint", help="SAM checkpoint (.pth) to load")
    add_model_arguments(parser)
    add_verbose_argument(parser)
    return parser


def _subcommands(parser: argparse.ArgumentParser) -> list[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    return []


def command_names() -> list[str]:
    return _subcommands(_command_parser())


def main(argv: list[str] | None = None) -> int:
    argv, verbose = _split_verbose(list(sys.argv[1:] if argv is None else argv))
    from annotator.log import setup_logging

    setup_logging(verbose)
    logger.info("annotator %s, Python %s: %s", __version__, sys.version.split()[0], argv)
    try:
        commands_parser = _command_parser()
        commands = _subcommands(commands_parser)
        if argv and argv[0] in commands:
            args = commands_parser.parse_args(argv)
            return int(args.func(args) or 0)
        args = _gui_parser(commands).parse_args(argv)
        from annotator.qt.app import run_app  # Qt only for the window

        return run_app(args)
    except UserError as exc:
        logger.info("Stopped: %s", exc)
        logger.debug("Raised here:", exc_info=True)
        print(f"annotator: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        logger.info("Interrupted")
        print("annotator: interrupted", file=sys.stderr)
        return 130
    except Exception:  # a bug: keep its traceback in the log, then Python prints it as ever
        logger.exception("Unexpected error")
        raise
