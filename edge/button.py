"""The teach button: a GPIO line (libgpiod v2 or Jetson.GPIO), a keyboard key, or none.

Every kind calls the same ``on_press`` callback, as does the control socket's ``teach``
command, so the controller sees one press path. Device libraries are imported only inside the
adapter that uses them. Debouncing is done on the edge timestamps: a press is a line becoming
active after it was quiet (no edge at all) for ``debounce_ms``, so contact bounce on pressing
and on releasing is ignored alike.
"""
from __future__ import annotations

import logging
import os
import select
import sys
import threading
from dataclasses import dataclass
from typing import Callable, Literal, Protocol, TextIO

from edge.settings import setting

log = logging.getLogger(__name__)

PressCallback = Callable[[], None]


@dataclass(frozen=True)
class ButtonSettings:
    """Where teach presses come from (the control socket's teach command always works too)."""

    kind: Literal["none", "gpiod", "jetson", "keyboard"] = setting(
        "none", "teach button: none (socket only), gpiod (GPIO line via libgpiod v2), jetson (Jetson.GPIO), keyboard (a key on stdin, bench use)"
    )
    chip: str = setting("/dev/gpiochip0", "gpiod: GPIO chip device path")
    line: str = setting("0", "gpiod: line offset on the chip (e.g. '17') or line name; jetson: BOARD pin number")
    debounce_ms: float = setting(50.0, "ignore edges until the line was quiet this long, ms", min=0.0, max=2000.0)
    active_low: bool = setting(True, "the button pulls the line low when pressed (pull-up enabled)")
    key: str = setting("t", "keyboard: the key that presses the button ('enter' for the Enter key)")


class Button(Protocol):
    """A source of teach presses."""

    def start(self, on_press: PressCallback) -> None:
        """Begin calling ``on_press`` (from the button's own thread) for every press."""
        ...

    def close(self) -> None:
        """Stop and release the device."""
        ...


class Debouncer:
    """Turns timestamped edges into presses: an active edge counts after ``debounce_ms`` of quiet."""

    def __init__(self, debounce_ms: float) -> None:
        self.debounce_s = debounce_ms / 1000.0
        self._last_edge_s: float | None = None

    def edge(self, time_s: float, active: bool) -> bool:
        """Record one edge; True when it is a press."""
        quiet = self._last_edge_s is None or time_s - self._last_edge_s >= self.debounce_s
        self._last_edge_s = time_s
        return active and quiet


class NoButton:
    """No physical button: presses come only from the control socket."""

    def start(self, on_press: PressCallback) -> None:
        """Nothing to start."""

    def close(self) -> None:
        """Nothing to release."""


class GpiodButton:
    """A GPIO line read through libgpiod v2 edge events (kernel debounce where supported, plus ours)."""

    def __init__(self, settings: ButtonSettings) -> None:
        self.settings = settings
        self._debouncer = Debouncer(settings.debounce_ms)
        self._request = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._on_press: PressCallback | None = None

    def _line_key(self) -> int | str:
        return int(self.settings.line) if self.settings.line.isdigit() else self.settings.line

    def start(self, on_press: PressCallback) -> None:
        """Request the line for both edges and watch it in a thread."""
        from datetime import timedelta

        try:
            import gpiod
            from gpiod.line import Bias, Direction, Edge
        except ImportError as exc:
            raise RuntimeError(f"button.kind gpiod: the gpiod library (libgpiod v2 bindings) cannot be imported ({exc}); "
                               "install it with `pip install gpiod`, or set button.kind: none") from None

        s = self.settings
        self._on_press = on_press
        line_settings = gpiod.LineSettings(
            direction=Direction.INPUT,
            edge_detection=Edge.BOTH,
            bias=Bias.PULL_UP if s.active_low else Bias.PULL_DOWN,
            active_low=s.active_low,  # edges are then logical: RISING = became active = pressed
            debounce_period=timedelta(milliseconds=s.debounce_ms),
        )
        try:
            self._request = gpiod.request_lines(s.chip, consumer="showsay", config={self._line_key(): line_settings})
        except (OSError, ValueError) as exc:
            raise OSError(f"button.chip {s.chip} line {s.line}: cannot request the GPIO line ({exc})") from exc
        self._thread = threading.Thread(target=self._watch, name="button-gpiod", daemon=True)
        self._thread.start()
        log.info("teach button on %s line %s (active_low=%s)", s.chip, s.line, s.active_low)

    def handle_event(self, event: object) -> bool:
        """Feed one ``gpiod.EdgeEvent``; calls on_press and returns True when it is a press."""
        import gpiod

        active = event.event_type == gpiod.EdgeEvent.Type.RISING_EDGE  # type: ignore[attr-defined]
        if self._debouncer.edge(event.timestamp_ns / 1e9, active):  # type: ignore[attr-defined]
            if self._on_press is not None:
                self._on_press()
            return True
        return False

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                if self._request.wait_edge_events(0.2):  # type: ignore[union-attr]
                    for event in self._request.read_edge_events():  # type: ignore[union-attr]
                        self.handle_event(event)
            except Exception:  # the line request was released under us, or the chip vanished
                if not self._stop.is_set():
                    log.exception("teach button %s line %s: reading edge events failed", self.settings.chip, self.settings.line)
                    self._stop.wait(1.0)

    def close(self) -> None:
        """Stop the thread and release the line."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        if self._request is not None:
            self._request.release()
            self._request = None


class JetsonButton:
    """A header pin through Jetson.GPIO (BOARD numbering), its own event thread and bouncetime."""

    def __init__(self, settings: ButtonSettings) -> None:
        self.settings = settings
        self._gpio = None
        self._pin = int(settings.line) if settings.line.isdigit() else None
        if self._pin is None:
            raise ValueError(f"button.line: Jetson.GPIO needs a BOARD pin number, got {settings.line!r}")

    def start(self, on_press: PressCallback) -> None:
        """Set the pin up as an input and register the edge callback."""
        try:
            import Jetson.GPIO as GPIO  # raises RuntimeError without /dev/gpiochip0
        except ImportError as exc:
            raise RuntimeError(f"button.kind jetson: Jetson.GPIO cannot be imported ({exc}); install it, or set button.kind: gpiod or none") from None

        s = self.settings
        GPIO.setmode(GPIO.BOARD)
        GPIO.setup(self._pin, GPIO.IN)
        edge = GPIO.FALLING if s.active_low else GPIO.RISING
        GPIO.add_event_detect(self._pin, edge, callback=lambda _channel: on_press(), bouncetime=max(1, int(s.debounce_ms)))
        self._gpio = GPIO
        log.info("teach button on Jetson BOARD pin %d", self._pin)

    def close(self) -> None:
        """Remove the callback and free the pin."""
        if self._gpio is not None:
            self._gpio.remove_event_detect(self._pin)
            self._gpio.cleanup(self._pin)
            self._gpio = None


class KeyboardButton:
    """A key on a terminal (single key press, no Enter needed) or lines on a pipe, for bench use."""

    def __init__(self, settings: ButtonSettings, stream: TextIO | None = None) -> None:
        self.key = settings.key
        self._stream = stream if stream is not None else sys.stdin
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._saved_tty: list | None = None

    def _is_press(self, text: str) -> bool:
        if self.key == "enter":
            return text in ("\n", "\r", "")
        return text.strip().lower() == self.key.lower()

    def start(self, on_press: PressCallback) -> None:
        """Read the stream in a thread; a terminal is put in cbreak mode so one key is one press."""
        fd = self._stream.fileno()
        tty = os.isatty(fd)
        if tty:
            import termios
            import tty as tty_mod

            self._saved_tty = termios.tcgetattr(fd)
            tty_mod.setcbreak(fd)
        self._thread = threading.Thread(target=self._read, args=(fd, tty, on_press), name="button-keyboard", daemon=True)
        self._thread.start()
        log.info("teach button: press %r%s", self.key, "" if tty else " followed by Enter on stdin")

    def _read(self, fd: int, tty: bool, on_press: PressCallback) -> None:
        pending = b""
        while not self._stop.is_set():
            ready, _, _ = select.select([fd], [], [], 0.2)
            if not ready:
                continue
            chunk = os.read(fd, 64)
            if not chunk:  # end of input: no more presses
                return
            if tty:
                for ch in chunk.decode(errors="replace"):
                    if self._is_press(ch):
                        on_press()
                continue
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                if self._is_press(line.decode(errors="replace") if self.key != "enter" else ""):
                    on_press()

    def close(self) -> None:
        """Stop reading and restore the terminal."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
        if self._saved_tty is not None:
            import termios

            termios.tcsetattr(self._stream.fileno(), termios.TCSADRAIN, self._saved_tty)
            self._saved_tty = None


def make_button(settings: ButtonSettings) -> Button:
    """The configured teach button (not started)."""
    if settings.kind == "gpiod":
        return GpiodButton(settings)
    if settings.kind == "jetson":
        return JetsonButton(settings)
    if settings.kind == "keyboard":
        return KeyboardButton(settings)
    return NoButton()
