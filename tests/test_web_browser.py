"""The operator's page in a real browser (Debian's headless Chromium) during a ``showsay run`` on the bundled video.

Loopback without a token: the live view updates, Teach then an utterance adds a pair that appears with
its crop, a rename shows, an answer's box appears, a screenshot is saved. Bound beyond loopback with a
token: the same page refuses every request without it, then works after the login form. Screenshots go
to $SHOWSAY_SCREENSHOT_DIR when it is set (else the test's temporary folder).
"""
from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge.web.live import FOUND_COLOUR
from tests.browser import chromium, wait_until, web_port
from tests.daemon_process import ROOT, SAMPLES, DaemonProcess, EventCollector, PulseServer, word_wav, write_config

SCRIPT = json.loads((SAMPLES / "session.json").read_text())
TEACH_VOICE = tuple(SCRIPT["voices"]["teach"])
ASK_VOICE = tuple(SCRIPT["voices"]["ask"])
TOKEN = "browser-test-token-0123456789abcdef"


def screenshot(driver, tmp_path: Path, name: str) -> Path:
    folder = Path(os.environ.get("SHOWSAY_SCREENSHOT_DIR", tmp_path))
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    assert driver.save_screenshot(str(path)), f"no screenshot written to {path}"
    image = cv2.imread(str(path))
    assert image is not None and image.shape[1] >= 1000, path
    return path


def fetch(host: str, port: int, path: str, method: str = "GET", headers: dict | None = None, body: bytes | None = None):
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        r = conn.getresponse()
        return r.status, r.read()
    finally:
        conn.close()


def page_port(daemon: DaemonProcess) -> int:
    return wait_until(lambda: web_port(daemon.log()), 30, f"the daemon's log naming the page's port:\n{daemon.log()}")


@pytest.fixture
def pulse(tmp_path):
    (tmp_path / "xdg").mkdir()
    server = PulseServer(tmp_path / "xdg")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def browser(tmp_path):
    driver = chromium(tmp_path / "chromium-profile", tmp_path / "chromedriver.log")
    yield driver
    driver.quit()


def frame_indices(driver, seconds: float) -> list[int]:
    seen = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        value = driver.find_element("id", "live").get_attribute("data-frame-index")
        if value is not None and (not seen or int(value) != seen[-1]):
            seen.append(int(value))
        time.sleep(0.05)
    return seen


@pytest.mark.timeout(240)
def test_the_page_shows_the_view_teaches_renames_and_answers(tmp_path, pulse, browser):
    star_teach = word_wav("star", tmp_path / "teach-star.wav", TEACH_VOICE)
    star_ask = word_wav("star", tmp_path / "ask-star.wav", ASK_VOICE)
    config = write_config(tmp_path, web={"enabled": True, "port": 0})
    daemon = DaemonProcess(config, pulse.env, tmp_path, args=("--narrate", "always"))
    try:
        daemon.notifications("READY=1", timeout_s=60)
        t0 = time.monotonic()  # the video (the camera) started just before READY=1
        port = page_port(daemon)
        events = EventCollector(tmp_path / "control.sock")

        def at(video_s: float) -> None:
            time.sleep(max(0.0, t0 + video_s - time.monotonic()))

        browser.get(f"http://127.0.0.1:{port}/")
        assert browser.title == "showsay"
        # the live view updates, a few frames a second
        seen = frame_indices(browser, 2.0)
        assert len(seen) >= 4 and seen == sorted(seen), seen
        wait_until(lambda: "idle" in browser.find_element("id", "status").text, 10, "the status line")

        # Teach (the press path), then the word: a pair appears with its crop
        at(5.6)  # the star is held up in the teach region
        browser.find_element("id", "teach").click()
        wait_until(lambda: "teaching" in browser.find_element("tag name", "body").get_attribute("class"), 5, "teaching state on the page")
        pulse.play(star_teach)
        taught = events.wait_for("taught", 0, timeout_s=8)
        assert taught["pair_id"] == 1
        card = wait_until(lambda: browser.find_element("css selector", '#pairs li[data-pair-id="1"]'), 10, "the new pair's card")
        crop_width = wait_until(lambda: browser.execute_script(
            "const i = document.querySelector('#pairs li[data-pair-id=\"1\"] .views img'); return i && i.complete && i.naturalWidth;"),
            10, "the pair's crop loaded")
        assert crop_width > 20
        assert "learned pair 1" in browser.find_element("id", "events").text
        card.find_element("css selector", "button.play").click()  # the taught utterance, from the memory
        audio = browser.execute_async_script(
            "const done = arguments[arguments.length - 1];"
            "fetch('/api/pairs/1/audio.wav').then(r => r.arrayBuffer().then(b => done([r.status, r.headers.get('Content-Type'), b.byteLength])));")
        assert audio[0] == 200 and audio[1] == "audio/wav" and audio[2] > 16000  # more than 0.5 s of 16-bit audio
        time.sleep(1.0)
        assert "cannot play" not in browser.find_element("id", "events").text

        # rename inline: the daemon stores it and the page shows it
        name = card.find_element("css selector", "input.label")
        name.clear()
        name.send_keys("star")
        card.find_element("css selector", "button.rename").click()
        wait_until(lambda: card.get_attribute("data-label") == "star", 10, "the new name on the page")
        assert [p["label"] for p in events.request({"cmd": "list"})["pairs"]] == ["star"]
        assert "pair 1 is now called 'star'" in browser.find_element("id", "events").text

        # ask for it when the table is in view: the answer and its box appear
        at(15.8)
        pulse.play(star_ask)
        answer = wait_until(lambda: browser.find_element("id", "answer").get_attribute("data-event") == "resolved"
                            and browser.find_element("id", "answer"), 10, "the answer on the page")
        assert answer.get_attribute("data-label") == "star" and answer.text.startswith("found 'star' at [")
        box = [int(v) for v in answer.get_attribute("data-box").split(",")]
        assert (box[0] + box[2] / 2) // (320 / 3) == 2  # the star is on the right of the table
        status, data = fetch("127.0.0.1", port, "/frame.jpg")
        frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        edge = frame[box[1], box[0] + 4: box[0] + box[2] - 4].astype(int)
        assert status == 200 and np.mean(np.abs(edge - np.array(FOUND_COLOUR)).max(axis=1) < 80) > 0.5  # the green box is drawn
        shot = screenshot(browser, tmp_path, "page-answer.png")
        print(f"screenshot: {shot}")
        events.close()
    finally:
        assert daemon.stop() == 0, daemon.log()
    log = daemon.log()
    assert "learned pair 1 from" in log and "found star at [" in log  # `showsay run --narrate` printed readable lines


def _other_address() -> str:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # picks the outgoing interface; nothing is sent
        return probe.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    finally:
        probe.close()


@pytest.mark.timeout(240)
def test_beyond_loopback_the_page_refuses_everyone_without_the_token(tmp_path, browser):
    token_file = tmp_path / "web.token"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    apple = word_wav("apple", tmp_path / "apple.wav", TEACH_VOICE)
    # no microphone: the word in a file is heard every few seconds (microphone.source)
    config = write_config(tmp_path, web={"enabled": True, "bind": "0.0.0.0", "port": 0, "token_file": str(token_file)},
                          microphone={"source": str(apple), "file_pause_s": 2.0}, camera={"loop_file": True})
    daemon = DaemonProcess(config, dict(os.environ), tmp_path)
    try:
        daemon.notifications("READY=1", timeout_s=60)
        port = page_port(daemon)
        host = _other_address()
        # without the token nothing is served and nothing changes
        for path in ("/api/status", "/api/pairs", "/frame.jpg", "/events", "/api/pairs/1/crop/0.png", "/static/app.js", "/static/index.html"):
            assert fetch(host, port, path)[0] == 401, path
        assert fetch(host, port, "/api/teach", "POST", {"Content-Type": "application/json"}, b"{}")[0] == 401
        assert fetch(host, port, "/api/teach", "POST", {"Content-Type": "application/json", "Authorization": "Bearer not-the-token-000000"}, b"{}")[0] == 401
        assert fetch(host, port, "/api/pairs/1", "DELETE")[0] == 401
        browser.get(f"http://{host}:{port}/")
        assert browser.title == "showsay: log in"
        assert browser.find_elements("id", "live") == []
        assert browser.execute_script("return getComputedStyle(document.body).backgroundColor") == "rgb(246, 247, 249)"  # styled
        screenshot(browser, tmp_path, "page-login.png")
        browser.find_element("id", "token").send_keys("wrong-token-0000000000")
        browser.find_element("id", "login").click()
        wait_until(lambda: browser.title == "showsay: log in" and browser.find_element("id", "token").get_attribute("value") == "",
                   10, "the login form again after a wrong token")
        control = EventCollector(tmp_path / "control.sock")
        assert control.request({"cmd": "status"})["state"] == "idle"  # nothing was pressed by any of the above

        # with it, the page works: the live view, then Teach and the next time the word is heard
        browser.find_element("id", "token").send_keys(TOKEN)
        browser.find_element("id", "login").click()
        wait_until(lambda: browser.title == "showsay", 10, "the page after logging in")
        seen = frame_indices(browser, 2.0)
        assert len(seen) >= 4, seen
        browser.find_element("id", "teach-label").send_keys("apple")
        browser.find_element("id", "teach").click()
        taught = control.wait_for("taught", 0, timeout_s=15)
        assert taught["label"] == "apple"
        wait_until(lambda: browser.execute_script(
            "const i = document.querySelector('#pairs li[data-pair-id=\"1\"] .views img'); return i && i.complete && i.naturalWidth;"),
            10, "the pair's crop loaded")
        assert fetch(host, port, "/api/status", headers={"Authorization": f"Bearer {TOKEN}"})[0] == 200
        screenshot(browser, tmp_path, "page-token.png")
        control.close()
    finally:
        assert daemon.stop() == 0, daemon.log()


def test_the_daemon_refuses_to_start_a_page_it_cannot_protect(tmp_path):
    config = write_config(tmp_path, web={"enabled": True, "bind": "0.0.0.0", "port": 0})
    result = subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(config)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "web.bind: '0.0.0.0' is reachable beyond this machine; set web.token_file" in result.stderr
    token_file = tmp_path / "web.token"
    token_file.write_text(TOKEN)
    token_file.chmod(0o644)
    config = write_config(tmp_path, web={"enabled": True, "bind": "0.0.0.0", "port": 0, "token_file": str(token_file)},
                          microphone={"source": str(SAMPLES / "session.wav")})
    result = subprocess.run([sys.executable, "-m", "edge", "run", "--config", str(config)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2  # refused before anything is loaded, as `showsay check` refuses it
    assert f"web.token_file {token_file}: mode 0644 lets other users read the token; chmod 600" in result.stderr
    check = subprocess.run([sys.executable, "-m", "edge", "check", "--config", str(config)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert check.returncode == 1 and "mode 0644 lets other users read the token" in check.stderr
