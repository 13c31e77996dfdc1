"""Issue 19 follow-up: native output to descriptor 2 cannot flood the log, and a stuck PortAudio cannot keep the daemon up.

PortAudio 19.6 loops for ever in its ALSA stream thread once the sound server dies (issue #1037),
printing one line per turn to descriptor 2, and closing the stream waits for that thread for ever.
``tests/fake_sounddevice`` plays that part (a thread looping on ``os.write(2, ...)``, an ``abort``
that joins it); the real one is measured with ``tools/probe_ops.py logs --first-audio-timeout-s 0.5``.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edge.native_stderr import LineLimiter
from tests.fake_sounddevice import sounddevice as fake_sd

ROOT = Path(__file__).resolve().parents[1]
FAKE_SD = ROOT / "tests" / "fake_sounddevice"


def test_each_kind_of_line_passes_a_few_times_per_window_and_the_rest_is_counted():
    now = [0.0]
    limiter = LineLimiter(burst=3, window_s=60.0, max_lines=10, clock=lambda: now[0])
    out = []
    for i in range(1000):  # the same line but for its number, as PortAudio's and ALSA's are
        out += limiter.offer(f"Expression 'x' failed in 'pa_linux_alsa.c', line: {3958 + i % 2}")
    out += limiter.offer("terminate called after throwing an instance of 'std::runtime_error'")
    assert out == [f"Expression 'x' failed in 'pa_linux_alsa.c', line: {n}" for n in (3958, 3959, 3958)] + [
        "terminate called after throwing an instance of 'std::runtime_error'"]
    assert limiter.held == 997
    now[0] = 61.0
    summary = limiter.due()
    assert len(summary) == 1 and summary[0].startswith("997 more native line(s) like this held back in the last 61 s (")
    assert limiter.offer("Expression 'x' failed in 'pa_linux_alsa.c', line: 1") == ["Expression 'x' failed in 'pa_linux_alsa.c', line: 1"]
    for i in range(30):  # distinct lines: at most max_lines per window in all
        out = limiter.offer(f"line {chr(65 + i)}")
    assert limiter.held == 30 - 9 and limiter.held_total == 997 + 21


GUARDED = r"""
import logging, os, sys, threading, time
from edge.logs import configure_logging, guard_native_output
configure_logging()
assert guard_native_output() is not None
log = logging.getLogger("probe")
line = b"Expression 'self->capture.ready || self->playback.ready' failed in 'src/hostapi/alsa/pa_linux_alsa.c', line: 3958\n"
def flood():
    while True:
        os.write(2, line)
threading.Thread(target=flood, daemon=True).start()
for i in range(300):
    log.info("event %d", i)
    time.sleep(0.005)
os.write(2, b"fatal: the native library gives up\n")
os.abort()
"""


def test_a_native_flood_is_held_back_and_a_native_line_just_before_a_crash_is_kept():
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", GUARDED], cwd=ROOT, capture_output=True, timeout=60)  # stderr's EOF: helper gone too
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == -signal.SIGABRT, err[-2000:]
    assert len(proc.stderr) < 100_000, f"{len(proc.stderr)} bytes of stderr"
    assert all(f"INFO probe: event {i}\n" in err for i in range(300))  # the log's own lines, none lost
    assert err.count("WARNING native: Expression 'self->capture.ready") == 3
    assert "WARNING native: fatal: the native library gives up" in err  # printed by a process that then died
    held = [line for line in err.splitlines() if "more native line(s) like this held back" in line]
    assert len(held) == 1 and int(held[0].split("WARNING native: ")[1].split()[0]) > 100, held
    print(f"native flood: {len(proc.stderr)} bytes of stderr, {held[0].split('WARNING native: ')[1][:60]}, {time.monotonic() - t0:.1f} s")


def test_under_journald_native_lines_are_warnings():
    code = ("from edge.logs import configure_logging, guard_native_output\nimport os\nconfigure_logging()\nguard_native_output()\n"
            "os.write(2, b'ALSA lib pulse.c:242:(pulse_connect) PulseAudio: Unable to connect: Connection refused\\n')\n")
    r, w = os.pipe()
    st = os.fstat(w)
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stderr=w, env={**os.environ, "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
    os.close(w)
    with os.fdopen(r, "rb") as f:
        out = f.read().decode()
    assert proc.wait(timeout=30) == 0
    assert out == "<4>native: ALSA lib pulse.c:242:(pulse_connect) PulseAudio: Unable to connect: Connection refused\n"


# ---------------------------------------------------------------------------- a stuck PortAudio


def wait_until(condition, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_a_stream_whose_close_never_returns_is_abandoned_and_a_new_one_opened(monkeypatch):
    from edge import hearing

    sink = os.open(os.devnull, os.O_WRONLY)
    sd = fake_sd.make(loop_after_s=0.3, loop_fd=sink)
    monkeypatch.setattr(hearing, "_import_sounddevice", lambda: sd)
    unregistered = []
    monkeypatch.setattr(hearing.atexit, "unregister", unregistered.append)
    events: list[dict] = []
    settings = hearing.MicrophoneSettings(stall_timeout_s=0.3, first_audio_timeout_s=0.5, portaudio_timeout_s=0.5,
                                          reconnect_backoff_s=0.05, max_backoff_s=0.2)
    mic = hearing.MicrophoneSource(settings, on_event=events.append)
    try:
        mic.start()
        assert wait_until(lambda: [e["event"] for e in events] == ["device_lost", "device_recovered"], 10.0), events
        assert "PortAudio's close has not returned within 0.5 s" in events[0]["reason"] and "abandoned" in events[0]["reason"]
        assert mic.stuck_now == ["close"] and unregistered == [sd._exit_handler]  # Pa_Terminate at exit would hang
        frames = [f for f in (mic.read(0.5) for _ in range(20)) if f is not None]
        assert len(frames) >= 10 and all(np.all(f.pcm == 0) for f in frames)  # the new stream is heard
        t0 = time.monotonic()
        mic.close()
        assert time.monotonic() - t0 < settings.portaudio_timeout_s + 1.0
    finally:
        sd.state["released"].set()  # end the looping thread: it is a test's
        os.close(sink)


def test_a_stuck_open_at_start_does_not_hang_the_start(monkeypatch):
    from edge import hearing

    sd = fake_sd.make()
    never = sd.state["released"]

    class HangingStream(sd.InputStream):
        def start(self) -> None:
            never.wait(30)  # Pa_StartStream waiting for a stream thread that failed before saying it started

    monkeypatch.setattr(sd, "InputStream", HangingStream)
    monkeypatch.setattr(hearing, "_import_sounddevice", lambda: sd)
    monkeypatch.setattr(hearing.atexit, "unregister", lambda f: None)
    t0 = time.monotonic()
    with pytest.raises(hearing.AudioDeviceError, match=r"cannot be opened \(PortAudio's open has not returned within 0.5 s\)"):
        hearing.MicrophoneSource(hearing.MicrophoneSettings(portaudio_timeout_s=0.5, wait_for_device=False)).start()
    assert time.monotonic() - t0 < 2.0
    never.set()


def test_sigterm_stops_the_daemon_in_time_while_portaudio_loops(tmp_path):
    """``showsay run`` over the fake PortAudio: the first stream loops, printing to fd 2, and its close never returns."""
    from edge.control import ControlClient
    from tests.daemon_process import EventCollector, write_config

    config = write_config(tmp_path, microphone={"stall_timeout_s": 0.5, "first_audio_timeout_s": 0.5, "portaudio_timeout_s": 1.0,
                                                "reconnect_backoff_s": 0.1, "max_backoff_s": 0.5},
                          service={"stop_timeout_s": 3.0}, camera={"loop_file": True})
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(FAKE_SD), os.environ.get("PYTHONPATH", "")]),
           "FAKE_PORTAUDIO_LOOP_AFTER_S": "1.5"}
    env.pop("NOTIFY_SOCKET", None)
    err = tmp_path / "stderr"
    with err.open("wb") as f:
        proc = subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(config)], cwd=ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=f)
    try:
        client = ControlClient(tmp_path / "control.sock")
        assert wait_until(lambda: _answers(client) or proc.poll() is not None, 60.0) and proc.poll() is None, err.read_text()[-3000:]
        events = EventCollector(tmp_path / "control.sock")
        seen = lambda: [e["event"] for e in events.events if e["event"].startswith("device_")]  # noqa: E731
        assert wait_until(lambda: seen()[-2:] == ["device_lost", "device_recovered"], 20.0), (seen(), err.read_text()[-3000:])
        assert client.request({"cmd": "status"}, timeout_s=5)["ok"]  # the controller answers
        events.close()
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        stop_s = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert wait_until(lambda: "held back" in err.read_text(errors="replace"), 10.0)  # the helper's last word, after the daemon
    text = err.read_text(errors="replace")
    assert code == 0 and stop_s < 3.0 + 1.0, (code, stop_s, text[-3000:])
    assert err.stat().st_size < 200_000 and text.count("native: Expression 'self->capture.ready") <= 3
    assert "leaving 1 PortAudio call(s) that never returned (close) behind" in text
    print(f"fake PortAudio loop: SIGTERM to exit {stop_s:.2f} s, {err.stat().st_size} bytes of log")


def _answers(client) -> bool:
    try:
        return bool(client.request({"cmd": "status"}, timeout_s=2)["ok"])
    except Exception:
        return False


def test_a_stop_that_hangs_ends_at_the_deadline_naming_what_still_runs():
    code = ("import logging, threading\nfrom edge.logs import configure_logging\nfrom edge.service import StopDeadline\n"
            "configure_logging()\nthreading.Thread(target=threading.Event().wait, name='stuck-native-call', daemon=True).start()\n"
            "StopDeadline(0.5).start()\nthreading.Event().wait()  # a close that never returns\n")
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30)
    took = time.monotonic() - t0
    assert proc.returncode == 1 and took < 0.5 + 5.0, (proc.returncode, took)
    assert "did not stop within service.stop_timeout_s = 0.5 s (threads still running: stuck-native-call); exiting now" in proc.stderr
