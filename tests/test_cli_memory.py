"""``showsay memory list|forget|label|export|import|check`` on a real memory file."""
from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np

from edge.cli import main
from edge.control import ControlServer, ControlSettings
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


def test_changes_are_refused_while_a_daemon_runs(tmp_path: Path, capsys) -> None:
    config = write_config(tmp_path)
    ids = teach_some(tmp_path / "state" / "memory.sqlite3")
    with ControlServer(ControlSettings(socket_path=str(tmp_path / "run" / "ctl.sock")), lambda r: {}):
        code, _, err = run_cli(capsys, "memory", "forget", str(ids[0]), "--config", str(config))
        assert code == 1 and "a daemon is running" in err and "showsay forget" in err
        assert run_cli(capsys, "memory", "list", "--config", str(config))[0] == 0  # reading is fine
        assert run_cli(capsys, "memory", "forget", str(ids[0]), "--config", str(config), "--force")[0] == 0


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
