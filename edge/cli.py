"""The ``showsay`` command line: one entry point, one subcommand per task.

Runtime subcommands live in ``edge``; ``train`` and ``export`` are separate packages with heavier
dependencies (torch, onnx, tensorrt), loaded by name only when their subcommand is run, so the
on-device runtime never imports them.

Start-up stays short: :data:`COMMANDS` says which module registers each subcommand, and only that
module is imported to run it (``showsay status`` loads the socket client, not OpenCV and scipy);
the full parser is built only for ``showsay --help`` and for a name it does not know. Every
parser shows its defaults in ``--help`` and takes ``-v``/``--log-level`` after the subcommand too.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from edge import __version__
from edge.logs import PLAIN_FORMAT, configure_logging

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
# Subcommand -> the module of COMMAND_MODULES that registers it (a test keeps the two in step).
COMMANDS = {
    "check": "edge.commands.check",
    "bench": "edge.commands.bench",
    "data": "edge.commands.data",
    **{name: "edge.commands.client" for name in ("teach", "cancel", "status", "list", "forget", "label", "ask", "confirm", "wrong", "events")},
    "memory": "edge.commands.memory",
    "listen": "edge.commands.senses",
    "look": "edge.commands.senses",
    "scenes": "edge.commands.scenes",
    "run": "edge.commands.run",
    "demo": "edge.commands.demo",
    "bench-latency": "edge.commands.bench_latency",
    "bench-idle": "edge.commands.bench_latency",
    "bench-endpoint": "edge.commands.bench_latency",
}
# Subcommands served by other packages: name -> (module with main(argv) -> int, extra to install, help).
DELEGATED = {
    "train": ("train.cli", "train", "train a speech or image encoder (needs the 'train' extra)"),
    "export": ("export.cli", "train", "export encoders to ONNX or TensorRT engines"),
}
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMAT = PLAIN_FORMAT  # the format off journald (edge.logs)


class HelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help unless the help already speaks of its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "default" in text.lower()
            or not action.option_strings
            or action.default is None or action.default is False or action.default == argparse.SUPPRESS  # 0 and 0.0 are shown
            or isinstance(action, (argparse._HelpAction, argparse._VersionAction))
        ):
            return text
        return f"{text} (default: %(default)s)"


def _add_logging_options(parser: argparse.ArgumentParser, top: bool) -> None:
    """-v and --log-level; below the top level they default to SUPPRESS so they only override when given."""
    default = {} if top else {"default": argparse.SUPPRESS}
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages (same as --log-level debug)", **default)
    parser.add_argument("--log-level", type=str.lower, choices=LOG_LEVELS, metavar="LEVEL",
                        help=f"least severe log messages shown: {', '.join(LOG_LEVELS)} (default: info)", **default)


def _finish(parser: argparse.ArgumentParser, top: bool = False) -> None:
    """Give ``parser`` and every parser below it the help formatter and, below the top, the logging options."""
    parser.formatter_class = HelpFormatter
    if not top:
        _add_logging_options(parser, top=False)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _finish(child)


def log_level(args: argparse.Namespace) -> int:
    """The logging level -v / --log-level ask for (info when neither is given)."""
    if getattr(args, "verbose", False):
        return logging.DEBUG
    return getattr(logging, str(getattr(args, "log_level", None) or "info").upper())


def run_group(prog: str, description: str, modules: tuple[str, ...], argv: list[str]) -> int:
    """Parse ``argv`` for a group of subcommands (``showsay train ...``) whose modules each define ``register(sub)``.

    Each registered parser sets ``func(args) -> int``. A module that cannot be imported (a missing
    extra) gives one message naming it, not a traceback. Without a subcommand the group's help,
    listing them, is printed.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter)
    _add_logging_options(parser, top=False)
    sub = parser.add_subparsers(dest="what", metavar="WHAT", required=True)
    for name in modules:
        try:
            importlib.import_module(name).register(sub)
        except ImportError as exc:
            print(f"{prog}: {name} cannot be loaded ({exc}); install the 'train' extra: pip install -e '.[train]'", file=sys.stderr)
            return 1
    for child in sub.choices.values():
        _finish(child)
    if not argv:
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    if hasattr(args, "verbose") or hasattr(args, "log_level"):
        logging.getLogger().setLevel(log_level(args))
    logging.getLogger(prog.replace(" ", ".")).debug("%s %s", prog, args.what)
    return int(args.func(args))


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser: with ``command`` (a key of COMMANDS) only its module is loaded, else all of them."""
    parser = argparse.ArgumentParser(prog="showsay", description="Learn words from one demonstration; find the object when asked.",
                                     formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"showsay {__version__}")
    _add_logging_options(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = (COMMANDS[command],) if command in COMMANDS else COMMAND_MODULES
    for name in modules:
        importlib.import_module(name).register(sub)
    for name, (_, _, help_text) in DELEGATED.items():
        sub.add_parser(name, help=help_text, add_help=False)
    for name, child in sub.choices.items():
        if name not in DELEGATED:
            _finish(child)
    return parser


def command_of(argv: list[str]) -> tuple[str | None, int]:
    """(the subcommand named in ``argv``, its position), skipping the top-level options before it."""
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--log-level":
            i += 2
            continue
        if not token.startswith("-"):
            return token, i
        i += 1
    return None, -1


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; returns the process exit status."""
    argv = sys.argv[1:] if argv is None else argv
    command, at = command_of(argv)
    if command is None and "--version" in argv and not {"-h", "--help"} & set(argv):
        print(f"showsay {__version__}")  # without loading every subcommand's module
        return 0
    if command in DELEGATED:  # everything after the name is the delegate's, --help included
        top = build_parser(command).parse_args(argv[:at])
        configure_logging(log_level(top))
        module, extra, _ = DELEGATED[command]
        try:
            delegate = importlib.import_module(module)
        except ImportError as exc:
            print(f"showsay {command}: needs the '{extra}' extra ({exc}); install with: pip install 'showsay[{extra}]'", file=sys.stderr)
            return 1
        return int(delegate.main(argv[at + 1:]))
    parser = build_parser(command)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    configure_logging(log_level(args))  # a private copy of stderr, journald priorities, repeats held back
    return int(args.func(args))
