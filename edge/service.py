"""The service around the controller: assembly of devices, sd_notify, signals, clean stop, reload.

The main thread owns signals and readiness; the controller runs in its own thread and pets the
systemd watchdog from its loop, so a hung controller gets the service restarted. sd_notify is
a datagram to ``$NOTIFY_SOCKET`` (no libsystemd needed). SIGTERM/SIGINT stop cleanly: the
controller finishes its step, the devices and the control socket close, the memory closes (every
taught pair was already committed when it was announced). The whole stop is given
``service.stop_timeout_s``: whatever is still stuck then (a native call that never returns) is
left behind and the process exits anyway, and a stop that leaves hung PortAudio calls behind
exits without the interpreter's clean-up (sounddevice's ``Pa_Terminate`` at exit would wait for
them for ever). SIGHUP re-reads the YAML and applies its matching thresholds; a broken file is
reported and the running thresholds are kept.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from dataclasses import asdict
from typing import Any, Callable, Iterable, Mapping

from edge.service_settings import ServiceSettings  # noqa: F401 - defined below edge.config, re-exported here

log = logging.getLogger(__name__)


class Notifier:
    """sd_notify over the ``$NOTIFY_SOCKET`` datagram socket; does nothing when not run by systemd."""

    def __init__(self, socket_path: str | None, watchdog_usec: int | None = None, fraction: float = 0.5) -> None:
        self.socket_path = socket_path
        self.watchdog_interval_s = watchdog_usec * fraction / 1e6 if watchdog_usec else None
        self._last_watchdog_s = -1e9
        self._lock = threading.Lock()
        self._sock: socket.socket | None = None
        if socket_path:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.setblocking(False)  # a reader that stops reading must never stall the controller loop
            self._address = "\0" + socket_path[1:] if socket_path.startswith("@") else socket_path

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ, fraction: float = 0.5) -> "Notifier":
        """The notifier systemd asked for through NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID."""
        usec = environ.get("WATCHDOG_USEC")
        pid = environ.get("WATCHDOG_PID")
        watchdog = int(usec) if usec and usec.isdigit() and (not pid or pid == str(os.getpid())) else None
        return cls(environ.get("NOTIFY_SOCKET") or None, watchdog, fraction)

    @property
    def enabled(self) -> bool:
        """True when run by systemd with Type=notify."""
        return self._sock is not None

    def notify(self, *lines: str) -> bool:
        """Send ``KEY=VALUE`` lines; False when not under systemd or the socket is gone."""
        if self._sock is None:
            return False
        try:
            with self._lock:
                self._sock.sendto("\n".join(lines).encode(), self._address)
            return True
        except BlockingIOError:
            log.warning("sd_notify to %s: the receiver is not reading; %s dropped", self.socket_path, lines[0])
            return False
        except OSError as exc:
            log.warning("sd_notify to %s failed: %s", self.socket_path, exc)
            return False

    def ready(self, status: str) -> None:
        """READY=1: models loaded and devices opened."""
        self.notify("READY=1", f"STATUS={status}")

    def status(self, text: str) -> None:
        """One STATUS= line, shown by ``systemctl status``."""
        self.notify(f"STATUS={text}")

    def watchdog(self) -> None:
        """WATCHDOG=1, at most every fraction of WatchdogSec; call it from the controller loop."""
        if self.watchdog_interval_s is None:
            return
        now = time.monotonic()
        if now - self._last_watchdog_s >= self.watchdog_interval_s:
            self._last_watchdog_s = now
            self.notify("WATCHDOG=1")

    def reloading(self) -> None:
        """RELOADING=1 with the monotonic time, as systemd expects before a reload completes."""
        self.notify("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self) -> None:
        """STOPPING=1: a clean stop has begun."""
        self.notify("STOPPING=1", "STATUS=stopping")

    def close(self) -> None:
        """Close the socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class StopDeadline:
    """Ends the process ``timeout_s`` after a stop began if it is still running then: a stuck native call cannot keep the service up."""

    def __init__(self, timeout_s: float, exit_code: int = 1) -> None:
        self.timeout_s = timeout_s
        self.exit_code = exit_code
        self._timer = threading.Timer(timeout_s, self._expired)
        self._timer.daemon = True
        self._timer.name = "stop-deadline"

    def start(self, began_s: float | None = None) -> "StopDeadline":
        """Start counting (from ``began_s``, monotonic s, when the stop was asked for earlier)."""
        if began_s is not None:
            self._timer.interval = max(0.0, self.timeout_s - (time.monotonic() - began_s))
        self._timer.start()
        return self

    def _expired(self) -> None:
        others = sorted(t.name for t in threading.enumerate() if t is not threading.current_thread() and t is not threading.main_thread())
        log.error("did not stop within service.stop_timeout_s = %g s (threads still running: %s); exiting now",
                  self.timeout_s, ", ".join(others) or "none")
        exit_now(self.exit_code)


def exit_now(code: int) -> None:
    """Flush the log and end the process at once, without the interpreter's clean-up (atexit handlers that would hang)."""
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except Exception:
            pass
    os._exit(code)


class EventRelay:
    """Device events (``on_event`` of the microphone, camera, endpointer) on their way to the controller.

    Devices are made before the controller exists; until :attr:`target` is set the events are only logged.
    """

    def __init__(self) -> None:
        self.target: Callable[[dict], Any] | None = None

    def __call__(self, event: dict) -> None:
        if self.target is None:
            log.info("device event before start-up finished: %s", event)
        else:
            self.target(event)


class Daemon:
    """Memory, encoders, endpointer, finder, controller and control socket over the given devices."""

    def __init__(
        self,
        cfg: Any,
        *,
        audio: Any,
        frames: Any,
        button: Any,
        notifier: Notifier | None = None,
        listeners: Iterable[Callable[[dict], None]] = (),
        control: bool = True,
        relay: EventRelay | None = None,
    ) -> None:
        self.cfg = cfg
        self.audio = audio
        self.frames = frames
        self.button = button
        self.notifier = notifier or Notifier(None)
        self.listeners = list(listeners)
        self.use_control = control
        self.relay = relay or EventRelay()
        self.memory: Any = None
        self.control: Any = None
        self.web: Any = None
        self.controller: Any = None
        self.state_lock: Any = None
        self._ready = False
        self._thread: threading.Thread | None = None
        self._started: list[Any] = []

    def start(self) -> None:
        """Lock the state directory, bind the socket, load the models and memory, open the devices, start the threads.

        Raises on anything unusable. What can refuse a start without risk to the memory (another
        daemon on the same state directory or socket, a socket path that cannot be used) is done
        before the memory file is opened.
        """
        from edge.candidates import make_finder, teach_region
        from edge.daemon import Controller, run_in_thread
        from edge.encoders import load_image_encoder, load_speech_encoder
        from edge.memory import Memory, StateDirLock
        from edge.vad import Endpointer

        cfg = self.cfg
        lock = StateDirLock(cfg.memory.state_dir)
        if lock.dir.is_dir():  # a second daemon on this memory stops here, before it loads anything
            self.state_lock = lock.acquire()
        if self.use_control:
            from edge.control import ControlServer

            self.control = ControlServer(cfg.control, self._handle)  # answers "starting" until the controller runs
            self.control.start()
            self._started.append(self.control)
        speech = load_speech_encoder(cfg.encoders, cfg.speech_features)
        image = load_image_encoder(cfg.encoders)
        if self.state_lock is None:  # a state_dir not made yet: made (and locked) only now that the models loaded
            self.state_lock = lock.acquire()
        self.memory = Memory.from_settings(cfg.memory)
        self.controller = Controller(
            speech_encoder=speech,
            image_encoder=image,
            feature_settings=cfg.speech_features,
            memory=self.memory,
            audio=self.audio,
            endpointer=Endpointer(cfg.vad, on_event=self.relay),
            frames=self.frames,
            finder=make_finder(cfg.candidates),
            teach_region=lambda img: teach_region(img, cfg.candidates),
            teach=cfg.teach,
            answers=cfg.answers,
            utterances=cfg.utterances,
            matching=cfg.matching,
            vad=cfg.vad,
            publish=self._publish,
            heartbeat=self.notifier.watchdog,
        )
        self.relay.target = self.controller.publish
        last = [time.monotonic()]

        def progress(done: int, total: int) -> None:
            if time.monotonic() - last[0] >= 5.0:  # keep systemd's start timeout ahead of the work
                last[0] = time.monotonic()
                self.notifier.notify("EXTEND_TIMEOUT_USEC=60000000", f"STATUS=re-embedding taught pairs for new encoders: {done}/{total}")

        pairs = self.controller.load_memory(progress)
        log.info("memory %s: %d taught pairs loaded", self.memory.path, pairs)
        if cfg.web.enabled:
            from edge.web.server import web_for_daemon

            self.web = web_for_daemon(cfg, handler=self._handle, frames=self.frames, read_pair=self.memory.pair,
                                      controller_view=self.controller.view_snapshot)
            self.web.start()
            self._started.append(self.web)
            self.listeners.append(self.web.publish)
        for device in (self.frames, self.audio):
            device.start()
            self._started.append(device)
        if cfg.teach.sound:
            from edge.feedback import Beeper

            beeper = Beeper()
            self.listeners.append(beeper)
            self._started.append(beeper)
        self.button.start(lambda: self.controller.press("button"))
        self._started.append(self.button)
        self._thread = run_in_thread(self.controller)
        self._ready = True
        status = f"ready: {pairs} pairs, speech {speech.encoder_id}, image {image.encoder_id}"
        self.controller.publish({"event": "ready", "pairs": pairs, "speech_encoder": speech.encoder_id, "image_encoder": image.encoder_id})
        self.notifier.ready(status)

    def _publish(self, event: dict) -> None:
        if self.control is not None:
            self.control.publish(event)
        for listener in self.listeners:
            listener(event)

    def _handle(self, request: dict) -> dict:
        if not self._ready:
            return {"ok": False, "error": "the daemon is starting (loading models and memory, opening devices); try again in a moment"}
        return self.controller.request(request, timeout_s=self.cfg.service.request_timeout_s)

    def wait_finished(self, timeout_s: float) -> bool:
        """Wait for the controller loop to end (a finite audio source ran out); True when it did."""
        return self.controller is not None and self.controller.finished.wait(timeout_s)

    def reload(self, config_path: str | os.PathLike) -> bool:
        """Re-read the YAML and apply its matching thresholds; False (running ones kept) when it is unusable."""
        from edge.config import ConfigError, load_config

        self.notifier.reloading()
        try:
            new = load_config(config_path)
        except ConfigError as exc:
            log.error("reload refused, running settings kept: %s", exc)
            self.controller.publish({"event": "error", "error": f"reload refused: {exc}"})
            self.notifier.notify("READY=1", "STATUS=reload refused (see log)")
            return False
        self.controller.set_matching(new.matching)
        self.controller.publish({"event": "reloaded", "matching": asdict(self.controller.with_encoder_thresholds(new.matching))})
        self.notifier.notify("READY=1", "STATUS=thresholds reloaded")
        return True

    def close(self) -> None:
        """Stop the controller, then close devices, socket and memory; safe to call twice."""
        if self.controller is not None:
            self.controller.stop()
        if self._thread is not None:
            self._thread.join(timeout=self.cfg.service.stop_timeout_s)
            if self._thread.is_alive():
                log.error("controller did not stop within %.1f s", self.cfg.service.stop_timeout_s)
            self._thread = None
        for thing in reversed(self._started):
            try:
                thing.close()
            except Exception:
                log.exception("closing %s failed", type(thing).__name__)
        self._started.clear()
        if self.memory is not None:
            self.memory.close()
            self.memory = None
        if self.state_lock is not None:
            self.state_lock.release()  # last: nothing of this daemon touches the state directory after it
            self.state_lock = None


def run_service(config_path: str | os.PathLike, listeners: Iterable[Callable[[dict], None]] = ()) -> int:
    """``showsay run``: the daemon with the configured microphone, camera and button until SIGTERM; ``listeners`` get every event."""
    import sqlite3

    from edge.button import make_button
    from edge.camera import Camera
    from edge.config import ConfigError, load_config
    from edge.control import ControlError
    from edge.hearing import open_microphone
    from edge.memory import MemoryError_
    from edge.model_io import ModelError

    from edge.preflight import preflight

    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        log.error("%s", exc)
        return 2
    problems = preflight(cfg)  # the same checks as `showsay check`: directories, camera file, button
    for problem in problems:
        log.error("%s: %s", config_path, problem)
    if problems:
        return 2
    from edge.logs import guard_native_output

    guard_native_output()  # before any device opens: what ALSA and PortAudio print themselves is rate-limited
    notifier = Notifier.from_environ(fraction=cfg.service.watchdog_fraction)
    stop = threading.Event()
    reload = threading.Event()
    stop_asked_s: list[float] = []

    def ask_to_stop(*_: Any) -> None:
        stop_asked_s.append(time.monotonic())
        stop.set()

    signal.signal(signal.SIGTERM, ask_to_stop)
    signal.signal(signal.SIGINT, ask_to_stop)
    signal.signal(signal.SIGHUP, lambda *_: reload.set())
    notifier.status("loading models and opening devices")
    relay = EventRelay()
    daemon: Daemon | None = None
    try:
        daemon = Daemon(
            cfg,
            audio=open_microphone(cfg.microphone, on_event=relay),
            frames=Camera(cfg.camera, on_event=relay),
            button=make_button(cfg.button),
            notifier=notifier,
            listeners=listeners,
            relay=relay,
        )
        daemon.start()
    except Exception as exc:  # one line naming what failed, never a traceback (it is at debug level, -v)
        known = (ConfigError, ModelError, MemoryError_, ControlError, OSError, ValueError, RuntimeError)
        if isinstance(exc, sqlite3.Error):
            message = f"memory {cfg.memory.path}: {exc} (sqlite3)"
        elif isinstance(exc, known):
            message = str(exc)
        else:
            message = f"unexpected {type(exc).__name__}: {exc}"
        log.error("cannot start: %s", message)
        log.debug("the start-up failure in full", exc_info=True)
        notifier.status(f"failed to start: {message}")
        if daemon is not None:
            try:
                daemon.close()
            except Exception as close_exc:
                log.error("closing after the failed start: %s: %s", type(close_exc).__name__, close_exc)
        notifier.close()
        return 1
    last_status = 0.0
    code = 0
    try:
        while not stop.wait(0.25):
            if reload.is_set():
                reload.clear()
                daemon.reload(config_path)
            if daemon.controller.finished.is_set():
                log.error("the controller loop ended unexpectedly")
                code = 1
                break
            now = time.monotonic()
            if now - last_status >= cfg.service.status_interval_s:
                last_status = now
                s = daemon.controller.status()
                notifier.status(f"{s['state']}: {s['pairs']} pairs, {s['requests']} requests, {s['resolved']} resolved, "
                                f"microphone {'ok' if s['microphone_connected'] else 'lost'}, camera {'ok' if s['camera_connected'] else 'lost'}")
        if code == 0:
            log.info("stop requested: closing")
    finally:
        StopDeadline(cfg.service.stop_timeout_s).start(stop_asked_s[0] if stop_asked_s else None)
        notifier.stopping()
        daemon.close()
        notifier.close()
    stuck = list(getattr(daemon.audio, "stuck_now", []))
    if stuck:  # sounddevice's exit handler would wait in Pa_Terminate for the stuck stream for ever
        log.warning("stopped, leaving %d PortAudio call(s) that never returned (%s) behind", len(stuck), ", ".join(stuck))
        exit_now(code)
    log.info("stopped")
    return code  # the deadline keeps counting through the interpreter's own clean-up
