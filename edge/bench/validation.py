"""The real-speaker validation set: speechocean762 speakers *and* words that no training run sees.

Every choice of a model, a setting or a threshold is made here (and on the synthetic-voice
validation of ``train.data``), never on ``fsdd``, ``mnist`` or ``coil20``, which are the test.

The split is fixed in ``speechocean762_heldout.json`` beside this file (made once by
:func:`make_heldout`; ``python -m edge.bench.validation --shared ../shared/data --check`` confirms
the file is what the rule below gives):

* **speakers**: 40 of the 201, drawn (seed 762) within each group of ``speakers.csv`` in
  proportion to its size: women, men, girls and boys of 6-12, teenagers (12 + 9 + 6 + 10 + 3);
* **words**: 30% of the word types said at least 5 times in the folder (151 of 504), drawn with
  seed 1. A held-out word is new to the encoders, as a user's word is: training uses neither the
  held-out speakers nor the held-out words, from anyone.

Validation clips are the held-out speakers saying held-out words with ``asr_agree == 1`` (the
forced-alignment cut was confirmed by a recogniser; badly cut clips would measure the aligner).

An episode teaches ``ways`` words, ``shots`` clips each, and asks for each word once, with a clip
by a held-out speaker who taught none of that word's shots. Most speakers said few of these words,
so the shots come from several held-out speakers (a household teaching the robot), not from one
teacher. Scoring uses the product's own objects: the benchmark's :class:`EmbeddingCache` and the
:class:`~edge.matching.SupportSet` built by :func:`~edge.encoders.support_set_for`.
"""
from __future__ import annotations

import argparse
import csv
import json
import random
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from edge.bench.manifest import SpeechItem

SPLIT_FILE = Path(__file__).with_name("speechocean762_heldout.json")
SPEAKER_SEED, WORD_SEED = 762, 1
HELDOUT_SPEAKERS = 40
HELDOUT_WORD_FRACTION = 0.3
MIN_CLIPS_PER_WORD = 5
CORPUS = "speechocean762_words"


def speaker_group(gender: str, age: int) -> str:
    """'girl'/'boy' (6-12), 'teen' (13-17), 'woman'/'man' (18 and over)."""
    if age <= 12:
        return "girl" if gender == "f" else "boy"
    if age < 18:
        return "teen"
    return "woman" if gender == "f" else "man"


@dataclass(frozen=True)
class HeldOut:
    """Speakers and words of ``speechocean762_words`` kept out of every training run."""

    speakers: dict[str, str]  # speaker id -> group
    words: frozenset[str]

    def excludes(self, speaker: str, label: str) -> bool:
        """True when a training run must not use this clip (a held-out speaker or a held-out word)."""
        return speaker in self.speakers or label in self.words


def load_heldout(path: Path = SPLIT_FILE) -> HeldOut:
    """The committed split."""
    data = json.loads(Path(path).read_text())
    return HeldOut(dict(data["speakers"]), frozenset(data["words"]))


def _read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def make_heldout(root: Path) -> dict:
    """The split that the rule in the module docstring gives for the folder ``root`` (JSON-ready)."""
    speakers = _read_csv(Path(root) / "speakers.csv")
    rows = _read_csv(Path(root) / "manifest.csv")
    by_group: dict[str, list[str]] = defaultdict(list)
    group_of = {}
    for s in speakers:
        group_of[s["speaker"]] = g = speaker_group(s["gender"], int(s["age"]))
        by_group[g].append(s["speaker"])
    rng = random.Random(SPEAKER_SEED)
    held: dict[str, str] = {}
    for g in sorted(by_group):
        quota = round(HELDOUT_SPEAKERS * len(by_group[g]) / len(speakers))
        held.update({s: g for s in rng.sample(sorted(by_group[g]), quota)})
    counts = Counter(r["label"] for r in rows)
    candidates = sorted(w for w, n in counts.items() if n >= MIN_CLIPS_PER_WORD)
    words = sorted(random.Random(WORD_SEED).sample(candidates, int(HELDOUT_WORD_FRACTION * len(candidates))))
    return {
        "corpus": CORPUS,
        "rule": f"speakers: {HELDOUT_SPEAKERS} drawn within groups in proportion (seed {SPEAKER_SEED}); words: "
                f"{HELDOUT_WORD_FRACTION:.0%} of types with >= {MIN_CLIPS_PER_WORD} clips (seed {WORD_SEED}); see edge/bench/validation.py",
        "speakers": dict(sorted(held.items())),
        "words": words,
    }


def validation_items(root: Path, heldout: HeldOut | None = None) -> list[SpeechItem]:
    """Held-out speakers saying held-out words, cut well (``asr_agree == 1``); paths absolute."""
    heldout = heldout or load_heldout()
    root = Path(root)
    manifest = root / "manifest.csv"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: not found (the {CORPUS} folder of ../shared/data)")
    return [
        SpeechItem((root / r["path"]).resolve(), r["label"], r["speaker"])
        for r in _read_csv(manifest)
        if r["speaker"] in heldout.speakers and r["label"] in heldout.words and r.get("asr_agree") == "1"
    ]


@dataclass(frozen=True)
class SpeechEpisode:
    """Items taught per word (``support[w]``) and the one item asking for each word (``queries[w]``)."""

    words: tuple[str, ...]
    support: tuple[tuple[int, ...], ...]
    queries: tuple[int, ...]


def cross_speaker_episodes(items: Sequence[SpeechItem], ways: int, shots: int, count: int, seed: int) -> list[SpeechEpisode]:
    """``count`` episodes; a word's request is said by a speaker who taught none of its shots."""
    by_word: dict[str, list[int]] = defaultdict(list)
    for i, it in enumerate(items):
        by_word[it.label].append(i)
    usable = sorted(w for w, idx in by_word.items() if len({items[i].speaker for i in idx}) >= 2 and len(idx) > shots)
    if len(usable) < ways:
        raise ValueError(f"only {len(usable)} words have clips by two speakers and more than {shots} clips; {ways}-way episodes need {ways}")
    rng = np.random.default_rng(seed)
    out: list[SpeechEpisode] = []
    for _ in range(100 * count):
        if len(out) == count:
            break
        words = [usable[i] for i in rng.choice(len(usable), ways, replace=False)]
        support, queries = [], []
        for w in words:
            idx = [by_word[w][i] for i in rng.permutation(len(by_word[w]))]
            taught = idx[:shots]
            teachers = {items[i].speaker for i in taught}
            others = [i for i in idx[shots:] if items[i].speaker not in teachers]
            if not others:
                break
            support.append(tuple(taught))
            queries.append(others[0])
        if len(queries) == ways:
            out.append(SpeechEpisode(tuple(words), tuple(support), tuple(queries)))
    if len(out) < count:
        raise ValueError(f"could draw only {len(out)} of {count} {ways}-way {shots}-shot episodes")
    return out


def speech_outcomes(encoder, items: Sequence[SpeechItem], features, episodes: Sequence[SpeechEpisode], word_best_of: int = 1) -> np.ndarray:
    """(episodes, ways) booleans: did each request name the word asked for (the daemon's nearest-word rule)."""
    from edge.bench.runner import EmbeddingCache
    from edge.encoders import PixelImage, support_set_for

    cache = EmbeddingCache(items, [], encoder, PixelImage(), features)
    cache.fill({i for ep in episodes for rows in ep.support for i in rows} | {i for ep in episodes for i in ep.queries}, set(), progress=False)
    right = np.zeros((len(episodes), len(episodes[0].words)), bool)
    for e, ep in enumerate(episodes):
        support = support_set_for(encoder)
        for w, rows in zip(ep.words, ep.support):
            for r in rows:
                support.add(len(support), cache.speech[r], np.ones(1, np.float32), w)
        for k, q in enumerate(ep.queries):
            row, _ = support.nearest_utterance(cache.speech[q], word_best_of)
            right[e, k] = support.labels[row] == ep.words[k]
    return right


def main(argv: list[str] | None = None) -> int:
    """Check (or write) the committed split against a speechocean762_words folder."""
    ap = argparse.ArgumentParser(description="the real-speaker validation split (see the module docstring)")
    ap.add_argument("--shared", type=Path, default=Path("../shared/data"), help="the shared data folder")
    ap.add_argument("--check", action="store_true", help="exit 1 unless the committed split is what the rule gives")
    ap.add_argument("--write", action="store_true", help="write the split the rule gives to " + str(SPLIT_FILE))
    args = ap.parse_args(argv)
    made = make_heldout(args.shared / CORPUS)
    if args.write:
        SPLIT_FILE.write_text(json.dumps(made, indent=1) + "\n")
    committed = json.loads(SPLIT_FILE.read_text())
    if args.check and committed != made:
        print(f"{SPLIT_FILE}: differs from the split the rule gives for {args.shared / CORPUS}", file=sys.stderr)
        return 1
    groups = Counter(made["speakers"].values())
    items = validation_items(args.shared / CORPUS, HeldOut(made["speakers"], frozenset(made["words"])))
    print(f"{len(made['speakers'])} speakers ({', '.join(f'{n} {g}' for g, n in sorted(groups.items()))}), "
          f"{len(made['words'])} words; {len(items)} validation clips of {len({i.label for i in items})} words")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
