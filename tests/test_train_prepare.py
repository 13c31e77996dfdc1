"""Preparing speech: recorded words of real speakers join the background set, the real-speaker validation split never does."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from edge.bench.validation import load_heldout
from edge.features import SpeechFeatureSettings, speech_features
from train.augment import AugmentSettings, augment, edge_noise_segments, room_noise_like, vtlp_features, vtlp_source_hz
from train.data import load_real_validation, load_speech
from train.prepare import PrepareSettings, prepare_real_validation, prepare_speech

RATE = 16000


def _word(rng: np.random.Generator, f0: float) -> np.ndarray:
    t = np.arange(int(0.4 * RATE)) / RATE
    x = 0.3 * np.sin(2 * np.pi * f0 * t) * np.hanning(t.size)
    quiet = 0.001 * rng.standard_normal(int(0.15 * RATE))
    return np.concatenate([quiet, x, quiet]).astype(np.float32)


def _fake_shared(root: Path) -> tuple[Path, str, str]:
    """A shared folder with the two cut-word corpora: a training speaker, a held-out speaker, a held-out word, a digit word."""
    rng = np.random.default_rng(0)
    held = load_heldout()
    held_speaker, held_word = sorted(held.speakers)[0], sorted(held.words)[0]
    so = root / "speechocean762_words"
    rows = []
    for i, (label, speaker) in enumerate([("apple", "so762_t1"), ("apple", "so762_t2"), ("apple", held_speaker), (held_word, "so762_t1"), ("phone", "so762_t2")]):
        path = so / label / f"{speaker}_{i}.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, _word(rng, 200 + 20 * i), RATE)
        rows.append({"path": f"{label}/{path.name}", "label": label, "speaker": speaker, "utt": str(i), "dur": "0.7", "asr_agree": str(i % 2)})
    with open(so / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    pv = root / "pv_intent_words"
    rows = []
    for i, label in enumerate(["latte", "latte", held_word if held_word else "x"]):
        path = pv / label / f"pv_{i}.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, _word(rng, 300 + 20 * i), RATE)
        rows.append({"path": f"{label}/{path.name}", "label": label, "speaker": "pvintent_unknown", "utt": f"order{i}", "dur": "0.7"})
    with open(pv / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return root, held_speaker, held_word


def test_recorded_words_join_and_held_out_speakers_and_words_stay_out(tmp_path: Path) -> None:
    shared, held_speaker, held_word = _fake_shared(tmp_path / "shared")
    settings = PrepareSettings(espeak_per_word=0, flite_per_word=0, festival_per_word=0, workers=1)
    (tmp_path / "out").mkdir()
    summary = prepare_speech(tmp_path / "out", shared, settings, SpeechFeatureSettings(), AugmentSettings(), progress=False)
    with np.load(tmp_path / "out" / "speech.npz") as z:
        labels, speakers, sources, agree = z["labels"].tolist(), z["speakers"].tolist(), z["sources"].tolist(), z["asr_agree"]
    assert held_word not in labels and "phone" not in labels  # a held-out word from anyone; a digit word ("one" inside)
    assert not any(held_speaker in s for s in speakers)
    assert summary["by_source"]["speechocean762"] == {"clips": 2, "words": 1, "speakers": 2, "asr_agree": 1}
    assert summary["by_source"]["pv_intent"] == {"clips": 2, "words": 1, "speakers": 2}  # one spoken order = one speaker
    assert summary["held_out_clips_left_out"] == {"speechocean762": 2, "pv_intent": 1}
    assert "phone" in summary["refused_digit_words"]
    assert set(agree[np.array(sources) == "pv_intent"].tolist()) == {-1}
    assert len(labels) == 2 * 4  # clean + one augmented copy of each of the four clips kept


def test_training_can_leave_out_the_unconfirmed_cuts(tmp_path: Path) -> None:
    shared, _, _ = _fake_shared(tmp_path / "shared")
    settings = PrepareSettings(espeak_per_word=0, flite_per_word=0, festival_per_word=0, workers=1)
    (tmp_path / "out").mkdir()
    prepare_speech(tmp_path / "out", shared, settings, SpeechFeatureSettings(), AugmentSettings(), progress=False)
    every, _, _ = load_speech(tmp_path / "out", val_words=0)
    confirmed, _, summary = load_speech(tmp_path / "out", val_words=0, asr_agree_only=True)
    assert len(every) == 8 and len(confirmed) == 6 and summary["asr_agree_only"]
    assert every.real.all()


def test_real_validation_features_are_the_benchmarks(shared_data: Path, tmp_path: Path) -> None:
    info = prepare_real_validation(tmp_path, shared_data, SpeechFeatureSettings())
    real = load_real_validation(tmp_path, ways=10, shots=1, episodes=20, seed=0)
    assert info["clips"] == len(real.items) > 250 and len(real.episodes) == 20
    held = load_heldout()
    assert all(s in held.speakers for s in real.speakers) and all(w in held.words for w in real.labels)
    with np.load(tmp_path / "realval.npz") as z:
        first = Path(str(z["paths"][0]))
    from edge.features import wav_features

    np.testing.assert_allclose(real.items[0], wav_features(first, SpeechFeatureSettings()), atol=1e-6)


def test_vtlp_at_one_is_the_runtime_features_and_warps_formants_otherwise() -> None:
    rng = np.random.default_rng(1)
    x = _word(rng, 220)
    s = SpeechFeatureSettings()
    np.testing.assert_allclose(vtlp_features(x, s, 1.0), speech_features(x, s), atol=1e-5)
    assert not np.allclose(vtlp_features(x, s, 1.1), speech_features(x, s), atol=1e-2)
    f = np.array([0.0, 500.0, 2000.0, 3900.0, 4000.0, 6000.0])
    for alpha in (0.85, 1.15):
        g = vtlp_source_hz(f, alpha, 4000.0)
        assert g[0] == 0.0 and g[-2] == pytest.approx(4000.0) and g[-1] == 6000.0  # the filterbank's band maps onto itself
        assert g[1] == pytest.approx(500.0 / alpha) and np.all(np.diff(g) > 0)


def test_room_noise_comes_from_quiet_edges_only() -> None:
    rng = np.random.default_rng(2)
    x = _word(rng, 200)
    segs = edge_noise_segments(x, RATE)
    assert len(segs) == 2 and all(s.size == int(0.15 * RATE) for s in segs)
    assert edge_noise_segments(np.zeros_like(x), RATE) == []  # digital silence is not room noise
    loud = x.copy()
    loud[:2400] = 0.3  # speech at the start
    assert len(edge_noise_segments(loud, RATE)) == 1
    noise = room_noise_like(5000, segs, rng)
    assert noise.size == 5000 and np.abs(noise).max() < 0.01
    aug = AugmentSettings(room_noise_probability=1.0)
    y = augment(x, RATE, np.random.default_rng(3), aug, segs)
    assert y.dtype == np.float32 and y.size >= x.size
