"""Reading, resampling and writing PCM audio: one implementation for files and live streams.

Files named by other people (the control socket's ``ask``) go through :func:`read_request_audio`,
which can neither stall nor exhaust the daemon: it opens without blocking and refuses anything but
a regular file, reads the header first and refuses lengths, rates and channel counts beyond the
limits before any sample is decoded, bounds the reading time, and its messages give the path and
a reason, never bytes read from the file. Every file, trusted or not (datasets, ``microphone.source``,
a memory export), is decoded by libsndfile through :func:`decode_audio`: a truncated body keeps
the frames it holds, and a chunkless or otherwise damaged file gets one line naming it and
libsndfile's reason, never a decoder's traceback.
"""
from __future__ import annotations

import io
import logging
import os
import stat
import time
from collections.abc import Callable
from typing import BinaryIO
from math import ceil, gcd
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
    return samples.astype(np.float32, copy=False)


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
    fd = _open_regular(path)
    try:
        with os.fdopen(fd, "rb") as f:
            fd = -1
            data = f.read()
    except OSError as exc:
        raise AudioError(f"{path}: cannot be read ({exc.strerror})") from None
    finally:
        if fd >= 0:
            os.close(fd)
    rate, samples = decode_audio(data, path)
    return _to_mono(path, samples, rate, sample_rate_hz)


MIN_WAV_RATE_HZ, MAX_WAV_RATE_HZ = 1000, 768000
"""Sample rates an audio file may declare to be read at all; outside them it is damaged (a 1 Hz file would be upsampled 16,000-fold)."""


def decode_audio(source: bytes | bytearray | memoryview | BinaryIO, name: str | os.PathLike, max_seconds: float | None = None,
                 check: Callable[[int, int, int], str | None] | None = None) -> tuple[int, np.ndarray]:
    """(rate, samples as (frames, channels)) of a wav or FLAC file, decoded by libsndfile (soundfile).

    ``source`` is the whole file's bytes or a seekable binary file (libsndfile then reads only
    what it needs). Wav: RIFF, RIFX (big-endian) and RF64; PCM of 8 to 32 bits and float, also as
    WAVE_FORMAT_EXTENSIBLE. Samples keep the file's own kind: int16 for PCM of 16 bits or fewer,
    int32 for wider PCM, float32 for float (see :func:`to_float`). A body cut short keeps the
    frames it holds. ``check(rate, channels, frames)`` sees the header before any sample is
    decoded and returns why the file is refused, or None; at most ``max_seconds`` of audio and one
    frame more are decoded. Anything unreadable raises :class:`AudioError` naming ``name`` with libsndfile's
    reason, never quoting the file's bytes.
    """
    import soundfile  # imported here: soundfile loads libsndfile through cffi (~50 ms of CLI start-up)

    f = io.BytesIO(source) if isinstance(source, (bytes, bytearray, memoryview)) else source
    start = f.read(12)
    f.seek(0)
    if start[:4] != b"fLaC" and (start[:4] not in (b"RIFF", b"RIFX", b"RF64") or start[8:12] != b"WAVE"):
        raise AudioError(f"{name}: not a readable wav or FLAC file (it starts with neither RIFF/RIFX/RF64 WAVE nor fLaC)")
    try:
        with soundfile.SoundFile(f) as sf:
            rate, channels, frames = int(sf.samplerate), int(sf.channels), int(sf.frames)
            problem = check(rate, channels, frames) if check is not None else None
            if problem:
                raise AudioError(f"{name}: {problem}; refused before decoding")
            if not MIN_WAV_RATE_HZ <= rate <= MAX_WAV_RATE_HZ:
                raise AudioError(f"{name}: an audio file declaring {rate} Hz (readable: {MIN_WAV_RATE_HZ}-{MAX_WAV_RATE_HZ} Hz); damaged?")
            subtype = sf.subtype
            dtype = "int16" if subtype in ("PCM_S8", "PCM_U8", "PCM_16") else ("int32" if subtype.startswith("PCM") else "float32")
            samples = sf.read(frames=-1 if max_seconds is None else ceil(max_seconds * rate) + 1, dtype=dtype, always_2d=True)
    except AudioError:
        raise
    except soundfile.LibsndfileError as exc:
        raise AudioError(f"{name}: not a readable wav or FLAC file (libsndfile: {exc.error_string.rstrip('.')})") from None
    except (ValueError, EOFError, RuntimeError) as exc:  # soundfile's own checks of what libsndfile reported
        raise AudioError(f"{name}: not a readable wav or FLAC file ({type(exc).__name__})") from None
    return rate, samples


def _to_mono(path: Path, data: np.ndarray, rate: int, sample_rate_hz: int) -> np.ndarray:
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
    return resample(data, rate, sample_rate_hz)


def _open_regular(path: Path) -> int:
    """A read-only descriptor of ``path``, opened without blocking; AudioError unless it is a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise AudioError(f"{path}: no such audio file") from None
    except PermissionError:
        raise AudioError(f"{path}: permission denied (the daemon reads it as its own user)") from None
    except OSError as exc:
        raise AudioError(f"{path}: cannot be opened ({exc.strerror})") from None
    try:
        mode = os.fstat(fd).st_mode
    except OSError as exc:
        os.close(fd)
        raise AudioError(f"{path}: cannot be inspected ({exc.strerror})") from None
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = {stat.S_IFIFO: "a FIFO", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
                stat.S_IFDIR: "a directory", stat.S_IFSOCK: "a socket"}.get(stat.S_IFMT(mode), "not a regular file")
        raise AudioError(f"{path}: is {kind}, not a regular audio file; refused")
    os.set_blocking(fd, True)
    return fd


# ---------------------------------------------------------------------------- request files


REQUEST_RATES_HZ = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000, 176400, 192000)
"""Sample rates a request file may have: the usual ones. Others (1 Hz, 44101 Hz) would need huge resampling filters."""
MAX_REQUEST_CHANNELS = 8
UNKNOWN_FRAMES = 1 << 62  # libsndfile's frame count of a FLAC stream that does not declare its length
HEADER_BYTES = 1 << 20  # room in a request's size limit for a wav's chunks before its audio (LIST, bext, cue)


def read_request_audio(path: str | os.PathLike, sample_rate_hz: int, max_duration_ms: float, timeout_s: float) -> np.ndarray:
    """Mono float32 samples of a request's audio file at ``sample_rate_hz``, within limits that protect the daemon.

    Refused with :class:`AudioError` (the path and a reason, no bytes of the file): a path that is
    not a regular file (FIFO, device, directory), a file larger than the longest accepted audio
    needs, a header declaring more than ``max_duration_ms``, a rate outside
    :data:`REQUEST_RATES_HZ` or more than :data:`MAX_REQUEST_CHANNELS` channels (checked on the
    header, before any sample is decoded), and reading that takes longer than ``timeout_s``.
    """
    path = Path(path)
    deadline = time.monotonic() + timeout_s
    max_frames = ceil(max_duration_ms / 1000.0 * max(REQUEST_RATES_HZ))
    max_bytes = HEADER_BYTES + max_frames * MAX_REQUEST_CHANNELS * 8
    fd = _open_regular(path)
    with os.fdopen(fd, "rb", buffering=0) as raw:
        size = os.fstat(raw.fileno()).st_size
        if size > max_bytes:
            raise AudioError(f"{path}: {size} bytes, more than any request of at most {max_duration_ms / 1000:g} s needs ({max_bytes}); refused")

        def problem(rate: int, channels: int, frames: int) -> str | None:
            if rate not in REQUEST_RATES_HZ:
                return f"sample rate {rate} Hz is not one of {', '.join(str(r) for r in REQUEST_RATES_HZ)} Hz"
            if channels > MAX_REQUEST_CHANNELS:
                return f"{channels} channels, at most {MAX_REQUEST_CHANNELS}"
            if frames < UNKNOWN_FRAMES and frames > max_duration_ms / 1000.0 * rate:
                return f"{frames / rate:.2f} s of audio, longer than the {max_duration_ms / 1000:g} s a spoken request may last"
            return None

        reader = _DeadlineReader(raw, deadline)
        try:
            rate, samples = decode_audio(reader, path, max_duration_ms / 1000.0, problem)
        except AudioError:
            reader.raise_problem(path, timeout_s)
            raise
        reader.raise_problem(path, timeout_s)
    if samples.shape[0] > max_duration_ms / 1000.0 * rate:  # a stream that holds more than its header declared
        raise AudioError(f"{path}: the audio is longer than its header says; refused")
    return _to_mono(path, samples, rate, sample_rate_hz)


class _DeadlineReader(io.RawIOBase):
    """A file as libsndfile reads it, delivering no more bytes once ``deadline`` (monotonic s) passes or a read fails.

    libsndfile calls back into Python for every read, where an exception cannot travel; so a late
    or failed read ends the file for libsndfile, and :meth:`raise_problem` says why afterwards.
    """

    def __init__(self, raw: io.RawIOBase, deadline: float) -> None:
        super().__init__()
        self._raw = raw
        self._deadline = deadline
        self.late = False
        self.error: str | None = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def readinto(self, buf) -> int:  # type: ignore[override]
        if self.late or self.error is not None:
            return 0
        if time.monotonic() > self._deadline:
            self.late = True
            return 0
        try:
            return self._raw.readinto(buf) or 0
        except OSError as exc:
            self.error = exc.strerror or type(exc).__name__
            return 0

    def raise_problem(self, path: Path, timeout_s: float) -> None:
        """AudioError if reading was cut off by the deadline or a failed read."""
        if self.late:
            raise AudioError(f"{path}: reading took longer than {timeout_s:g} s; refused") from None
        if self.error is not None:
            raise AudioError(f"{path}: cannot be read ({self.error})") from None


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] to int16 PCM, clipping what is outside."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype(np.int16)


def write_wav(path: str | os.PathLike, samples: np.ndarray, sample_rate_hz: int) -> None:
    """Write mono 16-bit PCM atomically (temporary file, fsync, rename): a reader never sees half a file."""
    pcm = samples if samples.dtype == np.int16 else to_int16(samples)
    write_atomic(path, lambda f: wavfile.write(f, sample_rate_hz, pcm))
