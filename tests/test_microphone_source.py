"""``microphone.source``: a sound file heard again and again, or a program's output, instead of a sound device."""
from __future__ import annotations

import sys
import time
from dataclasses import replace

import numpy as np
import pytest

from edge.audio import write_wav
from edge.config import ConfigError, config_from_mapping
from edge.hearing import AudioDeviceError, CommandMicrophone, MicrophoneSettings, WavFileSource, open_microphone

RATE = 16000
FRAME = 480  # 30 ms


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def read_frames(source, n: int, timeout_s: float = 10.0) -> list:
    frames, deadline = [], time.monotonic() + timeout_s
    while len(frames) < n and time.monotonic() < deadline:
        frame = source.read(0.2)
        if frame is not None:
            frames.append(frame)
    return frames


def test_a_file_is_heard_again_and_again_with_a_pause(tmp_path):
    path = tmp_path / "word.wav"
    write_wav(path, tone(0.09), RATE)  # exactly 3 frames
    source = open_microphone(MicrophoneSettings(source=str(path), file_pause_s=0.21))  # 7 frames of silence
    assert isinstance(source, WavFileSource)
    source.start()
    frames = read_frames(source, 25)
    loud = [int(np.abs(f.pcm).max() > 1000) for f in frames]
    assert loud == ([1] * 3 + [0] * 7) * 2 + [1] * 3 + [0] * 2
    assert not source.closed  # a microphone does not run out
    assert frames[-1].time_s - frames[0].time_s == pytest.approx(24 * 0.03, abs=1e-6)
    source.close()
    assert source.read(0.05) is None and source.closed


PRODUCER = """
import sys, time, numpy as np
t = np.arange(480) / 16000
frame = (8000 * np.sin(2 * np.pi * 440 * t)).astype('<i2').tobytes()
print('producer starting', file=sys.stderr, flush=True)
for _ in range({frames}):
    sys.stdout.buffer.write(frame); sys.stdout.buffer.flush(); time.sleep(0.03)
"""


def test_a_command_is_the_microphone_and_is_started_again_when_it_exits():
    events = []
    settings = MicrophoneSettings(source=f"command: {sys.executable} -c \"{PRODUCER.format(frames=10)}\"", reconnect_backoff_s=0.05)
    source = open_microphone(settings, on_event=events.append)
    assert isinstance(source, CommandMicrophone)
    source.start()
    try:
        frames = read_frames(source, 15)  # 10 from the first run, the rest after it was started again
        assert len(frames) == 15 and all(f.pcm.dtype == np.int16 and f.pcm.size == FRAME for f in frames)
        assert np.abs(frames[0].pcm).max() > 7000
        deadline = time.monotonic() + 10
        while [e["event"] for e in events][:2] != ["device_lost", "device_recovered"] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert events[0]["event"] == "device_lost" and "exited with status 0" in events[0]["reason"]
        assert events[1] == {"event": "device_recovered", "device": "microphone", "restarts": 1}
        assert source.connected
    finally:
        source.close()
    assert source.read(0.05) is None


def test_a_command_that_is_not_there_is_named_at_start():
    source = CommandMicrophone("no-such-recorder -r 16000", MicrophoneSettings())
    with pytest.raises(AudioDeviceError, match="no program 'no-such-recorder'"):
        source.start()
    with pytest.raises(AudioDeviceError, match="cannot be split"):
        CommandMicrophone("arecord 'unclosed", MicrophoneSettings())


def test_source_settings_are_checked_and_files_resolved_from_the_config(tmp_path):
    with pytest.raises(ConfigError, match=r"microphone\.source: 'command:' names no program"):
        config_from_mapping({"microphone": {"source": "command:"}})
    with pytest.raises(ConfigError, match=r"microphone\.source: empty"):
        config_from_mapping({"microphone": {"source": " "}})
    cfg = config_from_mapping({"microphone": {"source": "words/apple.wav"}}, base_dir=tmp_path)
    assert cfg.microphone.source == str(tmp_path / "words" / "apple.wav")
    cfg = config_from_mapping({"microphone": {"source": "command: arecord -q"}}, base_dir=tmp_path)
    assert cfg.microphone.source == "command: arecord -q"
    assert replace(cfg.microphone, source=None).source is None


def test_check_names_a_missing_sound_file_program_or_unsafe_token(tmp_path):
    from edge.preflight import preflight

    base = {"memory": {"state_dir": str(tmp_path / "state")}, "control": {"socket_path": str(tmp_path / "ctl.sock")}}
    assert preflight(config_from_mapping(base, base_dir=tmp_path)) == []
    missing = preflight(config_from_mapping({**base, "microphone": {"source": "nope.wav"}}, base_dir=tmp_path))
    assert missing == [f"microphone.source: {tmp_path / 'nope.wav'}: no readable sound file (a wav or FLAC file, or 'command: PROGRAM ARGS')"]
    program = preflight(config_from_mapping({**base, "microphone": {"source": "command: no-such-recorder -q"}}))
    assert program == ["microphone.source: no program 'no-such-recorder' (not on PATH and not an executable file)"]
    token = tmp_path / "web.token"
    token.write_text("a-long-enough-token-0123456789")
    token.chmod(0o640)
    web = preflight(config_from_mapping({**base, "web": {"enabled": True, "token_file": "web.token"}}, base_dir=tmp_path))
    assert web == [f"web.token_file {token}: mode 0640 lets other users read the token; chmod 600 {token}"]
