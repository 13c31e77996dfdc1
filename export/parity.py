"""``showsay export verify`` and ``showsay export latency``: a TensorRT engine against ONNX Runtime.

verify: the same real recordings or images through both, cosine similarity of every embedding
(thresholds by the engine's precision) and a nearest-neighbour one-shot accuracy of both, side by
side. latency: per-call time of each encoder on each backend present (ONNX Runtime on the CPU
always; TensorRT where installed), printed as a table ready for docs/tensorrt.md.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge.bench.episodes import EpisodeError
from edge.bench.runner import BenchSettings, run_benchmark
from edge.config import Config, ConfigError, load_config
from edge.encoders import DtwSpeech, OnnxEncoder, PixelImage
from edge.model_io import SPEECH_INPUT, WAVEFORM_INPUT, ModelError, ModelInfo
from edge.trt_manifest import TensorRTSettings, read_manifest, sha256_file
from export.calibration import Item, feature_settings_of, image_input, read_items, speech_model_input

log = logging.getLogger(__name__)

# Lowest acceptable cosine similarity between TensorRT and ONNX Runtime embeddings, by engine precision.
THRESHOLDS = {"fp32": 0.999, "fp16": 0.999, "int8": 0.99}  # fp32 too: Ampere GPUs run FP32 layers in TF32
LENGTH_BINS_FRAMES = ((0, 50), (50, 100), (100, 200), (200, 10**9))  # MFCC frames (10 ms); waveform inputs: the same in samples


def register(sub: argparse._SubParsersAction) -> None:
    """Add 'verify' and 'latency'."""
    p = sub.add_parser("verify", help="compare a TensorRT engine with ONNX Runtime on real recordings or images")
    p.add_argument("--onnx", required=True, type=Path, help="the ONNX encoder the engine was built from")
    p.add_argument("--engine", required=True, type=Path, help="the engine built by 'showsay export engine'")
    p.add_argument("--speech", type=Path, help="benchmark manifest CSV path,label,speaker of recordings")
    p.add_argument("--images", type=Path, help="benchmark manifest CSV path,label of images")
    p.add_argument("--max-items", type=int, default=400, help="most files compared embedding by embedding, a seeded sample (default 400)")
    p.add_argument("--episodes", type=int, default=200, help="one-shot episodes for the accuracies (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", type=Path, help="YAML config (speech features of the DTW partner when an image engine is benchmarked)")
    p.set_defaults(func=run_verify)

    p = sub.add_parser("latency", help="per-call encoder time on ONNX Runtime (CPU) and, where installed, TensorRT")
    p.add_argument("--onnx", required=True, type=Path, action="append", help="ONNX encoder (repeat for speech and image)")
    p.add_argument("--engine", type=Path, action="append", default=[],
                   help="engine(s) built from them, matched by the manifest's ONNX hash (repeat for fp16, int8); default: M.engine beside each M.onnx")
    p.add_argument("--config", type=Path, help="YAML config (tensorrt shapes, encoders.threads)")
    p.add_argument("--repeats", type=int, default=50, help="timed calls per input (default 50)")
    p.add_argument("--warmup", type=int, default=5, help="untimed calls first (default 5)")
    p.set_defaults(func=run_latency)


# ---------------------------------------------------------------- verify


def load_inputs(items: Sequence[Item], info: ModelInfo, max_items: int, seed: int) -> tuple[Any, list[str], list[str | None]]:
    """Encoder inputs of a seeded sample of the manifest: feature matrices or waveforms (speech, by input kind) or a (N, C, S, S) batch."""
    rng = np.random.default_rng(seed)
    if len(items) > max_items:
        items = [items[i] for i in sorted(rng.choice(len(items), max_items, replace=False))]
    labels = [it.label for it in items]
    speakers = [getattr(it, "speaker", None) for it in items]
    if info.kind == "speech":
        return [speech_model_input(it, info) for it in items], labels, speakers
    assert info.image_settings is not None
    return np.stack([image_input(it, info.image_settings) for it in items]), labels, speakers


def embed_chunks(encoder: Any, inputs: Any, chunk: int) -> np.ndarray:
    """Embeddings of all ``inputs`` in calls of at most ``chunk`` inputs."""
    parts = [np.asarray(encoder.embed(inputs[i : i + chunk]), np.float32) for i in range(0, len(inputs), chunk)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) cosine similarity of each row of ``a`` with the same row of ``b``."""
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    return np.sum(a * b, axis=1) / np.maximum(na * nb, 1e-12)


def one_shot_accuracy(emb: np.ndarray, labels: Sequence[str], speakers: Sequence[str | None], episodes: int, seed: int) -> float:
    """Nearest-neighbour one-shot accuracy: per episode one support item per label, every other item a query.

    With speakers, a query is never by the speaker of its own label's support item. Cosine similarity;
    the same seed gives the same episodes, so two encoders are compared on identical trials.
    """
    labels_arr = np.asarray(labels)
    speakers_arr = np.asarray([s or "" for s in speakers])
    classes = sorted(set(labels))
    if len(classes) < 2:
        raise ModelError(f"one-shot accuracy needs at least 2 labels, got {len(classes)}")
    unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    rng = np.random.default_rng(seed)
    correct = total = 0
    for _ in range(episodes):
        support = np.array([rng.choice(np.flatnonzero(labels_arr == c)) for c in classes])
        queries = np.setdiff1d(np.arange(len(labels)), support)
        own_support = support[np.searchsorted(classes, labels_arr[queries])]
        keep = (speakers_arr[queries] == "") | (speakers_arr[queries] != speakers_arr[own_support])
        queries = queries[keep]
        if len(queries) == 0:
            continue
        guess = np.argmax(unit[queries] @ unit[support].T, axis=1)
        correct += int(np.sum(np.asarray(classes)[guess] == labels_arr[queries]))
        total += len(queries)
    if total == 0:
        raise ModelError("no one-shot queries: every item shares its speaker with its label's support item")
    return correct / total


@dataclass(frozen=True)
class ParityReport:
    """TensorRT (candidate) against ONNX Runtime (reference) on the same inputs."""

    n: int
    threshold: float
    min_cosine: float
    mean_cosine: float
    below: int
    accuracy_reference: float
    accuracy_candidate: float
    by_length: list[tuple[int, int, int, float]] = field(default_factory=list)  # (lo, hi, n, min cosine), speech only
    skipped: int = 0  # utterances outside the engine's profile

    @property
    def passed(self) -> bool:
        """Every embedding at or above the threshold."""
        return self.below == 0 and self.n > 0


def compare_encoders(
    reference: Any, candidate: Any, inputs: Any, labels: list[str], speakers: list[str | None],
    kind: str, threshold: float, chunk: int, episodes: int, seed: int, max_frames: int | None = None, samples_per_frame: int = 1,
) -> ParityReport:
    """Embed the same inputs with both encoders and compare embeddings and one-shot accuracy.

    ``max_frames`` and the length bins count the input's first axis (MFCC frames, or samples of a
    waveform model, given as ``samples_per_frame`` samples per 10 ms frame).
    """
    skipped = 0
    if kind == "speech" and max_frames is not None:
        keep = [i for i, f in enumerate(inputs) if f.shape[0] <= max_frames]
        skipped = len(inputs) - len(keep)
        inputs = [inputs[i] for i in keep]
        labels = [labels[i] for i in keep]
        speakers = [speakers[i] for i in keep]
    ref = embed_chunks(reference, inputs, chunk)
    cand = embed_chunks(candidate, inputs, chunk)
    cos = cosine_rows(ref, cand)
    by_length = []
    if kind == "speech":
        frames = np.array([f.shape[0] // samples_per_frame for f in inputs])  # 10 ms frames either way
        for lo, hi in LENGTH_BINS_FRAMES:
            sel = (frames >= lo) & (frames < hi)
            if sel.any():
                by_length.append((lo, hi, int(sel.sum()), float(cos[sel].min())))
    return ParityReport(
        n=len(cos),
        threshold=threshold,
        min_cosine=float(cos.min()),
        mean_cosine=float(cos.mean()),
        below=int(np.sum(cos < threshold)),
        accuracy_reference=one_shot_accuracy(ref, labels, speakers, episodes, seed),
        accuracy_candidate=one_shot_accuracy(cand, labels, speakers, episodes, seed),
        by_length=by_length,
        skipped=skipped,
    )


def format_report(r: ParityReport, reference: str, candidate: str) -> str:
    """Human-readable report."""
    lines = [
        f"inputs: {r.n}" + (f" ({r.skipped} longer than the engine's max_frames skipped)" if r.skipped else ""),
        f"cosine {candidate} vs {reference}: min {r.min_cosine:.5f}, mean {r.mean_cosine:.5f}, "
        f"below {r.threshold}: {r.below} -> {'PASS' if r.passed else 'FAIL'}",
    ]
    for lo, hi, n, mn in r.by_length:
        span = f"{lo}-{hi - 1}" if hi < 10**9 else f">={lo}"
        lines.append(f"  {span:>8} frames: {n:4d} utterances, min cosine {mn:.5f}")
    lines.append(f"one-shot nearest-neighbour accuracy: {reference} {r.accuracy_reference:.4f} | {candidate} {r.accuracy_candidate:.4f}")
    return "\n".join(lines)


def benchmark_side_by_side(
    reference: Any, candidate: Any, speech_csv: Path, images_csv: Path, cfg: Config, episodes: int, seed: int, candidate_name: str,
) -> list[tuple[str, dict[str, Any]]]:
    """The one-shot benchmark (edge.bench) with the ONNX Runtime encoder, then with the engine.

    The other modality uses its baseline (pixels for a speech engine, DTW for an image engine) in
    both runs, so any difference comes from the engine.
    """
    speech = read_items(speech_csv, "speech")
    images = read_items(images_csv, "image")
    if reference.info.kind == "speech":
        features = feature_settings_of(reference.info, str(reference.path)) if reference.info.input_kind == "mfcc" else cfg.speech_features
        pairs = [(reference, PixelImage()), (candidate, PixelImage())]
    else:
        features = cfg.speech_features
        pairs = [(DtwSpeech(features), reference), (DtwSpeech(features), candidate)]
    classes = len({it.label for it in speech} & {it.label for it in images})
    settings = BenchSettings(ways=max(2, min(10, classes)), shots=1, episodes=episodes, queries=10, seeds=(seed,))
    results = []
    for (sp, im), name in zip(pairs, ("onnxruntime-cpu", candidate_name)):
        summary, _ = run_benchmark(speech, images, sp, im, features, settings, progress=False)  # type: ignore[arg-type]
        results.append((name, summary))
    return results


def format_benchmark(results: list[tuple[str, dict[str, Any]]]) -> str:
    """Accuracies of both backends as a markdown table (percent, 95% confidence half-width)."""
    first = results[0][1]
    lines = [
        f"benchmark: {first['ways']}-way 1-shot, {first['episodes']} episodes x {first['queries']} queries, speakers {first['speakers']}, "
        f"speech {first['speech_encoder']}, images {first['image_encoder']}",
        "| backend | multimodal % | speech-only % | image-only % |",
        "|---|---|---|---|",
    ]
    for name, r in results:
        lines.append(
            f"| {name} | {100 * r['accuracy']:.1f} ± {100 * r['ci95']:.1f} | {100 * r['speech_accuracy']:.1f} ± {100 * r['speech_ci95']:.1f} | "
            f"{100 * r['image_accuracy']:.1f} ± {100 * r['image_ci95']:.1f} |"
        )
    return "\n".join(lines)


def run_verify(args: argparse.Namespace) -> int:
    """The 'verify' subcommand: exit 0 when every embedding meets the precision's threshold."""
    from edge.trt_backend import import_pycuda, import_tensorrt, load_engine_encoder

    if args.speech is None and args.images is None:
        print("showsay export verify: give --speech MANIFEST.csv or --images MANIFEST.csv (both: also the one-shot benchmark)", file=sys.stderr)
        return 1
    bench = None
    try:
        import_tensorrt()
        import_pycuda()
        cfg = load_config(args.config)
        reference = OnnxEncoder(args.onnx)
        kind = reference.info.kind
        csv_path = args.speech if kind == "speech" else args.images
        if csv_path is None:
            raise ModelError(f"{args.onnx}: a {kind} encoder; give --{'speech' if kind == 'speech' else 'images'} MANIFEST.csv")
        manifest = read_manifest(args.engine)
        if manifest.source_onnx_sha256 != sha256_file(args.onnx):
            raise ModelError(f"{args.engine}: built from another ONNX file than {args.onnx} (sha256 differs); rebuild it or pass the right --onnx")
        candidate = load_engine_encoder(args.engine, reference.info.speech_features)
        name = f"tensorrt-{manifest.precision}"
        try:
            inputs, labels, speakers = load_inputs(read_items(csv_path, kind), reference.info, args.max_items, args.seed)
            waveform = reference.info.input_kind == "waveform"
            max_length = candidate.profile[WAVEFORM_INPUT if waveform else SPEECH_INPUT]["max"][1] if kind == "speech" else None
            per_frame = int(reference.info.sample_rate_hz or 16000) // 100 if waveform else 1
            threshold = THRESHOLDS.get(manifest.precision, 0.999)
            report = compare_encoders(reference, candidate, inputs, labels, speakers, kind, threshold, candidate.max_batch, args.episodes, args.seed,
                                      max_length, per_frame)
            if args.speech is not None and args.images is not None:
                bench = benchmark_side_by_side(reference, candidate, args.speech, args.images, cfg, args.episodes, args.seed, name)
        finally:
            candidate.close()
    except (ModelError, ConfigError, EpisodeError) as exc:
        print(f"showsay export verify: {exc}", file=sys.stderr)
        return 1
    print(f"{args.engine}: {manifest.precision} engine on {manifest.gpu_name}, TensorRT {manifest.tensorrt_version}; {csv_path}")
    print(format_report(report, "onnxruntime-cpu", name))
    if bench:
        print(format_benchmark(bench))
    return 0 if report.passed else 1


# ---------------------------------------------------------------- latency


def latency_inputs(info: ModelInfo, settings: TensorRTSettings, seed: int = 0) -> list[tuple[str, Any]]:
    """(description, batch) pairs at the shapes the daemon uses: utterances of 0.5, 1 and 3 s; 1 to max image candidates."""
    rng = np.random.default_rng(seed)
    if info.input_kind == "waveform":  # speech-like noise of 0.5, 1 and 3 s
        rate = int(info.sample_rate_hz or 16000)
        lengths = sorted({min(max(n, settings.min_samples), settings.max_samples) for n in (rate // 2, settings.opt_samples, 3 * rate)})
        return [(f"1 x {n} samples", [(0.1 * rng.standard_normal(n)).astype(np.float32)]) for n in lengths]
    if info.kind == "speech":
        dim = feature_settings_of(info, info.model_id).dim
        lengths = sorted({min(max(f, settings.min_frames), settings.max_frames) for f in (50, settings.opt_frames, 300)})
        return [(f"1 x {t} frames", [rng.standard_normal((t, dim)).astype(np.float32)]) for t in lengths]
    s = info.image_settings
    assert s is not None
    counts = sorted({1, settings.opt_image_batch, settings.max_image_batch})
    return [(f"{b} image{'s' if b > 1 else ''}", rng.standard_normal((b, s.channels, s.size_px, s.size_px)).astype(np.float32)) for b in counts]


def time_calls(encoder: Any, batch: Any, warmup: int, repeats: int) -> tuple[float, float]:
    """(median, 90th percentile) milliseconds per ``embed`` call."""
    for _ in range(warmup):
        encoder.embed(batch)
    times = []
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        encoder.embed(batch)
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times)), float(np.percentile(times, 90))


def engines_for(onnx_path: Path, given: Sequence[Path]) -> list[Path]:
    """The engines built from this ONNX file: those given whose manifest names its sha256, else M.engine beside M.onnx."""
    from edge.trt_backend import engine_path_for

    if not given:
        beside = engine_path_for(onnx_path)
        return [beside] if beside.is_file() else []
    sha = sha256_file(onnx_path)
    return [e for e in given if read_manifest(e).source_onnx_sha256 == sha]


def run_latency(args: argparse.Namespace) -> int:
    """The 'latency' subcommand: a markdown table, one row per encoder, backend, precision and input shape."""
    from edge.trt_backend import BackendUnavailable, import_pycuda, import_tensorrt, load_engine_encoder

    try:
        cfg = load_config(args.config)
        encoders = [OnnxEncoder(p, threads=cfg.encoders.threads) for p in args.onnx]
        engines = {p: engines_for(p, args.engine) for p in args.onnx}
    except (ModelError, ConfigError) as exc:
        print(f"showsay export latency: {exc}", file=sys.stderr)
        return 1
    unmatched = set(args.engine) - {e for found in engines.values() for e in found}
    if unmatched:
        print(f"showsay export latency: {', '.join(map(str, sorted(unmatched)))}: not built from any --onnx given", file=sys.stderr)
        return 1
    trt_missing = None
    try:
        import_tensorrt()
        import_pycuda()
    except BackendUnavailable as exc:
        trt_missing = str(exc)
    threads = cfg.encoders.threads
    print("| encoder | backend | precision | input | median ms | p90 ms |")
    print("|---|---|---|---|---|---|")
    status = 0
    for onnx_path, reference in zip(args.onnx, encoders):
        inputs = latency_inputs(reference.info, cfg.tensorrt)
        for desc, batch in inputs:
            med, p90 = time_calls(reference, batch, args.warmup, args.repeats)
            print(f"| {reference.encoder_id} | onnxruntime-cpu ({threads} thread{'s' if threads > 1 else ''}) | fp32 | {desc} | {med:.2f} | {p90:.2f} |", flush=True)
        if trt_missing is not None:
            continue
        for engine in engines[onnx_path]:
            try:
                enc = load_engine_encoder(engine, reference.info.speech_features)
            except ModelError as exc:
                print(f"showsay export latency: {exc}", file=sys.stderr)
                status = 1
                continue
            try:
                for desc, batch in inputs:
                    med, p90 = time_calls(enc, batch, args.warmup, args.repeats)
                    print(f"| {enc.encoder_id} | tensorrt {enc.manifest.tensorrt_version} ({enc.manifest.gpu_name}) | {enc.precision} | {desc} | {med:.2f} | {p90:.2f} |", flush=True)
            except ModelError as exc:
                print(f"showsay export latency: {engine}: {exc}", file=sys.stderr)
                status = 1
            finally:
                enc.close()
    if trt_missing is not None:
        print(f"tensorrt: not measured here: {trt_missing}")
    elif not any(engines.values()):
        print("tensorrt: no engine found (build one on the Jetson with 'showsay export engine')")
    return status
