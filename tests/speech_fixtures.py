"""Speech fixtures synthesised at test time with espeak-ng (no recordings in the repository)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np

from edge.audio import read_wav, write_wav

RATE_HZ = 16000


def espeak(text: str, path: Path, voice: str = "en-us", words_per_min: int = 160) -> np.ndarray:
    """Synthesise ``text`` into ``path`` with espeak-ng; returns the float32 samples at 16 kHz."""
    exe = shutil.which("espeak-ng")
    assert exe, "espeak-ng is needed for the speech fixtures: apt-get install espeak-ng (see Makefile APT_PACKAGES)"
    subprocess.run([exe, "-v", voice, "-s", str(words_per_min), "-w", str(path), text], check=True, timeout=30)
    return read_wav(path, RATE_HZ)


def voiced_span_s(samples: np.ndarray, threshold: float = 0.02) -> tuple[float, float]:
    """First and last sample above ``threshold``, seconds: where the word really is."""
    idx = np.nonzero(np.abs(samples) > threshold)[0]
    return idx[0] / RATE_HZ, (idx[-1] + 1) / RATE_HZ


def compose(parts: list[np.ndarray | float], path: Path, noise: float = 0.002, seed: int = 0) -> list[tuple[float, float]]:
    """Write words and silences (floats, seconds) to ``path`` over faint noise; returns each word's true span."""
    chunks, spans, t = [], [], 0
    for part in parts:
        if isinstance(part, float):
            chunk = np.zeros(int(part * RATE_HZ), np.float32)
        else:
            chunk = part
            a, b = voiced_span_s(chunk)
            spans.append((t / RATE_HZ + a, t / RATE_HZ + b))
        chunks.append(chunk)
        t += chunk.size
    x = np.concatenate(chunks)
    x = x + np.random.default_rng(seed).standard_normal(x.size).astype(np.float32) * noise
    write_wav(path, x, RATE_HZ)
    return spans
