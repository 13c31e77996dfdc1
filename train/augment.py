"""Waveform augmentation for background speech: speed, reverberation, noise, gain, band limit, silence;
and, for speaker robustness, room noise recorded around real clips and vocal-tract-length perturbation (VTLP)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy.signal import fftconvolve

from edge.audio import resample
from edge.features import SpeechFeatureSettings, deltas
from edge.settings import setting


@dataclass(frozen=True)
class AugmentSettings:
    """Ranges the augmented copies are drawn from (uniformly)."""

    speed_min: float = setting(0.9, "slowest speed factor (resampling, changes pitch too)", min=0.5, max=1.0)
    speed_max: float = setting(1.1, "fastest speed factor", min=1.0, max=2.0)
    snr_db_min: float = setting(5.0, "lowest signal-to-noise ratio of added noise, dB", min=-10.0, max=60.0)
    snr_db_max: float = setting(30.0, "highest signal-to-noise ratio of added noise, dB", min=-10.0, max=60.0)
    reverb_probability: float = setting(0.5, "chance that a copy is reverberated", min=0.0, max=1.0)
    rt60_s_max: float = setting(0.5, "longest reverberation time (RT60), s", min=0.05, max=2.0)
    gain_db_max: float = setting(6.0, "largest gain change either way, dB", min=0.0, max=30.0)
    band_limit_probability: float = setting(0.3, "chance that a copy goes through 8 kHz sampling (telephone-like band)", min=0.0, max=1.0)
    pad_s_max: float = setting(0.2, "longest silence added before and after the word, s", min=0.0, max=2.0)
    room_noise_probability: float = setting(
        0.0, "chance that a copy's added noise is room noise (the silence around the wake-word clips) instead of white/brown noise", min=0.0, max=1.0
    )
    vtlp_max: float = setting(
        0.0, "vocal-tract-length perturbation: formants of a copy scaled by a factor in [1 - v, 1 + v] (mel filterbank warp; 0 = off)", min=0.0, max=0.3
    )


def augment(samples: np.ndarray, rate_hz: int, rng: np.random.Generator, s: AugmentSettings, room_noise: Sequence[np.ndarray] = ()) -> np.ndarray:
    """One augmented copy of a mono float waveform at ``rate_hz``; ``room_noise``: recorded noise segments at ``rate_hz``."""
    x = np.asarray(samples, np.float32)
    speed = rng.uniform(s.speed_min, s.speed_max)
    if abs(speed - 1.0) > 0.01:  # play faster = fewer samples at the same rate
        x = resample(x, int(round(rate_hz * speed)), rate_hz)
    if rng.random() < s.reverb_probability:
        rt60 = rng.uniform(0.05, s.rt60_s_max)
        n = int(rt60 * rate_hz)
        t = np.arange(n) / rate_hz
        ir = rng.standard_normal(n).astype(np.float32) * np.exp(-6.9 * t / rt60).astype(np.float32)  # -60 dB at rt60
        ir[0] = 1.0 / rng.uniform(0.3, 1.0)  # direct path
        wet = fftconvolve(x, ir)[: x.size]
        x = (wet / (np.abs(wet).max() + 1e-9) * (np.abs(x).max() + 1e-9)).astype(np.float32)
    if rng.random() < s.band_limit_probability:
        x = resample(resample(x, rate_hz, 8000), 8000, rate_hz)
    pad = [int(rng.uniform(0, s.pad_s_max) * rate_hz) for _ in range(2)]
    x = np.pad(x, pad)
    power = float(np.mean(x**2)) + 1e-12
    snr = rng.uniform(s.snr_db_min, s.snr_db_max)
    if s.room_noise_probability > 0 and len(room_noise) and rng.random() < s.room_noise_probability:  # no draw when off: older data reproduce
        noise = room_noise_like(x.size, room_noise, rng)
    else:
        noise = rng.standard_normal(x.size).astype(np.float32)
        if rng.random() < 0.5:  # brown-ish noise: integrated white noise, more low frequencies
            noise = np.cumsum(noise)
            noise -= np.convolve(noise, np.ones(400) / 400, mode="same")
    noise *= np.sqrt(power / (np.mean(noise**2) + 1e-12) / 10 ** (snr / 10))
    x = x + noise.astype(np.float32)
    x *= 10 ** (rng.uniform(-s.gain_db_max, s.gain_db_max) / 20)
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def room_noise_like(n_samples: int, segments: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """``n_samples`` of recorded noise: random segments, each at a random level within 6 dB, joined end to end."""
    parts, total = [], 0
    while total < n_samples:
        seg = np.asarray(segments[int(rng.integers(len(segments)))], np.float32)
        seg = seg - seg.mean()
        parts.append(seg * np.float32(10 ** (rng.uniform(-6, 6) / 20)))
        total += seg.size
    return np.concatenate(parts)[:n_samples]


def edge_noise_segments(x: np.ndarray, rate_hz: int, edge_s: float = 0.15, below_peak_db: float = 20.0, floor_db: float = -90.0) -> list[np.ndarray]:
    """The leading and trailing ``edge_s`` of a clip where they are room noise: at least ``below_peak_db`` quieter
    than the clip's loudest stretch of that length (no speech in them) and above ``floor_db`` (not digital silence)."""
    n = int(edge_s * rate_hz)
    if x.size < 3 * n:
        return []
    power = np.convolve(np.asarray(x, np.float64) ** 2, np.ones(n) / n, mode="valid")
    peak_db = 10 * np.log10(power.max() + 1e-20)
    out = []
    for seg in (x[:n], x[-n:]):
        db = 10 * np.log10(float(np.mean(np.asarray(seg, np.float64) ** 2)) + 1e-20)
        if floor_db < db < peak_db - below_peak_db:
            out.append(np.asarray(seg, np.float32))
    return out


def vtlp_source_hz(freqs_hz: np.ndarray, alpha: float, top_hz: float, knee: float = 0.8) -> np.ndarray:
    """Where the warped spectrum reads the original one: a formant at f moves to ``alpha`` * f.

    Piecewise linear (Jaitly and Hinton 2013): f / alpha up to ``knee`` * ``top_hz`` * min(1, alpha), then a
    straight line to ``top_hz`` itself, so the band the mel filters cover maps onto itself; unchanged above.
    """
    f = np.asarray(freqs_hz, np.float64)
    f0 = knee * top_hz * min(1.0, alpha)
    upper = f0 / alpha + (f - f0) * (top_hz - f0 / alpha) / (top_hz - f0)
    return np.where(f <= f0, f / alpha, np.where(f <= top_hz, upper, f))


def vtlp_features(samples: np.ndarray, settings: SpeechFeatureSettings, alpha: float) -> np.ndarray:
    """:func:`edge.features.speech_features` of the samples with every frame's power spectrum warped by
    :func:`vtlp_source_hz` before the mel filters (at ``alpha`` = 1 the same numbers)."""
    from python_speech_features import get_filterbanks, sigproc
    from python_speech_features.base import lifter
    from scipy.fftpack import dct

    s = settings
    x = np.asarray(samples, np.float32)
    min_samples = int(round(s.window_ms * s.sample_rate_hz / 1000))
    if x.size < min_samples:
        x = np.pad(x, (0, min_samples - x.size))
    frames = sigproc.framesig(sigproc.preemphasis(x, s.preemphasis), s.window_ms / 1000 * s.sample_rate_hz, s.hop_ms / 1000 * s.sample_rate_hz, np.hamming)
    pspec = sigproc.powspec(frames, s.fft_size)  # (T, fft_size / 2 + 1)
    energy = pspec.sum(axis=1)
    energy = np.where(energy == 0, np.finfo(float).eps, energy)
    bin_hz = s.sample_rate_hz / s.fft_size
    src = np.clip(vtlp_source_hz(np.arange(pspec.shape[1]) * bin_hz, alpha, s.high_freq_hz) / bin_hz, 0, pspec.shape[1] - 1)
    lo = np.minimum(np.floor(src).astype(np.int64), pspec.shape[1] - 2)
    frac = src - lo
    warped = pspec[:, lo] * (1 - frac) + pspec[:, lo + 1] * frac
    feat = warped @ get_filterbanks(s.n_filters, s.fft_size, s.sample_rate_hz, s.low_freq_hz, s.high_freq_hz).T
    feat = np.log(np.where(feat == 0, np.finfo(float).eps, feat))
    mfcc = lifter(dct(feat, type=2, axis=1, norm="ortho")[:, : s.n_mfcc], s.ceplifter)
    mfcc[:, 0] = np.log(energy)
    d1 = deltas(mfcc, s.delta_window_frames)
    d2 = deltas(d1, s.delta_window_frames)
    out = np.hstack([mfcc, d1, d2]).astype(np.float32)
    if s.normalise:
        out = (out - out.mean(axis=0)) / (out.std(axis=0) + 1e-5)
    return out.astype(np.float32)


def trim_silence(x: np.ndarray, rate_hz: int, threshold_db: float = -40.0, keep_s: float = 0.1) -> np.ndarray:
    """Cut leading and trailing parts quieter than ``threshold_db`` below the peak, keeping ``keep_s`` of margin."""
    frame = max(1, int(0.01 * rate_hz))
    n = x.size // frame
    if n == 0:
        return x
    energy = (x[: n * frame].reshape(n, frame) ** 2).mean(axis=1)
    loud = np.flatnonzero(energy > energy.max() * 10 ** (threshold_db / 10))
    keep = int(keep_s * rate_hz)
    start = max(0, loud[0] * frame - keep)
    end = min(x.size, (loud[-1] + 1) * frame + keep)
    return x[start:end]
