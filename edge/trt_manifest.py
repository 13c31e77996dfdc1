"""TensorRT engines' settings, optimisation profiles and manifests: the plain-Python half of the backend.

A TensorRT engine only runs on the GPU model and TensorRT version it was built with, so
``showsay export engine`` writes a JSON manifest beside every engine (``M.engine.json``) and the
runtime checks it against this device and the config before deserialising anything. Nothing here
imports tensorrt or pycuda: the exporter, the runtime and the CPU-only tests share this module.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import MISSING, asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping

from edge.features import settings_mismatch
from edge.images import ImageSettings
from edge.model_io import IMAGE_INPUT, SPEECH_INPUT, SPEECH_LENGTHS, WAVEFORM_INPUT, ModelError
from edge.settings import SettingsError, setting

MANIFEST_FORMAT = 1
Precision = Literal["fp32", "fp16", "int8"]
# name -> {"min": shape, "opt": shape, "max": shape}; one dict per optimisation profile.
Profile = dict[str, dict[str, list[int]]]


@dataclass(frozen=True)
class TensorRTSettings:
    """Shapes TensorRT engines are built for, and how they are built (used by 'showsay export engine')."""

    min_frames: int = setting(1, "shortest utterance an engine accepts, feature frames (one 25 ms window gives 1)", min=1, max=10000)
    opt_frames: int = setting(100, "utterance length TensorRT tunes kernels for, feature frames", min=1, max=10000)
    max_frames: int = setting(500, "longest utterance an engine accepts, feature frames (500 = 5 s); longer ones are refused", min=1, max=10000)
    min_samples: int = setting(1, "shortest utterance a waveform speech engine (keywords) accepts, samples (the graph pads every utterance itself)", min=1, max=10_000_000)
    opt_samples: int = setting(16000, "utterance length TensorRT tunes waveform engines for, samples (16000 = 1 s)", min=1, max=10_000_000)
    max_samples: int = setting(80000, "longest utterance a waveform speech engine accepts, samples (80000 = 5 s); longer ones are refused", min=1, max=10_000_000)
    opt_speech_batch: int = setting(1, "utterances per call TensorRT tunes for (the daemon embeds one at a time)", min=1, max=256)
    max_speech_batch: int = setting(16, "most utterances per call (benchmark and verify batch them)", min=1, max=256)
    opt_image_batch: int = setting(4, "image candidates per frame TensorRT tunes for", min=1, max=256)
    max_image_batch: int = setting(16, "most image candidates per frame, embedded in one batch; more are refused", min=1, max=256)
    workspace_mb: int = setting(512, "builder workspace memory limit, MiB ('--workspace-mb' overrides)", min=16, max=65536)
    calibration_batch: int = setting(8, "INT8 calibration batch size, inputs (speech is cropped or padded to opt_frames)", min=1, max=256)
    timing_cache_dir: str = setting("~/.cache/showsay/tensorrt", "folder of the builder's timing caches (one per GPU and TensorRT version), reused between builds; relative paths are taken from the config file's directory")

    def validate(self) -> None:
        """Profiles need min <= opt <= max."""
        if not self.min_frames <= self.opt_frames <= self.max_frames:
            raise SettingsError(f"opt_frames: must lie in [min_frames, max_frames] = [{self.min_frames}, {self.max_frames}], got {self.opt_frames}")
        if not self.min_samples <= self.opt_samples <= self.max_samples:
            raise SettingsError(f"opt_samples: must lie in [min_samples, max_samples] = [{self.min_samples}, {self.max_samples}], got {self.opt_samples}")
        if self.opt_speech_batch > self.max_speech_batch:
            raise SettingsError(f"opt_speech_batch: must be <= max_speech_batch ({self.max_speech_batch}), got {self.opt_speech_batch}")
        if self.opt_image_batch > self.max_image_batch:
            raise SettingsError(f"opt_image_batch: must be <= max_image_batch ({self.max_image_batch}), got {self.opt_image_batch}")


def compute_profile(
    kind: str,
    settings: TensorRTSettings,
    feat_dim: int | None = None,
    image_settings: ImageSettings | None = None,
    input_kind: str = "mfcc",
) -> Profile:
    """The optimisation profile (min/opt/max shape per input) of a speech (MFCC or waveform input) or image encoder."""
    s = settings
    if kind == "speech" and input_kind == "waveform":  # the sample axis is dynamic; padding happens inside the graph
        return {
            WAVEFORM_INPUT: {
                "min": [1, s.min_samples],
                "opt": [s.opt_speech_batch, s.opt_samples],
                "max": [s.max_speech_batch, s.max_samples],
            },
            SPEECH_LENGTHS: {"min": [1], "opt": [s.opt_speech_batch], "max": [s.max_speech_batch]},
        }
    if kind == "speech":
        if not feat_dim:
            raise ModelError("a speech profile needs the feature dimension")
        return {
            SPEECH_INPUT: {
                "min": [1, s.min_frames, feat_dim],
                "opt": [s.opt_speech_batch, s.opt_frames, feat_dim],
                "max": [s.max_speech_batch, s.max_frames, feat_dim],
            },
            SPEECH_LENGTHS: {"min": [1], "opt": [s.opt_speech_batch], "max": [s.max_speech_batch]},
        }
    if kind == "image":
        if image_settings is None:
            raise ModelError("an image profile needs the image settings")
        c, n = image_settings.channels, image_settings.size_px
        return {IMAGE_INPUT: {"min": [1, c, n, n], "opt": [s.opt_image_batch, c, n, n], "max": [s.max_image_batch, c, n, n]}}
    raise ModelError(f"unknown encoder kind {kind!r}")


def check_in_profile(shapes: Mapping[str, tuple[int, ...]], profile: Profile, source: str) -> None:
    """Refuse input shapes outside the engine's profile, naming the input and the allowed range."""
    for name, shape in shapes.items():
        bounds = profile.get(name)
        if bounds is None:
            raise ModelError(f"{source}: the engine has no input named {name!r} (inputs: {', '.join(sorted(profile))})")
        lo, hi = bounds["min"], bounds["max"]
        if len(shape) != len(lo) or any(not a <= d <= b for d, a, b in zip(shape, lo, hi)):
            what = _describe_axis(name, shape, lo, hi)
            raise ModelError(
                f"{source}: input {name} of shape {tuple(shape)} is outside the engine's profile "
                f"(min {tuple(lo)}, max {tuple(hi)}){what}; raise the 'tensorrt' settings and rebuild the engine"
            )


def _describe_axis(name: str, shape: tuple[int, ...], lo: list[int], hi: list[int]) -> str:
    if name == SPEECH_INPUT and len(shape) == 3 and not lo[1] <= shape[1] <= hi[1]:
        return f": utterance of {shape[1]} frames, engine takes {lo[1]} to {hi[1]} (tensorrt.min_frames/max_frames)"
    if name == WAVEFORM_INPUT and len(shape) == 2 and not lo[1] <= shape[1] <= hi[1]:
        return f": utterance of {shape[1]} samples, engine takes {lo[1]} to {hi[1]} (tensorrt.min_samples/max_samples)"
    if shape and not lo[0] <= shape[0] <= hi[0]:
        return f": batch of {shape[0]}, engine takes {lo[0]} to {hi[0]} (tensorrt.max_speech_batch/max_image_batch)"
    return ""


@dataclass(frozen=True)
class DeviceIdentity:
    """What an engine is tied to: the GPU model and the TensorRT version."""

    gpu_name: str
    compute_capability: str  # "8.7" for Orin
    tensorrt_version: str


@dataclass(frozen=True)
class EngineManifest:
    """The JSON beside an engine: what it was built from, for which device, with which shapes."""

    kind: str
    model_id: str
    precision: str
    engine_file: str
    engine_sha256: str
    source_onnx: str
    source_onnx_sha256: str
    gpu_name: str
    compute_capability: str
    tensorrt_version: str
    profiles: list[Profile]
    metadata: dict[str, str]  # the ONNX model's metadata props, verbatim
    speech_features: dict[str, Any] | None = None
    workspace_mb: int = 0
    built_utc: str = ""
    exporter: str = ""
    format: int = MANIFEST_FORMAT
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        """Indented JSON text."""
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str, source: str) -> "EngineManifest":
        """Parse a manifest; ``source`` names the file in errors."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ModelError(f"{source}: not a valid engine manifest ({exc})") from None
        if not isinstance(data, dict):
            raise ModelError(f"{source}: not a valid engine manifest (expected a JSON object)")
        if data.get("format") != MANIFEST_FORMAT:
            raise ModelError(f"{source}: manifest format {data.get('format')!r}, this runtime reads format {MANIFEST_FORMAT}; rebuild the engine")
        known = set(cls.__dataclass_fields__)
        required = {k for k, f in cls.__dataclass_fields__.items() if f.default is MISSING and f.default_factory is MISSING}
        missing = sorted(k for k in required if k not in data)
        if missing:
            raise ModelError(f"{source}: engine manifest lacks {', '.join(missing)}; rebuild the engine")
        return cls(**{k: v for k, v in data.items() if k in known})


def manifest_path(engine_path: str | os.PathLike) -> Path:
    """Where the manifest of ``engine_path`` lives: ``M.engine.json`` beside ``M.engine``."""
    p = Path(engine_path)
    return p.with_name(p.name + ".json")


def read_manifest(engine_path: str | os.PathLike) -> EngineManifest:
    """The manifest beside an engine; a missing one is refused with how to rebuild."""
    path = manifest_path(engine_path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelError(
            f"{engine_path}: no manifest beside the engine ({path.name}); engines must be built with "
            f"'showsay export engine --onnx MODEL.onnx --out {engine_path}' on this device"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: cannot read the engine manifest ({exc})") from None
    return EngineManifest.from_json(text, str(path))


def rebuild_hint(manifest: EngineManifest, engine_path: str | os.PathLike) -> str:
    """The command that rebuilds this engine on this device."""
    flags = {"fp16": " --fp16", "int8": " --int8 --calibration MANIFEST.csv", "fp32": ""}.get(manifest.precision, "")
    onnx = Path(engine_path).parent / manifest.source_onnx if manifest.source_onnx else Path("MODEL.onnx")
    return f"rebuild it on this device with: showsay export engine --onnx {onnx} --out {engine_path}{flags}"


def check_manifest(
    manifest: EngineManifest,
    engine_path: str | os.PathLike,
    device: DeviceIdentity,
    speech_features: Mapping[str, Any] | None = None,
) -> None:
    """Refuse an engine built for another GPU, TensorRT version or other speech features.

    ``speech_features`` is the config's :class:`SpeechFeatureSettings` as a dict (speech engines only).
    Also refuses an engine whose source ONNX, still beside it, has changed since the build.
    """
    hint = rebuild_hint(manifest, engine_path)
    problems = []
    if manifest.gpu_name != device.gpu_name or manifest.compute_capability != device.compute_capability:
        problems.append(
            f"it was built for GPU {manifest.gpu_name!r} (compute capability {manifest.compute_capability}), "
            f"this device has {device.gpu_name!r} (compute capability {device.compute_capability})"
        )
    if manifest.tensorrt_version != device.tensorrt_version:
        problems.append(f"it was built with TensorRT {manifest.tensorrt_version}, this device has TensorRT {device.tensorrt_version}")
    if problems:
        raise ModelError(f"{engine_path}: cannot run this engine here: {'; '.join(problems)}; {hint}")
    waveform = manifest.metadata.get("showsay.input_kind") == "waveform"  # eats samples: no MFCC settings to agree on
    if speech_features is not None and manifest.kind == "speech" and not waveform:
        diffs = settings_mismatch(dict(speech_features), manifest.speech_features or {})
        if diffs:
            raise ModelError(
                f"{engine_path}: the engine's model was trained on other speech features than the config computes "
                f"({'; '.join(diffs)}); set speech_features in the config to the engine's values, or export an ONNX model "
                f"trained with the config's features and {hint.replace('rebuild it', 'rebuild the engine from it')}"
            )
    source = Path(engine_path).parent / manifest.source_onnx if manifest.source_onnx else None
    if source is not None and source.is_file() and sha256_file(source) != manifest.source_onnx_sha256:
        raise ModelError(f"{engine_path}: {source.name} beside it changed since the engine was built (sha256 differs); {hint}")


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def timing_cache_path(settings: TensorRTSettings, device: DeviceIdentity) -> Path:
    """The builder's timing cache for this GPU and TensorRT version (caches do not transfer between them)."""
    slug = "".join(ch if ch.isalnum() else "-" for ch in device.gpu_name).strip("-").lower() or "gpu"
    name = f"timing-trt{device.tensorrt_version}-{slug}-sm{device.compute_capability.replace('.', '')}.cache"
    return Path(settings.timing_cache_dir).expanduser() / name
