"""How much a handwriting encoder cares about the pen and the slant, on background data only.

    python tools/pen_robustness.py --encoders digits,out/models/image_s0.onnx --episodes 1000

Omniglot's evaluation alphabets (never used in training, no digits): each episode teaches ``ways``
characters with one drawing each, drawn with training's pen (``train prepare``: strokes thickened by
a 5 px ellipse at 105 px, MNIST-style box). The other drawing of each character, the query, is drawn
with another pen (a thinner or thicker ellipse) and/or slanted (a horizontal shear before the box is
cut), as another writer's hand would be. Prints one-shot accuracy per encoder and drawing; the
episodes and drawings are the same for every encoder.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from edge.encoders import EncoderSettings, embed_crops, load_image_encoder
from train.prepare import PrepareSettings, omniglot_to_mnist_style

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "omniglot" / "images_evaluation.npz"
TRAINING_PEN = PrepareSettings().ink_dilation_px  # 5 px at 105 px, as 'train prepare' draws every character
RENDERINGS = (("training's pen", TRAINING_PEN, 0.0), ("thin pen (1 px)", 1, 0.0), ("thick pen (9 px)", 9, 0.0), ("slanted 0.3", TRAINING_PEN, 0.3), ("slanted -0.3", TRAINING_PEN, -0.3), ("thick pen, slanted 0.3", 9, 0.3))


def render(paper: np.ndarray, pen_px: int, shear: float) -> np.ndarray:
    """MNIST-style 28x28 drawing of a (105, 105) Omniglot image (True = paper), with this pen and slant."""
    if shear:
        h, w = paper.shape
        pad = int(np.ceil(abs(shear) * h / 2))
        ink = np.pad((~paper.astype(bool)).astype(np.uint8), ((0, 0), (pad, pad)))
        m = np.float32([[1, shear, -shear * h / 2], [0, 1, 0]])  # slant about the middle row
        ink = cv2.warpAffine(ink, m, (w + 2 * pad, h), flags=cv2.INTER_NEAREST)
        paper = ink == 0
    return omniglot_to_mnist_style(paper, pen_px)


def main() -> None:
    """Print a Markdown table: rendering of the query x encoder."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--omniglot", type=Path, default=SHARED, help="images_evaluation.npz")
    ap.add_argument("--encoders", default="digits", help="comma-separated: shipped names or .onnx paths")
    ap.add_argument("--ways", type=int, default=10)
    ap.add_argument("--episodes", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    with np.load(args.omniglot) as z:
        raw = z["images"]  # (classes, drawers, 105, 105) bool
    rng = np.random.default_rng(args.seed)
    eps = [(rng.choice(raw.shape[0], args.ways, replace=False), rng.integers(0, raw.shape[1], (args.ways, 2))) for _ in range(args.episodes)]
    eps = [(c, np.where(d[:, :1] == d[:, 1:], np.stack([d[:, 0], (d[:, 0] + 1) % raw.shape[1]], 1), d)) for c, d in eps]  # two drawers
    support_crops = [omniglot_to_mnist_style(raw[c, d[0]], TRAINING_PEN) for cls, dr in eps for c, d in zip(cls, dr)]
    names = args.encoders.split(",")
    encoders = [load_image_encoder(EncoderSettings(image=n)) for n in names]

    def embed(enc, crops: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([embed_crops(enc, crops[i : i + 256]) for i in range(0, len(crops), 256)]).reshape(args.episodes, args.ways, -1)

    support = [embed(enc, support_crops) for enc in encoders]
    print(f"Omniglot evaluation, {args.ways}-way one-shot, {args.episodes} episodes, seed {args.seed}; support drawn with training's pen")
    print("| query drawing | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for label, pen, shear in RENDERINGS:
        query_crops = [render(raw[c, d[1]], pen, shear) for cls, dr in eps for c, d in zip(cls, dr)]
        acc = []
        for enc, sup in zip(encoders, support):
            q = embed(enc, query_crops)
            nearest = np.einsum("eqd,esd->eqs", q, sup).argmax(axis=2)
            acc.append(float((nearest == np.arange(args.ways)).mean()))
        print(f"| {label} | " + " | ".join(f"{100 * a:.1f}" for a in acc) + " |", flush=True)


if __name__ == "__main__":
    main()
