"""``showsay check``: validate a config file and the model files it names."""
from __future__ import annotations

import argparse
import sys

from edge.config import ConfigError, load_config
from edge.encoders import load_image_encoder, load_speech_encoder
from edge.model_io import ModelError


def register(sub: argparse._SubParsersAction) -> None:
    """Add the subcommand."""
    p = sub.add_parser("check", help="validate a config file and the models it names (exit 0 or 1)")
    p.add_argument("--config", required=True, help="path of the YAML config")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Load the config and every encoder it names; print what is wrong."""
    try:
        cfg = load_config(args.config)
        speech = load_speech_encoder(cfg.encoders, cfg.speech_features)
        image = load_image_encoder(cfg.encoders)
    except (ConfigError, ModelError) as exc:
        print(f"showsay check: {exc}", file=sys.stderr)
        return 1
    print(f"{args.config}: ok (speech encoder {speech.encoder_id}, image encoder {image.encoder_id})")
    return 0
