"""The memory file: round trips, damaged and foreign files, crash safety, concurrent access."""
from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge.memory import (
    APPLICATION_ID,
    Memory,
    MemoryError_,
    MemoryFileError,
    MemoryInputError,
    MemorySettings,
    SCHEMA_VERSION,
    decode_wav,
)

ROOT = Path(__file__).resolve().parents[1]


def make_pair(seed: int, samples: int = 8000, side: int = 48) -> tuple[np.ndarray, np.ndarray]:
    """Random int16 audio and an RGB crop (random, so any byte change would show)."""
    rng = np.random.default_rng(seed)
    pcm = rng.integers(-32768, 32767, samples, dtype=np.int16, endpoint=True)
    crop = rng.integers(0, 255, (side, side + 7, 3), dtype=np.uint8, endpoint=True)
    return pcm, crop


def teach_seed(mem: Memory, seed: int, **kwargs) -> int:
    """Teach the pair made from ``seed``."""
    pcm, crop = make_pair(seed, **kwargs)
    return mem.teach(pcm, 16000, crop)


def test_teach_list_forget_label_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "state" / "memory.sqlite3"
    with Memory(path) as mem:
        pcm1, crop1 = make_pair(1)
        pcm2, crop2 = make_pair(2, samples=123, side=5)
        grey = np.arange(30 * 20, dtype=np.uint8).reshape(30, 20)
        id1 = mem.teach(pcm1, 16000, crop1, label="cup")
        id2 = mem.teach(pcm2, 8000, crop2)
        id3 = mem.teach(pcm1, 16000, grey, label="  ")
        assert len({id1, id2, id3}) == 3
        mem.label(id2, "red ball")
        assert mem.forget(id1) is True
        assert mem.forget(id1) is False
        with pytest.raises(MemoryInputError, match="no pair"):
            mem.label(id1, "gone")
        id4 = mem.teach(pcm1, 16000, crop1)
        assert id4 > id3  # ids of forgotten pairs are never handed out again

    with Memory(path) as mem:  # reopened: everything came from the file
        pairs = {p.pair_id: p for p in mem.pairs()}
        assert sorted(pairs) == [id2, id3, id4]
        assert pairs[id2].label == "red ball" and pairs[id3].label is None
        assert pairs[id2].sample_rate_hz == 8000
        assert np.array_equal(pairs[id2].audio_pcm, pcm2) and pairs[id2].audio_pcm.dtype == np.int16
        assert np.array_equal(pairs[id2].crop, crop2) and pairs[id2].crop.dtype == np.uint8
        assert np.array_equal(pairs[id3].crop, grey)
        assert np.array_equal(pairs[id4].audio_pcm, pcm1) and np.array_equal(pairs[id4].crop, crop1)
        assert mem.pair(id1) is None
        summary = pairs[id2].summary()
        assert summary["audio_ms"] == pytest.approx(1000 * 123 / 8000, abs=0.1)
        json.dumps(summary)
        assert mem.check() == []


def test_embeddings_are_kept_per_encoder_with_their_shape(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    with Memory(tmp_path / "m.sqlite3") as mem:
        pcm, crop = make_pair(3)
        dtw = rng.standard_normal((57, 39)).astype(np.float32)
        vec = rng.standard_normal(128)  # float64 in, float32 out
        a = mem.teach(pcm, 16000, crop, embeddings={"dtw:mfcc39": dtw, "img:abc123": vec})
        b = mem.teach(pcm, 16000, crop, embeddings={"dtw:mfcc39": dtw[:10]})
        mem.set_embedding(b, "img:abc123", vec * 2)
        mem.set_embedding(b, "img:abc123", vec * 3)  # replaces
        assert sorted(mem.embeddings("dtw:mfcc39")) == [a, b]
        assert np.array_equal(mem.embeddings("dtw:mfcc39")[a], dtw)
        assert mem.embeddings("dtw:mfcc39")[b].shape == (10, 39)
        img = mem.embeddings("img:abc123")
        assert img[a].dtype == np.float32 and np.allclose(img[a], vec.astype(np.float32))
        assert np.allclose(img[b], (vec * 3).astype(np.float32))
        assert mem.embeddings("img:other") == {}
        assert mem.encoder_ids() == {a: ["dtw:mfcc39", "img:abc123"], b: ["dtw:mfcc39", "img:abc123"]}
        mem.forget(a)
        assert sorted(mem.embeddings("dtw:mfcc39")) == [b]  # embeddings go with their pair
        with pytest.raises(MemoryInputError, match="no pair"):
            mem.set_embedding(a, "img:abc123", vec)
        with pytest.raises(MemoryInputError, match="finite"):
            mem.set_embedding(b, "img:abc123", np.array([1.0, np.nan]))


@pytest.mark.parametrize(
    "audio, rate, crop, message",
    [
        (np.zeros(10, np.float32), 16000, np.zeros((4, 4, 3), np.uint8), "int16"),
        (np.zeros(0, np.int16), 16000, np.zeros((4, 4, 3), np.uint8), "no samples"),
        (np.zeros(10, np.int16), 0, np.zeros((4, 4, 3), np.uint8), "sample rate"),
        (np.zeros(10, np.int16), 16000, np.zeros((4, 4, 4), np.uint8), "crop"),
        (np.zeros(10, np.int16), 16000, np.zeros((0, 4, 3), np.uint8), "empty"),
    ],
)
def test_bad_pairs_are_refused_and_nothing_is_stored(tmp_path: Path, audio, rate, crop, message) -> None:
    with Memory(tmp_path / "m.sqlite3") as mem:
        with pytest.raises(MemoryInputError, match=message):
            mem.teach(audio, rate, crop)
        assert len(mem) == 0


def test_export_import_round_trip_is_bit_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    originals = {}
    with Memory(tmp_path / "a.sqlite3") as src:
        for seed in range(4):
            pcm, crop = make_pair(seed)
            emb = {"dtw:x": rng.standard_normal((seed + 3, 39)).astype(np.float32)}
            pid = src.teach(pcm, 16000, crop, label=f"thing {seed}" if seed % 2 else None, embeddings=emb)
            originals[pid] = (pcm, crop, emb["dtw:x"], f"thing {seed}" if seed % 2 else None)
        created = {p.pair_id: p.created_unix for p in src.pairs()}
        assert src.export(tmp_path / "export") == 4
        with pytest.raises(MemoryInputError, match="empty directory"):
            src.export(tmp_path / "export")
    files = sorted(p.name for p in (tmp_path / "export").iterdir())
    assert files == ["index.json"] + sorted(f"pair-{i:06d}.{ext}" for i in originals for ext in ("json", "png", "wav"))
    # The exported files are plain wav and png that other tools read.
    first = min(originals)
    pcm, rate = decode_wav((tmp_path / "export" / f"pair-{first:06d}.wav").read_bytes(), "test")
    assert rate == 16000 and np.array_equal(pcm, originals[first][0])

    with Memory(tmp_path / "b.sqlite3") as dst:
        new_ids = dst.import_(tmp_path / "export")
        assert len(new_ids) == 4
        assert dst.import_(tmp_path / "export") == []  # importing again adds nothing
        got = dst.pairs()
        embs = dst.embeddings("dtw:x")
        for old_id, new in zip(sorted(originals), got):
            pcm, crop, emb, label = originals[old_id]
            assert np.array_equal(new.audio_pcm, pcm) and np.array_equal(new.crop, crop)
            assert new.label == label and new.created_unix == created[old_id]
            assert np.array_equal(embs[new.pair_id], emb)
        assert dst.check() == []


def test_import_of_a_damaged_export_changes_nothing(tmp_path: Path) -> None:
    with Memory(tmp_path / "a.sqlite3") as src:
        for seed in range(3):
            teach_seed(src, seed)
        src.export(tmp_path / "export")
    victim = sorted((tmp_path / "export").glob("*.png"))[-1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF
    victim.write_bytes(bytes(data))
    with Memory(tmp_path / "b.sqlite3") as dst:
        teach_seed(dst, 10)
        with pytest.raises(MemoryInputError, match="checksum"):
            dst.import_(tmp_path / "export")
        assert len(dst) == 1  # all or nothing
        with pytest.raises(MemoryInputError, match="index.json"):
            dst.import_(tmp_path)


def _snapshot(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in path.parent.iterdir() if p.is_file()}


@pytest.mark.parametrize(
    "content", [b"", os.urandom(4096), b"SQLite format 3\x00" + os.urandom(2000)], ids=["empty", "random", "magic-then-random"]
)
def test_garbage_file_gives_a_clear_error_and_is_not_modified(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "memory.sqlite3"
    path.write_bytes(content)
    before = _snapshot(path)
    with pytest.raises(MemoryFileError, match=str(path)):
        Memory(path)
    assert _snapshot(path) == before


def test_truncated_file_gives_a_clear_error_and_is_not_modified(tmp_path: Path) -> None:
    path = tmp_path / "memory.sqlite3"
    with Memory(path) as mem:
        for seed in range(6):
            teach_seed(mem, seed, samples=16000)
    assert not Path(f"{path}-wal").exists()  # a clean close folds the log into the file
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    before = _snapshot(path)
    with pytest.raises(MemoryFileError, match=f"{path}.*damaged"):
        Memory(path)
    assert _snapshot(path) == before


def test_foreign_sqlite_file_gives_a_clear_error_and_is_not_modified(tmp_path: Path) -> None:
    path = tmp_path / "memory.sqlite3"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE moz_places (id INTEGER PRIMARY KEY, url TEXT)")
    con.execute("INSERT INTO moz_places (url) VALUES ('https://example.org')")
    con.commit()
    con.close()
    before = _snapshot(path)
    with pytest.raises(MemoryFileError, match=f"{path}.*another program.*moz_places"):
        Memory(path)
    assert _snapshot(path) == before


def test_file_from_a_newer_showsay_is_refused_and_not_modified(tmp_path: Path) -> None:
    path = tmp_path / "memory.sqlite3"
    Memory(path).close()
    con = sqlite3.connect(path)
    con.execute("PRAGMA user_version=99")
    con.close()
    before = _snapshot(path)
    with pytest.raises(MemoryFileError, match="newer showsay"):
        Memory(path)
    assert _snapshot(path) == before


def test_new_file_is_marked_as_ours_and_missing_file_is_not_created_on_request(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "dir" / "memory.sqlite3"
    with pytest.raises(MemoryFileError, match="no memory file"):
        Memory(path, create=False)
    assert not path.exists()
    Memory.from_settings(MemorySettings(state_dir=str(path.parent), db_name=path.name)).close()
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA application_id").fetchone()[0] == APPLICATION_ID
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()
    assert sorted(p.name for p in path.parent.iterdir()) == ["memory.sqlite3"]  # no temporary left behind


def test_check_reports_a_flipped_byte_inside_a_stored_crop(tmp_path: Path) -> None:
    path = tmp_path / "memory.sqlite3"
    with Memory(path) as mem:
        keep = teach_seed(mem, 1)
        bad = teach_seed(mem, 2)
    con = sqlite3.connect(path)  # damage the blob through SQLite: the b-trees stay valid
    png = bytearray(con.execute("SELECT crop_png FROM pairs WHERE pair_id=?", (bad,)).fetchone()[0])
    png[100] ^= 0x01
    con.execute("UPDATE pairs SET crop_png=? WHERE pair_id=?", (bytes(png), bad))
    con.commit()
    con.close()
    with Memory(path) as mem:
        problems = mem.check()
        assert len(problems) == 1 and f"pair {bad}" in problems[0] and "checksum" in problems[0]
        assert [p.pair_id for p in mem.pairs()] == [keep]  # the damaged pair is left out, the rest load


CHILD = r"""
import sys
import numpy as np
from edge.memory import Memory
mem = Memory(sys.argv[1])
rng = np.random.default_rng(int(sys.argv[2]))
print("ready", flush=True)
while True:
    seed = int(rng.integers(1 << 30))
    r = np.random.default_rng(seed)
    pcm = r.integers(-32768, 32767, int(r.integers(800, 24000)), dtype=np.int16)
    crop = r.integers(0, 256, (int(r.integers(8, 96)), int(r.integers(8, 96)), 3), dtype=np.uint8)
    emb = r.standard_normal((int(r.integers(5, 60)), 39)).astype(np.float32)
    pair_id = mem.teach(pcm, 16000, crop, label=str(seed), embeddings={"dtw": emb})
    sys.stdout.write(f"{pair_id} {seed}\n")  # one write: print() writes its parts separately when unbuffered
    sys.stdout.flush()
"""


def _expected(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r = np.random.default_rng(seed)
    pcm = r.integers(-32768, 32767, int(r.integers(800, 24000)), dtype=np.int16)
    crop = r.integers(0, 256, (int(r.integers(8, 96)), int(r.integers(8, 96)), 3), dtype=np.uint8)
    emb = r.standard_normal((int(r.integers(5, 60)), 39)).astype(np.float32)
    return pcm, crop, emb


def _read_line(proc: subprocess.Popen, deadline: float) -> str:
    """One line of the child's output, failing the test if none comes before ``deadline``."""
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout=max(0.0, deadline - time.monotonic()))
    if reader.is_alive():
        proc.kill()
        pytest.fail("the teaching child stopped printing")
    return result[0]


def test_acknowledged_pairs_survive_kill_9(tmp_path: Path) -> None:
    """A child teaches in a loop, printing each id after teach() returned; SIGKILL at random moments."""
    path = tmp_path / "memory.sqlite3"
    rng = random.Random(1234)
    acked: dict[int, int] = {}
    rounds = int(os.environ.get("SHOWSAY_KILL_ROUNDS", "6"))  # raise for a longer soak
    for round_no in range(rounds):
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(path), str(round_no)],
            cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
        try:
            deadline = time.monotonic() + 60
            assert _read_line(proc, deadline).strip() == "ready"
            kill_after = rng.uniform(0.02, 0.4)  # seconds of teaching before the kill
            stop_at = time.monotonic() + kill_after
            while time.monotonic() < stop_at:
                line = _read_line(proc, deadline)
                if not line:
                    break
                pair_id, seed = map(int, line.split())
                acked[pair_id] = seed
            time.sleep(rng.uniform(0, 0.005))  # land anywhere inside the next teach()
            os.kill(proc.pid, signal.SIGKILL)
            # Read the rest through the same text wrapper: communicate() reads the raw pipe and would
            # miss lines that readline() already pulled into the wrapper's buffer.
            rest = proc.stdout.read()
            proc.wait(timeout=30)
            # the last piece is "" after a whole line, or a line the kill cut short: not an acknowledgement
            for line in rest.split("\n")[:-1]:  # acknowledged before the kill, read after it
                pair_id, seed = map(int, line.split())
                acked[pair_id] = seed
            assert proc.returncode == -signal.SIGKILL
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    assert len(acked) >= rounds
    with Memory(path) as mem:
        assert mem.check() == []
        stored = {p.pair_id: p for p in mem.pairs()}
        embs = mem.embeddings("dtw")
        missing = sorted(set(acked) - set(stored))
        assert not missing, f"acknowledged pairs lost after kill -9: {missing}"
        for pair_id, seed in acked.items():
            pcm, crop, emb = _expected(seed)
            assert stored[pair_id].label == str(seed)
            assert np.array_equal(stored[pair_id].audio_pcm, pcm)
            assert np.array_equal(stored[pair_id].crop, crop)
            assert np.array_equal(embs[pair_id], emb)
        # At most one unacknowledged pair per round can exist (committed, killed before printing).
        unacknowledged = set(stored) - set(acked)
        assert len(unacknowledged) <= rounds
    print(f"kill -9 rounds: {rounds}, acknowledged pairs: {len(acked)}, committed but unacknowledged: {len(unacknowledged)}")


def test_reader_sees_whole_pairs_while_a_writer_writes(tmp_path: Path) -> None:
    path = tmp_path / "memory.sqlite3"
    writer = Memory(path)
    reader = Memory(path)  # a second connection, as the memory CLI would have
    stop = threading.Event()
    errors: list[BaseException] = []
    seen_counts: list[int] = []

    def read_loop() -> None:
        try:
            while not stop.is_set():
                pairs = reader.pairs()
                for p in pairs:
                    pcm, crop = make_pair(int(p.label), samples=4000, side=24)
                    assert np.array_equal(p.audio_pcm, pcm) and np.array_equal(p.crop, crop)
                seen_counts.append(len(pairs))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=read_loop)
    thread.start()
    try:
        for seed in range(40):
            pcm, crop = make_pair(seed, samples=4000, side=24)
            writer.teach(pcm, 16000, crop, label=str(seed))
            if seed % 10 == 0:
                writer.forget(writer.teach(pcm, 16000, crop, label=str(seed)))
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
    assert not errors, errors
    assert len(seen_counts) >= 2  # the reader read while the writer wrote, and only ever saw whole pairs
    assert len(reader.pairs()) == 40
    writer.close()
    reader.close()


def test_a_write_blocked_by_another_process_fails_cleanly_and_stores_nothing(tmp_path: Path) -> None:
    path = tmp_path / "memory.sqlite3"
    with Memory(path, busy_timeout_ms=100) as mem:
        teach_seed(mem, 1)
        other = sqlite3.connect(path, isolation_level=None)  # e.g. a memory CLI mid-import
        other.execute("BEGIN IMMEDIATE")
        started = time.monotonic()
        with pytest.raises(MemoryError_, match=f"{path}: cannot write"):
            teach_seed(mem, 2)
        assert time.monotonic() - started < 5
        other.execute("ROLLBACK")
        other.close()
        assert len(mem) == 1
        teach_seed(mem, 3)  # works again once the other writer is gone
        assert len(mem) == 2 and mem.check() == []


def test_file_marked_as_ours_with_a_wrong_schema_is_refused_and_not_modified(tmp_path: Path) -> None:
    path = tmp_path / "memory.sqlite3"
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA application_id={APPLICATION_ID}")
    con.execute("PRAGMA user_version=1")
    con.execute("CREATE TABLE pairs (x INTEGER)")
    con.execute("CREATE TABLE embeddings (y INTEGER)")
    con.commit()
    con.close()
    before = _snapshot(path)
    with pytest.raises(MemoryFileError, match=f"{path}.*'pairs' lacks columns"):
        Memory(path)
    assert _snapshot(path) == before
