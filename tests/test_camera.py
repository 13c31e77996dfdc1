"""Camera: a video file (MJPG, written by cv2.VideoWriter) and a local HTTP stream stand in for a camera."""
from __future__ import annotations

import functools
import http.server
import logging
import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.camera import JETSON_CSI_PIPELINE, Camera, CameraError, CameraSettings, StaticFrames, source_kind

FPS = 20
SIZE = (64, 48)  # (width, height)


def frame_number(image: np.ndarray) -> int:
    """The number painted into a test frame's left half (survives JPEG: a flat grey level per frame)."""
    return int(round(float(image[:, :24].mean()) / 6.0))


def write_video(path: Path, frames: int = 20) -> Path:
    """An MJPG video whose frame i has grey level 6*i on the left and pure blue (RGB) on the right."""
    tmp = path.with_name(path.stem + ".partial.avi")
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"MJPG"), FPS, SIZE)
    assert writer.isOpened()
    for i in range(frames):
        bgr = np.zeros((SIZE[1], SIZE[0], 3), np.uint8)
        bgr[:, :32] = 6 * i
        bgr[:, 32:] = (200, 10, 10)  # BGR order: blue
        writer.write(bgr)
    writer.release()
    os.replace(tmp, path)  # appears at once, never half-written
    return path


def fast_retry(source: str, **kw) -> CameraSettings:
    return CameraSettings(source=source, reconnect_backoff_s=0.05, max_backoff_s=0.2, **kw)


def wait_until(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


def test_newest_frame_only_and_rgb(tmp_path):
    video = write_video(tmp_path / "cam.avi", frames=40)
    with Camera(fast_retry(str(video))) as cam:
        first = cam.wait_newer(-1, timeout_s=5)
        assert first is not None and first.image.shape == (48, 64, 3) and first.image.dtype == np.uint8
        assert tuple(first.image[0, 50]) == pytest.approx((10, 10, 200), abs=6)  # RGB, not BGR
        time.sleep(0.5)  # a slow consumer: about 10 frames pass meanwhile
        latest = cam.latest()
        assert latest.index >= first.index + 6
        assert frame_number(latest.image) == latest.index  # the newest, not the oldest unread
        newer = cam.wait_newer(latest.index, timeout_s=2)
        assert newer is not None and newer.index > latest.index and newer.time_s > latest.time_s
        assert cam.connected


def test_file_paced_at_its_frame_rate(tmp_path):
    video = write_video(tmp_path / "cam.avi", frames=20)
    with Camera(fast_retry(str(video))) as cam:
        first = cam.wait_newer(-1, timeout_s=5)
        assert wait_until(lambda: cam.ended, 5)
        last = cam.latest()
    assert last.index == 19
    assert 0.8 <= last.time_s - first.time_s <= 1.5  # 19 frame periods of 50 ms


def test_end_of_video_reports_disconnected(tmp_path, caplog):
    video = write_video(tmp_path / "short.avi", frames=5)
    events = []
    with caplog.at_level(logging.INFO, logger="edge.camera"), Camera(fast_retry(str(video)), on_event=events.append) as cam:
        assert cam.wait_newer(-1, timeout_s=5) is not None
        assert wait_until(lambda: cam.ended and not cam.connected, 5)
        last = cam.latest()
        assert cam.wait_newer(last.index, timeout_s=0.3) is None  # nothing more comes
    assert last.index == 4
    assert events == [{"event": "device_lost", "device": "camera", "reason": "end of video file"}]
    assert any("ended" in r.message for r in caplog.records)


def test_looping_video_keeps_going(tmp_path):
    video = write_video(tmp_path / "short.avi", frames=5)
    with Camera(fast_retry(str(video), loop_file=True)) as cam:
        assert wait_until(lambda: cam.frames_read >= 12, 5)
        assert cam.connected and not cam.ended
        frame = cam.latest()
        assert frame_number(frame.image) == frame.index % 5


def test_reconnects_with_backoff_when_the_file_appears(tmp_path, caplog):
    path = tmp_path / "later.avi"
    with caplog.at_level(logging.WARNING, logger="edge.camera"), Camera(fast_retry(str(path))) as cam:
        time.sleep(0.6)
        assert not cam.connected and cam.latest() is None
        # backoff 0.05, 0.1, 0.2, 0.2, ...: a handful of attempts, not a busy loop
        assert 2 <= cam.failures <= 6
        write_video(path)
        frame = cam.wait_newer(-1, timeout_s=5)
        assert frame is not None and cam.connected
    assert any("no such video file" in r.message and "later.avi" in r.message for r in caplog.records)


@pytest.fixture
def http_video(tmp_path):
    """A local HTTP server serving a video: an IP camera whose stream can end and whose server can vanish."""
    write_video(tmp_path / "stream.avi", frames=10)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))

    class Quiet(handler.func):  # type: ignore[name-defined]
        def log_message(self, *args):
            pass

    quiet = functools.partial(Quiet, directory=str(tmp_path))
    state = {}

    def serve(port: int = 0) -> int:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), quiet)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        state["server"] = server
        return server.server_address[1]

    def stop() -> None:
        state["server"].shutdown()
        state["server"].server_close()

    yield serve, stop
    stop()


def test_url_source_lost_and_recovered(http_video):
    serve, stop = http_video
    port = serve()
    events = []
    settings = CameraSettings(source=f"http://127.0.0.1:{port}/stream.avi", reconnect_backoff_s=0.05, max_backoff_s=0.2, open_timeout_s=2)
    with Camera(settings, on_event=events.append) as cam:
        assert cam.kind == "url"
        assert cam.wait_newer(-1, timeout_s=5) is not None
        # the stream ends after 10 frames: a failed read on a live source means lost, then reopened
        assert wait_until(lambda: cam.reconnects >= 1, 5)
        stop()
        failures = cam.failures
        assert wait_until(lambda: cam.failures >= failures + 3, 5)  # retrying while the server is down
        serve(port)
        reconnects = cam.reconnects
        assert wait_until(lambda: cam.reconnects > reconnects, 5)
        assert cam.wait_newer(cam.latest().index, timeout_s=5) is not None
    kinds = [e["event"] for e in events]
    assert kinds[:2] == ["device_lost", "device_recovered"] and kinds.count("device_recovered") >= 2


def test_missing_device_index_retries_without_hanging():
    cam = Camera(fast_retry("9"))
    cam.start()
    assert wait_until(lambda: cam.failures >= 2, 5)
    t0 = time.monotonic()
    cam.close()
    assert time.monotonic() - t0 < 2 and not cam.connected and cam.latest() is None


def test_gstreamer_pipeline_without_gstreamer_is_a_clear_error():
    assert "GStreamer:                   NO" in cv2.getBuildInformation() or pytest.fail(
        "this test documents the pip OpenCV wheel (no GStreamer); on JetPack's OpenCV the pipeline opens"
    )
    t0 = time.monotonic()
    with pytest.raises(CameraError, match="GStreamer") as err:
        Camera(CameraSettings(source="videotestsrc num-buffers=10 ! videoconvert ! appsink"))
    assert "JetPack" in str(err.value) and time.monotonic() - t0 < 1


def test_source_kinds():
    assert source_kind("0") == "device"
    assert source_kind(" 12 ") == "device"
    assert source_kind(JETSON_CSI_PIPELINE) == "pipeline"
    assert source_kind("rtsp://robot.local:8554/cam") == "url"
    assert source_kind("/data/table.mp4") == "file"
    assert "nvarguscamerasrc" in CameraSettings.__dataclass_fields__["source"].metadata["help"]


def test_static_frames():
    a = np.zeros((4, 4, 3), np.uint8)
    b = np.full((4, 4, 3), 255, np.uint8)
    frames = StaticFrames([a, b])
    assert frames.latest() is None
    frames.start()
    assert frames.latest().index == 0 and frames.latest().image is a
    assert frames.wait_newer(0, timeout_s=0.05) is None
    threading.Timer(0.05, frames.advance).start()
    newer = frames.wait_newer(0, timeout_s=2)
    assert newer.index == 1 and newer.image is b
    assert frames.show(a).index == 2
    with pytest.raises(ValueError, match="uint8 RGB"):
        frames.show(np.zeros((4, 4), np.uint8))
