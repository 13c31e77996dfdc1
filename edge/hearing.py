"""Audio sources: fixed-size 16-bit PCM frames from a live microphone or from a wav file.

Both sources hand out :class:`AudioFrame` objects holding exactly ``frame_ms`` of mono audio at
the configured rate, through the same small :class:`AudioSource` interface, so the endpointer and
the daemon cannot tell a file from a microphone.

:class:`MicrophoneSource` runs a sounddevice (PortAudio) input stream whose callback only copies
the block into a bounded queue: a slow consumer never blocks the audio thread, and blocks that do
not fit are dropped, counted and logged. Resampling (when the device only offers 44.1 or 48 kHz)
and framing happen on the consumer's side, in :meth:`MicrophoneSource.read`. A supervisor thread
reopens the stream with exponential backoff when the device errors out or stops delivering
(unplugged USB microphone, restarted sound server). Every PortAudio call that can block (opening
and starting a stream, aborting and closing it, re-initialising) runs on a short-lived helper
thread and is waited for at most ``portaudio_timeout_s``: PortAudio 19.6 can loop for ever in its
stream thread once the sound server dies, and then ``Pa_AbortStream``/``Pa_CloseStream`` wait for
that thread for ever. Such a stream is abandoned (and PortAudio is never terminated again, not
even at exit, where sounddevice would otherwise hang in ``Pa_Terminate``), and a new one is
opened. sounddevice is imported when a MicrophoneSource is made, never at module import, so
file-only users need no PortAudio.
"""
from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from math import ceil, gcd
from typing import Any, Protocol

import numpy as np

from edge.audio import read_wav, to_int16
from edge.settings import SettingsError, setting

log = logging.getLogger(__name__)

EventSink = Callable[[dict], None]
"""Receives device events such as ``{"event": "device_lost", "device": "microphone", ...}``."""

FALLBACK_DEVICE_RATES_HZ = (48000, 44100, 32000, 22050, 16000)
_WAKE = object()  # queued by wake(): read() returns at once
COMMAND_PREFIX = "command:"  # microphone.source: a program's standard output as the microphone


class AudioDeviceError(RuntimeError):
    """The audio device (or the library that drives it) cannot be used; the message says what to do."""


class PortAudioStuck(AudioDeviceError):
    """A PortAudio call did not return within ``portaudio_timeout_s``; it is left running on its helper thread."""


MAX_STUCK_CALLS = 4
"""PortAudio calls left hanging at which the microphone stops trying (each holds a thread, a looping one a core)."""
STUCK_HINT = ("PortAudio 19.6 loops for ever in its ALSA stream thread after the sound server dies (PortAudio issue #1037, "
              "fixed after 19.7.0), and closing such a stream never returns; restart the service to reclaim that thread")


@dataclass(frozen=True)
class MicrophoneSettings:
    """Which microphone to open and how its audio is cut into frames."""

    device: str | None = setting(
        None,
        "input device: a name substring (case-insensitive) or a PortAudio index as a string; null = the system default",
    )
    sample_rate_hz: int = setting(
        16000, "rate of the frames handed on, Hz (the device is resampled to it)", choices=(8000, 16000, 32000, 48000)
    )
    device_rate_hz: int | None = setting(
        None,
        "rate to open the device at, Hz; null = sample_rate_hz if the device takes it, else its own default rate",
        min=8000,
        max=192000,
    )
    frame_ms: int = setting(30, "length of one frame, ms (webrtcvad takes 10, 20 or 30)", choices=(10, 20, 30))
    queue_frames: int = setting(
        100, "device blocks buffered for a slow consumer before new ones are dropped (100 x 30 ms = 3 s)", min=2, max=10000
    )
    stall_timeout_s: float = setting(
        3.0,
        "a running stream that delivers nothing for this long is taken as lost and reopened, s",
        min=0.1,
        max=600,
    )
    first_audio_timeout_s: float = setting(
        5.0, "a freshly opened stream that delivers nothing for this long is taken as lost, s", min=0.1, max=600
    )
    portaudio_timeout_s: float = setting(
        3.0,
        "a PortAudio call (opening, starting or closing the stream, re-initialising) that has not returned after this long\n"
        "is taken as stuck: the stream is abandoned and a new one opened; also the most a stop waits for the microphone, s",
        min=0.5,
        max=60,
    )
    reconnect_backoff_s: float = setting(0.5, "first wait before reopening a lost device, s (doubles each failure)", min=0.01, max=60)
    max_backoff_s: float = setting(8.0, "longest wait between reopen attempts, s", min=0.01, max=600)
    wait_for_device: bool = setting(
        True,
        "a microphone that cannot be opened at start is waited for (device_lost, then reopen attempts with backoff) "
        "instead of refusing to start: a USB microphone may appear after the service",
    )
    source: str | None = setting(
        None,
        "where the audio comes from: null = the sound device above; a wav or FLAC file, heard in real time again and again\n"
        "(file_pause_s of silence between plays: a laptop without a microphone); or 'command: PROGRAM ARGS', a program\n"
        "started without a shell whose standard output is raw 16-bit little-endian mono PCM at sample_rate_hz, in real time,\n"
        "e.g. 'command: arecord -q -t raw -f S16_LE -c 1 -r 16000' or 'command: parec --raw --format=s16le --channels=1 --rate=16000'\n"
        "(restarted with the backoff above when it exits); a relative file path is taken from the config file's directory",
    )
    file_pause_s: float = setting(3.0, "with source a file: silence heard between two plays of it, s", min=0.0, max=3600.0)

    def validate(self) -> None:
        """A command source must name a program."""
        if self.source is not None and self.source.startswith(COMMAND_PREFIX) and not self.source[len(COMMAND_PREFIX):].strip():
            raise SettingsError(f"source: {self.source!r} names no program (e.g. 'command: arecord -q -t raw -f S16_LE -c 1 -r 16000')")
        if self.source is not None and not self.source.strip():
            raise SettingsError("source: empty; use null for the sound device")

    @property
    def frame_samples(self) -> int:
        """Samples in one frame at ``sample_rate_hz``."""
        return self.sample_rate_hz * self.frame_ms // 1000


@dataclass(frozen=True)
class AudioFrame:
    """``frame_ms`` of mono int16 PCM; ``time_s`` is when its first sample was captured (monotonic s)."""

    pcm: np.ndarray  # (samples,) int16
    time_s: float
    sample_rate_hz: int = 16000

    @property
    def duration_s(self) -> float:
        """Length of the frame, seconds."""
        return self.pcm.shape[0] / self.sample_rate_hz


class AudioSource(Protocol):
    """Anything that yields fixed-size PCM frames: a microphone, a wav file, a test fake."""

    dropped_frames: int
    closed: bool

    def start(self) -> None:
        """Begin capturing (or reading)."""

    def read(self, timeout_s: float) -> AudioFrame | None:
        """The next frame, or None when none arrived within ``timeout_s``."""

    def close(self) -> None:
        """Stop capturing and release the device."""


class StreamResampler:
    """Polyphase FIR resampling of a stream in arbitrary chunks; output equals resampling it whole.

    Uses the same Kaiser-windowed low-pass as ``scipy.signal.resample_poly``; being causal, it delays
    the signal by 10 output samples when downsampling (0.6 ms at 16 kHz), which is not compensated.
    """

    def __init__(self, from_hz: int, to_hz: int) -> None:
        from scipy.signal import firwin

        g = gcd(int(from_hz), int(to_hz))
        self.up, self.down = int(to_hz) // g, int(from_hz) // g
        max_rate = max(self.up, self.down)
        half_len = 10 * max_rate
        h = firwin(2 * half_len + 1, 1.0 / max_rate, window=("kaiser", 5.0)) * self.up
        taps = ceil(h.size / self.up)
        h = np.concatenate([h, np.zeros(taps * self.up - h.size)])
        self._phases = h.reshape(taps, self.up).T.astype(np.float32)  # (up, taps): phase p holds h[p + j*up]
        self._taps = taps
        self._history = np.zeros(taps - 1, np.float32)  # input samples before the current chunk
        self._consumed = 0  # input samples seen so far
        self._produced = 0  # output samples made so far

    def process(self, chunk: np.ndarray) -> np.ndarray:
        """Resample the next chunk of float samples; returns every output sample it completes."""
        x = np.concatenate([self._history, chunk.astype(np.float32, copy=False)])
        base = self._consumed - self._history.size  # absolute index of x[0]
        self._consumed += chunk.size
        # output n needs input index (n*down)//up, which must already have arrived
        last = (self._consumed * self.up - 1) // self.down  # largest n with (n*down)//up <= consumed-1
        n = np.arange(self._produced, last + 1, dtype=np.int64)
        self._produced = last + 1
        keep = self._taps - 1
        self._history = x[x.size - keep :] if keep else x[:0]
        if n.size == 0:
            return np.zeros(0, np.float32)
        m = n * self.down
        centre = m // self.up - base  # index into x of the newest input each output uses
        idx = centre[:, None] - np.arange(self._taps)[None, :]
        return np.einsum("nj,nj->n", self._phases[m % self.up], x[idx]).astype(np.float32)


def _import_sounddevice() -> Any:
    try:
        import sounddevice
    except (ImportError, OSError) as exc:
        raise AudioDeviceError(
            f"microphone: the sounddevice library cannot be loaded ({exc}); it needs PortAudio: "
            "install it with `apt-get install libportaudio2` and `pip install sounddevice`"
        ) from None
    return sounddevice


def _abandon_stream(stream: Any) -> None:
    """Abort and close a sounddevice stream (may block for ever on a looping PortAudio: call it through ``_portaudio``)."""
    try:
        stream.abort(ignore_errors=True)
        stream.close(ignore_errors=True)
    except Exception as exc:  # a vanished device can fail here too; the stream is gone either way
        log.debug("microphone: closing the lost stream failed (%s)", exc)


def _emit_device_event(on_event: EventSink | None, event: dict) -> None:
    """Hand a microphone's device event to its handler; a failing handler is logged, never raised into the audio thread."""
    if on_event is not None:
        try:
            on_event(event)
        except Exception:
            log.exception("microphone: event handler failed on %s", event.get("event"))


class MicrophoneSource:
    """Live frames from a sounddevice input stream, resampled and framed, with reconnection."""

    def __init__(self, settings: MicrophoneSettings, on_event: EventSink | None = None) -> None:
        self.settings = settings
        self._sd = _import_sounddevice()
        self._on_event = on_event
        # (mono block, capture time of its first sample, stream generation, its rate)
        self._blocks: queue.Queue[tuple[np.ndarray, float, int, int]] = queue.Queue(maxsize=settings.queue_frames)
        self.dropped_frames = 0  # device blocks dropped because the queue was full
        self.overflows = 0  # blocks the device itself reported as overflowed
        self.reconnects = 0  # times the stream was reopened after being lost
        self.connected = False
        self._lost_at_start: float | None = None  # when wait_for_device found no device at start
        self.closed = False
        self.device_rate_hz: int | None = None
        self._reported_drops = 0
        self._reported_overflows = 0
        self._last_block_s = 0.0  # when the newest block arrived (monotonic s)
        self._opened_s = 0.0  # when the current stream was opened
        self._stream: Any = None
        self._stream_failed = threading.Event()
        self._stop = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._lock = threading.Lock()
        self._resampler: StreamResampler | None = None
        self._pending = np.zeros(0, np.float32)
        self._pending_time_s = 0.0
        self._generation = 0  # bumps on every (re)open; blocks carry it so the consumer starts afresh
        self._consumer_generation = 0
        self.reinitialisations = 0  # times PortAudio was re-initialised to find a replugged device
        self._last_reinit_s = -1e9
        self._stuck: list[tuple[str, threading.Thread]] = []  # PortAudio calls that did not return in time
        self.stuck_calls = 0  # such calls so far (some may have returned late)

    # --- device side -------------------------------------------------------------------------
    def _resolve_device(self) -> int | None:
        """PortAudio index of ``settings.device`` (None for the default input)."""
        spec = self.settings.device
        if spec is None or spec == "":
            return None
        if spec.strip().isdigit():
            return int(spec)
        inputs = [(i, d) for i, d in enumerate(self._sd.query_devices()) if d["max_input_channels"] > 0]
        for i, d in inputs:
            if spec.lower() in d["name"].lower():
                return i
        names = ", ".join(f"{i}: {d['name']}" for i, d in inputs) or "none"
        raise AudioDeviceError(f"microphone.device {spec!r}: no input device has that in its name (inputs: {names})")

    def _choose_rate(self, device: int | None) -> tuple[int, int]:
        """(device rate, channels) the device accepts, preferring the target rate and mono."""
        info = self._sd.query_devices(device, "input")
        channels = 1
        try:
            self._sd.check_input_settings(device=device, channels=1, dtype="float32")
        except Exception:  # some devices only open in stereo
            channels = max(1, min(2, int(info["max_input_channels"])))
        if self.settings.device_rate_hz is not None:
            rates: tuple[int, ...] = (self.settings.device_rate_hz,)
        else:
            rates = (self.settings.sample_rate_hz, int(info["default_samplerate"]), *FALLBACK_DEVICE_RATES_HZ)
        for rate in rates:
            try:
                self._sd.check_input_settings(device=device, channels=channels, dtype="float32", samplerate=rate)
                return rate, channels
            except Exception as exc:
                log.debug("microphone %r: %d Hz refused (%s)", info["name"], rate, exc)
        raise AudioDeviceError(f"microphone {info['name']!r}: none of the rates {rates} Hz is accepted")

    def _open(self) -> None:
        """Open and start a new stream (on a helper thread, within ``portaudio_timeout_s``); raises what PortAudio raised, or PortAudioStuck."""
        with self._lock:
            self._generation += 1  # blocks and endings of earlier streams are ignored from now on
            generation = self._generation
        self._stream_failed.clear()
        self._opened_s = self._last_block_s = time.monotonic()  # the new stream's first block comes after this
        stream, rate = self._portaudio("open", partial(self._open_stream, generation), late=_abandon_stream)
        with self._lock:
            self._stream = stream
            self.device_rate_hz = rate

    def _open_stream(self, generation: int) -> tuple[Any, int]:
        """The started stream of ``settings.device`` and its rate; its callback tags blocks with ``generation``."""
        device = self._resolve_device()
        rate, channels = self._choose_rate(device)
        block = max(1, rate * self.settings.frame_ms // 1000)
        stream = self._sd.InputStream(
            device=device,
            samplerate=rate,
            channels=channels,
            dtype="float32",
            blocksize=block,
            latency="low",
            callback=partial(self._callback, generation, rate),
            finished_callback=partial(self._finished, generation),
        )
        try:
            stream.start()
        except Exception:
            _abandon_stream(stream)
            raise
        name = self._sd.query_devices(stream.device)["name"]
        log.info(
            "microphone %r open at %d Hz x %d channel(s), %d-sample blocks%s",
            name, rate, channels, block,
            f", resampled to {self.settings.sample_rate_hz} Hz" if rate != self.settings.sample_rate_hz else "",
        )
        return stream, rate

    def _callback(self, generation: int, rate: int, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        # PortAudio's thread: copy and hand over, never block, never log
        if generation != self._generation:
            return  # a stream already given up (closed, or abandoned while stuck)
        now = time.monotonic()
        self._last_block_s = now
        if status:
            self.overflows += 1
        block = indata.mean(axis=1) if indata.shape[1] > 1 else indata[:, 0].copy()
        try:
            # arrival time minus the block's length: PortAudio's ADC times are unreliable through ALSA's pulse plugin
            self._blocks.put_nowait((block, now - frames / rate, generation, rate))
        except queue.Full:
            self.dropped_frames += 1

    def _finished(self, generation: int) -> None:
        if generation == self._generation:
            self._stream_failed.set()

    def _close_stream(self) -> None:
        """Abort and close the current stream within ``portaudio_timeout_s``; PortAudioStuck when it did not return (the stream is abandoned)."""
        with self._lock:
            stream, self._stream = self._stream, None
            self._generation += 1
        if stream is not None:
            self._portaudio("close", partial(_abandon_stream, stream))

    def _portaudio(self, what: str, call: Callable[[], Any], late: Callable[[Any], Any] | None = None) -> Any:
        """``call()`` on a helper thread, waited for at most ``portaudio_timeout_s``; PortAudioStuck when it has not returned.

        A call that returns after being given up has its result passed to ``late`` (a stream opened
        too late is closed again) on its own thread.
        """
        settle = threading.Lock()  # finishing and giving up are decided one at a time
        result: dict[str, Any] = {}
        finished = threading.Event()

        def run() -> None:
            try:
                result["value"] = call()
            except BaseException as exc:  # handed to the waiting thread, which raises it
                result["error"] = exc
            with settle:
                finished.set()
                given_up = result.get("given_up", False)
            if given_up and late is not None and "value" in result:
                try:
                    late(result["value"])  # the waiter gave up: nobody else will use this result
                except Exception as exc:
                    log.debug("microphone: cleaning up after a late PortAudio %s failed (%s)", what, exc)

        thread = threading.Thread(target=run, name=f"portaudio-{what}", daemon=True)
        thread.start()
        if not finished.wait(self.settings.portaudio_timeout_s):
            with settle:
                result["given_up"] = not finished.is_set()
            if result["given_up"]:
                self._stuck.append((what, thread))
                self.stuck_calls += 1
                self._keep_portaudio_at_exit()
                raise PortAudioStuck(f"PortAudio's {what} has not returned within {self.settings.portaudio_timeout_s:g} s")
        if "error" in result:
            raise result["error"]
        return result.get("value")

    def _keep_portaudio_at_exit(self) -> None:
        """Stop sounddevice from terminating PortAudio at exit: ``Pa_Terminate`` closes every stream and would wait for the stuck one for ever."""
        handler = getattr(self._sd, "_exit_handler", None)
        if handler is not None:
            atexit.unregister(handler)

    @property
    def stuck_now(self) -> list[str]:
        """The PortAudio calls given up on that are still running (``["close"]``)."""
        self._stuck = [(what, t) for what, t in self._stuck if t.is_alive()]
        return [what for what, _ in self._stuck]

    def _emit(self, event: dict) -> None:
        _emit_device_event(self._on_event, event)

    def _supervise(self) -> None:
        """Keep audio flowing: reopen with exponential backoff whenever the stream fails or stalls.

        ``device_recovered`` is sent when audio arrives again, not when a reopen merely succeeds, so
        a device that opens but stays silent keeps being retried without a flood of events.
        """
        backoff = self.settings.reconnect_backoff_s
        lost_since = self._lost_at_start  # set from device_lost until audio flows again
        failed_opens = 1 if lost_since is not None else 0  # reopen attempts that failed since audio last flowed
        while not self._stop.is_set():
            stream = self._stream
            if stream is None:
                if len(self.stuck_now) >= MAX_STUCK_CALLS:
                    self._give_up()
                    return
                try:
                    if failed_opens:
                        self._reinitialise_if_due()
                    self._open()
                except Exception as exc:
                    failed_opens += 1
                    if not isinstance(exc, PortAudioStuck):
                        log.warning("microphone: cannot open (%s); retrying in %.1f s", exc, backoff)
                    else:
                        log.error("microphone: %s; giving it up, retrying in %.1f s. %s", exc, backoff, STUCK_HINT)
                        if lost_since is None:
                            lost_since = time.monotonic()
                            self.connected = False
                            self._emit({"event": "device_lost", "device": "microphone", "reason": str(exc)})
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, self.settings.max_backoff_s)
                continue
            if self._last_block_s > self._opened_s:
                failed_opens = 0
            if lost_since is not None and self._last_block_s > self._opened_s:
                backoff = self.settings.reconnect_backoff_s
                self.connected = True
                self.reconnects += 1
                log.warning("microphone recovered after %.1f s (reconnect %d)", time.monotonic() - lost_since, self.reconnects)
                self._emit({"event": "device_recovered", "device": "microphone", "reconnects": self.reconnects})
                lost_since = None
            # a stream may take a while to start (PulseAudio: 1-2 s), then must keep delivering
            flowing = self._last_block_s > self._opened_s
            timeout_s = self.settings.stall_timeout_s if flowing else self.settings.first_audio_timeout_s
            stalled = time.monotonic() - self._last_block_s > timeout_s
            if self._stream_failed.is_set() or stalled or not stream.active:
                reason = f"no audio for {timeout_s:g} s" if stalled else "the stream ended with an error"
                try:
                    self._close_stream()
                except PortAudioStuck as exc:
                    reason = f"{reason}, and {exc} (the stream is abandoned)"
                    log.error("microphone: %s; giving it up and opening a new stream. %s", exc, STUCK_HINT)
                if lost_since is None:
                    lost_since = time.monotonic()
                    self.connected = False
                    log.warning("microphone lost: %s; reopening", reason)
                    self._emit({"event": "device_lost", "device": "microphone", "reason": reason})
                else:
                    failed_opens += 1
                    log.warning("microphone: the reopened stream failed too (%s); retrying in %.1f s", reason, backoff)
                    self._stop.wait(backoff)
                    backoff = min(backoff * 2, self.settings.max_backoff_s)
                continue
            self._stop.wait(0.05)
        try:
            self._close_stream()
        except PortAudioStuck as exc:
            log.error("microphone: %s while stopping; the stream is left behind. %s", exc, STUCK_HINT)

    def _give_up(self) -> None:
        """Too many PortAudio calls hang: stop trying (each holds a thread) and say so."""
        reason = f"{len(self.stuck_now)} PortAudio calls have not returned ({', '.join(self.stuck_now)}); not trying again"
        log.error("microphone: %s. %s", reason, STUCK_HINT)
        self.connected = False
        self._emit({"event": "device_lost", "device": "microphone", "reason": reason})

    def _reinitialise_if_due(self) -> None:
        """Re-initialise PortAudio, at most once per ``max_backoff_s``: a replugged device gets a new index only then.

        Not on every attempt: sounddevice points file descriptor 2 at /dev/null while PortAudio
        initialises (so ALSA's probing stays quiet), initialising probes every sound card, and the
        first reopen after a loss (a restarted sound server) needs no new device list.
        """
        now = time.monotonic()
        if now - self._last_reinit_s < self.settings.max_backoff_s:
            return
        if self.stuck_now:
            return  # Pa_Terminate would close the abandoned stream, and wait for it for ever
        self._last_reinit_s = now
        self.reinitialisations += 1
        log.debug("microphone: re-initialising PortAudio to look for the device again (%d)", self.reinitialisations)
        self._portaudio("re-initialise", lambda: (self._sd._terminate(), self._sd._initialize()))

    # --- consumer side -----------------------------------------------------------------------
    def start(self) -> None:
        """Open the device and start the supervisor thread.

        A device that cannot be opened raises AudioDeviceError naming it, unless
        ``wait_for_device``: then it is reported lost and the supervisor keeps trying to open it.
        """
        if self._supervisor is not None:
            return
        try:
            self._open()
            self.connected = True
        except Exception as exc:  # PortAudioError and friends: say which device and what to check
            error = exc if isinstance(exc, AudioDeviceError) and not isinstance(exc, PortAudioStuck) else AudioDeviceError(
                f"microphone {self.settings.device or '(default input)'}: cannot be opened ({exc}); "
                "check microphone.device against `showsay listen --devices`"
            )
            if not self.settings.wait_for_device:
                raise error from None
            self.connected = False
            self._lost_at_start = time.monotonic()
            log.warning("%s; waiting for it (microphone.wait_for_device)", error)
            self._emit({"event": "device_lost", "device": "microphone", "reason": str(error)})
        self._supervisor = threading.Thread(target=self._supervise, name="microphone", daemon=True)
        self._supervisor.start()

    def _report_losses(self) -> None:
        drops, overflows = self.dropped_frames, self.overflows
        if drops != self._reported_drops:
            log.warning(
                "microphone: dropped %d block(s) because the consumer was too slow (%d in all)",
                drops - self._reported_drops, drops,
            )
            self._reported_drops = drops
        if overflows != self._reported_overflows:
            log.warning("microphone: the device reported %d overflow(s) (%d in all)", overflows - self._reported_overflows, overflows)
            self._reported_overflows = overflows

    def read(self, timeout_s: float) -> AudioFrame | None:
        """The next frame of ``frame_ms``, or None when none is complete within ``timeout_s``."""
        n = self.settings.frame_samples
        deadline = time.monotonic() + timeout_s
        while self._pending.size < n:
            if self.closed:
                return None
            try:
                item = self._blocks.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self._report_losses()
                return None
            if item is _WAKE:
                return None
            block, t_block, generation, rate = item
            self._append(block, t_block, rate, generation)
        self._report_losses()
        frame = AudioFrame(to_int16(self._pending[:n]), self._pending_time_s, self.settings.sample_rate_hz)
        self._pending = self._pending[n:]
        self._pending_time_s += self.settings.frame_ms / 1000.0
        return frame

    def _append(self, block: np.ndarray, t_block: float, rate: int, generation: int) -> None:
        if generation != self._consumer_generation:  # a new stream: start framing afresh
            self._consumer_generation = generation
            self._pending = np.zeros(0, np.float32)
            self._resampler = StreamResampler(rate, self.settings.sample_rate_hz) if rate != self.settings.sample_rate_hz else None
        if self._resampler is not None:
            block = self._resampler.process(block)
        if self._pending.size == 0:
            self._pending_time_s = t_block
        self._pending = np.concatenate([self._pending, block])

    def wake(self) -> None:
        """Make a :meth:`read` waiting now (or the next one) return None at once: the consumer has other work."""
        try:
            self._blocks.put_nowait(_WAKE)  # type: ignore[arg-type]
        except queue.Full:
            pass  # the consumer is behind and will not wait anyway

    def close(self) -> None:
        """Stop the supervisor and release the device; later reads return None."""
        self.closed = True
        self._stop.set()
        self.wake()
        if self._supervisor is not None:
            # its PortAudio calls are bounded: it ends within portaudio_timeout_s (plus the step it is in)
            self._supervisor.join(timeout=self.settings.portaudio_timeout_s + 1.0)
            if self._supervisor.is_alive():
                log.error("microphone: its supervisor did not stop within %.1f s; left behind", self.settings.portaudio_timeout_s + 1.0)
        else:
            try:
                self._close_stream()
            except PortAudioStuck as exc:
                log.error("microphone: %s while closing; the stream is left behind. %s", exc, STUCK_HINT)
        self.connected = False

    def __enter__(self) -> MicrophoneSource:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class WavFileSource:
    """The frames of a wav file, as fast as asked or paced like a live microphone.

    In real-time mode frames become due one ``frame_ms`` apart from :meth:`start`; a consumer that
    falls more than ``queue_frames`` behind loses the oldest ones (counted in ``dropped_frames``),
    as it would with a microphone. The last partial frame is padded with silence. With
    ``repeat_pause_s`` the file is heard again and again, that much silence between plays, and the
    source never ends (``microphone.source`` set to a file).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        frame_ms: int = 30,
        realtime: bool = False,
        sample_rate_hz: int = 16000,
        queue_frames: int = 100,
        start_time_s: float | None = None,
        repeat_pause_s: float | None = None,
    ) -> None:
        if frame_ms not in (10, 20, 30):
            raise SettingsError(f"frame_ms: must be one of 10, 20, 30, got {frame_ms!r}")
        self.path = path
        self.frame_ms = frame_ms
        self.realtime = realtime
        self.sample_rate_hz = sample_rate_hz
        self.queue_frames = queue_frames
        self._start_time_s = start_time_s
        self.repeat = repeat_pause_s is not None
        pcm = to_int16(read_wav(path, sample_rate_hz))  # raises AudioError naming the file
        if self.repeat:
            pcm = np.concatenate([pcm, np.zeros(round(float(repeat_pause_s) * sample_rate_hz), np.int16)])
        n = sample_rate_hz * frame_ms // 1000
        pcm = np.concatenate([pcm, np.zeros((-pcm.size) % n, np.int16)])
        self._frames = pcm.reshape(-1, n)
        self._next = 0
        self._t0: float | None = None
        self._woken = threading.Event()
        self.dropped_frames = 0
        self.closed = False

    @property
    def frame_count(self) -> int:
        """Frames in the file."""
        return self._frames.shape[0]

    def start(self) -> None:
        """Start the clock: frame i is due ``i * frame_ms`` after this call (real-time mode)."""
        if self._t0 is None:
            self._t0 = time.monotonic()

    def _exhausted(self) -> bool:
        return self.closed or (not self.repeat and self._next >= self.frame_count)

    def read(self, timeout_s: float) -> AudioFrame | None:
        """The next frame; None on timeout (real-time mode) or once the file is exhausted."""
        if self._t0 is None:
            self.start()
        if self._exhausted():
            self.closed = True
            return None
        frame_s = self.frame_ms / 1000.0
        if self.realtime:
            now = time.monotonic()
            due = int((now - self._t0) / frame_s)  # frames whose capture has finished by now
            backlog = due - self._next
            if backlog > self.queue_frames:
                lost = backlog - self.queue_frames
                if not self.repeat:
                    lost = min(lost, self.frame_count - self._next)
                self.dropped_frames += lost
                self._next += lost
                log.warning("%s: dropped %d frame(s) because the consumer was too slow", self.path, lost)
                if self._exhausted():
                    self.closed = True
                    return None
            ready_at = self._t0 + (self._next + 1) * frame_s
            wait = ready_at - now
            if wait > timeout_s:
                self._sleep(max(0.0, timeout_s))
                return None
            if wait > 0 and self._sleep(wait):
                return None  # woken: the frame is not due yet
        i = self._next
        self._next += 1
        base = self._t0 if self._start_time_s is None else self._start_time_s
        frame = AudioFrame(self._frames[i % self.frame_count].copy(), base + i * frame_s, self.sample_rate_hz)
        if self._exhausted():
            self.closed = True  # nothing more will come; the caller has the last frame
        return frame

    def _sleep(self, seconds: float) -> bool:
        """Wait ``seconds`` unless :meth:`wake` is called; True when woken."""
        woken = self._woken.wait(seconds)
        self._woken.clear()
        return woken

    def wake(self) -> None:
        """Make a :meth:`read` waiting for its frame's time return None at once."""
        self._woken.set()

    def close(self) -> None:
        """Nothing to release; later reads return None."""
        self._next = max(self._next, self.frame_count)
        self.closed = True


class CommandMicrophone:
    """A program's standard output as the microphone: raw 16-bit little-endian mono PCM at ``sample_rate_hz``.

    The program (``microphone.source: 'command: ...'``, split like a shell would but run without
    one) must deliver in real time (``arecord``, ``parec``, ``ffmpeg -re``); a reader thread cuts its
    output into ``frame_ms`` frames and hands them over through a bounded queue (frames that do not
    fit are dropped and counted, as with a sound device). Its standard error goes to the log. When it
    exits, ``device_lost`` is reported and it is started again after the reconnect backoff; the
    first audio after that reports ``device_recovered``.
    """

    def __init__(self, command: str, settings: MicrophoneSettings, on_event: EventSink | None = None) -> None:
        import shlex

        try:
            self.argv = shlex.split(command)
        except ValueError as exc:
            raise AudioDeviceError(f"microphone.source {COMMAND_PREFIX}{command}: cannot be split into arguments ({exc})") from None
        if not self.argv:
            raise AudioDeviceError(f"microphone.source {COMMAND_PREFIX!r}: names no program")
        self.settings = settings
        self._on_event = on_event
        self._frames: queue.Queue[AudioFrame] = queue.Queue(maxsize=settings.queue_frames)
        self.dropped_frames = 0
        self.restarts = 0
        self.connected = False
        self.closed = False
        self._proc: Any = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the program and the reader thread; AudioDeviceError when the program does not exist."""
        import shutil

        if shutil.which(self.argv[0]) is None:
            raise AudioDeviceError(f"microphone.source: no program {self.argv[0]!r} (not on PATH and not an executable file)")
        if self._thread is None:
            self._thread = threading.Thread(target=self._supervise, name="microphone-command", daemon=True)
            self._thread.start()

    def _emit(self, event: dict) -> None:
        _emit_device_event(self._on_event, event)

    def _supervise(self) -> None:
        import subprocess

        backoff = self.settings.reconnect_backoff_s
        lost = False
        while not self._stop.is_set():
            try:
                proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
            except OSError as exc:
                reason = f"{self.argv[0]} cannot be started ({exc.strerror or exc})"
                proc = None
            else:
                self._proc = proc
                threading.Thread(target=self._log_stderr, args=(proc,), name="microphone-command-stderr", daemon=True).start()
                delivered = self._pump(proc, lost)
                if delivered:
                    lost, backoff = False, self.settings.reconnect_backoff_s
                self._end(proc)
                reason = f"{self.argv[0]} exited with status {proc.returncode}"
            if self._stop.is_set():
                break
            self.connected = False
            if not lost:
                lost = True
                log.warning("microphone: %s; starting it again in %.1f s", reason, backoff)
                self._emit({"event": "device_lost", "device": "microphone", "reason": reason})
            self._stop.wait(backoff)
            backoff = min(backoff * 2, self.settings.max_backoff_s)
            self.restarts += 1

    def _pump(self, proc: Any, lost: bool) -> int:
        """Frames read from ``proc`` until its output ends (or close); returns how many."""
        n = self.settings.frame_samples
        frame_s = self.settings.frame_ms / 1000.0
        got = 0
        buf = b""
        while not self._stop.is_set():
            chunk = proc.stdout.read(2 * n - len(buf))
            if not chunk:
                return got
            buf += chunk
            if len(buf) < 2 * n:
                continue
            now = time.monotonic()
            frame = AudioFrame(np.frombuffer(buf, "<i2").astype(np.int16), now - frame_s, self.settings.sample_rate_hz)
            buf = b""
            if got == 0:
                self.connected = True
                if lost:
                    log.warning("microphone: %s delivers audio again", self.argv[0])
                    self._emit({"event": "device_recovered", "device": "microphone", "restarts": self.restarts})
            got += 1
            try:
                self._frames.put_nowait(frame)
            except queue.Full:
                self.dropped_frames += 1
        return got

    def _log_stderr(self, proc: Any) -> None:
        for i, line in enumerate(iter(proc.stderr.readline, b"")):
            if i < 20:  # a chatty program must not flood the journal
                log.info("microphone %s: %s", self.argv[0], line.decode("utf-8", "replace").rstrip()[:300])

    def _end(self, proc: Any) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=2.0)
            except Exception:
                proc.kill()
                proc.wait(timeout=2.0)
        for pipe in (proc.stdout, proc.stderr):
            try:
                pipe.close()
            except OSError:
                pass

    def read(self, timeout_s: float) -> AudioFrame | None:
        """The next frame, or None when none arrived within ``timeout_s``."""
        if self.closed:
            return None
        try:
            frame = self._frames.get(timeout=timeout_s)
        except queue.Empty:
            return None
        return None if frame is _WAKE else frame

    def wake(self) -> None:
        """Make a :meth:`read` waiting now (or the next one) return None at once."""
        try:
            self._frames.put_nowait(_WAKE)  # type: ignore[arg-type]
        except queue.Full:
            pass  # frames are waiting: read() will not wait anyway

    def close(self) -> None:
        """Stop the program and the reader; later reads return None."""
        self.closed = True
        self._stop.set()
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self.connected = False


def open_microphone(settings: MicrophoneSettings, on_event: EventSink | None = None) -> Any:
    """The audio source ``microphone.source`` names: the sound device, a repeated file, or a command."""
    source = settings.source
    if source is None:
        return MicrophoneSource(settings, on_event=on_event)
    if source.startswith(COMMAND_PREFIX):
        return CommandMicrophone(source[len(COMMAND_PREFIX):], settings, on_event=on_event)
    return WavFileSource(source, frame_ms=settings.frame_ms, realtime=True, sample_rate_hz=settings.sample_rate_hz,
                         queue_frames=settings.queue_frames, repeat_pause_s=settings.file_pause_s)
