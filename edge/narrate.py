"""The daemon's events as sentences for a person at a terminal (``showsay run``, ``showsay demo``).

:func:`describe` turns one event into one line ("learned pair 3 'cup' from 960 ms of speech and the
crop at [...]", "found cup at [...] (speech 0.031, image 0.044; 9.8 ms)"); :class:`Narrator`
prints them from its own thread, so a terminal that stops reading (scroll lock, a paused pager)
never holds up the controller that publishes them.
"""
from __future__ import annotations

import json
import logging
import queue
import sys
import threading
import time
from typing import Any, TextIO

log = logging.getLogger(__name__)


def _name(event: dict) -> str:
    return event.get("label") or f"pair {event.get('pair_id')}"


def _latency(event: dict) -> str:
    value = event.get("latency_ms")
    return "" if value is None else f"; {value:.1f} ms"


def describe(event: dict) -> str | None:
    """One readable line for ``event``, or None for events a person need not see."""
    name = event.get("event")
    if name == "ready":
        return f"ready: {event.get('pairs')} taught pairs, speech {event.get('speech_encoder')}, image {event.get('image_encoder')}"
    if name == "teach_started":
        return "teach button pressed: show the object, say its name" + (f" (it will be called {event['label']!r})" if event.get("label") else "")
    if name == "teach_cancelled":
        return f"teach mode ended without a word ({event.get('reason')})"
    if name == "taught":
        label = f" {event['label']!r}" if event.get("label") else ""
        return (f"learned pair {event['pair_id']}{label} from {event['utterance_ms']} ms of speech and the crop at {event['box']} "
                f"(sharpest of the sampled frames: {event['sharpness']})")
    if name == "labelled":
        return f"pair {event['pair_id']} is now called {event['label']!r}" if event.get("label") else f"pair {event['pair_id']} has no name now"
    if name == "forgotten":
        return f"forgot pair {event['pair_id']}"
    if name == "resolved":
        return (f"found {_name(event)} at {event['box']} (speech {event['speech_distance']:.3f}, "
                f"image {event['image_distance']:.3f}{_latency(event)})")
    if name == "unknown_word":
        if event.get("reason") == "nothing_taught":
            return f"heard a request, but nothing is taught yet{_latency(event)}"
        return f"unknown word (nearest taught word at speech distance {event.get('speech_distance')}{_latency(event)})"
    if name == "not_in_view":
        return f"{_name(event)} is not in view (best candidate at image distance {event.get('image_distance')}{_latency(event)})"
    if name in ("error", "device_lost", "device_recovered", "utterance_dropped", "reloaded"):
        return f"{name}: {json.dumps({k: v for k, v in event.items() if k not in ('event', 'time_unix')})}"
    return None


class Narrator:
    """An event listener that prints :func:`describe`'s lines with the time, from its own thread."""

    def __init__(self, stream: TextIO = sys.stdout, max_lines: int = 256) -> None:
        self.stream = stream
        self._lines: queue.Queue = queue.Queue(max_lines)
        self.dropped = 0
        self._thread = threading.Thread(target=self._print, name="narrator", daemon=True)
        self._thread.start()

    def __call__(self, event: dict) -> None:
        line = describe(event)
        if line is None:
            return
        stamp = time.strftime("%H:%M:%S", time.localtime(event.get("time_unix", time.time())))
        try:
            self._lines.put_nowait(f"[{stamp}] {line}")
        except queue.Full:
            self.dropped += 1  # the terminal is not being read; the log still has every event

    def _print(self) -> None:
        while True:
            line = self._lines.get()
            if line is None:
                return
            try:
                print(line, file=self.stream, flush=True)
            except (OSError, ValueError) as exc:  # a closed terminal: stop printing, keep running
                log.warning("narrator: cannot print to the terminal any more (%s)", exc)
                return

    def close(self, timeout_s: float = 2.0) -> None:
        """Print what is queued, then stop."""
        try:
            self._lines.put(None, timeout=timeout_s)
        except queue.Full:
            return
        self._thread.join(timeout=timeout_s)


def wants_narration(choice: str, stream: Any = sys.stdout) -> bool:
    """``--narrate`` auto/always/never: auto prints when ``stream`` is a terminal (not under systemd)."""
    if choice == "auto":
        return bool(getattr(stream, "isatty", lambda: False)())
    return choice == "always"
