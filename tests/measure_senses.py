"""Measure the senses (not a test; numbers for docs/senses.md): python tests/measure_senses.py

- VAD boundary error: espeak-ng words in several voices, 0.6-1.2 s of faint noise between them,
  endpointed with pre/post-roll 0 (so the boundaries are the VAD's own), against the true spans;
- contour-finder recall at IoU >= 0.5 on 40 plain and 40 textured/shadowed drawn scenes.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from drawn_scenes import scene  # noqa: E402
from speech_fixtures import compose, espeak  # noqa: E402

from edge.candidates import CandidateSettings, iou, make_finder  # noqa: E402
from edge.vad import Endpointer, VadSettings  # noqa: E402

WORDS = ["apple", "banana", "scissors", "cup", "telephone", "shoe", "kettle", "spoon", "hat", "window"]
VOICES = ["en-us", "en-gb", "en-us+f3", "en-us+m7"]


def vad_errors() -> None:
    rng = np.random.default_rng(0)
    start_err, end_err, missed, extra = [], [], 0, 0
    with tempfile.TemporaryDirectory() as d:
        for voice in VOICES:
            words = [espeak(w, Path(d) / f"{voice}_{w}.wav", voice=voice) for w in WORDS]
            parts: list = [0.5]
            for w in words:
                parts += [w, float(rng.uniform(0.6, 1.2))]
            spans = compose(parts, Path(d) / f"{voice}.wav", seed=1)
            found = Endpointer(VadSettings(pre_roll_ms=0, post_roll_ms=0, min_utterance_ms=0)).segment_wav(Path(d) / f"{voice}.wav")
            extra += max(0, len(found) - len(spans))
            for a, b in spans:
                hits = [u for u in found if u.start_s < b and u.end_s > a]
                if len(hits) != 1:
                    missed += 1
                    continue
                start_err.append(hits[0].start_s - a)
                end_err.append(hits[0].end_s - b)
    s, e = np.array(start_err) * 1000, np.array(end_err) * 1000
    print(f"VAD boundaries over {len(VOICES) * len(WORDS)} words ({len(VOICES)} espeak-ng voices), pre/post-roll 0:")
    print(f"  start error ms: mean {s.mean():+.0f}, mean |.| {np.abs(s).mean():.0f}, max |.| {np.abs(s).max():.0f}")
    print(f"  end error ms:   mean {e.mean():+.0f}, mean |.| {np.abs(e).mean():.0f}, max |.| {np.abs(e).max():.0f}")
    print(f"  words missed or split: {missed}, extra utterances: {extra}")


def contour_recall(n: int = 40) -> None:
    finder = make_finder(CandidateSettings())
    for textured in (False, True):
        hits = total = extra = 0
        elapsed = 0.0
        for seed in range(n):
            image, boxes = scene(seed, textured)
            t = time.perf_counter()
            found = [c.box for c in finder.find(image)]
            elapsed += time.perf_counter() - t
            hits += sum(any(iou(b, f) >= 0.5 for f in found) for b in boxes)
            total += len(boxes)
            extra += sum(not any(iou(b, f) >= 0.5 for b in boxes) for f in found)
        kind = "textured/shadowed" if textured else "plain"
        print(f"contours on {n} {kind} 640x480 scenes: recall@IoU0.5 {hits}/{total} = {hits / total:.3f}, "
              f"{extra} unmatched candidates, {1000 * elapsed / n:.1f} ms/frame")


if __name__ == "__main__":
    vad_errors()
    contour_recall()
