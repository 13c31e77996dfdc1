"""Time the SQLite memory (docs/memory-control.md, "Measured"): teach(), the file's size, opening, reading, checking.

300 pairs of 1 s random 16 kHz audio, a 128x128 random RGB crop, a (100, 39) feature matrix and a
512-d embedding each, taught one by one (each teach() commits and fsyncs), then the file reopened.

    python tools/bench_memory.py DIR [--pairs 300]
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from edge.memory import Memory


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dir", type=Path, help="an empty folder on the disk to measure (the memory file is made there)")
    p.add_argument("--pairs", type=int, default=300, help="pairs to teach")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    path = args.dir / "memory.sqlite3"
    if path.exists():
        p.error(f"{path} exists; give an empty folder")
    args.dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    teach_ms = []
    with Memory(path) as memory:
        for _ in range(args.pairs):
            audio = rng.integers(-8000, 8000, 16000, dtype=np.int16)
            crop = rng.integers(0, 256, (128, 128, 3), dtype=np.uint8)
            embeddings = {"frames": rng.standard_normal((100, 39)).astype(np.float32),
                          "vector": rng.standard_normal(512).astype(np.float32)}
            t0 = time.perf_counter()
            memory.teach(audio, 16000, crop, embeddings=embeddings)
            teach_ms.append(1000 * (time.perf_counter() - t0))
    t0 = time.perf_counter()
    memory = Memory(path, check_on_open=True)
    open_ms = 1000 * (time.perf_counter() - t0)
    t0 = time.perf_counter()
    pairs = memory.pairs()
    pairs_ms = 1000 * (time.perf_counter() - t0)
    t0 = time.perf_counter()
    problems = memory.check()
    check_ms = 1000 * (time.perf_counter() - t0)
    memory.close()
    t = np.array(teach_ms)
    print(f"teach(): median {np.median(t):.1f} ms, p95 {np.percentile(t, 95):.1f} ms, max {t.max():.1f} ms (including the fsync)")
    print(f"file: {path.stat().st_size / 1e6:.1f} MB for {len(pairs)} pairs; open with quick_check {open_ms:.0f} ms; "
          f"pairs() {pairs_ms:.0f} ms; check() {check_ms:.0f} ms ({len(problems)} problems)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
