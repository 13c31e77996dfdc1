"""Background sets from ``showsay train prepare``, class-balanced batches, and one-shot validation episodes."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from train.words import digit_word_reason

VAL_SPLIT_SEED = 12345  # fixed, so that every training seed validates on the same held-out words


class DataError(ValueError):
    """A prepared data folder is missing or unusable."""


@dataclass
class LabelledSet:
    """Examples with integer class labels and speaker/drawer ids (speech: list of (T, D) arrays; images: (N, C, S, S))."""

    items: list[np.ndarray] | np.ndarray
    labels: np.ndarray  # (N,) int
    speakers: np.ndarray  # (N,) str: support and query of a validation episode never share one
    names: list[str]  # class index -> name
    clean: np.ndarray  # (N,) bool: not an augmented copy (validation uses only these)

    def __len__(self) -> int:
        return len(self.labels)


def load_speech(data_dir: Path, val_words: int) -> tuple[LabelledSet, LabelledSet, dict[str, object]]:
    """(train, validation, summary) from ``data_dir/speech.npz``; validation holds ``val_words`` whole words out.

    Wake words (real speakers, hundreds of clips each) always stay in training; the held-out words are
    drawn from the synthesized and speech-commands vocabulary with a fixed seed.
    """
    path = Path(data_dir) / "speech.npz"
    if not path.is_file():
        raise DataError(f"{path}: not found; build it with 'showsay train prepare --out {data_dir}'")
    with np.load(path) as z:
        feats, offsets = z["feats"], z["offsets"]
        labels, speakers, sources, augmented = z["labels"], z["speakers"], z["sources"], z["augmented"]
        feature_settings = json.loads(str(z["feature_settings"]))
    leaked = sorted({str(lbl) for lbl in labels if digit_word_reason(str(lbl))})
    if leaked:
        raise DataError(f"{path}: holds digit words {leaked}; rebuild it with 'showsay train prepare'")
    items = [feats[offsets[i] : offsets[i + 1]].astype(np.float32) for i in range(len(labels))]
    words = sorted(set(labels.tolist()))
    wake = sorted({str(lbl) for lbl, src in zip(labels, sources) if src == "wake_word"})
    candidates = [w for w in words if w not in wake]
    rng = np.random.default_rng(VAL_SPLIT_SEED)
    held = set(rng.choice(candidates, size=min(val_words, len(candidates) // 5), replace=False).tolist()) if val_words else set()
    is_val = np.array([lbl in held for lbl in labels])
    sets = []
    for keep in (~is_val, is_val):
        idx = np.flatnonzero(keep)
        names = sorted(set(labels[idx].tolist()))
        index = {n: i for i, n in enumerate(names)}
        sets.append(LabelledSet([items[i] for i in idx], np.array([index[lbl] for lbl in labels[idx]], np.int64), speakers[idx], names, ~augmented[idx]))
    train, val = sets
    summary = {
        "speech_examples": len(train),
        "speech_words": len(train.names),
        "sources": sorted(set(sources.tolist())),
        "validation_words": sorted(held),
        "feature_settings": feature_settings,
    }
    return train, val, summary


def load_images(data_dir: Path) -> tuple[LabelledSet, LabelledSet, dict[str, object]]:
    """(train = Omniglot background, validation = Omniglot evaluation, summary) from ``data_dir/images.npz``."""
    path = Path(data_dir) / "images.npz"
    if not path.is_file():
        raise DataError(f"{path}: not found; build it with 'showsay train prepare --out {data_dir}'")
    with np.load(path) as z:
        parts = {k: z[k] for k in ("background", "evaluation") if k in z.files}
        image_settings = json.loads(str(z["image_settings"]))
    if "background" not in parts:
        raise DataError(f"{path}: has no Omniglot background set")
    sets = []
    for key in ("background", "evaluation"):
        arr = parts.get(key, parts["background"][:0])
        n_cls, n_draw = arr.shape[:2]
        items = (arr.reshape(-1, 1, *arr.shape[2:]).astype(np.float32) / 255.0)
        labels = np.repeat(np.arange(n_cls), n_draw)
        drawers = np.tile(np.array([f"drawer{d}" for d in range(n_draw)]), n_cls)
        sets.append(LabelledSet(items, labels, drawers, [f"{key}{c}" for c in range(n_cls)], np.ones(len(labels), bool)))
    summary = {"image_classes": len(sets[0].names), "image_examples": len(sets[0]), "validation_classes": len(sets[1].names), "image_settings": image_settings}
    return sets[0], sets[1], summary


class ClassBalancedSampler:
    """Batches of ``classes`` random classes x ``per_class`` random examples each (P x K)."""

    def __init__(self, labels: np.ndarray, classes: int, per_class: int, rng: np.random.Generator) -> None:
        self.by_class = [np.flatnonzero(labels == c) for c in range(int(labels.max()) + 1)]
        self.usable = np.array([c for c, idx in enumerate(self.by_class) if len(idx) >= 2])
        if len(self.usable) < 2:
            raise DataError("need at least two classes with two or more examples each")
        self.classes, self.per_class, self.rng = min(classes, len(self.usable)), per_class, rng

    def batch(self) -> np.ndarray:
        """Indices of one batch."""
        chosen = self.rng.choice(self.usable, size=self.classes, replace=False)
        out = [self.rng.choice(self.by_class[c], size=self.per_class, replace=len(self.by_class[c]) < self.per_class) for c in chosen]
        return np.concatenate(out)


def one_shot_episodes(data: LabelledSet, ways: int, episodes: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Fixed validation episodes: (support indices (ways,), query indices (ways,)), one of each class,
    support and query of a class from different speakers, clean examples only."""
    rng = np.random.default_rng(seed)
    clean = np.flatnonzero(data.clean)
    by_class: dict[int, np.ndarray] = {}
    for c in np.unique(data.labels[clean]):
        idx = clean[data.labels[clean] == c]
        if len(set(data.speakers[idx].tolist())) >= 2:
            by_class[int(c)] = idx
    classes = np.array(sorted(by_class))
    if len(classes) < ways:
        raise DataError(f"validation has {len(classes)} classes with two speakers, fewer than {ways} ways")
    out = []
    for _ in range(episodes):
        chosen = rng.choice(classes, size=ways, replace=False)
        sup, qry = [], []
        for c in chosen:
            idx = by_class[int(c)]
            s = rng.choice(idx)
            others = idx[data.speakers[idx] != data.speakers[s]]
            sup.append(s)
            qry.append(rng.choice(others))
        out.append((np.array(sup), np.array(qry)))
    return out


def episode_accuracy(emb: np.ndarray, episodes: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """Mean one-shot accuracy: each query is assigned the class of its nearest support by cosine similarity."""
    e = emb / (np.linalg.norm(emb, axis=1, keepdims=True) + 1e-9)
    correct = total = 0
    for sup, qry in episodes:
        sims = e[qry] @ e[sup].T  # (ways, ways); query i belongs to support i
        correct += int((sims.argmax(axis=1) == np.arange(len(qry))).sum())
        total += len(qry)
    return correct / max(total, 1)
