"""Drawn table-top scenes with known object boxes, for testing the candidate finders."""
from __future__ import annotations

import cv2
import numpy as np

Box = tuple[int, int, int, int]

COLOURS = [(200, 30, 30), (30, 140, 40), (30, 60, 190), (230, 200, 20), (120, 40, 150), (20, 20, 20), (240, 120, 20), (20, 160, 170)]


def surface(rng: np.random.Generator, size: tuple[int, int], textured: bool) -> np.ndarray:
    """(H, W, 3) float32 table surface: plain with sensor noise, or wood-like grain under uneven light and a cast shadow."""
    h, w = size
    base = np.array(rng.uniform(150, 215, 3), np.float32)
    img = np.broadcast_to(base, (h, w, 3)).copy()
    if textured:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        grain = np.sin(xx / rng.uniform(3, 7) + 3 * np.sin(yy / rng.uniform(30, 60))) * 12
        blotches = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), 6) * 60
        img += (grain + blotches)[..., None]
        light = 0.65 + 0.35 * (xx / w)  # light from one side
        if rng.random() < 0.5:
            light = light[:, ::-1]
        shadow = np.zeros((h, w), np.float32)  # a soft cast shadow across part of the table
        cv2.ellipse(shadow, (int(rng.uniform(0.2, 0.8) * w), int(rng.uniform(0.2, 0.8) * h)), (w // 3, h // 5), rng.uniform(0, 180), 0, 360, 1.0, -1)
        shadow = cv2.GaussianBlur(shadow, (0, 0), 25)
        img *= (light * (1 - 0.35 * shadow))[..., None]
    img += rng.standard_normal((h, w, 3)).astype(np.float32) * 3
    return img


def scene(seed: int, textured: bool, size: tuple[int, int] = (480, 640), objects: int = 4) -> tuple[np.ndarray, list[Box]]:
    """An RGB uint8 scene and the boxes of the objects drawn on it."""
    rng = np.random.default_rng(seed)
    h, w = size
    img = surface(rng, size, textured)
    boxes: list[Box] = []
    colours = rng.permutation(len(COLOURS))
    tries = 0
    while len(boxes) < objects and tries < 500:
        tries += 1
        bw, bh = int(rng.uniform(0.08, 0.2) * w), int(rng.uniform(0.1, 0.25) * h)
        x, y = int(rng.uniform(0.03 * w, w - bw - 0.03 * w)), int(rng.uniform(0.03 * h, h - bh - 0.03 * h))
        if any(x < bx + bw2 + 40 and bx < x + bw + 40 and y < by + bh2 + 40 and by < y + bh + 40 for bx, by, bw2, bh2 in boxes):
            continue
        colour = np.array(COLOURS[colours[len(boxes) % len(COLOURS)]], np.float32)
        mask = np.zeros((h, w), np.uint8)
        shape = len(boxes) % 3
        if shape == 0:
            cv2.rectangle(mask, (x, y), (x + bw - 1, y + bh - 1), 1, -1)
        elif shape == 1:
            cv2.ellipse(mask, (x + bw // 2, y + bh // 2), (bw // 2, bh // 2), 0, 0, 360, 1, -1)
        else:
            pts = np.array([[x + bw // 2, y], [x, y + bh - 1], [x + bw - 1, y + bh - 1]], np.int32)
            cv2.fillPoly(mask, [pts], 1)
        ys, xs = np.nonzero(mask)
        box = (int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1))
        # soft contact shadow, then the object with shading and a little texture of its own
        shadow = cv2.GaussianBlur(np.roll(mask, (6, 6), axis=(0, 1)).astype(np.float32), (0, 0), 5)
        img *= (1 - 0.3 * shadow)[..., None]
        shade = 0.85 + 0.15 * np.linspace(0, 1, w, dtype=np.float32)[None, :]
        obj = colour[None, None, :] * shade[..., None] + rng.standard_normal((h, w, 3)).astype(np.float32) * 4
        img = np.where(mask[..., None] > 0, obj, img)
        boxes.append(box)
    return np.clip(img, 0, 255).astype(np.uint8), boxes
