"""Measure the rejection thresholds of the config defaults (``matching.*``) for the shipped encoders.

Unknown word: one taught utterance per digit from one fsdd speaker; taught words asked by the other
speakers versus untaught words (speech_commands_sample) asked against the same support set.
Not in view: a COIL-20 view taught, a scene of four other objects with or without the taught object
seen from at least ``--min-view-gap`` poses away (5 degrees each).

    python tools/thresholds.py --data ../shared/data
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np

from edge.encoders import EncoderSettings, load_image_encoder, load_speech_encoder, support_set_for
from edge.features import SpeechFeatureSettings, wav_features
from edge.images import preprocess_batch
from edge.matching import SupportSet, cosine_distances


def _support(enc, reps: list[np.ndarray]) -> SupportSet:
    """A support set of these utterances (images do not matter here), compared as the encoder needs."""
    s = support_set_for(enc)
    for i, rep in enumerate(reps):
        s.add(i, rep, np.ones(1, np.float32))
    return s


def speech_table(data: Path, thresholds: list[float], trials: int, seed: int) -> None:
    feat = SpeechFeatureSettings()
    enc = load_speech_encoder(EncoderSettings(), feat)  # the config defaults: the shipped encoder, fused with DTW
    digits = sorted((data / "fsdd").glob("*.wav"))
    speakers = sorted({p.stem.split("_")[1] for p in digits})
    untaught = enc.embed([wav_features(p, feat) for p in sorted((data / "speech_commands_sample").glob("*/*.wav"))])
    rng = random.Random(seed)
    known, unknown = [], []
    for speaker in speakers:
        own = [p for p in digits if p.stem.split("_")[1] == speaker]
        others = [p for p in digits if p.stem.split("_")[1] != speaker]
        for _ in range(trials):
            support = _support(enc, enc.embed([wav_features(rng.choice([p for p in own if p.stem.startswith(f"{d}_")]), feat) for d in range(10)]))
            asked = enc.embed([wav_features(p, feat) for p in rng.sample(others, 20)])
            # the distance each request is judged on: that of the utterance the support set picks (fused or not)
            known += [support.nearest_utterance(q)[1] for q in asked]
            unknown += [support.nearest_utterance(q)[1] for q in untaught]
    k, u = np.array(known), np.array(unknown)
    print(f"unknown_word_distance, {enc.encoder_id} ({len(k)} taught-word and {len(u)} untaught-word requests)")
    print("| threshold | taught words answered | untaught words rejected |\n| --- | --- | --- |")
    for t in thresholds:
        print(f"| {t:.2f} | {(k <= t).mean():.1%} | {(u > t).mean():.1%} |")


def image_table(data: Path, thresholds: list[float], trials: int, seed: int, gap: int) -> None:
    enc = load_image_encoder(EncoderSettings(image="objects"))
    archive = np.load(data / "coil20" / "coil20_objects_01_10.npz")
    images, labels, pose = archive["images"], archive["labels"], archive["pose"].astype(int)
    emb = np.concatenate([enc.embed(preprocess_batch(list(images[i : i + 64]), enc.settings)) for i in range(0, len(images), 64)])
    rng = np.random.default_rng(seed)
    present, absent = [], []
    objects = sorted(set(labels.tolist()))
    for _ in range(trials):
        obj = rng.choice(objects)
        views = np.flatnonzero(labels == obj)
        taught = rng.choice(views)
        far = [i for i in views if min(abs(pose[i] - pose[taught]), 72 - abs(pose[i] - pose[taught])) >= gap]
        scene = [rng.choice(np.flatnonzero(labels == o)) for o in rng.choice([o for o in objects if o != obj], 4, replace=False)]
        present.append(cosine_distances(emb[taught : taught + 1], emb[scene + [rng.choice(far)]]).min())
        absent.append(cosine_distances(emb[taught : taught + 1], emb[scene]).min())
    p, a = np.array(present), np.array(absent)
    print(f"\nnot_in_view_distance, shipped objects encoder ({trials} scenes of 4 other objects, taught view >= {gap} poses away)")
    print("| threshold | answered when in view | rejected when absent |\n| --- | --- | --- |")
    for t in thresholds:
        print(f"| {t:.2f} | {(p <= t).mean():.1%} | {(a > t).mean():.1%} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"), help="folder with fsdd, speech_commands_sample and coil20")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-view-gap", type=int, default=10)
    args = ap.parse_args()
    speech_table(args.data, [0.3, 0.35, 0.4, 0.45, 0.5, 0.55], trials=10, seed=args.seed)
    image_table(args.data, [0.25, 0.3, 0.35, 0.4], trials=2000, seed=args.seed, gap=args.min_view_gap)


if __name__ == "__main__":
    main()
