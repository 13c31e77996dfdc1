"""Frame sources: the newest camera image, from a device, a video file, a URL or a GStreamer pipeline.

:class:`Camera` runs one OpenCV reader thread that keeps only the newest frame (the controller
wants what the camera sees now, not a backlog). When the camera fails or disappears, the thread
releases it and reopens with exponential backoff (``reconnect_backoff_s`` doubling up to
``max_backoff_s``), sending ``device_lost`` / ``device_recovered`` events. A video file stands in
for a camera: it is paced at its frame rate, and at its end either loops (``loop_file``) or the
camera reports itself disconnected. :class:`StaticFrames` serves in-memory images for tests and
demos. cv2 is imported by the adapter only.
"""
from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge.settings import setting

log = logging.getLogger(__name__)

EventSink = Callable[[dict], None]

JETSON_CSI_PIPELINE = (
    "nvarguscamerasrc sensor-id=0 ! video/x-raw(memory:NVMM),width=1280,height=720,framerate=30/1 ! "
    "nvvidconv ! video/x-raw,format=BGRx ! videoconvert ! video/x-raw,format=BGR ! appsink drop=true max-buffers=1"
)


class CameraError(RuntimeError):
    """The camera source cannot be used as configured; the message names it and says what to do."""


@dataclass(frozen=True)
class CameraSettings:
    """Where frames come from and how a lost camera is retried."""

    source: str = setting(
        "0",
        "camera: a V4L2 device index (\"0\" = /dev/video0), a video file path (relative: from the config file's\n"
        "directory), a URL (rtsp://, http://), or a\n"
        "GStreamer pipeline ending in appsink (needs an OpenCV built with GStreamer, i.e. JetPack's, not the\n"
        "pip wheel). Jetson CSI camera example:\n" + JETSON_CSI_PIPELINE,
    )
    width: int = setting(1280, "requested frame width, pixels (0 = the device's default; ignored for files and pipelines)", min=0, max=8192)
    height: int = setting(720, "requested frame height, pixels (0 = the device's default; ignored for files and pipelines)", min=0, max=8192)
    fps: float = setting(30.0, "requested frame rate, frames/s; a video file is paced at its own rate unless this is lower", min=0.1, max=240)
    reconnect_backoff_s: float = setting(0.5, "first wait before reopening a failed camera, s (doubles each failure)", min=0.01, max=60)
    max_backoff_s: float = setting(8.0, "longest wait between reopen attempts, s", min=0.01, max=600)
    loop_file: bool = setting(False, "a video file source starts again at its end; false: the camera reports itself disconnected")
    open_timeout_s: float = setting(5.0, "how long opening a URL may take before it counts as failed, s", min=0.1, max=120)


@dataclass(frozen=True)
class Frame:
    """One camera image (RGB), when it was captured (monotonic s), and its running number."""

    image: np.ndarray  # (H, W, 3) uint8 RGB
    time_s: float
    index: int


class FrameSource(Protocol):
    """Anything that serves the newest image: a camera, a video file, a list of images."""

    connected: bool

    def start(self) -> None:
        """Begin capturing."""

    def latest(self) -> Frame | None:
        """The newest frame, or None before the first."""

    def wait_newer(self, after_index: int, timeout_s: float) -> Frame | None:
        """The newest frame once its index exceeds ``after_index``; None on timeout."""

    def close(self) -> None:
        """Stop capturing and release the device."""


def source_kind(source: str) -> str:
    """'device', 'pipeline', 'url' or 'file' for a camera.source string."""
    text = source.strip()
    if text.isdigit():
        return "device"
    if "!" in text:
        return "pipeline"
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", text):
        return "url"
    return "file"


def _import_cv2() -> Any:
    try:
        import cv2
    except ImportError as exc:
        raise CameraError(f"camera: OpenCV cannot be imported ({exc}); install opencv-python-headless") from None
    return cv2


def opencv_has_gstreamer(cv2: Any) -> bool:
    """Whether this OpenCV build can open GStreamer pipelines."""
    for line in cv2.getBuildInformation().splitlines():
        if line.strip().startswith("GStreamer:"):
            return "YES" in line.split(":", 1)[1]
    return False


class _LatestFrame:
    """The newest frame behind a condition variable: writers replace, readers wait for a newer index."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._frame: Frame | None = None
        self._next_index = 0

    def put(self, image: np.ndarray, time_s: float) -> Frame:
        with self._cond:
            self._frame = Frame(image, time_s, self._next_index)
            self._next_index += 1
            self._cond.notify_all()
            return self._frame

    def latest(self) -> Frame | None:
        with self._cond:
            return self._frame

    def wait_newer(self, after_index: int, timeout_s: float) -> Frame | None:
        with self._cond:
            ok = self._cond.wait_for(lambda: self._frame is not None and self._frame.index > after_index, timeout=timeout_s)
            return self._frame if ok else None

    def wake(self) -> None:
        with self._cond:
            self._cond.notify_all()


class Camera:
    """OpenCV capture in a reader thread that keeps only the newest frame and reconnects with backoff."""

    def __init__(self, settings: CameraSettings, on_event: EventSink | None = None) -> None:
        self.settings = settings
        self.kind = source_kind(settings.source)
        self._cv2 = _import_cv2()
        if self.kind == "pipeline" and not opencv_has_gstreamer(self._cv2):
            raise CameraError(
                f"camera.source {settings.source!r} is a GStreamer pipeline, but this OpenCV ({self._cv2.__version__}) "
                "is built without GStreamer (the pip wheels are): on a Jetson use JetPack's OpenCV "
                "(a venv made with --system-site-packages, without opencv-python-headless), or give a device index"
            )
        self._on_event = on_event
        self._frames = _LatestFrame()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.connected = False
        self.ended = False  # a video file reached its end and loop_file is off
        self.reconnects = 0
        self.failures = 0  # failed open attempts and read failures
        self.frames_read = 0

    # --- reader thread -----------------------------------------------------------------------
    def _open(self) -> Any:
        cv2, s = self._cv2, self.settings
        if self.kind == "device":
            cap = cv2.VideoCapture(int(s.source))
        elif self.kind == "pipeline":
            cap = cv2.VideoCapture(s.source, cv2.CAP_GSTREAMER)
        elif self.kind == "url":
            ms = int(s.open_timeout_s * 1000)
            cap = cv2.VideoCapture(s.source, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms])
        else:
            if not Path(s.source).is_file():
                raise CameraError(f"camera.source {s.source!r}: no such video file")
            cap = cv2.VideoCapture(s.source)
        if not cap.isOpened():
            cap.release()
            raise CameraError(f"camera.source {s.source!r}: cannot be opened")
        if self.kind == "device":
            if s.width:
                cap.set(cv2.CAP_PROP_FRAME_WIDTH, s.width)
            if s.height:
                cap.set(cv2.CAP_PROP_FRAME_HEIGHT, s.height)
            cap.set(cv2.CAP_PROP_FPS, s.fps)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # V4L2: do not queue stale frames
        return cap

    def _emit(self, event: dict) -> None:
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:
                log.exception("camera: event handler failed on %s", event.get("event"))

    def _frame_period_s(self, cap: Any) -> float:
        """Pause between frames: a file plays at its own rate (capped by settings.fps); devices pace themselves."""
        if self.kind != "file":
            return 0.0
        file_fps = cap.get(self._cv2.CAP_PROP_FPS) or 0.0
        fps = min(file_fps, self.settings.fps) if file_fps > 0 else self.settings.fps
        return 1.0 / fps

    def _run(self) -> None:
        cv2 = self._cv2
        backoff = self.settings.reconnect_backoff_s
        lost_since: float | None = None
        first_attempt = True
        while not self._stop.is_set():
            try:
                cap = self._open()
            except Exception as exc:  # cv2.error as well as CameraError: keep retrying
                self.failures += 1
                if first_attempt or self.failures % 10 == 1:
                    log.warning("camera: %s; retrying in %.1f s", exc, backoff)
                else:
                    log.debug("camera: %s; retrying in %.1f s", exc, backoff)
                if lost_since is None:  # a camera that never opened is lost too, and is said to be
                    lost_since = time.monotonic()
                    self._emit({"event": "device_lost", "device": "camera", "reason": str(exc)})
                first_attempt = False
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.settings.max_backoff_s)
                continue
            first_attempt = False
            backoff = self.settings.reconnect_backoff_s
            self.connected = True
            log.info("camera %r open (%s) after %d failed attempt(s)", self.settings.source, self.kind, self.failures)
            if lost_since is not None:
                self.reconnects += 1
                log.warning("camera recovered after %.1f s (reconnect %d)", time.monotonic() - lost_since, self.reconnects)
                self._emit({"event": "device_recovered", "device": "camera", "reconnects": self.reconnects})
                lost_since = None
            period_s = self._frame_period_s(cap)
            next_due = time.monotonic()
            frames_this_open = 0
            try:
                while not self._stop.is_set():
                    ok, bgr = cap.read()
                    if not ok or bgr is None:
                        if self.kind == "file" and frames_this_open > 0:
                            if self.settings.loop_file and cap.set(cv2.CAP_PROP_POS_FRAMES, 0):
                                log.debug("camera: %s ended, looping", self.settings.source)
                                continue
                            if not self.settings.loop_file:
                                log.info("camera: video file %r ended; camera disconnected", self.settings.source)
                                self.ended = True
                                self.connected = False
                                self._emit({"event": "device_lost", "device": "camera", "reason": "end of video file"})
                                self._frames.wake()
                                return
                        raise CameraError(f"camera.source {self.settings.source!r}: reading a frame failed")
                    now = time.monotonic()
                    image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB) if bgr.ndim == 3 else cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGB)
                    self._frames.put(image, now)
                    self.frames_read += 1
                    frames_this_open += 1
                    if period_s:
                        next_due = max(next_due + period_s, now - period_s)
                        self._stop.wait(max(0.0, next_due - time.monotonic()))
            except Exception as exc:
                self.failures += 1
                self.connected = False
                lost_since = time.monotonic()
                log.warning("camera lost: %s; reopening in %.1f s", exc, backoff)
                self._emit({"event": "device_lost", "device": "camera", "reason": str(exc)})
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.settings.max_backoff_s)
            finally:
                cap.release()
        self.connected = False

    # --- consumer side -----------------------------------------------------------------------
    def start(self) -> None:
        """Start the reader thread; it keeps trying (with backoff) until the source opens."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="camera", daemon=True)
        self._thread.start()

    def latest(self) -> Frame | None:
        """The newest frame, or None before the first."""
        return self._frames.latest()

    def wait_newer(self, after_index: int, timeout_s: float) -> Frame | None:
        """The newest frame once one newer than ``after_index`` exists; None on timeout."""
        return self._frames.wait_newer(after_index, timeout_s)

    def close(self) -> None:
        """Stop the reader thread and release the camera."""
        self._stop.set()
        self._frames.wake()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
            if self._thread.is_alive():
                log.warning("camera: the reader thread is still blocked in the driver after 10 s")
        self.connected = False

    def __enter__(self) -> Camera:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StaticFrames:
    """In-memory frames for tests and demos: :meth:`show` makes an image the newest frame.

    By default it is a still picture (``still``): its newest frame is what it shows now however
    long ago it was shown, so the controller's frame-age check passes it; ``still=False`` makes it
    behave like a camera whose frames age (a camera that stopped delivering).
    """

    def __init__(self, images: Sequence[np.ndarray] = (), still: bool = True) -> None:
        self._images = [self._check(i, img) for i, img in enumerate(images)]
        self._frames = _LatestFrame()
        self._position = 0
        self.connected = False
        self.still = still

    @staticmethod
    def _check(i: int, image: np.ndarray) -> np.ndarray:
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"StaticFrames image {i}: expected (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
        return image

    def start(self) -> None:
        """Show the first image (if any)."""
        self.connected = True
        if self._images and self._frames.latest() is None:
            self._frames.put(self._images[0], time.monotonic())

    def show(self, image: np.ndarray) -> Frame:
        """Make ``image`` the newest frame."""
        return self._frames.put(self._check(0, image), time.monotonic())

    def advance(self) -> Frame:
        """Show the next image of the list (cycling)."""
        if not self._images:
            raise ValueError("StaticFrames: no images to advance through")
        self._position = (self._position + 1) % len(self._images)
        return self._frames.put(self._images[self._position], time.monotonic())

    def latest(self) -> Frame | None:
        """The newest frame, or None before start()."""
        return self._frames.latest()

    def wait_newer(self, after_index: int, timeout_s: float) -> Frame | None:
        """The newest frame once one newer than ``after_index`` is shown; None on timeout."""
        return self._frames.wait_newer(after_index, timeout_s)

    def close(self) -> None:
        """Nothing to release."""
        self.connected = False
