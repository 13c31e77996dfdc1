"""Image-only 10-way accuracy against the exact turntable distance between support and matching view.

    python tools/view_distance_curve.py out/data/coil20/coil20.csv --encoders pixels,objects

For every image (the matching view) and each distance d, the support set holds the view d steps
further round (both directions) of every object; the answer is right when the nearest support
view by cosine distance is of the same object. Needs a manifest with a view column.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from edge.bench.manifest import read_image_manifest
from edge.encoders import EncoderSettings, embed_crops, load_image_encoder
from edge.images import load_image


def curve(emb: np.ndarray, labels: list[str], views: list[int], distances: list[int]) -> list[float]:
    """Accuracy at each distance (views on a circle of max(view)+1)."""
    emb = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    n_views = max(views) + 1
    index = {(lab, v): i for i, (lab, v) in enumerate(zip(labels, views))}
    classes = sorted(set(labels))
    out = []
    for d in distances:
        right = total = 0
        for i, (lab, v) in enumerate(zip(labels, views)):
            for sign in (1, -1):
                sup = [index[(c, (v + sign * d) % n_views)] for c in classes]
                right += labels[sup[int(np.argmax(emb[sup] @ emb[i]))]] == lab
                total += 1
        out.append(right / total)
    return out


def main() -> None:
    """Print a markdown table, one row per encoder."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("manifest", type=Path)
    p.add_argument("--encoders", default="pixels,objects")
    p.add_argument("--distances", default="1,2,4,9,18,27,36")
    args = p.parse_args()
    items = read_image_manifest(args.manifest)
    labels, views = [it.label for it in items], [int(it.view) for it in items]  # type: ignore[arg-type]
    crops = [load_image(it.path) for it in items]
    distances = [int(d) for d in args.distances.split(",")]
    print("| encoder | " + " | ".join(f"{d} steps ({d * 360 // (max(views) + 1)} deg)" for d in distances) + " |")
    print("|---|" + "---|" * len(distances))
    for name in args.encoders.split(","):
        enc = load_image_encoder(EncoderSettings(image=name))
        emb = np.concatenate([embed_crops(enc, crops[i : i + 64]) for i in range(0, len(crops), 64)])
        print(f"| {name} | " + " | ".join(f"{100 * a:.1f}" for a in curve(emb, labels, views, distances)) + " |")


if __name__ == "__main__":
    main()
