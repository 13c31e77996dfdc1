"""systemd integration: sd_notify through a fake NOTIFY_SOCKET, the unit file, signals."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge.service import Notifier

ROOT = Path(__file__).resolve().parents[1]
UNIT = ROOT / "systemd" / "showsay.service"


def notify_socket(tmp_path: Path) -> tuple[socket.socket, str]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(5.0)
    return sock, path


def received(sock: socket.socket) -> list[str]:
    return sock.recv(4096).decode().split("\n")


def test_notifier_sends_ready_status_and_rate_limited_watchdog(tmp_path):
    sock, path = notify_socket(tmp_path)
    n = Notifier.from_environ({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid())}, fraction=0.5)
    assert n.enabled and n.watchdog_interval_s == pytest.approx(0.1)
    n.ready("ready: 0 pairs")
    assert received(sock) == ["READY=1", "STATUS=ready: 0 pairs"]
    n.status("idle")
    assert received(sock) == ["STATUS=idle"]
    t0 = time.monotonic()
    while time.monotonic() - t0 < 0.35:  # a busy loop pets 3-4 times, not thousands
        n.watchdog()
        time.sleep(0.001)
    sock.settimeout(0.2)
    pets = []
    try:
        while True:
            pets += received(sock)
    except socket.timeout:
        pass
    assert set(pets) == {"WATCHDOG=1"} and 3 <= len(pets) <= 5
    n.stopping()
    sock.settimeout(5.0)
    assert received(sock)[0] == "STOPPING=1"
    n.close()
    sock.close()


def test_notifier_abstract_socket_and_no_systemd():
    name = f"showsay-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(5.0)
    n = Notifier.from_environ({"NOTIFY_SOCKET": "@" + name})
    n.ready("x")
    assert received(sock)[0] == "READY=1"
    sock.close()
    quiet = Notifier.from_environ({})
    assert not quiet.enabled and quiet.notify("READY=1") is False
    quiet.watchdog()  # no watchdog asked for: nothing to do
    other = Notifier.from_environ({"NOTIFY_SOCKET": "/nonexistent/sock", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert other.watchdog_interval_s is None  # the watchdog is meant for another process
    assert other.notify("READY=1") is False  # a vanished socket is logged, never raised


def test_unit_file_verifies(tmp_path):
    """systemd-analyze verify on the shipped unit, with ExecStart pointed at this checkout's showsay."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze missing: apt-get install systemd"
    wrapper = tmp_path / "bin" / "showsay"
    wrapper.parent.mkdir()
    wrapper.write_text(f"#!/bin/sh\ncd {ROOT} && exec {sys.executable} -m edge \"$@\"\n")
    wrapper.chmod(0o755)
    text = UNIT.read_text()
    assert "/opt/showsay/venv/bin/showsay" in text
    unit = tmp_path / "showsay.service"
    unit.write_text(text.replace("/opt/showsay/venv/bin/showsay", str(wrapper)))
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    problems = [l for l in result.stderr.splitlines() if "showsay.service" in l]
    assert not problems, problems
    # the shipped unit as is: the only complaint allowed is the not yet installed binary
    shipped = subprocess.run([analyze, "verify", str(UNIT)], capture_output=True, text=True, timeout=60)
    other = [l for l in shipped.stderr.splitlines() if "showsay.service" in l and "is not executable" not in l]
    assert not other, other


def test_unit_file_has_what_the_service_needs():
    keys = {}
    for line in UNIT.read_text().splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            keys[k] = v
    assert keys["Type"] == "notify" and int(keys["WatchdogSec"]) > 0
    assert keys["Restart"] == "on-failure" and keys["StartLimitBurst"] and keys["StartLimitIntervalSec"]
    assert keys["StateDirectory"] == "showsay" and keys["RuntimeDirectory"] == "showsay"
    assert {"audio", "video", "gpio"} <= set(keys["SupplementaryGroups"].split())
    assert "check" in keys["ExecStartPre"] and " run " in keys["ExecStart"]
    for k in ("NoNewPrivileges", "ProtectHome", "PrivateTmp"):
        assert keys[k] == "yes"
    assert keys["ProtectSystem"] == "strict"
    # the defaults point where the unit gives the daemon its directories
    from edge.config import Config

    cfg = Config()
    assert cfg.service.stop_timeout_s < int(keys["TimeoutStopSec"])
