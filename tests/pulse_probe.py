"""A private PulseAudio server as a real microphone, and a probe that captures from it in a fresh process.

The server follows /work/shared/ENVIRONMENT.md: a null sink whose monitor is the default source;
audio played into the sink with paplay reaches any stream recording from it, paced in real time.
PULSE_LATENCY_MSEC and XDG_RUNTIME_DIR must be set before sounddevice (PortAudio) is imported,
which is why the capture runs here, in a subprocess started by tests/test_hearing.py:

    python tests/pulse_probe.py SCENARIO WAV   (env: XDG_RUNTIME_DIR, PULSE_RATE_HZ)

It prints one JSON line with what it measured.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path


def start_server(runtime_dir: str, rate_hz: int) -> None:
    """Start a daemonised PulseAudio with a mono null sink ``vsink`` at ``rate_hz``; its monitor is the default source."""
    env = {**os.environ, "XDG_RUNTIME_DIR": runtime_dir}
    cmd = [
        shutil.which("pulseaudio") or "pulseaudio", "-n", "--daemonize=yes", "--exit-idle-time=-1", "--disable-shm=yes",
        "-L", "module-native-protocol-unix",
        "-L", f"module-null-sink sink_name=vsink rate={rate_hz} channels=1",
        "-L", "module-always-sink",
    ]
    subprocess.run(cmd, env=env, check=True, timeout=20, capture_output=True)
    deadline = time.monotonic() + 10
    while subprocess.run(["pactl", "set-default-source", "vsink.monitor"], env=env, capture_output=True, timeout=10).returncode:
        if time.monotonic() > deadline:
            raise RuntimeError("the private PulseAudio server did not come up")
        time.sleep(0.1)


def kill_server(runtime_dir: str) -> None:
    """Stop the server started with the same runtime directory (no-op if it is gone)."""
    env = {**os.environ, "XDG_RUNTIME_DIR": runtime_dir}
    subprocess.run(["pulseaudio", "--kill"], env=env, capture_output=True, timeout=20)
    deadline = time.monotonic() + 10
    while subprocess.run(["pulseaudio", "--check"], env=env, capture_output=True, timeout=10).returncode == 0:
        if time.monotonic() > deadline:
            raise RuntimeError("the private PulseAudio server did not stop")
        time.sleep(0.05)


def pactl(*args: str) -> None:
    """Run pactl against the server of this process's XDG_RUNTIME_DIR."""
    subprocess.run(["pactl", *args], check=True, timeout=10, capture_output=True)


def play(wav: str) -> subprocess.Popen:
    """paplay ``wav`` into the null sink (returns at once)."""
    return subprocess.Popen(["paplay", "--device=vsink", wav])


def wait_utterance(source, endpointer, timeout_s: float, loud: dict):
    """Push frames until an utterance ends; notes when the first loud frame arrived."""
    import numpy as np

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        frame = source.read(0.2)
        if frame is None:
            continue
        if "first_s" not in loud and np.abs(frame.pcm).max() > 1000:
            loud["first_s"] = time.monotonic()
        utterance = endpointer.push(frame)
        if utterance is not None:
            return utterance
    return None


def wait_reconnected(source, result: dict, timeout_s: float = 20.0) -> None:
    """Read until the source has reconnected once (or the timeout), recording where it ended."""
    deadline = time.monotonic() + timeout_s
    while source.reconnects < 1 and time.monotonic() < deadline:
        source.read(0.2)
    result["reconnects"] = source.reconnects
    result["connected"] = source.connected


def main() -> int:
    scenario, wav = sys.argv[1], sys.argv[2]
    runtime_dir = os.environ["XDG_RUNTIME_DIR"]
    rate_hz = int(os.environ.get("PULSE_RATE_HZ", "16000"))
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(levelname)s %(message)s")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from edge.hearing import MicrophoneSettings, MicrophoneSource
    from edge.vad import Endpointer

    settings = MicrophoneSettings(reconnect_backoff_s=0.2, max_backoff_s=1.0, stall_timeout_s=3.0)
    if scenario == "stall":
        settings = MicrophoneSettings(reconnect_backoff_s=0.2, max_backoff_s=0.5, stall_timeout_s=1.0)
    if scenario == "resample":
        settings = MicrophoneSettings(device="pulse", device_rate_hz=rate_hz, reconnect_backoff_s=0.2, queue_frames=10)
    events: list[dict] = []
    result: dict = {"scenario": scenario}
    if scenario == "late":  # no audio server yet when the daemon starts (a USB microphone plugged in later)
        kill_server(runtime_dir)
    t_open = time.monotonic()
    with MicrophoneSource(settings, on_event=events.append) as source:
        if scenario == "late":
            result["connected_at_start"] = source.connected
            result["events_at_start"] = [e["event"] for e in events]
            result["lost_reason"] = events[0].get("reason", "") if events else ""
            time.sleep(1.0)
            start_server(runtime_dir, rate_hz)
            wait_reconnected(source, result)
        first = source.read(10.0)
        result["startup_s"] = time.monotonic() - t_open
        result["device_rate_hz"] = source.device_rate_hz
        result["frame_samples"] = None if first is None else int(first.pcm.size)
        if scenario == "resample":
            time.sleep(1.0)  # a stalled consumer: about 33 blocks arrive, 10 fit in the queue
            result["dropped_while_stalled"] = source.dropped_frames
            while source.read(0.0) is not None:
                pass
        if scenario == "stall":
            # the source stops delivering (a microphone that hangs): stall -> lost; reopens stay silent
            # until it is resumed, then audio flows again -> recovered, once
            pactl("suspend-sink", "vsink", "1")
            deadline = time.monotonic() + 10
            while source.connected and time.monotonic() < deadline:
                source.read(0.2)
            result["lost_after_s"] = time.monotonic() - t_open
            t_suspend_end = time.monotonic() + 2.5
            while time.monotonic() < t_suspend_end:
                source.read(0.2)
            result["events_while_suspended"] = [e["event"] for e in events]
            pactl("suspend-sink", "vsink", "0")
            deadline = time.monotonic() + 15
            while source.reconnects < 1 and time.monotonic() < deadline:
                source.read(0.2)
            result["reconnects"] = source.reconnects
            result["connected"] = source.connected
        if scenario == "restart":
            kill_server(runtime_dir)
            start_server(runtime_dir, rate_hz)
            wait_reconnected(source, result)
            while source.read(0.0) is not None:  # wait for frames from the new stream
                pass
            source.read(10.0)
        endpointer = Endpointer()
        for _ in range(5):  # let the VAD settle on the live stream's silence
            source.read(1.0)
        loud: dict = {}
        t_play = time.monotonic()
        player = play(wav)
        utterance = wait_utterance(source, endpointer, 10.0, loud)
        player.wait(timeout=10)
        result["first_audio_latency_s"] = loud["first_s"] - t_play if "first_s" in loud else None
        result["utterance_s"] = None if utterance is None else [utterance.start_s - t_play, utterance.end_s - t_play]
        result["dropped_frames"] = source.dropped_frames - result.get("dropped_while_stalled", 0)
        result["events"] = [e["event"] for e in events]
        if scenario == "resample":
            settings_bad = MicrophoneSettings(device="no such microphone", wait_for_device=False)
            try:
                MicrophoneSource(settings_bad).start()
            except Exception as exc:
                result["bad_device_error"] = str(exc)
    result["closed"] = source.closed
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
