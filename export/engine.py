"""``showsay export engine|verify|latency``: TensorRT engines from ONNX encoders, built on the target device.

``engine`` parses the ONNX model with TensorRT's OnnxParser (every parser error reported with its
node), sets an optimisation profile for the dynamic axes from the config's ``tensorrt`` section,
optionally calibrates INT8 on real recordings or images, reuses a timing cache between builds,
and writes the engine atomically with its manifest beside it (:mod:`edge.trt_manifest`).
``verify`` and ``latency`` live in :mod:`export.parity`.

Written against the TensorRT 8.6 (JetPack 5) and 10.x (JetPack 6) Python APIs; the differences
handled here: explicit batch is a network flag on 8.x and the only mode on 10 (flag deprecated),
``platform_has_fast_*`` are deprecated on 10, parser errors gained ``node_name``/``node_operator``
in 10, and ``set_calibration_profile``/``int8_calibrator`` are deprecated (still present) on 10.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edge import __version__
from edge.config import ConfigError, load_config
from edge.encoders import OnnxEncoder
from edge.model_io import (
    META_EMBEDDING_DIM,
    META_KIND,
    META_MODEL_ID,
    META_WEIGHTS_SHA256,
    ModelError,
    ModelInfo,
)
from edge.fileio import write_atomic
from edge.trt_backend import CudaContext, device_identity, import_pycuda, import_tensorrt, make_logger, trt_major
from edge.trt_manifest import (
    EngineManifest,
    Profile,
    TensorRTSettings,
    compute_profile,
    manifest_path,
    sha256_file,
    timing_cache_path,
)
from export.calibration import calibration_batches, calibration_shapes, feature_settings_of, make_entropy_calibrator, read_items

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    """Add 'engine', 'verify' and 'latency'."""
    from export import parity

    p = sub.add_parser("engine", help="build a TensorRT engine from an ONNX encoder (run it on the target Jetson)")
    p.add_argument("--onnx", required=True, type=Path, help="ONNX encoder exported by 'showsay export onnx'")
    p.add_argument("--out", required=True, type=Path, help="engine file to write (its manifest goes beside it as OUT.json)")
    p.add_argument("--fp16", action="store_true", help="allow FP16 kernels")
    p.add_argument("--int8", action="store_true", help="INT8 with entropy calibration (FP16 allowed too); needs --calibration")
    p.add_argument("--calibration", type=Path, help="manifest CSV of real recordings (path,label,speaker) or images (path,label)")
    p.add_argument("--calibration-batches", type=int, default=32, help="most calibration batches to use (default 32)")
    p.add_argument("--workspace-mb", type=int, help="builder workspace limit, MiB (default: tensorrt.workspace_mb)")
    p.add_argument("--timing-cache", type=Path, help="timing cache file (default: one per GPU and TensorRT version in tensorrt.timing_cache_dir)")
    p.add_argument("--config", type=Path, help="YAML config whose 'tensorrt' section gives the profile shapes")
    p.set_defaults(func=run_engine)
    parity.register(sub)


def run_engine(args: argparse.Namespace) -> int:
    """The 'engine' subcommand: exit 0 with the engine and manifest written, or 1 with one message."""
    if args.int8 and args.calibration is None:
        print("showsay export engine: --int8 needs --calibration MANIFEST.csv of real recordings or images", file=sys.stderr)
        return 1
    try:
        trt, cuda = import_tensorrt(), import_pycuda()  # first: a missing install is the first thing to say
        cfg = load_config(args.config)
        precision = "int8" if args.int8 else "fp16" if args.fp16 else "fp32"
        result = build_engine(
            trt,
            cuda,
            onnx_path=args.onnx,
            out_path=args.out,
            precision=precision,
            settings=cfg.tensorrt,
            workspace_mb=args.workspace_mb or cfg.tensorrt.workspace_mb,
            calibration_csv=args.calibration,
            calibration_max_batches=args.calibration_batches,
            timing_cache=args.timing_cache,
        )
    except (ModelError, ConfigError) as exc:
        print(f"showsay export engine: {exc}", file=sys.stderr)
        return 1
    m = result.manifest
    print(
        f"{args.out}: {m.precision} engine of {m.model_id} for {m.gpu_name} (sm {m.compute_capability}), TensorRT {m.tensorrt_version}, "
        f"{result.engine_bytes / 1e6:.1f} MB, built in {result.build_s:.1f} s; manifest {manifest_path(args.out)}"
    )
    return 0


def metadata_of(info: ModelInfo) -> dict[str, str]:
    """The ONNX metadata props back from a :class:`ModelInfo` (required keys plus everything else it kept)."""
    meta = {
        META_KIND: info.kind,
        META_MODEL_ID: info.model_id,
        META_EMBEDDING_DIM: str(info.embedding_dim),
        META_WEIGHTS_SHA256: info.weights_sha256,
    }
    meta.update(info.extra)
    return meta


def parser_errors(parser: Any) -> list[str]:
    """Every error of a failed OnnxParser parse, each with the node it concerns."""
    lines = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        node = int(err.node())
        where = "graph" if node < 0 else f"node {node}"
        name = err.node_name() if hasattr(err, "node_name") else ""  # TensorRT 10 only
        op = err.node_operator() if hasattr(err, "node_operator") else ""
        if name:
            where += f" {name!r}"
        if op:
            where += f" ({op})"
        lines.append(f"{where}: {err.desc()} [{err.code()}]")
    return lines


def create_network(trt: Any, builder: Any) -> Any:
    """An explicit-batch network definition on TensorRT 8.6 and 10."""
    if trt_major(trt) >= 10:
        return builder.create_network(0)  # explicit batch is the only mode; the flag is deprecated
    return builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))


@dataclass(frozen=True)
class BuildResult:
    """What a build wrote."""

    manifest: EngineManifest
    engine_bytes: int
    build_s: float


def build_engine(
    trt: Any,
    cuda: Any,
    *,
    onnx_path: Path,
    out_path: Path,
    precision: str,
    settings: TensorRTSettings,
    workspace_mb: int,
    calibration_csv: Path | None = None,
    calibration_max_batches: int = 32,
    timing_cache: Path | None = None,
) -> BuildResult:
    """Build, serialise and atomically write an engine and its manifest; raises ModelError with the reason."""
    reference = OnnxEncoder(onnx_path)  # checks the file, its metadata and its input names
    info = reference.info
    device = device_identity(trt, cuda)
    if info.input_kind == "waveform":
        profile = compute_profile("speech", settings, input_kind="waveform")  # a dynamic sample axis
    elif info.kind == "speech":
        profile = compute_profile("speech", settings, feat_dim=feature_settings_of(info, str(onnx_path)).dim)
    else:
        profile = compute_profile("image", settings, image_settings=info.image_settings)
    ctx = CudaContext(cuda)  # calibration copies batches to the GPU through pycuda
    try:
        logger = make_logger(trt)
        builder = trt.Builder(logger)
        network = create_network(trt, builder)
        parser = trt.OnnxParser(network, logger)
        if not parser.parse_from_file(str(onnx_path)):
            errors = parser_errors(parser) or logger.errors or ["no detail given"]
            raise ModelError(f"{onnx_path}: TensorRT's ONNX parser failed:\n  " + "\n  ".join(errors))
        _check_network_inputs(network, profile, onnx_path)
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
        _set_precision(trt, builder, config, precision)
        opt = builder.create_optimization_profile()
        for name, bounds in profile.items():
            opt.set_shape(name, tuple(bounds["min"]), tuple(bounds["opt"]), tuple(bounds["max"]))
        config.add_optimization_profile(opt)
        calibrator = None
        if precision == "int8":
            assert calibration_csv is not None
            calibrator = _attach_calibrator(trt, cuda, builder, config, network, info, settings, calibration_csv, calibration_max_batches, out_path, onnx_path)
        cache_file = timing_cache or timing_cache_path(settings, device)
        _load_timing_cache(config, cache_file)
        log.info("building a %s engine from %s (this takes minutes on a Jetson)", precision, onnx_path)
        t0 = time.monotonic()
        serialized = builder.build_serialized_network(network, config)
        build_s = time.monotonic() - t0
        if calibrator is not None and calibrator.error is not None:
            raise ModelError(f"{calibration_csv}: calibration failed: {calibrator.error}")
        if serialized is None:
            raise ModelError(f"{onnx_path}: TensorRT could not build the engine ({'; '.join(logger.errors[-5:]) or 'see the log'})")
        data = bytes(serialized)
        write_atomic(cache_file, bytes(config.get_timing_cache().serialize()))
    finally:
        ctx.close()
    write_atomic(out_path, data)
    manifest = EngineManifest(
        kind=info.kind,
        model_id=info.model_id,
        precision=precision,
        engine_file=out_path.name,
        engine_sha256=sha256_file(out_path),
        source_onnx=_relative_name(onnx_path, out_path),
        source_onnx_sha256=sha256_file(onnx_path),
        gpu_name=device.gpu_name,
        compute_capability=device.compute_capability,
        tensorrt_version=device.tensorrt_version,
        profiles=[profile],
        metadata=metadata_of(info),
        speech_features=info.speech_features,
        workspace_mb=int(workspace_mb),
        built_utc=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        exporter=f"showsay {__version__}",
        extra={"calibration": str(calibration_csv) if calibration_csv else None, "timing_cache": str(cache_file)},
    )
    write_atomic(manifest_path(out_path), manifest.to_json().encode())
    return BuildResult(manifest, len(data), build_s)


def _relative_name(onnx_path: Path, out_path: Path) -> str:
    """The ONNX file as the runtime finds it from the engine's folder (a bare name when they sit together)."""
    try:
        return str(onnx_path.resolve().relative_to(out_path.resolve().parent))
    except ValueError:
        return str(onnx_path.resolve())


def _check_network_inputs(network: Any, profile: Profile, onnx_path: Path) -> None:
    names = {network.get_input(i).name: network.get_input(i) for i in range(network.num_inputs)}
    if set(names) != set(profile):
        raise ModelError(f"{onnx_path}: TensorRT sees inputs {sorted(names)}, expected {sorted(profile)}")
    for name, tensor in names.items():
        if getattr(tensor, "is_shape_tensor", False):
            raise ModelError(f"{onnx_path}: input {name} is used as a shape tensor; export the model so {name} only feeds element-wise ops (a mask)")


def _set_precision(trt: Any, builder: Any, config: Any, precision: str) -> None:
    if precision in ("fp16", "int8"):
        if not getattr(builder, "platform_has_fast_fp16", True):  # deprecated on TensorRT 10
            log.warning("this GPU has no fast FP16; the engine may be slower than FP32")
        config.set_flag(trt.BuilderFlag.FP16)  # INT8 engines keep FP16 for layers that do not quantise
    if precision == "int8":
        if not getattr(builder, "platform_has_fast_int8", True):
            log.warning("this GPU has no fast INT8")
        config.set_flag(trt.BuilderFlag.INT8)


def _attach_calibrator(
    trt: Any, cuda: Any, builder: Any, config: Any, network: Any, info: ModelInfo, settings: TensorRTSettings,
    csv_path: Path, max_batches: int, out_path: Path, onnx_path: Path,
) -> Any:
    """Entropy calibration on real inputs at fixed shapes (calibration runs at one profile's shapes)."""
    items = read_items(csv_path, info.kind)
    max_batch = settings.max_speech_batch if info.kind == "speech" else settings.max_image_batch
    batch = min(settings.calibration_batch, max_batch, len(items))
    length = settings.opt_samples if info.input_kind == "waveform" else settings.opt_frames
    shapes = calibration_shapes(info, batch, length)
    dtypes = {}
    for i in range(network.num_inputs):
        t = network.get_input(i)
        dtypes[t.name] = trt.nptype(t.dtype)
    cal_profile = builder.create_optimization_profile()
    for name, shape in shapes.items():
        cal_profile.set_shape(name, shape, shape, shape)
    config.set_calibration_profile(cal_profile)
    # the cache depends on the model: key it by the ONNX's hash so a re-exported model recalibrates
    cache = out_path.with_name(f"{out_path.stem}.int8-{sha256_file(onnx_path)[:12]}.calib")
    batches = calibration_batches(items, info, batch, length, max_batches=max_batches)
    calibrator = make_entropy_calibrator(trt, cuda, batches, dtypes, batch, cache)
    config.int8_calibrator = calibrator
    log.info("INT8 calibration on %s: up to %d batches of %d", csv_path, min(max_batches, len(items) // batch), batch)
    return calibrator


def _load_timing_cache(config: Any, path: Path) -> None:
    data = b""
    if path.is_file():
        data = path.read_bytes()
        log.info("reusing the timing cache %s (%d bytes)", path, len(data))
    cache = config.create_timing_cache(data)
    if cache is None and data:
        log.warning("%s: unusable timing cache, starting a fresh one", path)
        cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, False)  # False: refuse a cache from another device or version
