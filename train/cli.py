"""``showsay train ...``: subcommands from the modules in TRAIN_COMMANDS, each with ``register(sub)``."""
from __future__ import annotations

from edge.cli import run_group

# Each module defines register(subparsers) and sets func(args) -> int on its parsers.
TRAIN_COMMANDS: tuple[str, ...] = ("train.prepare", "train.fit")


def main(argv: list[str]) -> int:
    """Parse ``argv`` (what follows ``showsay train``) and run the subcommand."""
    return run_group("showsay train", "train encoders on background data", TRAIN_COMMANDS, argv)
