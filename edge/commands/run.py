"""``showsay run``: the daemon (microphone, camera, teach button, control socket) until SIGTERM."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the subcommand."""
    p = sub.add_parser("run", help="run the daemon: learn taught words, answer spoken requests (systemd Type=notify)")
    p.add_argument("--config", required=True, help="path of the YAML config (e.g. /etc/showsay/showsay.yaml)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run until SIGTERM/SIGINT; SIGHUP reloads the matching thresholds."""
    from edge.service import run_service

    return run_service(args.config)
