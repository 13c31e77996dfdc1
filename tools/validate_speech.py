"""Speech-only accuracy on the real-speaker validation set (``edge.bench.validation``): the place to choose.

    python tools/validate_speech.py --speech-encoder default --fuse-dtw 0 0.5 --shots 1 5

Prints one Markdown row per encoder setting and shot count: 10-way, each request said by a
held-out speaker who taught none of its word's shots, held-out words only. Never tune on fsdd.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from edge.bench.runner import mean_ci95
from edge.bench.validation import CORPUS, cross_speaker_episodes, speech_outcomes, validation_items
from edge.config import load_config
from edge.encoders import EncoderSettings, load_speech_encoder

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> int:
    """Print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=SHARED, help="the shared data folder")
    ap.add_argument("--speech-encoder", nargs="+", default=["dtw", "default"],
                    help="encoder names or .onnx paths (as encoders.speech), or efficientword-net (the benchmark's peer, if installed)")
    ap.add_argument("--fuse-dtw", nargs="+", type=float, default=[0.0], help="DTW fusion weights to try with model encoders")
    ap.add_argument("--shots", nargs="+", type=int, default=[1])
    ap.add_argument("--word-best-of", type=int, default=1)
    ap.add_argument("--ways", type=int, default=10)
    ap.add_argument("--episodes", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", type=Path, help="YAML config for the feature settings")
    args = ap.parse_args()
    cfg = load_config(args.config)
    items = validation_items(args.shared / CORPUS)
    print(f"real-speaker validation: {len(items)} clips, {len({i.label for i in items})} words, "
          f"{len({i.speaker for i in items})} speakers; {args.ways}-way, {args.episodes} episodes, seed {args.seed}")
    print("| speech encoder | fuse_dtw | shots | speech-only accuracy | 95% CI |")
    print("|---|---|---|---|---|")
    for name in args.speech_encoder:
        for weight in ([0.0] if name in ("dtw", "efficientword-net") else args.fuse_dtw):
            if name == "efficientword-net":  # benchmark-only peer, raw audio in
                from edge.bench.peers import EfficientWordNetSpeech

                enc = EfficientWordNetSpeech(threads=cfg.encoders.threads)
            else:
                enc = load_speech_encoder(EncoderSettings(speech=name, fuse_dtw=weight, threads=cfg.encoders.threads), cfg.speech_features)
            for shots in args.shots:
                eps = cross_speaker_episodes(items, args.ways, shots, args.episodes, args.seed)
                right = speech_outcomes(enc, items, cfg.speech_features, eps, args.word_best_of)
                acc, ci = mean_ci95(right.mean(axis=1))
                print(f"| {name} | {weight:g} | {shots} | {100 * acc:.1f} | +-{100 * ci:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
