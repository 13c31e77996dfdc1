"""Candidate regions: where in a camera frame the objects might be.

Three pluggable finders share one interface, ``find(image) -> list[Candidate]``:

- ``center``: one box in the middle of the frame (a person holds the object up to the camera);
- ``grid``: every cell of a ``grid_rows`` x ``grid_cols`` grid;
- ``contours``: separate objects on a plain surface (a table, a floor). The background is estimated
  at a coarse scale (a median of a small copy, so it follows shadows and gradients but not
  objects), each pixel's colour distance from it is thresholded (Otsu, with a floor), edges (Canny)
  fill in objects whose colour is close to the surface, and morphology closes the blobs. Blobs are
  filtered by area, boxes that overlap or nearly touch are merged, and a margin is added. On a
  cluttered or textured surface one mask floods or breaks into texture blobs, so by default boxes
  are also proposed from stricter masks (only the top fractions of colour distances), with and
  without edge outlines and gap merging; the boxes most masks agree on are kept, near-duplicates
  dropped (``clutter_foreground_fractions``).

:func:`teach_region` is the centre box used when teaching. OpenCV does the image work; nothing here
touches a device.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import cv2
import numpy as np

from edge.settings import SettingsError, setting

Box = tuple[int, int, int, int]  # (x, y, w, h) in pixels
CLUTTER_SAME_IOU = 0.6  # clutter mode: proposals overlapping this much are the same object


@dataclass(frozen=True)
class CandidateSettings:
    """Which finder proposes object regions, and its limits."""

    finder: Literal["center", "grid", "contours"] = setting(
        "contours", "how candidates are found: center (one middle box), grid (every cell), contours (separate objects on a plain surface)"
    )
    center_fraction: float = setting(0.5, "side of the centre box (center finder and teaching) as a fraction of the frame's sides", min=0.05, max=1.0)
    grid_rows: int = setting(2, "rows of the grid finder", min=1, max=16)
    grid_cols: int = setting(3, "columns of the grid finder", min=1, max=16)
    min_area_fraction: float = setting(0.002, "contours: smallest object box kept, as a fraction of the frame area", min=0.0, max=1.0)
    max_area_fraction: float = setting(0.5, "contours: largest object box kept, as a fraction of the frame area", min=0.0, max=1.0)
    max_candidates: int = setting(8, "at most this many candidates per frame (the largest, most distinct first)", min=1, max=256)
    margin_fraction: float = setting(0.08, "contours: each box grows by this fraction of its size on every side", min=0.0, max=1.0)
    work_width_px: int = setting(320, "contours: frames are analysed at this width, pixels (boxes are scaled back)", min=64, max=4096)
    min_contrast: float = setting(12.0, "contours: least colour distance from the surface that counts as object (Lab units)", min=0.0, max=255)
    merge_gap_fraction: float = setting(0.02, "contours: boxes closer than this fraction of the frame width are merged", min=0.0, max=1.0)
    clutter_foreground_fractions: tuple[float, ...] = setting(
        (0.3, 0.2, 0.12),
        "contours: for cluttered or textured surfaces, also propose boxes from masks keeping only these top fractions of "
        "the colour distances, with and without edge outlines and gap merging, then keep the boxes most masks agree on; "
        "[] uses one mask (plain surfaces only, about 40% less time)",
        min=0.001,
        max=1.0,
    )

    def validate(self) -> None:
        """The area range must not be empty."""
        if self.min_area_fraction >= self.max_area_fraction:
            raise SettingsError(
                f"min_area_fraction: must be below max_area_fraction ({self.max_area_fraction}), got {self.min_area_fraction}"
            )


@dataclass(frozen=True)
class Candidate:
    """A region that may hold one object: its box in the frame and the RGB pixels inside it."""

    box: Box
    crop: np.ndarray  # (h, w, 3) uint8 RGB


class CandidateFinder(Protocol):
    """Proposes candidate regions in an RGB frame."""

    def find(self, image: np.ndarray) -> list[Candidate]:
        """Candidates in ``image`` ((H, W, 3) uint8 RGB), best first."""


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        shape = getattr(image, "shape", None)
        raise ValueError(f"candidate image: expected a non-empty (H, W, 3) uint8 RGB array, got {shape} {getattr(image, 'dtype', type(image))}")
    return image


def crop(image: np.ndarray, box: Box) -> Candidate:
    """The candidate for ``box``, clipped to the image."""
    x, y, w, h = box
    H, W = image.shape[:2]
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(W, x + w), min(H, y + h)
    return Candidate((x0, y0, x1 - x0, y1 - y0), image[y0:y1, x0:x1].copy())


def center_box(width: int, height: int, fraction: float) -> Box:
    """The centred box whose sides are ``fraction`` of the frame's."""
    w, h = max(1, round(width * fraction)), max(1, round(height * fraction))
    return ((width - w) // 2, (height - h) // 2, w, h)


def teach_region(image: np.ndarray, settings: CandidateSettings) -> Candidate:
    """The centre region where a person holds up the object being taught."""
    image = _check_image(image)
    return crop(image, center_box(image.shape[1], image.shape[0], settings.center_fraction))


class CenterFinder:
    """One candidate: the centre box."""

    def __init__(self, settings: CandidateSettings) -> None:
        self.settings = settings

    def find(self, image: np.ndarray) -> list[Candidate]:
        """The centre region only."""
        return [teach_region(image, self.settings)]


class GridFinder:
    """Every cell of a rows x cols grid, row by row."""

    def __init__(self, settings: CandidateSettings) -> None:
        self.settings = settings

    def find(self, image: np.ndarray) -> list[Candidate]:
        """All cells (at most max_candidates), covering the frame without gaps."""
        image = _check_image(image)
        H, W = image.shape[:2]
        rows, cols = self.settings.grid_rows, self.settings.grid_cols
        ys = np.linspace(0, H, rows + 1).round().astype(int)
        xs = np.linspace(0, W, cols + 1).round().astype(int)
        out = [crop(image, (int(xs[c]), int(ys[r]), int(xs[c + 1] - xs[c]), int(ys[r + 1] - ys[r]))) for r in range(rows) for c in range(cols)]
        return out[: self.settings.max_candidates]


def _merge_boxes(boxes: list[Box], gap: int) -> list[Box]:
    """Merge boxes that overlap or lie within ``gap`` pixels of each other, until none do."""
    boxes = list(boxes)
    merged = True
    while merged:
        merged = False
        for i in range(len(boxes)):
            for j in range(i + 1, len(boxes)):
                ax, ay, aw, ah = boxes[i]
                bx, by, bw, bh = boxes[j]
                if ax - gap < bx + bw and bx - gap < ax + aw and ay - gap < by + bh and by - gap < ay + ah:
                    x0, y0 = min(ax, bx), min(ay, by)
                    x1, y1 = max(ax + aw, bx + bw), max(ay + ah, by + bh)
                    boxes[i] = (x0, y0, x1 - x0, y1 - y0)
                    del boxes[j]
                    merged = True
                    break
            if merged:
                break
    return boxes


class ContourFinder:
    """Separate objects on a plain (possibly textured or shadowed) surface."""

    def __init__(self, settings: CandidateSettings) -> None:
        self.settings = settings

    def _threshold(self, lab: np.ndarray, background: np.ndarray, top_fraction: float | None = None) -> np.ndarray:
        """0/255 mask of pixels whose colour stands out from the surface estimate (at most ``top_fraction`` of them)."""
        diff = lab - background
        # lightness counts less than colour, and darkening least: shadows darken the surface, keeping its hue
        diff[..., 0] *= np.where(diff[..., 0] < 0, 0.25, 0.5)
        dist8 = np.clip(np.sqrt((diff**2).sum(axis=-1)) * 2.0, 0, 255).astype(np.uint8)
        # the surface's own spread (median and MAD: robust to the objects on it) sets the threshold;
        # Otsu alone splits between bright and dull objects when several colours are present
        otsu, _ = cv2.threshold(dist8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        median = float(np.median(dist8))
        spread = 1.4826 * float(np.median(np.abs(dist8.astype(np.float32) - median)))
        threshold = max(min(otsu, median + 6.0 * spread), 2.0 * self.settings.min_contrast)
        if top_fraction is not None:  # clutter: the surface is most of the frame, so only the most distinct pixels count
            threshold = max(threshold, float(np.percentile(dist8, 100.0 * (1.0 - top_fraction))))
        return (dist8 > threshold).astype(np.uint8) * 255

    def foreground(self, image: np.ndarray) -> np.ndarray:
        """(h, w) uint8 mask (0/255) of object pixels at the working width."""
        return self._masks(image, (None,), (True,))[0]

    def _masks(self, image: np.ndarray, top_fractions: tuple[float | None, ...], with_edges: tuple[bool, ...]) -> list[np.ndarray]:
        """Foreground masks for each (top fraction, with edges) pair; the surface estimate is computed once."""
        H, W = image.shape[:2]
        scale = min(1.0, self.settings.work_width_px / W)
        small = cv2.resize(image, (max(1, round(W * scale)), max(1, round(H * scale))), interpolation=cv2.INTER_AREA)
        h, w = small.shape[:2]
        # smooth away fine texture (wood grain, fabric) before comparing colours
        blur = cv2.GaussianBlur(small, (0, 0), sigmaX=max(1.0, w / 200))
        lab = cv2.cvtColor(blur, cv2.COLOR_RGB2LAB).astype(np.float32)
        # surface estimate, pass 1: median of a coarse copy (objects are smaller than its neighbourhood)
        coarse = cv2.resize(lab, (16, max(2, round(16 * h / w))), interpolation=cv2.INTER_AREA)
        coarse = np.stack([cv2.medianBlur(np.ascontiguousarray(coarse[..., c]), 5) for c in range(3)], axis=-1)
        mask = self._threshold(lab, cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR))
        # pass 2: a smooth fit to the surface alone (normalised convolution over the pixels pass 1 left
        # out), so a large object near a corner no longer drags the estimate and leaves a halo
        keep = 1.0 - cv2.dilate(mask, np.ones((5, 5), np.uint8)).astype(np.float32) / 255.0
        quarter = (max(2, w // 4), max(2, h // 4))  # the fit is smooth: compute it at a quarter size
        sigma = quarter[0] / 12
        keep_q = cv2.resize(keep, quarter, interpolation=cv2.INTER_AREA)
        lab_q = cv2.resize(lab * keep[..., None], quarter, interpolation=cv2.INTER_AREA)
        weight = cv2.GaussianBlur(keep_q, (0, 0), sigma) + 1e-6
        background = cv2.resize(cv2.GaussianBlur(lab_q, (0, 0), sigma) / weight[..., None], (w, h), interpolation=cv2.INTER_LINEAR)
        # edges close outlines of objects whose colour is near the surface's; textures are mostly blurred away
        gray = cv2.cvtColor(blur, cv2.COLOR_RGB2GRAY)
        edges = cv2.Canny(gray, 60, 150)
        edges = cv2.morphologyEx(edges, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
        edge_blobs = np.zeros_like(edges)
        contours, _ = cv2.findContours(edges, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        for c in contours:  # only closed outlines (filled area well above their perimeter) count
            if cv2.contourArea(c) > 4 * cv2.arcLength(c, True):
                cv2.drawContours(edge_blobs, [c], -1, 255, thickness=cv2.FILLED)
        k = max(3, (w // 80) | 1)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
        masks = []
        for top in top_fractions:
            base = self._threshold(lab, background, top)
            for use_edges in with_edges:
                mask = cv2.bitwise_or(base, edge_blobs) if use_edges else base
                mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)
                masks.append(cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel, iterations=2))
        return masks

    def boxes(self, image: np.ndarray) -> list[Box]:
        """Object boxes in full-frame pixels (with margin), largest first (in clutter mode: the most agreed on, then largest first)."""
        image = _check_image(image)
        H, W = image.shape[:2]
        fractions = self.settings.clutter_foreground_fractions
        if not fractions:
            return self._mask_boxes(self.foreground(image), W, H, self.settings.merge_gap_fraction)[: self.settings.max_candidates]
        # Clutter: one mask cannot separate objects from a busy surface, so propose from several masks
        # (stricter thresholds, with and without edge outlines, with and without gap merging) and keep
        # the boxes that many masks agree on, dropping near-duplicates.
        proposals: list[Box] = []
        for mask in self._masks(image, (None, *fractions), (True, False)):
            for gap in (self.settings.merge_gap_fraction, 0.0):
                proposals += self._mask_boxes(mask, W, H, gap)
        votes = [sum(iou(b, o) >= CLUTTER_SAME_IOU for o in proposals) for b in proposals]
        out: list[Box] = []
        for i in sorted(range(len(proposals)), key=lambda i: (-votes[i], -proposals[i][2] * proposals[i][3])):
            if all(iou(proposals[i], o) < CLUTTER_SAME_IOU for o in out):
                out.append(proposals[i])
        return sorted(out[: self.settings.max_candidates], key=lambda b: b[2] * b[3], reverse=True)

    def _mask_boxes(self, mask: np.ndarray, W: int, H: int, merge_gap_fraction: float) -> list[Box]:
        """Boxes of the mask's blobs in full-frame pixels (merged, filtered by area, with margin), largest first."""
        h, w = mask.shape
        sx, sy = W / w, H / h
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        raw = [cv2.boundingRect(c) for c in contours]
        min_area = self.settings.min_area_fraction * w * h
        raw = [b for b in raw if b[2] * b[3] >= min_area]
        merged = _merge_boxes(raw, round(merge_gap_fraction * w))
        out: list[Box] = []
        for x, y, bw, bh in merged:
            area_fraction = (bw * bh) / (w * h)
            if not self.settings.min_area_fraction <= area_fraction <= self.settings.max_area_fraction:
                continue
            mx, my = self.settings.margin_fraction * bw, self.settings.margin_fraction * bh
            x0, y0 = max(0, round((x - mx) * sx)), max(0, round((y - my) * sy))
            x1, y1 = min(W, round((x + bw + mx) * sx)), min(H, round((y + bh + my) * sy))
            out.append((x0, y0, x1 - x0, y1 - y0))
        out.sort(key=lambda b: b[2] * b[3], reverse=True)
        return out

    def find(self, image: np.ndarray) -> list[Candidate]:
        """One candidate per separate object, largest first."""
        return [crop(image, b) for b in self.boxes(image)]


FINDERS = {"center": CenterFinder, "grid": GridFinder, "contours": ContourFinder}


def make_finder(settings: CandidateSettings) -> CandidateFinder:
    """The finder named by ``settings.finder``."""
    return FINDERS[settings.finder](settings)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ix = max(0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union else 0.0
