"""``showsay teach|cancel|status|list|forget|label|ask|confirm|wrong|events``: talk to the running daemon.

Each command sends one request over the control socket and prints the JSON reply (one line);
``events`` prints every event the daemon publishes, one JSON line each. Exit status 0 when the
daemon answered ``ok``, 1 otherwise (and when no daemon is running, with a message saying so).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edge.control import ControlClient, ControlError, ControlSettings

# edge.config is imported only for --config: it loads every subsystem's settings (OpenCV, scipy),
# which would triple the start-up time of these commands.


def _add_target(p: argparse.ArgumentParser, timeout_s: float | None = 30.0, timeout_help: str = "seconds to wait for the reply (default 30)") -> None:
    p.add_argument("--socket", metavar="PATH", help=f"control socket of the daemon (default: from --config, else {ControlSettings().socket_path})")
    p.add_argument("--config", metavar="PATH", help="YAML config whose control.socket_path to use")
    p.add_argument("--timeout", type=float, default=timeout_s, metavar="S", help=timeout_help)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the subcommands."""
    p = sub.add_parser("teach", help="start a teach turn on the running daemon (like pressing the button)")
    p.add_argument("--label", help="name to store with the pair (optional)")
    _add_target(p)
    p.set_defaults(func=run, build=lambda a: {"cmd": "teach", **({"label": a.label} if a.label is not None else {})})

    for name, help_text in (
        ("cancel", "cancel the teach turn in progress"),
        ("status", "print the daemon's state"),
        ("list", "print the taught pairs the daemon holds"),
        ("confirm", "the last answer was right (with teach.learn_confirmed its crop becomes a view of the word)"),
        ("wrong", "the last answer was wrong (logged as an answer_wrong event; nothing taught is removed)"),
    ):
        p = sub.add_parser(name, help=help_text)
        _add_target(p)
        p.set_defaults(func=run, build=lambda a, name=name: {"cmd": name})

    p = sub.add_parser("forget", help="make the daemon forget a taught pair")
    p.add_argument("pair_id", type=int, metavar="ID")
    _add_target(p)
    p.set_defaults(func=run, build=lambda a: {"cmd": "forget", "pair_id": a.pair_id})

    p = sub.add_parser("label", help="name a taught pair (an empty TEXT clears the name)")
    p.add_argument("pair_id", type=int, metavar="ID")
    p.add_argument("text", metavar="TEXT")
    _add_target(p)
    p.set_defaults(func=run, build=lambda a: {"cmd": "label", "pair_id": a.pair_id, "label": a.text or None})

    p = sub.add_parser("ask", help="find the object named in a recorded spoken request (wav file)")
    p.add_argument("wav", metavar="WAV")
    _add_target(p)
    p.set_defaults(func=run, build=_ask_request)

    p = sub.add_parser("events", help="print the daemon's events as JSON lines until it stops (Ctrl-C to quit)")
    p.add_argument("--count", type=int, metavar="N", help="stop after N events")
    _add_target(p, None, "stop with exit 1 if no event arrives for S seconds (default: wait forever)")
    p.set_defaults(func=run_events)


def _ask_request(args: argparse.Namespace) -> dict:
    wav = Path(args.wav).expanduser().resolve()
    if not wav.is_file():
        raise FileNotFoundError(f"{args.wav}: no such wav file")
    return {"cmd": "ask", "wav": str(wav)}


def socket_path(args: argparse.Namespace) -> str:
    """The socket named by --socket, else by --config, else the default."""
    if args.socket:
        return args.socket
    if not args.config:
        return ControlSettings().socket_path
    from edge.config import load_config

    return load_config(args.config).control.socket_path


def run(args: argparse.Namespace) -> int:
    """Send the request, print the reply."""
    prog = f"showsay {args.command}"
    try:
        request = args.build(args)
        reply = ControlClient(socket_path(args)).request(request, timeout_s=args.timeout)
    except (ValueError, ControlError, FileNotFoundError) as exc:  # ValueError: edge.config.ConfigError
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(reply), flush=True)
    if not reply.get("ok"):
        print(f"{prog}: {reply.get('error', 'the daemon refused the request')}", file=sys.stderr)
        return 1
    return 0


def run_events(args: argparse.Namespace) -> int:
    """Print events until the daemon closes the stream, --count is reached or Ctrl-C."""
    seen = 0
    try:
        client = ControlClient(socket_path(args))
        if args.count is not None and args.count <= 0:
            return 0
        for event in client.events(timeout_s=args.timeout):
            print(json.dumps(event), flush=True)
            seen += 1
            if args.count is not None and seen >= args.count:
                return 0
    except (ValueError, ControlError) as exc:  # ValueError: edge.config.ConfigError
        print(f"showsay events: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    print("showsay events: the daemon closed the event stream", file=sys.stderr)
    return 0 if args.count is None else 1
