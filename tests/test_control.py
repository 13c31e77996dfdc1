"""The control socket: requests and replies, event streams, bad input, slow readers, socket file."""
from __future__ import annotations

import json
import os
import socket
import stat
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge.control import ControlClient, ControlError, ControlServer, ControlSettings, ControlTimeout, DaemonNotRunning
from edge.settings import SettingsError, build

WAIT_S = 5.0


def echo_handler(request: dict) -> dict:
    """Answers like a daemon would, echoing what it got."""
    if request["cmd"] == "forget" and request["pair_id"] == 13:
        return {"ok": False, "error": "no pair 13"}
    if request["cmd"] == "status":
        return {"state": "idle", "pairs": 2}
    if request["cmd"] == "ask" and request["wav"].endswith("boom.wav"):
        raise RuntimeError("encoder exploded")
    return {"got": request}


@pytest.fixture
def server(tmp_path: Path):
    settings = ControlSettings(socket_path=str(tmp_path / "run" / "ctl.sock"), max_message_bytes=1024, subscriber_queue_events=8, send_timeout_s=0.5)
    srv = ControlServer(settings, echo_handler)
    srv.start()
    yield srv
    srv.close()


def raw(server: ControlServer) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(WAIT_S)
    sock.connect(str(server.path))
    return sock


def read_line(sock: socket.socket, buf: list[bytes] | None = None) -> dict:
    """One JSON line from ``sock`` (``buf`` keeps bytes after the line between calls)."""
    data = buf.pop() if buf else b""
    while b"\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before a full line"
        data += chunk
    line, rest = data.split(b"\n", 1)
    if buf is not None:
        buf.append(rest)
    return json.loads(line)


def wait_until(predicate, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.01)


def test_request_reply(server: ControlServer) -> None:
    client = ControlClient(server.path)
    assert client.request({"cmd": "status"}, timeout_s=WAIT_S) == {"ok": True, "state": "idle", "pairs": 2}
    reply = client.request({"cmd": "label", "pair_id": 3, "label": "cup", "id": "r1"}, timeout_s=WAIT_S)
    assert reply == {"ok": True, "got": {"cmd": "label", "pair_id": 3, "label": "cup", "id": "r1"}, "id": "r1"}
    assert client.request({"cmd": "forget", "pair_id": 13}, timeout_s=WAIT_S) == {"ok": False, "error": "no pair 13"}


def test_several_requests_on_one_connection(server: ControlServer) -> None:
    sock = raw(server)
    sock.sendall(b'{"cmd":"status","id":1}\n{"cmd":"list","id":2}\n')
    buf: list[bytes] = []
    assert read_line(sock, buf)["id"] == 1
    assert read_line(sock, buf)["id"] == 2
    sock.close()


@pytest.mark.parametrize(
    "line, error",
    [
        (b"this is not json\n", "not valid JSON"),
        (b"[1, 2, 3]\n", "expected a JSON object"),
        (b'"cmd"\n', "expected a JSON object"),
        (b'{"cmd": "dance"}\n', "unknown cmd 'dance'"),
        (b'{"no_cmd": 1}\n', "unknown cmd None"),
        (b'{"cmd": "forget"}\n', "missing argument 'pair_id'"),
        (b'{"cmd": "forget", "pair_id": "7"}\n', "must be integer"),
        (b'{"cmd": "forget", "pair_id": true}\n', "must be integer"),
        (b'{"cmd": "ask", "wav": "relative.wav"}\n', "absolute path"),
        (b"\xff\xfe\x00garbage\x80\n", "not UTF-8"),
        (b'{"cmd": "ask", "wav": "/tmp/boom.wav"}\n', "internal error: RuntimeError: encoder exploded"),
    ],
)
def test_bad_requests_get_error_replies_and_the_server_keeps_serving(server: ControlServer, line: bytes, error: str) -> None:
    sock = raw(server)
    sock.sendall(line)
    reply = read_line(sock)
    assert reply["ok"] is False and error in reply["error"]
    sock.sendall(b'{"cmd": "status"}\n')  # same connection still served
    assert read_line(sock)["ok"] is True
    sock.close()
    assert ControlClient(server.path).request({"cmd": "status"}, timeout_s=WAIT_S)["ok"] is True


def test_oversized_line_gets_an_error_and_the_connection_goes_on(server: ControlServer) -> None:
    sock = raw(server)
    big = b'{"cmd": "teach", "label": "' + b"x" * 5000 + b'"}\n'
    for i in range(0, len(big), 700):  # arrives in pieces, as over a slow link
        sock.sendall(big[i:i + 700])
    buf: list[bytes] = []
    reply = read_line(sock, buf)
    assert reply["ok"] is False and "max_message_bytes=1024" in reply["error"]
    sock.sendall(b'{"cmd": "status", "id": "after"}\n')
    assert read_line(sock, buf) == {"ok": True, "state": "idle", "pairs": 2, "id": "after"}
    sock.close()


def test_binary_garbage_without_newlines_and_half_lines_do_not_disturb_others(server: ControlServer) -> None:
    other = raw(server)  # a client that is connected throughout
    garbage = raw(server)
    garbage.sendall(os.urandom(300_000).replace(b"\n", b"\x00"))
    reply = read_line(garbage)
    assert reply["ok"] is False and "max_message_bytes" in reply["error"]
    garbage.close()
    half = raw(server)
    half.sendall(b'{"cmd": "sta')
    half.shutdown(socket.SHUT_WR)  # the client gives up mid-line
    reply = read_line(half)
    assert reply["ok"] is False and "incomplete" in reply["error"]
    half.close()
    abrupt = raw(server)
    abrupt.sendall(b'{"cmd": "sta')
    abrupt.close()
    other.sendall(b'{"cmd": "status"}\n')
    assert read_line(other)["ok"] is True
    other.close()


def test_events_reach_two_subscribers_in_order(server: ControlServer) -> None:
    got: dict[str, list[dict]] = {"a": [], "b": []}

    def listen(name: str) -> None:
        for event in ControlClient(server.path).events(timeout_s=WAIT_S):
            got[name].append(event)
            if event["event"] == "last":
                return

    threads = [threading.Thread(target=listen, args=(n,)) for n in got]
    for t in threads:
        t.start()
    wait_until(lambda: server.subscriber_count == 2)
    for i in range(5):
        server.publish({"event": "taught", "pair_id": i, "label": None})
    server.publish({"event": "resolved", "box": np.array([1, 2, 3, 4]), "speech_distance": np.float32(0.5)})
    server.publish({"event": "bad", "distance": float("nan")})  # not JSON: logged, not sent
    server.publish({"event": "last"})
    for t in threads:
        t.join(timeout=WAIT_S)
        assert not t.is_alive()
    expected = [{"event": "taught", "pair_id": i, "label": None} for i in range(5)]
    expected += [{"event": "resolved", "box": [1, 2, 3, 4], "speech_distance": 0.5}, {"event": "last"}]
    assert got["a"] == expected and got["b"] == expected
    wait_until(lambda: server.subscriber_count == 0)  # both hung up; the server noticed


def test_a_stuck_subscriber_does_not_block_publish_and_is_dropped(tmp_path: Path, caplog) -> None:
    # A blocking publish would wait send_timeout_s (5 s) on the stuck socket; it must take far less.
    settings = ControlSettings(socket_path=str(tmp_path / "ctl.sock"), subscriber_queue_events=64, send_timeout_s=5.0)
    with ControlServer(settings, echo_handler) as server:
        check_stuck_subscriber(server, caplog)


def check_stuck_subscriber(server: ControlServer, caplog) -> None:
    stuck = raw(server)
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.sendall(b'{"cmd": "subscribe"}\n')
    assert read_line(stuck) == {"ok": True, "subscribed": True}
    good = raw(server)
    good.sendall(b'{"cmd": "subscribe"}\n')
    buf: list[bytes] = []
    assert read_line(good, buf)["subscribed"] is True
    wait_until(lambda: server.subscriber_count == 2)
    payload = "x" * 2000
    started = time.monotonic()
    longest = 0.0
    for i in range(400):  # far more than the stuck client's socket buffer and queue hold
        t0 = time.monotonic()
        server.publish({"event": "tick", "i": i, "pad": payload})
        longest = max(longest, time.monotonic() - t0)
        if i % 10 == 0:  # the good subscriber keeps up
            while True:
                ev = read_line(good, buf)
                if ev["i"] == i:
                    break
    assert longest < 1.0, f"publish blocked for {longest:.3f} s"
    assert time.monotonic() - started < 4.0
    wait_until(lambda: server.subscriber_count == 1)  # the stuck one is gone, the good one stays
    assert any("dropping a subscriber" in r.getMessage() for r in caplog.records)
    server.publish({"event": "after", "i": -1})
    while read_line(good, buf)["event"] != "after":
        pass
    good.close()
    stuck.close()


def test_socket_mode_and_directory(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "ctl.sock"
    with ControlServer(ControlSettings(socket_path=str(path), socket_mode="0600"), echo_handler):
        st = os.stat(path)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
        assert sorted(p.name for p in path.parent.iterdir()) == ["ctl.sock"]
    assert not path.exists()  # removed on close
    with ControlServer(ControlSettings(socket_path=str(path)), echo_handler):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o660


def test_stale_socket_is_replaced_but_a_live_one_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ctl.sock"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(path))  # a socket file nobody listens on: a crashed daemon's leftover
    dead.close()
    assert path.exists()
    settings = ControlSettings(socket_path=str(path))
    with ControlServer(settings, echo_handler):
        assert ControlClient(path).request({"cmd": "status"}, timeout_s=WAIT_S)["ok"] is True
        second = ControlServer(settings, echo_handler)
        with pytest.raises(ControlError, match="another showsay daemon"):
            second.start()
        assert ControlClient(path).request({"cmd": "status"}, timeout_s=WAIT_S)["ok"] is True  # first one unharmed
    path.write_text("not a socket")
    with pytest.raises(ControlError, match="not a socket"):
        ControlServer(settings, echo_handler).start()
    assert path.read_text() == "not a socket"


def test_client_errors_name_the_socket(tmp_path: Path) -> None:
    with pytest.raises(DaemonNotRunning, match=str(tmp_path / "none.sock")):
        ControlClient(tmp_path / "none.sock").request({"cmd": "status"}, timeout_s=WAIT_S)
    slow = ControlServer(ControlSettings(socket_path=str(tmp_path / "slow.sock")), lambda r: time.sleep(0.5) or {})
    with slow:
        with pytest.raises(ControlTimeout, match="no reply"):
            ControlClient(slow.path).request({"cmd": "status"}, timeout_s=0.2)
        with pytest.raises(ControlTimeout, match="no event"):
            for _ in ControlClient(slow.path).events(timeout_s=0.2):
                pass


def test_close_ends_event_streams(tmp_path: Path) -> None:
    srv = ControlServer(ControlSettings(socket_path=str(tmp_path / "c.sock")), echo_handler)
    srv.start()
    events: list[dict] = []
    done = threading.Event()

    def listen() -> None:
        events.extend(ControlClient(srv.path).events(timeout_s=WAIT_S))
        done.set()

    t = threading.Thread(target=listen)
    t.start()
    wait_until(lambda: srv.subscriber_count == 1)
    srv.publish({"event": "ready"})
    wait_until(lambda: len(events) == 1)
    srv.close()
    assert done.wait(WAIT_S)
    t.join(timeout=WAIT_S)
    assert events == [{"event": "ready"}]


def test_bad_socket_mode_is_a_settings_error() -> None:
    with pytest.raises(SettingsError, match="socket_mode"):
        build(ControlSettings, {"socket_mode": "rw-rw----"})
    with pytest.raises(SettingsError, match="socket_mode"):
        build(ControlSettings, {"socket_mode": "1777"})


# ---------------------------------------------------------------------------- hostile JSON (issue 19 item 13)


@pytest.mark.parametrize(
    "line, error",
    [
        (b'{"cmd":"status","id":NaN}\n', "NaN is not a JSON value"),
        (b'{"cmd":"status","id":Infinity}\n', "Infinity is not a JSON value"),
        (b'{"cmd":"status","id":-Infinity}\n', "-Infinity is not a JSON value"),
        (b'{"cmd":"status","id":1e400}\n', "not a finite number"),
        (b'{"cmd":"status","id":' + b"[" * 5000 + b"]" * 5000 + b"}\n", "nested too deeply"),
        (b"[" * 20000 + b"]" * 20000 + b"\n", "nested too deeply"),
        (b'{"cmd":"status","id":[1,[2]]}\n', "'id' must be a string, a number or null"),
        (b'{"cmd":"teach","label":' + b"[" * 900 + b"]" * 900 + b"}\n", "must be text/null"),
    ],
)
def test_requests_json_cannot_carry_gets_an_error_reply(tmp_path: Path, line: bytes, error: str) -> None:
    settings = ControlSettings(socket_path=str(tmp_path / "c.sock"), max_message_bytes=65536)
    with ControlServer(settings, echo_handler) as srv:
        sock = raw(srv)
        sock.sendall(line)
        buf: list[bytes] = []
        reply = read_line(sock, buf)
        assert reply["ok"] is False and error in reply["error"], reply
        assert len(reply["error"]) < 400  # a bounded message, not the request echoed back
        sock.sendall(b'{"cmd":"status","id":7}\n')  # the same connection goes on
        assert read_line(sock, buf) == {"ok": True, "state": "idle", "pairs": 2, "id": 7}
        sock.close()


# ---------------------------------------------------------------------------- budgets and idle connections (item 5)


def test_idle_connections_cannot_lock_out_a_command(tmp_path: Path) -> None:
    settings = ControlSettings(socket_path=str(tmp_path / "c.sock"), max_clients=4)
    with ControlServer(settings, echo_handler) as srv:
        idle = [raw(srv) for _ in range(4)]  # every command slot held by a client that says nothing
        half = idle[0]
        half.sendall(b'{"cmd": "sta')  # one of them half a request (slowloris)
        wait_until(lambda: srv.client_count == 4)
        time.sleep(1.2)  # older than EVICT_IDLE_S
        t0 = time.monotonic()
        assert ControlClient(srv.path).request({"cmd": "status"}, timeout_s=WAIT_S)["ok"] is True
        assert time.monotonic() - t0 < 3.0
        closed = [s for s in idle if _closed_with_error(s)]
        assert len(closed) >= 1  # the longest idle one made room, and was told why
        for s in idle:
            s.close()


def _closed_with_error(sock: socket.socket) -> bool:
    sock.settimeout(0.5)
    try:
        data = sock.recv(65536)
    except (socket.timeout, OSError):
        return False
    return b"closed: idle" in data


def test_idle_timeout_closes_a_silent_connection_with_a_reason(tmp_path: Path) -> None:
    settings = ControlSettings(socket_path=str(tmp_path / "c.sock"), idle_timeout_s=0.5)
    with ControlServer(settings, echo_handler) as srv:
        sock = raw(srv)
        sock.sendall(b'{"cmd":"status"}\n')
        buf: list[bytes] = []
        assert read_line(sock, buf)["ok"] is True  # a request resets the clock
        t0 = time.monotonic()
        reply = read_line(sock, buf)
        assert reply["ok"] is False and "control.idle_timeout_s" in reply["error"]
        assert 0.4 < time.monotonic() - t0 < 3.0
        assert sock.recv(10) == b""
        sock.close()
        wait_until(lambda: srv.client_count == 0)


def test_subscribers_have_their_own_budget_and_leave_command_slots_free(tmp_path: Path) -> None:
    settings = ControlSettings(socket_path=str(tmp_path / "c.sock"), max_clients=2, max_subscribers=3)
    with ControlServer(settings, echo_handler) as srv:
        subs = []
        for _ in range(3):
            s = raw(srv)
            s.sendall(b'{"cmd":"subscribe","id":"s"}\n')
            assert read_line(s) == {"ok": True, "subscribed": True, "id": "s"}
            subs.append(s)
        wait_until(lambda: srv.subscriber_count == 3)
        extra = raw(srv)
        extra.sendall(b'{"cmd":"subscribe"}\n{"cmd":"status"}\n')
        buf: list[bytes] = []
        reply = read_line(extra, buf)
        assert reply["ok"] is False and "max_subscribers=3" in reply["error"]
        assert read_line(extra, buf)["ok"] is True  # refused as a subscriber, still served as a client
        two = [ControlClient(srv.path).request({"cmd": "status"}, timeout_s=WAIT_S) for _ in range(2)]
        assert all(r["ok"] for r in two)
        srv.publish({"event": "ready"})
        for s in subs:
            assert read_line(s) == {"event": "ready"}
            s.close()
        extra.close()


def test_200_concurrent_requests_are_all_answered(tmp_path: Path) -> None:
    def slow_status(request: dict) -> dict:
        time.sleep(0.002)  # a controller's answer takes a little while
        return echo_handler(request)

    settings = ControlSettings(socket_path=str(tmp_path / "c.sock"), max_clients=4)
    with ControlServer(settings, slow_status) as srv:
        n = 200
        barrier = threading.Barrier(n)
        replies: list = [None] * n

        def one(i: int) -> None:
            barrier.wait(timeout=WAIT_S)
            try:
                replies[i] = ControlClient(srv.path).request({"cmd": "status", "id": i}, timeout_s=20.0)
            except ControlError as exc:
                replies[i] = str(exc)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30.0)
        answered = [r for r in replies if isinstance(r, dict) and r.get("ok")]
        assert len(answered) == n, {str(r)[:80] for r in replies if r not in answered}
        assert sorted(r["id"] for r in answered) == list(range(n))
