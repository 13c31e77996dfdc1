"""A stand-in for sounddevice over PortAudio 19.6's ALSA backend as it fails when the sound server dies.

Put this directory first on ``PYTHONPATH`` (``showsay run`` in a subprocess) or build one with
:func:`make` (in-process). One input device, ``fake``, at 16 kHz. Each stream's thread calls the
callback with silence every block, like PortAudio's. With ``FAKE_PORTAUDIO_LOOP_AFTER_S`` set (or
``loop_after_s``), the first stream's thread, that long after it started, does what PortAudio's does
in issue #1037: it stops calling the callback and loops for ever writing
``Expression 'self->capture.ready || self->playback.ready' failed ...`` to descriptor 2, never
looking at a stop request (its cancellation is disabled). ``abort()``/``close()`` then wait for
that thread for ever (``pthread_join``), and so does ``_terminate()`` (``Pa_Terminate`` closes
every open stream), which the exit handler calls, as sounddevice's does. Later streams work.
"""
from __future__ import annotations

import atexit
import os
import threading
import time
import types

import numpy as np

LOOP_LINE = b"Expression 'self->capture.ready || self->playback.ready' failed in 'src/hostapi/alsa/pa_linux_alsa.c', line: 3958\n"
DEVICE = {"name": "fake", "max_input_channels": 1, "max_output_channels": 0, "default_samplerate": 16000.0, "index": 0}


def make(loop_after_s: float | None = None, loop_fd: int = 2, register_exit: bool = False) -> types.SimpleNamespace:
    """A fake sounddevice module; ``loop_fd`` is where the looping thread writes (2, as PortAudio does)."""
    sd = types.SimpleNamespace()
    state = {"streams": 0, "open": [], "released": threading.Event()}
    sd.state = state
    sd._initialized = 1

    def _initialize() -> None:
        sd._initialized += 1

    def _terminate() -> None:
        for stream in list(state["open"]):  # Pa_Terminate closes what is still open
            stream.close()
        sd._initialized -= 1

    def _exit_handler() -> None:
        while sd._initialized:
            _terminate()

    def query_devices(device=None, kind=None):
        return dict(DEVICE) if device is not None or kind is not None else [dict(DEVICE)]

    def check_input_settings(**kw) -> None:
        return None

    class InputStream:
        def __init__(self, device=None, samplerate=16000, channels=1, dtype="float32", blocksize=480, latency=None,
                     callback=None, finished_callback=None) -> None:
            state["streams"] += 1
            self.number = state["streams"]
            self.device = 0
            self.samplerate, self.channels, self.blocksize = samplerate, channels, blocksize
            self.callback, self.finished_callback = callback, finished_callback
            self.active = False
            self._stop = threading.Event()
            self._thread: threading.Thread | None = None
            state["open"].append(self)

        def start(self) -> None:
            self.active = True
            self._thread = threading.Thread(target=self._run, name=f"fake-portaudio-{self.number}", daemon=True)
            self._thread.start()

        def _run(self) -> None:
            block_s = self.blocksize / self.samplerate
            started = time.monotonic()
            loops = self.number == 1 and loop_after_s is not None
            while not self._stop.is_set():
                if loops and time.monotonic() - started >= loop_after_s:
                    self._loop()
                    return
                self.callback(np.zeros((self.blocksize, self.channels), np.float32), self.blocksize, None, 0)
                time.sleep(block_s)

        def _loop(self) -> None:
            while not state["released"].is_set():  # the stop request is not looked at; only a test may end it
                try:
                    os.write(loop_fd, LOOP_LINE)
                except OSError:
                    time.sleep(0.001)

        def abort(self, ignore_errors: bool = True) -> None:
            self._stop.set()
            if self._thread is not None:
                self._thread.join()  # pthread_join: for ever when the thread loops
            self.active = False

        stop = abort

        def close(self, ignore_errors: bool = True) -> None:
            self.abort()
            if self in state["open"]:
                state["open"].remove(self)

    sd._initialize, sd._terminate, sd._exit_handler = _initialize, _terminate, _exit_handler
    sd.query_devices, sd.check_input_settings, sd.InputStream = query_devices, check_input_settings, InputStream
    sd.__version__ = "fake"
    if register_exit:
        atexit.register(_exit_handler)
    return sd


_module = make(float(os.environ["FAKE_PORTAUDIO_LOOP_AFTER_S"]) if os.environ.get("FAKE_PORTAUDIO_LOOP_AFTER_S") else None,
               register_exit=True) if __name__ == "sounddevice" else None
if _module is not None:
    globals().update({k: v for k, v in vars(_module).items() if not k.startswith("__")})
