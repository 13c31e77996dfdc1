"""Where the log goes: a private copy of stderr, journald priorities, repeated device warnings held back.

Entry points call :func:`configure_logging` once; every module just uses
``logging.getLogger(__name__)``. Three choices:

* **A private descriptor.** sounddevice's ``_initialize()`` points file descriptor 2 at /dev/null
  while PortAudio starts (to silence ALSA's probing), and the microphone supervisor may
  re-initialise PortAudio while other threads log. So the log (and ``sys.stderr``, which carries
  tracebacks and error messages) writes to a duplicate of descriptor 2 taken at start-up: it
  still points at the terminal or the journal while fd 2 is redirected, and no line is lost.
* **journald.** Under systemd (``JOURNAL_STREAM`` names our stderr) lines carry no timestamp of
  our own (the journal stamps them) and start with a ``<N>`` syslog priority, so
  ``journalctl -p warning`` finds warnings and errors.
* **Repeats held back.** A device that stays away repeats the same warning on every retry; the
  same message (the same format string from the same logger) from a device adapter is shown at
  most ``burst`` times per ``window_s``, and the next one shown says how many were held back.
  OpenCV's native warnings (printed by C++ straight to stderr) are kept out unless verbose.
* **Native output rate-limited** (the daemon only, :func:`guard_native_output`): what C libraries
  print to descriptor 2 themselves (ALSA, PortAudio looping on a dead sound server) goes through
  a helper process that passes each kind of line a few times a minute and counts the rest
  (:mod:`edge.native_stderr`).
"""
from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

PRIORITIES = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3, logging.CRITICAL: 2}
"""syslog priority of each logging level (sd-daemon(3): a line starting ``<N>``)."""
DEVICE_LOGGERS = ("edge.hearing", "edge.camera", "edge.button", "edge.feedback")
PLAIN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JournalFormatter(logging.Formatter):
    """``<N>name: message`` for journald: no timestamp, the priority prefixed to every line (tracebacks included)."""

    def __init__(self) -> None:
        super().__init__("%(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).splitlines())


def priority(levelno: int) -> int:
    """syslog priority of a logging level (levels between the named ones take the next more severe)."""
    for level in sorted(PRIORITIES, reverse=True):
        if levelno >= level:
            return PRIORITIES[level]
    return 7


class RepeatLimiter(logging.Filter):
    """Passes at most ``burst`` warnings of one format string per logger in ``window_s``; then says how many it held back."""

    def __init__(self, prefixes: tuple[str, ...] = DEVICE_LOGGERS, window_s: float = 60.0, burst: int = 3,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.prefixes = prefixes
        self.window_s = window_s
        self.burst = burst
        self._clock = clock
        self._seen: dict[tuple[str, int, str], list[float]] = {}  # key -> [window start, passed, held back]

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or not record.name.startswith(self.prefixes):
            return True
        key = (record.name, record.levelno, str(record.msg))
        now = self._clock()
        state = self._seen.get(key)
        if state is None or now - state[0] >= self.window_s:
            held = int(state[2]) if state else 0
            self._seen[key] = [now, 1, 0]
            if held:
                record.msg = f"{record.getMessage()} ({held} more like this in the last {self.window_s:g} s not shown)"
                record.args = ()
            return True
        state[1] += 1
        if state[1] <= self.burst:
            return True
        state[2] += 1
        return False


def under_journald(stream_fd: int = 2, environ: Mapping[str, str] = os.environ) -> bool:
    """True when ``JOURNAL_STREAM`` (``device:inode``) names the file ``stream_fd`` is (systemd's StandardError=journal)."""
    value = environ.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(x) for x in value.split(":"))
        st = os.fstat(stream_fd)
    except (ValueError, OSError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


_private: dict[str, Any] = {}  # the private stream made by private_stderr(), and whether fd 2 was the journal then


def private_stderr() -> TextIO:
    """A text stream on a duplicate of descriptor 2, made ``sys.stderr``; ``sys.stderr`` as it is when it is not the process's own (tests capture it)."""
    if sys.stderr is not sys.__stderr__ or sys.stderr is None:
        return sys.stderr
    try:
        fd = os.dup(2)
    except OSError:
        return sys.stderr
    os.set_inheritable(fd, False)
    stream = os.fdopen(fd, "w", buffering=1, encoding=sys.stderr.encoding or "utf-8", errors="backslashreplace")
    sys.stderr = stream
    _private["stream"] = stream
    return stream


def guard_native_output() -> Any:
    """Route descriptor 2 (native libraries' own output) through the rate-limiting helper; the helper process, or None.

    Only after :func:`configure_logging` gave the log its private descriptor (a process whose
    stderr is captured, as under pytest, is left alone), and only once.
    """
    from edge.native_stderr import guard_native_stderr

    stream = _private.get("stream")
    if stream is None or sys.stderr is not stream or "helper" in _private:
        return _private.get("helper")
    _private["helper"] = guard_native_stderr(stream.fileno(), _private.get("journald", False))
    if _private["helper"] is None:
        logging.getLogger(__name__).warning("native libraries' output to stderr is not rate-limited (its helper did not start)")
    return _private["helper"]


def quiet_opencv(verbose: bool, environ: Any = os.environ) -> None:
    """Keep OpenCV's native warnings (``[ WARN:0@...] global cap_v4l.cpp ...``) off stderr unless ``verbose``."""
    if verbose:
        return
    environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")  # read when cv2 is first imported
    cv2 = sys.modules.get("cv2")
    if cv2 is not None:
        try:
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        except AttributeError:
            pass  # an OpenCV without the logging API: the environment variable is all there is


def configure_logging(level: int = logging.INFO, environ: Mapping[str, str] = os.environ) -> logging.Handler:
    """Set up the root logger of an entry point at ``level`` (like ``logging.basicConfig``); returns the handler it made."""
    journal = under_journald(2, environ)
    _private.setdefault("journald", journal)
    handler = logging.StreamHandler(private_stderr())
    handler.setFormatter(JournalFormatter() if journal else logging.Formatter(PLAIN_FORMAT))
    handler.addFilter(RepeatLimiter())
    root = logging.getLogger()
    if not root.handlers:  # like basicConfig: a test's capturing handler stays the only one, its level too
        root.setLevel(level)
        root.addHandler(handler)
    quiet_opencv(level <= logging.DEBUG)
    return handler
