"""The real-speaker validation split: fixed, documented, and never shared with training."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge.audio import read_wav
from edge.bench.manifest import SpeechItem
from edge.bench.validation import SPLIT_FILE, cross_speaker_episodes, load_heldout, make_heldout, validation_items


def test_the_committed_split_holds_40_speakers_of_every_group_and_151_words():
    held = load_heldout()
    assert len(held.speakers) == 40 and len(held.words) == 151
    assert set(held.speakers.values()) == {"girl", "boy", "teen", "woman", "man"}
    assert held.excludes(next(iter(held.speakers)), "anything") and held.excludes("someone", next(iter(held.words)))
    assert not held.excludes("someone", "no such word")


def test_the_committed_split_is_what_its_rule_gives(shared_data):
    assert make_heldout(shared_data / "speechocean762_words") == json.loads(SPLIT_FILE.read_text())


def test_validation_clips_are_held_out_speakers_saying_held_out_words(shared_data):
    held = load_heldout()
    items = validation_items(shared_data / "speechocean762_words")
    assert len(items) > 250
    assert all(it.speaker in held.speakers and it.label in held.words and it.path.is_file() for it in items)
    samples = read_wav(items[0].path)  # FLAC through libsndfile
    assert samples.dtype == np.float32 and 0.05 * 16000 < samples.size < 3 * 16000


def _items() -> list[SpeechItem]:
    return [SpeechItem(Path(f"/x/{w}_{s}_{n}.flac"), w, s) for w in "abcdefghijkl" for s in ("p", "q", "r") for n in range(2)]


def test_a_request_is_never_said_by_a_speaker_who_taught_its_word():
    items = _items()
    eps = cross_speaker_episodes(items, ways=10, shots=2, count=50, seed=3)
    for ep in eps:
        assert len(set(ep.words)) == 10
        for w, rows, q in zip(ep.words, ep.support, ep.queries):
            assert {items[r].label for r in rows} == {w} == {items[q].label}
            assert items[q].speaker not in {items[r].speaker for r in rows}
    again = cross_speaker_episodes(items, ways=10, shots=2, count=50, seed=3)
    assert again == eps and cross_speaker_episodes(items, ways=10, shots=2, count=50, seed=4) != eps


def test_too_few_words_is_a_clear_error():
    with pytest.raises(ValueError, match="10-way episodes need 10"):
        cross_speaker_episodes(_items()[:24], ways=10, shots=1, count=5, seed=0)
