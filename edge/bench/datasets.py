"""Manifests for the data sets in ../shared/data: FSDD, MNIST (idx) and COIL-20 (npz).

The data stay where they are (FSDD) or are unpacked to images in an output folder of the
user's choosing (MNIST, COIL-20); nothing is downloaded and nothing is written into the repository.
"""
from __future__ import annotations

import gzip
import logging
import re
from pathlib import Path

import cv2
import numpy as np

from edge.bench.manifest import ManifestError, manifest_path, write_manifest

log = logging.getLogger(__name__)

FSDD_NAME = re.compile(r"^(\d)_([A-Za-z]+)_(\d+)\.wav$")


def fsdd_manifest(root: Path, out_csv: Path) -> int:
    """Write ``path,label,speaker`` for every ``{digit}_{speaker}_{n}.wav`` in ``root``; returns the count."""
    _need_folder(root)
    rows = []
    for wav in sorted(Path(root).glob("*.wav")):
        m = FSDD_NAME.match(wav.name)
        if m:
            rows.append((manifest_path(wav, out_csv), m.group(1), m.group(2)))
    if not rows:
        raise ManifestError(f"{root}: no FSDD recordings ({{digit}}_{{speaker}}_{{n}}.wav)")
    write_manifest(out_csv, ("path", "label", "speaker"), rows)
    return len(rows)


def _need_folder(root: Path) -> None:
    root = Path(root)
    if not root.exists():
        raise ManifestError(f"{root}: no such folder")
    if not root.is_dir():
        raise ManifestError(f"{root}: not a folder")


def read_idx(path: Path) -> np.ndarray:
    """Array from an idx file (gzipped or not), as MNIST distributes it."""
    opener = gzip.open if str(path).endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:
        raise ManifestError(f"{path}: cannot read idx file ({exc})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise ManifestError(f"{path}: not an unsigned-byte idx file")
    ndim = data[3]
    dims = np.frombuffer(data, ">u4", count=ndim, offset=4).astype(int)
    body = np.frombuffer(data, np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise ManifestError(f"{path}: idx header says {tuple(dims)} but holds {body.size} values")
    return body.reshape(dims)


def _write_pngs(images: np.ndarray, labels: list[str], out_dir: Path, prefix: str, views: list[int] | None = None,
                numbers: list[int] | None = None) -> int:
    """PNGs named by ``numbers`` (default: their order; the source's own index keeps a name tied to one image)."""
    img_dir = out_dir / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, (img, label) in enumerate(zip(images, labels)):
        name = f"images/{prefix}_{i if numbers is None else numbers[i]:05d}.png"
        if not cv2.imwrite(str(out_dir / name), img):
            raise OSError(f"{out_dir / name}: cannot write image")
        rows.append((name, label) if views is None else (name, label, views[i]))
    header = ("path", "label") if views is None else ("path", "label", "view")
    write_manifest(out_dir / f"{prefix}.csv", header, rows)
    return len(rows)


def mnist_manifest(root: Path, out_dir: Path, per_class: int | None = None) -> int:
    """Unpack MNIST's test set (t10k idx files in ``root``) to PNGs plus ``out_dir/mnist.csv``."""
    _need_folder(root)
    images = read_idx(Path(root) / "t10k-images-idx3-ubyte.gz")
    labels = read_idx(Path(root) / "t10k-labels-idx1-ubyte.gz")
    keep = np.arange(len(labels))
    if per_class is not None:
        keep = np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)])
        keep.sort()
    return _write_pngs(images[keep], [str(int(v)) for v in labels[keep]], Path(out_dir), "mnist", numbers=[int(k) for k in keep])


def coil20_manifest(npz: Path, out_dir: Path) -> int:
    """Unpack the COIL-20 npz to PNGs plus ``out_dir/coil20.csv`` with a ``view`` column.

    Object k becomes label ``k - 1`` so that objects 1-10 pair with the spoken digits 0-9.
    """
    if not Path(npz).is_file():
        raise ManifestError(f"{npz}: no such file")
    try:
        data = np.load(npz)
        images, labels, pose = data["images"], data["labels"], data["pose"]
    except (OSError, KeyError, ValueError) as exc:
        raise ManifestError(f"{npz}: not a COIL-20 archive with images, labels and pose ({exc})") from None
    return _write_pngs(images, [str(int(v) - 1) for v in labels], Path(out_dir), "coil20", [int(p) for p in pose])
