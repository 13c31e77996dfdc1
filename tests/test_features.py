"""Audio reading, speech features and image preprocessing."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.io import wavfile

from edge.audio import AudioError, read_wav, write_wav
from edge.features import SpeechFeatureSettings, settings_mismatch, speech_features, wav_features
from edge.images import ImageError, ImageSettings, load_image, preprocess_image

RATE = 16000


def tone(freq_hz: float, seconds: float, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq_hz * t)).astype(np.float32)


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int32, np.float32])
def test_read_wav_any_rate_and_width_to_16k_mono(tmp_path, rate, dtype):
    x = tone(440, 0.5, rate)
    if dtype == np.uint8:
        data = (x * 127 + 128).astype(np.uint8)
    elif dtype == np.float32:
        data = x
    else:
        data = (x * (np.iinfo(dtype).max)).astype(dtype)
    path = tmp_path / "a.wav"
    wavfile.write(path, rate, data)
    y = read_wav(path, RATE)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - RATE // 2) <= 1
    assert 0.45 < np.abs(y).max() < 0.55  # amplitude preserved across widths
    spectrum = np.abs(np.fft.rfft(y))
    assert abs(np.argmax(spectrum) * RATE / len(y) - 440) < 5  # pitch preserved by resampling


def test_stereo_is_mixed_to_mono(tmp_path):
    left, right = tone(300, 0.2), np.zeros(int(0.2 * RATE), np.float32)
    path = tmp_path / "s.wav"
    wavfile.write(path, RATE, (np.stack([left, right], 1) * 32767).astype(np.int16))
    y = read_wav(path)
    assert np.allclose(y, left / 2, atol=1e-3)


def test_bad_audio_files_get_clear_errors(tmp_path):
    with pytest.raises(AudioError, match="no such audio file"):
        read_wav(tmp_path / "missing.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not a wav file at all")
    with pytest.raises(AudioError, match=f"{junk}: not a readable wav or FLAC file"):
        read_wav(junk)
    empty = tmp_path / "empty.wav"
    wavfile.write(empty, RATE, np.zeros(0, np.int16))
    with pytest.raises(AudioError, match="holds no samples"):
        read_wav(empty)


def test_write_wav_round_trip(tmp_path):
    x = tone(1000, 0.1)
    write_wav(tmp_path / "r.wav", x, RATE)
    assert np.allclose(read_wav(tmp_path / "r.wav"), x, atol=1 / 32767 + 1e-6)
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind


def test_speech_features_shape_and_normalisation():
    s = SpeechFeatureSettings()
    f = speech_features(tone(500, 1.0) + 0.01 * np.random.default_rng(0).normal(size=RATE).astype(np.float32), s)
    assert f.shape == (99, 39) and f.dtype == np.float32  # 1 + ceil((1 s - 25 ms) / 10 ms) frames, last one zero-padded
    assert np.allclose(f.mean(axis=0), 0, atol=1e-4)
    assert np.allclose(f.std(axis=0), 1, atol=0.02)  # 1e-5 in the divisor shows on near-constant rows
    assert speech_features(np.zeros(10, np.float32), s).shape == (1, 39)  # shorter than a window: one frame


def test_different_words_give_different_features_same_word_similar():
    s = SpeechFeatureSettings(normalise=False)
    a1, a2, b = speech_features(tone(300, 0.5), s), speech_features(tone(300, 0.5) * 0.9, s), speech_features(tone(2500, 0.5), s)
    # MFCC c1..c12 ignore gain (c0 and energy do not)
    assert np.abs(a1[:, 1:13] - a2[:, 1:13]).mean() < 0.05 * np.abs(a1[:, 1:13] - b[:, 1:13]).mean()


def test_wav_features_match_array_features(tmp_path):
    x = tone(700, 0.3)
    write_wav(tmp_path / "w.wav", x, RATE)
    s = SpeechFeatureSettings()
    assert np.allclose(wav_features(tmp_path / "w.wav", s), speech_features(read_wav(tmp_path / "w.wav"), s))


def test_settings_mismatch_is_reported_per_key():
    ours = SpeechFeatureSettings().as_dict()
    theirs = SpeechFeatureSettings(n_mfcc=20).as_dict()
    assert settings_mismatch(ours, ours) == []
    assert settings_mismatch(ours, theirs) == ["n_mfcc: config has 13, model has 20"]


def test_image_preprocessing(tmp_path):
    import cv2

    img = np.zeros((40, 20, 3), np.uint8)
    img[10:30, 5:15] = (255, 0, 0)
    cv2.imwrite(str(tmp_path / "i.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    loaded = load_image(tmp_path / "i.png")
    assert loaded.shape == (40, 20, 3) and tuple(loaded[20, 10]) == (255, 0, 0)  # RGB order
    gray = preprocess_image(loaded, ImageSettings())
    assert gray.shape == (1, 28, 28) and gray.dtype == np.float32
    assert 0 <= gray.min() and gray.max() <= 1
    rgb = preprocess_image(loaded, ImageSettings(size_px=32, color="rgb", mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25)))
    assert rgb.shape == (3, 32, 32)
    assert rgb[0].max() == pytest.approx((1 - 0.5) / 0.25, abs=1e-3)  # red channel saturated
    assert rgb[2].min() == pytest.approx((0 - 0.5) / 0.25)
    with pytest.raises(ImageError, match="no such image file"):
        load_image(tmp_path / "none.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ImageError, match="not a readable image"):
        load_image(tmp_path / "bad.png")


def _vowels(scale: float, rate: int = RATE) -> np.ndarray:
    """Three 'vowels' of two formant-like tones each, every frequency multiplied by ``scale`` (a shorter vocal tract: > 1)."""
    parts = [tone(scale * f1, 0.15 / scale) + tone(scale * f2, 0.15 / scale) for f1, f2 in ((400, 1800), (700, 1100), (300, 2300))]
    return np.concatenate(parts)


def test_warped_copies_bring_a_speaker_with_higher_formants_closer_for_dtw():
    from edge.dtw import dtw_distance
    from edge.features import warped_speech_features

    s = SpeechFeatureSettings()
    teacher, child = _vowels(1.0), _vowels(1.2)
    plain = speech_features(child, s)
    lower, higher = warped_speech_features(child, s, 0.15)
    assert lower.shape[0] > plain.shape[0] > higher.shape[0]  # resampled and read at the same rate: slower when lower
    heard = speech_features(teacher, s)
    # the child's request warped down by 15% is nearer the teacher's utterance than the request as heard
    assert dtw_distance(lower, heard) < 0.3 * dtw_distance(plain, heard) < 0.3 * dtw_distance(higher, heard)
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="warp must be in"):
            warped_speech_features(child, s, bad)


def test_deltas_are_python_speech_features_deltas():
    import python_speech_features as psf

    from edge.features import deltas

    frames = np.random.default_rng(3).normal(size=(57, 13))
    for window in (1, 2, 4):
        assert np.abs(deltas(frames, window) - psf.delta(frames, window)).max() < 1e-12
    one = frames[:1]  # a single frame: the edge repeats, so no change (up to rounding: OpenBLAS's kernels differ by CPU)
    assert np.abs(deltas(one, 2)).max() < 1e-12 and np.abs(psf.delta(one, 2)).max() < 1e-12
