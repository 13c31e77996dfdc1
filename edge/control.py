"""The daemon's control socket: a Unix-domain stream socket speaking JSON lines.

A request is one line holding a JSON object ``{"cmd": ..., ...args, "id": optional}``; the reply
is one line ``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}`` (with the request's ``id``
echoed when it had one). Arguments per command (checked here, so the handler gets them well-formed):

==========  ===========================================  =========================================
cmd         arguments                                    meaning
==========  ===========================================  =========================================
teach       ``label`` (text, optional)                    start a teach turn, as the button does
cancel      none                                         cancel a teach turn in progress
status      none                                         state, pair count, devices
list        none                                         the taught pairs
forget      ``pair_id`` (integer)                        delete a pair
label       ``pair_id`` (integer), ``label`` (text|null)  name a pair, or clear its name
ask         ``wav`` (absolute path, readable by daemon)  find the object named in a recorded request
confirm     none                                         the last answer was right (may learn its crop)
wrong       none                                         the last answer was wrong (logged, nothing removed)
subscribe   none                                         turn the connection into an event stream
==========  ===========================================  =========================================

After ``subscribe`` is acknowledged the server writes every published event as one line
``{"event": name, ...}`` until either side closes.

Design: one thread per connection (plus one accepting). The handler is the daemon's controller
entry point and may block (``ask`` runs the encoders); with a thread per connection a slow
request holds up only its own client, and the code stays plain blocking I/O. Two budgets bound
the threads: ``max_clients`` connections that send commands and ``max_subscribers`` event streams
(a connection moves to the second when it subscribes, so subscribers can never take the command
slots). When every command slot is taken, newcomers wait in the listen backlog (they are not
refused); if a slot is held by a connection that is only waiting for its next request, the one
idle longest (at least ``EVICT_IDLE_S``) is closed to make room, and any connection idle for
``idle_timeout_s`` is closed anyway. So idle or half-sent connections can never lock the CLI out.
``publish`` never blocks: each subscriber has a bounded queue filled with ``put_nowait``; a
subscriber whose queue is full is dropped (its connection closed) with a log line, so a stuck
reader can never stall the controller.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import reprlib
import select
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.fanout import STOP, Fanout, shutdown as _shutdown
from edge.settings import SettingsError, setting

log = logging.getLogger(__name__)

Handler = Callable[[dict], dict]

# cmd -> {argument: (accepted types, required)}
COMMANDS: dict[str, dict[str, tuple[tuple[type, ...], bool]]] = {
    "teach": {"label": ((str, type(None)), False)},
    "cancel": {},
    "status": {},
    "list": {},
    "forget": {"pair_id": ((int,), True)},
    "label": {"pair_id": ((int,), True), "label": ((str, type(None)), True)},
    "ask": {"wav": ((str,), True)},
    "confirm": {},
    "wrong": {},
    "subscribe": {},
}
LISTEN_BACKLOG = 256  # connections waiting for a command slot (the kernel caps it at net.core.somaxconn)
EVICT_IDLE_S = 1.0  # a connection idle this long gives its slot to one waiting in the backlog
_SHORT = reprlib.Repr()  # bounded repr of request values in error replies (depth, length)
_SHORT.maxstring = _SHORT.maxother = 60


@dataclass(frozen=True)
class ControlSettings:
    """The control socket the CLI and other programs talk to."""

    socket_path: str = setting("/run/showsay/control.sock", "path of the Unix-domain control socket (its directory is created); relative paths are taken from the config file's directory")
    socket_mode: str = setting("0660", "permission bits of the socket file, octal (0660: owner and group may control the robot)")
    max_message_bytes: int = setting(65536, "longest request line accepted, bytes; longer lines get an error reply", min=64, max=16_777_216)
    max_clients: int = setting(16, "command connections served at once (each has a thread); more wait their turn, and the longest idle one is closed to make room", min=1, max=1024)
    max_subscribers: int = setting(8, "event streams (subscribe) at once, counted apart from max_clients; more are refused with an error reply", min=1, max=1024)
    idle_timeout_s: float = setting(30.0, "a connection that completes no request for this long is closed, s (subscribers excepted)", min=0.5, max=86400.0)
    subscriber_queue_events: int = setting(256, "events buffered per subscriber; a subscriber this far behind is dropped", min=1, max=100000)
    send_timeout_s: float = setting(2.0, "longest a write to one client may block before that client is dropped, seconds", min=0.01, max=60.0)

    @property
    def mode(self) -> int:
        """socket_mode as an integer."""
        return int(self.socket_mode, 8)

    def validate(self) -> None:
        """socket_mode must be octal permission bits."""
        try:
            mode = int(self.socket_mode, 8)
        except ValueError:
            raise SettingsError(f"socket_mode: expected octal permission bits like '0660', got {self.socket_mode!r}") from None
        if not 0 <= mode <= 0o777:
            raise SettingsError(f"socket_mode: must be between 0000 and 0777, got {self.socket_mode!r}")


class ControlError(Exception):
    """The control socket cannot be served or reached."""


class DaemonNotRunning(ControlError):
    """No daemon answers on the socket."""


class ControlTimeout(ControlError, TimeoutError):
    """The daemon did not answer in time."""


def check_request(message: Any) -> str | None:
    """What is wrong with a decoded request, or None if it is well-formed."""
    if not isinstance(message, dict):
        return f"expected a JSON object, got {type(message).__name__}"
    cmd = message.get("cmd")
    if cmd not in COMMANDS:
        return f"unknown cmd {cmd!r} (known: {', '.join(COMMANDS)})"
    for arg, (types, required) in COMMANDS[cmd].items():
        if arg not in message:
            if required:
                return f"{cmd}: missing argument {arg!r}"
            continue
        value = message[arg]
        if isinstance(value, bool) or not isinstance(value, types):
            names = "/".join("null" if t is type(None) else {"str": "text", "int": "integer"}.get(t.__name__, t.__name__) for t in types)
            return f"{cmd}: argument {arg!r} must be {names}, got {_SHORT.repr(value)}"
    if cmd == "ask" and not os.path.isabs(message["wav"]):
        return f"ask: 'wav' must be an absolute path (the daemon has its own working directory), got {_SHORT.repr(message['wav'])}"
    return None


def _id_problem(value: Any) -> str | None:
    """What is wrong with a request's ``id`` (echoed in the reply), or None: a string, an integer, a finite number or null."""
    if value is None or isinstance(value, (str, int, float)) and not isinstance(value, bool):
        return None
    return f"'id' must be a string, a number or null, got {type(value).__name__}"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def _finite_float(text: str) -> float:
    value = float(text)
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{text[:40]} is not a finite number")
    return value


def decode_request(line: bytes) -> tuple[Any, str | None]:
    """(the decoded JSON value, None) or (None, why it is not a request): NaN, infinities and nesting past the parser's depth are refused."""
    try:
        return json.loads(line.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite_float), None
    except UnicodeDecodeError:
        return None, "request is not UTF-8 text"
    except RecursionError:
        return None, "request is not valid JSON (nested too deeply)"
    except ValueError as exc:
        return None, f"request is not valid JSON ({str(exc)[:200]})"


def _plain(value: Any) -> Any:
    """numpy scalars and arrays (as the controller's numbers often are) to JSON types."""
    if hasattr(value, "tolist"):  # np.generic, np.ndarray
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _encode(obj: dict) -> bytes:
    """One JSON line; NaN and infinity are refused (they are not JSON)."""
    return (json.dumps(obj, separators=(",", ":"), allow_nan=False, default=_plain) + "\n").encode("utf-8")


@dataclass
class _Connection:
    """One client connection: its thread, what it is doing, and since when it has been idle."""

    sock: socket.socket
    thread: threading.Thread | None = None
    busy: bool = False  # a request is being handled (never closed to make room then)
    subscriber: bool = False  # counted against max_subscribers, not max_clients
    idle_since_s: float = 0.0  # when the last request was answered (or the connection accepted), monotonic s
    evicted: bool = False  # closed by the server to make room


class ControlServer:
    """Serves requests to ``handler`` and streams published events to subscribers.

    ``handler`` gets well-formed requests (see :data:`COMMANDS`; ``subscribe`` is handled here)
    and returns the reply dict (``ok`` defaults to true). It is called on the connection's
    thread, so two clients can call it at once: a daemon hands the request to its controller
    thread and waits for the answer. An exception in it becomes an error reply and a log line.
    """

    def __init__(self, settings: ControlSettings, handler: Handler) -> None:
        self.settings = settings
        self.path = Path(settings.socket_path)
        self._handler = handler
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._slot_freed = threading.Condition(self._lock)
        self._conns: dict[socket.socket, _Connection] = {}
        self._subscribers = Fanout(settings.subscriber_queue_events, "control: dropping a subscriber that is %d events behind")
        self._closing = threading.Event()

    # -- lifecycle

    def start(self) -> None:
        """Bind the socket (replacing a stale one, refusing a live one) and start serving."""
        if len(os.fsencode(self.path)) > 107:
            raise ControlError(f"{self.path}: socket path too long ({len(os.fsencode(self.path))} bytes, at most 107)")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ControlError(f"{self.path.parent}: cannot create the socket directory ({exc})") from None
        self._remove_stale()
        # Bind under a temporary name, set the mode, then rename into place: the socket is never
        # reachable with looser permissions than configured.
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        if len(os.fsencode(tmp)) > 107:
            tmp = self.path
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            if tmp != self.path:
                tmp.unlink(missing_ok=True)
            listener.bind(str(tmp))
            os.chmod(tmp, self.settings.mode)
            if tmp != self.path:
                os.replace(tmp, self.path)
            listener.listen(LISTEN_BACKLOG)
        except OSError as exc:
            listener.close()
            if tmp != self.path:
                tmp.unlink(missing_ok=True)
            raise ControlError(f"{self.path}: cannot listen on the control socket ({exc})") from None
        self._listener = listener
        self._accept_thread = threading.Thread(target=self._accept_loop, name="control-accept", daemon=True)
        self._accept_thread.start()
        log.info("control socket listening on %s (mode %s)", self.path, self.settings.socket_mode)

    def _remove_stale(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise ControlError(f"{self.path}: cannot inspect the socket path ({exc})") from None
        if not stat.S_ISSOCK(st.st_mode):
            raise ControlError(f"{self.path}: exists and is not a socket; refusing to replace it")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(1.0)
        try:
            probe.connect(str(self.path))
        except (ConnectionRefusedError, FileNotFoundError):
            log.warning("%s: removing a stale control socket left by a daemon that did not exit cleanly", self.path)
            self.path.unlink(missing_ok=True)
            return
        except OSError as exc:
            raise ControlError(f"{self.path}: cannot tell whether another daemon is using this socket ({exc})") from None
        finally:
            probe.close()
        raise ControlError(f"{self.path}: another showsay daemon is answering on this socket; stop it first")

    def close(self) -> None:
        """Stop accepting, end every connection and remove the socket file."""
        if self._closing.is_set():
            return
        self._closing.set()
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # not connected: Linux still wakes accept() on close below
            self._listener.close()
            try:
                if self.path.exists() and stat.S_ISSOCK(os.lstat(self.path).st_mode):
                    self.path.unlink()
            except OSError as exc:
                log.warning("%s: cannot remove the control socket (%s)", self.path, exc)
        with self._lock:
            conns = list(self._conns.values())
            self._slot_freed.notify_all()
        self._subscribers.close()
        for c in conns:
            _shutdown(c.sock)
        deadline = time.monotonic() + 2.0  # a handler still busy with a request is left to finish alone
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=max(0.0, deadline - time.monotonic()))
        for c in conns:
            if c.thread is not None:
                c.thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> "ControlServer":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- events

    def publish(self, event: dict) -> None:
        """Queue ``event`` to every subscriber without waiting; a subscriber whose queue is full is dropped."""
        try:
            line = _encode(event)
        except (TypeError, ValueError, RecursionError) as exc:
            log.error("event %r cannot be sent as JSON (%s); not published", event.get("event"), exc)
            return
        self._subscribers.publish(line)

    @property
    def subscriber_count(self) -> int:
        """Subscribers currently streaming."""
        return len(self._subscribers)

    @property
    def client_count(self) -> int:
        """Command connections currently open (subscribers not counted)."""
        with self._lock:
            return sum(1 for c in self._conns.values() if not c.subscriber)

    # -- connections

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._closing.is_set():
            try:
                waiting, _, _ = select.select([self._listener], [], [], 0.25)
            except (OSError, ValueError):  # the listener was closed under us
                return
            if not waiting:
                continue
            if not self._free_slot():
                continue  # the newcomer waits in the backlog; try again shortly
            try:
                sock, _ = self._listener.accept()
            except OSError as exc:
                if self._closing.is_set():
                    return
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    log.error("control: cannot accept a connection (%s); retrying", exc)
                else:
                    log.error("control: accept failed (%s); retrying", exc)
                self._closing.wait(0.1)
                continue
            sock.settimeout(self.settings.send_timeout_s)
            conn = _Connection(sock, idle_since_s=time.monotonic())
            conn.thread = threading.Thread(target=self._serve, args=(conn,), name="control-conn", daemon=True)
            with self._lock:
                self._conns[sock] = conn
            conn.thread.start()

    def _free_slot(self) -> bool:
        """True when a command slot is free; else closes the connection idle longest (if any has idled EVICT_IDLE_S) and waits briefly."""
        with self._lock:
            commands = [c for c in self._conns.values() if not c.subscriber]
            if len(commands) < self.settings.max_clients:
                return True
            now = time.monotonic()
            idle = [c for c in commands if not c.busy and not c.evicted and now - c.idle_since_s >= EVICT_IDLE_S]
            victim = min(idle, key=lambda c: c.idle_since_s) if idle else None
            if victim is not None:
                victim.evicted = True
            else:
                self._slot_freed.wait(0.05)
                return False
        log.info("control: closing a connection idle for %.1f s to serve a waiting client (max_clients=%d)",
                 now - victim.idle_since_s, self.settings.max_clients)
        self._send(victim.sock, {"ok": False, "error": f"closed: idle while another client waited (max_clients={self.settings.max_clients})"})
        _shutdown(victim.sock)
        with self._lock:
            self._slot_freed.wait_for(lambda: victim.sock not in self._conns or self._closing.is_set(), timeout=0.5)
        return False  # check again: the slot is free once the victim's thread has gone

    def _send(self, conn: socket.socket, obj: dict) -> bool:
        try:
            line = _encode(obj)
        except (TypeError, ValueError, RecursionError) as exc:  # never let a reply's content end the connection
            log.error("control: reply is not JSON (%s)", exc)
            line = _encode({"ok": False, "error": f"internal error: reply not JSON ({type(exc).__name__})"})
        try:
            conn.sendall(line)
            return True
        except OSError as exc:  # includes socket.timeout: a client not reading its replies
            log.info("control: client gone while sending (%s)", exc)
            return False

    def _serve(self, conn: _Connection) -> None:
        try:
            self._serve_lines(conn)
        except Exception:  # never let one connection's failure reach the accept loop or other clients
            log.exception("control: connection failed")
        finally:
            with self._lock:
                self._conns.pop(conn.sock, None)
                self._slot_freed.notify_all()
            conn.sock.close()

    def _serve_lines(self, conn: _Connection) -> None:
        limit = self.settings.max_message_bytes
        sock = conn.sock
        buf = b""
        discarding = False  # inside an oversized line: skip to its end
        while not self._closing.is_set():
            try:
                chunk = self._recv(conn)
            except OSError:
                return
            if chunk is None:  # idle too long
                if not conn.evicted:
                    log.info("control: closing a connection that sent no request for %g s", self.settings.idle_timeout_s)
                    self._send(sock, {"ok": False, "error": f"closed: no request within {self.settings.idle_timeout_s:g} s (control.idle_timeout_s)"})
                return
            if not chunk:
                if buf and not discarding and not conn.evicted:  # half a line, then the client closed
                    self._send(sock, {"ok": False, "error": "incomplete request: the connection closed before the end of the line"})
                return
            buf += chunk
            while True:
                nl = buf.find(b"\n")
                if nl < 0:
                    if len(buf) > limit:
                        if not discarding:
                            if not self._send(sock, {"ok": False, "error": f"request longer than max_message_bytes={limit}"}):
                                return
                            discarding = True
                        buf = b""
                    break
                line, buf = buf[:nl], buf[nl + 1:]
                if discarding:
                    discarding = False  # that newline ended the oversized line
                    continue
                if len(line) > limit:
                    if not self._send(sock, {"ok": False, "error": f"request longer than max_message_bytes={limit}"}):
                        return
                    continue
                if not line.strip():
                    continue
                with self._lock:
                    if conn.evicted:
                        return
                    conn.busy = True
                try:
                    reply, subscribe = self._reply(line)
                    if subscribe and not self._become_subscriber(conn):
                        reply, subscribe = {"ok": False, "error": f"too many subscribers (max_subscribers={self.settings.max_subscribers})",
                                            **({"id": reply["id"]} if "id" in reply else {})}, False
                    sent = self._send(sock, reply)
                finally:
                    with self._lock:
                        conn.busy = False
                        conn.idle_since_s = time.monotonic()
                if not sent:
                    return
                if subscribe:
                    self._stream(sock)
                    return

    def _recv(self, conn: _Connection) -> bytes | None:
        """Next bytes from the client (b"" when it closed), or None once it has sent no whole request for ``idle_timeout_s``."""
        while True:
            if self._closing.is_set():
                return b""
            remaining = conn.idle_since_s + self.settings.idle_timeout_s - time.monotonic()
            if remaining <= 0:
                return None
            readable, _, _ = select.select([conn.sock], [], [], min(0.25, remaining))
            if readable:
                return conn.sock.recv(65536)

    def _become_subscriber(self, conn: _Connection) -> bool:
        """Move ``conn`` from the command budget to the subscriber budget; False when that is full."""
        with self._lock:
            if sum(1 for c in self._conns.values() if c.subscriber) >= self.settings.max_subscribers:
                return False
            conn.subscriber = True
            self._slot_freed.notify_all()
            return True

    def _reply(self, line: bytes) -> tuple[dict, bool]:
        """(reply, whether the connection turns into an event stream)."""
        message, problem = decode_request(line)
        if problem is not None:
            return {"ok": False, "error": problem}, False
        echo = {}
        if isinstance(message, dict) and "id" in message:
            id_problem = _id_problem(message["id"])
            if id_problem is not None:
                return {"ok": False, "error": id_problem}, False
            echo = {"id": message["id"]}
        problem = check_request(message)
        if problem is not None:
            return {"ok": False, "error": problem, **echo}, False
        if message["cmd"] == "subscribe":
            return {"ok": True, "subscribed": True, **echo}, True
        try:
            result = self._handler(message)
        except Exception as exc:
            log.exception("control: handler failed on %s", message.get("cmd"))
            return {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}", **echo}, False
        if not isinstance(result, dict):
            log.error("control: handler returned %r for %s, not a dict", type(result).__name__, message["cmd"])
            return {"ok": False, "error": "internal error: the handler gave no reply", **echo}, False
        reply = {"ok": True, **result, **echo}
        try:
            _encode(reply)
        except (TypeError, ValueError, RecursionError) as exc:
            log.error("control: reply to %s is not JSON (%s)", message["cmd"], exc)
            return {"ok": False, "error": f"internal error: reply not JSON ({exc})", **echo}, False
        return reply, False

    def _stream(self, conn: socket.socket) -> None:
        sub = self._subscribers.open(conn)
        if sub is None:  # closing
            return
        try:
            while not self._closing.is_set():
                item = sub.next(timeout=0.25)
                if item is None:
                    if _peer_closed(conn):
                        return
                    continue
                if item is STOP:
                    return
                try:
                    conn.sendall(item)
                except OSError as exc:
                    if not sub.dropped:  # else publish() already said why
                        log.warning("control: dropping a subscriber that does not read its events (%s)", exc)
                    return
        finally:
            self._subscribers.drop(sub)


def _peer_closed(conn: socket.socket) -> bool:
    """True if the client hung up (anything it sends after subscribing is read and ignored)."""
    try:
        readable, _, _ = select.select([conn], [], [], 0)
        return bool(readable) and conn.recv(4096) == b""
    except OSError:
        return True


# ---------------------------------------------------------------------------- client


class ControlClient:
    """Talks to a running daemon over its control socket."""

    def __init__(self, socket_path: str | os.PathLike) -> None:
        self.path = Path(socket_path)

    def _connect(self, timeout_s: float | None) -> socket.socket:
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            sock = self._try_connect(timeout_s)
            if sock is not None:
                return sock
            # the daemon's listen backlog is full (many clients at once): wait for room, as a blocking connect would
            if deadline is not None and time.monotonic() >= deadline:
                raise ControlTimeout(f"{self.path}: the daemon did not accept the connection within {timeout_s} s (too many clients waiting)")
            time.sleep(0.005)

    def _try_connect(self, timeout_s: float | None) -> socket.socket | None:
        """A connected socket, or None when the listen backlog is full (EAGAIN: try again)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout_s)
        try:
            sock.connect(str(self.path))
        except BlockingIOError:
            sock.close()
            return None
        except (FileNotFoundError, ConnectionRefusedError):
            sock.close()
            raise DaemonNotRunning(f"no showsay daemon is answering on {self.path} (is it running? try: systemctl status showsay)") from None
        except PermissionError:
            sock.close()
            raise ControlError(f"{self.path}: permission denied (the socket is for its owner and group; add yourself to that group)") from None
        except socket.timeout:
            sock.close()
            raise ControlTimeout(f"{self.path}: the daemon did not accept the connection within {timeout_s} s") from None
        except OSError as exc:
            sock.close()
            raise ControlError(f"{self.path}: cannot connect ({exc})") from None
        return sock

    def request(self, message: dict, timeout_s: float = 10.0) -> dict:
        """Send one request and return the reply (``ok`` true or false)."""
        sock = self._connect(timeout_s)
        try:
            sock.sendall(_encode(message))
            reader = _LineReader(sock, self.path)
            reply = reader.next(timeout_s)
        except OSError as exc:
            if isinstance(exc, socket.timeout):
                raise ControlTimeout(f"{self.path}: no reply to {message.get('cmd')!r} within {timeout_s} s") from None
            raise ControlError(f"{self.path}: connection lost ({exc})") from None
        finally:
            sock.close()
        if reply is None:
            raise ControlError(f"{self.path}: the daemon closed the connection without replying")
        return reply

    def events(self, timeout_s: float | None = None) -> Iterator[dict]:
        """Subscribe and yield events until the daemon closes the stream.

        ``timeout_s`` bounds the wait for each event (None: wait forever); when it passes,
        :class:`ControlTimeout` is raised.
        """
        sock = self._connect(10.0 if timeout_s is None else timeout_s)
        try:
            sock.sendall(_encode({"cmd": "subscribe"}))
            reader = _LineReader(sock, self.path)
            ack = reader.next(10.0 if timeout_s is None else timeout_s)
            if ack is None or not ack.get("ok"):
                raise ControlError(f"{self.path}: subscription refused ({ack})")
            while True:
                event = reader.next(timeout_s)
                if event is None:
                    return
                yield event
        except socket.timeout:
            raise ControlTimeout(f"{self.path}: no event within {timeout_s} s") from None
        finally:
            sock.close()


class _LineReader:
    def __init__(self, sock: socket.socket, path: Path) -> None:
        self.sock, self.path, self.buf = sock, path, b""

    def next(self, timeout_s: float | None) -> dict | None:
        """Next JSON line, or None when the daemon closes the connection."""
        self.sock.settimeout(timeout_s)
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        try:
            obj = json.loads(line)
        except ValueError as exc:
            raise ControlError(f"{self.path}: the daemon sent something that is not JSON ({exc})") from None
        if not isinstance(obj, dict):
            raise ControlError(f"{self.path}: the daemon sent {obj!r}, not a JSON object")
        return obj
