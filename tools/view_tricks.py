"""Cheap ways to get more out of several taught views (issue 17's unmet target), chosen on objects that are not COIL-20.

    python tools/view_tricks.py --images out/data/turntable/turntable.csv out/data/turntable-coherent/turntable.csv
    python tools/view_tricks.py --images out/data/coil20/coil20.csv --speech out/data/fsdd.csv --methods base,CHOSEN  # the test: report only

Protocol (that of ``showsay bench --teach-views 5 --teach-view-step 2 --min-view-gap 9``, image side only):
10-way one-shot, each taught object keeps 5 views 10 degrees apart around the taught one (0, +10, -10,
+20, -20 degrees), and the object seen later is at least 45 degrees from every taught view; a test
image is named by its nearest taught word. Episodes come from :class:`edge.bench.episodes.EpisodeSampler`
(for a manifest without speech, one made-up recording per class and two speakers, so only the image
draws matter; with ``--speech`` the benchmark's own episodes, draw for draw).

Every method changes only what is stored at teach time or how the distances to a word's stored views
are combined; the candidate seen at answer time is embedded once, as today:

- ``base``: the product today: a word's distance is the minimum cosine distance over its views.
- ``mirror``: each taught view is also stored flipped left-right (a view at +t of an object with a
  mirror-symmetric shape resembles the flipped view at -t).
- ``tta``: each taught view is also stored as 4 slightly changed crops (zoomed in and out by 10 %,
  shifted 6 % left and right).
- ``mirror+tta``: both.
- ``mean2``: the mean of the 2 smallest distances instead of the minimum.
- ``proto W``: (1 - W) x the minimum + W x the distance to the (normalised) mean of the word's views.
- ``centre``: embeddings minus the mean of every taught view of the episode (all words), renormalised,
  then the minimum (what a memory could keep up to date as words are taught).
- ``powB``: every embedding (taught and seen) raised to the power B elementwise (the pooled features are
  non-negative) and renormalised: a power transform, as few-shot learners do with pretrained features;
  it changes what is compared, so it would change every objects distance and threshold.
- ``extrap-outer``, ``extrap-all``: further views extrapolated in embedding space (2 a - b, renormalised)
  beyond the outermost taught views (their angles known) or from every ordered pair of views (not known).
- ``padP``: every crop (taught and seen) padded by P of its side with its border colour before the
  encoder (the crop's margin, a preprocessing choice).

Printed per image set: accuracy % (± 1.96 standard errors over episodes) and the paired gain over
``base`` in the same episodes (± 1.96 standard errors of the per-episode differences).
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import argparse
import hashlib
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.bench.episodes import EpisodeSampler  # noqa: E402
from edge.bench.manifest import SpeechItem, read_image_manifest, read_speech_manifest  # noqa: E402
from edge.encoders import EncoderSettings, embed_crops, load_image_encoder  # noqa: E402
from edge.images import load_image  # noqa: E402

METHODS = ("base", "mirror", "tta", "mirror+tta", "mean2", "proto0.25", "proto0.5", "centre", "centre-fixed", "mirror+centre",
           "mirror+centre-fixed", "centre-pc1", "pad0.1", "pad0.25", "mirror+pad0.1", "pow0.1", "pow0.2", "pow0.3", "pow0.4", "pow0.5", "pow0.7", "mirror+pow0.2", "mirror+pow0.3", "mirror+pow0.5",
           "extrap-outer", "extrap-all", "mirror+extrap-all")


def _pad(img: np.ndarray, frac: float) -> np.ndarray:
    h, w = img.shape[:2]
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    value = [float(v) for v in np.atleast_1d(np.median(border, axis=0))]
    py, px = int(round(frac * h)), int(round(frac * w))
    return cv2.copyMakeBorder(img, py, py, px, px, cv2.BORDER_CONSTANT, value=value)


def _zoom_in(img: np.ndarray, frac: float = 0.1) -> np.ndarray:
    h, w = img.shape[:2]
    dy, dx = int(round(frac * h / 2)), int(round(frac * w / 2))
    return img[dy : h - dy, dx : w - dx]


def _shift(img: np.ndarray, frac: float) -> np.ndarray:
    """The crop window moved sideways by ``frac`` of its width (the uncovered strip filled with the border colour)."""
    h, w = img.shape[:2]
    padded = _pad(img, abs(frac))
    px = (padded.shape[1] - w) // 2
    py = (padded.shape[0] - h) // 2
    x0 = px + int(round(frac * w))
    return padded[py : py + h, x0 : x0 + w]


VARIANTS = {  # name -> crop transform
    "plain": lambda im: im,
    "flip": lambda im: np.ascontiguousarray(im[:, ::-1]),
    "zoomin": _zoom_in,
    "zoomout": lambda im: _pad(im, 0.05),
    "left": lambda im: _shift(im, -0.06),
    "right": lambda im: _shift(im, 0.06),
    "pad0.1": lambda im: _pad(im, 0.1),
    "pad0.25": lambda im: _pad(im, 0.25),
    "flip+pad0.1": lambda im: _pad(np.ascontiguousarray(im[:, ::-1]), 0.1),
}
TTA = ("zoomin", "zoomout", "left", "right")


def embeddings(manifest: Path, encoder: str, variant: str, cache: Path) -> np.ndarray:
    """(N, dim) embeddings of every image of the manifest under a crop transform, cached on disk."""
    key = hashlib.sha256(f"{manifest.resolve()}|{encoder}|{variant}".encode()).hexdigest()[:16]
    path = cache / f"{key}.npy"
    if path.is_file():
        return np.load(path)
    enc = load_image_encoder(EncoderSettings(image=encoder))
    crops = [VARIANTS[variant](load_image(it.path)) for it in read_image_manifest(manifest)]
    out = np.concatenate([embed_crops(enc, crops[i : i + 32]) for i in range(0, len(crops), 32)])
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, out)
    print(f"  embedded {len(crops)} images of {manifest} ({variant})", file=sys.stderr, flush=True)
    return out


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def word_distances(method: str, emb: dict[str, np.ndarray], views: list[list[int]], queries: list[int],
                   fixed_mean: np.ndarray | None = None) -> np.ndarray:
    """(queries, words) distance of each test image to each taught word under ``method``."""
    stores = {"base": ("plain",), "mirror": ("plain", "flip"), "tta": ("plain", *TTA), "mirror+tta": ("plain", "flip", *TTA),
              "pad0.1": ("pad0.1",), "pad0.25": ("pad0.25",), "mirror+pad0.1": ("pad0.1", "flip+pad0.1")}
    query_variant = "pad0.1" if "pad0.1" in method else "pad0.25" if "pad0.25" in method else "plain"
    q = emb[query_variant][queries]
    if method in stores:
        out = np.empty((len(queries), len(views)))
        for k, v in enumerate(views):
            s = np.concatenate([emb[name][v] for name in stores[method]])
            out[:, k] = (1.0 - q @ s.T).min(axis=1)
        return out
    plain = emb["plain"]
    if method.startswith("pow") or method.startswith("mirror+pow"):  # power transform of the (non-negative) pooled features
        beta = float(method.split("pow")[1])
        names = ("plain", "flip") if method.startswith("mirror+") else ("plain",)
        qp = _unit(np.maximum(q, 0) ** beta)
        return np.stack([(1.0 - qp @ _unit(np.maximum(np.concatenate([emb[n][v] for n in names]), 0) ** beta).T).min(axis=1)
                         for v in views], axis=1)
    if "extrap" in method:  # views extrapolated in embedding space beyond the outermost taught ones
        names = ("plain", "flip") if method.startswith("mirror+") else ("plain",)
        out = np.empty((len(queries), len(views)))
        for k, v in enumerate(views):
            base = np.concatenate([emb[n][v] for n in names])
            e = plain[v]
            if method == "extrap-outer":  # views_of order: 0, +S, -S, +2S, -2S: from +S to +2S and on, and -S to -2S and on
                extra = [_unit(2 * e[i] - e[i - 2]) for i in range(3, len(v))]
            else:  # every ordered pair of views (the daemon does not know their angles)
                extra = [_unit(2 * e[i] - e[j]) for i in range(len(v)) for j in range(len(v)) if i != j]
            stored = np.concatenate([base, np.stack(extra)]) if extra else base
            out[:, k] = (1.0 - q @ stored.T).min(axis=1)
        return out
    if "centre" in method:
        names = ("plain", "flip") if method.startswith("mirror+") else ("plain",)
        stored = [np.concatenate([emb[n][v] for n in names]) for v in views]
        if method.endswith("centre-fixed"):
            mean = fixed_mean
        else:
            mean = np.concatenate(stored).mean(axis=0)
        stored = [s - mean for s in stored]
        qc = q - mean
        if method == "centre-pc1":  # the support's main direction of spread taken out too
            top = np.linalg.svd(np.concatenate(stored), full_matrices=False)[2][0]
            stored = [s - np.outer(s @ top, top) for s in stored]
            qc = qc - np.outer(qc @ top, top)
        qc = _unit(qc)
        return np.stack([(1.0 - qc @ _unit(s).T).min(axis=1) for s in stored], axis=1)
    d = [1.0 - q @ plain[v].T for v in views]  # each (queries, views of word k)
    if method == "mean2":
        return np.stack([np.sort(x, axis=1)[:, :2].mean(axis=1) for x in d], axis=1)
    if method.startswith("proto"):
        w = float(method[len("proto"):])
        proto = np.stack([1.0 - q @ _unit(plain[v].mean(axis=0)) for v in views], axis=1)
        return (1 - w) * np.stack([x.min(axis=1) for x in d], axis=1) + w * proto
    raise SystemExit(f"unknown method {method!r}; known: {', '.join(METHODS)}")


def _made_up_speech(labels: list[str]) -> list[SpeechItem]:
    return [SpeechItem(Path(f"{lab}_{spk}.wav"), lab, spk) for lab in labels for spk in ("a", "b")]


def run(manifest: Path, speech: Path | None, methods: list[str], args: argparse.Namespace, fixed_mean: np.ndarray) -> dict[str, np.ndarray]:
    images = read_image_manifest(manifest)
    items = read_speech_manifest(speech) if speech else _made_up_speech(sorted({it.label for it in images}))
    needed = {"plain"}
    for m in methods:
        needed |= {"mirror+pow0.2": {"flip"}, "mirror+pow0.3": {"flip"}, "mirror+pow0.5": {"flip"}, "mirror+extrap-all": {"flip"}, "mirror": {"flip"}, "mirror+centre": {"flip"}, "mirror+centre-fixed": {"flip"}, "tta": set(TTA), "mirror+tta": {"flip", *TTA}, "pad0.1": {"pad0.1"}, "pad0.25": {"pad0.25"},
                   "mirror+pad0.1": {"pad0.1", "flip+pad0.1"}}.get(m, set())
    emb = {v: embeddings(manifest, args.encoder, v, args.cache) for v in sorted(needed)}
    sampler = EpisodeSampler(items, images, args.ways, 1, 10, "different", args.min_view_gap, teach_views=args.teach_views,
                             teach_view_step=args.teach_view_step)
    rng = np.random.default_rng(args.seed)
    right = {m: [] for m in methods}
    for _ in range(args.episodes):
        ep = sampler.sample(rng)
        views = [list(ep.views_of(k)) for k in range(len(ep.classes))]
        truth = np.array([ep.support_labels.index(c) for c in ep.classes])
        for m in methods:
            right[m].append(float(np.mean(word_distances(m, emb, views, list(ep.matching), fixed_mean).argmin(axis=1) == truth)))
    return {m: np.asarray(r) for m, r in right.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=Path, nargs="+", required=True, help="image manifests (path,label,view)")
    ap.add_argument("--reference", type=Path, nargs="*", default=[],
                    help="manifests whose mean embedding centre-fixed subtracts (default: the other --images manifests); never the test set")
    ap.add_argument("--speech", type=Path, help="the benchmark's speech manifest, for its very episodes (COIL-20 with fsdd)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--encoder", default="objects")
    ap.add_argument("--ways", type=int, default=10)
    ap.add_argument("--teach-views", type=int, default=5)
    ap.add_argument("--teach-view-step", type=int, default=2)
    ap.add_argument("--min-view-gap", type=int, default=9)
    ap.add_argument("--episodes", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", type=Path, default=ROOT / "out" / "cache" / "view_tricks")
    args = ap.parse_args()
    methods = args.methods.split(",")
    if "base" not in methods:
        methods.insert(0, "base")
    print(f"image-only {args.ways}-way one-shot, {args.teach_views} teaching views {args.teach_view_step} views apart, "
          f"test view >= {args.min_view_gap} views from each, {args.encoder} encoder, {args.episodes} episodes, seed {args.seed}\n")
    results = {}
    for manifest in args.images:
        refs = args.reference or [m for m in args.images if m != manifest]
        fixed = np.concatenate([embeddings(r, args.encoder, "plain", args.cache) for r in refs]).mean(axis=0) if refs else None
        if fixed is None and any(m.endswith("centre-fixed") for m in methods):
            raise SystemExit("centre-fixed needs --reference (or a second --images manifest)")
        results[manifest] = run(manifest, args.speech, methods, args, fixed)
    print("| method | " + " | ".join(f"{m.parent.name}: accuracy % | gain (paired)" for m in args.images) + " |")
    print("|---|" + "---|---|" * len(args.images))
    for m in methods:
        cells = []
        for manifest in args.images:
            r, b = results[manifest][m], results[manifest]["base"]
            ci = 196 * r.std(ddof=1) / np.sqrt(len(r))
            diff = r - b
            dci = 196 * diff.std(ddof=1) / np.sqrt(len(diff))
            cells += [f"{100 * r.mean():.1f} ± {ci:.1f}", f"{100 * diff.mean():+.1f} ± {dci:.1f}"]
        print(f"| {m} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
