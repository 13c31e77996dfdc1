"""Events to many slow readers without ever waiting for one: a bounded queue per listener.

The control socket's subscribers and the web page's event streams are both fed this way. The
publisher (the daemon's controller) calls :meth:`Fanout.publish`, which only ever does
``put_nowait``; a listener whose queue is full is dropped, its connection shut down so that the
thread writing to it wakes up, and a log line says so. A stuck reader can therefore never stall
the controller, and each listener costs at most ``queue_events`` encoded events of memory.
"""
from __future__ import annotations

import logging
import queue
import socket
import threading

log = logging.getLogger(__name__)

STOP = object()  # queued to a listener to end its stream


class Listener:
    """One reader: the connection its thread writes to and the events waiting for it."""

    def __init__(self, conn: socket.socket, queue_events: int) -> None:
        self.conn = conn
        self.events: queue.Queue = queue.Queue(queue_events)
        self.dropped = False

    def next(self, timeout: float) -> object:
        """The next encoded event, :data:`STOP` once dropped, or None after ``timeout`` seconds without one."""
        if self.dropped:
            return STOP
        try:
            item = self.events.get(timeout=timeout)
        except queue.Empty:
            return None
        return STOP if self.dropped else item


class Fanout:
    """The listeners of one server. ``behind`` is the log line (with one ``%d`` for the queue size)
    written when a listener is dropped for being ``queue_events`` events behind."""

    def __init__(self, queue_events: int, behind: str, max_listeners: int | None = None) -> None:
        self.queue_events = queue_events
        self.max_listeners = max_listeners
        self._behind = behind
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._closed = False

    def __len__(self) -> int:
        with self._lock:
            return len(self._listeners)

    def open(self, conn: socket.socket) -> Listener | None:
        """A new listener writing to ``conn``, or None when closed or ``max_listeners`` are open."""
        with self._lock:
            if self._closed or (self.max_listeners is not None and len(self._listeners) >= self.max_listeners):
                return None
            listener = Listener(conn, self.queue_events)
            self._listeners.append(listener)
            return listener

    def publish(self, data: bytes) -> None:
        """Queue ``data`` to every listener without waiting; a listener whose queue is full is dropped."""
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener.events.put_nowait(data)
            except queue.Full:
                log.warning(self._behind, self.queue_events)
                self.drop(listener)

    def drop(self, listener: Listener) -> None:
        """End ``listener``'s stream: shut its connection down (waking a blocked write) and queue STOP."""
        with self._lock:
            if listener in self._listeners:
                self._listeners.remove(listener)
        listener.dropped = True
        shutdown(listener.conn)
        try:
            listener.events.put_nowait(STOP)
        except queue.Full:
            pass  # its thread sees listener.dropped after its next item

    def close(self) -> None:
        """Drop every listener and refuse new ones."""
        with self._lock:
            self._closed = True
            listeners, self._listeners = list(self._listeners), []
        for listener in listeners:
            self.drop(listener)


def shutdown(conn: socket.socket) -> None:
    """Shut ``conn`` down both ways, ignoring a connection already closed."""
    try:
        conn.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed by the peer or by us
