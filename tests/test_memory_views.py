"""Several views per pair in the memory file: the upgrade of schema-1 files, learned views, export/import (issue 17)."""
from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from edge import memory as memory_module
from edge.cli import main
from edge.memory import SCHEMA_VERSION, Memory, MemoryFileError, MemoryInputError, encode_png

FIXTURE = Path(__file__).resolve().parent / "data" / "memory_v1.sqlite3"  # written by the schema-1 code (tests/data/README.md)


def raw_rows(path: Path) -> dict[str, list[tuple]]:
    """Every row of the schema-1 tables, read with plain sqlite3 (read-only, so the file is not touched)."""
    con = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        return {
            "pairs": con.execute("SELECT * FROM pairs ORDER BY pair_id").fetchall(),
            "embeddings": con.execute("SELECT * FROM embeddings ORDER BY pair_id, encoder_id").fetchall(),
        }
    finally:
        con.close()


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def fixture_copy(tmp_path: Path) -> Path:
    path = tmp_path / "memory.sqlite3"
    shutil.copyfile(FIXTURE, path)
    return path


def expected_pair(seed: int, samples: int, side: int) -> tuple[np.ndarray, np.ndarray]:
    """The pairs tests/data/make_memory_v1.py taught."""
    rng = np.random.default_rng(seed)
    pcm = rng.integers(-32768, 32767, samples, dtype=np.int16, endpoint=True)
    crop = rng.integers(0, 255, (side, side + 7, 3), dtype=np.uint8, endpoint=True)
    return pcm, crop


def test_a_schema_1_file_is_upgraded_in_place_and_keeps_every_pair_bit_exact(tmp_path: Path) -> None:
    path = fixture_copy(tmp_path)
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 1
    con.close()
    before = raw_rows(path)
    assert [r[0] for r in before["pairs"]] == [1, 2, 3, 5] and len(before["embeddings"]) == 6

    with Memory(path) as mem:  # the upgrade happens here
        pairs = {p.pair_id: p for p in mem.pairs()}
        assert mem.check() == []
        assert mem.view_count() == 0
        for seed, label in ((1, "cup"), (2, None), (3, "red ball")):
            pcm, crop = expected_pair(seed, 1600, 20 + seed)
            p = pairs[seed]
            assert p.label == label and p.sample_rate_hz == 16000 and p.views == ()
            assert np.array_equal(p.audio_pcm, pcm) and np.array_equal(p.crop, crop)
            rng = np.random.default_rng(100 + seed)
            speech, image = rng.standard_normal((12, 39)).astype(np.float32), rng.standard_normal(64).astype(np.float32)
            assert np.array_equal(mem.embeddings("speech-test")[seed], speech)
            assert np.array_equal(mem.embeddings("image-test")[seed], image)
        assert np.array_equal(pairs[5].crop, np.arange(600, dtype=np.uint8).reshape(30, 20)) and pairs[5].sample_rate_hz == 8000
        view_id, _ = mem.add_view(1, np.full((9, 9, 3), 7, np.uint8), {"image-test": np.ones(64)})  # the new tables work
        new_pcm, new_crop = expected_pair(9, 800, 4)
        assert mem.teach(new_pcm, 16000, new_crop, label="new") == 6  # ids go on after the forgotten pair 4

    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    con.close()
    after = raw_rows(path)
    assert after["pairs"][:4] == before["pairs"]  # every stored byte of every old pair, its checksums and times
    assert [r for r in after["embeddings"] if r[0] != 6] == before["embeddings"]
    with Memory(path) as mem:  # opening an upgraded file again changes nothing
        assert [p.pair_id for p in mem.pairs()] == [1, 2, 3, 5, 6]
        assert [v.view_id for v in mem.pair(1).views] == [view_id] and mem.check() == []


def test_a_failed_upgrade_leaves_the_file_as_it_was(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = fixture_copy(tmp_path)
    before = snapshot(tmp_path)
    broken = (*memory_module.MIGRATIONS[2], "CREATE TABLE pairs (oops INTEGER)")  # fails after the new tables are made
    monkeypatch.setitem(memory_module.MIGRATIONS, 2, broken)
    with pytest.raises(MemoryFileError, match=f"{path}.*left untouched"):
        Memory(path)
    assert snapshot(tmp_path) == before  # same bytes, no -wal or -shm left behind
    monkeypatch.undo()
    with Memory(path) as mem:  # and the real upgrade still works afterwards
        assert len(mem.pairs()) == 4


def test_the_same_upgrade_of_a_file_made_from_the_schema_1_sql(tmp_path: Path) -> None:
    """An exact copy of the schema-1 SQL (as MIGRATIONS[1] has it), filled by hand: the upgrade needs nothing else."""
    path = tmp_path / "m.sqlite3"
    con = sqlite3.connect(path, isolation_level=None)
    con.execute(f"PRAGMA application_id={memory_module.APPLICATION_ID}")
    for statement in memory_module.MIGRATIONS[1]:
        con.execute(statement)
    con.execute("PRAGMA user_version=1")
    pcm, crop = expected_pair(3, 400, 6)
    wav, png = memory_module.encode_wav(pcm, 16000), encode_png(crop)
    con.execute("INSERT INTO pairs VALUES (7, 'x', 1.5, 16000, ?, ?, ?, ?)", (wav, memory_module._sha256(wav), png, memory_module._sha256(png)))
    con.execute("INSERT INTO embeddings VALUES (7, 'e', '[3]', ?)", (np.arange(3, dtype="<f4").tobytes(),))
    con.close()
    before = raw_rows(path)
    with Memory(path) as mem:
        p = mem.pair(7)
        assert np.array_equal(p.audio_pcm, pcm) and np.array_equal(p.crop, crop) and p.created_unix == 1.5
    assert raw_rows(path) == before


def grey(value: int, side: int = 8) -> np.ndarray:
    return np.full((side, side + 1), value, np.uint8)


def test_taught_views_are_stored_with_the_pair_and_learned_views_are_bounded_per_word(tmp_path: Path) -> None:
    pcm = np.arange(1600, dtype=np.int16)
    with Memory(tmp_path / "m.sqlite3") as mem:
        a = mem.teach(pcm, 16000, grey(1), label="cup", embeddings={"img": np.ones(4)},
                      views=[(grey(2), {"img": np.full(4, 2.0)}), (grey(3), {"img": np.full(4, 3.0)})])
        b = mem.teach(pcm, 16000, grey(4), label="cup")
        p = mem.pair(a)
        assert [v.source for v in p.views] == ["taught", "taught"] and [int(c[0, 0]) for c in p.crops] == [1, 2, 3]
        assert sorted(mem.view_embeddings("img").values(), key=lambda v: v[0]) and len(mem.view_embeddings("img")) == 2
        learned = []
        for k in range(5):  # five confirmed answers on the word "cup", at most three kept
            view_id, dropped = mem.add_view(a if k % 2 else b, grey(10 + k), {"img": np.full(4, 10.0 + k)}, max_learned=3, word_pair_ids=[a, b])
            learned.append(view_id)
            assert dropped == (learned[: k - 2] if k >= 3 else [])[-1:]  # the oldest learned view goes, one at a time
        kept = [v for pid in (a, b) for v in mem.pair(pid).views if v.source == "learned"]
        assert sorted(v.view_id for v in kept) == learned[2:]
        assert [v.source for v in mem.pair(a).views][:2] == ["taught", "taught"]  # taught views never dropped
        assert set(mem.view_embeddings("img")) == {v.view_id for pid in (a, b) for v in mem.pair(pid).views if v.view_id in mem.view_embeddings("img")}
        with pytest.raises(MemoryInputError, match="no pair 99"):
            mem.add_view(99, grey(1))
        with pytest.raises(MemoryInputError, match="source"):
            mem.add_view(a, grey(1), source="guessed")
        assert mem.forget(a)
        con = sqlite3.connect(mem.path)
        assert con.execute("SELECT count(*) FROM views WHERE pair_id=?", (a,)).fetchone()[0] == 0  # forget takes the views along
        assert con.execute("SELECT count(*) FROM view_embeddings").fetchone()[0] == len(mem.view_embeddings("img"))
        con.close()
        assert mem.check() == []


def test_check_finds_a_damaged_view_and_the_pair_still_loads_without_it(tmp_path: Path) -> None:
    with Memory(tmp_path / "m.sqlite3") as mem:
        a = mem.teach(np.arange(800, dtype=np.int16), 16000, grey(1), views=[(grey(2), {}), (grey(3), {})])
        con = sqlite3.connect(mem.path)
        png = bytearray(con.execute("SELECT crop_png FROM views WHERE view_id=1").fetchone()[0])
        png[-20] ^= 0x01
        con.execute("UPDATE views SET crop_png=? WHERE view_id=1", (bytes(png),))
        con.commit()
        con.close()
        problems = mem.check()
        assert len(problems) == 1 and "view 1 of pair" in problems[0]
        assert [int(c[0, 0]) for c in mem.pair(a).crops] == [1, 3]


def test_export_and_import_carry_every_view_bit_exact_and_old_exports_still_import(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 255, (12, 17, 3), dtype=np.uint8) for _ in range(4)]
    with Memory(tmp_path / "src.sqlite3") as src:
        a = src.teach(np.arange(800, dtype=np.int16), 16000, crops[0], label="cup", embeddings={"img": np.ones(5)},
                      views=[(crops[1], {"img": np.full(5, 2.0)})])
        src.add_view(a, crops[2], {"img": np.full(5, 3.0)})
        src.teach(np.arange(900, dtype=np.int16), 16000, crops[3])
        assert src.export(tmp_path / "out") == 2
        want = {p.label: p for p in src.pairs()}
    with Memory(tmp_path / "dst.sqlite3") as dst:
        new = dst.import_(tmp_path / "out")
        assert len(new) == 2 and dst.import_(tmp_path / "out") == []  # twice adds nothing
        got = {p.label: p for p in dst.pairs()}
        assert [v.source for v in got["cup"].views] == ["taught", "learned"]
        for label in want:
            assert all(np.array_equal(x, y) for x, y in zip(want[label].crops, got[label].crops, strict=True))
            assert [v.created_unix for v in want[label].views] == [v.created_unix for v in got[label].views]
        assert sorted(v.tolist() for v in dst.view_embeddings("img").values()) == [[2.0] * 5, [3.0] * 5]
        assert dst.check() == []
    # an export written before views existed (version 1: no "views" in the pair files)
    old = tmp_path / "old"
    shutil.copytree(tmp_path / "out", old)
    index = json.loads((old / "index.json").read_text())
    index["version"] = 1
    (old / "index.json").write_text(json.dumps(index))
    for meta_path in old.glob("pair-*.json"):
        meta = json.loads(meta_path.read_text())
        del meta["views"]
        meta_path.write_text(json.dumps(meta))
    with Memory(tmp_path / "dst1.sqlite3") as dst:
        assert len(dst.import_(old)) == 2 and dst.view_count() == 0
    # a view file that does not match its checksum makes the whole import fail, storing nothing
    bad = tmp_path / "bad"
    shutil.copytree(tmp_path / "out", bad)
    next(bad.glob("pair-*-view-*.png")).write_bytes(encode_png(crops[3]))
    with Memory(tmp_path / "dst2.sqlite3") as dst:
        with pytest.raises(MemoryInputError, match="checksum"):
            dst.import_(bad)
        assert len(dst) == 0


def test_memory_check_and_list_on_an_upgraded_file(tmp_path: Path, capsys) -> None:
    path = fixture_copy(tmp_path)
    assert main(["memory", "check", "--db", str(path)]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert out == [{"ok": True, "pairs": 4, "views": 4, "schema_version": 2, "path": str(path)}]
    with Memory(path) as mem:
        mem.add_view(2, grey(5))
    assert main(["memory", "list", "--db", str(path)]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["pair_id"], r["views"], r["learned_views"]) for r in rows] == [(1, 1, 0), (2, 2, 1), (3, 1, 0), (5, 1, 0)]
