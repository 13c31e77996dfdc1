"""Optional sound feedback for teaching: short tones on teach_started, turn_object, taught and teach_cancelled.

A listener on the controller's events; tones are synthesized here and played by a worker thread
through the default output device (sounddevice, imported only in :func:`play_with_sounddevice`),
so a slow or missing speaker never holds up the controller.
"""
from __future__ import annotations

import logging
import queue
import threading
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)

RATE_HZ = 16000
# event -> tones (Hz) played one after the other, each TONE_S long
TONES = {
    "teach_started": (660.0, 880.0),
    "turn_object": (880.0, 990.0, 880.0, 990.0),  # a wobble: turn the object while naming it (follows teach_started)
    "taught": (880.0, 880.0, 1320.0),
    "teach_cancelled": (660.0, 440.0),
}
TONE_S = 0.09


def tone_sequence(freqs: tuple[float, ...], volume: float = 0.3) -> np.ndarray:
    """float32 samples of the tones with 5 ms fades (no clicks)."""
    t = np.arange(int(TONE_S * RATE_HZ)) / RATE_HZ
    fade = np.minimum(1.0, np.minimum(t, TONE_S - t) / 0.005)
    return np.concatenate([volume * fade * np.sin(2 * np.pi * f * t) for f in freqs]).astype(np.float32)


def play_with_sounddevice(samples: np.ndarray, rate_hz: int) -> None:
    """Play on the default output device and wait until done."""
    import sounddevice as sd

    sd.play(samples, rate_hz, blocking=True)


class Beeper:
    """Event listener that plays the tone for teaching events; never blocks the caller."""

    def __init__(self, play: Callable[[np.ndarray, int], None] = play_with_sounddevice) -> None:
        self._play = play
        self._queue: queue.Queue = queue.Queue(maxsize=4)
        self._thread = threading.Thread(target=self._run, name="beeper", daemon=True)
        self._thread.start()

    def __call__(self, event: dict) -> None:
        freqs = TONES.get(event.get("event", ""))
        if freqs is None:
            return
        try:
            self._queue.put_nowait(tone_sequence(freqs))
        except queue.Full:
            log.debug("feedback tone for %s skipped: player busy", event.get("event"))

    def _run(self) -> None:
        while True:
            samples = self._queue.get()
            if samples is None:
                return
            try:
                self._play(samples, RATE_HZ)
            except Exception as exc:  # no speaker, device busy: feedback is optional
                log.warning("feedback tone not played: %s", exc)

    def close(self) -> None:
        """Stop the player thread."""
        try:
            self._queue.put(None, timeout=1.0)
        except queue.Full:
            pass
        self._thread.join(timeout=2.0)
