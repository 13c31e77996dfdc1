#!/usr/bin/env python3
"""Make the demo's bundled samples (edge/samples/): a synthesized session and a rendered scene video.

Everything is made here, by the project: speech by espeak-ng (GPL-3 program; its output is not
covered by its licence), objects drawn with OpenCV. Run from the repository root:

    python tools/make_samples.py            # writes edge/samples/session.wav, scene.mp4, session.json

The session: the teach button is pressed three times; after each press the object held up in front
of the camera is named once. Then the three objects lie side by side and are asked for, in the same
voice but said faster and higher (as a person repeats a word), followed by a word never taught, and
finally a request for an object that has been taken away.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.audio import read_wav, write_wav  # noqa: E402

WAV_RATE_HZ = 8000  # the features stop at 4 kHz, so 8 kHz loses nothing and halves the file
WIDTH, HEIGHT, FPS = 320, 240, 15
SURFACE_BGR = (48, 44, 40)  # a plain dark table
TEACH_VOICE = ("en-us", 145, 45)  # espeak-ng voice, words per minute, pitch 0-99
ASK_VOICE = ("en-us", 175, 60)

# (time s, what happens): presses and spoken words, and what the camera sees from when.
TEACH = [("apple", 0.8, 1.6), ("star", 5.8, 6.6), ("cube", 10.8, 11.6)]  # (word, press s, speech s)
SCENES = [  # (from s, scene): held = one object held up at the centre; table = objects left..right
    (0.0, ("held", "apple")),
    (5.0, ("held", "star")),
    (10.0, ("held", "cube")),
    (15.0, ("table", ("cube", "apple", "star"))),
    (25.0, ("table", ("star", None, "cube"))),
]
REQUESTS = [  # (word, speech s, what the demo should answer)
    ("star", 16.0, "star"),
    ("apple", 18.5, "apple"),
    ("cube", 21.0, "cube"),
    ("telephone", 23.5, "unknown_word"),
    ("apple", 26.5, "not_in_view"),
]
DURATION_S = 29.5


def say(text: str, voice: tuple[str, int, int]) -> np.ndarray:
    """Float samples at WAV_RATE_HZ of ``text`` spoken by espeak-ng."""
    name, wpm, pitch = voice
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "word.wav"
        subprocess.run(["espeak-ng", "-v", name, "-s", str(wpm), "-p", str(pitch), "-w", str(out), text], check=True)
        x = read_wav(out, WAV_RATE_HZ)
    voiced = np.flatnonzero(np.abs(x) > 0.01)
    return x[voiced[0] : voiced[-1] + 1] * (0.5 / max(1e-6, np.abs(x).max()))


def make_session() -> np.ndarray:
    rng = np.random.default_rng(0)
    audio = rng.normal(0, 10 ** (-66 / 20), int(DURATION_S * WAV_RATE_HZ)).astype(np.float32)  # faint room noise
    for word, _, at in TEACH:
        w = say(word, TEACH_VOICE)
        i = int(at * WAV_RATE_HZ)
        audio[i : i + w.size] += w
    for word, at, _ in REQUESTS:
        w = say(word, ASK_VOICE)
        i = int(at * WAV_RATE_HZ)
        audio[i : i + w.size] += w
    return audio


def draw_object(img: np.ndarray, name: str, cx: int, cy: int, size: int) -> None:
    """Draw ``name`` (apple, star or cube) centred at (cx, cy), about ``size`` pixels across (BGR)."""
    r = size // 2
    if name == "apple":
        cv2.circle(img, (cx, cy + 2), r, (40, 40, 230), -1, cv2.LINE_AA)
        cv2.circle(img, (cx + r // 4, cy + r // 4), int(r * 0.7), (30, 30, 190), -1, cv2.LINE_AA)
        cv2.ellipse(img, (cx - r // 3, cy - r // 3), (r // 5, r // 8), -30, 0, 360, (170, 170, 250), -1, cv2.LINE_AA)
        cv2.line(img, (cx, cy - r + 4), (cx + 3, cy - r - 8), (30, 60, 90), 3, cv2.LINE_AA)
        cv2.ellipse(img, (cx + 10, cy - r - 4), (9, 4), -20, 0, 360, (40, 150, 40), -1, cv2.LINE_AA)
    elif name == "star":
        angles = np.deg2rad(np.arange(10) * 36 - 90)
        radii = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
        pts = np.stack([cx + radii * np.cos(angles), cy + radii * np.sin(angles)], 1).astype(np.int32)
        cv2.fillPoly(img, [pts], (20, 200, 245), cv2.LINE_AA)
        cv2.polylines(img, [pts], True, (10, 120, 200), 2, cv2.LINE_AA)
    elif name == "cube":
        s, d = int(size * 0.62), int(size * 0.25)
        x0, y0 = cx - (s + d) // 2, cy - (s - d) // 2
        front = np.array([[x0, y0], [x0 + s, y0], [x0 + s, y0 + s], [x0, y0 + s]], np.int32)
        top = np.array([[x0, y0], [x0 + d, y0 - d], [x0 + s + d, y0 - d], [x0 + s, y0]], np.int32)
        side = np.array([[x0 + s, y0], [x0 + s + d, y0 - d], [x0 + s + d, y0 + s - d], [x0 + s, y0 + s]], np.int32)
        cv2.fillPoly(img, [front], (200, 170, 60), cv2.LINE_AA)
        cv2.fillPoly(img, [top], (240, 215, 130), cv2.LINE_AA)
        cv2.fillPoly(img, [side], (160, 120, 30), cv2.LINE_AA)
    else:
        raise ValueError(f"unknown object {name!r}")


def render(t: float) -> np.ndarray:
    """The frame (BGR) at ``t`` seconds."""
    img = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    img[:] = SURFACE_BGR
    kind, what = [s for start, s in SCENES if start <= t][-1]
    if kind == "held":
        # a hand holds the object up: it sways a little, fast at the start (motion blur), then steady
        since = t - [start for start, _ in SCENES if start <= t][-1]
        sway = 6.0 * np.sin(2 * np.pi * 0.7 * t) * (1.0 if since < 1.0 else 0.3)
        draw_object(img, what, WIDTH // 2 + int(sway), HEIGHT // 2, 90)
        if since < 1.0:
            k = np.zeros((1, 9), np.float32)
            k[0, :] = 1 / 9
            img = cv2.filter2D(img, -1, k)
    else:
        for slot, name in enumerate(what):
            if name:
                draw_object(img, name, int(WIDTH * (slot + 0.5) / 3), HEIGHT // 2 + 10, 62)
    return img


def make_video(path: Path) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (WIDTH, HEIGHT))
    if not writer.isOpened():
        raise SystemExit(f"{path}: OpenCV cannot write mp4v video here")
    for i in range(int(DURATION_S * FPS)):
        writer.write(render(i / FPS))
    writer.release()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / "edge" / "samples"), help="output directory")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_wav(out / "session.wav", make_session(), WAV_RATE_HZ)
    make_video(out / "scene.mp4")
    script = {
        "about": "what happens in session.wav and scene.mp4 (times in seconds from the start); made by tools/make_samples.py",
        "duration_s": DURATION_S,
        "teach": [{"press_s": press, "speech_s": at, "word": word} for word, press, at in TEACH],
        "requests": [{"speech_s": at, "word": word, "expected": expected} for word, at, expected in REQUESTS],
        "scenes": [{"from_s": start, "kind": kind, "objects": [what] if kind == "held" else list(what)} for start, (kind, what) in SCENES],
        "voices": {"teach": list(TEACH_VOICE), "ask": list(ASK_VOICE)},
    }
    (out / "session.json").write_text(json.dumps(script, indent=2) + "\n")
    for name in ("session.wav", "scene.mp4", "session.json"):
        print(f"{out / name}: {(out / name).stat().st_size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
