"""Waveform augmentation for background speech: speed, reverberation, noise, gain, band limit, silence."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import fftconvolve

from edge.audio import resample
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


def augment(samples: np.ndarray, rate_hz: int, rng: np.random.Generator, s: AugmentSettings) -> np.ndarray:
    """One augmented copy of a mono float waveform at ``rate_hz``."""
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
    noise = rng.standard_normal(x.size).astype(np.float32)
    if rng.random() < 0.5:  # brown-ish noise: integrated white noise, more low frequencies
        noise = np.cumsum(noise)
        noise -= np.convolve(noise, np.ones(400) / 400, mode="same")
    noise *= np.sqrt(power / (np.mean(noise**2) + 1e-12) / 10 ** (snr / 10))
    x = x + noise.astype(np.float32)
    x *= 10 ** (rng.uniform(-s.gain_db_max, s.gain_db_max) / 20)
    return np.clip(x, -1.0, 1.0).astype(np.float32)


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
