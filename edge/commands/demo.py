"""``showsay demo``: the real daemon pipeline on the bundled session (no microphone, camera or shared data).

The session wav plays through :class:`~edge.hearing.WavFileSource` in real time into the
endpointer, the video plays through :class:`~edge.camera.Camera`, the teach button is pressed at
the scripted times, the memory lives in a temporary state directory and the control socket is
served as in ``showsay run``. The demo labels each taught pair through that socket (as a user would
with ``showsay label``), prints what was learned and how each request was answered, and writes the
annotated answer images. Exit status 0 when every answer is the one the session script expects.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import queue
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

SAMPLES_DIR = Path(__file__).resolve().parents[1] / "samples"
ANSWERS = ("resolved", "unknown_word", "not_in_view")

log = logging.getLogger(__name__)


class ScriptedButton:
    """Presses at given times (seconds after :meth:`start`), from its own thread, like a person would."""

    def __init__(self, press_times_s: list[float]) -> None:
        self.press_times_s = sorted(press_times_s)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, on_press: Callable[[], None]) -> None:
        """Begin the schedule."""
        t0 = time.monotonic()

        def schedule() -> None:
            for at in self.press_times_s:
                if self._stop.wait(max(0.0, t0 + at - time.monotonic())):
                    return
                on_press()

        self._thread = threading.Thread(target=schedule, name="scripted-button", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop pressing."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2.0)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the subcommand."""
    p = sub.add_parser("demo", help="run the real daemon pipeline on the bundled session: teach 3 words, then ask (about 30 s)")
    p.add_argument("--out", default="out/demo", help="directory for the annotated answer images and events.jsonl (default out/demo)")
    p.add_argument("--samples", default=str(SAMPLES_DIR), help="directory with session.wav, scene.mp4, session.json and demo.yaml")
    p.add_argument("--config", default=None, help="config to run with instead of the samples' demo.yaml (encoders, thresholds)")
    p.add_argument("--web-port", type=int, metavar="PORT",
                   help="serve the operator's page on this port while the demo runs (0 = any free port; bind and token from the config's web section)")
    p.add_argument("--web-hold-s", type=float, default=0.0, metavar="S",
                   help="with --web-port: keep the daemon and its page up this long after the session ends, s")
    p.set_defaults(func=run)


class SilenceAfter:
    """An audio source that goes on with real-time silence for ``seconds`` after ``source`` ends, then ends too."""

    def __init__(self, source: Any, seconds: float, frame_ms: int, sample_rate_hz: int = 16000) -> None:
        self.source = source
        self.seconds = seconds
        self.frame_s = frame_ms / 1000.0
        self.frame_samples = sample_rate_hz * frame_ms // 1000
        self.rate = sample_rate_hz
        self.closed = False
        self._next_s: float | None = None
        self._end_s = 0.0

    @property
    def dropped_frames(self) -> int:
        """Frames the file source dropped."""
        return self.source.dropped_frames

    def start(self) -> None:
        """Start the file source."""
        self.source.start()

    def read(self, timeout_s: float) -> Any:
        """The file's next frame, then silence paced like a microphone; None on timeout or at the end."""
        from edge.hearing import AudioFrame

        if not self.source.closed:
            return self.source.read(timeout_s)
        now = time.monotonic()
        if self._next_s is None:
            self._next_s, self._end_s = now, now + self.seconds
        if self.closed or self._next_s >= self._end_s:
            self.closed = True
            return None
        wait = self._next_s + self.frame_s - now
        if wait > timeout_s:
            time.sleep(max(0.0, timeout_s))
            return None
        time.sleep(max(0.0, wait))
        frame = AudioFrame(np.zeros(self.frame_samples, np.int16), self._next_s, self.rate)
        self._next_s += self.frame_s
        return frame

    def close(self) -> None:
        """End now."""
        self.source.close()
        self.closed = True


def demo_config(path: Path, state_dir: Path, out: Path, samples: Path, web_port: int | None = None) -> Any:
    """The demo's config with its state, socket, answer images and camera pointed at the demo's files (and the page on, given a port)."""
    from edge.config import load_config

    cfg = load_config(path)
    web = cfg.web if web_port is None else dataclasses.replace(cfg.web, enabled=True, port=web_port)
    return dataclasses.replace(
        cfg,
        memory=dataclasses.replace(cfg.memory, state_dir=str(state_dir)),
        control=dataclasses.replace(cfg.control, socket_path=str(state_dir / "control.sock")),
        answers=dataclasses.replace(cfg.answers, save_dir=str(out / "answers")),
        camera=dataclasses.replace(cfg.camera, source=str(samples / "scene.mp4"), loop_file=False),
        button=dataclasses.replace(cfg.button, kind="none"),
        web=web,
    )


def run(args: argparse.Namespace) -> int:
    """Play the session through the daemon and report."""
    from edge.camera import Camera
    from edge.config import ConfigError
    from edge.control import ControlClient
    from edge.hearing import WavFileSource
    from edge.memory import MemoryError_
    from edge.model_io import ModelError
    from edge.service import Daemon, EventRelay

    if not getattr(args, "verbose", False):  # the printed story is the output; -v shows the daemon's log too
        logging.getLogger("edge").setLevel(logging.WARNING)
    samples = Path(args.samples)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for old in (out / "answers").glob("*.jpg"):  # this run's images only
        old.unlink()
    script = json.loads((samples / "session.json").read_text())
    events: queue.Queue = queue.Queue()
    with tempfile.TemporaryDirectory(prefix="showsay-demo-") as tmp:
        daemon = None
        try:  # what `showsay run` refuses to start on (a bad config or model file) is reported, not raised
            web_port = getattr(args, "web_port", None)
            hold_s = max(0.0, getattr(args, "web_hold_s", 0.0)) if web_port is not None else 0.0
            cfg = demo_config(Path(args.config) if args.config else samples / "demo.yaml", Path(tmp), out, samples, web_port)
            relay = EventRelay()
            audio = WavFileSource(samples / "session.wav", frame_ms=cfg.microphone.frame_ms, realtime=True)
            daemon = Daemon(
                cfg,
                audio=SilenceAfter(audio, hold_s, cfg.microphone.frame_ms) if hold_s > 0 else audio,
                frames=Camera(cfg.camera, on_event=relay),
                button=ScriptedButton([t["press_s"] for t in script["teach"]]),
                listeners=[events.put],
                relay=relay,
            )
            print(f"showsay demo: {samples / 'session.wav'} ({script['duration_s']:.0f} s, played in real time) "
                  f"and {samples / 'scene.mp4'}; memory in {tmp}")
            t0 = time.monotonic()
            daemon.start()
            if daemon.web is not None:
                print(f"showsay demo: the operator's page is on http://{_url_host(cfg.web.bind)}:{daemon.web.port}/"
                      + (f" (kept up {hold_s:g} s after the session)" if hold_s > 0 else ""), flush=True)
        except (ConfigError, ModelError, MemoryError_, OSError, ValueError, RuntimeError) as exc:
            print(f"showsay demo: cannot start: {exc}", file=sys.stderr)
            if daemon is not None:
                daemon.close()
            return 1
        client = ControlClient(cfg.control.socket_path)
        taught: list[dict] = []
        answers: list[dict] = []
        with (out / "events.jsonl").open("w") as log_file:
            try:
                deadline = t0 + script["duration_s"] + 30.0 + hold_s
                while time.monotonic() < deadline:
                    try:
                        event = events.get(timeout=0.2)
                    except queue.Empty:
                        if daemon.controller.finished.is_set() and events.empty():
                            break
                        continue
                    log_file.write(json.dumps(event) + "\n")
                    _report(event, time.monotonic() - t0, script, taught, answers, client)
            finally:
                daemon.close()
    return _summary(script, taught, answers, out)


def _url_host(bind: str) -> str:
    host = bind.strip("[]")
    if host in ("", "0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


def _report(event: dict, at_s: float, script: dict, taught: list, answers: list, client: Any) -> None:
    from edge.narrate import describe

    name = event["event"]
    stamp = f"[{at_s:5.1f} s]"
    if name == "teach_started":
        print(f"{stamp} teach button pressed: show the object, say its name")
    elif name == "teach_cancelled":
        print(f"{stamp} teach mode ended without a word ({event.get('reason')})")
    elif name == "taught":
        taught.append(event)
        word = script["teach"][len(taught) - 1]["word"] if len(taught) <= len(script["teach"]) else None
        print(f"{stamp} {describe(event)}")
        if word is not None:
            reply = client.request({"cmd": "label", "pair_id": event["pair_id"], "label": word}, timeout_s=10.0)
            print(f"{stamp}   labelled pair {event['pair_id']} {word!r} over the control socket: {'ok' if reply.get('ok') else reply}")
    elif name in ANSWERS:
        answers.append(event)
        i = len(answers) - 1
        said = script["requests"][i]["word"] if i < len(script["requests"]) else "?"
        print(f"{stamp} request (the session says {said!r}): {describe(event)}")
        if event.get("image"):
            print(f"{stamp}   answer image: {event['image']}")
    elif name in ("error", "device_lost", "device_recovered", "utterance_dropped"):
        print(f"{stamp} {describe(event)}")


def _summary(script: dict, taught: list, answers: list, out: Path) -> int:
    want_words = [t["word"] for t in script["teach"]]
    ok = len(taught) == len(want_words)
    print(f"\nlearned {len(taught)} of {len(want_words)} words: {', '.join(want_words[: len(taught)])}")
    right = 0
    for i, req in enumerate(script["requests"]):
        got = answers[i] if i < len(answers) else None
        if got is None:
            verdict = "no answer"
        elif req["expected"] in ("unknown_word", "not_in_view"):
            verdict = "as expected" if got["event"] == req["expected"] else f"got {got['event']}"
        else:
            verdict = "as expected" if got["event"] == "resolved" and got.get("label") == req["expected"] else \
                f"got {got['event']} {got.get('label')}"
        right += verdict == "as expected"
        print(f"  asked {req['word']!r:12} expected {req['expected']:13} -> {verdict}")
    extra = len(answers) - len(script["requests"])
    if extra > 0:
        print(f"  ({extra} more utterance(s) were heard as requests)")
    print(f"{right} of {len(script['requests'])} answers as expected; events in {out / 'events.jsonl'}, images in {out / 'answers'}")
    return 0 if ok and right == len(script["requests"]) and extra <= 0 else 1

