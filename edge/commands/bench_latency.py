"""``showsay bench-latency`` and ``showsay bench-idle``: the daemon's answer latency and idle cost.

bench-latency drives the controller's own answer path (the code ``ask`` and a heard request run)
with real utterances from the bundled session, a frame with ``--candidates`` candidates in view and
support sets of 10, 1,000 and 10,000 pairs, for every speech and image encoder available.
Latency runs from the end of the utterance (the endpointer has closed it) to the answer event:
features, speech embedding, candidate embeddings (cached while the person spoke, as the daemon
does; the uncached cost is reported too) and the match. Support sets beyond the bundled utterances
are filled with perturbed copies of real embeddings: matching cost depends on sizes, not content.
Each pair holds ``teach.views`` image views, as teaching stores them, and with ``teach.mirror_views``
each view's mirror too (``--views 5,1`` and ``--mirror off,on`` compare settings in alternating rounds). "heard" is what remains after the utterance closes when the speech
side ran at the first pause, as the daemon does for a heard request (``speech_precomputed``).

bench-idle runs the whole daemon (microphone or a silent real-time source, a 15 fps camera, the
control socket) for ``--seconds`` and reports its CPU use and resident memory.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

SAMPLES_DIR = Path(__file__).resolve().parents[1] / "samples"


def register(sub: argparse._SubParsersAction) -> None:
    """Add the subcommands."""
    p = sub.add_parser("bench-latency", help="answer latency (end of utterance to answer) p50/p95 by support-set size and encoder")
    p.add_argument("--pairs", default="10,1000,10000", help="support-set sizes, comma-separated (default 10,1000,10000)")
    p.add_argument("--candidates", type=int, default=10, help="candidates in view (default 10)")
    p.add_argument("--requests", type=int, default=100, help="requests per measurement (default 100)")
    p.add_argument("--speech-encoder", action="append", help="speech encoder(s) to measure (default: dtw and every shipped one: keywords, triplet, ensemble)")
    p.add_argument("--image-encoder", action="append", help="image encoder(s) to measure (default: pixels and every shipped one present)")
    p.add_argument("--views", help="views per taught pair, comma-separated settings measured in alternating rounds, e.g. 5,1 "
                   "(default: the config's teach.views, as teaching stores them)")
    p.add_argument("--mirror", help="teach.mirror_views settings measured in alternating rounds: on, off or off,on "
                   "(default: the config's; on stores each view's mirror too, twice the image rows)")
    p.add_argument("--rounds", type=int, default=4, help="alternating rounds the requests are split into (default 4)")
    p.add_argument("--json", help="write the results here as JSON")
    p.set_defaults(func=run_latency)

    p = sub.add_parser("bench-endpoint", help="end of word to answer (p50/p95) through the real endpointer; words split, merged, missed")
    p.add_argument("--config", help="config whose vad and encoders are measured (default: the built-in defaults)")
    p.add_argument("--end-silence-ms", help="vad.end_silence_ms values to compare, comma-separated (default: the config's)")
    p.add_argument("--words", help="also recorded words: a manifest CSV path,label,speaker (e.g. the real-speaker validation clips)")
    p.add_argument("--max-words", type=int, default=400, help="most recorded words laid out (default 400)")
    p.add_argument("--gap-s", type=float, default=1.5, help="silence between recorded words, s (default 1.5)")
    p.add_argument("--noise-dbfs", type=float, default=-60.0, help="white noise under the recorded words, dBFS (default -60)")
    p.add_argument("--pauses-ms", default="", help="also two words of one speaker joined by these pauses (ms, comma-separated): splits counted")
    p.add_argument("--json", help="write the results here as JSON")
    p.set_defaults(func=run_endpoint)

    p = sub.add_parser("bench-idle", help="daemon CPU use and resident memory while listening to silence with a camera running")
    p.add_argument("--config", help="config to run (default: built-in defaults with the baseline encoders)")
    p.add_argument("--seconds", type=float, default=120.0, help="how long to measure (default 120; the target run is 600)")
    p.add_argument("--fps", type=float, default=15.0, help="camera frame rate (default 15)")
    p.add_argument("--video", default=str(SAMPLES_DIR / "scene.mp4"), help="video file looped as the camera (default the bundled scene)")
    p.add_argument("--microphone", action="store_true", help="listen to the configured microphone instead of a silent real-time source")
    p.add_argument("--json", help="write the results here as JSON")
    p.set_defaults(func=run_idle)


def _available(kind: str) -> list[str]:
    from edge.encoders import MODELS_DIR, OLD_SPEECH_NAMES, SHIPPED_IMAGE, SHIPPED_SPEECH

    if kind == "speech":  # every shipped file once (an old name is the same file as the new one)
        return ["dtw"] + [n for n, f in SHIPPED_SPEECH.items() if (MODELS_DIR / f).is_file() and n not in OLD_SPEECH_NAMES]
    files = {}
    for name, f in SHIPPED_IMAGE.items():
        if (MODELS_DIR / f).is_file() and f not in files.values():
            files[name] = f
    return ["pixels"] + list(files)


class _NoMemory:
    """The controller's memory is not on the answer path; the benchmark fills the support set directly."""

    def pairs(self) -> list:
        return []


def _utterances() -> list[Any]:
    from edge.vad import Endpointer

    utts = Endpointer().segment_wav(SAMPLES_DIR / "session.wav")
    if not utts:
        raise SystemExit(f"{SAMPLES_DIR / 'session.wav'}: no utterances found")
    return utts


def _table_frame() -> np.ndarray:
    import cv2

    cap = cv2.VideoCapture(str(SAMPLES_DIR / "scene.mp4"))
    cap.set(cv2.CAP_PROP_POS_FRAMES, 20 * 15)  # the objects on the table
    ok, bgr = cap.read()
    cap.release()
    if not ok:
        raise SystemExit(f"{SAMPLES_DIR / 'scene.mp4'}: cannot read a frame")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _perturbed(rep: np.ndarray, metric: str, rng: np.random.Generator) -> np.ndarray:
    """A copy of a speech representation with noise added (fused ones: to both parts, header kept)."""
    if metric == "fused":
        from edge.matching import pack_fused, unpack_fused

        vector, frames = unpack_fused(rep)
        return pack_fused(_perturbed(vector, "cosine", rng), _perturbed(frames, "dtw", rng))
    return rep + rng.normal(0, 0.05, rep.shape).astype(np.float32)


def _latency_controller(speech_name: str, image_name: str, pairs: int, n_candidates: int, views: int, seed: int = 0,
                        mirror: bool | None = None) -> tuple[Any, list[Any]]:
    """A controller with ``pairs`` taught pairs of ``views`` views each (and their mirrors with ``mirror``, default the
    config's ``teach.mirror_views``), a frame of ``n_candidates`` in view; and the utterances."""
    from edge.camera import StaticFrames
    from edge.candidates import CandidateSettings, make_finder, teach_region
    from edge.config import Config
    from edge.daemon import Controller
    from edge.encoders import embed_crops, load_image_encoder, load_speech_encoder

    cfg = Config()
    enc = dataclasses.replace(cfg.encoders, speech=speech_name, image=image_name)
    speech = load_speech_encoder(enc, cfg.speech_features)
    image = load_image_encoder(enc)
    rows = max(1, int(np.sqrt(n_candidates / 2)))
    cand = CandidateSettings(finder="grid", grid_rows=rows, grid_cols=int(np.ceil(n_candidates / rows)), max_candidates=n_candidates)
    frames = StaticFrames([_table_frame()])
    frames.start()
    # the config's matching (mutual exclusivity, word_best_of) without the rejections: every request runs the whole path
    matching = dataclasses.replace(cfg.matching, unknown_word_distance=None, not_in_view_distance=None)
    ctrl = Controller(
        speech_encoder=speech, image_encoder=image, feature_settings=cfg.speech_features, memory=_NoMemory(),  # type: ignore[arg-type]
        audio=None, endpointer=None, frames=frames, finder=make_finder(cand),  # type: ignore[arg-type]
        teach_region=lambda img: teach_region(img, cand), matching=matching,
    )
    utts = _utterances()
    rng = np.random.default_rng(seed)
    rows_per_pair = views * (2 if (cfg.teach.mirror_views if mirror is None else mirror) else 1)
    speech_reps = [ctrl.embed_speech(u.pcm, u.sample_rate_hz) for u in utts]
    crops = [c.crop for c in ctrl.finder.find(frames.latest().image)]
    image_reps = embed_crops(image, crops)
    for i in range(pairs):
        s = speech_reps[i % len(speech_reps)]
        if i >= len(speech_reps):
            s = _perturbed(s, speech.metric, rng)
        v = image_reps[i % len(image_reps)] + rng.normal(0, 0.05, (rows_per_pair, image_reps.shape[1])).astype(np.float32)  # views as teaching stores them
        ctrl.support.add(i + 1, s, v, None)
    return ctrl, utts


def _latency_round(ctrl: Any, utts: list[Any], n_requests: int, offset: int = 0) -> tuple[list[float], list[float], list[dict]]:
    """(cached latencies, uncached latencies, timing parts) of ``n_requests`` answers."""
    cached, uncached, parts = [], [], []
    for r in range(n_requests):
        u = utts[(offset + r) % len(utts)]
        ctrl.prefetch_view()  # what the loop did while the person was speaking
        ev = ctrl.answer(u.pcm, u.sample_rate_hz)
        assert ev["view_cached"], "the prefetched view was not used"
        cached.append(ev["latency_ms"])
        parts.append(ev["timings_ms"])
        ctrl.clear_views()  # no prefetch: the image encoder runs on the critical path
        uncached.append(ctrl.answer(u.pcm, u.sample_rate_hz)["latency_ms"])
    return cached, uncached, parts


def _summary(ctrl: Any, pairs: int, views: int, mirror: bool, cached: list[float], uncached: list[float], parts: list[dict]) -> dict:
    def pct(xs: list[float], q: float) -> float:
        return round(float(np.percentile(xs, q)), 2)

    # a heard request computes the speech side at the first pause (speech_precomputed): what is left after the utterance closes
    heard = [max(0.0, c - p["features"] - p["speech_embedding"]) for c, p in zip(cached, parts)]
    return {
        "speech_encoder": ctrl.speech_encoder.encoder_id, "image_encoder": ctrl.image_encoder.encoder_id, "pairs": pairs,
        "views_per_pair": views, "mirror_views": mirror, "image_rows": int(len(ctrl.support.image_embeddings())),
        "candidates": len(ctrl.finder.find(ctrl.frames.latest().image)), "requests": len(cached),
        "p50_ms": pct(cached, 50), "p95_ms": pct(cached, 95),
        "heard_p50_ms": pct(heard, 50), "heard_p95_ms": pct(heard, 95),
        "uncached_p50_ms": pct(uncached, 50), "uncached_p95_ms": pct(uncached, 95),
        "parts_p50_ms": {k: pct([p[k] for p in parts], 50) for k in parts[0]},
    }


def measure_latency(speech_name: str, image_name: str, pairs: int, n_candidates: int, n_requests: int, seed: int = 0,
                    views: Sequence[int] = (1,), rounds: int = 1, mirrors: Sequence[bool | None] = (None,)) -> dict | list[dict]:
    """p50/p95 answer latency of the controller for one encoder pair and support-set size.

    With several ``views`` (views per taught pair) or ``mirrors`` (``teach.mirror_views``; None: the config's) the settings
    (every view count with every mirror setting) are measured in ``rounds`` alternating
    rounds of ``n_requests / rounds`` requests each (a shared machine's load drifts; alternating spreads
    it over all of them) and a list is returned, one result per setting; with one, its result.
    """
    from edge.config import Config

    combos = [(v, Config().teach.mirror_views if m is None else m) for v in views for m in mirrors]
    setups = [_latency_controller(speech_name, image_name, pairs, n_candidates, v, seed, m) for v, m in combos]
    per_round = max(1, n_requests // max(1, rounds))
    got: list[tuple[list, list, list]] = [([], [], []) for _ in combos]
    for r in range(max(1, rounds)):
        for (ctrl, utts), acc in zip(setups, got):
            for mine, new in zip(acc, _latency_round(ctrl, utts, per_round, r * per_round)):
                mine.extend(new)
    results = [_summary(ctrl, pairs, v, m, *acc) for (ctrl, _), (v, m), acc in zip(setups, combos, got)]
    return results if len(combos) > 1 else results[0]


def run_latency(args: argparse.Namespace) -> int:
    """Measure every combination and print a table."""
    from edge.config import Config

    if not getattr(args, "verbose", False):  # every answer is an event log line: thousands here
        logging.getLogger("edge.daemon").setLevel(logging.WARNING)
    pair_counts = [int(x) for x in args.pairs.split(",") if x.strip()]
    views = [int(x) for x in args.views.split(",") if x.strip()] if args.views else [Config().teach.views]
    if not views or min(views) < 1:
        print(f"showsay bench-latency: --views: views per pair must be >= 1, got {args.views!r}", file=sys.stderr)
        return 2
    try:
        mirrors = [{"on": True, "off": False}[m.strip()] for m in args.mirror.split(",")] if args.mirror else [None]
    except KeyError:
        print(f"showsay bench-latency: --mirror: on, off or off,on, got {args.mirror!r}", file=sys.stderr)
        return 2
    speech_names = args.speech_encoder or _available("speech")
    image_names = args.image_encoder or _available("image")
    results = []
    print(f"{'speech':>18} {'image':>22} {'pairs':>6} {'views':>5} {'cands':>5} {'p50 ms':>8} {'p95 ms':>8} {'heard p50/p95':>15} "
          f"{'uncached p50/p95':>17}  parts p50 (features/speech/candidates/match)")
    for sp in speech_names:
        for im in image_names:
            for n in pair_counts:
                got = measure_latency(sp, im, n, args.candidates, args.requests, views=views, rounds=args.rounds, mirrors=mirrors)
                got = got if isinstance(got, list) else [got]
                results.extend(got)
                for res in got:
                    pp = res["parts_p50_ms"]
                    print(f"{res['speech_encoder']:>18} {res['image_encoder']:>22} {n:>6} {res['views_per_pair']:>3}{'m' if res['mirror_views'] else ' ':<2} {res['candidates']:>5} "
                          f"{res['p50_ms']:>8.2f} {res['p95_ms']:>8.2f} {res['heard_p50_ms']:>7.2f}/{res['heard_p95_ms']:<7.2f} "
                          f"{res['uncached_p50_ms']:>8.2f}/{res['uncached_p95_ms']:<8.2f}  "
                          f"{pp['features']:.2f}/{pp['speech_embedding']:.2f}/{pp['candidate_embeddings']:.2f}/{pp['match']:.2f}", flush=True)
                if len(got) > 1:
                    base = got[-1]
                    for res in got[:-1]:
                        name = lambda r: f"{r['views_per_pair']}{' mirrored' if r['mirror_views'] else ''}"  # noqa: E731
                        print(f"{'':>18} {'':>22} {n:>6} {name(res)} vs {name(base)} views: p50 x{res['p50_ms'] / base['p50_ms']:.2f}, "
                              f"p95 x{res['p95_ms'] / base['p95_ms']:.2f}, heard p95 x{res['heard_p95_ms'] / max(base['heard_p95_ms'], 1e-3):.2f}, "
                              f"match p50 x{res['parts_p50_ms']['match'] / max(base['parts_p50_ms']['match'], 1e-3):.2f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results}, indent=2) + "\n")
    return 0


def _answer_clock(cfg: Any) -> Any:
    """A function utterance -> answer latency (ms) of the controller's own answer path, with the config's encoders.

    The support set holds the bundled session's utterances (taught words), a table frame is in view
    and its candidates are embedded beforehand, as while the person speaks.
    """
    from edge.camera import StaticFrames
    from edge.candidates import make_finder, teach_region
    from edge.daemon import Controller
    from edge.encoders import embed_crops, load_image_encoder, load_speech_encoder

    speech = load_speech_encoder(cfg.encoders, cfg.speech_features)
    image = load_image_encoder(cfg.encoders)
    frames = StaticFrames([_table_frame()])
    frames.start()
    ctrl = Controller(
        speech_encoder=speech, image_encoder=image, feature_settings=cfg.speech_features, memory=_NoMemory(),  # type: ignore[arg-type]
        audio=None, endpointer=None, frames=frames, finder=make_finder(cfg.candidates),  # type: ignore[arg-type]
        teach_region=lambda img: teach_region(img, cfg.candidates), matching=cfg.matching, utterances=cfg.utterances,
    )
    crops = [c.crop for c in ctrl.finder.find(frames.latest().image)] or [frames.latest().image]
    image_reps = embed_crops(image, crops)
    for i, u in enumerate(_utterances()):
        ctrl.support.add(i + 1, ctrl.embed_speech(u.pcm, u.sample_rate_hz), image_reps[i % len(image_reps)], None)

    ctrl.prefetch_view()  # the candidates embedded while the person spoke (a static frame: the cache stays valid)

    def answer_ms(utt: Any) -> tuple[float, float]:
        """(speech side, the rest) of the answer, ms: the daemon computes the first at the utterance's first pause."""
        event = ctrl.answer(utt.pcm, utt.sample_rate_hz)
        if not event.get("view_cached", True):
            raise RuntimeError("the prefetched view was not used")
        t = event.get("timings_ms", {})
        speech = float(t.get("features", 0.0)) + float(t.get("speech_embedding", 0.0))
        return speech, max(0.0, float(event["latency_ms"]) - speech)

    answer_ms(_utterances()[0])  # warm the sessions up: the daemon has answered before
    return answer_ms


def run_endpoint(args: argparse.Namespace) -> int:
    """End of word to answer on the bundled session (and recorded words), per end-silence setting."""
    from edge.audio import read_wav
    from edge.bench.endpointing import end_of_word, lay_out, paused_pairs, words_in
    from edge.bench.manifest import ManifestError, read_speech_manifest
    from edge.config import ConfigError, load_config
    from edge.model_io import ModelError

    logging.getLogger("edge.daemon").setLevel(logging.WARNING)
    logging.getLogger("edge.vad").setLevel(logging.WARNING)
    try:
        cfg = load_config(args.config)
        silences = [int(x) for x in args.end_silence_ms.split(",")] if args.end_silence_ms else [cfg.vad.end_silence_ms]
        answer_ms = _answer_clock(cfg)
        script = json.loads((SAMPLES_DIR / "session.json").read_text())
        said = script["teach"] + script["requests"]
        session = read_wav(SAMPLES_DIR / "session.wav", 16000)
        streams = [("bundled session", session, words_in(session, [w["speech_s"] for w in said], [w["word"] for w in said]))]
        if args.words:
            items = read_speech_manifest(args.words)[: args.max_words]
            clips = [read_wav(i.path, 16000) for i in items]
            streams.append((f"recorded words ({args.words})", *lay_out(clips, [i.label for i in items], args.gap_s, args.noise_dbfs)))
            for pause in [float(x) for x in args.pauses_ms.split(",") if x.strip()]:
                pairs = paused_pairs(clips, [i.speaker for i in items], pause)
                streams.append((f"two words, {pause:g} ms pause", *lay_out(pairs, ["pair"] * len(pairs), args.gap_s, args.noise_dbfs)))
    except (ConfigError, ModelError, ManifestError, OSError, ValueError) as exc:
        print(f"showsay bench-endpoint: {exc}", file=sys.stderr)
        return 1
    results = []
    print("| stream | end_silence_ms | words | utterances | split | merged | missed | endpointing p50 / p95 ms | end of word to answer p50 / p95 ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, samples, words in streams:
        for ms in silences:
            vad = dataclasses.replace(cfg.vad, end_silence_ms=ms, end_voiced_ratio=min(cfg.vad.end_voiced_ratio, cfg.vad.start_voiced_ratio - 0.01))
            res = end_of_word(samples, words, vad, answer_ms).summary()
            results.append({"stream": name, "end_silence_ms": ms, **res})
            print(f"| {name} | {ms} | {res['words']} | {res['utterances']} | {res['split']} | {res['merged']} | {res['missed']} | "
                  f"{res['endpoint_p50_ms']} / {res['endpoint_p95_ms']} | {res['answer_p50_ms']} / {res['answer_p95_ms']} |", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps({"results": results}, indent=2) + "\n")
    return 0


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


class SilentSource:
    """Real-time 30 ms frames of digital silence, paced like a microphone."""

    def __init__(self, frame_ms: int = 30, sample_rate_hz: int = 16000) -> None:
        self.frame_ms, self.rate = frame_ms, sample_rate_hz
        self.closed, self.dropped_frames = False, 0
        self._t0 = 0.0
        self._next = 0

    def start(self) -> None:
        self._t0 = time.monotonic()

    def read(self, timeout_s: float) -> Any:
        from edge.hearing import AudioFrame

        due = self._t0 + (self._next + 1) * self.frame_ms / 1000.0
        wait = due - time.monotonic()
        if wait > timeout_s:
            time.sleep(timeout_s)
            return None
        time.sleep(max(0.0, wait))
        self._next += 1
        n = self.rate * self.frame_ms // 1000
        return AudioFrame(np.zeros(n, np.int16), due, self.rate)

    def close(self) -> None:
        self.closed = True


def run_idle(args: argparse.Namespace) -> int:
    """Run the daemon on silence with a camera and report CPU and memory."""
    from edge.button import NoButton
    from edge.camera import Camera
    from edge.config import load_config
    from edge.hearing import MicrophoneSource
    from edge.model_io import ModelError
    from edge.service import Daemon, EventRelay

    cfg = load_config(args.config)
    with tempfile.TemporaryDirectory(prefix="showsay-idle-") as tmp:
        cfg = dataclasses.replace(
            cfg,
            memory=dataclasses.replace(cfg.memory, state_dir=tmp),
            control=dataclasses.replace(cfg.control, socket_path=str(Path(tmp) / "control.sock")),
            camera=dataclasses.replace(cfg.camera, source=args.video, fps=args.fps, loop_file=True),
        )
        relay = EventRelay()
        audio = MicrophoneSource(cfg.microphone, on_event=relay) if args.microphone else SilentSource(cfg.microphone.frame_ms)
        camera = Camera(cfg.camera, on_event=relay)
        daemon = Daemon(cfg, audio=audio, frames=camera, button=NoButton(), relay=relay)
        try:
            daemon.start()
        except (ModelError, OSError, ValueError, RuntimeError) as exc:  # what `showsay run` refuses to start on
            daemon.close()
            print(f"showsay bench-idle: cannot start the daemon: {exc}", file=sys.stderr)
            return 1
        try:
            time.sleep(2.0)  # settle: models loaded, first frames in
            frames0 = camera.frames_read
            r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
            rss = []
            while time.monotonic() - t0 < args.seconds:
                time.sleep(min(5.0, max(0.1, args.seconds - (time.monotonic() - t0))))
                rss.append(_rss_mb())
            r1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
            frames = camera.frames_read - frames0
            status = daemon.controller.status()
        finally:
            daemon.close()
    wall = t1 - t0
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    result = {
        "seconds": round(wall, 1),
        "cpu_percent_of_one_core": round(100.0 * cpu / wall, 2),
        "camera_fps": round(frames / wall, 2),
        "rss_mb_max": round(max(rss), 1),
        "rss_mb_last": round(rss[-1], 1),
        "peak_rss_mb": round(r1.ru_maxrss / 1024.0, 1),
        "audio": "microphone" if args.microphone else "silent real-time source",
        "dropped_audio_frames": status["dropped_audio_frames"],
        "speech_encoder": status["speech_encoder"], "image_encoder": status["image_encoder"],
    }
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0
