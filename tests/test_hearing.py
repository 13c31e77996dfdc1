"""Audio sources: wav pacing and drops, streaming resampling, and a real PulseAudio microphone stream."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from pulse_probe import kill_server, start_server
from scipy.signal import resample_poly
from speech_fixtures import RATE_HZ, espeak, voiced_span_s

from edge.audio import AudioError, write_wav
from edge.hearing import AudioDeviceError, MicrophoneSettings, MicrophoneSource, StreamResampler, WavFileSource

PROBE = Path(__file__).with_name("pulse_probe.py")


@pytest.fixture(scope="module")
def word(tmp_path_factory) -> tuple[Path, float]:
    """A spoken word as a wav file, and the length of its voiced part in seconds."""
    path = tmp_path_factory.mktemp("pulse") / "window.wav"
    samples = espeak("window", path)
    start, end = voiced_span_s(samples)
    return path, end - start


def test_wav_source_frames_are_exact_and_padded(tmp_path):
    path = tmp_path / "x.wav"
    x = np.sin(np.arange(16000 + 100) / 10).astype(np.float32) * 0.5
    write_wav(path, x, RATE_HZ)
    source = WavFileSource(path, frame_ms=20, start_time_s=0.0)
    frames = []
    while not source.closed:
        frames.append(source.read(1.0))
    assert source.read(0.1) is None
    assert len(frames) == 51 and all(f.pcm.shape == (320,) and f.pcm.dtype == np.int16 for f in frames)
    assert [f.time_s for f in frames[:3]] == pytest.approx([0.0, 0.02, 0.04])
    assert np.all(frames[-1].pcm[100:] == 0)  # the partial last frame is padded with silence


def test_wav_source_resamples_other_rates(tmp_path):
    path = tmp_path / "x44.wav"
    write_wav(path, np.zeros(44100, np.float32), 44100)
    assert WavFileSource(path).frame_count == 34  # 1 s at 16 kHz = 33.3 frames of 30 ms


def test_wav_source_pacing_realtime_vs_fast(tmp_path):
    path = tmp_path / "one_second.wav"
    write_wav(path, np.zeros(RATE_HZ, np.float32), RATE_HZ)
    for realtime, low, high in ((False, 0.0, 0.2), (True, 0.95, 1.4)):
        source = WavFileSource(path, realtime=realtime)
        source.start()
        t0 = time.monotonic()
        n = 0
        while not source.closed and time.monotonic() - t0 < 5:
            n += source.read(0.5) is not None
        elapsed = time.monotonic() - t0
        assert n == 34 and low <= elapsed <= high, (realtime, elapsed)
        assert source.dropped_frames == 0


def test_wav_source_realtime_drops_for_a_slow_consumer(tmp_path, caplog):
    path = tmp_path / "two_seconds.wav"
    write_wav(path, np.zeros(2 * RATE_HZ, np.float32), RATE_HZ)
    source = WavFileSource(path, realtime=True, queue_frames=5)
    source.start()
    time.sleep(0.6)  # 20 frames become due; only 5 fit in the queue
    frames = [f for f in (source.read(1.0) for _ in range(200)) if f is not None and not source.closed]
    assert 12 <= source.dropped_frames <= 30  # 15 when the sleep is exact; more on a loaded machine
    assert len(frames) + source.dropped_frames in (66, 67)  # 67 frames in all; the last one ends the loop
    assert any("dropped" in r.message for r in caplog.records)


def test_wav_source_bad_file_names_the_file(tmp_path):
    bad = tmp_path / "not_audio.wav"
    bad.write_text("hello")
    with pytest.raises(AudioError, match="not_audio.wav"):
        WavFileSource(bad)
    with pytest.raises(AudioError, match="missing.wav"):
        WavFileSource(tmp_path / "missing.wav")


@pytest.mark.parametrize("from_hz", [48000, 44100, 32000])
def test_stream_resampler_in_chunks_matches_whole_signal(from_hz):
    rng = np.random.default_rng(1)
    t = np.arange(from_hz) / from_hz
    x = (0.5 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)
    whole = StreamResampler(from_hz, 16000).process(x)
    chunked = StreamResampler(from_hz, 16000)
    sizes = rng.integers(1, 2000, 200)
    parts, i = [], 0
    for n in sizes:
        parts.append(chunked.process(x[i : i + n]))
        i += n
    parts.append(chunked.process(x[i:]))
    streamed = np.concatenate(parts)
    assert streamed.size == whole.size and abs(whole.size - 16000) <= 1
    np.testing.assert_allclose(streamed, whole, atol=1e-5)
    # same filter as scipy's resample_poly, delayed by the 10 output samples a causal stream needs
    reference = resample_poly(x, *(np.array([16000, from_hz]) // np.gcd(16000, from_hz)))
    np.testing.assert_allclose(whole[2010:14010], reference[2000:14000], atol=1e-4)


def test_missing_portaudio_is_a_clear_error_at_construction():
    with mock.patch.dict(sys.modules, {"sounddevice": None}):
        with pytest.raises(AudioDeviceError, match="libportaudio2"):
            MicrophoneSource(MicrophoneSettings())


def test_missing_portaudio_library_is_a_clear_error(monkeypatch):
    real_import = __import__

    def no_portaudio(name, *args, **kwargs):
        if name == "sounddevice":
            raise OSError("PortAudio library not found")
        return real_import(name, *args, **kwargs)

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr("builtins.__import__", no_portaudio)
    with pytest.raises(AudioDeviceError, match="PortAudio library not found.*libportaudio2"):
        MicrophoneSource(MicrophoneSettings())


def test_runtime_modules_import_without_sounddevice():
    code = (
        "import sys; sys.modules['sounddevice'] = None\n"
        "import edge.hearing, edge.vad, edge.camera, edge.candidates, edge.config\n"
        "assert 'sounddevice' not in [m for m in sys.modules if sys.modules[m] is not None]\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=Path(__file__).parent.parent)
    assert proc.returncode == 0, proc.stderr


def _pulse_env(runtime_dir: Path, rate_hz: int) -> dict[str, str]:
    return {**os.environ, "XDG_RUNTIME_DIR": str(runtime_dir), "PULSE_LATENCY_MSEC": "20", "PULSE_RATE_HZ": str(rate_hz)}


def _run_probe(scenario: str, wav: Path, rate_hz: int, tmp_path: Path) -> tuple[dict, str]:
    """Start a private PulseAudio server, run the capture probe against it, always stop the server."""
    runtime_dir = tmp_path / "pulse-runtime"
    runtime_dir.mkdir(mode=0o700)
    start_server(str(runtime_dir), rate_hz)
    try:
        proc = subprocess.run(
            [sys.executable, str(PROBE), scenario, str(wav)],
            env=_pulse_env(runtime_dir, rate_hz), capture_output=True, text=True, timeout=90,
        )
    finally:
        kill_server(str(runtime_dir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


def _assert_heard_the_word(result: dict, voiced_s: float) -> None:
    start, end = result["utterance_s"]
    assert voiced_s - 0.1 <= end - start <= voiced_s + 0.8  # voiced part plus pre/post-roll and VAD hangover


def test_real_pulseaudio_stream_gives_an_utterance(word, tmp_path):
    path, voiced_s = word
    result, log = _run_probe("word", path, 16000, tmp_path)
    assert result["device_rate_hz"] == 16000 and result["frame_samples"] == 480
    start, end = result["utterance_s"]  # relative to the moment paplay was started
    assert 0.0 <= result["first_audio_latency_s"] < 0.5
    assert start < result["first_audio_latency_s"] < end
    assert voiced_s - 0.1 <= end - start <= voiced_s + 0.8  # voiced part plus pre/post-roll and VAD hangover
    assert result["dropped_frames"] == 0 and result["closed"] is True
    print("pulseaudio:", result)


def test_real_pulseaudio_resampled_from_48k(word, tmp_path):
    path, voiced_s = word
    result, log = _run_probe("resample", path, 48000, tmp_path)
    assert result["device_rate_hz"] == 48000 and result["frame_samples"] == 480
    assert "resampled to 16000 Hz" in log
    _assert_heard_the_word(result, voiced_s)
    # >= 23 blocks arrive in the 1 s stall and 10 fit; PulseAudio may also flush its start-up backlog then
    assert result["dropped_while_stalled"] >= 15 and result["dropped_frames"] == 0
    assert "dropped" in log and "consumer was too slow" in log
    assert "no such microphone" in result["bad_device_error"] and "pulse" in result["bad_device_error"]
    print("pulseaudio 48k:", result)


def test_real_pulseaudio_server_restart_is_survived(word, tmp_path):
    path, voiced_s = word
    result, log = _run_probe("restart", path, 16000, tmp_path)
    assert result["reconnects"] >= 1 and result["connected"] is True
    assert result["events"][:2] == ["device_lost", "device_recovered"]
    assert "microphone lost" in log and "microphone recovered" in log
    _assert_heard_the_word(result, voiced_s)
    print("pulseaudio restart:", result)


def test_real_pulseaudio_stalled_source_is_reopened_once_audio_returns(word, tmp_path):
    """The sink is suspended (a microphone that hangs without an error): lost after stall_timeout_s,
    silent reopens are retried quietly, and one device_recovered comes when audio flows again."""
    path, voiced_s = word
    result, log = _run_probe("stall", path, 16000, tmp_path)
    assert result["events_while_suspended"] == ["device_lost"]
    assert "microphone lost: no audio for 1 s" in log
    assert result["reconnects"] == 1 and result["connected"] is True
    assert result["events"] == ["device_lost", "device_recovered"]
    _assert_heard_the_word(result, voiced_s)
    print("pulseaudio stall:", result)


def test_real_pulseaudio_microphone_missing_at_start_is_waited_for(word, tmp_path):
    """No audio server when the source starts: device_lost at once (start does not raise), then the
    supervisor opens the device when it appears, device_recovered, and speech is heard."""
    path, voiced_s = word
    result, log = _run_probe("late", path, 16000, tmp_path)
    assert result["connected_at_start"] is False and result["events_at_start"] == ["device_lost"]
    assert "cannot be opened" in result["lost_reason"] and "microphone.device" in result["lost_reason"]
    assert "waiting for it (microphone.wait_for_device)" in log
    assert result["reconnects"] == 1 and result["connected"] is True
    assert result["events"] == ["device_lost", "device_recovered"]
    _assert_heard_the_word(result, voiced_s)
    print("pulseaudio late:", result)


def test_microphone_that_cannot_be_opened_is_an_error_when_not_waited_for():
    settings = MicrophoneSettings(device="no microphone is called this", wait_for_device=False)
    with pytest.raises(AudioDeviceError, match="no microphone is called this"):
        MicrophoneSource(settings).start()
