"""The command line explains itself: --version, help for every group, -v after the subcommand, defaults in help, fast clients."""
from __future__ import annotations

import argparse
import importlib
import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edge import __version__
from edge.cli import COMMAND_MODULES, COMMANDS, DELEGATED, build_parser, command_of, log_level, main
from edge.control import ControlServer, ControlSettings
from edge.narrate import Narrator, describe, wants_narration

ROOT = Path(__file__).resolve().parents[1]


def showsay(*argv: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge", *argv], cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)


def test_version():
    result = showsay("--version")
    assert result.returncode == 0 and result.stdout.strip() == f"showsay {__version__}"


@pytest.mark.parametrize("group, subcommands", [("export", ("onnx", "ensemble", "engine", "objects")), ("train", ("prepare", "speech", "image"))])
def test_train_and_export_have_help_and_list_their_subcommands(group, subcommands):
    for argv in ((group, "--help"), (group,)):
        result = showsay(*argv, timeout_s=240.0)
        assert result.returncode == 0, result.stderr
        assert f"usage: showsay {group}" in result.stdout
        for name in subcommands:
            assert name in result.stdout, (argv, name)


def test_the_command_table_names_what_each_module_registers():
    registered: dict[str, str] = {}
    for module in COMMAND_MODULES:
        parser = argparse.ArgumentParser()
        sub = parser.add_subparsers()
        importlib.import_module(module).register(sub)
        registered.update({name: module for name in sub.choices})
    assert registered == COMMANDS
    assert not set(DELEGATED) & set(COMMANDS)


def test_logging_options_are_taken_before_and_after_the_subcommand():
    parser = build_parser("status")
    assert log_level(parser.parse_args(["status"])) == logging.INFO
    assert log_level(parser.parse_args(["-v", "status"])) == logging.DEBUG
    assert log_level(parser.parse_args(["status", "-v"])) == logging.DEBUG
    assert log_level(parser.parse_args(["status", "--log-level", "WARNING"])) == logging.WARNING
    assert log_level(parser.parse_args(["--log-level", "error", "status"])) == logging.ERROR
    assert log_level(build_parser("memory").parse_args(["memory", "list", "--db", "x.sqlite3", "-v"])) == logging.DEBUG
    assert command_of(["--log-level", "debug", "status", "-v"]) == ("status", 2)
    result = showsay("list", "-v", "--log-level", "debug", "--socket", "/nonexistent/ctl.sock")
    assert result.returncode == 1 and "no showsay daemon is answering" in result.stderr  # parsed, then ran


def test_help_shows_defaults():
    text = showsay("run", "--help").stdout
    assert "(default: auto)" in text
    text = showsay("demo", "--help").stdout
    assert "--web-hold-s S" in text and "(default: 0.0)" in text
    text = showsay("--help").stdout
    assert "status" in text and "demo" in text and "export" in text
    bare = showsay()
    assert bare.returncode == 0 and "COMMAND" in bare.stdout  # no command: the list, not an error


def test_client_commands_load_neither_opencv_nor_scipy(tmp_path):
    server = ControlServer(ControlSettings(socket_path=str(tmp_path / "ctl.sock")), lambda req: {"state": "idle", "pairs": 0, "pairs_list": []})
    server.start()
    try:
        code = (
            "import sys; from edge.cli import main; rc = main(sys.argv[1:]); "
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'cv2', 'scipy', 'numpy', 'onnxruntime', 'yaml', 'edge.config'}); "
            "print('HEAVY', heavy); sys.exit(rc)"
        )
        for command in ("status", "list"):
            result = subprocess.run([sys.executable, "-c", code, command, "--socket", str(tmp_path / "ctl.sock")],
                                    cwd=ROOT, capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, result.stderr
            assert json.loads(result.stdout.splitlines()[0])["ok"] is True
            assert result.stdout.splitlines()[-1] == "HEAVY []"
    finally:
        server.close()


def test_events_become_readable_lines():
    assert describe({"event": "taught", "pair_id": 3, "label": "cup", "utterance_ms": 960, "box": [1, 2, 3, 4], "sharpness": 131.8}) == (
        "learned pair 3 'cup' from 960 ms of speech and the crop at [1, 2, 3, 4] (sharpest of the sampled frames: 131.8)")
    assert describe({"event": "resolved", "pair_id": 3, "label": None, "box": [5, 6, 7, 8], "speech_distance": 0.0312,
                     "image_distance": 0.0441, "latency_ms": 9.84}) == "found pair 3 at [5, 6, 7, 8] (speech 0.031, image 0.044; 9.8 ms)"
    assert describe({"event": "not_in_view", "pair_id": 1, "label": "cup", "image_distance": 0.6, "latency_ms": 5.0}) == (
        "cup is not in view (best candidate at image distance 0.6; 5.0 ms)")
    assert describe({"event": "labelled", "pair_id": 3, "label": "mug"}) == "pair 3 is now called 'mug'"
    assert describe({"event": "subscribed"}) is None


class BlockedStream:
    """A terminal nobody reads: every write waits until released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        self.release.wait(30)
        self.lines.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_the_narrator_never_waits_for_the_terminal():
    stream = BlockedStream()
    narrator = Narrator(stream, max_lines=4)
    done = threading.Event()

    def publish():
        for i in range(50):
            narrator({"event": "forgotten", "pair_id": i, "time_unix": time.time()})
        done.set()

    threading.Thread(target=publish, daemon=True).start()
    assert done.wait(10), "publishing waited for a terminal that does not read"
    assert narrator.dropped >= 40
    stream.release.set()
    narrator.close()
    assert any("forgot pair 0" in line for line in stream.lines)
    assert wants_narration("always") and not wants_narration("never") and not wants_narration("auto", stream)


def test_main_prints_help_for_no_command(capsys):
    assert main([]) == 0
    assert "usage: showsay" in capsys.readouterr().out
