"""Composed scenes: object images pasted on real photographs with known boxes, to measure candidate finders.

A scene is a background photograph (fitted to the frame, its light scaled) with objects pasted at
random sizes and places that do not overlap, each with a soft drop shadow and its own brightness.
The object images are cut from their dark studio background (COIL-20 style) by a threshold mask.
Since every pasted object's box is known, a candidate finder is scored by recall at IoU >= 0.5 and
by how many candidates it proposes per frame; and the one-shot benchmark can draw its matching set
from what the finder proposes in a scene instead of from clean crops, so finder errors count.

Backgrounds are the openly licensed photographs that scikit-image ships inside its wheel (read as
files from the installed package, skimage itself is never imported); see BACKGROUNDS for licenses.
Object images are read from the benchmark's image manifest at run time and never stored.
"""
from __future__ import annotations

import importlib.util
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from edge.bench.episodes import Episode, EpisodeSampler
from edge.bench.manifest import ImageItem, SpeechItem
from edge.bench.runner import BenchSettings, EmbeddingCache, mean_ci95, row_protocol
from edge.candidates import Box, iou  # boxes are (x, y, w, h) pixels, as the finders write them
from edge.encoders import ImageEncoder, SpeechEncoder, embed_crops, support_set_for
from edge.features import SpeechFeatureSettings
from edge.images import load_image
from edge.matching import DISTANCE_ONLY, MatchSettings
from edge.settings import setting

log = logging.getLogger(__name__)

Finder = Callable[[np.ndarray], Sequence[Box]]  # RGB frame -> candidate boxes

# File in skimage/data -> license, as scikit-image documents it (skimage/data/_fetchers.py).
BACKGROUNDS = {
    "coffee.png": "CC0 (photographer Rachel Michetti)",
    "brick.png": "CC0 (CC0Textures Bricks25)",
    "gravel.png": "CC0 (CC0Textures Gravel04)",
    "grass.png": "CC0 (DeviantArt linolafett Grass-01)",
    "chelsea.png": "CC0 (photographer Stefan van der Walt)",
    "camera.png": "CC0 (photographer Lav Varshney)",
    "astronaut.png": "public domain (NASA)",
    "rocket.jpg": "public domain (SpaceX)",
}
IOU_HIT = 0.5


class SceneError(ValueError):
    """A scene cannot be composed (no backgrounds, objects that do not fit the frame)."""


@dataclass(frozen=True)
class SceneSettings:
    """How composed scenes look."""

    frame_width_px: int = setting(640, "frame width, pixels", min=64)
    frame_height_px: int = setting(480, "frame height, pixels", min=64)
    object_min_px: int = setting(64, "smallest side of a pasted object's square, pixels", min=8)
    object_max_px: int = setting(112, "largest side of a pasted object's square, pixels", min=8)
    gap_px: int = setting(8, "least free space between two pasted objects, pixels", min=0)
    mask_threshold: int = setting(24, "grey level above the image's border level that counts as object, 0-255", min=1, max=254)
    shadow_offset_px: int = setting(6, "drop shadow offset, pixels (direction drawn per scene)", min=0)
    shadow_darkening: float = setting(0.45, "how much a shadow darkens the background at its core, 0-1", min=0.0, max=1.0)
    light_range: tuple[float, float] = setting((0.7, 1.2), "range of the gain applied to a background's brightness")
    object_light_range: tuple[float, float] = setting((0.8, 1.2), "range of the gain applied to each object's brightness")


@dataclass(frozen=True)
class Scene:
    """A composed RGB frame and the box of each pasted object, in the order they were given."""

    frame: np.ndarray  # (H, W, 3) uint8 RGB
    boxes: tuple[Box, ...]
    labels: tuple[str, ...] = ()  # label of each pasted object, when known


def skimage_data_dir() -> Path:
    """scikit-image's bundled data folder, found without importing skimage."""
    spec = importlib.util.find_spec("skimage")
    if spec is None or spec.origin is None:
        raise SceneError("scikit-image is not installed: its bundled photographs are the scene backgrounds (pip install scikit-image==0.26.0)")
    return Path(spec.origin).parent / "data"


def load_backgrounds(names: Sequence[str] = tuple(BACKGROUNDS), folder: Path | None = None) -> list[np.ndarray]:
    """The background photographs as uint8 RGB arrays."""
    folder = skimage_data_dir() if folder is None else folder
    out = []
    for name in names:
        img = load_image(folder / name)  # raises ImageError naming the file
        out.append(cv2.cvtColor(img, cv2.COLOR_GRAY2RGB) if img.ndim == 2 else img)
    if not out:
        raise SceneError("no background images given")
    return out


def object_mask(img: np.ndarray, threshold: int) -> np.ndarray:
    """Bool mask of the object in a studio image on a dark, flat background (border median + threshold)."""
    grey = img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    border = np.concatenate([grey[0], grey[-1], grey[:, 0], grey[:, -1]])
    level = float(np.median(border))
    mask = (cv2.GaussianBlur(grey, (3, 3), 0).astype(np.float32) > level + threshold).astype(np.uint8)
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    # Fill holes: everything not reachable from the border through background is object.
    flood = np.pad(1 - mask, 1, constant_values=1).astype(np.uint8)
    cv2.floodFill(flood, None, (0, 0), 2)
    return (flood[1:-1, 1:-1] != 2) | mask.astype(bool)


def recall_hits(truth: Sequence[Box], candidates: Sequence[Box], threshold: float = IOU_HIT) -> list[bool]:
    """For each true box, whether some candidate overlaps it with IoU >= ``threshold``."""
    return [any(iou(t, c) >= threshold for c in candidates) for t in truth]


def _fit_background(bg: np.ndarray, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """Scale ``bg`` to cover the frame, then crop a random window of the frame's size."""
    h, w = bg.shape[:2]
    scale = max(width / w, height / h)
    scaled = cv2.resize(bg, (max(width, round(w * scale)), max(height, round(h * scale))), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    y = int(rng.integers(scaled.shape[0] - height + 1))
    x = int(rng.integers(scaled.shape[1] - width + 1))
    return scaled[y : y + height, x : x + width]


def compose_scene(background: np.ndarray, objects: Sequence[np.ndarray], rng: np.random.Generator, settings: SceneSettings = SceneSettings(), attempts: int = 300) -> Scene:
    """Paste ``objects`` (uint8 grey or RGB studio images) on ``background``; boxes are the pasted masks' tight boxes."""
    W, H = settings.frame_width_px, settings.frame_height_px
    if settings.object_max_px + 2 > min(W, H) or settings.object_min_px > settings.object_max_px:
        raise SceneError(f"objects of {settings.object_min_px}-{settings.object_max_px} px do not fit a {W}x{H} frame")
    bg = background if background.ndim == 3 else cv2.cvtColor(background, cv2.COLOR_GRAY2RGB)
    frame = _fit_background(bg, W, H, rng).astype(np.float32) * rng.uniform(*settings.light_range)
    angle = rng.uniform(0, 2 * np.pi)
    sdx, sdy = round(settings.shadow_offset_px * np.cos(angle)), round(settings.shadow_offset_px * np.sin(angle))
    taken: list[Box] = []
    boxes: list[Box] = []
    for n, obj in enumerate(objects):
        rgb = obj if obj.ndim == 3 else cv2.cvtColor(obj, cv2.COLOR_GRAY2RGB)
        mask = object_mask(obj, settings.mask_threshold)
        if not mask.any():
            raise SceneError(f"object {n}: nothing above the background level (threshold {settings.mask_threshold})")
        side = int(rng.integers(settings.object_min_px, settings.object_max_px + 1))
        h, w = rgb.shape[:2]
        s = side / max(h, w)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        alpha = cv2.resize(mask.astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
        # colour resized with the mask premultiplied, so the studio's dark background leaves no dark fringe
        premult = cv2.resize(rgb.astype(np.float32) * mask[..., None], size, interpolation=cv2.INTER_LINEAR)
        obj_px = premult / np.maximum(alpha, 1e-3)[..., None] * rng.uniform(*settings.object_light_range)
        ys, xs = np.nonzero(alpha >= 0.5)
        if ys.size == 0:
            raise SceneError(f"object {n}: its mask vanishes at {side} px")
        bx0, by0, bx1, by1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
        for _ in range(attempts):
            x = int(rng.integers(-bx0, W - bx1 + 1))
            y = int(rng.integers(-by0, H - by1 + 1))
            box = (x + bx0, y + by0, bx1 - bx0, by1 - by0)
            g = settings.gap_px + settings.shadow_offset_px
            if all(box[0] + box[2] + g <= t[0] or t[0] + t[2] + g <= box[0] or box[1] + box[3] + g <= t[1] or t[1] + t[3] + g <= box[1] for t in taken):
                break
        else:
            raise SceneError(f"object {n}: no free place in a {W}x{H} frame after {attempts} tries (fewer or smaller objects)")
        taken.append(box)
        boxes.append(box)
        _paste(frame, obj_px, alpha, x, y, sdx, sdy, settings.shadow_darkening)
    return Scene(np.clip(frame, 0, 255).astype(np.uint8), tuple(boxes))


def _paste(frame: np.ndarray, obj: np.ndarray, alpha: np.ndarray, x: int, y: int, sdx: int, sdy: int, darkening: float) -> None:
    """Shadow (blurred, offset alpha darkening the frame), then the object blended by its alpha; clipped at the frame edges."""
    pad = abs(sdx) + abs(sdy) + 4
    shadow = cv2.GaussianBlur(np.pad(alpha, pad), (0, 0), sigmaX=max(1.0, pad / 3))
    _blend(frame, None, shadow * darkening, x - pad + sdx, y - pad + sdy)
    _blend(frame, obj, alpha, x, y)


def _blend(frame: np.ndarray, obj: np.ndarray | None, alpha: np.ndarray, x: int, y: int) -> None:
    """frame = alpha * obj + (1 - alpha) * frame in the overlap (obj None: darken by alpha)."""
    H, W = frame.shape[:2]
    h, w = alpha.shape
    fx0, fy0, fx1, fy1 = max(0, x), max(0, y), min(W, x + w), min(H, y + h)
    if fx0 >= fx1 or fy0 >= fy1:
        return
    a = alpha[fy0 - y : fy1 - y, fx0 - x : fx1 - x, None]
    region = frame[fy0:fy1, fx0:fx1]
    if obj is None:
        region *= 1.0 - a
    else:
        region[:] = a * obj[fy0 - y : fy1 - y, fx0 - x : fx1 - x] + (1.0 - a) * region


def crops_of(frame: np.ndarray, boxes: Sequence[Box]) -> list[np.ndarray]:
    """The frame's pixels inside each box (boxes clipped to the frame; empty boxes dropped by the caller)."""
    H, W = frame.shape[:2]
    out = []
    for x, y, w, h in boxes:
        x0, y0, x1, y1 = max(0, x), max(0, y), min(W, x + w), min(H, y + h)
        out.append(frame[y0:y1, x0:x1])
    return out


@dataclass(frozen=True)
class FinderScore:
    """A finder's recall over composed scenes."""

    frames: int
    objects: int
    recall: float  # fraction of pasted objects with a candidate at IoU >= 0.5
    candidates_per_frame: float
    ms_per_frame: float

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return dict(self.__dict__)


def score_finder(finder: Finder, scenes: Sequence[Scene]) -> FinderScore:
    """Recall at IoU >= 0.5 and candidates per frame of ``finder`` on ``scenes``."""
    hits = n_cand = n_obj = 0
    t = 0.0
    for sc in scenes:
        t0 = time.perf_counter()
        cands = list(finder(sc.frame))
        t += time.perf_counter() - t0
        hits += sum(recall_hits(sc.boxes, cands))
        n_obj += len(sc.boxes)
        n_cand += len(cands)
    n = max(1, len(scenes))
    return FinderScore(len(scenes), n_obj, hits / max(1, n_obj), n_cand / n, 1000.0 * t / n)


def save_frames(folder: Path, scenes: Sequence[Scene]) -> int:
    """Write ``folder/frames/%04d.png`` (RGB frames as a cv2.VideoCapture image sequence) and ``folder/boxes.csv``; returns the box count."""
    from edge.bench.manifest import write_manifest

    (folder / "frames").mkdir(parents=True, exist_ok=True)
    rows: list[tuple[object, ...]] = []
    for n, sc in enumerate(scenes):
        path = folder / "frames" / f"{n:04d}.png"
        if not cv2.imwrite(str(path), cv2.cvtColor(sc.frame, cv2.COLOR_RGB2BGR)):
            raise OSError(f"{path}: cannot write frame")
        rows.extend((n, sc.labels[k] if sc.labels else "", *box) for k, box in enumerate(sc.boxes))
    write_manifest(folder / "boxes.csv", ("frame", "label", "x", "y", "w", "h"), rows)
    return len(rows)


def random_scenes(images: Sequence[ImageItem], backgrounds: Sequence[np.ndarray], n_frames: int, objects_per_frame: int, rng: np.random.Generator, settings: SceneSettings = SceneSettings()) -> list[Scene]:
    """``n_frames`` scenes, each with ``objects_per_frame`` objects of distinct labels drawn from ``images``."""
    by_label: dict[str, list[int]] = {}
    for i, it in enumerate(images):
        by_label.setdefault(it.label, []).append(i)
    labels = sorted(by_label)
    if objects_per_frame > len(labels):
        raise SceneError(f"{objects_per_frame} objects per frame need as many labels; the manifest has {len(labels)}")
    scenes = []
    for _ in range(n_frames):
        chosen = [labels[k] for k in rng.choice(len(labels), objects_per_frame, replace=False)]
        objs = [load_image(images[by_label[c][rng.integers(len(by_label[c]))]].path) for c in chosen]
        sc = compose_scene(backgrounds[rng.integers(len(backgrounds))], objs, rng, settings)
        scenes.append(Scene(sc.frame, sc.boxes, tuple(chosen)))
    return scenes


def run_scene_benchmark(
    speech: Sequence[SpeechItem],
    images: Sequence[ImageItem],
    speech_enc: SpeechEncoder,
    image_enc: ImageEncoder,
    features: SpeechFeatureSettings,
    settings: BenchSettings,
    finder: Finder | None,
    backgrounds: Sequence[np.ndarray],
    scene_settings: SceneSettings = SceneSettings(),
    none_of_them_distance: float | None = None,
) -> dict[str, Any]:
    """The one-shot benchmark with the matching set cut from a composed scene by ``finder``.

    Each episode's matching images are pasted into one scene; the finder's candidates are embedded
    and the spoken query resolves to one of them. A query is right when the chosen candidate covers
    the queried object (IoU >= 0.5), so a missed or badly cut object costs the answer. Image-only:
    for each class, the candidate nearest its support image(s) must cover that class's object. ``finder`` None
    stands for a perfect finder (the true boxes): what cutting crops out of a scene costs by itself.
    ``none_of_them_distance``: the daemon's ``not_in_view_distance``, used as it is in the daemon's
    ranking (the "none of the taught words" outcome of mutual exclusivity), never to reject.
    """
    ranking = MatchSettings(unknown_word_distance=None, not_in_view_distance=none_of_them_distance, mutual_exclusivity=settings.mutual_exclusivity,
                            word_best_of=settings.word_best_of, dtw_warp=settings.dtw_warp)
    sampler = EpisodeSampler(list(speech), list(images), settings.ways, settings.shots, settings.queries, settings.speakers, settings.min_view_gap,
                             teach_views=settings.teach_views, teach_view_step=settings.teach_view_step)
    cache = EmbeddingCache(speech, images, speech_enc, image_enc, features)
    mm, mm_dist, im, recall, n_cands = [], [], [], [], []
    t_start = time.perf_counter()
    for seed in settings.seeds:
        rng = np.random.default_rng(seed)
        episodes = [sampler.sample(rng) for _ in range(settings.episodes)]
        taught = {i for ep in episodes for k in range(len(ep.support_images)) for i in ep.views_of(k)}
        cache.fill({i for ep in episodes for i in (*ep.support_speech, *ep.queries)}, taught, progress=False,
                   warp_idx={i for ep in episodes for i in ep.queries}, warp=settings.dtw_warp, mirror_idx=taught if settings.mirror_views else set())
        for ep in episodes:
            scene = compose_scene(backgrounds[rng.integers(len(backgrounds))], [load_image(images[i].path) for i in ep.matching], rng, scene_settings)
            found = scene.boxes if finder is None else finder(scene.frame)
            boxes: list[Box] = [tuple(int(v) for v in b) for b in found if b[2] > 0 and b[3] > 0]  # type: ignore[misc]
            recall.append(float(np.mean(recall_hits(scene.boxes, boxes))))
            n_cands.append(len(boxes))
            a_mm, a_dist, a_im = _score_scene_episode(ep, scene, boxes, cache, image_enc, settings.pairs_as_words, ranking)
            mm.append(a_mm)
            mm_dist.append(a_dist)
            im.append(a_im)
    acc, ci = mean_ci95(mm)
    acc_dist, ci_dist = mean_ci95(mm_dist)
    im_acc, im_ci = mean_ci95(im)
    n_q = settings.queries * settings.episodes * len(settings.seeds)
    return {
        "ways": settings.ways, "shots": settings.shots, "episodes": settings.episodes, "queries": settings.queries,
        "seeds": list(settings.seeds), "min_view_gap": settings.min_view_gap, "speakers": settings.speakers,
        "teach_views": settings.teach_views, "teach_view_step": settings.teach_view_step, "mirror_views": settings.mirror_views,
        "speech_encoder": speech_enc.encoder_id, "image_encoder": image_enc.encoder_id,
        "protocol": row_protocol(speech_enc, image_enc), "speech_protocol": getattr(speech_enc, "protocol", "pretrained"),
        "image_protocol": getattr(image_enc, "protocol", "pretrained"),
        "mutual_exclusivity": settings.mutual_exclusivity, "word_best_of": settings.word_best_of, "dtw_warp": settings.dtw_warp, "none_of_them_distance": none_of_them_distance, "accuracy": acc, "ci95": ci,
        "accuracy_distance_only": acc_dist, "ci95_distance_only": ci_dist, "image_accuracy": im_acc, "image_ci95": im_ci,
        "finder_recall": float(np.mean(recall)), "candidates_per_frame": float(np.mean(n_cands)),
        "seconds_per_query": (time.perf_counter() - t_start) / n_q,
    }


def _score_scene_episode(
    ep: Episode, scene: Scene, boxes: list[Box], cache: EmbeddingCache, image_enc: ImageEncoder, pairs_as_words: bool, ranking: MatchSettings
) -> tuple[float, float, float]:
    """(multimodal, multimodal ranked by distance only, image-only) accuracy of one episode on one scene."""
    if not boxes:
        return 0.0, 0.0, 0.0
    cand = embed_crops(image_enc, crops_of(scene.frame, boxes))  # (C, E)
    covers = np.array([[iou(b, t) >= IOU_HIT for t in scene.boxes] for b in boxes])  # (C, L): candidate c covers object k
    support = support_set_for(cache.speech_enc)
    for pid, (s, lab) in enumerate(zip(ep.support_speech, ep.support_labels)):
        views = [cache.images[i] for i in ep.views_of(pid)] + [cache.mirrors[i] for i in ep.views_of(pid) if i in cache.mirrors]
        support.add(pid, cache.speech[s], np.stack(views), None if pairs_as_words else lab)
    right = right_dist = 0
    for q in ep.queries:
        k = ep.classes.index(cache.speech_items[q].label)
        row, _ = support.nearest_utterance(cache.speech[q], ranking.word_best_of, cache.warped.get(q, ()))
        right += bool(covers[support.rank_candidates(row, cand, ranking)[0].index, k])
        right_dist += bool(covers[support.rank_candidates(row, cand, DISTANCE_ONLY)[0].index, k])
    dist = support.pair_image_distances(cand).T  # (L*K, C): each pair's nearest view
    right_im = 0
    for k, c in enumerate(ep.classes):
        rows = [r for r, lab in enumerate(ep.support_labels) if lab == c]
        right_im += bool(covers[int(dist[rows].min(axis=0).argmin()), k])
    return right / len(ep.queries), right_dist / len(ep.queries), right_im / len(ep.classes)
