"""Background sets from ``showsay train prepare``, class-balanced batches, and one-shot validation episodes.

Two validations, both of words no training run sees: synthetic voices (``val_words`` background words
said only by the synthesizers, held out here with a fixed seed) and real speakers (``realval.npz``:
the held-out speakers and words of :mod:`edge.bench.validation`, 10-way across speakers).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from train.words import digit_word_reason

VAL_SPLIT_SEED = 12345  # fixed, so that every training seed validates on the same held-out words
SYNTH_SOURCES = ("espeak-ng", "flite", "festival")


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
    real: np.ndarray | None = None  # (N,) bool: said by a person (speech only)

    def __len__(self) -> int:
        return len(self.labels)


def load_speech(data_dir: Path, val_words: int, asr_agree_only: bool = False, inputs: str = "mfcc") -> tuple[LabelledSet, LabelledSet, dict[str, object]]:
    """(train, validation, summary) from ``data_dir/speech.npz``; validation holds ``val_words`` whole words out.

    The held-out words are drawn with a fixed seed among the words that only synthetic voices say,
    so that the synthetic-voice validation is what its name says and no recording is lost to it.
    ``asr_agree_only``: leave out the speechocean762 clips whose cut a recogniser did not confirm.
    ``inputs``: ``mfcc`` (``speech.npz``'s features) or ``speech_embedding`` (``frames.npz``: the
    pretrained network's frames minus its silence frame, so that zero padding is silence).
    """
    path = Path(data_dir) / "speech.npz"
    if not path.is_file():
        raise DataError(f"{path}: not found; build it with 'showsay train prepare --out {data_dir}'")
    with np.load(path) as z:
        feats, offsets = z["feats"], z["offsets"]
        labels, speakers, sources, augmented = z["labels"], z["speakers"], z["sources"], z["augmented"]
        agree = z["asr_agree"] if "asr_agree" in z.files else np.full(len(labels), -1, np.int8)
        feature_settings = json.loads(str(z["feature_settings"]))
    leaked = sorted({str(lbl) for lbl in labels if digit_word_reason(str(lbl))})
    if leaked:
        raise DataError(f"{path}: holds digit words {leaked}; rebuild it with 'showsay train prepare'")
    extra: dict[str, object] = {}
    if inputs == "speech_embedding":
        feats, offsets, silence = _frames(Path(data_dir) / "frames.npz", len(labels))
        extra["silence_frame"] = silence.tolist()
    real = ~np.isin(sources, SYNTH_SOURCES)
    keep = (agree != 0) if asr_agree_only else np.ones(len(labels), bool)
    words = sorted(set(labels.tolist()))
    recorded = set(labels[real].tolist())
    candidates = [w for w in words if w not in recorded]
    rng = np.random.default_rng(VAL_SPLIT_SEED)
    held = set(rng.choice(candidates, size=min(val_words, len(candidates) // 5), replace=False).tolist()) if val_words else set()
    is_val = np.array([lbl in held for lbl in labels], bool)
    sets = []
    for part in (~is_val & keep, is_val):
        idx = np.flatnonzero(part)
        names = sorted(set(labels[idx].tolist()))
        index = {n: i for i, n in enumerate(names)}
        items = [feats[offsets[i] : offsets[i + 1]].astype(np.float32) - (silence if inputs == "speech_embedding" else 0.0) for i in idx]
        sets.append(LabelledSet(items, np.array([index[lbl] for lbl in labels[idx]], np.int64), speakers[idx], names, ~augmented[idx], real[idx]))
    train, val = sets
    clean = ~augmented & ~is_val & keep
    summary = {
        "speech_examples": len(train),
        "speech_words": len(train.names),
        "sources": sorted(set(sources.tolist())),
        "clean_clips_by_source": {str(s): int(np.sum(clean & (sources == s))) for s in dict.fromkeys(sources.tolist())},
        "real_words": len(set(labels[clean & real].tolist())),
        "real_speakers": len(set(speakers[clean & real].tolist())),
        "asr_agree_only": asr_agree_only,
        "validation_words": sorted(held),
        "feature_settings": feature_settings,
        "inputs": inputs,
        **extra,
    }
    return train, val, summary


def _frames(path: Path, examples: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(frames, offsets, silence frame) of ``frames.npz``, checked against the examples of ``speech.npz``."""
    if not path.is_file():
        raise DataError(f"{path}: not found; build it with 'showsay train prepare --speech-embedding-frames 1'")
    with np.load(path) as z:
        frames, offsets, silence = z["frames"], z["offsets"], z["silence"].astype(np.float32)
    if len(offsets) != examples + 1:
        raise DataError(f"{path}: {len(offsets) - 1} examples, speech.npz has {examples}; rebuild both with 'showsay train prepare'")
    return frames, offsets, silence


@dataclass
class RealValidation:
    """The real-speaker validation clips (``realval.npz``) and fixed cross-speaker episodes over them."""

    items: list[np.ndarray]  # (T, D) features, whole clips as the benchmark reads them
    labels: np.ndarray  # (N,) str
    speakers: np.ndarray  # (N,) str
    episodes: list  # edge.bench.validation.SpeechEpisode


def load_real_validation(data_dir: Path, ways: int, shots: int, episodes: int, seed: int, silence: np.ndarray | None = None) -> RealValidation | None:
    """``data_dir/realval.npz`` with ``episodes`` episodes drawn as ``tools/validate_speech.py`` draws them, or None when absent.

    ``silence``: use the speech_embedding frames (minus this silence frame) instead of the MFCCs."""
    from edge.bench.manifest import SpeechItem
    from edge.bench.validation import cross_speaker_episodes

    path = Path(data_dir) / "realval.npz"
    if not path.is_file():
        return None
    with np.load(path) as z:
        feats, offsets, labels, speakers, paths = z["feats"], z["offsets"], z["labels"], z["speakers"], z["paths"]
        if silence is not None:
            if "frames" not in z.files:
                raise DataError(f"{path}: has no speech_embedding frames; rebuild it with 'showsay train prepare --speech-embedding-frames 1'")
            feats, offsets = z["frames"].astype(np.float32) - silence, z["frame_offsets"]
    items = [feats[offsets[i] : offsets[i + 1]].astype(np.float32) for i in range(len(labels))]
    meta = [SpeechItem(Path(str(p)), str(lbl), str(s)) for p, lbl, s in zip(paths, labels, speakers)]
    try:
        eps = cross_speaker_episodes(meta, ways, shots, episodes, seed)
    except ValueError as exc:
        raise DataError(f"{path}: {exc}") from None
    return RealValidation(items, labels, speakers, eps)


def real_episode_accuracy(emb: np.ndarray, labels: np.ndarray, episodes: list) -> float:
    """Share of requests whose nearest taught utterance (cosine) is of the word asked: the daemon's rule for an embedding."""
    e = emb / (np.linalg.norm(emb, axis=1, keepdims=True) + 1e-9)
    correct = total = 0
    for ep in episodes:
        rows = [r for shots in ep.support for r in shots]
        sims = e[list(ep.queries)] @ e[rows].T  # (ways, support utterances)
        correct += int(np.sum(labels[np.array(rows)[sims.argmax(axis=1)]] == labels[list(ep.queries)]))
        total += len(ep.queries)
    return correct / max(total, 1)


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
    """Batches of ``classes`` random classes x ``per_class`` random examples each (P x K).

    ``real_share`` (with ``real``): that share of each batch's classes is drawn among the words people
    said, their examples among the recordings; the rest among the words synthetic voices said, their
    examples among the renderings (None: classes and examples drawn regardless of who spoke).
    ``speakers`` (by_speaker): a class's examples come from ``per_class`` different speakers where it has
    them, each speaker as likely as any other, however many clips each one has.
    """

    def __init__(self, labels: np.ndarray, classes: int, per_class: int, rng: np.random.Generator,
                 real: np.ndarray | None = None, real_share: float | None = None, speakers: np.ndarray | None = None) -> None:
        self.rng, self.per_class = rng, per_class
        n_cls = int(labels.max()) + 1
        self.speakers = speakers
        if real_share is None or real is None:
            self.pools = [[np.flatnonzero(labels == c) for c in range(n_cls)]]
            self.shares = [1.0]
        else:
            self.pools = [[np.flatnonzero((labels == c) & real) for c in range(n_cls)], [np.flatnonzero((labels == c) & ~real) for c in range(n_cls)]]
            self.shares = [real_share, 1.0 - real_share]
        self.usable = [np.array([c for c, idx in enumerate(pool) if len(idx) >= 2], np.int64) for pool in self.pools]
        self.counts = [int(round(classes * s)) if len(u) else 0 for s, u in zip(self.shares, self.usable)]
        if len(self.counts) == 2:  # what one pool cannot give, the other does
            self.counts = [min(self.counts[0], len(self.usable[0])), 0]
            self.counts[1] = min(classes - self.counts[0], len(self.usable[1]))
            self.counts[0] = min(classes - self.counts[1], len(self.usable[0]))
        else:
            self.counts = [min(classes, len(self.usable[0]))]
        if sum(self.counts) < 2:
            raise DataError("need at least two classes with two or more examples each")
        if speakers is not None:
            self.by_speaker = [[self._group(idx) for idx in pool] for pool in self.pools]
        self.classes = sum(self.counts)

    def _group(self, idx: np.ndarray) -> list[np.ndarray]:
        spk = self.speakers[idx]  # type: ignore[index]
        return [idx[spk == s] for s in dict.fromkeys(spk.tolist())]

    def batch(self) -> np.ndarray:
        """Indices of one batch."""
        out, taken = [], set()
        for p, (pool, usable, n) in enumerate(zip(self.pools, self.usable, self.counts)):
            if not n:
                continue
            free = usable if not taken else np.array([c for c in usable if int(c) not in taken], np.int64)
            chosen = self.rng.choice(free, size=min(n, len(free)), replace=False)
            taken.update(int(c) for c in chosen)
            for c in chosen:
                if self.speakers is None:
                    idx = pool[c]
                    out.append(self.rng.choice(idx, size=self.per_class, replace=len(idx) < self.per_class))
                else:
                    groups = self.by_speaker[p][c]
                    rounds = -(-self.per_class // len(groups))  # every speaker once before any twice
                    who = np.concatenate([self.rng.permutation(len(groups)) for _ in range(rounds)])[: self.per_class]
                    out.append(np.array([self.rng.choice(groups[g]) for g in who], np.int64))
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
