"""Per-word cost of the speech encoders in one run: read the wav, features (where the encoder needs them), embed.

    python tools/time_speech_encoders.py --speech out/data/fsdd.csv --words 100 --rounds 3

One utterance per call, one ONNX Runtime thread (``encoders.threads``), the encoders taken in turn
in every round so that a busy machine slows them alike; prints each round's mean and the median of
the rounds, and the ratio to the peer (efficientword-net, when installed). The load average is
printed with the numbers: on a shared CPU the absolute times mean little without it.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from edge.audio import read_wav
from edge.bench.manifest import read_speech_manifest
from edge.encoders import EncoderSettings, load_speech_encoder
from edge.features import SpeechFeatureSettings


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--speech", type=Path, required=True, help="speech manifest CSV (path,label,speaker)")
    ap.add_argument("--words", type=int, default=100, help="utterances per encoder and round (spread over the manifest)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--encoders", default="keywords,triplet,efficientword-net", help="comma-separated encoders.speech names (or efficientword-net)")
    args = ap.parse_args()
    items = read_speech_manifest(args.speech)
    paths = [items[i].path for i in np.linspace(0, len(items) - 1, args.words).astype(int)]
    encoders = {}
    for name in args.encoders.split(","):
        if name == "efficientword-net":
            from edge.bench.peers import EfficientWordNetSpeech

            encoders[name] = EfficientWordNetSpeech()
        else:
            encoders[name] = load_speech_encoder(EncoderSettings(speech=name, fuse_dtw=0.0), SpeechFeatureSettings())
    for enc in encoders.values():  # first calls allocate: not timed
        enc.embed_audio([read_wav(paths[0], enc.sample_rate_hz)])
    times: dict[str, list[float]] = {n: [] for n in encoders}
    for r in range(args.rounds):
        for name, enc in encoders.items():
            t0 = time.perf_counter()
            for p in paths:
                enc.embed_audio([read_wav(p, enc.sample_rate_hz)])
            times[name].append(1000 * (time.perf_counter() - t0) / len(paths))
        print(f"round {r}: " + ", ".join(f"{n} {times[n][-1]:.2f} ms" for n in encoders) + f" (load average {os.getloadavg()[0]:.1f})", flush=True)
    print("| speech encoder | ms per word (read, features, embed), median of rounds | x faster than efficientword-net |")
    print("|---|---|---|")
    peer = float(np.median(times["efficientword-net"])) if "efficientword-net" in times else None
    for name in encoders:
        med = float(np.median(times[name]))
        print(f"| {name} | {med:.2f} | {peer / med:.1f} |" if peer else f"| {name} | {med:.2f} | |")


if __name__ == "__main__":
    main()
