"""Benchmark output: a Markdown table and a PNG of a few episodes with the accuracy bars."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from edge.bench.manifest import ImageItem, SpeechItem
from edge.bench.runner import EpisodeOutcome
from edge.images import load_image


def _pct(value: float, ci: float) -> str:
    return f"{100 * value:.1f} ± {100 * ci:.1f}" if ci == ci else f"{100 * value:.1f}"


def markdown_table(results: Sequence[dict[str, Any]]) -> str:
    """One row per benchmark summary: accuracies in % with 95% confidence half-widths."""
    head = "| protocol | speech encoder | image encoder | ways | shots | speakers | episodes x seeds | multimodal % | multimodal, distance only % | speech-only % | image-only % | ms/query |"
    rows = [head, "|" + "---|" * 12]
    for r in results:
        rows.append(
            f"| {r.get('protocol', '?')} | {r['speech_encoder']} | {r['image_encoder']} | {r['ways']} | {r['shots']} | {r['speakers']} | "
            f"{r['episodes']} x {len(r['seeds'])} | {_pct(r['accuracy'], r['ci95'])} | {_pct(r['accuracy_distance_only'], r['ci95_distance_only'])} | {_pct(r['speech_accuracy'], r['speech_ci95'])} | "
            f"{_pct(r['image_accuracy'], r['image_ci95'])} | {1000 * r['seconds_per_query']:.2f} |"
        )
    return "\n".join(rows)


def _tile(img: np.ndarray, size: int, colour: tuple[int, int, int] | None = None) -> np.ndarray:
    rgb = img if img.ndim == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    tile = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_NEAREST)
    if colour is not None:
        cv2.rectangle(tile, (0, 0), (size - 1, size - 1), colour, 3)
    return tile


def _text(canvas: np.ndarray, text: str, x: int, y: int, scale: float = 0.45) -> None:
    cv2.putText(canvas, text, (x, y), cv2.FONT_HERSHEY_SIMPLEX, scale, (20, 20, 20), 1, cv2.LINE_AA)


def save_plot(path: Path, summary: dict[str, Any], outcomes: Sequence[EpisodeOutcome], speech: Sequence[SpeechItem], images: Sequence[ImageItem], n_episodes: int = 3) -> None:
    """PNG: for a few episodes the support images, each query's word and chosen image (green right, red wrong); then accuracy bars."""
    tile, gap = 48, 6
    ways = summary["ways"]
    width = max(ways * (tile + gap) + 160, 520)
    rows_h = n_episodes * (2 * tile + 3 * gap + 30)
    bars_h = 150
    canvas = np.full((rows_h + bars_h + 20, width, 3), 255, np.uint8)
    y = 10
    for o in list(outcomes)[:n_episodes]:
        ep = o.episode
        _text(canvas, "support (one per word):", 8, y + 12)
        x = 160
        first = {}
        for s, i, lab in zip(ep.support_speech, ep.support_images, ep.support_labels):
            if lab in first:
                continue
            first[lab] = i
            canvas[y + 18 : y + 18 + tile, x : x + tile] = _tile(load_image(images[i].path), tile)
            _text(canvas, lab, x + 2, y + 16, 0.4)
            x += tile + gap
        y += tile + 30
        _text(canvas, "queries -> chosen:", 8, y + 12)
        x = 160
        for q, c in list(zip(ep.queries, o.chosen))[:ways]:
            truth = speech[q].label
            right = ep.classes[c] == truth
            canvas[y + 18 : y + 18 + tile, x : x + tile] = _tile(load_image(images[ep.matching[c]].path), tile, (0, 170, 0) if right else (220, 0, 0))
            _text(canvas, f'"{truth}"', x + 2, y + 16, 0.4)
            x += tile + gap
        y += tile + 2 * gap + 20
    # accuracy bars, 0-100 %
    bars = [("multimodal", summary["accuracy"], summary["ci95"]), ("speech-only", summary["speech_accuracy"], summary["speech_ci95"]), ("image-only", summary["image_accuracy"], summary["image_ci95"])]
    full = width - 220
    for k, (name, acc, ci) in enumerate(bars):
        by = y + 10 + k * 34
        _text(canvas, name, 8, by + 16)
        cv2.rectangle(canvas, (120, by), (120 + int(full * acc), by + 22), (70, 110, 200), -1)
        cv2.rectangle(canvas, (120, by), (120 + full, by + 22), (150, 150, 150), 1)
        _text(canvas, _pct(acc, ci) + " %", 125 + full, by + 16, 0.4)
    title = f"{summary['ways']}-way {summary['shots']}-shot, speakers {summary['speakers']}: {summary['speech_encoder']} + {summary['image_encoder']}"
    _text(canvas, title, 8, canvas.shape[0] - 6, 0.4)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: cannot write the plot")
