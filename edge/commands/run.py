"""``showsay run``: the daemon (microphone, camera, teach button, control socket) until SIGTERM."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add the subcommand."""
    p = sub.add_parser("run", help="run the daemon: learn taught words, answer spoken requests (systemd Type=notify)")
    p.add_argument("--config", required=True, help="path of the YAML config (e.g. /etc/showsay/showsay.yaml)")
    p.add_argument("--narrate", choices=("auto", "always", "never"), default="auto",
                   help="print what the robot learns and answers as readable lines on stdout besides the log (stderr); "
                        "auto: when stdout is a terminal")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run until SIGTERM/SIGINT; SIGHUP reloads the matching thresholds."""
    from edge.narrate import Narrator, wants_narration
    from edge.service import run_service

    narrator = Narrator() if wants_narration(args.narrate) else None
    try:
        return run_service(args.config, listeners=[narrator] if narrator else [])
    finally:
        if narrator is not None:
            narrator.close()
