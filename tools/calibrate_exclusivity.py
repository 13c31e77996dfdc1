"""Choose ``matching.mutual_exclusivity`` on background data: Omniglot's evaluation alphabets.

    python tools/calibrate_exclusivity.py --encoders digits,objects --episodes 1000

No test class is looked at: the characters are Omniglot's evaluation set (never used to train the
encoders, and neither digits nor objects). Each episode teaches ``ways`` characters (``shots`` drawers
each) as words and shows one other drawing of every character as the candidates in view; for each
word asked for (the right word, so only the ranking of candidates is measured), the answer is right
when the top candidate is a drawing of that character. Accuracy is printed for the distance-only
ranking and for each temperature, per encoder, with the temperature that is best on average.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from edge.encoders import EncoderSettings, embed_crops, load_image_encoder
from edge.matching import DISTANCE_ONLY, MatchSettings, SupportSet
from train.prepare import omniglot_to_mnist_style

TEMPERATURES = (0.01, 0.02, 0.03, 0.05, 0.08, 0.12, 0.2, 0.3)  # fractions of the median distance (MatchSettings)
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "omniglot" / "images_evaluation.npz"


def ranking_accuracy(emb: np.ndarray, ways: int, shots: int, episodes: int, temperatures: tuple[float, ...], seed: int) -> list[float]:
    """Accuracy of the distance-only ranking, then of each temperature; ``emb`` is (classes, drawers, E)."""
    rng = np.random.default_rng(seed)
    rankings = [DISTANCE_ONLY] + [MatchSettings(unknown_word_distance=None, not_in_view_distance=None, mutual_exclusivity=t) for t in temperatures]
    right = np.zeros(len(rankings))
    for _ in range(episodes):
        classes = rng.choice(emb.shape[0], ways, replace=False)
        support = SupportSet("cosine")
        candidates = []
        for k, c in enumerate(classes):
            drawers = rng.choice(emb.shape[1], shots + 1, replace=False)
            for d in drawers[:shots]:
                support.add(len(support), np.ones(1, np.float32), emb[c, d], str(k))
            candidates.append(emb[c, drawers[shots]])
        cand = np.stack(candidates)
        for k in range(ways):
            row = k * shots  # the word's first taught pair
            for j, ranking in enumerate(rankings):
                right[j] += support.rank_candidates(row, cand, ranking)[0].index == k
    return list(right / (episodes * ways))


def main() -> None:
    """Print a Markdown table: encoder x ranking."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--omniglot", type=Path, default=SHARED, help="images_evaluation.npz")
    ap.add_argument("--encoders", default="digits,objects", help="image encoders to calibrate for (comma-separated)")
    ap.add_argument("--classes", type=int, default=200, help="evaluation characters used (the first N; 659 in all)")
    ap.add_argument("--ways", type=int, default=10)
    ap.add_argument("--shots", type=int, default=1)
    ap.add_argument("--episodes", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    data = np.load(args.omniglot)
    raw = data["images"][: args.classes]  # (classes, 20, 105, 105) bool
    crops = [omniglot_to_mnist_style(im, 5) for im in raw.reshape(-1, *raw.shape[2:])]
    rows = []
    for name in args.encoders.split(","):
        enc = load_image_encoder(EncoderSettings(image=name))
        emb = np.concatenate([embed_crops(enc, crops[i : i + 64]) for i in range(0, len(crops), 64)]).reshape(raw.shape[0], raw.shape[1], -1)
        rows.append((name, ranking_accuracy(emb, args.ways, args.shots, args.episodes, TEMPERATURES, args.seed)))
    print(f"Omniglot evaluation, first {args.classes} characters, {args.ways}-way {args.shots}-shot, {args.episodes} episodes x {args.ways} words, seed {args.seed}")
    print("| image encoder | distance only | " + " | ".join(f"T={t}" for t in TEMPERATURES) + " |")
    print("|---|---|" + "---|" * len(TEMPERATURES))
    for name, acc in rows:
        print(f"| {name} | " + " | ".join(f"{100 * a:.1f}" for a in acc) + " |")
    mean = np.mean([acc[1:] for _, acc in rows], axis=0)
    print(f"best on average: T={TEMPERATURES[int(np.argmax(mean))]} ({100 * mean.max():.1f}% vs {100 * np.mean([acc[0] for _, acc in rows]):.1f}% by distance)")


if __name__ == "__main__":
    main()
