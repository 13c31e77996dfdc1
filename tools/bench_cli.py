"""How long ``showsay status`` and ``showsay list`` take from the shell to the printed reply, now and at a baseline revision.

A real daemon (the baseline encoders, so it starts fast; the client's time does not depend on them)
serves a control socket in this process. Each command is run ``--runs`` times, alternating between
this checkout and the baseline (``git archive REV edge`` unpacked into a temporary folder and put
first on sys.path), so both meet the same machine load; wall time per run from process start to
exit. The console script (``.venv/bin/showsay``, what users type) is timed too.

    python tools/bench_cli.py --runs 20 --baseline main
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge.button import NoButton  # noqa: E402
from edge.camera import Camera  # noqa: E402
from edge.commands.bench_latency import SAMPLES_DIR, SilentSource  # noqa: E402
from edge.config import load_config  # noqa: E402
from edge.service import Daemon, EventRelay  # noqa: E402

RUNNER = "import sys; sys.path.insert(0, sys.argv.pop(1)); from edge.cli import main; sys.exit(main())"


def unpack(rev: str, into: Path) -> Path:
    data = subprocess.run(["git", "archive", rev, "edge"], cwd=ROOT, check=True, capture_output=True).stdout
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    return into


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    elapsed = time.perf_counter() - t0
    if result.returncode != 0 or '"ok": true' not in result.stdout:
        raise SystemExit(f"{' '.join(argv)} failed: {result.stdout}{result.stderr}")
    return elapsed


def summary(times: list[float]) -> dict:
    ordered = sorted(times)
    return {"median_s": round(statistics.median(ordered), 3), "p90_s": round(ordered[int(0.9 * (len(ordered) - 1))], 3),
            "min_s": round(ordered[0], 3), "runs": len(ordered)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="runs of each command and variant")
    parser.add_argument("--baseline", default="main", help="git revision to compare with ('' for none)")
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="showsay-bench-cli-") as tmp:
        cfg = load_config(None)
        cfg = dataclasses.replace(
            cfg,
            encoders=dataclasses.replace(cfg.encoders, speech="dtw", image="pixels"),
            memory=dataclasses.replace(cfg.memory, state_dir=tmp),
            control=dataclasses.replace(cfg.control, socket_path=str(Path(tmp) / "control.sock")),
            camera=dataclasses.replace(cfg.camera, source=str(SAMPLES_DIR / "scene.mp4"), fps=15.0, loop_file=True),
        )
        relay = EventRelay()
        daemon = Daemon(cfg, audio=SilentSource(cfg.microphone.frame_ms), frames=Camera(cfg.camera, on_event=relay),
                        button=NoButton(), relay=relay)
        daemon.start()
        variants = {"this checkout (python -c)": [sys.executable, "-c", RUNNER, str(ROOT)],
                    "the interpreter alone (python -c, no showsay)": [sys.executable, "-c", "print('\"ok\": true')"]}
        script = shutil.which("showsay", path=str(Path(sys.executable).parent))
        if script:
            variants["this checkout (console script)"] = [script]
        if args.baseline:
            base = unpack(args.baseline, Path(tmp) / "baseline")
            variants[f"{args.baseline} (python -c)"] = [sys.executable, "-c", RUNNER, str(base)]
        results: dict = {}
        try:
            time.sleep(1.0)
            for command in ("status", "list"):
                times: dict[str, list[float]] = {name: [] for name in variants}
                for _ in range(args.runs):
                    for name, prefix in variants.items():  # alternate: the same load for each
                        times[name].append(timed([*prefix, command, "--socket", cfg.control.socket_path]))
                results[command] = {name: summary(t) for name, t in times.items()}
        finally:
            daemon.close()
    results["load_average_1min"] = round(os.getloadavg()[0], 2)
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
