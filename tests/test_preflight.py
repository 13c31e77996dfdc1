"""`showsay check` refuses what `showsay run` cannot run, with one line naming the setting (issue 19, item 7)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from edge.cli import main

ROOT = Path(__file__).resolve().parents[1]
BASELINES = {"encoders": {"speech": "dtw", "image": "pixels"}}
# As root every permission bit is ignored; these drop the capabilities that ignore them (util-linux setpriv).
DROP_DAC = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search,-fowner"]


def unwritable_dir(tmp_path: Path) -> Path:
    """A directory this process cannot create files in: /sys (sysfs refuses new files even to root) as root, else mode 0555."""
    if os.geteuid() == 0:
        return Path("/sys")
    ro = tmp_path / "readonly"
    ro.mkdir()
    ro.chmod(0o555)
    return ro


def config(tmp_path: Path, **sections: dict) -> Path:
    """A config of the baselines with its state, socket and answer folders in tmp_path, plus ``sections``."""
    values = {
        **BASELINES,
        "memory": {"state_dir": str(tmp_path / "state")},
        "control": {"socket_path": str(tmp_path / "run" / "control.sock")},
        "camera": {"source": "0"},
    }
    for name, settings in sections.items():
        values[name] = {**values.get(name, {}), **settings}
    path = tmp_path / "showsay.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def check(path: Path, capsys) -> tuple[int, list[str]]:
    rc = main(["check", "--config", str(path)])
    err = capsys.readouterr().err
    return rc, [line for line in err.splitlines() if line]


def test_a_good_config_passes_and_check_creates_nothing(tmp_path, capsys):
    rc, lines = check(config(tmp_path), capsys)
    assert (rc, lines) == (0, [])
    assert not (tmp_path / "state").exists() and not (tmp_path / "run").exists()


def make_fifo(tmp_path: Path) -> Path:
    (tmp_path / "state").mkdir()
    os.mkfifo(tmp_path / "state" / "memory.sqlite3")
    return tmp_path


def make_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("not a socket\n")
    return path


CASES = {
    "vad frame differs from the microphone's": (lambda t: {"vad": {"frame_ms": 20}}, "vad.frame_ms: must equal microphone.frame_ms"),
    "max utterance below min": (lambda t: {"vad": {"min_utterance_ms": 800, "max_utterance_ms": 500}}, "vad.max_utterance_ms: must be above min_utterance_ms"),
    "db_name with a folder": (lambda t: {"memory": {"db_name": "../elsewhere.sqlite3"}}, "memory.db_name: must be a file name"),
    "missing camera file": (lambda t: {"camera": {"source": str(t / "absent.mp4")}}, "camera.source: " ),
    "camera file is a folder": (lambda t: {"camera": {"source": str(t)}}, "is not a regular file"),
    "missing gpiochip": (lambda t: {"button": {"kind": "gpiod", "chip": "/dev/gpiochip97"}}, "button.chip: /dev/gpiochip97: no such GPIO chip"),
    "gpiochip is not a device": (lambda t: {"button": {"kind": "gpiod", "chip": str(make_file(t / "chip"))}}, "is not a character device"),
    "state dir unwritable": (lambda t: {"memory": {"state_dir": str(unwritable_dir(t) / "showsay")}}, "memory.state_dir: "),
    "state dir under a file": (lambda t: {"memory": {"state_dir": str(make_file(t / "f") / "state")}}, "is not a directory"),
    "memory file is a FIFO": (lambda t: {"memory": {"state_dir": str(make_fifo(t) / "state")}}, "memory.db_name: "),
    "socket dir unwritable": (lambda t: {"control": {"socket_path": str(unwritable_dir(t) / "c.sock")}}, "control.socket_path: "),
    "socket path too long": (lambda t: {"control": {"socket_path": str(t / ("x" * 120) / "c.sock")}}, "a Unix socket path holds at most 107"),
    "socket path is a file": (lambda t: {"control": {"socket_path": str(make_file(t / "run" / "c.sock"))}}, "exists and is not a socket"),
    "answer dir unwritable": (lambda t: {"answers": {"save_dir": str(unwritable_dir(t) / "answers")}}, "answers.save_dir: "),
}


@pytest.mark.parametrize("case", list(CASES))
def test_check_refuses_what_run_cannot_run(tmp_path, capsys, case):
    sections, expected = CASES[case]
    rc, lines = check(config(tmp_path, **sections(tmp_path)), capsys)
    assert rc == 1
    assert len(lines) == 1 and expected in lines[0], lines
    assert lines[0].startswith("showsay check: ") and "Traceback" not in lines[0]


def test_gpiod_not_installed_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "gpiod", None)  # import gpiod now raises ImportError
    rc, lines = check(config(tmp_path, button={"kind": "gpiod", "chip": "/dev/null"}), capsys)
    assert rc == 1 and len(lines) == 1 and "button.kind: gpiod, but the gpiod package cannot be imported" in lines[0]


def test_every_problem_is_listed_at_once(tmp_path, capsys):
    rc, lines = check(config(tmp_path, camera={"source": str(tmp_path / "absent.mp4")}, button={"kind": "gpiod", "chip": "/dev/gpiochip97"}), capsys)
    assert rc == 1 and len(lines) == 2 and "camera.source" in lines[0] and "button.chip" in lines[1]


def test_config_only_skips_this_machine(tmp_path, capsys):
    path = config(tmp_path, camera={"source": str(tmp_path / "absent.mp4")})
    assert main(["check", "--config-only", "--config", str(path)]) == 0
    capsys.readouterr()


@pytest.mark.timeout(120)
def test_run_refuses_an_unwritable_state_dir_naming_the_setting(tmp_path):
    """Before: `cannot start: [Errno 13] ... .memory.sqlite3.xxxx.new`, after loading models and opening devices."""
    prefix: list[str] = []
    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() == 0:
        os.chown(locked, 65534, 65534)  # owned by nobody, mode 0755: unwritable once CAP_DAC_OVERRIDE is dropped
        prefix = DROP_DAC
    else:
        locked.chmod(0o555)
    path = config(tmp_path, memory={"state_dir": str(locked / "state")})
    path.chmod(0o644)
    tmp_path.chmod(0o755)
    result = subprocess.run([*prefix, sys.executable, "-m", "edge", "run", "--config", str(path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=90)
    assert result.returncode == 2, result.stderr
    assert "memory.state_dir" in result.stderr and "Permission denied" in result.stderr
    assert "Traceback" not in result.stderr
