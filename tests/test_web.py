"""The operator's page over HTTP, without a browser: endpoints, the token, Host/Origin checks, limits, the live view."""
from __future__ import annotations

import http.client
import io
import json
import os
import socket
import threading
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy.io import wavfile

from edge.camera import StaticFrames
from edge.candidates import Candidate
from edge.config import ConfigError, config_from_mapping
from edge.control import _encode
from edge.web.live import FOUND_COLOUR, LiveView
from edge.web.server import WebError, WebServer, WebSettings, is_loopback, load_token, pair_views
from tests.daemon_fakes import Pair

WAIT_S = 10.0
TOKEN = "t0ken-for-tests-0123456789abcdef"


class FakeDaemon:
    """The daemon's command handler over a dict of pairs; records every request it is given."""

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        crop = rng.integers(0, 255, (30, 20, 3), dtype=np.uint8)
        self.pairs = {1: Pair(1, "cup", 1.0, (rng.normal(0, 3000, 1600)).astype(np.int16), 16000, crop)}
        self.requests: list[dict] = []
        self.state = "idle"

    def __call__(self, request: dict) -> dict:
        self.requests.append(request)
        cmd = request["cmd"]
        if cmd == "status":
            return {"state": self.state, "pairs": len(self.pairs)}
        if cmd == "list":
            return {"pairs": [{"pair_id": p.pair_id, "label": p.label, "created_unix": p.created_unix} for p in self.pairs.values()]}
        if cmd == "teach":
            self.state = "teaching"
            return {"state": self.state}
        if cmd == "cancel":
            if self.state != "teaching":
                return {"ok": False, "error": "not teaching", "state": self.state}
            self.state = "idle"
            return {"state": self.state}
        if request.get("pair_id") not in self.pairs:
            return {"ok": False, "error": f"no pair {request.get('pair_id')}"}
        if cmd == "label":
            self.pairs[request["pair_id"]].label = request["label"]
            return {"pair_id": request["pair_id"], "label": request["label"]}
        if cmd == "forget":
            del self.pairs[request["pair_id"]]
            return {"pair_id": request["pair_id"]}
        return {"ok": False, "error": f"unexpected {cmd}"}


class Boxes:
    """A finder proposing two fixed boxes; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def find(self, image):
        self.calls += 1
        return [Candidate(b, image[b[1]: b[1] + b[3], b[0]: b[0] + b[2]]) for b in ((10, 10, 40, 40), (100, 20, 50, 50))]


def region(image):
    return Candidate((60, 30, 60, 60), image[30:90, 60:120])


def table() -> np.ndarray:
    return np.full((120, 200, 3), 90, np.uint8)


@pytest.fixture
def rig(tmp_path):
    made = []

    def make(settings: WebSettings = WebSettings(enabled=True, port=0), frames=None, finder=None, daemon=None):
        frames = frames or StaticFrames([table()])
        frames.start()
        daemon = daemon or FakeDaemon()
        live = LiveView(frames, finder=finder or Boxes(), teach_region=region, settings=settings)
        server = WebServer(settings, handler=daemon, live=live, read_pair=daemon.pairs.get)
        server.start()
        made.append(server)
        return server, daemon, frames

    yield make
    for server in made:
        server.close()


def get(server: WebServer, path: str, headers: dict | None = None, host: str = "127.0.0.1"):
    conn = http.client.HTTPConnection(host, server.port, timeout=WAIT_S)
    try:
        conn.request("GET", path, headers=headers or {})
        r = conn.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        conn.close()


def send(server: WebServer, method: str, path: str, body: dict | bytes | None = None, headers: dict | None = None, host: str = "127.0.0.1"):
    conn = http.client.HTTPConnection(host, server.port, timeout=WAIT_S)
    data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    try:
        conn.request(method, path, body=data, headers={k: v for k, v in hdrs.items() if v is not None})
        r = conn.getresponse()
        raw = r.read()
        return r.status, dict(r.getheaders()), (json.loads(raw) if raw and r.getheader("Content-Type") == "application/json" else raw)
    finally:
        conn.close()


def raw_request(server: WebServer, data: bytes) -> bytes:
    """Send bytes as they are (for requests http.client would not write) and return the reply."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_S) as sock:
        sock.sendall(data)
        out = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            out += chunk
            if b"\r\n\r\n" in out:
                head, _, body = out.partition(b"\r\n\r\n")
                length = [int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
                if length and len(body) >= length[0]:
                    break
        return out


# ---------------------------------------------------------------------------- the endpoints


def test_page_status_pairs_crop_audio_and_frame_on_loopback(rig):
    server, daemon, _ = rig()
    status, headers, body = get(server, "/")
    assert status == 200 and b"<title>showsay</title>" in body
    assert "script-src 'self'" in headers["Content-Security-Policy"] and headers["X-Content-Type-Options"] == "nosniff"
    status, headers, body = get(server, "/static/app.js")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript") and b"EventSource" in body
    assert get(server, "/static/app.js", {"If-None-Match": headers["ETag"]})[0] == 304

    status, _, body = get(server, "/api/status")
    assert status == 200 and json.loads(body) == {"ok": True, "state": "idle", "pairs": 1}
    status, _, body = get(server, "/api/pairs")
    pairs = json.loads(body)["pairs"]
    assert pairs == [{"pair_id": 1, "label": "cup", "created_unix": 1.0, "crops": ["/api/pairs/1/crop/0.png"], "audio": "/api/pairs/1/audio.wav"}]

    status, headers, body = get(server, pairs[0]["crops"][0])
    assert status == 200 and headers["Content-Type"] == "image/png"
    crop = cv2.cvtColor(cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    np.testing.assert_array_equal(crop, daemon.pairs[1].crop)  # PNG: exactly the stored crop
    assert get(server, "/api/pairs/1/crop/1.png")[0] == 404  # one view today
    assert get(server, "/api/pairs/9/crop/0.png")[0] == 404
    status, headers, body = get(server, pairs[0]["audio"])
    rate, pcm = wavfile.read(io.BytesIO(body))
    assert status == 200 and headers["Content-Type"] == "audio/wav" and rate == 16000
    np.testing.assert_array_equal(pcm, daemon.pairs[1].audio_pcm)

    status, headers, body = get(server, "/frame.jpg")
    frame = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
    assert status == 200 and headers["Content-Type"] == "image/jpeg" and frame.shape == (120, 200, 3)
    assert int(headers["X-Frame-Index"]) == 0 and headers["X-Live-Interval-Ms"] == "125"


def test_a_pair_with_several_views_serves_each():
    pair = Pair(1, None, 0.0, np.zeros(10, np.int16), 16000, np.zeros((4, 4, 3), np.uint8))
    assert len(pair_views(pair)) == 1
    views = [np.zeros((4, 4, 3), np.uint8), np.ones((5, 5, 3), np.uint8)]
    assert [v.shape for v in pair_views(type("WithViews", (), {"views": views, "crop": views[0]})())] == [(4, 4, 3), (5, 5, 3)]


def test_frame_after_an_index_waits_for_a_newer_frame(rig):
    server, _, frames = rig()
    threading.Timer(0.3, lambda: frames.show(table())).start()
    status, headers, _ = get(server, "/frame.jpg?after=0")
    assert status == 200 and headers["X-Frame-Index"] == "1"
    assert get(server, "/frame.jpg?after=x")[0] == 400


def test_commands_are_the_daemons_own(rig):
    server, daemon, _ = rig()
    status, _, reply = send(server, "POST", "/api/teach", {"label": "mug"})
    assert (status, reply) == (200, {"ok": True, "state": "teaching"})
    assert send(server, "POST", "/api/cancel")[:3:2] == (200, {"ok": True, "state": "idle"})
    status, _, reply = send(server, "POST", "/api/cancel")
    assert status == 409 and reply == {"ok": False, "error": "not teaching", "state": "idle"}
    assert send(server, "POST", "/api/pairs/1/label", {"label": "teacup"})[0] == 200
    assert send(server, "POST", "/api/pairs/1/label", {"label": ""})[2] == {"ok": True, "pair_id": 1, "label": None}
    status, _, reply = send(server, "POST", "/api/pairs/7/label", {"label": "x"})
    assert status == 409 and reply["error"] == "no pair 7"
    assert send(server, "POST", "/api/pairs/1/label", {"label": 5})[0] == 400  # checked like the socket checks it
    assert send(server, "DELETE", "/api/pairs/1", headers={"Content-Type": None})[0] == 200
    assert [r["cmd"] for r in daemon.requests] == ["teach", "cancel", "cancel", "label", "label", "label", "forget"]
    assert daemon.requests[0] == {"cmd": "teach", "label": "mug"} and daemon.requests[-1] == {"cmd": "forget", "pair_id": 1}


def test_state_changes_need_post_json_from_this_page(rig):
    server, daemon, _ = rig()
    assert get(server, "/api/teach")[0] == 405  # never by GET
    assert get(server, "/api/pairs/1/label")[0] == 405
    assert send(server, "POST", "/api/teach", b"label=x", {"Content-Type": "application/x-www-form-urlencoded"})[0] == 415
    assert send(server, "POST", "/api/teach", b"", {"Content-Type": "text/plain"})[0] == 415  # what another site's form can send
    status, _, reply = send(server, "POST", "/api/teach", {}, {"Origin": "http://evil.example"})
    assert status == 403 and "Origin" in reply["error"]
    assert send(server, "DELETE", "/api/pairs/1", headers={"Origin": "http://evil.example", "Content-Type": None})[0] == 403
    assert send(server, "PUT", "/api/pairs/1", {})[0] == 405
    assert daemon.requests == []  # nothing reached the daemon
    assert send(server, "POST", "/api/teach", {}, {"Origin": f"http://127.0.0.1:{server.port}"})[0] == 200


def test_a_foreign_host_name_is_refused_without_a_token(rig):
    # DNS rebinding: a page on evil.example whose name now resolves to 127.0.0.1
    server, daemon, _ = rig()
    status, _, body = get(server, "/api/status", {"Host": f"evil.example:{server.port}"})
    assert status == 403 and b"Host" in body
    assert send(server, "POST", "/api/teach", {}, {"Host": f"evil.example:{server.port}"})[0] == 403
    assert get(server, "/api/status", {"Host": f"localhost:{server.port}"})[0] == 200
    assert [r["cmd"] for r in daemon.requests] == ["status"]


@pytest.mark.parametrize("path", [
    "/static/../server.py", "/static/%2e%2e/server.py", "/static/..%2fserver.py", "/static/server.py", "/static/",
    "/static/.hidden", "/../edge/web/server.py", "//etc/passwd", "/static//etc/passwd", "/index.html/..", "/static/app.js/",
    "/static/app.js%00.png", "/api/pairs/1/crop/0.png/../../../../etc/passwd", "/api/pairs/-1/audio.wav",
])
def test_nothing_outside_the_packaged_page_is_served(rig, path):
    server, _, _ = rig()
    reply = raw_request(server, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nConnection: close\r\n\r\n".encode())
    assert reply.startswith(b"HTTP/1.1 404"), reply[:200]
    assert b"import " not in reply and b"root:" not in reply


def test_request_size_and_connection_limits(rig):
    # client_timeout_s leaves room for a loaded machine: the idle connections must still be open when the extra one arrives
    settings = WebSettings(enabled=True, port=0, max_connections=3, max_event_streams=1, max_body_bytes=256, client_timeout_s=4.0)
    server, daemon, _ = rig(settings)
    status, _, reply = send(server, "POST", "/api/teach", {"label": "x" * 400})
    assert status == 413 and "max_body_bytes=256" in reply["error"]
    reply = raw_request(server, f"POST /api/teach HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nContent-Type: application/json\r\n"
                                f"Transfer-Encoding: chunked\r\n\r\n5\r\n{{}}   \r\n0\r\n\r\n".encode())
    assert reply.startswith(b"HTTP/1.1 411")
    assert daemon.requests == []

    # an event stream beyond max_event_streams is refused
    first = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_S)
    first.sendall(f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
    assert first.recv(4096).startswith(b"HTTP/1.1 200")
    assert get(server, "/events")[0] == 503

    # connections beyond max_connections get 503 at once; idle ones are closed after client_timeout_s
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_S) for _ in range(2)]
    deadline = time.monotonic() + WAIT_S
    while len(server._server.connections) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    extra = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_S)
    assert extra.recv(4096).startswith(b"HTTP/1.1 503")
    for sock in idle:
        assert sock.recv(4096) == b""  # closed by the server once client_timeout_s passed without a request
    for sock in (first, extra, *idle):
        sock.close()
    deadline = time.monotonic() + WAIT_S
    while get(server, "/api/status")[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert get(server, "/api/status")[0] == 200


def _read_event(sock: socket.socket, buf: bytearray, end: bytes = b"\n\n") -> bytes:
    """The next item of an event stream (the response head with ``end=b"\\r\\n\\r\\n"``)."""
    while end not in buf:
        chunk = sock.recv(65536)
        assert chunk, "the event stream ended"
        buf += chunk
    i = buf.index(end)
    item = bytes(buf[:i])
    del buf[: i + len(end)]
    return item


def test_events_are_the_control_sockets_json_and_a_stuck_page_is_dropped(rig):
    server, _, _ = rig(WebSettings(enabled=True, port=0, event_queue_events=8))
    reader = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_S)
    reader.sendall(f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
    buf = bytearray()
    head = _read_event(reader, buf, b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head
    assert _read_event(reader, buf) == b"retry: 2000"
    event = {"event": "taught", "pair_id": 3, "label": "cup", "box": [1, 2, 3, 4], "time_unix": 5.5}
    server.publish(event)
    assert _read_event(reader, buf) == b"data: " + _encode(event).rstrip(b"\n")

    # a page that stops reading: publish never waits, and the stream is closed once its queue is full
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(("127.0.0.1", server.port))
    stuck.sendall(f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n\r\n".encode())
    deadline = time.monotonic() + WAIT_S
    while server.stream_count < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.stream_count == 2
    big = {"event": "error", "error": "x" * 20000}
    done = threading.Event()

    def flood():
        for _ in range(500):
            server.publish(big)
        done.set()

    threading.Thread(target=flood, daemon=True).start()
    assert done.wait(WAIT_S), "publish blocked on a page that does not read"
    deadline = time.monotonic() + WAIT_S
    while server.stream_count > 0 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.stream_count == 0  # the reader above was slow too: both dropped, none blocked the publisher
    reader.close()
    stuck.close()


# ---------------------------------------------------------------------------- the token


def _token_file(tmp_path: Path, text: str = TOKEN, mode: int = 0o600) -> Path:
    path = tmp_path / "web.token"
    path.write_text(text + "\n")
    path.chmod(mode)
    return path


def _other_address() -> str:
    """An address of this machine other than loopback, if it has one (else 127.0.0.1, still bound beyond loopback)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
        address = probe.getsockname()[0]
    except OSError:
        address = "127.0.0.1"
    finally:
        probe.close()
    return address


def test_beyond_loopback_every_request_needs_the_token(rig, tmp_path):
    settings = WebSettings(enabled=True, bind="0.0.0.0", port=0, token_file=str(_token_file(tmp_path)))
    server, daemon, _ = rig(settings)
    host = _other_address()
    for path in ("/api/status", "/api/pairs", "/frame.jpg", "/events", "/api/pairs/1/crop/0.png", "/api/pairs/1/audio.wav",
                 "/static/app.js", "/static/index.html", "/static/login.html"):
        status, headers, _ = get(server, path, host=host)
        assert status == 401, path
    assert get(server, "/static/style.css", host=host)[0] == 200  # the login form's look: public, holds nothing
    status, _, body = get(server, "/", host=host)
    assert status == 401 and b'action="/login"' in body  # the login form instead of the page
    assert send(server, "POST", "/api/teach", {}, host=host)[0] == 401
    assert send(server, "POST", "/api/teach", {}, {"Authorization": "Bearer wrong-token-0123456789"}, host=host)[0] == 401
    assert send(server, "DELETE", "/api/pairs/1", headers={"Cookie": "showsay_token=nope", "Content-Type": None}, host=host)[0] == 401
    assert daemon.requests == []

    assert get(server, "/api/status", {"Authorization": f"Bearer {TOKEN}"}, host=host)[0] == 200
    status, _, body = send(server, "POST", "/login", b"token=wrong", {"Content-Type": "application/x-www-form-urlencoded"}, host=host)
    assert status == 401 and b"login" in body
    status, headers, _ = send(server, "POST", "/login", f"token={TOKEN}".encode(), {"Content-Type": "application/x-www-form-urlencoded"}, host=host)
    assert status == 303 and headers["Location"] == "/"
    cookie = headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    jar = {"Cookie": cookie.split(";")[0]}
    assert get(server, "/", jar, host=host)[0] == 200
    assert send(server, "POST", "/api/teach", {}, jar, host=host)[0] == 200
    assert [r["cmd"] for r in daemon.requests] == ["status", "teach"]


def test_the_token_file_is_checked_at_start(tmp_path):
    with pytest.raises(WebError, match="no such file"):
        load_token(tmp_path / "missing")
    with pytest.raises(WebError, match=r"mode 0644 lets other users read the token; chmod 600"):
        load_token(_token_file(tmp_path, mode=0o644))
    with pytest.raises(WebError, match="at least 16"):
        load_token(_token_file(tmp_path, "short"))
    with pytest.raises(WebError, match="letters, digits"):
        load_token(_token_file(tmp_path, "has spaces in it 0123456789"))
    link = tmp_path / "link.token"
    link.symlink_to(_token_file(tmp_path))
    with pytest.raises(WebError, match="symbolic link"):
        load_token(link)
    assert load_token(_token_file(tmp_path)) == TOKEN


def test_a_page_beyond_loopback_without_a_token_is_a_config_error():
    with pytest.raises(ConfigError, match=r"web\.bind: '0\.0\.0\.0' is reachable beyond this machine; set web\.token_file"):
        config_from_mapping({"web": {"enabled": True, "bind": "0.0.0.0"}})
    config_from_mapping({"web": {"enabled": False, "bind": "0.0.0.0"}})  # off: nothing is served
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost") and is_loopback("127.0.0.2")
    assert not is_loopback("0.0.0.0") and not is_loopback("") and not is_loopback("192.0.2.2") and not is_loopback("robot.local")


def test_a_port_in_use_is_reported_with_the_setting(rig):
    server, _, _ = rig()
    clash = WebServer(WebSettings(enabled=True, port=server.port), handler=FakeDaemon(), live=None, read_pair=lambda i: None)
    with pytest.raises(WebError, match=rf"web\.bind '127\.0\.0\.1' port {server.port}: cannot listen"):
        clash.start()


# ---------------------------------------------------------------------------- the live view


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _decode(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def _near(pixels: np.ndarray, colour: tuple[int, int, int], tol: int = 60) -> float:
    """Fraction of pixels within ``tol`` of a BGR colour (JPEG blurs edges)."""
    return float(np.mean(np.abs(pixels.astype(int) - np.array(colour)).max(axis=-1) <= tol))


def test_live_view_draws_the_answer_box_then_forgets_it_and_draws_once_per_frame():
    frames = StaticFrames([table()])
    frames.start()
    clock = Clock()
    finder = Boxes()
    live = LiveView(frames, finder=finder, teach_region=region, settings=WebSettings(answer_show_s=5.0), clock=clock)
    plain = _decode(live.jpeg(None, 0.0)[0])
    assert live.jpeg(None, 0.0)[1] == 0 and live.renders == 1  # the same frame is drawn once
    live.on_event({"event": "resolved", "pair_id": 2, "label": "cup", "box": [130, 60, 50, 40], "speech_distance": 0.1, "image_distance": 0.2})
    shown = _decode(live.jpeg(None, 0.0)[0])
    assert live.renders == 2
    assert _near(shown[60, 132:178], FOUND_COLOUR) > 0.8 and _near(plain[60, 132:178], FOUND_COLOUR) < 0.1  # the box's top edge
    assert shown[-6:].mean() < 50 < plain[-6:].mean() and shown[-14:].std() > plain[-14:].std() + 5  # a banner with text along the bottom
    clock.now += 6.0
    faded = _decode(live.jpeg(None, 0.0)[0])
    assert _near(faded[60, 132:178], FOUND_COLOUR) < 0.1
    assert finder.calls == 2  # the finder ran at the start and again after candidates_interval_s, not per request


def test_live_view_prefers_the_controllers_candidates_and_shows_teaching():
    frames = StaticFrames([table()])
    frames.start()
    finder = Boxes()
    snapshot = {"frame_index": 0, "frame_time_s": frames.latest().time_s, "boxes": [(5, 5, 30, 30)]}
    live = LiveView(frames, finder=finder, teach_region=region, settings=WebSettings(), controller_view=lambda: snapshot)
    idle = _decode(live.jpeg(None, 0.0)[0])
    assert finder.calls == 0
    live.on_event({"event": "teach_started", "source": "web"})
    teaching = _decode(live.jpeg(None, 0.0)[0])
    yellow = (0, 215, 255)
    assert _near(teaching[29:32, 62:118].reshape(-1, 3), yellow) > _near(idle[29:32, 62:118].reshape(-1, 3), yellow) + 0.3
    assert teaching[:6].mean() < 50 < idle[:6].mean() and teaching[:14].std() > idle[:14].std() + 5  # the TEACHING banner


def test_the_page_only_shows_text_it_was_given_as_text():
    page = (Path(__file__).resolve().parents[1] / "edge" / "web" / "static" / "app.js").read_text()
    assert "innerHTML" not in page and "eval(" not in page and "document.write" not in page
    for name in os.listdir(Path(__file__).resolve().parents[1] / "edge" / "web" / "static"):
        text = (Path(__file__).resolve().parents[1] / "edge" / "web" / "static" / name).read_text()
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text, name  # nothing from elsewhere


@pytest.mark.timeout(180)
def test_demo_serves_the_page_while_it_runs_and_holds_it_after(tmp_path):
    import re
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    proc = subprocess.Popen([sys.executable, "-m", "edge", "demo", "--out", str(tmp_path / "demo"), "--web-port", "0", "--web-hold-s", "6"],
                            cwd=root, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        port, requests, pairs_after = None, 0, None
        for line in proc.stdout:
            match = re.search(r"the operator's page is on http://127\.0\.0\.1:(\d+)/ \(kept up 6 s after the session\)", line)
            if match:
                port = int(match.group(1))
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_S)
                conn.request("GET", "/api/status")
                assert conn.getresponse().status == 200
                conn.close()
            requests += "request (the session says" in line
            if requests == 5 and pairs_after is None:  # the session is over: the hold has begun
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_S)
                conn.request("GET", "/api/pairs")
                pairs_after = json.loads(conn.getresponse().read())["pairs"]
                conn.close()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert port is not None
    assert [p["label"] for p in pairs_after] == ["apple", "star", "cube"]
    with pytest.raises(OSError):  # the page is gone with the demo
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


class BrokenFinder:
    def find(self, image):
        raise RuntimeError("finder exploded")


def test_a_live_frame_that_cannot_be_drawn_is_an_error_reply_not_a_dropped_connection(rig):
    server, _, _ = rig(finder=BrokenFinder())
    status, _, body = get(server, "/frame.jpg")
    assert status == 500 and b"finder exploded" in body
    assert get(server, "/api/status")[0] == 200
    assert get(server, "/api/status?" + "&".join(f"k{i}=1" for i in range(20)))[0] == 400
