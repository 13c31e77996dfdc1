"""Choose ``matching.word_best_of`` on background data: the held-out words of ``showsay train prepare``.

    python tools/calibrate_word_scoring.py --data out/train-data --shots 5 --episodes 1000

No test class is looked at: the words are the 60 background words that training holds out for
validation (``train.data.load_speech``; synthesized voices and Speech Commands speakers, never a
digit). Each episode teaches ``ways`` words, ``shots`` clean clips each, and asks for every word once
with a clip by a speaker who taught none of that word's shots; the answer is right when the request
names the word asked for. Accuracy is printed for each ``best_of`` value, with the shipped speech
encoder alone and fused with DTW (the config default), for equal shots and for words taught 1 to
``shots`` times in one episode (as in a daemon's memory).

``--real-voices`` uses the recorded background words instead (Speech Commands and 40 clips of each
wake word: many crowd-sourced speakers) with DTW alone: the speech encoder was trained
on these clips, DTW learns nothing. Wake-word clips carry no speaker label; each counts as its own.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from edge.audio import read_wav
from edge.encoders import EncoderSettings, load_speech_encoder, support_set_for
from edge.features import SpeechFeatureSettings, speech_features
from edge.matching import SupportSet
from train.augment import trim_silence
from train.data import load_speech
from train.prepare import PrepareSettings, _real_clips

BEST_OF = (1, 2, 3, 5)
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def episodes(labels: np.ndarray, speakers: np.ndarray, clean: np.ndarray, ways: int, shots: int, mixed: bool, count: int, seed: int) -> list[tuple[list[np.ndarray], np.ndarray]]:
    """(support rows per word, query row per word) for each episode; a query's speaker taught none of its word's shots."""
    rng = np.random.default_rng(seed)
    by_word = {int(w): np.flatnonzero(clean & (labels == w)) for w in np.unique(labels)}
    usable = np.array([w for w, idx in by_word.items() if len(set(speakers[idx].tolist())) > shots])
    out = []
    while len(out) < count:
        words = rng.choice(usable, ways, replace=False)
        support, queries = [], []
        for w in words:
            idx = rng.permutation(by_word[int(w)])
            k = int(rng.integers(1, shots + 1)) if mixed else shots
            taught = idx[:k]
            others = [i for i in idx[k:] if speakers[i] not in set(speakers[taught].tolist())]
            if not others:
                break
            support.append(taught)
            queries.append(others[0])
        if len(queries) == ways:
            out.append((support, np.array(queries)))
    return out


def accuracy(packed: list[np.ndarray], metric: str, fuse_dtw: float, eps: list[tuple[list[np.ndarray], np.ndarray]], best_of: tuple[int, ...]) -> list[float]:
    """Fraction of requests that name the right word, per ``best_of`` value."""
    right = np.zeros(len(best_of))
    for support_rows, queries in eps:
        support = SupportSet(metric, dtw_weight=fuse_dtw)
        for word, rows in enumerate(support_rows):
            for r in rows:
                support.add(len(support), packed[r], np.ones(1, np.float32), str(word))
        for word, q in enumerate(queries):
            for j, n in enumerate(best_of):
                row, _ = support.nearest_utterance(packed[q], n)
                right[j] += support.labels[row] == str(word)
    return list(right / sum(len(q) for _, q in eps))


def main() -> None:
    """Print a Markdown table: speech scoring x best_of."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="folder built by 'showsay train prepare' (not needed with --real-voices)")
    ap.add_argument("--shared", type=Path, default=SHARED, help="the shared data folder (with --real-voices)")
    ap.add_argument("--real-voices", action="store_true", help="recorded background words, DTW alone (see above)")
    ap.add_argument("--val-words", type=int, default=60, help="held-out words (as in training)")
    ap.add_argument("--ways", type=int, default=10)
    ap.add_argument("--shots", type=int, default=5)
    ap.add_argument("--episodes", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.real_voices:
        fs = SpeechFeatureSettings()
        clips = _real_clips(args.shared, PrepareSettings(max_wake_word_clips=40), {}, [])
        names = sorted({c[1] for c in clips})
        labels = np.array([names.index(c[1]) for c in clips])
        speakers = np.array([c[2] for c in clips])
        clean = np.ones(len(clips), bool)
        items = [speech_features(trim_silence(read_wav(c[0], fs.sample_rate_hz), fs.sample_rate_hz), fs) for c in clips]
        systems = (("DTW alone", "dtw", 0.0),)
        what = f"{len(names)} recorded background words, {len(clips)} clips"
    else:
        if args.data is None:
            ap.error("--data is needed unless --real-voices is given")
        _, val, summary = load_speech(args.data, args.val_words)
        enc = load_speech_encoder(EncoderSettings(speech="default", fuse_dtw=0.5), SpeechFeatureSettings(**summary["feature_settings"]))
        if support_set_for(enc).metric != "fused":
            raise SystemExit("expected the shipped speech encoder fused with DTW")
        items, labels, speakers, clean = enc.embed(val.items), val.labels, val.speakers, val.clean
        systems = (("embedding", "fused", 0.0), ("fused with DTW (0.5)", "fused", 0.5))
        what = f"{len(val.names)} held-out words, {int(val.clean.sum())} clean clips"
    print(f"background validation: {what}; {args.ways}-way, up to {args.shots} shots, {args.episodes} episodes x {args.ways} requests, seed {args.seed}")
    print("| speech | shots per word | " + " | ".join(f"best_of={n}" for n in BEST_OF) + " |")
    print("|---|---|" + "---|" * len(BEST_OF))
    for mixed in (False, True):
        eps = episodes(labels, speakers, clean, args.ways, args.shots, mixed, args.episodes, args.seed)
        for name, metric, weight in systems:
            acc = accuracy(items, metric, weight, eps, BEST_OF)
            shots = f"1-{args.shots} (random per word)" if mixed else str(args.shots)
            print(f"| {name} | {shots} | " + " | ".join(f"{100 * a:.1f}" for a in acc) + " |", flush=True)

if __name__ == "__main__":
    main()
