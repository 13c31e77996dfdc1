"""Teach button: debouncing, gpiod edge events, Jetson.GPIO callbacks, keyboard key."""
from __future__ import annotations

import os
import sys
import threading
import types
from unittest import mock

import gpiod
import pytest

from edge.button import ButtonSettings, Debouncer, GpiodButton, JetsonButton, KeyboardButton, NoButton, make_button

RISING = gpiod.EdgeEvent.Type.RISING_EDGE.value
FALLING = gpiod.EdgeEvent.Type.FALLING_EDGE.value


def edge(kind: int, t_ms: float, seq: int) -> gpiod.EdgeEvent:
    return gpiod.EdgeEvent(kind, int(t_ms * 1e6), 17, seq, seq)


def test_debouncer_ignores_bounce_on_press_and_release():
    d = Debouncer(debounce_ms=20)
    # press with bounce, hold, release with bounce, then a second clean press
    edges = [(0.000, True), (0.002, False), (0.003, True), (0.005, False), (0.006, True),
             (0.800, False), (0.801, True), (0.803, False),
             (1.500, True)]
    presses = [t for t, active in edges if d.edge(t, active)]
    assert presses == [0.000, 1.500]


def test_gpiod_button_turns_built_edge_events_into_debounced_presses():
    presses = []
    button = GpiodButton(ButtonSettings(kind="gpiod", line="17", debounce_ms=30))
    button._on_press = lambda: presses.append(1)
    events = [edge(RISING, 0, 1), edge(FALLING, 4, 2), edge(RISING, 6, 3),  # bouncy press
              edge(FALLING, 500, 4), edge(RISING, 502, 5), edge(FALLING, 505, 6),  # bouncy release
              edge(RISING, 1200, 7)]  # second press
    results = [button.handle_event(e) for e in events]
    assert results == [True, False, False, False, False, False, True]
    assert len(presses) == 2


def test_gpiod_button_on_a_missing_chip_names_it():
    button = GpiodButton(ButtonSettings(kind="gpiod", chip="/dev/gpiochip-nope", line="3"))
    with pytest.raises(OSError, match="gpiochip-nope"):
        button.start(lambda: None)
    button.close()


def test_jetson_button_registers_a_debounced_falling_edge_callback():
    fake = types.SimpleNamespace(BOARD="BOARD", IN="IN", FALLING="FALLING", RISING="RISING", calls=[])
    fake.setmode = lambda mode: fake.calls.append(("setmode", mode))
    fake.setup = lambda pin, direction: fake.calls.append(("setup", pin, direction))
    callbacks = {}

    def add_event_detect(pin, edge_kind, callback, bouncetime):
        callbacks[pin] = callback
        fake.calls.append(("detect", pin, edge_kind, bouncetime))

    fake.add_event_detect = add_event_detect
    fake.remove_event_detect = lambda pin: fake.calls.append(("remove", pin))
    fake.cleanup = lambda pin: fake.calls.append(("cleanup", pin))
    package = types.ModuleType("Jetson")
    package.GPIO = fake
    presses = []
    with mock.patch.dict(sys.modules, {"Jetson": package, "Jetson.GPIO": fake}):
        button = JetsonButton(ButtonSettings(kind="jetson", line="18", debounce_ms=40))
        button.start(lambda: presses.append(1))
        callbacks[18](18)  # the library's event thread calls back with the channel
        button.close()
    assert presses == [1]
    assert ("detect", 18, "FALLING", 40) in fake.calls
    assert ("cleanup", 18) in fake.calls


def test_jetson_button_needs_a_pin_number():
    with pytest.raises(ValueError, match="button.line"):
        JetsonButton(ButtonSettings(kind="jetson", line="GPIO17"))


def test_keyboard_button_reads_lines_from_a_pipe():
    read_fd, write_fd = os.pipe()
    stream = os.fdopen(read_fd, "r")
    pressed = threading.Event()
    count = []

    def on_press():
        count.append(1)
        if len(count) == 2:
            pressed.set()

    button = KeyboardButton(ButtonSettings(kind="keyboard", key="t"), stream=stream)
    button.start(on_press)
    os.write(write_fd, b"x\nt\nhello\nT\n")
    assert pressed.wait(5.0), "two presses expected from the lines 't' and 'T'"
    button.close()
    os.close(write_fd)
    stream.close()
    assert len(count) == 2


def test_make_button_picks_the_kind():
    assert isinstance(make_button(ButtonSettings()), NoButton)
    assert isinstance(make_button(ButtonSettings(kind="gpiod")), GpiodButton)
    assert isinstance(make_button(ButtonSettings(kind="keyboard")), KeyboardButton)


def test_feedback_tones_for_teaching_events():
    import numpy as np

    from edge.feedback import RATE_HZ, TONE_S, Beeper

    played = []
    done = threading.Event()

    def play(samples, rate):
        played.append((samples, rate))
        if len(played) == 2:
            done.set()

    beeper = Beeper(play=play)
    beeper({"event": "teach_started"})
    beeper({"event": "resolved"})  # no tone for answers
    beeper({"event": "taught"})
    assert done.wait(5.0)
    beeper.close()
    assert [len(s) for s, _ in played] == [2 * int(TONE_S * RATE_HZ), 3 * int(TONE_S * RATE_HZ)]
    assert all(r == RATE_HZ and np.abs(s).max() <= 0.31 for s, r in played)

    def broken(samples, rate):
        raise OSError("no output device")

    quiet = Beeper(play=broken)
    quiet({"event": "teach_cancelled"})  # logged, never raised
    quiet.close()
