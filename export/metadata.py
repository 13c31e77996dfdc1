"""Writing showsay metadata into an ONNX model (the runtime reads it back through edge.model_io)."""
from __future__ import annotations

import hashlib
import json
from typing import Any, Mapping

import onnx

from edge import __version__
from edge.model_io import (
    META_EMBEDDING_DIM,
    META_EXPORTER,
    META_IMAGE_SETTINGS,
    META_INPUT_LAYOUT,
    META_KIND,
    META_MODEL_ID,
    META_SPEECH_FEATURES,
    META_TRAINING_DATA,
    META_WEIGHTS_SHA256,
)


def weights_sha256(model: onnx.ModelProto) -> str:
    """Content hash of the model's initializers (names, shapes and bytes), independent of metadata."""
    h = hashlib.sha256()
    for init in sorted(model.graph.initializer, key=lambda t: t.name):
        h.update(init.name.encode())
        h.update(repr(tuple(init.dims)).encode())
        h.update(onnx.numpy_helper.to_array(init).tobytes())
    return h.hexdigest()


def attach_metadata(
    model: onnx.ModelProto,
    *,
    kind: str,
    model_id: str,
    embedding_dim: int,
    input_layout: str,
    training_data: str,
    speech_features: Mapping[str, Any] | None = None,
    image_settings: Mapping[str, Any] | None = None,
    extra: Mapping[str, str] | None = None,
) -> onnx.ModelProto:
    """Set the showsay metadata props on ``model`` (in place) and return it."""
    props = {
        META_KIND: kind,
        META_MODEL_ID: model_id,
        META_EMBEDDING_DIM: str(int(embedding_dim)),
        META_INPUT_LAYOUT: input_layout,
        META_TRAINING_DATA: training_data,
        META_WEIGHTS_SHA256: weights_sha256(model),
        META_EXPORTER: f"showsay {__version__}, onnx {onnx.__version__}",
    }
    if speech_features is not None:
        props[META_SPEECH_FEATURES] = json.dumps(dict(speech_features), sort_keys=True)
    if image_settings is not None:
        props[META_IMAGE_SETTINGS] = json.dumps(dict(image_settings), sort_keys=True)
    props.update(extra or {})
    del model.metadata_props[:]
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model
