"""Fault probes of issue 19 against a real ``showsay run`` (private PulseAudio server as the microphone).

    PYTHONPATH=. .venv/bin/python tools/probe_ops.py socket   # status latency idle / 200 concurrent, idle lock-out, JSON edge cases
    PYTHONPATH=. .venv/bin/python tools/probe_ops.py ask      # hostile ask files: FIFO, secret text, 10-minute wav, 1 Hz wav
    PYTHONPATH=. .venv/bin/python tools/probe_ops.py logs     # event lines lost of 3,000 while the microphone flaps
    PYTHONPATH=. .venv/bin/python tools/probe_ops.py starts   # start-up: ready line without a microphone, fatal errors, a second daemon
    PYTHONPATH=. .venv/bin/python tools/probe_ops.py teach    # teaching after the camera stopped; a label over the limit

Each prints one JSON object with what it measured (counts tried / held, latencies, peak RSS). The
daemon runs the DTW + pixel baselines (``edge/samples/demo-baseline.yaml``) so no model is needed.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.audio import write_wav  # noqa: E402
from edge.control import ControlClient, ControlError  # noqa: E402
from tests.daemon_process import DaemonProcess, PulseServer, write_config  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of ``values``, rounded to 0.01."""
    return round(float(np.percentile(np.asarray(values), q)), 2) if values else float("nan")


def vm_hwm_mb(pid: int) -> float:
    """Peak resident memory of a process so far, MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024.0, 1)
    return float("nan")


def vm_rss_mb(pid: int) -> float:
    """Resident memory of a process now, MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024.0, 1)
    return float("nan")


def raw_request(path: Path, line: bytes, timeout_s: float = 10.0) -> str:
    """Send one raw line; the reply line, or what happened instead."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout_s)
    try:
        sock.connect(str(path))
        sock.sendall(line)
        buf = b""
        while b"\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                return f"<closed without a reply; got {buf[:200]!r}>"
            buf += chunk
        return buf.split(b"\n", 1)[0].decode("utf-8", "replace")
    except socket.timeout:
        return "<no reply within timeout>"
    except OSError as exc:
        return f"<{exc}>"
    finally:
        sock.close()


def status_ms(client: ControlClient, timeout_s: float = 10.0) -> tuple[float, dict | str]:
    """One status round trip on a new connection: (ms, reply or error text)."""
    t0 = time.perf_counter()
    try:
        reply: dict | str = client.request({"cmd": "status"}, timeout_s=timeout_s)
    except ControlError as exc:
        reply = str(exc)
    return 1000.0 * (time.perf_counter() - t0), reply


class Session:
    """A private PulseAudio server and a daemon on it, in a temporary directory."""

    def __init__(self, tmp: Path, pulse: bool = True, **overrides: dict) -> None:
        self.tmp = tmp
        (tmp / "xdg").mkdir(exist_ok=True)
        self.pulse = PulseServer(tmp / "xdg")
        if pulse:
            self.pulse.start()
        overrides.setdefault("camera", {"loop_file": True})
        self.config = write_config(tmp, **overrides)
        self.daemon = DaemonProcess(self.config, self.pulse.env, tmp)
        self.socket = tmp / "control.sock"
        self.client = ControlClient(self.socket)

    def ready(self, timeout_s: float = 90.0) -> None:
        self.daemon.notifications("READY=1", timeout_s)

    def close(self) -> None:
        """Stop the daemon (SIGTERM; killed after 15 s) and the sound server; the daemon's exit status, or None when it had to be killed."""
        t0 = time.monotonic()
        try:
            self.exit_code: int | None = self.daemon.stop()
        except subprocess.TimeoutExpired:
            self.exit_code = None
        finally:
            self.stop_s = round(time.monotonic() - t0, 1)
            self.pulse.stop()


# ---------------------------------------------------------------------------- socket


def probe_socket(tmp: Path) -> dict:
    s = Session(tmp)
    out: dict = {}
    try:
        s.ready()
        time.sleep(2.0)  # let the stream settle
        idle = [status_ms(s.client)[0] for _ in range(500)]
        out["status_idle_ms"] = {"n": 500, "p50": percentile(idle, 50), "p99": percentile(idle, 99)}

        n = 200
        barrier = threading.Barrier(n)
        results: list[tuple[float, dict | str]] = [(0.0, "")] * n

        def one(i: int) -> None:
            barrier.wait(timeout=30)
            results[i] = status_ms(s.client, timeout_s=10.0)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        ok = [ms for ms, r in results if isinstance(r, dict) and r.get("ok")]
        errors: dict[str, int] = {}
        for _, r in results:
            if not (isinstance(r, dict) and r.get("ok")):
                key = (r.get("error") if isinstance(r, dict) else r)[:80]
                errors[key] = errors.get(key, 0) + 1
        out["status_200_concurrent"] = {"tried": n, "answered": len(ok), "p50": percentile(ok, 50), "p99": percentile(ok, 99), "errors": errors}

        idle_conns = []
        for _ in range(16):
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.connect(str(s.socket))
            idle_conns.append(c)
        time.sleep(1.5)
        ms, reply = status_ms(s.client)
        out["status_with_16_idle_connections"] = {"ok": isinstance(reply, dict) and bool(reply.get("ok")), "ms": round(ms, 2),
                                                   "reply": reply if not isinstance(reply, dict) else reply.get("error", "ok")}
        for c in idle_conns:
            c.close()
        time.sleep(0.5)

        subs = []
        for _ in range(16):
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.settimeout(5)
            c.connect(str(s.socket))
            c.sendall(b'{"cmd":"subscribe"}\n')
            subs.append(c)
        time.sleep(1.0)
        ms, reply = status_ms(s.client)
        out["status_with_16_subscribers"] = {"ok": isinstance(reply, dict) and bool(reply.get("ok")), "ms": round(ms, 2),
                                             "reply": reply if not isinstance(reply, dict) else reply.get("error", "ok")}
        for c in subs:
            c.close()
        time.sleep(0.5)

        cases = {
            "id NaN": b'{"cmd":"status","id":NaN}\n',
            "id Infinity": b'{"cmd":"status","id":Infinity}\n',
            "id -Infinity": b'{"cmd":"status","id":-Infinity}\n',
            "id nested 20000 deep": b'{"cmd":"status","id":' + b"[" * 20000 + b"]" * 20000 + b"}\n",
            "bare nesting 30000 deep": b"[" * 30000 + b"]" * 30000 + b"\n",
        }
        out["json"] = {}
        big = ControlClient(s.socket)
        for name, line in cases.items():
            out["json"][name] = raw_request(s.socket, line)[:160]
        ms, reply = status_ms(big)
        out["json"]["status_after"] = isinstance(reply, dict) and bool(reply.get("ok"))
    finally:
        s.close()
    out["tracebacks_in_log"] = s.daemon.log_path.read_text(errors="replace").count("Traceback")
    return out


# ---------------------------------------------------------------------------- ask


def _poll_status(client: ControlClient, stop: threading.Event, worst: list[float]) -> None:
    while not stop.is_set():
        ms, _ = status_ms(client, timeout_s=15.0)
        worst.append(ms)
        time.sleep(0.02)


def _ask(s: Session, wav: Path, timeout_s: float = 30.0) -> dict:
    worst: list[float] = []
    stop = threading.Event()
    before = s.client.request({"cmd": "status"}, timeout_s=10)
    poller = threading.Thread(target=_poll_status, args=(ControlClient(s.socket), stop, worst))
    poller.start()
    t0 = time.perf_counter()
    try:
        reply: dict | str = s.client.request({"cmd": "ask", "wav": str(wav)}, timeout_s=timeout_s)
    except ControlError as exc:
        reply = str(exc)
    took = 1000.0 * (time.perf_counter() - t0)
    time.sleep(0.3)
    stop.set()
    poller.join(timeout=30)
    after = s.client.request({"cmd": "status"}, timeout_s=15)
    text = reply if isinstance(reply, str) else (reply.get("error") or reply.get("event"))
    return {
        "reply": str(text)[:200],
        "ms": round(took, 1),
        "status_during_max_ms": round(max(worst), 1) if worst else None,
        "dropped_audio_frames": after.get("dropped_audio_frames", 0) - before.get("dropped_audio_frames", 0),
        "daemon_rss_peak_mb": vm_hwm_mb(s.daemon.proc.pid),
        "daemon_rss_now_mb": vm_rss_mb(s.daemon.proc.pid),
    }


def probe_ask(tmp: Path) -> dict:
    out: dict = {}
    rng = np.random.default_rng(0)
    files = tmp / "files"
    files.mkdir()
    fifo = files / "r.wav"
    os.mkfifo(fifo)
    secret = files / "secret.wav"
    secret.write_text("root:$6$saltsalt$hash:19000:0:99999:7:::\n")
    ten_min = files / "ten_minutes.wav"
    write_wav(ten_min, (rng.normal(0, 0.05, 600 * 16000)).astype(np.float32), 16000)
    five_s = files / "five_seconds.wav"  # the longest request the default endpointer would accept
    write_wav(five_s, (rng.normal(0, 0.05, 5 * 16000)).astype(np.float32), 16000)
    five_s_48k = files / "five_seconds_48k_stereo.wav"
    from scipy.io import wavfile

    wavfile.write(five_s_48k, 48000, (rng.normal(0, 0.05, (5 * 48000, 2)) * 32767).astype(np.int16))
    largest = files / "largest_192k_8ch_float.wav"  # the most audio data a request may declare: 5.4 s, 192 kHz, 8 channels, 32-bit float
    wavfile.write(largest, 192000, rng.normal(0, 0.05, (int(5.4 * 192000), 8)).astype(np.float32))
    out["largest_file_mb"] = round(largest.stat().st_size / 1e6, 1)
    one_hz = files / "one_hz.wav"
    wavfile.write(one_hz, 1, (rng.normal(0, 0.05, 600) * 32767).astype(np.int16))
    out["one_hz_file_bytes"] = one_hz.stat().st_size

    s = Session(tmp)
    try:
        s.ready()
        time.sleep(2.0)
        out["rss_at_ready_mb"] = vm_hwm_mb(s.daemon.proc.pid)
        out["secret"] = _ask(s, secret)
        out["five_seconds_16k"] = _ask(s, five_s)
        out["five_seconds_48k_stereo"] = _ask(s, five_s_48k)
        out["largest_192k_8ch_float"] = _ask(s, largest)
        out["one_hz"] = _ask(s, one_hz)
        out["ten_minutes"] = _ask(s, ten_min, timeout_s=60)
        # last: the FIFO (before the fix it freezes the controller for good)
        result: dict = {}
        t = threading.Thread(target=lambda: result.update(_ask(s, fifo, timeout_s=15)))
        t.start()
        t.join(timeout=40)
        out["fifo"] = result or {"reply": "<probe thread still blocked after 40 s>"}
        ms, reply = status_ms(s.client)
        out["fifo"]["status_after"] = reply.get("state") if isinstance(reply, dict) and reply.get("ok") else reply
        try:  # release a reader blocked in open() on the FIFO
            fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            os.close(fd)
        except OSError:
            pass
    finally:
        s.close()
    log = s.daemon.log_path.read_text(errors="replace")
    out["secret_in_log"] = "saltsalt" in log or "root:$6" in log or "b'root" in log
    out["tracebacks_in_log"] = log.count("Traceback")
    return out


# ---------------------------------------------------------------------------- logs


def probe_logs(tmp: Path, events: int = 3000, pace_s: float = 0.03, first_audio_timeout_s: float | None = None,
               flood_limit_mb: float = 200.0) -> dict:
    """``events`` event lines (teach / cancel over the socket) while the PulseAudio server is killed and restarted.

    The server is down 2 s and up 3 s per cycle. A daemon log over ``flood_limit_mb`` means
    PortAudio's ALSA backend is spinning on a vanished server (it prints an assertion line per loop
    to fd 2); the daemon is then sent SIGTERM (killed when it has not exited 15 s later) and the run
    reported as flooded, with the time from SIGTERM to exit and the event lines found among what was
    sent until then. ``first_audio_timeout_s`` (0.5: the aggressive setting that made PortAudio spin
    in issue 19) is the microphone setting of that name.
    """
    fast = {"reconnect_backoff_s": 0.1, "max_backoff_s": 0.5, "stall_timeout_s": 1.0}
    if first_audio_timeout_s is not None:
        fast["first_audio_timeout_s"] = first_audio_timeout_s
    s = Session(tmp, microphone=fast, teach={"timeout_s": 120.0})
    flaps = [0]
    flooded = [False]
    stop = threading.Event()

    def flap() -> None:
        while not stop.is_set():
            s.pulse.stop()
            flaps[0] += 1
            for _ in range(20):
                if stop.wait(0.1):
                    break
                if s.daemon.log_path.stat().st_size > flood_limit_mb * 1e6:
                    flooded[0] = True
                    stop.set()
            if stop.is_set():
                break
            try:
                s.pulse.start()
            except Exception:
                pass
            stop.wait(3.0)

    sent = replies_ok = 0
    t0 = time.monotonic()
    try:
        s.ready()
        flapper = threading.Thread(target=flap)
        flapper.start()
        for i in range(events // 2):
            if stop.is_set():
                break
            for cmd in ("teach", "cancel"):
                try:
                    r = s.client.request({"cmd": cmd}, timeout_s=15)
                except ControlError:
                    continue
                sent += 1
                replies_ok += bool(r.get("ok"))
            time.sleep(pace_s)
        took = time.monotonic() - t0
        time.sleep(1.0)
        stop.set()
        flapper.join(timeout=30)
    finally:
        stop.set()
        s.close()
    log_bytes = s.daemon.log_path.stat().st_size
    if flooded[0] or log_bytes > 200e6:  # counted by grep: a flooded log does not fit in memory
        grep = lambda pattern: int(subprocess.run(["grep", "-a", "-c", "-F", pattern, str(s.daemon.log_path)],  # noqa: E731
                                                  capture_output=True, text=True).stdout or 0)
        logged = grep('event {"event":"teach_started"') + grep('event {"event":"teach_cancelled"')
        return {"flooded": True, "log_bytes": log_bytes, "seconds": round(time.monotonic() - t0, 1), "flaps": flaps[0],
                "events_sent": sent, "event_lines_found": logged, "lost": sent - logged,
                "native_loop_lines": grep("Expression 'self->capture.ready || self->playback.ready' failed"),
                "daemon_exit_code": s.exit_code, "stop_s": s.stop_s}
    log = s.daemon.log_path.read_text(errors="replace")
    started = len(re.findall(r'event \{"event":"teach_started"', log))
    cancelled = len(re.findall(r'event \{"event":"teach_cancelled"', log))
    return {
        "daemon_exit_code": s.exit_code, "stop_s": s.stop_s,
        "event_lines_expected": sent, "replies_ok": replies_ok, "teach_started_lines": started, "teach_cancelled_lines": cancelled,
        "lost": sent - started - cancelled, "seconds": round(took, 1), "pulse_restarts": flaps[0], "log_bytes": log_bytes,
        "microphone_lost_lines": log.count("microphone lost"), "cannot_open_lines": log.count("cannot open"),
        "recovered_lines": log.count("microphone recovered"), "native_alsa_lines": log.count("ALSA lib") + log.count("Expression '"),
        "portaudio_stuck_lines": log.count("has not returned within"),
        "native_lines_held_back": sum(int(n) for n in re.findall(r"native: (\d+) more native line\(s\) like this held back", log)),
        "native_held_back_lines": [line[:200] for line in log.splitlines() if "like this held back" in line][:8],
        "portaudio_stuck_examples": [line[:300] for line in log.splitlines() if "has not returned within" in line][:4],
    }


# ---------------------------------------------------------------------------- teach


def probe_teach(tmp: Path) -> dict:
    """Teaching from a camera that has stopped (the bundled video ends), and a label over the limit."""
    from tests.daemon_process import EventCollector, word_wav

    apple = word_wav("apple", tmp / "apple.wav", ("en-us", 145, 45))
    s = Session(tmp, camera={"loop_file": False}, teach={"timeout_s": 8.0})
    out: dict = {}
    try:
        s.ready()
        events = EventCollector(s.socket)
        lost = events.wait_for("device_lost", 0, timeout_s=60)  # the video (about 30 s) has ended
        out["camera_lost_reason"] = lost.get("reason")
        time.sleep(3.0)
        n = len(events.events)
        out["teach_reply"] = s.client.request({"cmd": "teach"}, timeout_s=10).get("state")
        s.pulse.play(apple)
        t0 = time.monotonic()
        names = []
        while time.monotonic() - t0 < 12 and not any(e["event"] in ("taught", "teach_cancelled") for e in events.events[n:]):
            time.sleep(0.1)
        names = [{k: e.get(k) for k in ("event", "reason", "pair_id", "frame_time_s", "frame_age_s")} for e in events.events[n:]
                 if e["event"] in ("taught", "teach_cancelled")]
        out["stale_camera_teach"] = names
        out["pairs_after"] = s.client.request({"cmd": "status"}, timeout_s=10).get("pairs")
        n = len(events.events)
        reply = s.client.request({"cmd": "teach", "label": "x" * 201}, timeout_s=10)
        out["long_label_reply"] = reply.get("error") or reply.get("state")
        out["long_label_state_after"] = s.client.request({"cmd": "status"}, timeout_s=10).get("state")
        if out["long_label_state_after"] == "teaching":
            s.client.request({"cmd": "cancel"}, timeout_s=10)
        events.close()
    finally:
        s.close()
    return out


# ---------------------------------------------------------------------------- starts


def _start_once(tmp: Path, env: dict, overrides: dict, wait_s: float = 40.0) -> tuple[int | None, str]:
    config = write_config(tmp, **overrides)
    proc = subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(config)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out, _ = proc.communicate(timeout=wait_s)
        return proc.returncode, out.decode(errors="replace")
    except subprocess.TimeoutExpired:  # still running (or hung): SIGTERM, then SIGKILL
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate(timeout=10)
            return None, out.decode(errors="replace") + "\n<hung: killed after SIGTERM did not stop it>"
        return None, out.decode(errors="replace")


def probe_starts(tmp: Path, runs: int = 12) -> dict:
    out: dict = {}
    xdg = tmp / "xdg-none"
    xdg.mkdir()
    env = {**os.environ, "XDG_RUNTIME_DIR": str(xdg), "PYTHONUNBUFFERED": "1"}  # no PulseAudio server: no microphone
    env.pop("NOTIFY_SOCKET", None)
    ready = 0
    fast_mic = {"reconnect_backoff_s": 0.05, "max_backoff_s": 0.2}
    for i in range(runs):
        d = tmp / f"nomic{i}"
        d.mkdir()
        config = write_config(d, microphone=fast_mic)
        proc = subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(config)], cwd=ROOT, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (d / "control.sock").exists():
            time.sleep(0.1)
        time.sleep(3.0)
        proc.terminate()
        text, _ = proc.communicate(timeout=20)
        ready += b'"event":"ready"' in text
    out["ready_line_without_microphone"] = {"tried": runs, "held": ready}

    printed = 0
    lines = []
    for i in range(runs):
        d = tmp / f"gpio{i}"
        d.mkdir()
        # /dev/null passes the preflight's checks of a GPIO chip (a character device, readable and writable):
        # the line request fails in button.start(), after the microphone supervisor has started
        code, text = _start_once(d, env, {"microphone": fast_mic, "button": {"kind": "gpiod", "chip": "/dev/null", "line": "3"}})
        printed += "cannot start" in text
        lines.append(code)
    out["fatal_start_error_printed"] = {"tried": runs, "held": printed, "exit_codes": sorted(set(str(c) for c in lines))}

    # a second daemon on the same state directory with another socket
    a = tmp / "one"
    a.mkdir()
    pulse = PulseServer(tmp / "xdg")
    (tmp / "xdg").mkdir()
    pulse.start()
    try:
        first = DaemonProcess(write_config(a), pulse.env, a)
        try:
            first.notifications("READY=1", 90)
            b = tmp / "two"
            b.mkdir()
            code, text = _start_once(b, pulse.env, {"memory": {"state_dir": str(a / "state")}}, wait_s=20)
            out["second_daemon_same_state_dir"] = {"exit_code": code, "last_lines": text.strip().splitlines()[-2:],
                                                   "traceback": "Traceback" in text}
            c = tmp / "three"
            c.mkdir()
            code, text = _start_once(c, pulse.env, {"control": {"socket_path": str(a / "control.sock")}}, wait_s=20)
            out["second_daemon_same_socket"] = {"exit_code": code, "last_lines": text.strip().splitlines()[-2:],
                                                "traceback": "Traceback" in text,
                                                "memory_file_made": (c / "state" / "memory.sqlite3").exists()}
            f = tmp / "four"
            f.mkdir()
            (f / "state").mkdir()
            os.mkfifo(f / "state" / "memory.sqlite3")
            code, text = _start_once(f, pulse.env, {}, wait_s=20)
            out["fifo_memory_file"] = {"exit_code": code, "last_lines": text.strip().splitlines()[-2:], "traceback": "Traceback" in text}
        finally:
            first.stop()
    finally:
        pulse.stop()
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("probe", choices=("socket", "ask", "logs", "starts", "teach"))
    parser.add_argument("--runs", type=int, default=12, help="starts: runs per case")
    parser.add_argument("--events", type=int, default=3000, help="logs: event lines to produce")
    parser.add_argument("--first-audio-timeout-s", type=float, help="logs: the microphone's first_audio_timeout_s (0.5: aggressive)")
    parser.add_argument("--flood-limit-mb", type=float, default=200.0, help="logs: a daemon log this large ends the run as flooded")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="showsay-probe-") as tmp:
        if args.probe == "socket":
            result = probe_socket(Path(tmp))
        elif args.probe == "ask":
            result = probe_ask(Path(tmp))
        elif args.probe == "logs":
            result = probe_logs(Path(tmp), args.events, first_audio_timeout_s=args.first_audio_timeout_s, flood_limit_mb=args.flood_limit_mb)
        elif args.probe == "teach":
            result = probe_teach(Path(tmp))
        else:
            result = probe_starts(Path(tmp), args.runs)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
