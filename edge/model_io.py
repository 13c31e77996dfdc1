"""Names shared by the exporter and the runtime: tensor names and metadata keys of an encoder model.

An exported encoder is self-describing. Its ONNX ``metadata_props`` (and the manifest beside a
TensorRT engine) carry these keys; the runtime reads them at start-up and refuses a model whose
feature settings differ from its own configuration.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

from edge.images import ImageSettings
from edge.settings import SettingsError, build

# Tensor names. Speech: features (batch, frames, feat_dim) float32 zero-padded past each
# utterance's length, lengths (batch,) int32 valid frames. Image: images (batch, channels, size, size)
# float32 preprocessed by edge.images. Both: embeddings (batch, dim) float32.
SPEECH_INPUT = "features"
SPEECH_LENGTHS = "lengths"
IMAGE_INPUT = "images"
EMBEDDING_OUTPUT = "embeddings"

META_KIND = "showsay.kind"  # "speech" or "image"
META_MODEL_ID = "showsay.model_id"  # e.g. "speech-siamese-s0-3f2a9c1b"
META_EMBEDDING_DIM = "showsay.embedding_dim"
META_SPEECH_FEATURES = "showsay.speech_features"  # JSON of SpeechFeatureSettings.as_dict()
META_IMAGE_SETTINGS = "showsay.image_settings"  # JSON of ImageSettings.as_dict()
META_INPUT_LAYOUT = "showsay.input_layout"  # e.g. "features:(batch,frames,39) lengths:(batch,)"
META_WEIGHTS_SHA256 = "showsay.weights_sha256"  # sha256 of the model's initializers, a content hash
META_TRAINING_DATA = "showsay.training_data"  # one-paragraph summary of what it was trained on
META_EXPORTER = "showsay.exporter_version"

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
        if kind == "speech" and speech is None:
            raise ModelError(f"{source}: a speech encoder must record {META_SPEECH_FEATURES}")
        if kind == "image" and image is None:
            raise ModelError(f"{source}: an image encoder must record {META_IMAGE_SETTINGS}")
        extra = {k: v for k, v in meta.items() if k not in REQUIRED_KEYS}
        return cls(kind, meta[META_MODEL_ID], dim, meta[META_WEIGHTS_SHA256], speech, image, extra)
