"""``showsay export ...``: subcommands from the modules in EXPORT_COMMANDS, each with ``register(sub)``."""
from __future__ import annotations

import argparse
import importlib
import logging

# Each module defines register(subparsers) and sets func(args) -> int on its parsers.
EXPORT_COMMANDS: tuple[str, ...] = ("export.onnx_export", "export.engine", "export.objects")


def main(argv: list[str]) -> int:
    """Parse ``argv`` (what follows ``showsay export``) and run the subcommand."""
    parser = argparse.ArgumentParser(prog="showsay export", description="export encoders for the runtime")
    sub = parser.add_subparsers(dest="what", metavar="WHAT", required=True)
    for name in EXPORT_COMMANDS:
        importlib.import_module(name).register(sub)
    args = parser.parse_args(argv)
    logging.getLogger(__name__).debug("export %s", args.what)
    return int(args.func(args))
