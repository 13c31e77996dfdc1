"""The operator's page over HTTP: a thin adapter over the daemon's control commands, frames and events.

Endpoints (stable, for the page and for scripts):

=======================================  ========================================================
``GET /``                                the page (``static/index.html``); ``/static/NAME`` its files
``GET /frame.jpg[?after=N]``             newest annotated frame (JPEG); with ``after``, waits up to
                                         1 s for a frame newer than index N (header X-Frame-Index)
``GET /api/status``                      the ``status`` command's reply
``GET /api/pairs``                       the ``list`` command's reply, each pair with its crop and
                                         audio addresses
``GET /api/pairs/{id}/crop/{n}.png``     view n (0 = the taught crop) of a pair, PNG
``GET /api/pairs/{id}/audio.wav``        the taught utterance, wav
``GET /events``                          server-sent events: each ``data:`` line is one event, the
                                         same JSON the control socket streams
``POST /api/teach``                      ``teach`` (body ``{"label": ...}`` optional): the press path
``POST /api/cancel``                     ``cancel``
``POST /api/pairs/{id}/label``           ``label`` (body ``{"label": "cup"}``; null or "" clears it)
``DELETE /api/pairs/{id}``               ``forget``
=======================================  ========================================================

Replies are JSON: 200 with the command's reply (``ok: true``), 409 when the daemon refused
(``ok: false`` with its ``error``), 400 malformed, 401 no or wrong token, 403 a foreign Host or
Origin, 404 unknown path or pair, 405 wrong method, 411/413 body without length or too long, 503 too
many connections or the controller busy.

Every command goes through :func:`edge.control.check_request` and the daemon's one handler, the
same path the control socket uses: nothing here decides anything about teaching or pairs.

Security: the page is off unless ``web.enabled``; it binds 127.0.0.1 unless ``web.bind`` says
otherwise, and any bind beyond loopback needs ``web.token_file`` (checked at start: a regular file
of mode 0600 or stricter, owned by the daemon's user, holding at least 16 characters). With a
token every request must carry it (``Authorization: Bearer TOKEN``, or the cookie the login form
at ``/login`` sets: HttpOnly, SameSite=Strict), but for the login form itself and its style sheet
and icon. Without a token (loopback only) the Host header
must name the loopback address, which stops DNS-rebinding pages. State changes are POST or DELETE
only; a POST must say ``Content-Type: application/json`` and a present Origin must be this page's,
so another site cannot forge one (its browser would have to ask first, and nothing here answers
CORS). Files are served from a table of the packaged static folder read at start: no request path
ever reaches the file system. Bodies are limited to ``max_body_bytes``, connections to
``max_connections`` (``max_event_streams`` of them event streams), and a client that sends or
reads nothing for ``client_timeout_s`` is disconnected.

Library: the standard library's ``ThreadingHTTPServer``. A thread per connection matches the rest
of the daemon (the control socket, the capture threads: plain blocking I/O, no event loop to share);
the load is one or two operators at a few frames a second; it adds nothing to install on a Jetson
(no wheels to build for aarch64, nothing to pin or patch). It is a bare HTTP parser, so everything
a framework would check is done here explicitly (limits, routing, headers) and tested.

A slow or vanished browser never holds up the controller: events reach each stream through a
bounded queue filled without waiting (a stream that falls ``event_queue_events`` behind is closed;
the browser reconnects), frames are drawn in the HTTP threads from the camera's newest frame, and
commands wait for the controller's reply with the daemon's request timeout.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import os
import re
import socket
import socketserver
import stat
import sys
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from edge.control import _encode as encode_json_line  # the control socket's own encoder: same JSON
from edge.control import check_request
from edge.fanout import STOP, Fanout, Listener, shutdown as _shutdown
from edge.settings import SettingsError, setting

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}
COOKIE_NAME = "showsay_token"
MIN_TOKEN_CHARS = 16
KEEPALIVE_S = 15.0  # an idle event stream gets a comment line this often, so a vanished browser is noticed
FRAME_WAIT_S = 1.0  # GET /frame.jpg?after=N waits this long for a newer frame
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",  # no-referrer would make the browser send "Origin: null" with the login form
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
                               "media-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
}
# What a browser without the token may fetch: the login form and its look (packaged files, no state)
PUBLIC_PATHS = frozenset({"/login", "/static/style.css", "/static/icon.svg"})


@dataclass(frozen=True)
class WebSettings:
    """The operator's page: where it listens, who may use it, and its limits."""

    enabled: bool = setting(False, "serve the operator's page (live view, taught words, teach button, events) over HTTP")
    bind: str = setting("127.0.0.1", "address to listen on; anything but loopback (127.0.0.1, ::1, localhost) requires token_file")
    port: int = setting(8321, "TCP port of the page (0 = any free port, logged at start)", min=0, max=65535)
    token_file: str | None = setting(
        None, "file holding the access token (one line, at least 16 characters, mode 0600, owned by the daemon's user); "
              "when set, every request must carry it (Authorization: Bearer, or the cookie the login form sets). "
              "Make one: (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > web.token)")
    max_connections: int = setting(16, "most HTTP connections served at once (each has a thread); more get 503", min=2, max=1024)
    max_event_streams: int = setting(4, "most open event streams (GET /events) at once; more get 503", min=1, max=256)
    max_body_bytes: int = setting(4096, "longest request body accepted, bytes (413 beyond)", min=256, max=1_048_576)
    client_timeout_s: float = setting(10.0, "a connection that sends or reads nothing for this long is closed, s", min=0.5, max=600.0)
    event_queue_events: int = setting(64, "events buffered per event stream; a stream this far behind is closed (the page reconnects)", min=1, max=100_000)
    live_fps: float = setting(8.0, "most frames per second the live view asks for", min=0.5, max=30.0)
    frame_width_px: int = setting(640, "live frames wider than this are scaled down before drawing and JPEG encoding, pixels", min=64, max=4096)
    jpeg_quality: int = setting(75, "JPEG quality of live frames (1-100)", min=1, max=100)
    candidates_interval_s: float = setting(
        2.0, "the live view runs the candidate finder itself at most this often when the controller has found none in the "
             "last second (it does while someone speaks), s; 0 shows only the controller's", min=0.0, max=600.0)
    answer_show_s: float = setting(8.0, "the last answer or taught pair stays drawn on the live view this long, s", min=0.0, max=3600.0)

    def validate(self) -> None:
        """A page reachable beyond loopback must ask for a token."""
        if self.enabled and not is_loopback(self.bind) and self.token_file is None:
            raise SettingsError(
                f"bind: {self.bind!r} is reachable beyond this machine; set web.token_file (a secret file, mode 0600) "
                "or bind 127.0.0.1"
            )


class WebError(RuntimeError):
    """The page cannot be served as configured; the message names the setting or file."""


def is_loopback(host: str) -> bool:
    """True for addresses only this machine reaches (127.0.0.0/8, ::1, 'localhost')."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def load_token(path: str | os.PathLike) -> str:
    """The token in ``path``, after checking the file is a private regular file of ours; WebError otherwise."""
    where = f"web.token_file {path}"
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except FileNotFoundError:
        raise WebError(f"{where}: no such file; make one: (umask 077; python3 -c 'import secrets; print(secrets.token_urlsafe(32))' > {path})") from None
    except OSError as exc:
        raise WebError(f"{where}: cannot be opened ({exc.strerror}; a symbolic link is refused)") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise WebError(f"{where}: not a regular file")
        if st.st_mode & 0o077:
            raise WebError(f"{where}: mode {stat.S_IMODE(st.st_mode):04o} lets other users read the token; chmod 600 {path}")
        if st.st_uid != os.geteuid():
            raise WebError(f"{where}: owned by uid {st.st_uid}, not by the daemon's user (uid {os.geteuid()}); chown it")
        data = os.read(fd, 4097)
    finally:
        os.close(fd)
    try:
        token = data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise WebError(f"{where}: the token must be ASCII text") from None
    if len(data) > 4096 or not re.fullmatch(r"[A-Za-z0-9._~+/=-]+", token or " "):
        raise WebError(f"{where}: expected one line of letters, digits and ._~+/=- (at most 4096 bytes)")
    if len(token) < MIN_TOKEN_CHARS:
        raise WebError(f"{where}: the token has {len(token)} characters; use at least {MIN_TOKEN_CHARS} (e.g. secrets.token_urlsafe(32))")
    return token


def pair_views(pair: Any) -> list:
    """The crops of a taught pair, the taught one first (issue 17 stores several views per pair; today one)."""
    views = getattr(pair, "views", None)
    return list(views) if views else [pair.crop]


def _load_static(folder: Path) -> dict[str, tuple[bytes, str, str]]:
    """name -> (bytes, content type, ETag) for every regular file directly in ``folder``: the only files ever served."""
    files = {}
    for path in sorted(folder.iterdir()):
        kind = CONTENT_TYPES.get(path.suffix)
        if kind is None or not path.is_file() or path.is_symlink():
            continue
        data = path.read_bytes()
        files[path.name] = (data, kind, '"' + hashlib.sha256(data).hexdigest()[:16] + '"')
    if "index.html" not in files:
        raise WebError(f"{folder}: the page's index.html is missing from the package")
    return files


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer with a connection limit and no reverse DNS lookup at bind."""

    daemon_threads = True
    block_on_close = False  # event streams are ended by WebServer.close, not joined
    request_queue_size = 16

    def __init__(self, address: tuple[str, int], app: "WebServer", family: int) -> None:
        self.address_family = family
        self.app = app
        self._count_lock = threading.Lock()
        self.connections: set[socket.socket] = set()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind asks socket.getfqdn(), a reverse DNS lookup that can stall without a network
        if self.address_family == socket.AF_INET6:
            self.socket.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        with self._count_lock:
            full = len(self.connections) >= self.app.settings.max_connections
            if not full:
                self.connections.add(request)
        if full:
            log.warning("web: refusing a connection from %s, %d already", client_address[0], self.app.settings.max_connections)
            body = b'{"ok":false,"error":"too many connections"}'
            try:  # never wait on a client here: this is the accepting thread
                request.setblocking(False)
                request.send(b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
                             b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            except OSError:
                pass
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # socketserver's default prints a traceback to stderr; a browser that went away is not an error
        exc = sys.exc_info()[1]
        if isinstance(exc, OSError):
            log.debug("web: connection from %s ended (%s)", client_address[0], exc)
        else:
            log.error("web: request from %s failed", client_address[0], exc_info=exc)

    def process_request_thread(self, request: socket.socket, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._count_lock:
                self.connections.discard(request)


class WebServer:
    """Serves the page, the live view, the taught pairs and the event stream of one daemon.

    ``handler`` is the daemon's command entry point (the control socket's too): a checked request
    dict in, a reply dict out. ``live`` draws the frames (:class:`edge.web.live.LiveView`);
    ``read_pair(id)`` returns a stored pair or None (the memory's own reader, safe from any thread).
    Call :meth:`publish` with every event (it never blocks).
    """

    def __init__(self, settings: WebSettings, *, handler: Callable[[dict], dict], live: Any,
                 read_pair: Callable[[int], Any], static_dir: Path = STATIC_DIR) -> None:
        self.settings = settings
        self._handler = handler
        self.live = live
        self._read_pair = read_pair
        self._static_dir = static_dir
        self.static: dict[str, tuple[bytes, str, str]] = {}
        self.token: str | None = None
        self.allowed_hosts: set[str] = set()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._streams = Fanout(settings.event_queue_events, "web: closing an event stream %d events behind (the page reconnects)",
                               max_listeners=settings.max_event_streams)
        self.closing = threading.Event()

    # -- lifecycle

    def start(self) -> None:
        """Check the token file, read the page's files, bind and serve; WebError naming the setting otherwise."""
        s = self.settings
        if not is_loopback(s.bind) and s.token_file is None:
            raise WebError(f"web.bind {s.bind!r}: beyond loopback the page needs web.token_file")
        self.token = load_token(s.token_file) if s.token_file is not None else None
        self.static = _load_static(self._static_dir)
        host = s.bind.strip("[]")
        try:
            infos = socket.getaddrinfo(host or None, s.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE | socket.AI_NUMERICSERV)
            family, address = infos[0][0], infos[0][4][:2]
            self._server = _Server(address, self, family)
        except OSError as exc:
            raise WebError(f"web.bind {s.bind!r} port {s.port}: cannot listen ({exc.strerror or exc})") from None
        port = self.port
        self.allowed_hosts = {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}
        if is_loopback(host) and host != "localhost":
            self.allowed_hosts.add(f"[{host}]:{port}" if ":" in host else f"{host}:{port}")
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.5}, name="web", daemon=True)
        self._thread.start()
        where = f"[{host}]" if ":" in host else (host or "0.0.0.0")
        log.info("web: the operator's page is on http://%s:%d/ (%s)", where, port, "token required" if self.token else "no token: loopback only")

    @property
    def port(self) -> int:
        """The port listened on (the chosen one when web.port is 0)."""
        return self._server.server_port if self._server is not None else self.settings.port

    def close(self) -> None:
        """Stop serving, end the event streams and drop every connection; safe to call twice."""
        if self.closing.is_set():
            return
        self.closing.set()
        self._streams.close()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            with self._server._count_lock:
                conns = list(self._server.connections)
            for conn in conns:
                _shutdown(conn)
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def __enter__(self) -> "WebServer":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- events

    def publish(self, event: dict) -> None:
        """Hand ``event`` to the live view and to every event stream, without waiting."""
        try:
            self.live.on_event(event)
        except Exception:
            log.exception("web: the live view failed on event %s", event.get("event"))
        try:
            data = b"data: " + encode_json_line(event).rstrip(b"\n") + b"\n\n"
        except (TypeError, ValueError) as exc:
            log.error("web: event %r cannot be sent as JSON (%s)", event.get("event"), exc)
            return
        self._streams.publish(data)

    @property
    def stream_count(self) -> int:
        """Event streams open now."""
        return len(self._streams)

    def open_stream(self, conn: socket.socket) -> Listener | None:
        """A new event stream, or None when closing or max_event_streams are open."""
        return None if self.closing.is_set() else self._streams.open(conn)

    def drop_stream(self, stream: Listener) -> None:
        """End ``stream`` (its connection is shut down)."""
        self._streams.drop(stream)

    # -- commands

    def command(self, request: dict) -> tuple[int, dict]:
        """(HTTP status, reply) of one control command, checked as the socket checks it."""
        problem = check_request(request)
        if problem is not None:
            return HTTPStatus.BAD_REQUEST, {"ok": False, "error": problem}
        try:
            result = self._handler(request)
        except Exception as exc:
            log.exception("web: handler failed on %s", request.get("cmd"))
            return HTTPStatus.INTERNAL_SERVER_ERROR, {"ok": False, "error": f"internal error: {type(exc).__name__}: {exc}"}
        reply = {"ok": True, **result}
        if reply["ok"]:
            return HTTPStatus.OK, reply
        busy = str(reply.get("error", "")).startswith(("daemon busy", "no reply from the controller"))
        return (HTTPStatus.SERVICE_UNAVAILABLE if busy else HTTPStatus.CONFLICT), reply

    def read_pair(self, pair_id: int) -> Any:
        """The stored pair, or None."""
        return self._read_pair(pair_id)


_PAIR = r"/api/pairs/(\d{1,12})"
ROUTES: tuple[tuple[str, re.Pattern, str], ...] = tuple((m, re.compile(p + r"\Z"), f) for m, p, f in (
    ("GET", r"/", "_get_page"),
    ("GET", r"/static/([A-Za-z0-9_-][A-Za-z0-9_.-]{0,63})", "_get_static"),
    ("GET", r"/login", "_get_login"),
    ("POST", r"/login", "_post_login"),
    ("GET", r"/frame\.jpg", "_get_frame"),
    ("GET", r"/api/status", "_get_status"),
    ("GET", r"/api/pairs", "_get_pairs"),
    ("GET", _PAIR + r"/crop/(\d{1,4})\.png", "_get_crop"),
    ("GET", _PAIR + r"/audio\.wav", "_get_audio"),
    ("GET", r"/events", "_get_events"),
    ("POST", r"/api/teach", "_post_teach"),
    ("POST", r"/api/cancel", "_post_cancel"),
    ("POST", _PAIR + r"/label", "_post_label"),
    ("DELETE", _PAIR, "_delete_pair"),
))


class _Handler(BaseHTTPRequestHandler):
    """One connection: parse, authorise, route; every reply has a length (keep-alive) except event streams."""

    protocol_version = "HTTP/1.1"
    server: _Server

    def version_string(self) -> str:
        return "showsay"

    def setup(self) -> None:
        self.timeout = self.server.app.settings.client_timeout_s  # StreamRequestHandler applies it to the socket
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("web %s: " + format, self.client_address[0], *args)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    do_PATCH = do_PUT

    def do_HEAD(self) -> None:
        self._send_json(HTTPStatus.METHOD_NOT_ALLOWED, {"ok": False, "error": "use GET"}, close=True)

    # -- plumbing

    @property
    def app(self) -> WebServer:
        return self.server.app

    def _dispatch(self) -> None:
        target = urlsplit(self.path)
        path = target.path
        try:
            self._query = parse_qs(target.query, max_num_fields=8)
        except ValueError:
            self._send_json(HTTPStatus.BAD_REQUEST, {"ok": False, "error": "too many query fields"}, close=True)
            return
        if "Transfer-Encoding" in self.headers:
            self._send_json(HTTPStatus.LENGTH_REQUIRED, {"ok": False, "error": "chunked bodies are not accepted; send Content-Length"}, close=True)
            return
        methods = []
        for method, pattern, name in ROUTES:
            match = pattern.match(path)
            if match is None:
                continue
            if method != self.command:
                methods.append(method)
                continue
            if not self._allowed(path):
                return
            getattr(self, name)(*match.groups())
            return
        if methods:
            self._send_json(HTTPStatus.METHOD_NOT_ALLOWED, {"ok": False, "error": f"{path}: use {' or '.join(methods)}"},
                            {"Allow": ", ".join(methods)}, close=self._has_body())
        else:
            self._send_json(HTTPStatus.NOT_FOUND, {"ok": False, "error": f"{path[:200]}: no such page"}, close=self._has_body())

    def _has_body(self) -> bool:
        return self.headers.get("Content-Length", "0").strip() not in ("", "0")

    def _allowed(self, path: str) -> bool:
        """Token, Host and Origin checks; sends the refusal itself and returns False."""
        app = self.app
        host = self.headers.get("Host", "")
        if app.token is None:
            if host not in app.allowed_hosts:
                log.info("web: refused %s %s from %s: Host %r", self.command, path, self.client_address[0], host[:100])
                self._send_json(HTTPStatus.FORBIDDEN, {"ok": False, "error": f"Host {host[:100]!r} is not this page's (open http://127.0.0.1:{app.port}/)"}, close=True)
                return False
        elif path not in PUBLIC_PATHS and not self._has_token():
            log.info("web: refused %s %s from %s: no valid token", self.command, path, self.client_address[0])
            if self.command == "GET" and path == "/":
                self._send_static("login.html", HTTPStatus.UNAUTHORIZED)
            else:
                self._send_json(HTTPStatus.UNAUTHORIZED, {"ok": False, "error": "a token is required (Authorization: Bearer TOKEN, or log in at /login)"},
                                {"WWW-Authenticate": 'Bearer realm="showsay"'}, close=self._has_body())
            return False
        if self.command in ("POST", "DELETE"):
            origin = self.headers.get("Origin")
            if origin is not None and origin != f"http://{host}":
                log.info("web: refused %s %s from %s: Origin %r", self.command, path, self.client_address[0], origin[:100])
                self._send_json(HTTPStatus.FORBIDDEN, {"ok": False, "error": f"Origin {origin[:100]!r} is not this page's"}, close=True)
                return False
        return True

    def _has_token(self) -> bool:
        token = self.app.token
        assert token is not None
        auth = self.headers.get("Authorization", "")
        if auth.startswith("Bearer ") and hmac.compare_digest(auth[7:].strip().encode(), token.encode()):
            return True
        cookie = SimpleCookie()
        try:
            cookie.load(self.headers.get("Cookie", ""))
        except CookieError:
            return False
        morsel = cookie.get(COOKIE_NAME)
        return morsel is not None and hmac.compare_digest(morsel.value.encode(), token.encode())

    def _body(self, json_body: bool = True) -> Any:
        """The request body (a JSON object when ``json_body``), or None after sending the refusal."""
        if json_body and self.headers.get_content_type() != "application/json":
            self._send_json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"ok": False, "error": "send Content-Type: application/json"}, close=True)
            return None
        try:
            length = int(self.headers.get("Content-Length", "0"))
        except ValueError:
            length = -1
        if length < 0:
            self._send_json(HTTPStatus.BAD_REQUEST, {"ok": False, "error": "Content-Length is not a byte count"}, close=True)
            return None
        if length > self.app.settings.max_body_bytes:
            self._send_json(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                            {"ok": False, "error": f"body of {length} bytes is longer than web.max_body_bytes={self.app.settings.max_body_bytes}"}, close=True)
            return None
        data = self.rfile.read(length) if length else b""
        if len(data) < length:
            self.close_connection = True
            return None
        if not json_body:
            return data
        if not data.strip():
            return {}
        try:
            body = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            self._send_json(HTTPStatus.BAD_REQUEST, {"ok": False, "error": f"body is not JSON ({exc})"})
            return None
        if not isinstance(body, dict):
            self._send_json(HTTPStatus.BAD_REQUEST, {"ok": False, "error": f"body must be a JSON object, got {type(body).__name__}"})
            return None
        return body

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None, close: bool = False) -> None:
        self.send_response(status)
        for key, value in {**SECURITY_HEADERS, "Cache-Control": "no-store", **(headers or {})}.items():
            self.send_header(key, value)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, obj: dict, headers: dict[str, str] | None = None, close: bool = False) -> None:
        try:
            body = encode_json_line(obj)
        except (TypeError, ValueError) as exc:
            log.error("web: reply is not JSON (%s)", exc)
            status, body = HTTPStatus.INTERNAL_SERVER_ERROR, encode_json_line({"ok": False, "error": f"internal error: reply not JSON ({exc})"})
        self._send(status, body, "application/json", headers, close)

    def _send_static(self, name: str, status: int = HTTPStatus.OK) -> None:
        data, kind, etag = self.app.static[name]
        if status == HTTPStatus.OK and self.headers.get("If-None-Match") == etag:
            self.send_response(HTTPStatus.NOT_MODIFIED)
            for key, value in {**SECURITY_HEADERS, "ETag": etag, "Cache-Control": "no-cache", "Content-Length": "0"}.items():
                self.send_header(key, value)
            self.end_headers()
            return
        headers = {"ETag": etag, "Cache-Control": "no-cache"} if status == HTTPStatus.OK else None
        self._send(status, data, kind, headers)

    def _run(self, request: dict) -> None:
        status, reply = self.app.command(request)
        self._send_json(status, reply)

    def _pair(self, pair_id: str) -> Any:
        try:
            pair = self.app.read_pair(int(pair_id))
        except Exception as exc:  # a damaged row: say so, never a traceback to the browser
            log.error("web: pair %s cannot be read (%s)", pair_id, exc)
            self._send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"ok": False, "error": f"pair {pair_id} cannot be read ({exc})"})
            return None
        if pair is None:
            self._send_json(HTTPStatus.NOT_FOUND, {"ok": False, "error": f"no pair {pair_id}"})
        return pair

    # -- routes

    def _get_page(self) -> None:
        self._send_static("index.html")

    def _get_static(self, name: str) -> None:
        if name not in self.app.static:
            self._send_json(HTTPStatus.NOT_FOUND, {"ok": False, "error": f"/static/{name}: no such file"})
            return
        self._send_static(name)

    def _get_login(self) -> None:
        if self.app.token is None:
            self._send_json(HTTPStatus.NOT_FOUND, {"ok": False, "error": "no token is configured: nothing to log in to"})
            return
        self._send_static("login.html")

    def _post_login(self) -> None:
        if self.app.token is None:
            self._send_json(HTTPStatus.NOT_FOUND, {"ok": False, "error": "no token is configured: nothing to log in to"}, close=self._has_body())
            return
        if self.headers.get_content_type() != "application/x-www-form-urlencoded":
            self._send_json(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, {"ok": False, "error": "send the login form"}, close=True)
            return
        data = self._body(json_body=False)
        if data is None:
            return
        given = parse_qs(data.decode("utf-8", "replace"), max_num_fields=4).get("token", [""])[0].strip()
        if not hmac.compare_digest(given.encode(), self.app.token.encode()):
            log.info("web: failed login from %s", self.client_address[0])
            self._send_static("login.html", HTTPStatus.UNAUTHORIZED)
            return
        cookie = f"{COOKIE_NAME}={self.app.token}; HttpOnly; SameSite=Strict; Path=/"
        self._send(HTTPStatus.SEE_OTHER, b"", "text/plain", {"Location": "/", "Set-Cookie": cookie})

    def _get_frame(self) -> None:
        after = self._query.get("after", [None])[0]
        try:
            after_index = None if after is None else int(after)
        except ValueError:
            self._send_json(HTTPStatus.BAD_REQUEST, {"ok": False, "error": f"after: expected a frame index, got {after[:40]!r}"})
            return
        try:
            shot = self.app.live.jpeg(after_index, FRAME_WAIT_S)
        except Exception as exc:  # a frame the finder or the encoder cannot take: say so, keep serving
            log.exception("web: drawing the live frame failed")
            self._send_json(HTTPStatus.INTERNAL_SERVER_ERROR, {"ok": False, "error": f"the live frame cannot be drawn ({type(exc).__name__}: {exc})"})
            return
        if shot is None:
            self._send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"ok": False, "error": "no camera frame yet"}, {"Retry-After": "1"})
            return
        data, index = shot
        interval_ms = round(1000.0 / self.app.settings.live_fps)
        self._send(HTTPStatus.OK, data, "image/jpeg", {"X-Frame-Index": str(index), "X-Live-Interval-Ms": str(interval_ms)})

    def _get_status(self) -> None:
        self._run({"cmd": "status"})

    def _get_pairs(self) -> None:
        status, reply = self.app.command({"cmd": "list"})
        if status == HTTPStatus.OK:
            for item in reply.get("pairs", []):
                pid = int(item["pair_id"])
                views = int(item.get("views", 1))  # every pair has its taught crop; more once teaching stores views
                item["crops"] = [f"/api/pairs/{pid}/crop/{n}.png" for n in range(views)]
                item["audio"] = f"/api/pairs/{pid}/audio.wav"
        self._send_json(status, reply)

    def _get_crop(self, pair_id: str, n: str) -> None:
        from edge.memory import encode_png

        pair = self._pair(pair_id)
        if pair is None:
            return
        views = pair_views(pair)
        if int(n) >= len(views):
            self._send_json(HTTPStatus.NOT_FOUND, {"ok": False, "error": f"pair {pair_id} has {len(views)} view(s), no view {n}"})
            return
        # a pair id is never reused and a stored view never changes: the browser may keep it
        self._send(HTTPStatus.OK, encode_png(views[int(n)]), "image/png", {"Cache-Control": "private, max-age=3600"})

    def _get_audio(self, pair_id: str) -> None:
        from edge.memory import encode_wav

        pair = self._pair(pair_id)
        if pair is None:
            return
        self._send(HTTPStatus.OK, encode_wav(pair.audio_pcm, pair.sample_rate_hz), "audio/wav", {"Cache-Control": "private, max-age=3600"})

    def _get_events(self) -> None:
        stream = self.app.open_stream(self.connection)
        if stream is None:
            self._send_json(HTTPStatus.SERVICE_UNAVAILABLE, {"ok": False, "error": f"too many event streams (web.max_event_streams={self.app.settings.max_event_streams})"},
                            {"Retry-After": "5"})
            return
        self.close_connection = True  # the stream ends with the connection (no length)
        try:
            self.send_response(HTTPStatus.OK)
            for key, value in {**SECURITY_HEADERS, "Content-Type": "text/event-stream", "Cache-Control": "no-store", "Connection": "close"}.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(b"retry: 2000\n\n")
            while not self.app.closing.is_set():
                item = stream.next(timeout=KEEPALIVE_S)
                if item is STOP:
                    return
                if item is None:
                    item = b": keepalive\n\n"
                self.wfile.write(item)  # the socket's timeout bounds a write to a browser that stopped reading
        except OSError as exc:
            log.debug("web: event stream to %s ended (%s)", self.client_address[0], exc)
        finally:
            self.app.drop_stream(stream)

    def _post_teach(self) -> None:
        body = self._body()
        if body is None:
            return
        request = {"cmd": "teach"}
        if body.get("label") not in (None, ""):
            request["label"] = body["label"]
        self._run(request)

    def _post_cancel(self) -> None:
        if self._body() is not None:
            self._run({"cmd": "cancel"})

    def _post_label(self, pair_id: str) -> None:
        body = self._body()
        if body is None:
            return
        if "label" not in body:
            self._send_json(HTTPStatus.BAD_REQUEST, {"ok": False, "error": 'body needs "label" (text, or null to clear)'})
            return
        label = body["label"]
        if isinstance(label, str) and not label.strip():
            label = None  # as `showsay label ID ""`: clears the name
        self._run({"cmd": "label", "pair_id": int(pair_id), "label": label})

    def _delete_pair(self, pair_id: str) -> None:
        if self._has_body():
            self._body(json_body=False)  # read and ignore, so the connection stays in step
        self._run({"cmd": "forget", "pair_id": int(pair_id)})


def web_for_daemon(cfg: Any, *, handler: Callable[[dict], dict], frames: Any, read_pair: Callable[[int], Any],
                   controller_view: Callable[[], dict | None]) -> WebServer:
    """The page of a daemon assembled from its config: its handler, camera, memory and controller."""
    from edge.candidates import make_finder, teach_region
    from edge.web.live import LiveView

    live = LiveView(frames, finder=make_finder(cfg.candidates), teach_region=lambda img: teach_region(img, cfg.candidates),
                    settings=cfg.web, controller_view=controller_view)
    return WebServer(cfg.web, handler=handler, live=live, read_pair=read_pair)
