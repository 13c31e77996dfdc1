"""In-memory devices for controller tests: they behave like the real ones (paced frames, newest frame only)."""
from __future__ import annotations

import queue
import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge.camera import StaticFrames  # noqa: F401  (the real in-memory camera)
from edge.candidates import Candidate
from edge.hearing import AudioFrame
from edge.vad import Utterance

RATE = 16000
FRAME_SAMPLES = 480  # 30 ms


class QueueAudio:
    """An audio source fed by the test; ``finish()`` makes it a finite source that ends."""

    def __init__(self) -> None:
        self.q: queue.Queue = queue.Queue()
        self.closed = False
        self.dropped_frames = 0
        self._finishing = False

    def start(self) -> None:
        pass

    def push(self, pcm: np.ndarray) -> None:
        for i in range(0, len(pcm) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
            self.q.put(AudioFrame(pcm[i : i + FRAME_SAMPLES], time.monotonic(), RATE))

    def finish(self) -> None:
        self._finishing = True

    def read(self, timeout_s: float):
        try:
            return self.q.get(timeout=timeout_s)
        except queue.Empty:
            if self._finishing:
                self.closed = True
            return None

    def close(self) -> None:
        self.closed = True


class EnergyEndpointer:
    """Loud frames make an utterance; the first quiet frame after them ends it."""

    def __init__(self) -> None:
        self.frames: list = []

    @property
    def in_speech(self) -> bool:
        return bool(self.frames)

    def push(self, frame):
        loud = np.abs(frame.pcm).max() > 1000
        if loud:
            self.frames.append(frame)
            return None
        return self.flush()

    def flush(self):
        if not self.frames:
            return None
        pcm = np.concatenate([f.pcm for f in self.frames])
        utt = Utterance(pcm, RATE, self.frames[0].time_s, self.frames[-1].time_s)
        self.frames = []
        return utt


BOXES = [(0, 40, 80, 80), (80, 40, 80, 80), (160, 40, 80, 80)]


class ThreeSlots:
    """Candidates: three fixed boxes side by side."""

    def find(self, image):
        return [Candidate(b, image[b[1] : b[1] + b[3], b[0] : b[0] + b[2]].copy()) for b in BOXES]


def centre_region(image):
    b = (80, 40, 80, 80)
    return Candidate(b, image[b[1] : b[1] + b[3], b[0] : b[0] + b[2]].copy())


@dataclass
class View:
    view_id: int
    pair_id: int
    source: str
    created_unix: float
    crop: np.ndarray


@dataclass
class Pair:
    pair_id: int
    label: str | None
    created_unix: float
    audio_pcm: np.ndarray
    sample_rate_hz: int
    crop: np.ndarray
    views: list = field(default_factory=list)


class DictMemory:
    """The memory interface over dicts (the SQLite store is tested by its own module)."""

    def __init__(self) -> None:
        self.rows: dict[int, Pair] = {}
        self.vectors: dict[tuple[int, str], np.ndarray] = {}
        self.view_vectors: dict[tuple[int, str], np.ndarray] = {}
        self.next_view = 0
        self.closed = False

    def teach(self, audio_pcm, sample_rate_hz, crop, label=None, embeddings={}, views=()):
        pid = max(self.rows, default=0) + 1
        self.rows[pid] = Pair(pid, label, time.time(), audio_pcm.copy(), sample_rate_hz, crop.copy())
        for enc, vec in embeddings.items():
            self.vectors[(pid, enc)] = np.asarray(vec)
        for view_crop, view_embeddings in views:
            self.add_view(pid, view_crop, view_embeddings, source="taught")
        return pid

    def add_view(self, pair_id, crop, embeddings=None, *, source="learned", max_learned=None, word_pair_ids=None):
        self.next_view += 1
        self.rows[pair_id].views.append(View(self.next_view, pair_id, source, time.time(), crop.copy()))
        for enc, vec in (embeddings or {}).items():
            self.view_vectors[(self.next_view, enc)] = np.asarray(vec)
        dropped = []
        if max_learned is not None:
            word = {pair_id, *(word_pair_ids or ())}
            learned = sorted((v.view_id for p in word for v in self.rows[p].views if v.source == "learned"), reverse=True)
            dropped = sorted(learned[max_learned:])
            for p in word:
                self.rows[p].views = [v for v in self.rows[p].views if v.view_id not in dropped]
        return self.next_view, dropped

    def view_embeddings(self, encoder_id):
        return {vid: v for (vid, enc), v in self.view_vectors.items() if enc == encoder_id}

    def set_view_embedding(self, view_id, encoder_id, vector):
        self.view_vectors[(view_id, encoder_id)] = np.asarray(vector)

    def pairs(self):
        return [self.rows[k] for k in sorted(self.rows)]

    def embeddings(self, encoder_id):
        return {pid: v for (pid, enc), v in self.vectors.items() if enc == encoder_id}

    def set_embedding(self, pair_id, encoder_id, vector):
        self.vectors[(pair_id, encoder_id)] = np.asarray(vector)

    def forget(self, pair_id):
        if pair_id not in self.rows:
            return False
        del self.rows[pair_id]
        self.vectors = {k: v for k, v in self.vectors.items() if k[0] != pair_id}
        return True

    def label(self, pair_id, text):
        self.rows[pair_id].label = text

    def close(self):
        self.closed = True


SHAPES = ("circle", "square", "triangle")
COLOURS = {"circle": (230, 40, 40), "square": (40, 60, 230), "triangle": (40, 200, 60)}


def draw(shape: str, img: np.ndarray, x: int, y: int) -> None:
    """One object of ``shape`` in the 80x80 slot at (x, y)."""
    c = COLOURS[shape]
    if shape == "circle":
        cv2.circle(img, (x + 40, y + 40), 28, c, -1)
    elif shape == "square":
        cv2.rectangle(img, (x + 14, y + 14), (x + 66, y + 66), c, -1)
    else:
        pts = np.array([[x + 40, y + 10], [x + 70, y + 70], [x + 10, y + 70]], np.int32)
        cv2.fillPoly(img, [pts], c)


def scene(*slots: str | None) -> np.ndarray:
    """A 240x160 plain dark surface with up to three objects in the three slots."""
    img = np.full((160, 240, 3), 25, np.uint8)
    for i, shape in enumerate(slots):
        if shape:
            draw(shape, img, BOXES[i][0], BOXES[i][1])
    return img


def word(kind: int, seconds: float = 0.45) -> np.ndarray:
    """A distinct 'word': a chirp or tone pattern per kind, int16 at 16 kHz."""
    t = np.arange(int(seconds * RATE)) / RATE
    if kind == 0:
        x = np.sin(2 * np.pi * (300 + 900 * t / seconds) * t)
    elif kind == 1:
        x = np.sin(2 * np.pi * 2200 * t) * (0.5 + 0.5 * np.sin(2 * np.pi * 6 * t))
    elif kind == 2:
        x = np.sign(np.sin(2 * np.pi * 180 * t)) * 0.6
    else:
        rng = np.random.default_rng(kind)
        x = rng.normal(0, 0.4, t.size)
    return (x * 12000).astype(np.int16)


def silence(seconds: float) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.int16)
