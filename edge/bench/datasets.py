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


SPEECH_COMMANDS_NAME = re.compile(r"^([0-9a-fA-F]+)_nohash_(\d+)\.wav$")


def speech_commands_manifest(root: Path, out_csv: Path) -> int:
    """Write ``path,label,speaker`` for Speech Commands' ``{word}/{speaker}_nohash_{n}.wav`` under ``root``; returns the count."""
    _need_folder(root)
    rows = []
    for wav in sorted(Path(root).glob("*/*.wav")):
        m = SPEECH_COMMANDS_NAME.match(wav.name)
        if m and not wav.parent.name.startswith("_"):  # _background_noise_ is not a word
            rows.append((manifest_path(wav, out_csv), wav.parent.name, m.group(1)))
    if not rows:
        raise ManifestError(f"{root}: no Speech Commands recordings ({{word}}/{{speaker}}_nohash_{{n}}.wav)")
    write_manifest(out_csv, ("path", "label", "speaker"), rows)
    return len(rows)


def speechocean762_manifest(root: Path, out_csv: Path, split: str = "validation") -> int:
    """Write ``path,label,speaker`` for the ``speechocean762_words`` folder.

    ``split="validation"``: the held-out speakers saying held-out words, well cut (``edge.bench.validation``), the only
    part no shipped encoder was trained on; ``"all"``: every clip (fair for DTW and for encoders trained elsewhere).
    """
    from edge.bench.validation import validation_items

    _need_folder(root)
    manifest = Path(root) / "manifest.csv"
    if not manifest.is_file():
        raise ManifestError(f"{manifest}: no such file (the speechocean762_words folder holds manifest.csv)")
    if split == "validation":
        items = validation_items(Path(root))
    elif split == "all":
        from edge.bench.manifest import read_speech_manifest

        items = read_speech_manifest(manifest)
    else:
        raise ManifestError(f"split must be validation or all, got {split!r}")
    write_manifest(out_csv, ("path", "label", "speaker"), [(manifest_path(it.path, out_csv), it.label, it.speaker) for it in items])
    return len(items)


OMNIGLOT_PEN_PX = 5  # strokes thickened at 105 px, so that they look like pen strokes once scaled to an encoder's input


def omniglot_manifest(npz: Path, labels_from: Path, out_dir: Path, seed: int = 0) -> int:
    """Give each label of a speech manifest its own Omniglot character: its drawings as PNGs plus ``out_dir/omniglot.csv``.

    Characters are drawn at random (``seed``) from the archive, one per label in sorted order, and written white on
    black like MNIST. With a speech corpus that has no images of its words (Speech Commands, speechocean762) this
    gives the multimodal benchmark an image side; the pairing of word and character is arbitrary, as a child's first
    sight of a new object is.
    """
    from edge.bench.manifest import read_speech_manifest

    if not Path(npz).is_file():
        raise ManifestError(f"{npz}: no such file")
    try:
        data = np.load(npz)
        images, chars = data["images"], data["labels"]
    except (OSError, KeyError, ValueError) as exc:
        raise ManifestError(f"{npz}: not an Omniglot archive with images and labels ({exc})") from None
    if images.ndim != 4 or chars.shape != images.shape[:2]:
        raise ManifestError(f"{npz}: expected images (characters, drawers, H, W) and labels (characters, drawers), got {images.shape} and {chars.shape}")
    labels = sorted({it.label for it in read_speech_manifest(labels_from)})
    if len(labels) > len(images):
        raise ManifestError(f"{labels_from}: {len(labels)} labels, but {npz} holds only {len(images)} characters")
    picks = np.random.default_rng(seed).choice(len(images), len(labels), replace=False)
    pen = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (OMNIGLOT_PEN_PX, OMNIGLOT_PEN_PX))
    drawings, names, numbers = [], [], []
    for label, c in zip(labels, picks):
        for d in range(images.shape[1]):
            drawings.append(cv2.dilate((~images[c, d].astype(bool)).astype(np.uint8) * 255, pen))  # True = paper
            names.append(label)
            numbers.append(int(c) * 100 + d)  # character and drawer: one name, one drawing
    return _write_pngs(np.stack(drawings), names, Path(out_dir), "omniglot", numbers=numbers)
