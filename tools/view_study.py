"""Several views per taught object (issue 17): how many to keep, how to choose them, and what confirmed answers add.

    python tools/view_study.py omniglot --encoders objects,digits            # the choice of teach.views and the rule
    python tools/view_study.py grid --images out/data/coil20/coil20.csv --speech out/data/fsdd.csv
    python tools/view_study.py confirmed --images out/data/coil20/coil20.csv --speech out/data/fsdd.csv

``omniglot`` is what ``teach.views`` rests on: Omniglot's evaluation characters (no encoder was trained
on them, none is a digit or an object of COIL-20), with the 20 people who drew each character standing
in for views of an object. Per episode and character, a pool of ``--pool`` drawings stands for the crops
the daemon samples while a word is said (the first one is the crop it keeps first); N of them are kept,
by the daemon's own rule (:func:`edge.daemon.choose_views`: each time the one farthest in embedding space
from those kept) or at random, and a drawing by someone else is the object seen later. Printed: image-only
accuracy (the test drawing's nearest view names the character) and the answer's accuracy (for each taught
character, the top candidate among the test drawings, ranked as the daemon ranks them).
With ``--frames``, the pool is what a camera gives while an object is turned with pauses: 8 frames
of only 3 drawings (4, 3 and 1 frames of them), each frame the drawing moved a little (up to 3
degrees, 1 pixel, 3 % of its size, as a hand holding it still moves it), so that picking frames at
random often picks the same view twice.

``grid`` and ``confirmed`` run on COIL-20 (the test set: they report, they choose nothing): ``grid`` the
image-only accuracy of the benchmark's episodes (same sampler and seed as ``showsay bench``, so the same
numbers) for a grid of teaching views and spacings; ``confirmed`` what a few confirmed answers do: after
teaching, the robot is asked R times for a random taught object shown from a random view (at least
``--min-view-gap`` from the test view, so the test stays as far from every stored view) among one view of
every other object; when its answer is right the person confirms and the crop becomes a learned view
(at most ``teach.learned_views_per_word``, oldest dropped; a wrong answer changes nothing), then the
test views are classified as in the benchmark.
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: on a small shared CPU BLAS threads made matching 100x slower
import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.bench.episodes import EpisodeSampler, view_distance  # noqa: E402
from edge.bench.manifest import read_image_manifest, read_speech_manifest  # noqa: E402
from edge.daemon import TeachSample, TeachSettings, choose_views  # noqa: E402
from edge.encoders import EncoderSettings, embed_crops, load_image_encoder  # noqa: E402
from edge.images import load_image  # noqa: E402
from edge.matching import MatchSettings, SupportSet  # noqa: E402

OMNIGLOT = ROOT.parent / "shared" / "data" / "omniglot" / "images_evaluation.npz"
RANKING = MatchSettings(unknown_word_distance=None)  # the daemon's ranking (mutual exclusivity, "none of them" at not_in_view_distance)


def embed_all(encoder: str, crops: list[np.ndarray]) -> np.ndarray:
    enc = load_image_encoder(EncoderSettings(image=encoder))
    return np.concatenate([embed_crops(enc, crops[i : i + 64]) for i in range(0, len(crops), 64)])


def _support(views_per_class: list[np.ndarray]) -> SupportSet:
    s = SupportSet("cosine")
    for k, views in enumerate(views_per_class):
        s.add(k, np.ones(1, np.float32), views, str(k))
    return s


def _scores(s: SupportSet, test: np.ndarray, ranking: MatchSettings = RANKING) -> tuple[float, float]:
    """(image-only, answer) accuracy: test[k] is an image of class k, and pair k (row k) is class k."""
    image = float(np.mean(s.nearest_rows(test) == np.arange(len(test))))
    answer = float(np.mean([s.rank_candidates(k, test, ranking)[0].index == k for k in range(len(test))]))
    return image, answer


# ---------------------------------------------------------------------------- Omniglot: the choice


def omniglot(args: argparse.Namespace) -> None:
    from train.prepare import omniglot_to_mnist_style

    raw = np.load(args.omniglot)["images"][: args.classes]  # (classes, 20 drawers, 105, 105) bool
    if args.frames:
        raw = _frames_with_pauses(raw, np.random.default_rng(args.seed + 1))
        args.pool = FRAMES_PER_POOL
    crops = [omniglot_to_mnist_style(im, 5) for im in raw.reshape(-1, *raw.shape[2:])]
    counts = [int(n) for n in args.views.split(",")]
    min_distance = TeachSettings().view_min_distance
    what = "8 frames of 3 drawings (4 + 3 + 1, jittered)" if args.frames else f"{args.pool} drawings"
    print(f"Omniglot evaluation, first {raw.shape[0]} characters, drawers as views: {args.ways}-way, a pool of {what} "
          f"per taught character, tested on a drawing by another person; {args.episodes} episodes, seed {args.seed}\n")
    print("| image encoder | rule | " + " | ".join(f"{n} view{'s' if n > 1 else ''}" for n in counts) + " |")
    print("|---|---|" + "---|" * len(counts))
    for name in args.encoders.split(","):
        emb = embed_all(name, crops).reshape(raw.shape[0], raw.shape[1], -1)
        rng = np.random.default_rng(args.seed)
        acc = {(rule, n): [] for rule in ("farthest", "random") for n in counts}
        for _ in range(args.episodes):
            classes = rng.choice(emb.shape[0], args.ways, replace=False)
            if args.frames:  # the 8 frames in a random order, then one other person's drawing
                draws = [np.concatenate([rng.permutation(FRAMES_PER_POOL), FRAMES_PER_POOL + rng.permutation(emb.shape[1] - FRAMES_PER_POOL)]) for _ in classes]
            else:
                draws = [rng.permutation(emb.shape[1]) for _ in classes]
            pools = [emb[c, d[: args.pool]] for c, d in zip(classes, draws)]
            test = np.stack([emb[c, d[args.pool]] for c, d in zip(classes, draws)])
            orders = [np.concatenate([[0], 1 + rng.permutation(args.pool - 1)]) for _ in classes]  # the random rule's picks
            for n in counts:
                far = []
                for pool in pools:
                    samples = [TeachSample(None, None, 1.0, e) for e in pool]
                    far.append(np.stack([s.embedding for s in choose_views(samples, samples[0], n, 0.0, min_distance)]))
                acc[("farthest", n)].append(_scores(_support(far), test))
                acc[("random", n)].append(_scores(_support([pool[o[:n]] for pool, o in zip(pools, orders)]), test))
        for rule in ("farthest", "random"):
            cells = [acc[(rule, n)] for n in counts]
            print(f"| {name} | {rule} | " + " | ".join(f"{100 * np.mean([a[0] for a in c]):.1f} / {100 * np.mean([a[1] for a in c]):.1f}" for c in cells) + " |")
    print("\n(each cell: image-only / answer accuracy %)")


FRAMES_PER_POOL = 8
FRAME_COUNTS = (4, 3, 1)  # frames of each of the 3 drawings in a pool


def _frames_with_pauses(raw: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(classes, 8 + 17, 105, 105): per character 8 jittered frames of drawers 0-2 (4, 3, 1 of them), then drawers 3-19 as they are."""
    import cv2

    out = np.empty((raw.shape[0], FRAMES_PER_POOL + raw.shape[1] - len(FRAME_COUNTS), *raw.shape[2:]), bool)
    for c in range(raw.shape[0]):
        k = 0
        for d, count in enumerate(FRAME_COUNTS):
            ink = (~raw[c, d]).astype(np.uint8) * 255
            for _ in range(count):
                m = cv2.getRotationMatrix2D((52, 52), rng.uniform(-3, 3), rng.uniform(0.97, 1.03))
                m[:, 2] += rng.uniform(-1, 1, 2)
                out[c, k] = cv2.warpAffine(ink, m, (105, 105)) < 128
                k += 1
        out[c, k:] = raw[c, len(FRAME_COUNTS):]
    return out


# ---------------------------------------------------------------------------- COIL-20: results


def _coil(args: argparse.Namespace) -> tuple[list, list, np.ndarray]:
    images = read_image_manifest(args.images)
    speech = read_speech_manifest(args.speech)  # labels and speakers only: the benchmark's episodes, none of its audio
    emb = embed_all(args.encoder, [load_image(it.path) for it in images])
    return images, speech, emb


def grid(args: argparse.Namespace) -> None:
    images, speech, emb = _coil(args)
    counts = [int(n) for n in args.views.split(",")]
    steps = [int(s) for s in args.steps.split(",")]
    print(f"{args.images}: image-only {args.ways}-way {args.shots}-shot, matching view >= {args.min_view_gap} views from every "
          f"support view, {args.encoder} encoder, {args.episodes} episodes, seed {args.seed} (the episodes of showsay bench)\n")
    print("| teaching views | " + " | ".join(f"{s} view{'s' if s > 1 else ''} apart" for s in steps) + " |")
    print("|---|" + "---|" * len(steps))
    for n in counts:
        cells = []
        for step in steps if n > 1 else steps[:1]:
            sampler = EpisodeSampler(speech, images, args.ways, args.shots, 10, "different", args.min_view_gap, teach_views=n, teach_view_step=step)
            rng = np.random.default_rng(args.seed)
            right = []
            for _ in range(args.episodes):
                ep = sampler.sample(rng)
                s = SupportSet("cosine")
                for pid, lab in enumerate(ep.support_labels):
                    s.add(pid, np.ones(1, np.float32), emb[list(ep.views_of(pid))], lab)
                nearest = s.nearest_rows(emb[list(ep.matching)])
                right.append(np.mean([ep.support_labels[r] == c for r, c in zip(nearest, ep.classes)]))
            mean = float(np.mean(right))
            cells.append(f"{100 * mean:.1f} ± {196 * np.std(right, ddof=1) / np.sqrt(len(right)):.1f}")
        print(f"| {n} | " + " | ".join(cells + ([cells[0]] * (len(steps) - 1) if n == 1 else [])) + " |")


def confirmed(args: argparse.Namespace) -> None:
    images, speech, emb = _coil(args)
    rounds = [int(r) for r in args.rounds.split(",")]
    keep = args.learned_views_per_word
    sampler = EpisodeSampler(speech, images, args.ways, 1, 10, "different", args.min_view_gap,
                             teach_views=args.teach_views, teach_view_step=args.teach_view_step)
    by_label: dict[str, list[int]] = {}
    for i, it in enumerate(images):
        by_label.setdefault(it.label, []).append(i)
    print(f"{args.images}: {args.ways}-way one-shot, {args.teach_views} teaching views {args.teach_view_step} apart, test view >= "
          f"{args.min_view_gap} views from every stored view (taught and learned), {args.encoder} encoder, at most {keep} learned "
          f"views per word, {args.episodes} episodes, seed {args.seed}\n")
    print("| requests answered before the test (per episode of 10 words) | confirmed (right) | marked wrong | not in view | image-only % | answer % |")
    print("|---|---|---|---|---|---|")
    for r_max in rounds:
        rng = np.random.default_rng(args.seed)
        scores, counts = [], np.zeros(3)
        for _ in range(args.episodes):
            ep = sampler.sample(rng)
            s = _support([emb[list(ep.views_of(k))] for k in range(len(ep.classes))])
            n_views = {c: max(images[i].view for i in by_label[c]) + 1 for c in ep.classes}
            stored = {k: [images[i].view for i in ep.views_of(k)] for k in range(len(ep.classes))}
            learned: dict[int, list[int]] = {k: [] for k in range(len(ep.classes))}
            key = 0
            for _ in range(r_max):
                k = int(rng.integers(len(ep.classes)))
                c = ep.classes[k]
                test_view = images[ep.matching[k]].view
                far = [i for i in by_label[c] if view_distance(images[i].view, test_view, n_views[c]) >= args.min_view_gap
                       and images[i].view not in stored[k]]
                shown = int(rng.choice(far))
                others = [int(rng.choice(by_label[o])) for o in ep.classes if o != c]
                cands = np.stack([emb[shown], *emb[others]])  # candidate 0 is the object asked for
                best = s.rank_candidates(k, cands, RANKING)[0]
                if RANKING.not_in_view_distance is not None and best.image_distance > RANKING.not_in_view_distance:
                    counts[2] += 1
                elif best.index == 0:
                    counts[0] += 1
                    key += 1
                    s.add_view(k, emb[shown], key)
                    learned[k].append(key)
                    if len(learned[k]) > keep:
                        s.remove_view(learned[k].pop(0))
                else:
                    counts[1] += 1
            scores.append(_scores(s, emb[list(ep.matching)]))
        sc = np.asarray(scores)
        ci = 196 * sc.std(axis=0, ddof=1) / np.sqrt(len(sc))
        c = counts / args.episodes
        print(f"| {r_max} | {c[0]:.1f} | {c[1]:.1f} | {c[2]:.1f} | {100 * sc[:, 0].mean():.1f} ± {ci[0]:.1f} | {100 * sc[:, 1].mean():.1f} ± {ci[1]:.1f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="study", required=True)
    o = sub.add_parser("omniglot", help="the choice: drawers as views on Omniglot's evaluation characters")
    o.add_argument("--omniglot", type=Path, default=OMNIGLOT)
    o.add_argument("--encoders", default="objects,digits")
    o.add_argument("--classes", type=int, default=300, help="evaluation characters used (the first N of 659)")
    o.add_argument("--views", default="1,2,3,4,5,6,8")
    o.add_argument("--pool", type=int, default=8, help="drawings per taught character to choose from (teach.frames_to_sample)")
    o.add_argument("--frames", action="store_true", help="the pool is 8 frames of 3 drawings, as a turn with pauses gives")
    for p in (o, g := sub.add_parser("grid", help="COIL-20 image-only accuracy by teaching views and spacing"),
              c := sub.add_parser("confirmed", help="COIL-20: what confirmed answers add")):
        p.add_argument("--ways", type=int, default=10)
        p.add_argument("--episodes", type=int, default=400)
        p.add_argument("--seed", type=int, default=0)
        if p is not o:
            p.add_argument("--images", type=Path, required=True)
            p.add_argument("--speech", type=Path, required=True, help="the benchmark's speech manifest (labels and speakers only), for its episodes")
            p.add_argument("--encoder", default="objects")
            p.add_argument("--min-view-gap", type=int, default=9)
    g.add_argument("--shots", type=int, default=1)
    g.add_argument("--views", default="1,2,3,4,5,7")
    g.add_argument("--steps", default="1,2,3,4")
    c.add_argument("--teach-views", type=int, default=TeachSettings().views)
    c.add_argument("--teach-view-step", type=int, default=2)
    c.add_argument("--rounds", default="0,5,10,20,40")
    c.add_argument("--learned-views-per-word", type=int, default=TeachSettings().learned_views_per_word)
    args = ap.parse_args()
    {"omniglot": omniglot, "grid": grid, "confirmed": confirmed}[args.study](args)


if __name__ == "__main__":
    main()
