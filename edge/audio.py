"""Reading, resampling and writing PCM audio: one implementation for files and live streams."""
from __future__ import annotations

import logging
import os
import warnings
from math import gcd
from pathlib import Path

import numpy as np
from scipy.io import wavfile

from edge.fileio import write_atomic

log = logging.getLogger(__name__)


class AudioError(ValueError):
    """An audio file cannot be used: unreadable, empty or of an unsupported format."""


def to_float(samples: np.ndarray) -> np.ndarray:
    """PCM of any integer width, or float, to float32 in [-1, 1], keeping the channel axis."""
    if samples.dtype == np.uint8:  # 8-bit wav is unsigned, centred on 128
        return (samples.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(samples.dtype, np.integer):
        return samples.astype(np.float32) / float(-np.iinfo(samples.dtype).min)
    return samples.astype(np.float32)


def resample(samples: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """Polyphase resampling of a mono float signal (anti-aliased), exact for integer rate ratios."""
    if from_hz == to_hz:
        return samples.astype(np.float32, copy=False)
    from scipy.signal import resample_poly  # imported here: scipy.signal costs ~1 s of CLI start-up

    g = gcd(int(from_hz), int(to_hz))
    return resample_poly(samples, to_hz // g, from_hz // g).astype(np.float32)


def read_wav(path: str | os.PathLike, sample_rate_hz: int = 16000) -> np.ndarray:
    """Mono float32 samples of an audio file (wav of 8 to 32-bit PCM or float, or FLAC; any rate), resampled to ``sample_rate_hz``."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            magic = f.read(4)
        if magic == b"fLaC":
            rate, data = _read_flac(path)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", wavfile.WavFileWarning)  # odd chunks (LIST, cue) are fine
                rate, data = wavfile.read(path)
    except FileNotFoundError:
        raise AudioError(f"{path}: no such audio file") from None
    except (ValueError, OSError, EOFError, RuntimeError) as exc:  # soundfile raises LibsndfileError (a RuntimeError)
        raise AudioError(f"{path}: not a readable wav or FLAC file ({exc})") from None
    if data.ndim == 2:
        data = to_float(data).mean(axis=1)
    elif data.ndim == 1:
        data = to_float(data)
    else:
        raise AudioError(f"{path}: unexpected audio shape {data.shape}")
    if data.size == 0:
        raise AudioError(f"{path}: the audio file holds no samples")
    if not np.all(np.isfinite(data)):
        raise AudioError(f"{path}: the audio holds NaN or infinite samples")
    return resample(data, int(rate), sample_rate_hz)


def _read_flac(path: Path) -> tuple[int, np.ndarray]:
    """(rate, samples) of a FLAC file through libsndfile (soundfile), as int16 when it is 16-bit or less."""
    import soundfile  # imported here: only FLAC needs it

    info = soundfile.info(str(path))
    dtype = "int16" if info.subtype in ("PCM_S8", "PCM_U8", "PCM_16") else "int32"
    data, rate = soundfile.read(str(path), dtype=dtype, always_2d=False)
    return int(rate), data


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] to int16 PCM, clipping what is outside."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype(np.int16)


def write_wav(path: str | os.PathLike, samples: np.ndarray, sample_rate_hz: int) -> None:
    """Write mono 16-bit PCM atomically (temporary file, fsync, rename): a reader never sees half a file."""
    pcm = samples if samples.dtype == np.int16 else to_int16(samples)
    write_atomic(path, lambda f: wavfile.write(f, sample_rate_hz, pcm))
