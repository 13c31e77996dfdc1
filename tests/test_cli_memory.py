"""``showsay memory list|forget|label|export|import|check`` on a real memory file."""
from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path

import numpy as np

from edge.cli import main
from edge.memory import SCHEMA_VERSION, Memory


def run_cli(capsys, *argv: str) -> tuple[int, list[dict], str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


def write_config(tmp_path: Path) -> Path:
    config = tmp_path / "showsay.yaml"
    config.write_text("memory:\n  state_dir: state\ncontrol:\n  socket_path: run/ctl.sock\n")
    return config


def teach_some(path: Path) -> list[int]:
    rng = np.random.default_rng(0)
    with Memory(path) as mem:
        return [
            mem.teach(rng.integers(-999, 999, 1600, dtype=np.int16), 16000, rng.integers(0, 255, (20, 30, 3), dtype=np.uint8), label=label,
                      embeddings={"dtw": rng.standard_normal((4, 39))})
            for label in ("cup", None, "ball")
        ]


def test_list_forget_label_export_import_check(tmp_path: Path, capsys) -> None:
    config = str(write_config(tmp_path))
    db = tmp_path / "state" / "memory.sqlite3"
    ids = teach_some(db)
    code, rows, _ = run_cli(capsys, "memory", "list", "--config", config)
    assert code == 0 and [r["pair_id"] for r in rows] == ids and [r["label"] for r in rows] == ["cup", None, "ball"]
    assert rows[0]["encoders"] == ["dtw"] and rows[0]["audio_ms"] == 100.0 and rows[0]["crop_shape"] == [20, 30, 3]

    assert run_cli(capsys, "memory", "label", str(ids[1]), "spoon", "--config", config)[0] == 0
    assert run_cli(capsys, "memory", "forget", str(ids[0]), "--config", config)[0] == 0
    code, _, err = run_cli(capsys, "memory", "forget", str(ids[0]), "--config", config)
    assert code == 1 and f"no pair {ids[0]}" in err

    assert run_cli(capsys, "memory", "export", str(tmp_path / "backup"), "--config", config)[:2] == (
        0, [{"exported": 2, "dir": str(tmp_path / "backup")}])
    other = tmp_path / "other.sqlite3"
    code, out, _ = run_cli(capsys, "memory", "import", str(tmp_path / "backup"), "--db", str(other))
    assert code == 0 and len(out[0]["imported"]) == 2
    code, rows, _ = run_cli(capsys, "memory", "list", "--db", str(other))
    assert [r["label"] for r in rows] == ["spoon", "ball"]
    assert run_cli(capsys, "memory", "check", "--config", config)[:2] == (
        0, [{"ok": True, "pairs": 2, "views": 2, "schema_version": SCHEMA_VERSION, "path": str(db)}])


def test_missing_or_foreign_file_is_reported_not_created(tmp_path: Path, capsys) -> None:
    config = str(write_config(tmp_path))
    code, _, err = run_cli(capsys, "memory", "list", "--config", config)
    assert code == 1 and "no memory file" in err
    assert not (tmp_path / "state" / "memory.sqlite3").exists()
    junk = tmp_path / "junk.sqlite3"
    junk.write_bytes(b"hello, not a database" * 10)
    code, _, err = run_cli(capsys, "memory", "import", str(tmp_path), "--db", str(junk))
    assert code == 1 and f"{junk}: not a SQLite database" in err
    assert junk.read_bytes() == b"hello, not a database" * 10


def in_memory_daemon(tmp_path: Path):
    """A real Daemon (DTW + pixels) on the config's state directory, over in-memory devices: it holds the state lock as `showsay run` does."""
    from edge.button import NoButton
    from edge.config import load_config
    from edge.service import Daemon
    from tests.daemon_fakes import QueueAudio, StaticFrames

    cfg = load_config(tmp_path / "showsay.yaml")
    return Daemon(cfg, audio=QueueAudio(), frames=StaticFrames(), button=NoButton(), control=False)


def test_changes_are_refused_while_a_daemon_holds_the_state_directory(tmp_path: Path, capsys) -> None:
    config = write_config(tmp_path)
    (tmp_path / "showsay.yaml").write_text(config.read_text() + "encoders:\n  speech: dtw\n  image: pixels\nbutton:\n  kind: none\n")
    db = tmp_path / "state" / "memory.sqlite3"
    ids = teach_some(db)
    (tmp_path / "export").mkdir()
    daemon = in_memory_daemon(tmp_path)
    daemon.start()
    try:
        for argv in (("forget", str(ids[0])), ("label", str(ids[0]), "mug"), ("import", str(tmp_path / "export"))):
            code, _, err = run_cli(capsys, "memory", *argv, "--config", str(config))
            assert code == 1 and err.count("\n") == 1, err
            assert f"showsay memory {argv[0]}: {db}: in use by the showsay daemon (pid {os.getpid()})" in err
        code, rows, _ = run_cli(capsys, "memory", "list", "--config", str(config))  # reading is fine while it runs
        assert code == 0 and [r["pair_id"] for r in rows] == ids and rows[0]["label"] == "cup"
        assert run_cli(capsys, "memory", "check", "--config", str(config))[0] == 0
        assert run_cli(capsys, "memory", "export", str(tmp_path / "backup"), "--config", str(config))[0] == 0
        other = tmp_path / "elsewhere" / "memory.sqlite3"  # a file in another directory is not the daemon's
        assert run_cli(capsys, "memory", "import", str(tmp_path / "backup"), "--db", str(other))[0] == 0
    finally:
        daemon.close()
    assert run_cli(capsys, "memory", "forget", str(ids[0]), "--config", str(config))[0] == 0  # the lock went with the daemon


def test_a_changing_command_holds_the_lock_so_a_daemon_cannot_start_under_it(tmp_path: Path, capsys, monkeypatch) -> None:
    from edge.memory import StateDirInUse

    config = write_config(tmp_path)
    (tmp_path / "showsay.yaml").write_text(config.read_text() + "encoders:\n  speech: dtw\n  image: pixels\nbutton:\n  kind: none\n")
    ids = teach_some(tmp_path / "state" / "memory.sqlite3")
    seen: list[str] = []
    real_forget = Memory.forget

    def forget_while_a_daemon_starts(self, pair_id):
        daemon = in_memory_daemon(tmp_path)
        try:
            daemon.start()
        except StateDirInUse as exc:
            seen.append(str(exc))
        finally:
            daemon.close()
        return real_forget(self, pair_id)

    monkeypatch.setattr(Memory, "forget", forget_while_a_daemon_starts)
    assert run_cli(capsys, "memory", "forget", str(ids[0]), "--config", str(config))[0] == 0
    assert len(seen) == 1 and f"in use by 'showsay memory forget' (pid {os.getpid()})" in seen[0], seen
    daemon = in_memory_daemon(tmp_path)  # and released when the command is done
    daemon.start()
    daemon.close()


def test_check_reports_damage_with_exit_1(tmp_path: Path, capsys) -> None:
    db = tmp_path / "m.sqlite3"
    ids = teach_some(db)
    con = sqlite3.connect(db)
    con.execute("UPDATE pairs SET audio_wav = substr(audio_wav, 1, 30) WHERE pair_id=?", (ids[2],))
    con.commit()
    con.close()
    code, out, err = run_cli(capsys, "memory", "check", "--db", str(db))
    assert code == 1 and len(out) == 1 and f"pair {ids[2]}" in out[0]["problem"] and "1 problem" in err
    code, rows, _ = run_cli(capsys, "memory", "list", "--db", str(db))
    assert code == 0 and [r["pair_id"] for r in rows] == ids[:2]  # the sound pairs still list
