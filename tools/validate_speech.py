"""Speech-only accuracy on the real-speaker validation set (``edge.bench.validation``): the place to choose.

    python tools/validate_speech.py --speech-encoder keywords triplet --fuse-dtw 0 0.5 --shots 1 3 --word-best-of 1 2
    python tools/validate_speech.py --speech-encoder keywords --multimodal --image-encoder digits --shots 1 3
    python tools/validate_speech.py --speech-encoder keywords head.onnx --against keywords:0

``--against NAME:W`` adds, to every row, its gain over that encoder at fuse weight W on the same episodes
(same shots and ``word_best_of``) with a paired 95% interval over episodes: the noise to beat when
two settings are compared, narrower than either row's own interval.

Prints one Markdown row per encoder setting and shot count: 10-way, each request said by a
held-out speaker who taught none of its word's shots, held-out words only. Never tune on fsdd.

``--multimodal`` pairs every validation word of an episode with an Omniglot evaluation character
(drawn per episode; neither digits nor objects of the test) and shows one other drawing of each
taught character as the candidates in view: the answer is right when the chosen candidate is the
asked word's character. Both candidate rankings (distance only, and mutual exclusivity at the
config's temperature) are scored on the same requests, so ``matching.mutual_exclusivity`` can be
chosen with real speech in front of it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from edge.bench.runner import EmbeddingCache, mean_ci95
from edge.bench.validation import CORPUS, cross_speaker_episodes, speech_outcomes, validation_items
from edge.config import load_config
from edge.encoders import EncoderSettings, PixelImage, embed_crops, load_image_encoder, load_speech_encoder, support_set_for
from edge.matching import DISTANCE_ONLY, MatchSettings

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def omniglot_embeddings(path: Path, image_encoder: str, classes: int) -> np.ndarray:
    """(classes, 20 drawers, E) embeddings of Omniglot evaluation characters, drawn as the digits encoder expects."""
    from train.prepare import omniglot_to_mnist_style  # the same rendering as training's and calibrate_exclusivity's

    raw = np.load(path)["images"][:classes]
    crops = [omniglot_to_mnist_style(im, 5) for im in raw.reshape(-1, *raw.shape[2:])]
    enc = load_image_encoder(EncoderSettings(image=image_encoder))
    return np.concatenate([embed_crops(enc, crops[i : i + 64]) for i in range(0, len(crops), 64)]).reshape(raw.shape[0], raw.shape[1], -1)


def multimodal_outcomes(encoder, items, features, episodes, images: np.ndarray, word_best_of: int, temperature: float | None, seed: int) -> np.ndarray:
    """(episodes, ways, 2) booleans: right candidate chosen by distance only [..., 0] and with mutual exclusivity [..., 1]."""
    cache = EmbeddingCache(items, [], encoder, PixelImage(), features)
    cache.fill({i for ep in episodes for rows in ep.support for i in rows} | {i for ep in episodes for i in ep.queries}, set(), progress=False)
    rng = np.random.default_rng(seed)
    exclusive = MatchSettings(unknown_word_distance=None, not_in_view_distance=None, mutual_exclusivity=temperature, word_best_of=word_best_of)
    right = np.zeros((len(episodes), len(episodes[0].words), 2), bool)
    for e, ep in enumerate(episodes):
        chars = rng.choice(images.shape[0], len(ep.words), replace=False)
        support = support_set_for(encoder)
        candidates = []
        for w, rows, c in zip(ep.words, ep.support, chars):
            drawers = rng.choice(images.shape[1], len(rows) + 1, replace=False)
            for r, d in zip(rows, drawers):
                support.add(len(support), cache.speech[r], images[c, d], w)
            candidates.append(images[c, drawers[-1]])
        cand = np.stack(candidates)
        for k, q in enumerate(ep.queries):
            row, _ = support.nearest_utterance(cache.speech[q], word_best_of)
            right[e, k, 0] = support.rank_candidates(row, cand, DISTANCE_ONLY)[0].index == k
            right[e, k, 1] = support.rank_candidates(row, cand, exclusive)[0].index == k
    return right


def parse_against(text: str, names: list[str], weights: list[float]) -> tuple[str, float]:
    """``NAME:W`` -> (NAME, W); NAME must be one of the encoders measured and W one of the weights tried."""
    name, sep, weight = text.rpartition(":")
    if not sep or name not in names:
        raise SystemExit(f"--against {text!r}: expected NAME:W with NAME one of --speech-encoder ({', '.join(names)})")
    try:
        w = 0.0 if name in ("dtw", "efficientword-net") else float(weight)
    except ValueError:
        raise SystemExit(f"--against {text!r}: the fuse weight {weight!r} is not a number") from None
    if name not in ("dtw", "efficientword-net") and w not in weights:
        raise SystemExit(f"--against {text!r}: {w:g} is not one of --fuse-dtw ({', '.join(f'{x:g}' for x in weights)})")
    return name, w


def paired_gain(acc: np.ndarray, reference: np.ndarray | None) -> tuple[float, float]:
    """Mean per-episode gain of ``acc`` over ``reference`` (same episodes) and its 95% half-width; nan without a reference."""
    if reference is None:
        return float("nan"), float("nan")
    return mean_ci95(acc - reference)


def main() -> int:
    """Print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=SHARED, help="the shared data folder")
    ap.add_argument("--speech-encoder", nargs="+", default=["dtw", "default"], help="encoder names or .onnx paths (as encoders.speech)")
    ap.add_argument("--fuse-dtw", nargs="+", type=float, default=[0.0], help="DTW fusion weights to try with model encoders")
    ap.add_argument("--shots", nargs="+", type=int, default=[1])
    ap.add_argument("--word-best-of", nargs="+", type=int, default=[1], help="matching.word_best_of values to try (matters with shots > 1)")
    ap.add_argument("--ways", type=int, default=10)
    ap.add_argument("--episodes", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", type=Path, help="YAML config for the feature settings")
    ap.add_argument("--multimodal", action="store_true", help="words paired with Omniglot evaluation characters: both candidate rankings")
    ap.add_argument("--image-encoder", default="digits", help="image encoder for --multimodal")
    ap.add_argument("--omniglot-classes", type=int, default=200, help="--multimodal: the first N evaluation characters")
    ap.add_argument("--against", metavar="NAME:W", help="also print each row's speech-only gain over this encoder and fuse weight "
                    "(one of --speech-encoder's, listed first) on the same episodes, with a paired 95%% interval")
    args = ap.parse_args()
    reference = parse_against(args.against, args.speech_encoder, args.fuse_dtw) if args.against else None
    cfg = load_config(args.config)
    items = validation_items(args.shared / CORPUS)
    print(f"real-speaker validation: {len(items)} clips, {len({i.label for i in items})} words, "
          f"{len({i.speaker for i in items})} speakers; {args.ways}-way, {args.episodes} episodes, seed {args.seed}")
    images = None
    if args.multimodal:
        images = omniglot_embeddings(args.shared / "omniglot" / "images_evaluation.npz", args.image_encoder, args.omniglot_classes)
        temperature = cfg.matching.mutual_exclusivity
        print(f"multimodal: {args.image_encoder} encoder on Omniglot evaluation characters; mutual exclusivity T={temperature}")
        print("| speech encoder | protocol | fuse_dtw | shots | word_best_of | speech-only | multimodal, distance only | multimodal, mutual exclusivity |")
        print("|---|---|---|---|---|---|---|---|")
    else:
        print("| speech encoder | protocol | fuse_dtw | shots | word_best_of | speech-only accuracy | 95% CI |"
              + (f" gain over {args.against}, paired 95% CI |" if reference else ""))
        print("|---|---|---|---|---|---|---|" + ("---|" if reference else ""))
    base: dict[tuple[int, int], np.ndarray] = {}  # (shots, word_best_of) -> the reference's per-episode accuracy
    names = sorted(args.speech_encoder, key=lambda n: n != reference[0]) if reference else args.speech_encoder
    for name in names:
        weights = [0.0] if name in ("dtw", "efficientword-net") else args.fuse_dtw
        if reference and name == reference[0]:
            weights = sorted(weights, key=lambda w: w != reference[1])  # the reference row first
        for weight in weights:
            if name == "efficientword-net":  # the benchmark-only peer (pip install --no-deps efficientword-net==1.0.5)
                from edge.bench.peers import EfficientWordNetSpeech

                enc = EfficientWordNetSpeech(threads=cfg.encoders.threads)
            else:
                enc = load_speech_encoder(EncoderSettings(speech=name, fuse_dtw=weight, threads=cfg.encoders.threads), cfg.speech_features)
            for shots in args.shots:
                eps = cross_speaker_episodes(items, args.ways, shots, args.episodes, args.seed)
                for best_of in (args.word_best_of if shots > 1 else [1]):
                    right = speech_outcomes(enc, items, cfg.speech_features, eps, best_of)
                    if images is not None:
                        mm = multimodal_outcomes(enc, items, cfg.speech_features, eps, images, best_of, cfg.matching.mutual_exclusivity, args.seed)
                        cells = [mean_ci95(x.mean(axis=1)) for x in (right, mm[..., 0], mm[..., 1])]
                        print(f"| {name} | {enc.protocol} | {weight:g} | {shots} | {best_of} | "
                              + " | ".join(f"{100 * a:.1f} +-{100 * c:.1f}" for a, c in cells) + " |", flush=True)
                        continue
                    acc, ci = mean_ci95(right.mean(axis=1))
                    gain = ""
                    if reference:
                        if (name, weight) == reference:
                            base[(shots, best_of)] = right.mean(axis=1)
                        d, dci = paired_gain(right.mean(axis=1), base.get((shots, best_of)))
                        gain = f" {100 * d:+.1f} +-{100 * dci:.1f} |"
                    print(f"| {name} | {enc.protocol} | {weight:g} | {shots} | {best_of} | {100 * acc:.1f} | +-{100 * ci:.1f} |{gain}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
