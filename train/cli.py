"""``showsay train ...``: subcommands from the modules in TRAIN_COMMANDS, each with ``register(sub)``."""
from __future__ import annotations

import argparse
import importlib
import logging

# Each module defines register(subparsers) and sets func(args) -> int on its parsers.
TRAIN_COMMANDS: tuple[str, ...] = ("train.prepare", "train.fit")


def main(argv: list[str]) -> int:
    """Parse ``argv`` (what follows ``showsay train``) and run the subcommand."""
    parser = argparse.ArgumentParser(prog="showsay train", description="train encoders on background data")
    sub = parser.add_subparsers(dest="what", metavar="WHAT", required=True)
    for name in TRAIN_COMMANDS:
        importlib.import_module(name).register(sub)
    args = parser.parse_args(argv)
    logging.getLogger(__name__).debug("train %s", args.what)
    return int(args.func(args))
