"""Measure the rejection thresholds of the config defaults (``matching.*``) for the shipped encoders.

Unknown word, where it is chosen: the real-speaker validation set (``edge.bench.validation``: held-out
speechocean762 speakers, children and adults, saying held-out non-digit words). Each episode teaches
10 words (one clip each, any held-out speakers); the taught words are asked by speakers who taught
none of them, and 10 validation words never taught in that episode are asked against the same
support set. ``--fsdd`` adds the older table (one fsdd speaker teaches the digits; the other three
ask them, and speech_commands_sample words are the untaught ones): digits are the test, so that table
is reported, never used to choose.
Not in view: a COIL-20 view taught, a scene of four other objects with or without the taught object
seen from at least ``--min-view-gap`` poses away (5 degrees each).

    python tools/thresholds.py --data ../shared/data [--speech-encoder keywords] [--fsdd]
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np

from edge.audio import read_wav
from edge.bench.runner import EmbeddingCache
from edge.bench.validation import CORPUS, cross_speaker_episodes, validation_items
from edge.encoders import EncoderSettings, PixelImage, load_image_encoder, load_speech_encoder, support_set_for
from edge.features import SpeechFeatureSettings
from edge.images import preprocess_batch
from edge.matching import SupportSet, cosine_distances


def _support(enc, reps: list[np.ndarray]) -> SupportSet:
    """A support set of these utterances (images do not matter here), compared as the encoder needs."""
    s = support_set_for(enc)
    for i, rep in enumerate(reps):
        s.add(i, rep, np.ones(1, np.float32))
    return s


def _embed(enc, paths) -> list:
    return list(enc.embed_audio([read_wav(p, enc.sample_rate_hz) for p in paths]))


def real_speech_table(data: Path, speech: str, thresholds: list[float], episodes: int, seed: int) -> None:
    """Taught words asked by other real speakers vs words never taught, on the validation set (the place to choose)."""
    feat = SpeechFeatureSettings()
    enc = load_speech_encoder(EncoderSettings(speech=speech), feat)  # fuse_dtw as the config chooses for it
    items = validation_items(data / CORPUS)
    eps = cross_speaker_episodes(items, 10, 1, episodes, seed)
    cache = EmbeddingCache(items, [], enc, PixelImage(), feat)
    cache.fill(set(range(len(items))), set(), progress=False)
    rng = np.random.default_rng(seed)
    known, right, unknown = [], [], []
    for ep in eps:
        support = _support(enc, [cache.speech[rows[0]] for rows in ep.support])
        for k, q in enumerate(ep.queries):
            row, d = support.nearest_utterance(cache.speech[q])
            known.append(d)
            right.append(row == k)
        others = [i for i, it in enumerate(items) if it.label not in ep.words]
        unknown += [support.nearest_utterance(cache.speech[q])[1] for q in rng.choice(others, 10, replace=False)]
    k, r, u = np.array(known), np.array(right), np.array(unknown)
    print(f"unknown_word_distance, {enc.encoder_id} ({enc.protocol}), real-speaker validation: {len(eps)} episodes of 10 taught words, "
          f"{len(k)} taught-word requests by other speakers and {len(u)} requests of untaught words")
    print("| threshold | taught words answered | answered and right | untaught words rejected |\n| --- | --- | --- | --- |")
    for t in thresholds:
        print(f"| {t:.2f} | {(k <= t).mean():.1%} | {((k <= t) & r).mean():.1%} | {(u > t).mean():.1%} |")
    grid = np.linspace(0.0, 1.0, 201)
    balance = grid[np.argmin([abs((k <= t).mean() - (u > t).mean()) for t in grid])]
    print(f"equal rates at {balance:.3f}: {(k <= balance).mean():.1%} answered, {(u > balance).mean():.1%} rejected")


def speech_table(data: Path, speech: str, thresholds: list[float], trials: int, seed: int) -> None:
    feat = SpeechFeatureSettings()
    enc = load_speech_encoder(EncoderSettings(speech=speech), feat)
    digits = sorted((data / "fsdd").glob("*.wav"))
    speakers = sorted({p.stem.split("_")[1] for p in digits})
    untaught = _embed(enc, sorted((data / "speech_commands_sample").glob("*/*.wav")))
    rng = random.Random(seed)
    known, unknown = [], []
    for speaker in speakers:
        own = [p for p in digits if p.stem.split("_")[1] == speaker]
        others = [p for p in digits if p.stem.split("_")[1] != speaker]
        for _ in range(trials):
            support = _support(enc, _embed(enc, [rng.choice([p for p in own if p.stem.startswith(f"{d}_")]) for d in range(10)]))
            asked = _embed(enc, rng.sample(others, 20))
            # the distance each request is judged on: that of the utterance the support set picks (fused or not)
            known += [support.nearest_utterance(q)[1] for q in asked]
            unknown += [support.nearest_utterance(q)[1] for q in untaught]
    k, u = np.array(known), np.array(unknown)
    print(f"unknown_word_distance, {enc.encoder_id}, fsdd (the test: reported, not chosen on; {len(k)} taught-word and {len(u)} untaught-word requests)")
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
    ap.add_argument("--speech-encoder", default=EncoderSettings().speech, help="encoders.speech to measure (default: the config default)")
    ap.add_argument("--episodes", type=int, default=300, help="validation episodes for the unknown-word table")
    ap.add_argument("--fsdd", action="store_true", help="also the fsdd table (the test data: reported, never chosen on)")
    ap.add_argument("--no-images", action="store_true", help="skip the not_in_view table")
    args = ap.parse_args()
    grid = [0.2, 0.22, 0.24, 0.26, 0.28, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55]
    real_speech_table(args.data, args.speech_encoder, grid, args.episodes, args.seed)
    if args.fsdd:
        speech_table(args.data, args.speech_encoder, grid, trials=10, seed=args.seed)
    if args.no_images:
        return
    image_table(args.data, [0.25, 0.3, 0.35, 0.4], trials=2000, seed=args.seed, gap=args.min_view_gap)


if __name__ == "__main__":
    main()
