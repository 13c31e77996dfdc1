"""Images: load, convert, resize and normalise in one place, with settings a model records."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from edge.settings import SettingsError, setting, to_dict


class ImageError(ValueError):
    """An image file cannot be used: missing, unreadable or empty."""


@dataclass(frozen=True)
class ImageSettings:
    """How an image (a crop, a dataset sample) becomes an encoder input of shape (channels, size, size)."""

    size_px: int = setting(28, "side of the square input, pixels", min=8, max=1024)
    color: Literal["gray", "rgb"] = setting("gray", "channels the encoder takes: gray (1) or rgb (3)")
    keep_aspect: bool = setting(True, "pad to a square (with the border colour) before resizing instead of stretching")
    mean: tuple[float, ...] = setting((0.0,), "per-channel mean subtracted after scaling to [0, 1]")
    std: tuple[float, ...] = setting((1.0,), "per-channel divisor after the mean is subtracted", min=1e-6)

    @property
    def channels(self) -> int:
        """Number of input channels."""
        return 1 if self.color == "gray" else 3

    def validate(self) -> None:
        """Mean and std need one value, or one per channel."""
        for name in ("mean", "std"):
            if len(getattr(self, name)) not in (1, self.channels):
                raise SettingsError(f"{name}: needs 1 or {self.channels} values, got {getattr(self, name)!r}")

    def as_dict(self) -> dict[str, Any]:
        """Plain dict, as recorded in model metadata."""
        return to_dict(self)


def load_image(path: str | os.PathLike) -> np.ndarray:
    """uint8 image from a png or jpg file: (H, W) grey or (H, W, 3) RGB."""
    path = Path(path)
    if not path.is_file():
        raise ImageError(f"{path}: no such image file")
    img = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if img is None or img.size == 0:
        raise ImageError(f"{path}: not a readable image (png or jpg)")
    if img.dtype != np.uint8:  # 16-bit png: keep the top byte
        img = (img >> 8).astype(np.uint8) if img.dtype == np.uint16 else img.astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    elif img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    return img


def _square(img: np.ndarray) -> np.ndarray:
    """Pad to a square with the median border colour, keeping the object centred."""
    h, w = img.shape[:2]
    if h == w:
        return img
    border = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    fill = np.median(border, axis=0)
    side = max(h, w)
    top, left = (side - h) // 2, (side - w) // 2
    value = [float(v) for v in np.atleast_1d(fill)]
    return cv2.copyMakeBorder(img, top, side - h - top, left, side - w - left, cv2.BORDER_CONSTANT, value=value)


def preprocess_image(img: np.ndarray, settings: ImageSettings) -> np.ndarray:
    """(channels, size, size) float32 encoder input of a uint8 grey or RGB image."""
    if img.size == 0:
        raise ImageError("empty image")
    if settings.color == "gray" and img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    elif settings.color == "rgb" and img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if settings.keep_aspect:
        img = _square(img)
    n = settings.size_px
    interp = cv2.INTER_AREA if min(img.shape[:2]) > n else cv2.INTER_LINEAR
    img = cv2.resize(img, (n, n), interpolation=interp)
    x = img.astype(np.float32) / 255.0
    x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)  # (C, H, W)
    mean = np.asarray(settings.mean, np.float32).reshape(-1, 1, 1)
    std = np.asarray(settings.std, np.float32).reshape(-1, 1, 1)
    return (x - mean) / std


def preprocess_batch(images: list[np.ndarray], settings: ImageSettings) -> np.ndarray:
    """(N, channels, size, size) float32 batch."""
    if not images:
        return np.zeros((0, settings.channels, settings.size_px, settings.size_px), np.float32)
    return np.stack([preprocess_image(im, settings) for im in images])
