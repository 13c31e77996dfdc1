"""edge.fanout: the bounded per-listener queues behind the control socket's and the page's event streams."""
from __future__ import annotations

import logging
import socket
import threading
import time

import pytest

from edge.fanout import STOP, Fanout


@pytest.fixture
def pair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_events_reach_every_listener_in_order(pair) -> None:
    fan = Fanout(4, "behind %d")
    one, two = fan.open(pair[0]), fan.open(pair[0])
    for n in range(3):
        fan.publish(b"%d" % n)
    assert [one.next(0.1) for _ in range(3)] == [b"0", b"1", b"2"]
    assert [two.next(0.1) for _ in range(3)] == [b"0", b"1", b"2"]
    assert one.next(0.01) is None  # nothing more: a timeout, not STOP
    assert len(fan) == 2


def test_a_listener_that_falls_behind_is_dropped_without_the_publisher_waiting(pair, caplog) -> None:
    fan = Fanout(2, "dropping a reader %d events behind")
    slow, fast = fan.open(pair[0]), fan.open(pair[1])
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="edge.fanout"):
        for n in range(50):
            fan.publish(b"x")
            fast.next(0.1)  # this one keeps up
    assert time.monotonic() - started < 5.0
    assert slow.dropped and not fast.dropped
    assert len(fan) == 1
    assert "dropping a reader 2 events behind" in caplog.text
    # the dropped listener's connection is shut down, so a thread blocked writing to it wakes up
    pair[1].settimeout(2.0)
    assert pair[1].recv(16) == b""  # the other end sees the connection end (a timeout here fails the test)
    # and it reads STOP from then on, even with events still queued
    assert slow.next(0.1) is STOP


def test_max_listeners_and_close(pair) -> None:
    fan = Fanout(4, "behind %d", max_listeners=1)
    first = fan.open(pair[0])
    assert first is not None and fan.open(pair[1]) is None
    fan.drop(first)
    assert first.next(0.1) is STOP
    second = fan.open(pair[1])
    assert second is not None
    waiting = []
    reader = threading.Thread(target=lambda: waiting.append(second.next(5.0)))
    reader.start()
    fan.close()  # wakes a listener blocked waiting for its next event
    reader.join(2.0)
    assert waiting == [STOP]
    assert fan.open(pair[0]) is None and len(fan) == 0
