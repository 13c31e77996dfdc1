"""``showsay teach|cancel|status|list|forget|label|ask|events`` against a real control socket."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge.audio import write_wav
from edge.cli import main
from edge.control import ControlServer, ControlSettings

ROOT = Path(__file__).resolve().parents[1]
WAIT_S = 10.0


class FakeDaemon:
    """A handler holding pairs in a dict, answering like the daemon's controller."""

    def __init__(self) -> None:
        self.labels: dict[int, str | None] = {1: "cup", 2: None}
        self.requests: list[dict] = []

    def __call__(self, request: dict) -> dict:
        self.requests.append(request)
        cmd = request["cmd"]
        if cmd == "status":
            return {"state": "idle", "pairs": len(self.labels)}
        if cmd == "list":
            return {"pairs": [{"pair_id": k, "label": v} for k, v in sorted(self.labels.items())]}
        if cmd in ("forget", "label") and request["pair_id"] not in self.labels:
            return {"ok": False, "error": f"no pair {request['pair_id']}"}
        if cmd == "forget":
            del self.labels[request["pair_id"]]
            return {"pair_id": request["pair_id"]}
        if cmd == "label":
            self.labels[request["pair_id"]] = request["label"]
            return {"pair_id": request["pair_id"], "label": request["label"]}
        if cmd == "ask":
            return {"wav": request["wav"], "bytes": os.path.getsize(request["wav"])}
        return {"state": "teaching" if cmd == "teach" else "idle"}


@pytest.fixture
def daemon(tmp_path: Path):
    fake = FakeDaemon()
    server = ControlServer(ControlSettings(socket_path=str(tmp_path / "ctl.sock")), fake)
    server.start()
    yield server, fake
    server.close()


def run_cli(capsys, *argv: str) -> tuple[int, list[dict], str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


def test_commands_print_the_reply(daemon, capsys, tmp_path: Path, monkeypatch) -> None:
    server, fake = daemon
    sock = str(server.path)
    assert run_cli(capsys, "status", "--socket", sock)[:2] == (0, [{"ok": True, "state": "idle", "pairs": 2}])
    assert run_cli(capsys, "teach", "--label", "mug", "--socket", sock)[:2] == (0, [{"ok": True, "state": "teaching"}])
    assert fake.requests[-1] == {"cmd": "teach", "label": "mug"}
    assert run_cli(capsys, "cancel", "--socket", sock)[0] == 0
    assert run_cli(capsys, "label", "2", "red ball", "--socket", sock)[:2] == (0, [{"ok": True, "pair_id": 2, "label": "red ball"}])
    assert run_cli(capsys, "forget", "1", "--socket", sock)[0] == 0
    assert run_cli(capsys, "list", "--socket", sock)[:2] == (0, [{"ok": True, "pairs": [{"pair_id": 2, "label": "red ball"}]}])
    code, replies, err = run_cli(capsys, "forget", "1", "--socket", sock)
    assert code == 1 and replies == [{"ok": False, "error": "no pair 1"}] and "no pair 1" in err

    wav = tmp_path / "where is the cup.wav"
    write_wav(wav, np.zeros(1600, np.float32), 16000)
    monkeypatch.chdir(tmp_path)  # a relative path is sent as an absolute one
    code, replies, _ = run_cli(capsys, "ask", wav.name, "--socket", sock)
    assert code == 0 and replies[0]["wav"] == str(wav) and replies[0]["bytes"] == wav.stat().st_size
    code, _, err = run_cli(capsys, "ask", "missing.wav", "--socket", sock)
    assert code == 1 and "missing.wav: no such wav file" in err


def test_socket_comes_from_the_config(daemon, capsys, tmp_path: Path) -> None:
    server, _ = daemon
    config = tmp_path / "showsay.yaml"
    config.write_text("control:\n  socket_path: ctl.sock\n")  # relative to the config file
    assert run_cli(capsys, "status", "--config", str(config))[0] == 0


def test_events_are_printed_as_json_lines(daemon, capsys) -> None:
    server, _ = daemon

    def publish_when_subscribed() -> None:
        deadline = time.monotonic() + WAIT_S
        while server.subscriber_count == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        for i in range(3):
            server.publish({"event": "taught", "pair_id": i})

    t = threading.Thread(target=publish_when_subscribed)
    t.start()
    code, events, _ = run_cli(capsys, "events", "--count", "3", "--timeout", str(WAIT_S), "--socket", str(server.path))
    t.join(timeout=WAIT_S)
    assert code == 0 and events == [{"event": "taught", "pair_id": i} for i in range(3)]
    code, events, err = run_cli(capsys, "events", "--timeout", "0.2", "--socket", str(server.path))
    assert code == 1 and events == [] and "no event within 0.2 s" in err


def test_no_daemon_gives_exit_1_and_a_clear_message(tmp_path: Path, capsys) -> None:
    sock = tmp_path / "nothing.sock"
    for argv in (["forget", "3"], ["events"], ["teach"]):
        code, out, err = run_cli(capsys, *argv, "--socket", str(sock))
        assert code == 1 and out == [] and f"no showsay daemon is answering on {sock}" in err
    # The real command line, as a user runs it.
    proc = subprocess.run(
        [sys.executable, "-m", "edge", "status", "--socket", str(sock)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert f"no showsay daemon is answering on {sock}" in proc.stderr


def test_end_to_end_in_a_subprocess(daemon, tmp_path: Path) -> None:
    server, fake = daemon
    proc = subprocess.run(
        [sys.executable, "-m", "edge", "label", "1", "blue cup", "--socket", str(server.path)],
        cwd=ROOT, capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"ok": True, "pair_id": 1, "label": "blue cup"}
    assert fake.labels[1] == "blue cup"
