"""Make tests/data/memory_v1.sqlite3 with the memory code of schema version 1 (main at 7b9c5e6)."""
import sys
from pathlib import Path
import numpy as np
from edge.memory import Memory, SCHEMA_VERSION
assert SCHEMA_VERSION == 1
out = Path(sys.argv[1])
out.unlink(missing_ok=True)
def make_pair(seed, samples, side):
    rng = np.random.default_rng(seed)
    pcm = rng.integers(-32768, 32767, samples, dtype=np.int16, endpoint=True)
    crop = rng.integers(0, 255, (side, side + 7, 3), dtype=np.uint8, endpoint=True)
    return pcm, crop
with Memory(out) as mem:
    ids = []
    for seed, label in ((1, "cup"), (2, None), (3, "red ball"), (4, "gone")):
        pcm, crop = make_pair(seed, 1600, 20 + seed)
        rng = np.random.default_rng(100 + seed)
        embs = {"speech-test": rng.standard_normal((12, 39)).astype(np.float32), "image-test": rng.standard_normal(64).astype(np.float32)}
        ids.append(mem.teach(pcm, 16000, crop, label=label, embeddings=embs))
    grey = np.arange(30 * 20, dtype=np.uint8).reshape(30, 20)
    pcm, _ = make_pair(5, 800, 5)
    ids.append(mem.teach(pcm, 8000, grey))
    mem.forget(ids[3])
print(ids)
