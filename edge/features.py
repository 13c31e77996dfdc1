"""Speech features: 13 MFCCs with deltas and delta-deltas (39-d), the one implementation.

Training, the benchmark and the daemon all call :func:`speech_features`; the settings that shape
the output live in :class:`SpeechFeatureSettings`, which every exported model records so that a
model trained on other features is refused at start-up instead of giving wrong answers.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Mapping

import numpy as np

from edge.audio import read_wav
from edge.settings import SettingsError, setting, to_dict


@dataclass(frozen=True)
class SpeechFeatureSettings:
    """How a waveform becomes a (frames, 39) matrix."""

    sample_rate_hz: int = setting(16000, "sample rate every utterance is resampled to, Hz", choices=(8000, 16000, 32000, 48000))
    n_mfcc: int = setting(13, "cepstral coefficients per frame (before deltas)", min=1, max=40)
    window_ms: float = setting(25.0, "analysis window length, ms", min=5.0, max=100.0)
    hop_ms: float = setting(10.0, "hop between frames, ms", min=1.0, max=50.0)
    n_filters: int = setting(26, "mel filters", min=8, max=128)
    fft_size: int = setting(512, "FFT length, samples; must hold one window", min=64, max=8192)
    low_freq_hz: float = setting(0.0, "lowest mel filter edge, Hz", min=0.0)
    high_freq_hz: float = setting(4000.0, "highest mel filter edge, Hz (4000 keeps 8 kHz recordings and 16 kHz microphones comparable)", min=500.0)
    preemphasis: float = setting(0.97, "pre-emphasis coefficient (0 disables)", min=0.0, max=1.0)
    ceplifter: int = setting(22, "cepstral liftering coefficient (0 disables)", min=0, max=100)
    delta_window_frames: int = setting(2, "frames each side used for deltas and delta-deltas", min=1, max=10)
    normalise: bool = setting(True, "per-utterance mean and variance normalisation of each feature")

    @property
    def dim(self) -> int:
        """Feature dimension: MFCCs, deltas and delta-deltas."""
        return 3 * self.n_mfcc

    def validate(self) -> None:
        """Cross-field checks that single-field ranges cannot express."""
        window = self.window_ms * self.sample_rate_hz / 1000
        if window > self.fft_size:
            raise SettingsError(f"fft_size: must hold one window of {window:.0f} samples, got {self.fft_size}")
        if self.high_freq_hz > self.sample_rate_hz / 2:
            raise SettingsError(f"high_freq_hz: must be <= half the sample rate ({self.sample_rate_hz / 2:g}), got {self.high_freq_hz:g}")
        if self.low_freq_hz >= self.high_freq_hz:
            raise SettingsError(f"low_freq_hz: must be below high_freq_hz, got {self.low_freq_hz:g}")

    def as_dict(self) -> dict[str, Any]:
        """Plain dict, as recorded in model metadata."""
        return to_dict(self)


def settings_mismatch(ours: Mapping[str, Any], theirs: Mapping[str, Any]) -> list[str]:
    """Human-readable differences between two recorded settings dicts (empty when they agree)."""
    keys = sorted(set(ours) | set(theirs))
    return [f"{k}: config has {ours.get(k)!r}, model has {theirs.get(k)!r}" for k in keys if ours.get(k) != theirs.get(k)]


def speech_features(samples: np.ndarray, settings: SpeechFeatureSettings) -> np.ndarray:
    """(frames, 3 * n_mfcc) float32 features of mono float samples at ``settings.sample_rate_hz``."""
    import python_speech_features as psf  # imported here: it pulls in scipy.fftpack (slow CLI start-up)

    s = settings
    samples = np.asarray(samples, dtype=np.float32)
    min_samples = int(round(s.window_ms * s.sample_rate_hz / 1000))
    if samples.size < min_samples:  # shorter than one window: pad so a frame exists
        samples = np.pad(samples, (0, min_samples - samples.size))
    mfcc = psf.mfcc(
        samples,
        samplerate=s.sample_rate_hz,
        winlen=s.window_ms / 1000,
        winstep=s.hop_ms / 1000,
        numcep=s.n_mfcc,
        nfilt=s.n_filters,
        nfft=s.fft_size,
        lowfreq=s.low_freq_hz,
        highfreq=s.high_freq_hz,
        preemph=s.preemphasis,
        ceplifter=s.ceplifter,
        appendEnergy=True,
        winfunc=np.hamming,
    )
    d1 = deltas(mfcc, s.delta_window_frames)
    d2 = deltas(d1, s.delta_window_frames)
    feats = np.hstack([mfcc, d1, d2]).astype(np.float32)  # (T, 39)
    if s.normalise:
        feats = (feats - feats.mean(axis=0)) / (feats.std(axis=0) + 1e-5)
    return feats.astype(np.float32)


def deltas(frames: np.ndarray, window: int) -> np.ndarray:
    """Regression deltas over +-``window`` frames, edges repeated: ``python_speech_features.delta``'s formula.

    That function loops over frames in Python (half the time of a short word's features); the same
    weights applied by ``scipy.ndimage.correlate1d`` give the same numbers at once.
    """
    from scipy.ndimage import correlate1d

    n = np.arange(-window, window + 1, dtype=np.float64)
    return correlate1d(np.asarray(frames, np.float64), n / np.sum(n**2), axis=0, mode="nearest")


def wav_features(path: str | os.PathLike, settings: SpeechFeatureSettings) -> np.ndarray:
    """Features of a wav file: :func:`read_wav` then :func:`speech_features`."""
    return speech_features(read_wav(path, settings.sample_rate_hz), settings)


def warped_speech_features(samples: np.ndarray, settings: SpeechFeatureSettings, warp: float) -> list[np.ndarray]:
    """Features of two copies of the samples with every frequency scaled by 1 - ``warp`` and 1 + ``warp``.

    The copies are resampled and read at the original rate, so formants, pitch and tempo scale
    together: roughly how the same word sounds from a speaker with a shorter or longer vocal tract.
    DTW compares a request with these copies too (``matching.dtw_warp``).
    """
    from scipy.signal import resample_poly

    if not 0.0 < warp < 1.0:
        raise ValueError(f"warp must be in (0, 1), got {warp}")
    x = np.asarray(samples, np.float32)
    out = []
    for factor in (1.0 - warp, 1.0 + warp):
        ratio = Fraction(factor).limit_denominator(100)  # n / d: d samples become n, then read at the same rate
        out.append(speech_features(resample_poly(x, ratio.denominator, ratio.numerator).astype(np.float32), settings))
    return out
