"""Run ``showsay run`` as a subprocess on a private PulseAudio server (null sink = microphone)."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import yaml

from edge.audio import read_wav, write_wav

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "edge" / "samples"


class PulseServer:
    """A private PulseAudio server whose null sink's monitor is the default source (a real-time microphone)."""

    def __init__(self, runtime_dir: Path) -> None:
        self.runtime_dir = runtime_dir
        self.env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime_dir), "PULSE_LATENCY_MSEC": "20"}
        self.env.pop("PULSE_SERVER", None)

    def start(self) -> None:
        exe = shutil.which("pulseaudio")
        assert exe, "pulseaudio is needed for the end-to-end tests: apt-get install pulseaudio pulseaudio-utils libasound2-plugins"
        subprocess.run(
            [exe, "-n", "--daemonize=yes", "--exit-idle-time=-1", "--disable-shm=yes",
             "-L", "module-native-protocol-unix", "-L", "module-null-sink sink_name=vsink rate=16000 channels=1",
             "-L", "module-always-sink"],
            env=self.env, check=True, timeout=30,
        )
        deadline = time.monotonic() + 10
        while subprocess.run(["pactl", "info"], env=self.env, capture_output=True, timeout=10).returncode != 0:
            assert time.monotonic() < deadline, "the private PulseAudio server did not come up within 10 s"
            time.sleep(0.1)
        subprocess.run(["pactl", "set-default-source", "vsink.monitor"], env=self.env, check=True, timeout=10)

    def play(self, wav: Path) -> None:
        """Play into the null sink (blocks for the length of the file)."""
        # The player gets a generous buffer: PULSE_LATENCY_MSEC=20 is for the capturing daemon; a player
        # with 20 ms underruns on a loaded machine and the word reaches the "microphone" with gaps.
        env = {k: v for k, v in self.env.items() if k != "PULSE_LATENCY_MSEC"}
        subprocess.run(["paplay", "--device=vsink", "--latency-msec=300", str(wav)], env=env, check=True, timeout=30)

    def stop(self) -> None:
        subprocess.run(["pulseaudio", "--kill"], env=self.env, timeout=10)
        deadline = time.monotonic() + 10
        while subprocess.run(["pactl", "info"], env=self.env, capture_output=True, timeout=10).returncode == 0:
            if time.monotonic() > deadline:
                break
            time.sleep(0.1)


def word_wav(text: str, path: Path, voice: tuple[str, int, int]) -> Path:
    """``text`` by espeak-ng (voice, words per minute, pitch) as a 16 kHz wav with 0.3 s of silence after it."""
    exe = shutil.which("espeak-ng")
    assert exe, "espeak-ng is needed: apt-get install espeak-ng"
    raw = path.with_suffix(".raw.wav")
    name, wpm, pitch = voice
    subprocess.run([exe, "-v", name, "-s", str(wpm), "-p", str(pitch), "-w", str(raw), text], check=True, timeout=30)
    x = read_wav(raw, 16000)
    x = 0.5 * x / max(1e-6, float(np.abs(x).max()))
    write_wav(path, np.concatenate([np.zeros(1600, np.float32), x, np.zeros(4800, np.float32)]), 16000)
    return path


def write_config(tmp: Path, **overrides: dict) -> Path:
    """A config for a test daemon: state, socket and answers under ``tmp``, the bundled scene as camera."""
    demo = yaml.safe_load((SAMPLES / "demo-baseline.yaml").read_text())  # the daemon's behaviour, not the encoders
    cfg = {
        **demo,
        "memory": {"state_dir": str(tmp / "state")},
        "control": {"socket_path": str(tmp / "control.sock")},
        "camera": {"source": str(SAMPLES / "scene.mp4"), "fps": 15, "loop_file": False},
        "answers": {"save_dir": str(tmp / "answers")},
        "service": {"stop_timeout_s": 5.0},
    }
    for key, value in overrides.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    path = tmp / "showsay.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


class DaemonProcess:
    """``python -m edge run --config PATH`` with a fake NOTIFY_SOCKET; stdout+stderr to a log file."""

    def __init__(self, config: Path, env: dict, tmp: Path, args: tuple[str, ...] = ()) -> None:
        self.notify_path = tmp / "notify.sock"
        self.notify_path.unlink(missing_ok=True)  # left by an earlier daemon of the same test
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        self.log_path = tmp / "daemon.log"
        self._log = self.log_path.open("ab")
        env = {**env, "NOTIFY_SOCKET": str(self.notify_path), "WATCHDOG_USEC": "2000000", "PYTHONUNBUFFERED": "1"}
        env.pop("WATCHDOG_PID", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(config), *args],
                                     cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)
        self.received: list[str] = []  # every notify line, read all along as systemd does
        self._reader = threading.Thread(target=self._read_notify, daemon=True)
        self._reader.start()

    def _read_notify(self) -> None:
        self.notify.settimeout(0.2)
        while True:
            try:
                self.received += self.notify.recv(4096).decode().split("\n")
            except socket.timeout:
                if self.proc.poll() is not None:
                    return
            except OSError:
                return

    def notifications(self, until: str, timeout_s: float) -> list[str]:
        """Notify lines received so far, once one of them equals ``until``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if until in self.received:
                return list(self.received)
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise AssertionError(f"no {until} within {timeout_s} s (got {self.received}); log:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, timeout_s: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self._log.close()
            self._reader.join(timeout=5)
            self.notify.close()


class EventCollector:
    """Subscribes to the daemon's events (JSON lines on the control socket) in a thread; waits have timeouts."""

    def __init__(self, socket_path: Path) -> None:
        import json
        import threading

        from edge.control import ControlClient

        self.client = ControlClient(socket_path)
        self.events: list[dict] = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(10.0)
        self.sock.connect(str(socket_path))
        self.sock.sendall(b'{"cmd": "subscribe"}\n')
        self._buf = b""
        ack = json.loads(self._line())
        assert ack.get("ok"), ack
        self.sock.settimeout(None)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _line(self) -> bytes:
        while b"\n" not in self._buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line

    def _run(self) -> None:
        import json

        try:
            while True:
                self.events.append(json.loads(self._line()))
        except (EOFError, OSError):
            pass

    def wait_for(self, name: str, after: int = 0, timeout_s: float = 15.0) -> dict:
        """The first event called ``name`` at index >= ``after``."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for e in self.events[after:]:
                if e["event"] == name:
                    return e
            time.sleep(0.05)
        raise AssertionError(f"no {name!r} event within {timeout_s} s; events: {[e['event'] for e in self.events[after:]]}")

    def request(self, message: dict) -> dict:
        return self.client.request(message, timeout_s=15.0)

    def close(self) -> None:
        self.sock.close()
