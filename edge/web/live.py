"""The live view: the camera's newest frame with what the robot makes of it, as a JPEG.

Drawn on each frame: the teach region (thick, with a banner, while teaching), the candidate boxes
and, for ``web.answer_show_s`` after it, the last answer (its box, label and both distances) or the
last taught pair. Candidates come from the controller's newest view when it found them in the last
second (it does while someone speaks, and for every answer); otherwise the live view runs its own
finder (a separate instance with the same settings, so the controller's is never shared between
threads) at most every ``web.candidates_interval_s``: the contour finder costs tens of ms a frame on
a small CPU, too much to run a few times a second for a page nobody may be watching.

A frame is drawn once however many browsers ask for it (cached by frame index and overlay), and
only when someone asks: with no page open the live view costs nothing.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

import cv2
import numpy as np

Box = tuple[int, int, int, int]
CONTROLLER_VIEW_FRESH_S = 1.0  # the controller's candidates are shown while their frame is at most this old
ANSWER_EVENTS = ("resolved", "not_in_view", "unknown_word", "taught")

# BGR colours
TEACH_COLOUR = (0, 215, 255)
CANDIDATE_COLOUR = (230, 170, 40)
FOUND_COLOUR = (60, 220, 60)
TAUGHT_COLOUR = (255, 120, 220)
MISS_COLOUR = (60, 60, 240)


class LiveView:
    """Annotated JPEGs of the newest frame; :meth:`on_event` follows the daemon's events (any thread)."""

    def __init__(
        self,
        frames: Any,
        *,
        finder: Any,
        teach_region: Callable[[np.ndarray], Any],
        settings: Any,
        controller_view: Callable[[], dict | None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.frames = frames
        self.finder = finder
        self.teach_region = teach_region
        self.settings = settings
        self.controller_view = controller_view
        self._clock = clock
        self._state_lock = threading.Lock()
        self._render_lock = threading.Lock()
        self._teaching = False
        self._overlay: dict | None = None  # the last answer or taught pair, with "shown_s"
        self._labels: dict[int, str | None] = {}  # renames since the overlay's event
        self._version = 0
        self._regions: dict[tuple[int, ...], Box] = {}
        self._boxes: list[Box] = []
        self._boxes_s = -1e9
        self._cache: tuple[tuple, bytes] | None = None
        self.renders = 0  # frames drawn and encoded (a benchmark reads it)
        self.finder_runs = 0

    # -- events

    def on_event(self, event: dict) -> None:
        """Follow teaching and answers."""
        name = event.get("event")
        with self._state_lock:
            if name == "teach_started":
                self._teaching = True
            elif name in ("teach_cancelled", "taught"):
                self._teaching = False
            if name in ANSWER_EVENTS:
                self._overlay = {**event, "shown_s": self._clock()}
                self._labels = {}
            elif name == "labelled":
                self._labels[event.get("pair_id")] = event.get("label")
            elif name not in ("teach_started", "teach_cancelled"):
                return
            self._version += 1

    def state(self) -> tuple[bool, dict | None]:
        """(teaching, the overlay still to show or None)."""
        with self._state_lock:
            overlay = self._overlay
            if overlay is not None and self._clock() - overlay["shown_s"] > self.settings.answer_show_s:
                overlay = None
            if overlay is not None and overlay.get("pair_id") in self._labels:
                overlay = {**overlay, "label": self._labels[overlay["pair_id"]]}
            return self._teaching, overlay

    # -- frames

    def jpeg(self, after_index: int | None, wait_s: float) -> tuple[bytes, int] | None:
        """(JPEG bytes, frame index) of the newest frame (one newer than ``after_index`` if it comes within ``wait_s``)."""
        frame = self.frames.latest()
        if frame is not None and after_index is not None and frame.index <= after_index:
            wait = getattr(self.frames, "wait_newer", None)
            newer = wait(after_index, wait_s) if wait is not None else None
            frame = newer or self.frames.latest()
        if frame is None:
            return None
        with self._render_lock:
            boxes = self._candidate_boxes(frame)
            teaching, overlay = self.state()
            key = (frame.index, self._version, tuple(boxes), teaching, overlay is None)
            if self._cache is not None and self._cache[0] == key:
                return self._cache[1], frame.index
            data = self._render(frame.image, boxes, teaching, overlay)
            self._cache = (key, data)
            self.renders += 1
            return data, frame.index

    def _candidate_boxes(self, frame: Any) -> list[Box]:
        view = self.controller_view()
        if view is not None and 0.0 <= frame.time_s - view["frame_time_s"] <= CONTROLLER_VIEW_FRESH_S:
            return [tuple(int(v) for v in b) for b in view["boxes"]]
        interval = self.settings.candidates_interval_s
        now = self._clock()
        if interval > 0 and now - self._boxes_s >= interval:
            self._boxes_s = now
            self._boxes = [tuple(int(v) for v in c.box) for c in self.finder.find(frame.image)]
            self.finder_runs += 1
        return self._boxes if interval > 0 else []

    def _region(self, image: np.ndarray) -> Box:
        shape = image.shape
        if shape not in self._regions:  # the teach region depends on the frame size only
            self._regions[shape] = tuple(int(v) for v in self.teach_region(image).box)
        return self._regions[shape]

    def _render(self, image: np.ndarray, boxes: list[Box], teaching: bool, overlay: dict | None) -> bytes:
        bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR if image.ndim == 2 else cv2.COLOR_RGB2BGR)
        h, w = bgr.shape[:2]
        scale = min(1.0, self.settings.frame_width_px / w)
        if scale < 1.0:
            bgr = cv2.resize(bgr, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        font = max(0.4, bgr.shape[1] / 700)
        thick = max(1, round(bgr.shape[1] / 320))

        def rect(box: Box, colour: tuple[int, int, int], width: int) -> tuple[int, int, int, int]:
            x, y, bw, bh = (round(v * scale) for v in box)
            cv2.rectangle(bgr, (x, y), (x + bw, y + bh), colour, width, cv2.LINE_AA)
            return x, y, bw, bh

        for box in boxes:
            rect(box, CANDIDATE_COLOUR, max(1, thick - 1))
        rect(self._region(image), TEACH_COLOUR, 3 * thick if teaching else max(1, thick - 1))
        if teaching:
            _banner(bgr, "TEACHING: hold the object in the yellow box, say its name", TEACH_COLOUR, font, top=True)
        if overlay is not None:
            name = overlay.get("label") or (f"pair {overlay['pair_id']}" if overlay.get("pair_id") is not None else "?")
            kind = overlay["event"]
            if kind in ("resolved", "taught") and overlay.get("box"):
                colour = FOUND_COLOUR if kind == "resolved" else TAUGHT_COLOUR
                x, y, _, _ = rect(overlay["box"], colour, 2 * thick)
                tag = name if kind == "resolved" else f"learned: {name}"
                _label(bgr, tag, (x, y), colour, font, thick)
                if kind == "resolved":
                    _banner(bgr, f"found {name}: speech {_num(overlay.get('speech_distance'))}, image {_num(overlay.get('image_distance'))}",
                            colour, font, top=False)
            elif kind == "not_in_view":
                _banner(bgr, f"{name} is not in view (best image distance {_num(overlay.get('image_distance'))})", MISS_COLOUR, font, top=False)
            elif kind == "unknown_word":
                _banner(bgr, f"unknown word (nearest speech distance {_num(overlay.get('speech_distance'))})", MISS_COLOUR, font, top=False)
        ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(self.settings.jpeg_quality)])
        if not ok:
            raise RuntimeError("JPEG encoding of a live frame failed")
        return data.tobytes()


def _num(value: Any) -> str:
    return "?" if value is None else f"{float(value):.3f}"


def _label(img: np.ndarray, text: str, at: tuple[int, int], colour: tuple[int, int, int], font: float, thick: int) -> None:
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font, thick)
    x, y = at
    y = max(th + base + 2, y)
    cv2.rectangle(img, (x, y - th - base - 2), (x + tw + 4, y), colour, cv2.FILLED)
    cv2.putText(img, text, (x + 2, y - base), cv2.FONT_HERSHEY_SIMPLEX, font, (0, 0, 0), thick, cv2.LINE_AA)


def _banner(img: np.ndarray, text: str, colour: tuple[int, int, int], font: float, top: bool) -> None:
    """A dark strip across the top or bottom with ``text`` (shrunk to fit the width)."""
    h, w = img.shape[:2]
    size = font * 0.9
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, size, 1)
    if tw > w - 8:
        size *= (w - 8) / tw
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, size, 1)
    strip = th + base + 8
    y0 = 0 if top else h - strip
    img[y0 : y0 + strip] = (img[y0 : y0 + strip] * 0.35).astype(np.uint8)
    cv2.putText(img, text, (4, y0 + th + 4), cv2.FONT_HERSHEY_SIMPLEX, size, colour, 1, cv2.LINE_AA)
