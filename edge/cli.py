"""The ``showsay`` command line: one entry point, one subcommand per task.

Runtime subcommands live in ``edge``; ``train`` and ``export`` are separate packages with heavier
dependencies (torch, onnx, tensorrt), loaded by name only when their subcommand is run, so the
on-device runtime never imports them.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Modules that each define ``register(subparsers)``; their subcommands set ``func(args) -> int``.
COMMAND_MODULES = (
    "edge.commands.check",
    "edge.commands.bench",
    "edge.commands.data",
    "edge.commands.client",
    "edge.commands.memory",
    "edge.commands.senses",
    "edge.commands.scenes",
    "edge.commands.run",
    "edge.commands.demo",
    "edge.commands.bench_latency",
)
# Subcommands served by other packages: name -> (module with main(argv) -> int, extra to install, help).
DELEGATED = {
    "train": ("train.cli", "train", "train a speech or image encoder (needs the 'train' extra)"),
    "export": ("export.cli", "train", "export encoders to ONNX or TensorRT engines"),
}


def run_group(prog: str, description: str, modules: tuple[str, ...], argv: list[str]) -> int:
    """Parse ``argv`` for a group of subcommands (``showsay train ...``) whose modules each define ``register(sub)``.

    Each registered parser sets ``func(args) -> int``. A module that cannot be imported (a missing
    extra) gives one message naming it, not a traceback.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    sub = parser.add_subparsers(dest="what", metavar="WHAT", required=True)
    for name in modules:
        try:
            importlib.import_module(name).register(sub)
        except ImportError as exc:
            print(f"{prog}: {name} cannot be loaded ({exc}); install the 'train' extra: pip install -e '.[train]'", file=sys.stderr)
            return 1
    args = parser.parse_args(argv)
    logging.getLogger(prog.replace(" ", ".")).debug("%s %s", prog, args.what)
    return int(args.func(args))


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser."""
    parser = argparse.ArgumentParser(prog="showsay", description="Learn words from one demonstration; find the object when asked.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    for name, (_, _, help_text) in DELEGATED.items():
        p = sub.add_parser(name, help=help_text, add_help=False)
        p.add_argument("rest", nargs=argparse.REMAINDER)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; returns the process exit status."""
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    args = parser.parse_args(argv)
    from edge.logs import configure_logging

    configure_logging(args.verbose)  # a private copy of stderr, journald priorities, repeats held back
    if args.command in DELEGATED:
        module, extra, _ = DELEGATED[args.command]
        try:
            delegate = importlib.import_module(module)
        except ImportError as exc:
            print(f"showsay {args.command}: needs the '{extra}' extra ({exc}); install with: pip install 'showsay[{extra}]'", file=sys.stderr)
            return 1
        return int(delegate.main(args.rest))
    return int(args.func(args))
