"""``showsay export ...``: subcommands from the modules in EXPORT_COMMANDS, each with ``register(sub)``.

These modules import torch and onnx only when their command runs: ``showsay export engine`` and
``verify`` run on a Jetson, which has neither.
"""
from __future__ import annotations

from edge.cli import run_group

# Each module defines register(subparsers) and sets func(args) -> int on its parsers.
EXPORT_COMMANDS: tuple[str, ...] = ("export.onnx_export", "export.ensemble", "export.engine", "export.objects", "export.keywords", "export.head")


def main(argv: list[str]) -> int:
    """Parse ``argv`` (what follows ``showsay export``) and run the subcommand."""
    return run_group("showsay export", "export encoders for the runtime", EXPORT_COMMANDS, argv)
