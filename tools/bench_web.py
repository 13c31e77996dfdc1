"""The operator's page on this CPU: first paint, live-view frame rate, and what an open page costs the daemon.

The whole daemon runs in this process as ``showsay bench-idle`` runs it (a silent real-time audio
source, the bundled video looped as a 15 fps camera, the control socket) with the page on; Debian's
headless Chromium (another process) opens it. Rounds alternate "no page" (the browser shows
about:blank) and "page open, nobody touching it"; each phase measures this process's CPU time over
``--seconds`` (getrusage, every thread), so the two are compared in the same run under the same
load. The page's own counters give the frames it displayed (``data-frames-shown``) and the paint
timings (Performance API: first-contentful-paint, and the mark set when the first live frame is
shown). Needs the dev extra (selenium) and chromium + chromium-driver.

    python tools/bench_web.py --seconds 60 --rounds 2 --json out/bench_web.json

``--demo-rounds N`` instead runs ``showsay demo`` 2N times, alternately without the page and with it
open in Chromium from the start, and reports the answers' latency (end of utterance to answer) and
whether all 5 were as expected: what a watching browser costs the controller itself.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.button import NoButton  # noqa: E402
from edge.camera import Camera  # noqa: E402
from edge.commands.bench_latency import SAMPLES_DIR, SilentSource  # noqa: E402
from edge.config import load_config  # noqa: E402
from edge.service import Daemon, EventRelay  # noqa: E402
from tests.browser import chromium  # noqa: E402


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(seconds: float) -> tuple[float, float]:
    """(CPU % of one core, wall seconds) of this process over ``seconds`` of sleeping."""
    c0, t0 = cpu_s(), time.monotonic()
    time.sleep(seconds)
    c1, t1 = cpu_s(), time.monotonic()
    return 100.0 * (c1 - c0) / (t1 - t0), t1 - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", help="config to run (default: built-in defaults: the shipped encoders)")
    parser.add_argument("--seconds", type=float, default=60.0, help="length of each measured phase, s")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of (no page, page open)")
    parser.add_argument("--fps", type=float, default=15.0, help="camera frame rate")
    parser.add_argument("--demo-rounds", type=int, default=0, help="measure the demo's answers with and without the page instead")
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    if args.demo_rounds:
        return demo_answers(args)

    cfg = load_config(args.config)
    with tempfile.TemporaryDirectory(prefix="showsay-bench-web-") as tmp:
        cfg = dataclasses.replace(
            cfg,
            memory=dataclasses.replace(cfg.memory, state_dir=tmp),
            control=dataclasses.replace(cfg.control, socket_path=str(Path(tmp) / "control.sock")),
            camera=dataclasses.replace(cfg.camera, source=str(SAMPLES_DIR / "scene.mp4"), fps=args.fps, loop_file=True),
            web=dataclasses.replace(cfg.web, enabled=True, port=0),
        )
        relay = EventRelay()
        camera = Camera(cfg.camera, on_event=relay)
        daemon = Daemon(cfg, audio=SilentSource(cfg.microphone.frame_ms), frames=camera, button=NoButton(), relay=relay)
        daemon.start()
        browser = chromium(Path(tmp) / "profile", Path(tmp) / "chromedriver.log")
        url = f"http://127.0.0.1:{daemon.web.port}/"
        rounds = []
        try:
            time.sleep(3.0)  # models loaded, first frames in, the browser idle
            for r in range(args.rounds):
                browser.get("about:blank")
                time.sleep(2.0)
                idle_cpu, idle_wall = measure(args.seconds)
                renders0, finder0 = daemon.web.live.renders, daemon.web.live.finder_runs
                browser.get(url)
                deadline = time.monotonic() + 20
                first_frame = None
                while time.monotonic() < deadline and not first_frame:
                    first_frame = browser.execute_script("const m = performance.getEntriesByName('showsay-first-frame'); return m.length ? m[0].startTime : null;")
                    time.sleep(0.05)
                paint = browser.execute_script("return Object.fromEntries(performance.getEntriesByType('paint').map(e => [e.name, e.startTime]));")
                nav = browser.execute_script("const n = performance.getEntriesByType('navigation')[0]; return n ? n.domContentLoadedEventEnd : null;")
                time.sleep(2.0)
                shown0 = int(browser.execute_script("return document.getElementById('live').dataset.framesShown || '0'"))
                renders1 = daemon.web.live.renders
                page_cpu, page_wall = measure(args.seconds)
                shown1 = int(browser.execute_script("return document.getElementById('live').dataset.framesShown || '0'"))
                renders2, finder2 = daemon.web.live.renders, daemon.web.live.finder_runs
                rounds.append({
                    "round": r + 1,
                    "cpu_percent_no_page": round(idle_cpu, 2),
                    "cpu_percent_page_open": round(page_cpu, 2),
                    "cpu_points_added_by_the_page": round(page_cpu - idle_cpu, 2),
                    "first_contentful_paint_ms": round(paint.get("first-contentful-paint", float("nan")), 1),
                    "dom_content_loaded_ms": None if nav is None else round(nav, 1),
                    "first_live_frame_ms": None if first_frame is None else round(first_frame, 1),
                    "live_fps_shown": round((shown1 - shown0) / page_wall, 2),
                    "frames_drawn_per_s": round((renders2 - renders1) / page_wall, 2),
                    "finder_runs": finder2 - finder0,
                    "load_average_1min": round(os.getloadavg()[0], 2),
                })
                print(json.dumps(rounds[-1]), flush=True)
            status = daemon.controller.status()
        finally:
            browser.quit()
            daemon.close()
    result = {
        "seconds_per_phase": args.seconds,
        "camera_fps": args.fps,
        "speech_encoder": status["speech_encoder"],
        "image_encoder": status["image_encoder"],
        "dropped_audio_frames": status["dropped_audio_frames"],
        "rounds": rounds,
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _one_demo(out: Path, browser, port: int | None) -> dict:
    import http.client
    import subprocess

    argv = [sys.executable, "-m", "edge", "demo", "--out", str(out)] + (["--web-port", str(port)] if port else [])
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    shown = 0
    if port:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
                conn.request("GET", "/api/status")
                conn.getresponse().read()
                conn.close()
                break
            except OSError:
                time.sleep(0.05)
        browser.get(f"http://127.0.0.1:{port}/")
    text = proc.communicate(timeout=180)[0]
    if port:
        shown = int(browser.execute_script("const i = document.getElementById('live'); return i ? (i.dataset.framesShown || '0') : '0'"))
        browser.get("about:blank")
    latencies = [e["latency_ms"] for e in map(json.loads, (out / "events.jsonl").read_text().splitlines())
                 if e["event"] in ("resolved", "unknown_word", "not_in_view")]
    verdict = [line for line in text.splitlines() if "answers as expected" in line]
    return {"page": bool(port), "answers_ms": latencies, "verdict": verdict[0].split(";")[0] if verdict else text[-300:],
            "frames_shown": shown, "exit": proc.returncode, "load_average_1min": round(os.getloadavg()[0], 2)}


def demo_answers(args: argparse.Namespace) -> int:
    rows = []
    with tempfile.TemporaryDirectory(prefix="showsay-bench-web-demo-") as tmp:
        browser = chromium(Path(tmp) / "profile", Path(tmp) / "chromedriver.log")
        try:
            browser.get("about:blank")
            for r in range(args.demo_rounds):
                for port in (None, _free_port()):
                    rows.append(_one_demo(Path(tmp) / f"demo{len(rows)}", browser, port))
                    print(json.dumps(rows[-1]), flush=True)
        finally:
            browser.quit()
    for page in (False, True):
        values = sorted(v for row in rows if row["page"] == page for v in row["answers_ms"])
        if values:
            print(f"page {'open' if page else 'closed'}: {len(values)} answers, median {values[len(values) // 2]:.1f} ms, max {values[-1]:.1f} ms; "
                  f"runs as expected: {sum(row['exit'] == 0 for row in rows if row['page'] == page)} of {sum(row['page'] == page for row in rows)}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
