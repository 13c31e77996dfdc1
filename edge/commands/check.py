"""``showsay check``: validate a config file, this machine's side of it, and the models it names.

It is the unit's ``ExecStartPre``: what it passes, ``run`` can start. The same functions run in
both: :func:`edge.config.load_config`, :func:`edge.preflight.preflight` and the encoder loaders
(which run each model once on a probe input, :mod:`edge.model_probe`).
"""
from __future__ import annotations

import argparse
import sys

from edge.config import ConfigError, load_config
from edge.encoders import load_image_encoder, load_speech_encoder
from edge.model_io import ModelError
from edge.preflight import preflight


def register(sub: argparse._SubParsersAction) -> None:
    """Add the subcommand."""
    p = sub.add_parser("check", help="validate a config file, the directories and devices it names, and its models (exit 0 or 1)")
    p.add_argument("--config", required=True, help="path of the YAML config")
    p.add_argument("--config-only", action="store_true",
                   help="check the file and its models but not this machine's directories and devices (a config meant for another machine)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the config, check what it names on this machine, load and probe every encoder; print what is wrong."""
    try:
        cfg = load_config(args.config)
    except ConfigError as exc:
        print(f"showsay check: {exc}", file=sys.stderr)
        return 1
    problems = [] if args.config_only else [f"{args.config}: {p}" for p in preflight(cfg)]
    try:
        speech = load_speech_encoder(cfg.encoders, cfg.speech_features)
        image = load_image_encoder(cfg.encoders)
    except ModelError as exc:
        problems.append(str(exc))
    for problem in problems:
        print(f"showsay check: {problem}", file=sys.stderr)
    if problems:
        return 1
    print(f"{args.config}: ok (speech encoder {speech.encoder_id}, image encoder {image.encoder_id})")
    return 0
