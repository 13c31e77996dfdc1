"""Endpointing: cut a stream of PCM frames into utterances with webrtcvad and a hysteresis state machine.

One streaming object, :class:`Endpointer`, takes frames one at a time (:meth:`Endpointer.push`);
files and live sources go through that same path (:meth:`Endpointer.segment`,
:meth:`Endpointer.segment_wav`), so offline evaluation and the daemon cannot drift apart.

An utterance starts when at least ``start_voiced_ratio`` of the last ``start_window_ms`` is voiced,
and ends when at most ``end_voiced_ratio`` of the last ``end_silence_ms`` is voiced (hysteresis: it
is harder to start than to keep going). ``pre_roll_ms`` of audio before the first voiced frame and
``post_roll_ms`` after the last one are kept, so soft onsets and endings survive. Utterances whose
voiced span is shorter than ``min_utterance_ms`` or that run past ``max_utterance_ms`` are dropped,
with a log line and an ``utterance_dropped`` event.

The end window is short by default (``end_silence_ms`` 240: the answer comes soon after the word)
and longer while teaching (``teach_end_silence_ms``, set by the controller through
:meth:`Endpointer.set_end_silence_ms`). :meth:`Endpointer.pending` offers the utterance as it will
end once ``post_roll_ms`` of a pause has passed, so the request's speech side can be computed
while the end window still runs.
"""
from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import webrtcvad

from edge.hearing import AudioFrame, AudioSource, WavFileSource
from edge.settings import SettingsError, setting

log = logging.getLogger(__name__)

VAD_RATES_HZ = (8000, 16000, 32000, 48000)


@dataclass(frozen=True)
class VadSettings:
    """How speech is told from silence and where utterances start and end."""

    aggressiveness: int = setting(2, "webrtcvad aggressiveness: 0 (keeps most audio) to 3 (most eager to call it silence)", min=0, max=3)
    frame_ms: int = setting(30, "frame length the VAD judges, ms; must equal microphone.frame_ms", choices=(10, 20, 30))
    start_window_ms: int = setting(300, "window over which the start is decided, ms", min=10, max=5000)
    start_voiced_ratio: float = setting(0.6, "fraction of start_window_ms that must be voiced to start an utterance", min=0.01, max=1.0)
    end_silence_ms: int = setting(
        240,
        "window of (mostly) silence that ends an utterance, ms: the answer comes about this plus 80 ms after the word's end "
        "(p95 327 ms on the bundled session, 344 ms on held-out recorded words; docs/daemon.md); a pause longer than about "
        "200 ms inside a request splits it (600 keeps pauses up to 400 ms whole, at 640 ms p95)",
        min=10, max=10000,
    )
    end_voiced_ratio: float = setting(
        0.15, "an utterance ends when at most this fraction of end_silence_ms is voiced (below start_voiced_ratio)", min=0.0, max=1.0
    )
    teach_end_silence_ms: int = setting(
        600, "end_silence_ms while teaching: a name said with a pause in it is kept whole (the answer's speed does not matter there), ms",
        min=10, max=10000,
    )
    pre_roll_ms: int = setting(300, "audio kept before the first voiced frame, ms (keeps soft onsets)", min=0, max=5000)
    post_roll_ms: int = setting(150, "audio kept after the last voiced frame, ms", min=0, max=5000)
    min_utterance_ms: int = setting(200, "voiced spans shorter than this are dropped (clicks, coughs), ms", min=0, max=60000)
    max_utterance_ms: int = setting(5000, "utterances running longer than this are dropped (talk, not a word), ms", min=100, max=600000)
    ignore_first_ms: int = setting(
        180, "VAD decisions on the first audio after start are ignored while webrtcvad adapts (it calls them speech), ms",
        min=0, max=5000,
    )

    def validate(self) -> None:
        """The end threshold must sit below the start threshold (or the endpointer chatters); some length must be kept."""
        if self.end_voiced_ratio >= self.start_voiced_ratio:
            raise SettingsError(
                f"end_voiced_ratio: must be below start_voiced_ratio ({self.start_voiced_ratio}), got {self.end_voiced_ratio}"
            )
        if self.max_utterance_ms <= self.min_utterance_ms:
            raise SettingsError(
                f"max_utterance_ms: must be above min_utterance_ms ({self.min_utterance_ms}; else every utterance is dropped), "
                f"got {self.max_utterance_ms}"
            )


@dataclass(frozen=True)
class Utterance:
    """One endpointed utterance: int16 PCM and the capture times of its first and last sample."""

    pcm: np.ndarray  # (samples,) int16
    sample_rate_hz: int
    start_s: float
    end_s: float

    def samples(self) -> np.ndarray:
        """Float32 samples in [-1, 1]."""
        return self.pcm.astype(np.float32) / 32768.0

    @property
    def duration_ms(self) -> float:
        """Length of the audio, ms."""
        return 1000.0 * self.pcm.shape[0] / self.sample_rate_hz


def _frames(ms: int, frame_ms: int) -> int:
    return max(1, round(ms / frame_ms))


class Endpointer:
    """Streaming utterance detector: :meth:`push` frames, get an :class:`Utterance` when one ends."""

    def __init__(self, settings: VadSettings | None = None, on_event: Callable[[dict], None] | None = None) -> None:
        self.settings = s = settings or VadSettings()
        self._on_event = on_event
        self._vad = webrtcvad.Vad(s.aggressiveness)
        self._start_frames = _frames(s.start_window_ms, s.frame_ms)
        self._end_frames = _frames(s.end_silence_ms, s.frame_ms)
        self._pre_frames = round(s.pre_roll_ms / s.frame_ms)
        self._post_frames = round(s.post_roll_ms / s.frame_ms)
        self._ignore_frames = round(s.ignore_first_ms / s.frame_ms)
        self._max_frames = _frames(s.max_utterance_ms, s.frame_ms)
        self.frames_seen = 0
        self.dropped_short = 0
        self.dropped_long = 0
        self.reset()

    def set_end_silence_ms(self, ms: int) -> None:
        """Use another end-silence window from the next frame on (the controller lengthens it while teaching)."""
        self._end_frames = _frames(ms, self.settings.frame_ms)
        self._recent = deque(self._recent, maxlen=self._end_frames)

    def reset(self) -> None:
        """Forget any utterance in progress (the VAD keeps its adaptation)."""
        self._history: deque[tuple[AudioFrame, bool]] = deque(maxlen=self._pre_frames + self._start_frames)
        self._current: list[tuple[AudioFrame, bool]] = []
        self._onset = 0  # index in _current of the first voiced frame
        self._last_voiced = 0  # index in _current of the last voiced frame
        self._recent: deque[bool] = deque(maxlen=self._end_frames)
        self._state = "idle"  # idle | speech | overlong
        self._pending_given = False  # pending() already handed out the utterance of this pause

    @property
    def in_speech(self) -> bool:
        """True while an utterance (or an overlong stretch being skipped) is in progress."""
        return self._state != "idle"

    def _is_voiced(self, frame: AudioFrame) -> bool:
        expected = frame.sample_rate_hz * self.settings.frame_ms // 1000
        if frame.sample_rate_hz not in VAD_RATES_HZ or frame.pcm.shape != (expected,) or frame.pcm.dtype != np.int16:
            raise ValueError(
                f"audio frame: expected {self.settings.frame_ms} ms of int16 mono at one of {VAD_RATES_HZ} Hz "
                f"({expected} samples), got {frame.pcm.shape} {frame.pcm.dtype} at {frame.sample_rate_hz} Hz "
                "(vad.frame_ms must equal microphone.frame_ms)"
            )
        voiced = self._vad.is_speech(frame.pcm.tobytes(), frame.sample_rate_hz)
        self.frames_seen += 1
        return bool(voiced) and self.frames_seen > self._ignore_frames

    def push(self, frame: AudioFrame) -> Utterance | None:
        """Take one frame; returns an utterance when this frame ends one, else None."""
        voiced = self._is_voiced(frame)
        if self._state == "idle":
            self._history.append((frame, voiced))
            window = list(self._history)[-self._start_frames :]
            if len(window) == self._start_frames and sum(v for _, v in window) >= self.settings.start_voiced_ratio * self._start_frames:
                onset = len(self._history) - self._start_frames + next(i for i, (_, v) in enumerate(window) if v)
                first = max(0, onset - self._pre_frames)
                self._current = list(self._history)[first:]
                self._onset = onset - first
                self._last_voiced = max(i for i, (_, v) in enumerate(self._current) if v)
                self._recent = deque((v for _, v in window), maxlen=self._end_frames)
                self._history.clear()
                self._state = "speech"
            return None

        self._recent.append(voiced)
        ended = len(self._recent) == self._end_frames and sum(self._recent) <= self.settings.end_voiced_ratio * self._end_frames
        if self._state == "overlong":
            if ended:
                self.reset()
            return None
        self._current.append((frame, voiced))
        if voiced:
            self._last_voiced = len(self._current) - 1
            self._pending_given = False
        if ended:
            return self._finish()
        if len(self._current) - self._onset > self._max_frames:
            self._drop("too_long", len(self._current) - self._onset)
            self._current = []
            self._state = "overlong"
        return None

    def _drop(self, reason: str, voiced_frames: int) -> None:
        frames = self._current
        duration_ms = voiced_frames * self.settings.frame_ms
        start_s = frames[self._onset][0].time_s if frames else float("nan")
        limit = f"min_utterance_ms={self.settings.min_utterance_ms}" if reason == "too_short" else f"max_utterance_ms={self.settings.max_utterance_ms}"
        log.info("utterance dropped at %.2f s: %s (%d ms, %s)", start_s, reason.replace("_", " "), duration_ms, limit)
        if reason == "too_short":
            self.dropped_short += 1
        else:
            self.dropped_long += 1
        if self._on_event is not None:
            try:
                self._on_event({"event": "utterance_dropped", "reason": reason, "duration_ms": duration_ms, "start_s": start_s})
            except Exception:
                log.exception("endpointer: event handler failed")

    def pending(self) -> Utterance | None:
        """The utterance in progress as it will end if no voiced frame comes before the end silence runs out.

        Given once per pause, as soon as ``post_roll_ms`` of it has passed (the audio the utterance
        keeps is then complete), so the controller can compute the request's speech side while the
        end silence is still running; if the speaker goes on, the next pause gives a new one.
        """
        if self._state != "speech" or self._pending_given:
            return None
        if len(self._current) - 1 - self._last_voiced < max(1, self._post_frames):
            return None
        if (self._last_voiced + 1 - self._onset) * self.settings.frame_ms < self.settings.min_utterance_ms:
            return None
        self._pending_given = True
        return self._utterance(self._current[: self._last_voiced + 1 + self._post_frames])

    @staticmethod
    def _utterance(kept: list[tuple[AudioFrame, bool]]) -> Utterance:
        first, last = kept[0][0], kept[-1][0]
        pcm = np.concatenate([f.pcm for f, _ in kept])
        return Utterance(pcm, first.sample_rate_hz, first.time_s, last.time_s + last.duration_s)

    def _finish(self) -> Utterance | None:
        """Close the current utterance; the silence after its post-roll seeds the next pre-roll."""
        end = min(len(self._current), self._last_voiced + 1 + self._post_frames)
        kept, rest = self._current[:end], self._current[end:]
        voiced_frames = self._last_voiced + 1 - self._onset
        too_short = voiced_frames * self.settings.frame_ms < self.settings.min_utterance_ms
        if too_short:
            self._drop("too_short", voiced_frames)
        self.reset()
        for item in rest:
            self._history.append(item)
        if too_short:
            return None
        return self._utterance(kept)

    def flush(self) -> Utterance | None:
        """End of input: close an utterance in progress (subject to the length limits)."""
        if self._state == "speech" and self._current:
            return self._finish()
        self.reset()
        return None

    def segment(self, source: AudioSource, read_timeout_s: float = 0.1) -> Iterator[Utterance]:
        """Utterances of a source, through :meth:`push`, until the source is closed or exhausted."""
        source.start()
        while True:
            frame = source.read(read_timeout_s)
            if frame is not None:
                utterance = self.push(frame)
                if utterance is not None:
                    yield utterance
            if source.closed:
                utterance = self.flush()
                if utterance is not None:
                    yield utterance
                return

    def segment_wav(self, path: str | os.PathLike) -> list[Utterance]:
        """Utterances of a wav file, with times in seconds from the start of the file."""
        sample_rate_hz = 16000
        source = WavFileSource(path, frame_ms=self.settings.frame_ms, sample_rate_hz=sample_rate_hz, start_time_s=0.0)
        return list(self.segment(source))
