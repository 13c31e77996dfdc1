"""Benchmark manifests: CSV files listing recordings (path,label,speaker) or images (path,label[,view]).

Paths are relative to the CSV file's folder, or absolute. ``showsay data`` writes a path relative
only when the file lies inside that folder's tree, so a manifest moved with its files keeps working
and one moved without them still finds them. ``view`` is optional: the position of an image among
the views of its object (a turntable step), used to keep support and matching views apart.
:func:`check_files` finds every missing or unreadable file of a manifest at once, before a run.
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


def manifest_path(file: str | os.PathLike, manifest: str | os.PathLike) -> str:
    """How a manifest at ``manifest`` names ``file``: relative when the file is inside the manifest's folder tree, else absolute."""
    target, base = Path(file).resolve(), Path(manifest).resolve().parent
    try:
        return target.relative_to(base).as_posix()
    except ValueError:
        return str(target)


AUDIO_MAGIC = {b"RIFF": "wav", b"RF64": "wav", b"fLaC": "FLAC"}
IMAGE_MAGIC = (b"\x89PNG", b"\xff\xd8\xff", b"BM", b"II*\x00", b"MM\x00*")  # png, jpg, bmp, tiff (webp: RIFF....WEBP)
MAX_LISTED = 20


def _file_problem(path: Path, kind: str) -> str | None:
    """Why a listed file cannot be used (None when its header looks right)."""
    try:
        with path.open("rb") as f:
            head = f.read(12)
    except FileNotFoundError:
        return "no such file"
    except IsADirectoryError:
        return "a folder, not a file"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if kind == "speech":
        if head[:4] in AUDIO_MAGIC and (head[:4] == b"fLaC" or head[8:12] == b"WAVE"):
            return None
        return f"not a wav or FLAC file (starts with {head[:4]!r})" if head else "an empty file"
    if head.startswith(IMAGE_MAGIC) or (head[:4] == b"RIFF" and head[8:12] == b"WEBP"):
        return None
    return f"not a png or jpg image (starts with {head[:4]!r})" if head else "an empty file"


def check_files(manifest: str | os.PathLike, items: list[SpeechItem] | list[ImageItem]) -> None:
    """Raise one ManifestError listing every file of ``items`` that is missing, unreadable or of the wrong kind.

    Only the file's first bytes are read (a header that looks right may still hide a broken body,
    which the run then reports by name).
    """
    kind = "speech" if items and isinstance(items[0], SpeechItem) else "image"
    bad = [(it.path, why) for it in items if (why := _file_problem(Path(it.path), kind)) is not None]
    if not bad:
        return
    listed = "\n".join(f"  {p}: {why}" for p, why in bad[:MAX_LISTED])
    more = f"\n  ... and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
    raise ManifestError(f"{manifest}: {len(bad)} of {len(items)} listed files cannot be used:\n{listed}{more}")


def write_manifest(path: Path, header: tuple[str, ...], rows: list[tuple[object, ...]]) -> None:
    """Write a manifest CSV (paths in ``rows`` as :func:`manifest_path` gives them: relative to ``path``'s folder, or absolute)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
