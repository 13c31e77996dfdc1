"""Isolated words from Debian's speech synthesizers: espeak-ng (voices x variants), flite, festival.

Each rendering is a :class:`SynthJob` (engine, voice, speed, pitch, word, output path); jobs are
drawn reproducibly from a seed and run as parallel subprocesses. Engines that are not installed
are reported by :func:`available_engines` so the data-preparation command can say what is missing.
"""
from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

log = logging.getLogger(__name__)

# English espeak-ng voices (not the mbrola ones, which need the mbrola binary and voice packages).
ESPEAK_VOICES = ("en", "en-us", "en-gb-scotland", "en-gb-x-gbclan", "en-gb-x-rp", "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
FESTIVAL_VOICES = ("kal_diphone", "ked_diphone", "cmu_us_slt_arctic_hts")
ENGINE_PACKAGES = {"espeak-ng": "espeak-ng", "flite": "flite", "festival": "festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts"}
SUBPROCESS_TIMEOUT_S = 120.0
UNVOICED_VARIANTS = ("whisper", "whisperf")  # whispered words are unlike anything the robot will hear


@dataclass(frozen=True)
class SynthJob:
    """One word said by one synthetic voice at one speed and pitch."""

    engine: str
    voice: str
    word: str
    speed: float  # 1.0 = the voice's normal rate; > 1 is faster
    pitch: float  # 0..1, the engine's pitch range mapped linearly
    out: Path

    @property
    def speaker(self) -> str:
        """Identity used to keep support and query voices apart in validation."""
        return f"{self.engine}:{self.voice}"


def espeak_variants() -> list[str]:
    """espeak-ng voice variants installed (``+name`` suffixes), empty when espeak-ng is missing."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        return []
    out = subprocess.run([exe, "--voices=variant"], capture_output=True, text=True, timeout=30).stdout
    names = [line.split()[3] for line in out.splitlines()[1:] if len(line.split()) >= 5]
    # the variant file name is the last path component ("!v/f3" -> "f3")
    files = [line.split()[4].split("/")[-1] for line in out.splitlines()[1:] if len(line.split()) >= 5]
    return [v for v in sorted(set(files or names)) if v not in UNVOICED_VARIANTS]


def flite_voices() -> list[str]:
    """flite's built-in voices, empty when flite is missing."""
    exe = shutil.which("flite")
    if exe is None:
        return []
    out = subprocess.run([exe, "-lv"], capture_output=True, text=True, timeout=30).stdout
    voices = out.split(":", 1)[-1].split()
    return [v for v in voices if v not in ("awb_time", "kal16")]  # awb_time only says times; kal16 = kal


def festival_voices() -> list[str]:
    """Festival voices installed among those we use, empty when festival is missing."""
    if shutil.which("festival") is None:
        return []
    roots = [Path("/usr/share/festival/voices"), Path("/usr/lib/festival/voices")]
    found = {p.name for root in roots if root.is_dir() for p in root.glob("*/*") if p.is_dir()}
    return [v for v in FESTIVAL_VOICES if v in found]


def available_engines() -> tuple[dict[str, list[str]], list[str]]:
    """({engine: voices}, messages about what is missing and how to install it)."""
    engines = {"espeak-ng": [f"{v}+{var}" for v in ESPEAK_VOICES for var in espeak_variants()] + list(ESPEAK_VOICES), "flite": flite_voices(), "festival": festival_voices()}
    if shutil.which("espeak-ng") is None:
        engines["espeak-ng"] = []
    missing = [
        f"{name}: not installed or no voices (apt-get install {ENGINE_PACKAGES[name]}); its words are left out"
        for name, voices in engines.items()
        if not voices
    ]
    return {k: v for k, v in engines.items() if v}, missing


def plan_jobs(words: Iterable[str], engines: dict[str, list[str]], per_word: dict[str, int], out_dir: Path, seed: int) -> list[SynthJob]:
    """Reproducible renderings: for each word, ``per_word[engine]`` random voices, speeds and pitches."""
    rng = np.random.default_rng(seed)
    jobs = []
    for word in words:
        for engine in sorted(engines):
            voices = engines[engine]
            n = per_word.get(engine, 0)
            picks = rng.choice(len(voices), size=min(n, len(voices)), replace=False)
            for i, v in enumerate(picks):
                speed = float(rng.uniform(0.8, 1.25))
                pitch = float(rng.uniform(0.15, 0.85))
                jobs.append(SynthJob(engine, voices[v], word, speed, pitch, out_dir / word / f"{engine}_{i}.wav"))
    return jobs


def _espeak(job: SynthJob) -> None:
    wpm = int(round(160 * job.speed))
    pitch = int(round(100 * job.pitch))
    subprocess.run(["espeak-ng", "-v", job.voice, "-s", str(wpm), "-p", str(pitch), "-w", str(job.out), job.word], check=True, capture_output=True, timeout=SUBPROCESS_TIMEOUT_S)


def _flite(job: SynthJob) -> None:
    f0 = 80 + 160 * job.pitch  # Hz, mean pitch target
    cmd = ["flite", "-voice", job.voice, "--setf", f"duration_stretch={1 / job.speed:.3f}", "--setf", f"int_f0_target_mean={f0:.0f}", "-t", job.word, "-o", str(job.out)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=SUBPROCESS_TIMEOUT_S)


def _festival_batch(jobs: list[SynthJob]) -> None:
    """One festival process renders many words (its start-up costs about half a second)."""
    lines = []
    for job in jobs:
        word = job.word.replace('"', "")
        lines.append(f"(voice_{job.voice})")
        lines.append(f"(Parameter.set 'Duration_Stretch {1 / job.speed:.3f})")
        lines.append(f'(utt.save.wave (utt.synth (Utterance Text "{word}")) "{job.out}" \'riff)')
    with tempfile.NamedTemporaryFile("w", suffix=".scm", delete=False) as f:
        f.write("\n".join(lines) + "\n")
        script = f.name
    try:
        subprocess.run(["festival", "--batch", script], check=True, capture_output=True, timeout=SUBPROCESS_TIMEOUT_S * 10)
    finally:
        Path(script).unlink(missing_ok=True)


def run_jobs(jobs: list[SynthJob], workers: int, progress: Callable[[int], None] | None = None) -> list[str]:
    """Render the jobs whose wav file does not exist yet; returns error messages (empty on success)."""
    todo = [j for j in jobs if not j.out.is_file()]
    for job in todo:
        job.out.parent.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []

    def one(job: SynthJob) -> None:
        try:
            (_espeak if job.engine == "espeak-ng" else _flite)(job)
        except (subprocess.SubprocessError, OSError) as exc:
            errors.append(f"{job.engine} {job.voice} {job.word!r}: {exc}")

    def batch(chunk: list[SynthJob]) -> None:
        try:
            _festival_batch(chunk)
        except (subprocess.SubprocessError, OSError) as exc:
            errors.append(f"festival batch of {len(chunk)} words: {exc}")

    fest = [j for j in todo if j.engine == "festival"]
    chunks = [fest[i : i + 100] for i in range(0, len(fest), 100)]
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        futures = [pool.submit(batch, c) for c in chunks] + [pool.submit(one, j) for j in todo if j.engine != "festival"]
        for fut, n in zip(futures, [len(c) for c in chunks] + [1] * (len(futures) - len(chunks))):
            fut.result()
            if progress is not None:
                progress(n)
    return errors
