"""What several teaching views cost (issue 17): the teach step, the sampling while the word is said, the answer's match.

    python tools/teach_views_cost.py [--repeats 15] [--views 1,3,5] [--mirror off,on]

The real controller with the shipped encoders (speech ``default`` fused with DTW, image ``objects``) on
ONNX Runtime, the config's finder and teach region, and a real SQLite memory (fsync included) in a
temporary folder. The cup of a photograph from scikit-image's wheel (coffee.png, CC0) over a plain
table, turned a little more in each frame, stands for an object turned in hand. For each repeat and each ``teach.views``, in turn:
a press, 8 frames sampled as the controller samples them while the word is said, then the teach
step itself (``Controller._teach``: speech embedding, image embedding, choosing views, storing)
timed from the utterance's end to the committed pair. Then the answer's match (``SupportSet.resolve``
with 8 candidates) against 10 and 100 taught words with one view each and with ``N`` views each.
Medians of wall-clock times on this machine; the same run compares the settings, so read ratios.
"""
from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy: on a small shared CPU BLAS threads made matching 100x slower
import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.bench.scenes import skimage_data_dir  # noqa: E402
from edge.camera import StaticFrames  # noqa: E402
from edge.candidates import make_finder, teach_region  # noqa: E402
from edge.config import Config  # noqa: E402
from edge.daemon import Controller  # noqa: E402
from edge.encoders import load_image_encoder, load_speech_encoder  # noqa: E402
from edge.images import load_image  # noqa: E402
from edge.matching import MatchSettings, SupportSet  # noqa: E402
from edge.memory import Memory  # noqa: E402
from edge.vad import Utterance  # noqa: E402


def turning_frames(n: int, degrees_per_frame: float = 6.0) -> list[np.ndarray]:
    """A cup (the middle of coffee.png) held over a plain table, turned a little more in each frame."""
    photo = load_image(skimage_data_dir() / "coffee.png")  # (400, 600, 3)
    cup = cv2.resize(photo[40:360, 120:440], (200, 200), interpolation=cv2.INTER_AREA)
    table = (90, 80, 70)
    out = []
    for k in range(n):
        m = cv2.getRotationMatrix2D((100, 100), k * degrees_per_frame, 1.0)
        obj = cv2.warpAffine(cup, m, (200, 200), borderValue=table)
        frame = np.empty((480, 640, 3), np.uint8)
        frame[:] = table
        frame[140:340, 220:420] = obj
        out.append(frame)
    return out


def chirp(seconds: float = 0.6, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (9000 * np.sin(2 * np.pi * (250 + 700 * t / seconds) * t) * np.hanning(t.size)).astype(np.int16)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--views", default="1,3,5")
    ap.add_argument("--frames", type=int, default=8, help="crops sampled while the word is said")
    ap.add_argument("--mirror", default="on" if Config().teach.mirror_views else "off",
                    help="teach.mirror_views settings measured in turn: on, off or off,on (default: the config's)")
    args = ap.parse_args()
    mirrors = [{"on": True, "off": False}[m] for m in args.mirror.split(",")]
    counts = [(int(v), m) for v in args.views.split(",") for m in mirrors]
    cfg = Config()
    speech, image = load_speech_encoder(cfg.encoders, cfg.speech_features), load_image_encoder(cfg.encoders)
    frames_in = turning_frames(args.frames)
    pcm = chirp()
    camera = StaticFrames()
    camera.start()
    teach_ms = {n: [] for n in counts}
    sample_ms = {n: [] for n in counts}
    views_kept = {n: [] for n in counts}
    parts = {n: [] for n in counts}  # the taught event's timings_ms
    with tempfile.TemporaryDirectory() as tmp, Memory(Path(tmp) / "memory.sqlite3") as memory:
        events: list[dict] = []
        ctrl = Controller(
            speech_encoder=speech, image_encoder=image, feature_settings=cfg.speech_features, memory=memory,
            audio=None, endpointer=None, frames=camera, finder=make_finder(cfg.candidates),  # type: ignore[arg-type]
            teach_region=lambda img: teach_region(img, cfg.candidates), publish=events.append,
        )
        ctrl.embed_speech(pcm, 16000)  # warm up both sessions
        ctrl.prefetch_view()
        for _ in range(args.repeats):
            for n, m in counts:
                ctrl.teach_settings = dataclasses.replace(cfg.teach, views=n, mirror_views=m, sample_interval_ms=0.0)
                ctrl._on_press("bench")
                first = None
                for img in frames_in:
                    frame = camera.show(img)
                    first = first or frame
                    ctrl._speech_seen_s = time.monotonic()  # the endpointer hears the word
                    t0 = time.perf_counter()
                    ctrl._watch_camera(time.monotonic())
                    sample_ms[(n, m)].append(1000 * (time.perf_counter() - t0))
                utt = Utterance(pcm, 16000, first.time_s - 0.05, time.monotonic())
                t0 = time.perf_counter()
                ctrl._teach(utt)
                teach_ms[(n, m)].append(1000 * (time.perf_counter() - t0))
                taught = [e for e in events if e["event"] == "taught"][-1]
                views_kept[(n, m)].append(taught["views"])
                parts[(n, m)].append(taught["timings_ms"])
        pairs = len(memory)
        size_kb = (Path(tmp) / "memory.sqlite3").stat().st_size / 1024
    print(f"{args.repeats} teach turns per setting, {args.frames} crops sampled during each word, {pairs} pairs stored ({size_kb:.0f} KB file)\n")
    print("| teach.views | mirror_views | views kept (mean) | teach step ms, median (p90) | of it: speech embedding | image embedding | choosing views and storing | sampling ms per crop while the word is said, median |")
    print("|---|---|---|---|---|---|---|---|")
    for n, m in counts:
        t = np.asarray(teach_ms[(n, m)])
        med = {k: float(np.median([p[k] for p in parts[(n, m)]])) for k in ("speech_embedding", "image_embedding", "views_and_store")}
        print(f"| {n} | {'on' if m else 'off'} | {np.mean(views_kept[(n, m)]):.1f} | {np.median(t):.1f} ({np.percentile(t, 90):.1f}) | {med['speech_embedding']:.1f} | "
              f"{med['image_embedding']:.1f} | {med['views_and_store']:.1f} | {np.median(sample_ms[(n, m)]):.1f} |")

    rng = np.random.default_rng(0)
    print("\nThe answer's match (SupportSet.resolve, 8 candidates, speech as fused, distances only):\n")
    print("| taught words | embeddings each (views, x 2 with their mirrors) | match ms, median of 200 |")
    print("|---|---|---|")
    dim = 1280
    for words in (10, 100):
        for n in sorted({1, *(c * (2 if m else 1) for c, m in counts)}):
            s = SupportSet("cosine")
            for w in range(words):
                s.add(w, rng.standard_normal(128).astype(np.float32), rng.standard_normal((n, dim)).astype(np.float32), f"w{w}")
            cands = rng.standard_normal((8, dim)).astype(np.float32)
            query = rng.standard_normal(128).astype(np.float32)
            times = []
            for _ in range(200):
                t0 = time.perf_counter()
                s.resolve(query, cands, MatchSettings(unknown_word_distance=None))
                times.append(1000 * (time.perf_counter() - t0))
            print(f"| {words} | {n} | {np.median(times):.3f} |")


if __name__ == "__main__":
    main()
