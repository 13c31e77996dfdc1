"""Names shared by the exporter and the runtime: tensor names and metadata keys of an encoder model.

An exported encoder is self-describing. Its ONNX ``metadata_props`` (and the manifest beside a
TensorRT engine) carry these keys; the runtime reads them at start-up and refuses a model whose
feature settings differ from its own configuration.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from edge.features import SpeechFeatureSettings, speech_features
from edge.images import ImageSettings
from edge.settings import SettingsError, build

# Tensor names. Speech models eat one of two inputs (``showsay.input_kind``):
#   mfcc:     features (batch, frames, feat_dim) float32 zero-padded past each utterance's length,
#             lengths (batch,) int32 valid frames;
#   waveform: waveform (batch, samples) float32 in [-1, 1] at showsay.sample_rate_hz, zero-padded past
#             each utterance's length, lengths (batch,) int32 valid samples.
# Image: images (batch, channels, size, size) float32 preprocessed by edge.images.
# All: embeddings (batch, dim) float32.
SPEECH_INPUT = "features"
WAVEFORM_INPUT = "waveform"
SPEECH_LENGTHS = "lengths"
IMAGE_INPUT = "images"
EMBEDDING_OUTPUT = "embeddings"

InputKind = Literal["mfcc", "waveform", "image"]
Protocol = Literal["seeds", "pretrained"]

META_KIND = "showsay.kind"  # "speech" or "image"
META_MODEL_ID = "showsay.model_id"  # e.g. "speech-siamese-s0-3f2a9c1b"
META_EMBEDDING_DIM = "showsay.embedding_dim"
META_SPEECH_FEATURES = "showsay.speech_features"  # JSON of SpeechFeatureSettings.as_dict()
META_IMAGE_SETTINGS = "showsay.image_settings"  # JSON of ImageSettings.as_dict()
META_INPUT_LAYOUT = "showsay.input_layout"  # e.g. "features:(batch,frames,39) lengths:(batch,)"
META_WEIGHTS_SHA256 = "showsay.weights_sha256"  # sha256 of the model's initializers, a content hash
META_TRAINING_DATA = "showsay.training_data"  # one-paragraph summary of what it was trained on
META_EXPORTER = "showsay.exporter_version"
META_INPUT_KIND = "showsay.input_kind"  # speech only: "mfcc" (the default when absent) or "waveform"
META_SAMPLE_RATE = "showsay.sample_rate_hz"  # waveform speech models: the rate they take, Hz
META_PROTOCOL = "showsay.protocol"  # "seeds" (trained only on background data) or "pretrained" (declared outside data)
META_RECOMMENDED = "showsay.recommended"  # JSON: settings chosen for this encoder on held-out speakers, e.g. {"fuse_dtw": 0.0}

REQUIRED_KEYS = (META_KIND, META_MODEL_ID, META_EMBEDDING_DIM, META_WEIGHTS_SHA256)


class ModelError(ValueError):
    """A model file is missing, corrupt, or does not fit this runtime's configuration."""


@dataclass(frozen=True)
class ModelInfo:
    """What the runtime needs to know about an encoder, read from its metadata."""

    kind: Literal["speech", "image"]
    model_id: str
    embedding_dim: int
    weights_sha256: str
    speech_features: dict[str, Any] | None = None
    image_settings: ImageSettings | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_metadata(cls, meta: Mapping[str, str], source: str) -> "ModelInfo":
        """Parse metadata props; ``source`` names the file in error messages."""
        missing = [k for k in REQUIRED_KEYS if k not in meta]
        if missing:
            raise ModelError(f"{source}: not a showsay encoder (metadata lacks {', '.join(missing)}); export it with 'showsay export onnx'")
        kind = meta[META_KIND]
        if kind not in ("speech", "image"):
            raise ModelError(f"{source}: {META_KIND} must be speech or image, got {kind!r}")
        try:
            speech = json.loads(meta[META_SPEECH_FEATURES]) if META_SPEECH_FEATURES in meta else None
            image = build(ImageSettings, json.loads(meta[META_IMAGE_SETTINGS])) if META_IMAGE_SETTINGS in meta else None
            dim = int(meta[META_EMBEDDING_DIM])
        except (ValueError, SettingsError) as exc:
            raise ModelError(f"{source}: malformed metadata ({exc})") from None
        input_kind = meta.get(META_INPUT_KIND, "mfcc") if kind == "speech" else "image"
        if input_kind not in ("mfcc", "waveform", "image"):
            raise ModelError(f"{source}: {META_INPUT_KIND} must be mfcc or waveform, got {input_kind!r}")
        if input_kind == "mfcc" and speech is None:
            raise ModelError(f"{source}: a speech encoder must record {META_SPEECH_FEATURES}")
        if input_kind == "waveform":
            try:
                rate = int(meta.get(META_SAMPLE_RATE, ""))
            except ValueError:
                raise ModelError(f"{source}: a waveform speech encoder must record {META_SAMPLE_RATE} (Hz)") from None
            if not 4000 <= rate <= 192000:
                raise ModelError(f"{source}: {META_SAMPLE_RATE} must be 4000-192000, got {rate}")
        try:
            json.loads(meta.get(META_RECOMMENDED, "{}"))
        except ValueError as exc:
            raise ModelError(f"{source}: malformed {META_RECOMMENDED} ({exc})") from None
        if kind == "image" and image is None:
            raise ModelError(f"{source}: an image encoder must record {META_IMAGE_SETTINGS}")
        extra = {k: v for k, v in meta.items() if k not in REQUIRED_KEYS}
        return cls(kind, meta[META_MODEL_ID], dim, meta[META_WEIGHTS_SHA256], speech, image, extra)

    @property
    def input_kind(self) -> InputKind:
        """What the model eats: MFCC frames or waveforms (speech), or images."""
        if self.kind == "image":
            return "image"
        return "waveform" if self.extra.get(META_INPUT_KIND) == "waveform" else "mfcc"

    @property
    def sample_rate_hz(self) -> int | None:
        """The sample rate a speech model's input is computed at (None for images)."""
        if self.kind != "speech":
            return None
        if self.input_kind == "waveform":
            return int(self.extra[META_SAMPLE_RATE])
        return int((self.speech_features or {}).get("sample_rate_hz", 16000))

    @property
    def input_names(self) -> set[str]:
        """The ONNX / TensorRT input tensor names this kind of model has."""
        return {"mfcc": {SPEECH_INPUT, SPEECH_LENGTHS}, "waveform": {WAVEFORM_INPUT, SPEECH_LENGTHS}, "image": {IMAGE_INPUT}}[self.input_kind]

    @property
    def protocol(self) -> Protocol:
        """``seeds`` or ``pretrained``: recorded by the exporter; for older files, ``seeds`` only when made by
        ``showsay train`` (its data are background-only by construction: an objective or ensemble members
        are recorded), otherwise ``pretrained`` (a model of unknown data cannot claim the seeds' protocol)."""
        value = self.extra.get(META_PROTOCOL)
        if value in ("seeds", "pretrained"):
            return value  # type: ignore[return-value]
        return "seeds" if ("showsay.objective" in self.extra or "showsay.members" in self.extra) else "pretrained"

    @property
    def recommended(self) -> dict[str, Any]:
        """Settings recorded for this encoder (``showsay.recommended``), e.g. ``{"fuse_dtw": 0.0}``."""
        return dict(json.loads(self.extra.get(META_RECOMMENDED, "{}")))


def pad_features(features: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Zero-padded (N, T_max, D) batch and (N,) int32 lengths of variable-length feature matrices."""
    lengths = np.array([f.shape[0] for f in features], np.int32)
    batch = np.zeros((len(features), int(lengths.max()), features[0].shape[1]), np.float32)
    for i, f in enumerate(features):
        batch[i, : f.shape[0]] = f
    return batch, lengths


def pad_waveforms(waveforms: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Zero-padded (N, S_max) float32 batch and (N,) int32 lengths (samples) of variable-length waveforms."""
    if any(np.ndim(w) != 1 for w in waveforms):
        raise ValueError("a waveform speech model takes 1-D sample arrays, not feature matrices")
    lengths = np.array([np.asarray(w).reshape(-1).shape[0] for w in waveforms], np.int32)
    batch = np.zeros((len(waveforms), max(1, int(lengths.max()))), np.float32)
    for i, w in enumerate(waveforms):
        batch[i, : lengths[i]] = np.asarray(w, np.float32).reshape(-1)
    return batch, lengths


def model_feeds(info: ModelInfo, batch: Sequence[np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
    """The input tensors of one batch for this model (ONNX Runtime and TensorRT alike).

    ``batch``: feature matrices (mfcc speech models), waveforms (waveform speech models) or an
    (N, C, S, S) image batch.
    """
    if info.input_kind == "mfcc":
        feats, lengths = pad_features(batch)  # type: ignore[arg-type]
        return {SPEECH_INPUT: feats, SPEECH_LENGTHS: lengths}
    if info.input_kind == "waveform":
        wave, lengths = pad_waveforms(batch)  # type: ignore[arg-type]
        return {WAVEFORM_INPUT: wave, SPEECH_LENGTHS: lengths}
    return {IMAGE_INPUT: np.ascontiguousarray(batch, np.float32)}


def model_inputs(info: ModelInfo, utterances: Sequence[np.ndarray]) -> list[np.ndarray]:
    """A speech model's inputs for mono float32 utterances at ``info.sample_rate_hz``: MFCC frames or the waveforms.

    The one place where a speech model's recorded feature settings turn audio into what it eats.
    """
    if info.input_kind == "waveform":
        return [np.asarray(u, np.float32) for u in utterances]
    try:
        settings = build(SpeechFeatureSettings, info.speech_features or {})
    except SettingsError as exc:
        raise ModelError(f"{info.model_id}: malformed speech feature settings in its metadata ({exc})") from None
    return [speech_features(u, settings) for u in utterances]
