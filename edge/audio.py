"""Reading, resampling and writing PCM audio: one implementation for files and live streams.

Files named by other people (the control socket's ``ask``) go through :func:`read_request_audio`,
which can neither stall nor exhaust the daemon: it opens without blocking and refuses anything but
a regular file, reads the header first and refuses lengths, rates and channel counts beyond the
limits before any sample is decoded, bounds the reading time, and its messages give the path and
a reason, never bytes read from the file. Every wav, trusted or not (datasets, ``microphone.source``,
a memory export), is decoded by the same small parser (:func:`parse_audio_header`,
:func:`decode_wav_bytes`): a truncated or chunkless file gets one line naming it, never a
decoder's ``struct.error`` or ``UnboundLocalError``.
"""
from __future__ import annotations

import io
import logging
import os
import stat
import struct
import time
from dataclasses import dataclass
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
            magic = f.read(4)
            f.seek(0)
            if magic == b"fLaC":
                rate, data = _read_flac(f)
            elif magic in (b"RIFF", b"RIFX", b"RF64"):
                rate, data = decode_wav_bytes(f.read(), path)
            else:
                raise AudioError(f"{path}: not a readable wav or FLAC file (it starts with neither RIFF, RIFX, RF64 nor fLaC)")
    except (ValueError, OSError, EOFError, RuntimeError) as exc:  # soundfile raises LibsndfileError (a RuntimeError)
        if isinstance(exc, AudioError):
            raise
        raise AudioError(f"{path}: not a readable wav or FLAC file (the decoder refused it: {type(exc).__name__})") from None
    finally:
        if fd >= 0:
            os.close(fd)
    return _to_mono(path, data, int(rate), sample_rate_hz)


MIN_WAV_RATE_HZ, MAX_WAV_RATE_HZ = 1000, 768000
"""Sample rates a wav may declare to be read at all; outside them it is damaged (a 1 Hz file would be upsampled 16,000-fold)."""


def decode_wav_bytes(data: bytes | bytearray, name: str | os.PathLike) -> tuple[int, np.ndarray]:
    """(rate, samples as (frames, channels) in the file's own integer or float type) of a whole wav file's bytes.

    RIFF, RIFX (big-endian) and RF64; 8 to 32-bit PCM and 32/64-bit float, also as
    WAVE_FORMAT_EXTENSIBLE. A body cut short keeps the frames it holds; a file without its
    ``fmt `` or ``data`` chunk, with damaged chunk sizes or an implausible rate raises
    :class:`AudioError` naming ``name``, never quoting the file's bytes.
    """
    header = parse_audio_header(bytes(data[:HEADER_BYTES]), len(data))
    if isinstance(header, str):
        raise AudioError(f"{name}: {header}")
    if header.format != "wav":
        raise AudioError(f"{name}: not a wav file")
    if not MIN_WAV_RATE_HZ <= header.rate_hz <= MAX_WAV_RATE_HZ:
        raise AudioError(f"{name}: a wav file declaring {header.rate_hz} Hz (readable: {MIN_WAV_RATE_HZ}-{MAX_WAV_RATE_HZ} Hz); damaged?")
    return header.rate_hz, _wav_samples(data, len(data), header)


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


def _read_flac(f: io.BufferedIOBase | io.BytesIO, max_frames: int = -1) -> tuple[int, np.ndarray]:
    """(rate, samples) of a FLAC file through libsndfile (soundfile), as int16 when it is 16-bit or less; at most ``max_frames`` + 1 frames."""
    import soundfile  # imported here: only FLAC needs it

    with soundfile.SoundFile(f) as sf:
        dtype = "int16" if sf.subtype in ("PCM_S8", "PCM_U8", "PCM_16") else "int32"
        data = sf.read(frames=max_frames + 1 if max_frames >= 0 else -1, dtype=dtype, always_2d=False)
        return int(sf.samplerate), data


# ---------------------------------------------------------------------------- request files


REQUEST_RATES_HZ = (8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 88200, 96000, 176400, 192000)
"""Sample rates a request file may have: the usual ones. Others (1 Hz, 44101 Hz) would need huge resampling filters."""
MAX_REQUEST_CHANNELS = 8
HEADER_BYTES = 1 << 20  # a wav's chunks before its audio (LIST, bext, cue) are read at most this far


@dataclass(frozen=True)
class AudioHeader:
    """What an audio file's header declares, read before any sample is decoded."""

    format: str  # "wav" or "flac"
    rate_hz: int
    channels: int
    frames: int | None  # None: not declared (a streamed FLAC)
    bits: int  # per sample
    is_float: bool = False  # wav: IEEE float samples, else integer PCM
    big_endian: bool = False  # wav: RIFX
    data_offset: int = 0  # wav: where the samples start
    block_align: int = 0  # wav: bytes per frame

    @property
    def duration_ms(self) -> float | None:
        """Declared length, ms."""
        return None if self.frames is None else 1000.0 * self.frames / self.rate_hz


def parse_audio_header(head: bytes, file_bytes: int) -> AudioHeader | str:
    """The header of a wav (RIFF/RIFX) or FLAC file from its first bytes, or why it cannot be used (never quoting the bytes)."""
    if head[:4] == b"fLaC":
        # STREAMINFO is the first metadata block: 20 bits rate, 3 bits channels-1, 5 bits bits-1, 36 bits total samples
        if len(head) < 8 + 34 or head[4] & 0x7F != 0:
            return "a FLAC file without its STREAMINFO block"
        bits = int.from_bytes(head[18:26], "big")
        rate, channels, width = bits >> 44, ((bits >> 41) & 0x7) + 1, ((bits >> 36) & 0x1F) + 1
        total = bits & ((1 << 36) - 1)
        return AudioHeader("flac", rate, channels, total or None, width)
    if head[:4] not in (b"RIFF", b"RIFX", b"RF64") or head[8:12] != b"WAVE":
        return "not a wav (RIFF/RIFX/RF64 WAVE) or FLAC file"
    order = ">" if head[:4] == b"RIFX" else "<"
    pos, fmt, data_size_64 = 12, None, None
    while pos + 8 <= len(head):
        chunk, size = head[pos:pos + 4], struct.unpack(order + "I", head[pos + 4:pos + 8])[0]
        if chunk == b"ds64":  # RF64: the 64-bit sizes, of which the data chunk's is used
            if size < 24 or pos + 8 + 24 > len(head):
                return "an RF64 wav file with a damaged 'ds64' chunk"
            data_size_64 = struct.unpack("<Q", head[pos + 16:pos + 24])[0]
        elif chunk == b"fmt ":
            if size < 16 or pos + 8 + 16 > len(head):
                return "a wav file with a damaged 'fmt ' chunk"
            tag, channels, rate, _, block_align, bits = struct.unpack(order + "HHIIHH", head[pos + 8:pos + 24])
            if tag == 0xFFFE and size >= 40 and pos + 8 + 26 <= len(head):  # WAVE_FORMAT_EXTENSIBLE: the sub-format's tag
                tag = struct.unpack(order + "H", head[pos + 32:pos + 34])[0]
            if tag not in (1, 3):
                return f"a wav file in an unsupported encoding (format tag {tag}; PCM and float are read)"
            if channels < 1 or bits not in ((32, 64) if tag == 3 else (8, 16, 24, 32)) or block_align != channels * (bits // 8):
                return "a wav file with a damaged or unsupported 'fmt ' chunk"
            fmt = (channels, rate, block_align, bits, tag)
        elif chunk == b"data":
            if fmt is None:
                return "a wav file whose 'data' chunk comes before its 'fmt ' chunk"
            channels, rate, block_align, bits, tag = fmt
            if size == 0xFFFFFFFF and data_size_64 is not None:
                size = data_size_64
            data_bytes = min(size, max(0, file_bytes - pos - 8))  # a body cut short keeps what it holds
            return AudioHeader("wav", rate, channels, data_bytes // block_align, bits, tag == 3, order == ">", pos + 8, block_align)
        pos += 8 + size + (size & 1)
    if pos > file_bytes:
        return "a wav file whose chunk sizes run past its end (truncated or damaged), without a 'data' chunk before that"
    if pos >= HEADER_BYTES:
        return f"a wav file whose audio does not start within its first {HEADER_BYTES // 1024} KiB"
    if fmt is None:
        return "a wav file without a 'fmt ' chunk (truncated or damaged)"
    return "a wav file without a 'data' chunk (truncated or damaged)"


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
    try:
        size = os.fstat(fd).st_size
        if size > max_bytes:
            raise AudioError(f"{path}: {size} bytes, more than any request of at most {max_duration_ms / 1000:g} s needs ({max_bytes}); refused")
        head = _read_until(fd, path, min(size, HEADER_BYTES), deadline, timeout_s)
        header = parse_audio_header(head, size)
        if isinstance(header, str):
            raise AudioError(f"{path}: {header}")
        problem = _header_problem(header, max_duration_ms)
        if problem:
            raise AudioError(f"{path}: {problem}; refused before decoding")
        data = bytearray(size)  # the whole file, read once into one buffer (the samples are views of it)
        data[: len(head)] = head
        got = len(head) + _read_into(fd, path, memoryview(data)[len(head):], deadline, timeout_s)
    finally:
        os.close(fd)
    frames_cap = ceil(max_duration_ms / 1000.0 * header.rate_hz)
    if header.format == "flac":
        try:
            rate, samples = _read_flac(io.BytesIO(data[:got]), frames_cap)
        except (ValueError, OSError, EOFError, RuntimeError) as exc:
            raise AudioError(f"{path}: not a readable FLAC file (the decoder refused it: {type(exc).__name__})") from None
        if rate != header.rate_hz or samples.shape[0] > frames_cap:
            raise AudioError(f"{path}: the audio is longer than its header says, or at another rate; refused")
    else:
        samples, rate = _wav_samples(data, got, header), header.rate_hz
    return _to_mono(path, samples, int(rate), sample_rate_hz)


def _wav_samples(data: bytearray, got: int, header: AudioHeader) -> np.ndarray:
    """(frames, channels) samples of a wav whose header has been checked, as views of ``data`` where the encoding allows."""
    frames = min(header.frames or 0, max(0, got - header.data_offset) // header.block_align)
    count = frames * header.channels
    order = ">" if header.big_endian else "<"
    if header.bits == 24:  # three bytes per sample: widen to int32 (the low byte zero, so to_float scales by 2**31)
        raw = np.frombuffer(data, np.uint8, count * 3, header.data_offset).reshape(-1, 3)
        if header.big_endian:
            raw = raw[:, ::-1]
        wide = np.zeros((count, 4), np.uint8)
        wide[:, 1:] = raw
        samples = wide.view("<i4").reshape(-1)
    else:
        kind = "f" if header.is_float else ("u" if header.bits == 8 else "i")
        samples = np.frombuffer(data, np.dtype(f"{order}{kind}{header.bits // 8}"), count, header.data_offset)
    return samples.reshape(frames, header.channels)


def _header_problem(header: AudioHeader, max_duration_ms: float) -> str | None:
    if header.rate_hz not in REQUEST_RATES_HZ:
        return f"sample rate {header.rate_hz} Hz is not one of {', '.join(str(r) for r in REQUEST_RATES_HZ)} Hz"
    if header.channels > MAX_REQUEST_CHANNELS:
        return f"{header.channels} channels, at most {MAX_REQUEST_CHANNELS}"
    if header.duration_ms is not None and header.duration_ms > max_duration_ms:
        return f"{header.duration_ms / 1000:.2f} s of audio, longer than the {max_duration_ms / 1000:g} s a spoken request may last"
    if header.frames == 0:
        return "the audio file holds no samples"
    return None


def _read_until(fd: int, path: Path, n: int, deadline: float, timeout_s: float) -> bytes:
    """Exactly ``n`` bytes (fewer if the file ends), refusing once ``deadline`` passes."""
    buf = bytearray(n)
    return bytes(buf[: _read_into(fd, path, memoryview(buf), deadline, timeout_s)])


def _read_into(fd: int, path: Path, buf: memoryview, deadline: float, timeout_s: float) -> int:
    """Fill ``buf`` from ``fd`` in 1 MiB steps (fewer bytes if the file ends); bytes read. Refused once ``deadline`` passes."""
    got = 0
    while got < len(buf):
        if time.monotonic() > deadline:
            raise AudioError(f"{path}: reading took longer than {timeout_s:g} s; refused")
        try:
            n = os.readv(fd, [buf[got: got + (1 << 20)]])
        except OSError as exc:
            raise AudioError(f"{path}: cannot be read ({exc.strerror})") from None
        if n == 0:
            break
        got += n
    return got


def to_int16(samples: np.ndarray) -> np.ndarray:
    """Float samples in [-1, 1] to int16 PCM, clipping what is outside."""
    return (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype(np.int16)


def write_wav(path: str | os.PathLike, samples: np.ndarray, sample_rate_hz: int) -> None:
    """Write mono 16-bit PCM atomically (temporary file, fsync, rename): a reader never sees half a file."""
    pcm = samples if samples.dtype == np.int16 else to_int16(samples)
    write_atomic(path, lambda f: wavfile.write(f, sample_rate_hz, pcm))
