"""What native libraries write to file descriptor 2, passed on to the log with a rate limit.

PortAudio 19.6 (Debian 12, Ubuntu 22.04 / JetPack 6) can loop for ever in its ALSA stream thread
once the sound server dies, printing ``Expression 'self->capture.ready || self->playback.ready'
failed ...`` straight to descriptor 2 (186 MB/s measured, 22 GB in 6 minutes seen; PortAudio issue
#1037); ALSA prints some 27 "Unable to connect" lines per sound-server restart. Python's logging
never sees these. Under systemd descriptor 2 is the journal.

:func:`guard_native_stderr` (the daemon calls it once, after :func:`edge.logs.configure_logging`
moved the log to a private copy of descriptor 2) points descriptor 2 at a pipe read by a small
helper **process** running this file (standard library only, ``python -I -S``). It passes each
distinct line (digits do not count: ``line: 3958`` and ``line: 1736`` are alike) at most ``burst``
times per ``window_s`` and at most ``max_lines`` lines per window in all, says at the end of each
window how many lines (and bytes) it held back, and forwards what it passes at once (a line without
its newline after 0.2 s). A process, not a thread: when the daemon crashes, what a native library
printed just before (``terminate called after ...``, a failed assertion) is still in the pipe and
the helper passes it on after the daemon is gone, instead of the pipe dying with the daemon. The
helper ignores SIGTERM and SIGINT (systemd and a terminal's Ctrl-C signal the whole group) and ends
when every writer has closed the pipe. While a flood lasts it reads at most about 1 MB/s, so the
looping thread spends its time blocked in ``write()`` instead of burning a core (measured: the
helper 2.3% of a core, another thread's line written in 0.03 ms at the median; ``docs/daemon.md``).
"""
from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable

BURST = 3  # the same line at most this many times per window
WINDOW_S = 60.0
MAX_LINES = 60  # lines passed per window in all
MAX_LINE_CHARS = 500  # a longer line is cut (with its length said)
PARTIAL_FLUSH_S = 0.2  # a line without its newline is passed on after this long
FLOOD_HELD = 1000  # lines held back in a window past which the helper slows its reading
FLOOD_READ_PAUSE_S = 0.05  # pause after each read during a flood (64 KiB / 0.05 s: ~1.3 MB/s)
DIGITS = re.compile(r"\d+")


class LineLimiter:
    """Decides which native lines pass: ``burst`` of each kind and ``max_lines`` in all per fixed window of ``window_s``."""

    def __init__(self, burst: int = BURST, window_s: float = WINDOW_S, max_lines: int = MAX_LINES,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.burst, self.window_s, self.max_lines = burst, window_s, max_lines
        self._clock = clock
        self._window_start: float | None = None
        self._seen: dict[str, list] = {}  # kind -> [passed, held, held bytes, an example]
        self._passed = 0
        self.held = 0  # in the current window
        self.held_total = 0  # since the start

    def offer(self, line: str) -> list[str]:
        """The lines to write now for one native line: a summary of the window just ended, and the line unless it is held."""
        out = self.due()
        if self._window_start is None:
            self._window_start = self._clock()
        kind = DIGITS.sub("#", line)
        state = self._seen.setdefault(kind, [0, 0, 0, line])
        if state[0] < self.burst and self._passed < self.max_lines:
            state[0] += 1
            self._passed += 1
            out.append(line)
        else:
            state[1] += 1
            state[2] += len(line) + 1
            self.held += 1
            self.held_total += 1
        return out

    def due(self) -> list[str]:
        """When the window has ended: one line per kind of line held back in it (the window restarts with the next line)."""
        if self._window_start is None or self._clock() - self._window_start < self.window_s:
            return []
        return self.flush()

    def flush(self) -> list[str]:
        """Summaries of what was held back in the current window, which ends now."""
        out = []
        elapsed_s = self._clock() - self._window_start if self._window_start is not None else 0.0
        held = sorted(((s[1], s[2], s[3]) for s in self._seen.values() if s[1]), reverse=True)
        for n, size, example in held:
            out.append(f"{n} more native line(s) like this held back in the last {elapsed_s:.0f} s ({size} bytes): {example}")
        self._seen.clear()
        self._passed = self.held = 0
        self._window_start = None
        return out


def shorten(line: str, limit: int = MAX_LINE_CHARS) -> str:
    """``line`` cut to ``limit`` characters, saying how long it was."""
    return line if len(line) <= limit else f"{line[:limit]}... ({len(line)} characters)"


def drain(read_fd: int, write_fd: int, journald: bool, limiter: LineLimiter | None = None) -> None:
    """Pass the lines arriving on ``read_fd`` to ``write_fd`` through ``limiter`` until every writer has closed the pipe."""
    limiter = limiter or LineLimiter()

    def emit(lines: list[str]) -> None:
        if not lines:
            return
        if journald:
            text = "".join(f"<4>native: {line}\n" for line in lines)
        else:
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            text = "".join(f"{stamp} WARNING native: {line}\n" for line in lines)
        data = text.encode("utf-8", "backslashreplace")
        while data:
            try:
                data = data[os.write(write_fd, data):]
            except InterruptedError:
                continue
            except OSError:
                return  # the log is gone (the terminal closed): keep reading so writers never block

    pending = b""
    pending_since = 0.0
    while True:
        timeout = PARTIAL_FLUSH_S if pending else 1.0
        ready, _, _ = select.select([read_fd], [], [], timeout)
        if not ready:
            if pending and time.monotonic() - pending_since >= PARTIAL_FLUSH_S:
                emit(limiter.offer(shorten(pending.decode("utf-8", "replace"))))
                pending = b""
            emit(limiter.due())
            continue
        try:
            chunk = os.read(read_fd, 1 << 16)
        except InterruptedError:
            continue
        if not chunk:
            break
        if not pending:
            pending_since = time.monotonic()
        *lines, pending = (pending + chunk).split(b"\n")
        if len(pending) > 4 * MAX_LINE_CHARS:  # no newline coming: pass it on as a line of its own
            lines.append(pending)
            pending = b""
        out: list[str] = []
        for raw in lines:
            out += limiter.offer(shorten(raw.decode("utf-8", "replace").rstrip("\r")))
        emit(out)
        if limiter.held > FLOOD_HELD:
            time.sleep(FLOOD_READ_PAUSE_S)
    if pending:
        emit(limiter.offer(shorten(pending.decode("utf-8", "replace"))))
    emit(limiter.flush())


def guard_native_stderr(log_fd: int, journald: bool) -> subprocess.Popen | None:
    """Point descriptor 2 at a pipe whose helper process passes native lines on to ``log_fd`` (rate-limited); the helper, or None when it cannot start.

    ``log_fd`` is the private copy of descriptor 2 the log writes to; the helper writes there too.
    Without the helper (no pipe, no interpreter) descriptor 2 is left as it was.
    """
    try:
        read_fd, write_fd = os.pipe()
    except OSError:
        return None
    try:
        helper = subprocess.Popen(
            [sys.executable, "-I", "-S", os.path.abspath(__file__), "--journald" if journald else "--plain"],
            stdin=read_fd, stdout=log_fd, stderr=log_fd, close_fds=True,
        )
    except OSError:
        os.close(read_fd)
        os.close(write_fd)
        return None
    os.close(read_fd)
    os.dup2(write_fd, 2)  # every thread's and every child's descriptor 2 from now on
    os.close(write_fd)
    return helper


def main(argv: list[str]) -> int:
    """The helper: standard input is the pipe, standard output the log."""
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)  # keep passing lines on until the daemon's last one, however it ends
    drain(0, 1, journald="--journald" in argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
