"""Hostile and malformed config files get one line naming the file and the key, fast (issue 19, items 7 and 12)."""
from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
import yaml

import edge.config_file as config_file
from edge.config import Config, ConfigError, load_config

LOADERS = [pytest.param(yaml.SafeLoader, id="python-parser")]
if hasattr(yaml, "CSafeLoader"):
    LOADERS.insert(0, pytest.param(yaml.CSafeLoader, id="libyaml"))


@pytest.fixture(params=LOADERS)
def loader(request, monkeypatch):
    """Run the test with libyaml's parser and with PyYAML's pure-Python one (a Jetson's PyYAML may lack libyaml)."""
    monkeypatch.setattr(config_file, "_Loader", request.param)
    return request.param


def refusal(path: Path | str, timeout_s: float = 10.0) -> str:
    """The one-line ConfigError message load_config gives for ``path``, within ``timeout_s``."""
    result: dict = {}

    def load() -> None:
        try:
            load_config(path)
            result["error"] = None
        except ConfigError as exc:
            result["error"] = str(exc)
        except BaseException as exc:  # noqa: BLE001 - the test reports what escaped
            result["escaped"] = exc

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    thread.join(timeout_s)
    assert not thread.is_alive(), f"load_config({path}) still running after {timeout_s} s"
    assert "escaped" not in result, f"not a ConfigError: {result.get('escaped')!r}"
    message = result["error"]
    assert message is not None, f"{path} was accepted"
    assert "\n" not in message and len(message) < 400, message
    assert message.startswith(f"{path}: "), message
    return message


def write(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_fifo_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "config.yaml"
    os.mkfifo(fifo)
    assert "not a regular file (a FIFO)" in refusal(fifo, timeout_s=5)


def test_a_device_and_a_directory_are_refused(tmp_path):
    assert "not a regular file (a character device)" in refusal("/dev/zero", timeout_s=5)
    assert "not a regular file (a directory)" in refusal(tmp_path, timeout_s=5)


def test_an_oversized_file_is_refused_before_it_is_read(tmp_path):
    big = write(tmp_path, "# padding\n" * (config_file.MAX_CONFIG_BYTES // 10 + 1))
    assert "more than a config file may have" in refusal(big, timeout_s=5)


def test_an_alias_bomb_is_refused_naming_the_key(tmp_path, loader):
    lines = ["matching:", "  word_best_of:", "    - &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):  # 400 bytes standing for 10^9 values
        lines.append(f"    - &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    message = refusal(write(tmp_path, "\n".join(lines) + "\n"), timeout_s=10)
    assert "matching.word_best_of" in message and "alias bomb" in message


@pytest.mark.parametrize("style", ["flow", "block"])
def test_deep_nesting_is_refused(tmp_path, loader, style):
    depth = 1000
    if style == "flow":
        text = "matching:\n  dtw_warp: " + "[" * depth + "]" * depth + "\n"
    else:
        text = "matching:\n  dtw_warp:\n" + "".join(" " * (2 * i + 4) + "-\n" for i in range(40))
    message = refusal(write(tmp_path, text), timeout_s=10)
    assert "nest" in message


def test_a_huge_number_is_refused_naming_the_key(tmp_path, loader):
    message = refusal(write(tmp_path, "encoders:\n  threads: " + "9" * 100_000 + "\n"), timeout_s=10)
    assert "encoders.threads: a value of 100000 characters" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("matching:\n  unknown_word_distance: 0.3\n  unknown_word_distance: 0.9\n",
         "matching.unknown_word_distance: given twice (first on line 2); keep one (line 3)"),
        ("matching:\n  unknown_word_distance: 0.3\nvad:\n  frame_ms: 30\nmatching:\n  dtw_warp: 0.1\n",
         "matching: given twice (first on line 1); keep one (line 5)"),
    ],
    ids=["key", "section"],
)
def test_duplicate_keys_and_sections_are_refused_with_their_lines(tmp_path, loader, text, expected):
    assert expected in refusal(write(tmp_path, text))


@pytest.mark.parametrize("text", ["false\n", "0\n", "[]\n", "'text'\n"])
def test_a_top_level_that_is_not_a_mapping_is_refused(tmp_path, text):
    assert "expected a mapping of settings" in refusal(write(tmp_path, text))


def test_an_empty_file_gives_the_defaults(tmp_path):
    assert load_config(write(tmp_path, "")) == Config()
    assert load_config(write(tmp_path, "# nothing but a comment\n")) == Config()


def test_complex_keys_second_documents_and_syntax_errors_get_one_line(tmp_path, loader):
    assert "matching: a key must be a plain name" in refusal(write(tmp_path, "matching:\n  ? [a, b]\n  : 1\n"))
    assert "a second YAML document" in refusal(write(tmp_path, "matching: {}\n---\nvad: {}\n"))
    assert "not valid YAML" in refusal(write(tmp_path, "matching: [unclosed\n"))
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(b"camera: {source: caf\xe9.mp4}\n")
    assert "not UTF-8 text (byte 20 is 0xe9)" in refusal(latin1)


def test_anchors_and_aliases_within_the_limits_still_work(tmp_path, loader):
    cfg = load_config(write(tmp_path, "microphone: {frame_ms: &frame 20}\nvad: {frame_ms: *frame}\n"))
    assert cfg.microphone.frame_ms == cfg.vad.frame_ms == 20


def test_the_sighup_reload_goes_through_the_same_guard(tmp_path):
    """An alias bomb sent with SIGHUP is refused at once; the running thresholds stay."""
    from edge.service import Daemon

    class Controller:
        def __init__(self) -> None:
            self.events: list[dict] = []
            self.matching = None

        def publish(self, event: dict) -> None:
            self.events.append(event)

        def set_matching(self, matching) -> None:
            self.matching = matching

    daemon = Daemon(Config(), audio=None, frames=None, button=None, control=False)
    daemon.controller = controller = Controller()
    lines = ["matching:", "  word_best_of:", "    - &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        lines.append(f"    - &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    bomb = write(tmp_path, "\n".join(lines) + "\n")
    done: list[bool] = []
    thread = threading.Thread(target=lambda: done.append(daemon.reload(bomb)), daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive(), "the reload is still running after 10 s"
    assert done == [False] and controller.matching is None
    assert "alias bomb" in controller.events[-1]["error"]
