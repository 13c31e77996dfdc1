"""Benchmark manifests: CSV files listing recordings (path,label,speaker) or images (path,label[,view]).

Paths are relative to the CSV file. ``view`` is optional: the position of an image among the
views of its object (a turntable step), used to keep support and matching views apart.
"""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path


class ManifestError(ValueError):
    """A manifest cannot be used; the message names the file and the row."""


@dataclass(frozen=True)
class SpeechItem:
    """One recording."""

    path: Path
    label: str
    speaker: str


@dataclass(frozen=True)
class ImageItem:
    """One image, with its view index when the manifest has one."""

    path: Path
    label: str
    view: int | None = None


def _rows(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in required if c not in header]
            if missing:
                raise ManifestError(f"{path}: header must have {','.join(required)}; missing {','.join(missing)} (got {','.join(header) or 'nothing'})")
            rows = list(reader)
    except FileNotFoundError:
        raise ManifestError(f"{path}: no such manifest") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ManifestError(f"{path}: cannot read the manifest ({exc})") from None
    if not rows:
        raise ManifestError(f"{path}: the manifest lists nothing")
    for n, row in enumerate(rows, start=2):
        for c in required:
            if not (row.get(c) or "").strip():
                raise ManifestError(f"{path}:{n}: empty {c}")
    return rows


def read_speech_manifest(path: str | os.PathLike) -> list[SpeechItem]:
    """Recordings listed in a ``path,label,speaker`` CSV."""
    path = Path(path)
    base = path.parent
    return [SpeechItem(base / r["path"], r["label"].strip(), r["speaker"].strip()) for r in _rows(path, ("path", "label", "speaker"))]


def read_image_manifest(path: str | os.PathLike) -> list[ImageItem]:
    """Images listed in a ``path,label[,view]`` CSV."""
    path = Path(path)
    base = path.parent
    items = []
    for n, r in enumerate(_rows(path, ("path", "label")), start=2):
        view = (r.get("view") or "").strip()
        try:
            items.append(ImageItem(base / r["path"], r["label"].strip(), int(view) if view else None))
        except ValueError:
            raise ManifestError(f"{path}:{n}: view must be an integer, got {view!r}") from None
    return items


def write_manifest(path: Path, header: tuple[str, ...], rows: list[tuple[object, ...]]) -> None:
    """Write a manifest CSV (paths in ``rows`` must already be relative to ``path``'s folder)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
