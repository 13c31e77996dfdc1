"""Benchmark output: a Markdown table and a PNG of a few episodes (where each miss came from) with the accuracy bars."""
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
    head = "| protocol | speech encoder | image encoder | ways | shots | speakers | teachers | episodes x seeds | multimodal % | multimodal, distance only % | speech-only % | image-only % | ms/query |"
    rows = [head, "|" + "---|" * 13]
    for r in results:
        rows.append(
            f"| {r.get('protocol', '?')} | {r['speech_encoder']} | {r['image_encoder']} | {r['ways']} | {r['shots']} | {r['speakers']} | {r.get('teachers', 'one')} | "
            f"{r['episodes']} x {len(r['seeds'])} | {_pct(r['accuracy'], r['ci95'])} | {_pct(r['accuracy_distance_only'], r['ci95_distance_only'])} | {_pct(r['speech_accuracy'], r['speech_ci95'])} | "
            f"{_pct(r['image_accuracy'], r['image_ci95'])} | {1000 * r['seconds_per_query']:.2f} |"
        )
    return "\n".join(rows)


RIGHT = (0, 114, 178)  # blue (Okabe-Ito): told apart from WRONG without colour too, by shape and text
WRONG = (213, 94, 0)  # vermillion
INK, GREY = (20, 20, 20), (150, 150, 150)
FONT = cv2.FONT_HERSHEY_SIMPLEX
MAX_QUERIES_SHOWN = 12  # per episode, when there are more queries than classes
VERDICT = {"right": "right", "speech": "MISS: speech", "image": "MISS: image"}


def _tile(img: np.ndarray, size: int, colour: tuple[int, int, int] | None = None, mark: bool | None = None) -> np.ndarray:
    """The image at ``size`` x ``size``; a coloured frame, and a corner badge: a tick (``mark=True``) or a cross (``False``)."""
    rgb = img if img.ndim == 3 else cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    tile = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_NEAREST)
    if colour is not None:
        cv2.rectangle(tile, (0, 0), (size - 1, size - 1), colour, 3)
    if mark is not None:
        b = 16  # badge, top right
        x0 = size - b - 1
        cv2.rectangle(tile, (x0, 1), (size - 2, b), (255, 255, 255), -1)
        cv2.rectangle(tile, (x0, 1), (size - 2, b), RIGHT if mark else WRONG, 1)
        if mark:
            cv2.line(tile, (x0 + 3, 9), (x0 + 6, 13), RIGHT, 2, cv2.LINE_AA)
            cv2.line(tile, (x0 + 6, 13), (x0 + 12, 4), RIGHT, 2, cv2.LINE_AA)
        else:
            cv2.line(tile, (x0 + 4, 5), (x0 + 11, 12), WRONG, 2, cv2.LINE_AA)
            cv2.line(tile, (x0 + 11, 5), (x0 + 4, 12), WRONG, 2, cv2.LINE_AA)
    return tile


def _text(canvas: np.ndarray, text: str, x: int, y: int, scale: float = 0.45, colour: tuple[int, int, int] = INK, thick: int = 1) -> None:
    cv2.putText(canvas, text, (x, y), FONT, scale, colour, thick, cv2.LINE_AA)


def _centred(canvas: np.ndarray, text: str, cx: int, y: int, scale: float = 0.4, colour: tuple[int, int, int] = INK, thick: int = 1) -> None:
    (w, _), _ = cv2.getTextSize(text, FONT, scale, thick)
    _text(canvas, text, cx - w // 2, y, scale, colour, thick)


def _short(label: str, chars: int = 12) -> str:
    """A label that fits its column."""
    return label if len(label) <= chars else label[: chars - 2] + ".."


def _paste(canvas: np.ndarray, tile: np.ndarray, x: int, y: int) -> None:
    canvas[y : y + tile.shape[0], x : x + tile.shape[1]] = tile


def _dashed_vline(canvas: np.ndarray, x: int, y0: int, y1: int, colour: tuple[int, int, int]) -> None:
    for y in range(y0, y1, 8):
        cv2.line(canvas, (x, y), (x, min(y + 4, y1)), colour, 2)


def _bars(canvas: np.ndarray, summary: dict[str, Any], y: int, left: int, full: int) -> None:
    """Accuracy bars with 95% whiskers on a labelled 0-100 % axis, chance level dashed."""
    bars = [
        ("multimodal", summary["accuracy"], summary["ci95"]),
        ("distance only", summary["accuracy_distance_only"], summary["ci95_distance_only"]),
        ("speech-only", summary["speech_accuracy"], summary["speech_ci95"]),
        ("image-only", summary["image_accuracy"], summary["image_ci95"]),
    ]
    bar_h, step = 22, 32
    for k, (name, acc, ci) in enumerate(bars):
        by = y + k * step
        _text(canvas, name, 8, by + 16)
        cv2.rectangle(canvas, (left, by), (left + full, by + bar_h), GREY, 1)
        cv2.rectangle(canvas, (left, by), (left + int(round(full * acc)), by + bar_h), (120, 160, 210), -1)
        if ci == ci:  # a whisker for the 95% interval
            lo, hi = left + int(round(full * max(acc - ci, 0.0))), left + int(round(full * min(acc + ci, 1.0)))
            cv2.line(canvas, (lo, by + bar_h // 2), (hi, by + bar_h // 2), INK, 2)
            for x in (lo, hi):
                cv2.line(canvas, (x, by + 4), (x, by + bar_h - 4), INK, 2)
        _text(canvas, _pct(acc, ci) + " %", left + full + 8, by + 16, 0.42)
    axis_y = y + len(bars) * step
    cv2.line(canvas, (left, axis_y), (left + full, axis_y), INK, 1)
    for pct in range(0, 101, 10):
        x = left + full * pct // 100
        cv2.line(canvas, (x, axis_y), (x, axis_y + (6 if pct % 50 == 0 else 3)), INK, 1)
        if pct % 20 == 0:
            _centred(canvas, str(pct), x, axis_y + 20, 0.38)
    _centred(canvas, "accuracy, % of queries (image-only: % of matching images), 95% interval as whiskers", left + full // 2, axis_y + 40, 0.42)
    chance = 1.0 / summary["ways"]
    cx = left + int(round(full * chance))
    _dashed_vline(canvas, cx, y - 14, axis_y, INK)
    _text(canvas, f"chance {100 * chance:.0f}%", cx + 4, y - 4, 0.38)


def save_plot(path: Path, summary: dict[str, Any], outcomes: Sequence[EpisodeOutcome], speech: Sequence[SpeechItem], images: Sequence[ImageItem],
              n_episodes: int = 3) -> None:
    """PNG: for a few episodes the taught images and, per query, the word said, the word heard, the image chosen
    (framed and crossed out when wrong, with the correct candidate below it) and where a miss came from; then the
    accuracy bars with their 95% intervals and chance level."""
    tile, small, col = 56, 36, 96
    shown = list(outcomes)[:n_episodes]
    ways = summary["ways"]
    n_cols = max(ways, min(max((len(o.episode.queries) for o in shown), default=1), MAX_QUERIES_SHOWN))
    left = 92
    width = max(left + n_cols * col + 10, 760)
    support_h = 24 + tile + 14
    query_h = 32 + tile + 18 + small + 24
    head_h, bars_h = 64, 4 * 32 + 70
    canvas = np.full((head_h + len(shown) * (support_h + query_h + 16) + bars_h + 30, width, 3), 255, np.uint8)
    seeds = ",".join(str(s) for s in summary["seeds"])
    episodes = (f"{summary['episodes']} episodes, seed {seeds}" if len(summary["seeds"]) == 1
                else f"{summary['episodes'] * len(summary['seeds'])} episodes ({summary['episodes']} per seed, seeds {seeds})")
    _text(canvas, f"{ways}-way {summary['shots']}-shot, {episodes}, "
                  f"teachers: {summary.get('teachers', 'one')}, query speakers: {summary['speakers']}", 8, 20, 0.5, INK, 1)
    _text(canvas, f"speech {summary['speech_encoder']}, images {summary['image_encoder']}", 8, 40, 0.45)
    _text(canvas, "chosen image: blue frame and tick = right, orange frame and cross = wrong. MISS: speech = a wrong word was heard; "
                  "MISS: image = the word was heard right, its image not found", 8, 58, 0.38)
    y = head_h + 6
    for n, o in enumerate(shown):
        ep = o.episode
        cv2.line(canvas, (0, y - 4), (width, y - 4), GREY, 1)
        _text(canvas, f"episode {n + 1}", 8, y + 14, 0.42)
        _text(canvas, "taught:" if summary["shots"] == 1 else f"taught (1st of {summary['shots']}):", 8, y + 34, 0.42 if summary["shots"] == 1 else 0.34)
        first: dict[str, int] = {}
        for i, lab in zip(ep.support_images, ep.support_labels):
            first.setdefault(lab, i)
        for k, (lab, i) in enumerate(first.items()):
            x = left + k * col + (col - tile) // 2
            _centred(canvas, _short(lab), x + tile // 2, y + 16, 0.42)
            _paste(canvas, _tile(load_image(images[i].path), tile), x, y + 22)
        y += support_h
        _text(canvas, "said", 8, y + 12, 0.4)
        _text(canvas, "heard", 8, y + 28, 0.4)
        _text(canvas, "chosen", 8, y + 32 + tile // 2, 0.4)
        _text(canvas, "correct", 8, y + 32 + tile + 18 + small // 2, 0.4)
        for k, a in enumerate(o.queries[:n_cols]):
            cx = left + k * col + col // 2
            verdict = a.verdict(ep.classes)
            heard_colour = RIGHT if a.heard == a.label else WRONG
            _centred(canvas, f'"{_short(a.label)}"', cx, y + 12, 0.42)
            _centred(canvas, f'"{_short(a.heard, 9 if a.heard != a.label else 12)}"' + ("" if a.heard == a.label else " (x)"), cx, y + 28, 0.42, heard_colour)
            ok = verdict == "right"
            chosen_img = load_image(images[ep.matching[a.chosen]].path)
            _paste(canvas, _tile(chosen_img, tile, RIGHT if ok else WRONG, mark=ok), cx - tile // 2, y + 32)
            _centred(canvas, VERDICT[verdict], cx, y + 32 + tile + 14, 0.4, RIGHT if ok else WRONG)
            if not ok:  # the candidate that should have been chosen
                truth = ep.classes.index(a.label)
                _paste(canvas, _tile(load_image(images[ep.matching[truth]].path), small, RIGHT), cx - small // 2, y + 32 + tile + 20)
            else:
                _centred(canvas, "(same)", cx, y + 32 + tile + 20 + small // 2 + 4, 0.38, GREY)
        y += query_h + 16
    _bars(canvas, summary, y + 24, 128, width - 128 - 110)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: cannot write the plot")
