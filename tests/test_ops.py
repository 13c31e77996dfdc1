"""Operations (issue 19): hostile ask files, waking the controller, stale frames, failed teaches, the state lock, start-up errors, logs."""
from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from scipy.io import wavfile

from edge.audio import AudioError, read_request_audio, write_wav
from edge.daemon import AnswerSettings, Controller, TeachSettings, run_in_thread
from edge.encoders import DtwSpeech, PixelImage
from edge.features import SpeechFeatureSettings
from edge.matching import MatchSettings
from tests.daemon_fakes import DictMemory, EnergyEndpointer, QueueAudio, StaticFrames, ThreeSlots, centre_region, scene, silence, word

ROOT = Path(__file__).resolve().parents[1]
WAIT_S = 10.0


def controller(audio=None, frames=None, memory=None, answers=AnswerSettings(), **kw) -> tuple[Controller, list[dict]]:
    """A controller over in-memory devices; its events are collected in the returned list."""
    events: list[dict] = []
    if frames is None:
        frames = StaticFrames()
        frames.start()
    ctrl = Controller(
        speech_encoder=DtwSpeech(SpeechFeatureSettings()), image_encoder=PixelImage(), feature_settings=SpeechFeatureSettings(),
        memory=memory if memory is not None else DictMemory(), audio=audio if audio is not None else QueueAudio(),
        endpointer=EnergyEndpointer(), frames=frames, finder=ThreeSlots(), teach_region=centre_region,
        teach=kw.pop("teach", TeachSettings(timeout_s=5.0, sample_interval_ms=0.0)), answers=answers,
        matching=MatchSettings(unknown_word_distance=None, not_in_view_distance=None), publish=events.append, **kw,
    )
    return ctrl, events


def step_until(ctrl: Controller, events: list[dict], name: str, timeout_s: float = WAIT_S) -> dict:
    """Step the controller until an event called ``name`` appears (new since the call)."""
    seen = len(events)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ctrl.step(read_timeout_s=0.01)
        for e in events[seen:]:
            if e["event"] == name:
                return e
    raise AssertionError(f"no {name!r} event within {timeout_s} s; got {[e['event'] for e in events[seen:]]}")


def say(audio: QueueAudio, kind: int) -> None:
    audio.push(np.concatenate([silence(0.09), word(kind), silence(0.3)]))


class Running:
    """A controller running in its own thread (as in the daemon); stopped on exit."""

    def __init__(self, ctrl: Controller) -> None:
        self.ctrl = ctrl

    def __enter__(self) -> Controller:
        self.thread = run_in_thread(self.ctrl)
        return self.ctrl

    def __exit__(self, *exc: object) -> None:
        self.ctrl.stop()
        self.thread.join(timeout=WAIT_S)


def release_fifo(path: Path) -> None:
    """Unblock anyone stuck opening ``path`` for reading (what the code before the fix did)."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
    except OSError:
        pass


# ---------------------------------------------------------------------------- ask files (items 1-3)


def test_a_fifo_as_the_ask_file_is_refused_and_the_controller_keeps_answering(tmp_path):
    fifo = tmp_path / "r.wav"
    os.mkfifo(fifo)
    ctrl, _ = controller()
    try:
        with Running(ctrl):
            t0 = time.monotonic()
            reply = ctrl.request({"cmd": "ask", "wav": str(fifo)}, timeout_s=3.0)
            assert reply["ok"] is False and str(fifo) in reply["error"] and "FIFO" in reply["error"], reply
            assert time.monotonic() - t0 < 2.0
            assert ctrl.request({"cmd": "status"}, timeout_s=3.0)["state"] == "idle"
    finally:
        release_fifo(fifo)


def test_ask_files_longer_or_odder_than_a_request_are_refused_from_their_header(tmp_path):
    ten_minutes = tmp_path / "ten_minutes.wav"
    write_wav(ten_minutes, np.zeros(600 * 16000, np.float32), 16000)
    one_hz = tmp_path / "one_hz.wav"  # 1,244 bytes that would be upsampled x16000
    wavfile.write(one_hz, 1, np.random.default_rng(0).integers(-3000, 3000, 600).astype(np.int16))
    assert one_hz.stat().st_size == 1244
    long_flac = tmp_path / "long.flac"
    import soundfile

    soundfile.write(long_flac, np.zeros(600 * 16000, np.int16), 16000, format="FLAC")  # 10 minutes of silence: a few kB
    ctrl, _ = controller()
    with Running(ctrl):
        for path, reason in ((ten_minutes, "600.00 s of audio, longer than the 5.45 s"), (one_hz, "sample rate 1 Hz"),
                             (long_flac, "600.00 s of audio")):
            tracemalloc.start()
            reply = ctrl.request({"cmd": "ask", "wav": str(path)}, timeout_s=5.0)
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert reply["ok"] is False and reason in reply["error"] and str(path) in reply["error"], reply
            assert peak < 4 << 20, f"{path.name}: {peak / 1e6:.1f} MB allocated to refuse it"  # the header only (read: 1 MiB at most)


def test_the_longest_request_is_answered_and_a_little_longer_is_not(tmp_path):
    rng = np.random.default_rng(1)
    ok = tmp_path / "ok.wav"  # 5.4 s at 48 kHz stereo: within max_utterance_ms + pre/post roll (5.45 s)
    wavfile.write(ok, 48000, (rng.normal(0, 0.05, (int(5.4 * 48000), 2)) * 32767).astype(np.int16))
    too_long = tmp_path / "too_long.wav"
    write_wav(too_long, rng.normal(0, 0.05, int(5.5 * 16000)).astype(np.float32), 16000)
    ctrl, _ = controller()
    with Running(ctrl):
        assert ctrl.request({"cmd": "ask", "wav": str(ok)}, timeout_s=WAIT_S)["event"] == "unknown_word"  # nothing taught yet
        reply = ctrl.request({"cmd": "ask", "wav": str(too_long)}, timeout_s=WAIT_S)
        assert reply["ok"] is False and "5.50 s of audio" in reply["error"]


def test_errors_about_an_ask_file_never_quote_its_bytes(tmp_path):
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$saltsalt$hash:19000:0:99999:7:::\n")
    riff = tmp_path / "riff.wav"
    riff.write_bytes(b"RIFF\x10\x00\x00\x00WAVEsecret-chunk-bytes" + b"x" * 40)
    ctrl, _ = controller()
    with Running(ctrl):
        for path in (secret, riff, tmp_path, tmp_path / "missing.wav"):
            reply = ctrl.request({"cmd": "ask", "wav": str(path)}, timeout_s=5.0)
            assert reply["ok"] is False and reply["error"].startswith(f"{path}: "), reply
            for leaked in ("root", "salt", "secret", "xxxx"):
                assert leaked not in reply["error"].replace(str(path), "")
    with pytest.raises(AudioError) as err:  # the reader every other path uses too
        from edge.audio import read_wav

        read_wav(secret)
    assert "root" not in str(err.value).replace(str(secret), "")


def test_request_audio_is_read_through_flac_and_wav_alike(tmp_path):
    import soundfile

    x = (0.3 * np.sin(2 * np.pi * 440 * np.arange(8000) / 16000)).astype(np.float32)
    soundfile.write(tmp_path / "a.flac", (x * 32767).astype(np.int16), 16000, format="FLAC")
    write_wav(tmp_path / "a.wav", x, 16000)
    a = read_request_audio(tmp_path / "a.flac", 16000, 5450, 2.0)
    b = read_request_audio(tmp_path / "a.wav", 16000, 5450, 2.0)
    assert a.shape == b.shape == (8000,) and np.allclose(a, b, atol=1e-4)


@pytest.mark.parametrize("subtype, channels", [("PCM_U8", 1), ("PCM_16", 2), ("PCM_24", 1), ("PCM_24", 3), ("PCM_32", 1),
                                               ("FLOAT", 2), ("DOUBLE", 1)])
def test_request_wavs_decode_like_the_general_reader(tmp_path, subtype, channels):
    import soundfile

    from edge.audio import read_wav

    from edge.audio import resample

    rng = np.random.default_rng(2)
    x = (0.4 * rng.uniform(-1, 1, (24000, channels))).astype(np.float32)
    path = tmp_path / "a.wav"
    soundfile.write(path, x, 48000, subtype=subtype)
    reference = resample(soundfile.read(path, dtype="float32")[0].reshape(24000, channels).mean(axis=1), 48000, 16000)  # libsndfile's decoding
    assert np.allclose(read_request_audio(path, 16000, 5450, 2.0), read_wav(path, 16000), atol=1e-6)
    assert np.allclose(read_wav(path, 16000), reference, atol=2e-5 if subtype == "PCM_U8" else 1e-6)
    if subtype == "PCM_16" and channels == 1:  # a memory export's wav: the same parser
        from edge.memory import decode_wav

        pcm, rate = decode_wav(path.read_bytes(), "a.wav")
        assert rate == 48000 and np.array_equal(pcm, soundfile.read(path, dtype="int16")[0])


DAMAGED_WAVS = {
    "chunkless body of zeros": b"RIFF\x24\0\0\0WAVE" + b"\0" * 32,  # issue 19: scipy's UnboundLocalError
    "nothing after WAVE": b"RIFF\x24\0\0\0WAVE",
    "fmt chunk cut short": b"RIFF\x24\0\0\0WAVEfmt \x10\0\0\0\x01\0",  # scipy's struct.error
    "fmt without data": b"RIFF\x24\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0\x80\x3e\0\0\0\x7d\0\0\x02\0\x10\0",
    "a chunk claiming 2 GB": b"RIFF\x24\0\0\0WAVEJUNK\xff\xff\xff\x7f" + b"\0" * 16,
    "RIFX of zeros": b"RIFX\0\0\0\x24WAVE" + b"\0" * 32,
    "RF64 of zeros": b"RF64\xff\xff\xff\xffWAVE" + b"\0" * 32,
    "a 0 Hz fmt": b"RIFF\x24\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0\0\0\0\0\0\0\0\0\x02\0\x10\0data\x04\0\0\0\1\0\2\0",
}


@pytest.mark.parametrize("name", DAMAGED_WAVS)
def test_a_damaged_wav_is_one_line_naming_it_on_every_reader_path(tmp_path, name):
    """The daemon's ask, the general reader (bench, microphone.source, `showsay` tools) and a memory export's wav."""
    from edge.audio import read_wav
    from edge.memory import MemoryInputError, decode_wav

    path = tmp_path / "damaged.wav"
    path.write_bytes(DAMAGED_WAVS[name])
    ctrl, _ = controller()
    with Running(ctrl):
        reply = ctrl.request({"cmd": "ask", "wav": str(path)}, timeout_s=5.0)
    assert reply["ok"] is False and reply["error"].startswith(f"{path}: ") and "\n" not in reply["error"], reply
    for read in (lambda: read_wav(path, 16000), lambda: read_request_audio(path, 16000, 5450, 2.0)):
        with pytest.raises(AudioError, match=f"^{path}: ") as err:
            read()
        assert "\n" not in str(err.value)
    with pytest.raises(MemoryInputError, match="^pair-000001.wav: "):
        decode_wav(path.read_bytes(), "pair-000001.wav")


def test_a_wav_cut_short_keeps_the_frames_it_holds(tmp_path):
    from edge.audio import read_wav

    x = (0.3 * np.sin(np.arange(16000) / 7.0)).astype(np.float32)
    write_wav(tmp_path / "whole.wav", x, 16000)
    data = (tmp_path / "whole.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(data[: 44 + 2 * 1000 + 1])  # 1,000 frames and half of the next
    assert np.allclose(read_wav(tmp_path / "cut.wav"), x[:1000], atol=1 / 32767 + 1e-6)


def test_a_damaged_wav_in_a_memory_export_is_refused_by_import_in_one_line(tmp_path, capsys):
    import hashlib
    import json

    from edge.cli import main
    from edge.memory import Memory

    with Memory(tmp_path / "a.sqlite3") as mem:
        mem.teach(np.ones(1600, np.int16), 16000, np.zeros((8, 8, 3), np.uint8), label="cup")
        mem.export(tmp_path / "export")
    meta_path = next((tmp_path / "export").glob("pair-*.json"))
    meta = json.loads(meta_path.read_text())
    wav = tmp_path / "export" / meta["audio"]
    wav.write_bytes(DAMAGED_WAVS["chunkless body of zeros"])
    meta["audio_sha256"] = hashlib.sha256(wav.read_bytes()).hexdigest()  # a consistent but damaged export
    meta_path.write_text(json.dumps(meta))
    code = main(["memory", "import", str(tmp_path / "export"), "--db", str(tmp_path / "b.sqlite3")])
    err = capsys.readouterr().err
    assert code == 1 and err.count("\n") == 1 and f"{wav}: not a readable wav or FLAC file (libsndfile: Error in WAV file. No 'data' chunk marker)" in err, err


def test_big_endian_rifx_wavs_are_read_too(tmp_path):
    import struct

    from edge.audio import read_wav

    pcm = (np.sin(np.arange(8000) / 5.0) * 12000).astype(">i2")
    fmt = struct.pack(">HHIIHH", 1, 1, 16000, 32000, 2, 16)
    body = b"WAVE" + b"fmt " + struct.pack(">I", len(fmt)) + fmt + b"data" + struct.pack(">I", pcm.nbytes) + pcm.tobytes()
    path = tmp_path / "rifx.wav"
    path.write_bytes(b"RIFX" + struct.pack(">I", len(body)) + body)
    assert np.allclose(read_request_audio(path, 16000, 5450, 2.0), read_wav(path, 16000))
    assert np.allclose(read_request_audio(path, 16000, 5450, 2.0), pcm.astype(np.float32) / 32768.0)


# ---------------------------------------------------------------------------- waking the controller (item 14)


class QuietMicrophone:
    """An audio source whose read() waits a long time for audio that does not come, unless woken (a silent live stream)."""

    def __init__(self) -> None:
        self.closed = False
        self.dropped_frames = 0
        self._woken = threading.Event()

    def read(self, timeout_s: float):
        self._woken.wait(5.0)  # like a device whose next block is far away
        self._woken.clear()
        return None

    def wake(self) -> None:
        self._woken.set()

    def close(self) -> None:
        self.closed = True
        self.wake()


def test_a_command_wakes_the_controller_instead_of_waiting_for_audio():
    audio = QuietMicrophone()
    ctrl, _ = controller(audio=audio, answers=AnswerSettings(audio_lost_s=60.0))
    with Running(ctrl):
        time.sleep(0.2)  # the loop is now waiting in read()
        for _ in range(3):
            reply = ctrl.request({"cmd": "status"}, timeout_s=2.0)
            assert reply["ok"] is True, reply
        audio.close()


def test_microphone_and_wav_sources_return_from_read_when_woken(tmp_path, monkeypatch):
    from edge import hearing

    monkeypatch.setattr(hearing, "_import_sounddevice", lambda: object())  # no device needed: nothing is opened
    mic = hearing.MicrophoneSource(hearing.MicrophoneSettings())
    write_wav(tmp_path / "w.wav", np.zeros(16000 * 60, np.float32), 16000)
    wav = hearing.WavFileSource(tmp_path / "w.wav", realtime=True)
    wav.start()
    wav.read(1.0)
    time.sleep(0.05)
    for source, timeout_s in ((mic, 5.0), (wav, 0.5)):
        threading.Timer(0.1, source.wake).start()
        t0 = time.monotonic()
        source.read(timeout_s)
        assert time.monotonic() - t0 < timeout_s * 0.8, type(source).__name__


# ---------------------------------------------------------------------------- stale frames (item 10)


def test_a_dead_cameras_last_frame_is_neither_taught_nor_searched():
    frames = StaticFrames(still=False)  # a camera whose frames age
    frames.start()
    memory = DictMemory()
    audio = QueueAudio()
    ctrl, events = controller(audio=audio, frames=frames, memory=memory, answers=AnswerSettings(max_frame_age_s=0.3))
    frames.show(scene(None, "circle", None))
    ctrl.press("test")
    step_until(ctrl, events, "teach_started")
    say(audio, 0)
    assert step_until(ctrl, events, "taught")["pair_id"] == 1  # a live camera: taught as ever
    time.sleep(0.5)  # the camera stops delivering
    lost = step_until(ctrl, events, "device_lost")
    assert lost["device"] == "camera" and "no new frame" in lost["reason"]
    ctrl.press("test")
    step_until(ctrl, events, "teach_started")
    say(audio, 1)
    cancelled = step_until(ctrl, events, "teach_cancelled")
    assert cancelled["reason"] == "camera_frame_too_old" and cancelled["frame_age_s"] > 0.3
    assert ctrl.state == "idle" and [p.pair_id for p in memory.pairs()] == [1]  # nothing stored from the old frame
    say(audio, 0)
    answer = step_until(ctrl, events, "not_in_view")
    assert answer["reason"] == "camera_frame_too_old" and "box" not in answer
    frames.show(scene(None, "circle", None))  # frames again
    assert step_until(ctrl, events, "device_recovered")["device"] == "camera"
    say(audio, 0)
    assert step_until(ctrl, events, "resolved")["pair_id"] == 1


def test_a_camera_that_never_opens_is_reported_lost():
    from edge.camera import Camera, CameraSettings

    events: list[dict] = []
    with Camera(CameraSettings(source="9", reconnect_backoff_s=0.05, max_backoff_s=0.2), on_event=events.append):
        deadline = time.monotonic() + WAIT_S
        while not events and time.monotonic() < deadline:
            time.sleep(0.02)
    assert events and events[0]["event"] == "device_lost" and events[0]["device"] == "camera" and "9" in events[0]["reason"]
    assert [e["event"] for e in events].count("device_lost") == 1  # once, not per attempt


# ---------------------------------------------------------------------------- failed teaches (item 11)


def test_a_failed_teach_ends_teach_mode_at_once_with_its_reason():
    class FullDisk(DictMemory):
        def teach(self, *args, **kw):
            raise OSError(28, "No space left on device")

    audio = QueueAudio()
    ctrl, events = controller(audio=audio, memory=FullDisk(), teach=TeachSettings(timeout_s=30.0, sample_interval_ms=0.0))
    ctrl.frames.show(scene(None, "circle", None))
    ctrl.press("test")
    step_until(ctrl, events, "teach_started")
    say(audio, 0)
    cancelled = step_until(ctrl, events, "teach_cancelled", timeout_s=5.0)  # not after the 30 s timeout
    assert cancelled["reason"] == "failed" and "No space left on device" in cancelled["error"]
    assert ctrl.state == "idle"
    ctrl.press("test")  # the next press starts a new teach, it does not cancel the failed one
    assert step_until(ctrl, events, "teach_started")["source"] == "test"


def test_a_label_over_the_limit_is_refused_when_teaching_starts():
    ctrl, events = controller()
    with Running(ctrl):
        reply = ctrl.request({"cmd": "teach", "label": "x" * 201}, timeout_s=5.0)
        assert reply["ok"] is False and "at most 200 characters" in reply["error"]
        assert ctrl.state == "idle" and not [e for e in events if e["event"] == "teach_started"]
        assert ctrl.request({"cmd": "teach", "label": "y" * 200}, timeout_s=5.0)["state"] == "teaching"


# ---------------------------------------------------------------------------- the state directory's lock (item 9)


def daemon_config(tmp: Path, **sections: dict):
    from edge.config import config_from_mapping

    values = {"encoders": {"speech": "dtw", "image": "pixels"}, "memory": {"state_dir": str(tmp / "state")},
              "control": {"socket_path": str(tmp / "c.sock")}, "button": {"kind": "none"}}
    for key, value in sections.items():
        values[key] = {**values.get(key, {}), **value}
    return config_from_mapping(values)


def in_memory_daemon(cfg):
    from edge.service import Daemon

    frames = StaticFrames()
    from edge.button import NoButton

    return Daemon(cfg, audio=QueueAudio(), frames=frames, button=NoButton())


def test_a_second_daemon_on_the_same_state_directory_is_refused(tmp_path):
    from edge.memory import StateDirInUse

    first = in_memory_daemon(daemon_config(tmp_path))
    first.start()
    try:
        second = in_memory_daemon(daemon_config(tmp_path, control={"socket_path": str(tmp_path / "other.sock")}))
        with pytest.raises(StateDirInUse, match=rf"memory.state_dir {tmp_path / 'state'}: in use by another showsay daemon \(pid {os.getpid()}\)"):
            second.start()
        second.close()
        assert not (tmp_path / "other.sock").exists()  # refused before its socket was bound
    finally:
        first.close()
    again = in_memory_daemon(daemon_config(tmp_path))  # the lock goes with the daemon
    again.start()
    again.close()


# ---------------------------------------------------------------------------- start-up errors in one line (item 12)


def run_daemon(config: Path, env: dict | None = None, timeout_s: float = 60.0, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "XDG_RUNTIME_DIR": str(config.parent / "xdg"), **(env or {})}  # no sound server: no microphone
    (config.parent / "xdg").mkdir(exist_ok=True)
    env.pop("NOTIFY_SOCKET", None)
    return subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(config)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout_s, **kw)


def write_yaml(tmp: Path, **sections: dict) -> Path:
    import yaml

    values = {"encoders": {"speech": "dtw", "image": "pixels"}, "memory": {"state_dir": str(tmp / "state")},
              "control": {"socket_path": str(tmp / "c.sock")}, "camera": {"source": str(ROOT / "edge" / "samples" / "scene.mp4")}}
    for key, value in sections.items():
        values[key] = {**values.get(key, {}), **value}
    path = tmp / "showsay.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def one_line_error(result: subprocess.CompletedProcess, codes: tuple[int, ...] = (1,)) -> str:
    """The one error line of a refused start (1: the start failed; 2: the config's preflight refused it)."""
    assert result.returncode in codes, (result.returncode, result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, result.stderr[-3000:]
    return errors[0]


@pytest.mark.timeout(120)
def test_socket_problems_at_start_are_one_line_and_the_memory_is_not_touched(tmp_path):
    from edge.control import ControlServer, ControlSettings

    live = tmp_path / "live"
    live.mkdir()
    with ControlServer(ControlSettings(socket_path=str(live / "c.sock")), lambda request: {}):  # another daemon answers there
        line = one_line_error(run_daemon(write_yaml(live)))
    assert "cannot start" in line and "another showsay daemon is answering on this socket" in line
    regular = tmp_path / "a"
    regular.mkdir()
    (regular / "c.sock").write_text("not a socket")
    line = one_line_error(run_daemon(write_yaml(regular)), codes=(1, 2))  # the preflight of `check` may say it first
    assert "is not a socket" in line
    long_dir = tmp_path / "b"
    long_dir.mkdir()
    line = one_line_error(run_daemon(write_yaml(long_dir, control={"socket_path": str(long_dir / ("s" * 120))})), codes=(1, 2))
    assert "107" in line and ("too long" in line or "at most" in line)
    for d in (live, regular, long_dir):
        assert not (d / "state" / "memory.sqlite3").exists()  # refused before the memory was opened


@pytest.mark.timeout(120)
def test_a_full_disk_at_first_start_is_one_line_naming_the_memory(tmp_path):
    import resource
    import signal

    def small_files() -> None:  # writes past 8 KiB fail with EFBIG, as on a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))

    line = one_line_error(run_daemon(write_yaml(tmp_path), preexec_fn=small_files))
    assert "cannot start" in line and str(tmp_path / "state" / "memory.sqlite3") in line
    assert not (tmp_path / "state" / "memory.sqlite3").exists()


def test_a_fifo_memory_file_is_refused_without_hanging(tmp_path):
    from edge.memory import Memory, MemoryFileError

    fifo = tmp_path / "memory.sqlite3"
    os.mkfifo(fifo)
    result: list = []

    def open_it() -> None:
        try:
            Memory(fifo)
        except MemoryFileError as exc:
            result.append(str(exc))

    t = threading.Thread(target=open_it, daemon=True)
    t.start()
    t.join(timeout=5.0)
    release_fifo(fifo)
    t.join(timeout=5.0)
    assert result and "not a regular file" in result[0] and str(fifo) in result[0]


def test_gpiod_not_installed_is_a_clear_start_error():
    from edge.button import ButtonSettings, GpiodButton

    with mock.patch.dict(sys.modules, {"gpiod": None, "gpiod.line": None}):
        with pytest.raises(RuntimeError, match="pip install gpiod"):
            GpiodButton(ButtonSettings(kind="gpiod")).start(lambda: None)


# ---------------------------------------------------------------------------- logs (items 4, 15)


@pytest.mark.timeout(240)
def test_no_event_line_is_lost_while_the_microphone_is_retried(tmp_path):
    """3,000 event lines from ``showsay run`` while it keeps retrying a missing microphone (PortAudio re-initialised meanwhile)."""
    from edge.control import ControlClient

    config = write_yaml(tmp_path, microphone={"reconnect_backoff_s": 0.02, "max_backoff_s": 0.2}, teach={"timeout_s": 120.0})
    err = tmp_path / "stderr"
    with err.open("w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(config)], cwd=ROOT, stdout=subprocess.DEVNULL,
                                stderr=f, env={**os.environ, "XDG_RUNTIME_DIR": str(tmp_path)})  # no sound server: no microphone
        try:
            client = ControlClient(tmp_path / "c.sock")
            deadline = time.monotonic() + 60
            while True:
                assert proc.poll() is None and time.monotonic() < deadline, err.read_text()[-3000:]
                try:
                    if client.request({"cmd": "status"}, timeout_s=5)["ok"]:
                        break
                except Exception:
                    pass
                time.sleep(0.1)
            for _ in range(1500):
                assert client.request({"cmd": "teach"}, timeout_s=10)["ok"]
                assert client.request({"cmd": "cancel"}, timeout_s=10)["ok"]
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    text = err.read_text()
    events = text.count('event {"event":"teach_started"') + text.count('event {"event":"teach_cancelled"')
    assert events == 3000, f"{3000 - events} of 3000 event lines lost"
    assert '"event":"ready"' in text


def test_the_microphone_supervisor_does_not_reinitialise_portaudio_per_attempt(monkeypatch):
    from edge import hearing

    class NoDevices:
        """sounddevice without any input: every open fails."""

        initialised = 0

        def _initialize(self):
            NoDevices.initialised += 1

        def _terminate(self):
            pass

        def query_devices(self, *args, **kw):
            raise RuntimeError("no input device")

    monkeypatch.setattr(hearing, "_import_sounddevice", NoDevices)
    mic = hearing.MicrophoneSource(hearing.MicrophoneSettings(reconnect_backoff_s=0.01, max_backoff_s=0.25))
    opens = []
    monkeypatch.setattr(mic, "_open", lambda real=mic._open: (opens.append(1), real())[1])
    mic.start()
    time.sleep(1.2)
    mic.close()
    assert len(opens) >= 6
    assert NoDevices.initialised <= 1 + 1.2 / 0.25 + 1 < len(opens), (NoDevices.initialised, len(opens))


def test_repeated_device_warnings_are_held_back_and_counted():
    from edge.logs import RepeatLimiter

    now = [0.0]
    limiter = RepeatLimiter(window_s=60.0, burst=3, clock=lambda: now[0])
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(limiter)
    log = logging.getLogger("edge.hearing.test_limiter")
    log.addHandler(handler)
    log.propagate = False
    try:
        for i in range(10):
            log.warning("microphone: cannot open (%s); retrying in %.1f s", f"error {i}", 8.0)
            now[0] += 1.0
        logging.getLogger("edge.daemon.test_limiter").addHandler(handler)
        now[0] = 61.0
        log.warning("microphone: cannot open (%s); retrying in %.1f s", "error 10", 8.0)
        log.error("another message")
    finally:
        log.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert lines[:3] == [f"microphone: cannot open (error {i}); retrying in 8.0 s" for i in range(3)]
    assert lines[3] == "microphone: cannot open (error 10); retrying in 8.0 s (7 more like this in the last 60 s not shown)"
    assert lines[4] == "another message" and len(lines) == 5


@pytest.mark.timeout(120)
def test_under_journald_lines_carry_priorities_and_no_timestamp_and_opencv_stays_quiet(tmp_path):
    config = write_yaml(tmp_path, camera={"source": "9"}, microphone={"reconnect_backoff_s": 0.05, "max_backoff_s": 0.1})
    err = tmp_path / "journal"
    with err.open("w") as f:
        st = os.fstat(f.fileno())
        proc = subprocess.Popen([sys.executable, "-m", "edge", "run", "--config", str(config)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=f,
                                env={**os.environ, "XDG_RUNTIME_DIR": str(tmp_path), "JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        try:
            deadline = time.monotonic() + 60
            while '"event":"ready"' not in err.read_text() and time.monotonic() < deadline:
                assert proc.poll() is None, err.read_text()[-3000:]
                time.sleep(0.1)
            time.sleep(2.0)  # the missing microphone is retried about every 0.1 s
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    lines = err.read_text().splitlines()
    assert lines and all(line[:3] in ("<2>", "<3>", "<4>", "<6>", "<7>") for line in lines), lines[:5]
    assert any(line.startswith("<6>edge.daemon: event {\"event\":\"ready\"") for line in lines)
    assert any(line.startswith("<4>edge.hearing: microphone") for line in lines)
    assert not any("[ WARN" in line or "VIDEOIO" in line for line in lines), [line for line in lines if "WARN" in line]
    retries = [line for line in lines if "microphone: cannot open" in line]
    assert 1 <= len(retries) <= 3, retries  # about 20 retries, three shown


def test_a_request_read_past_its_time_limit_is_refused_naming_the_limit(tmp_path, monkeypatch):
    """The read deadline is checked before each of libsndfile's reads (a slow network file system)."""
    import edge.audio

    path = tmp_path / "ok.wav"
    write_wav(path, np.zeros(16000, np.float32), 16000)
    clock = iter(range(0, 10_000, 1))  # every look at the clock is one second later
    monkeypatch.setattr(edge.audio.time, "monotonic", lambda: float(next(clock)))
    with pytest.raises(AudioError, match=rf"^{path}: reading took longer than 2.5 s; refused$"):
        read_request_audio(path, 16000, 5450, 2.5)
    monkeypatch.undo()
    assert read_request_audio(path, 16000, 5450, 2.5).shape == (16000,)
