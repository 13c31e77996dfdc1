"""Measure the rejection thresholds of the config defaults (``matching.*``) for the shipped encoders.

Unknown word, where it is chosen: the real-speaker validation set (``edge.bench.validation``: held-out
speechocean762 speakers, children and adults, saying held-out non-digit words). Each episode teaches
10 words (one clip each, any held-out speakers); the taught words are asked by speakers who taught
none of them, and 10 validation words never taught in that episode are asked against the same
support set. ``--fsdd`` adds the older table (one fsdd speaker teaches the digits; the other three
ask them, and speech_commands_sample words are the untaught ones): digits are the test, so that table
is reported, never used to choose.
Not in view: an object taught with ``--views`` views (default ``teach.views``, ``--view-step`` poses
apart), a scene of four other objects with or without the taught object seen from at least
``--min-view-gap`` poses (5 degrees each) away from every taught view; a candidate's distance is the
minimum over the taught views, as the daemon's. ``--images``: COIL-20 objects 1-10 (the default; the
test set: reported, never chosen on) or a multi-view archive that is not the test
(``tools/turntable.py``: rendered objects textured with scikit-image's photographs).

    python tools/thresholds.py --data ../shared/data [--speech-encoder keywords] [--fsdd]
    python tools/thresholds.py --no-speech --images out/data/turntable/turntable.npz --views 5,1
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np

from edge.audio import read_wav
from edge.bench.runner import EmbeddingCache
from edge.daemon import TeachSettings
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


def support_poses(taught: int, views: int, step: int, poses: int = 72) -> list[int]:
    """The taught pose and the views around it, ``step`` poses apart (0, +S, -S, +2S, ...), as ``bench --teach-view-step``."""
    offsets = [0] + [sign * step * k for k in range(1, views) for sign in (1, -1)]
    return [(taught + o) % poses for o in offsets[:views]]


def image_table(archive_path: Path, thresholds: list[float], trials: int, seed: int, gap: int, views: int,
                step: int, mirror: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Not in view: a taught object (``views`` views, and their mirrors with ``mirror``, as ``teach.mirror_views`` stores
    them), a scene of 4 other objects, with or without the taught one turned away."""
    enc = load_image_encoder(EncoderSettings(image="objects"))
    archive = np.load(archive_path)
    images, labels, pose = archive["images"], archive["labels"], archive["pose"].astype(int)
    n_poses = int(pose.max()) + 1
    emb = np.concatenate([enc.embed(preprocess_batch(list(images[i : i + 64]), enc.settings)) for i in range(0, len(images), 64)])
    flipped = np.concatenate([enc.embed(preprocess_batch([im[:, ::-1] for im in images[i : i + 64]], enc.settings))
                              for i in range(0, len(images), 64)]) if mirror else None
    index = {(int(lab), int(p)): i for i, (lab, p) in enumerate(zip(labels, pose))}
    rng = np.random.default_rng(seed)
    present, absent, right = [], [], []
    objects = sorted(set(labels.tolist()))
    for _ in range(trials):
        obj = int(rng.choice(objects))
        taught = support_poses(int(rng.integers(n_poses)), views, step, n_poses)
        far = [p for p in range(n_poses) if all(min(abs(p - t), n_poses - abs(p - t)) >= gap for t in taught)]
        scene = [index[(int(o), int(rng.integers(n_poses)))] for o in rng.choice([o for o in objects if o != obj], 4, replace=False)]
        shown = index[(obj, int(rng.choice(far)))]
        rows = [index[(obj, t)] for t in taught]
        stored = emb[rows] if flipped is None else np.concatenate([emb[rows], flipped[rows]])
        d = cosine_distances(stored, emb[scene + [shown]]).min(axis=0)  # (5,): min over views
        present.append(d.min())
        right.append(d.argmin() == 4)  # the nearest candidate is the taught object itself
        absent.append(d[:4].min())
    p, a, r = np.array(present), np.array(absent), np.array(right)
    print(f"\nnot_in_view_distance, shipped objects encoder, {archive_path} ({trials} scenes of 4 other objects; the object taught with "
          f"{views} view(s) {step} poses apart{' and their mirrors' if mirror else ''}, shown >= {gap} poses from each)")
    print_image_rates(p, a, r, thresholds)
    return p, a, r


def print_image_rates(p: np.ndarray, a: np.ndarray, r: np.ndarray, thresholds: list[float]) -> None:
    """The table of answered / rejected rates per threshold, and where the two are equal."""
    print("| threshold | answered when in view | answered with the right object | rejected when absent |\n| --- | --- | --- | --- |")
    for t in thresholds:
        print(f"| {t:.2f} | {(p <= t).mean():.1%} | {((p <= t) & r).mean():.1%} | {(a > t).mean():.1%} |")
    grid = np.linspace(0.0, 1.0, 401)
    balance = grid[np.argmin([abs((p <= t).mean() - (a > t).mean()) for t in grid])]
    print(f"equal rates at {balance:.4f}: {(p <= balance).mean():.1%} answered, {(a > balance).mean():.1%} rejected; "
          f"distance to the shown object median {np.median(p):.3f}, nearest other object median {np.median(a):.3f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path("../shared/data"), help="folder with fsdd, speech_commands_sample and coil20")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--min-view-gap", type=int, default=10)
    ap.add_argument("--speech-encoder", default=EncoderSettings().speech, help="encoders.speech to measure (default: the config default)")
    ap.add_argument("--episodes", type=int, default=300, help="validation episodes for the unknown-word table")
    ap.add_argument("--fsdd", action="store_true", help="also the fsdd table (the test data: reported, never chosen on)")
    ap.add_argument("--no-images", action="store_true", help="skip the not_in_view table")
    ap.add_argument("--no-speech", action="store_true", help="skip the unknown_word table")
    ap.add_argument("--images", type=Path, action="append", help="multi-view archive (images, labels, pose) for the not_in_view table "
                    "(default: DATA/coil20/coil20_objects_01_10.npz, the test set; tools/turntable.py makes one that is not); "
                    "repeat it for several, pooled in a last table")
    ap.add_argument("--views", default=str(TeachSettings().views), help="teaching views per object, comma-separated (default: teach.views)")
    ap.add_argument("--view-step", type=int, default=2, help="poses between teaching views (default 2: 10 degrees on a 5-degree turntable)")
    ap.add_argument("--mirror", default="on" if TeachSettings().mirror_views else "off",
                    help="taught views also stored mirrored: on, off or off,on (default: teach.mirror_views)")
    ap.add_argument("--trials", type=int, default=2000, help="scenes per not_in_view table")
    args = ap.parse_args()
    grid = [0.2, 0.22, 0.24, 0.26, 0.28, 0.3, 0.35, 0.4, 0.45, 0.5, 0.55]
    if not args.no_speech:
        real_speech_table(args.data, args.speech_encoder, grid, args.episodes, args.seed)
    if args.fsdd:
        speech_table(args.data, args.speech_encoder, grid, trials=10, seed=args.seed)
    if args.no_images:
        return
    archives = args.images or [args.data / "coil20" / "coil20_objects_01_10.npz"]
    grid = [0.2, 0.25, 0.3, 0.35, 0.4, 0.45]
    mirrors = [{"on": True, "off": False}[m] for m in args.mirror.split(",")]
    for views, mirror in [(int(v), m) for v in args.views.split(",") for m in mirrors]:
        got = [image_table(a, grid, args.trials, args.seed, args.min_view_gap, views, args.view_step, mirror) for a in archives]
        if len(got) > 1:
            print(f"\nall {len(got)} archives pooled, {views} view(s){' and their mirrors' if mirror else ''}")
            print_image_rates(*(np.concatenate(x) for x in zip(*got)), grid)


if __name__ == "__main__":
    main()
