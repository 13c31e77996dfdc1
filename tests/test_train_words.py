"""No digit word, in any language, reaches the speech training data."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from edge.audio import write_wav
from train.prepare import PrepareSettings, _real_clips
from train.synth import available_engines, plan_jobs, run_jobs
from train.words import DIGIT_WORDS, ENGLISH_WORDS, digit_word_reason, split_digit_words


def test_shipped_vocabulary_is_large_unique_and_free_of_digit_words() -> None:
    assert len(ENGLISH_WORDS) >= 300
    assert len(set(ENGLISH_WORDS)) == len(ENGLISH_WORDS)
    kept, refused = split_digit_words(list(ENGLISH_WORDS))
    assert refused == {}
    assert kept == list(ENGLISH_WORDS)


@pytest.mark.parametrize(
    "label",
    ["seven", "Zero", "oh", "won", "eight", "ate", "deux", "sieben", "cinco", "otto", "drie", "go", "ichi", "nein", "tres", "7", "someone", "weight", "canine", "nineteen", "smart_seven"],
)
def test_digit_words_and_words_containing_them_are_refused(label: str) -> None:
    reason = digit_word_reason(label)
    assert reason is not None and repr(label) in reason


@pytest.mark.parametrize("label", ["apple", "smart mirror", "view_glass", "marvin", "tree", "happy"])
def test_ordinary_words_pass(label: str) -> None:
    assert digit_word_reason(label) is None


def test_every_english_digit_is_listed() -> None:
    for d in ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"):
        assert d in DIGIT_WORDS


def test_recorded_sources_drop_digit_word_folders(tmp_path: Path) -> None:
    """A digit folder among the recorded words (here 'seven' and Japanese 'go') is refused and reported."""
    tone = (0.3 * np.sin(np.linspace(0, 2000, 8000))).astype(np.float32)
    for word in ("apple", "seven", "go"):
        d = tmp_path / "speech_commands_sample" / word
        d.mkdir(parents=True)
        write_wav(d / "abcd1234_nohash_0.wav", tone, 16000)
    refused: dict[str, str] = {}
    missing: list[str] = []
    clips = _real_clips(tmp_path, PrepareSettings(), refused, missing)
    assert {c[1] for c in clips} == {"apple"}
    assert set(refused) == {"seven", "go"}
    assert any("wake_word_benchmark" in m for m in missing)  # the absent source is named


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed (apt-get install espeak-ng)")
def test_synthesized_words_are_real_audio(tmp_path: Path) -> None:
    engines, _ = available_engines()
    jobs = plan_jobs(["apple", "marble"], {"espeak-ng": engines["espeak-ng"]}, {"espeak-ng": 2}, tmp_path, seed=3)
    assert len(jobs) == 4 and len({j.voice for j in jobs}) >= 2
    assert run_jobs(jobs, workers=2) == []
    from edge.audio import read_wav

    for job in jobs:
        x = read_wav(job.out)
        assert 0.2 < x.size / 16000 < 3.0 and np.abs(x).max() > 0.05
