"""Encoders: one interface, ``embed(batch) -> (N, dim)``, over ONNX Runtime, TensorRT or the baselines.

Speech encoders take a list of (frames, feat_dim) feature matrices; image encoders take a
preprocessed (N, channels, size, size) batch (see :func:`embed_crops` for raw crops). The DTW
"encoder" returns the features themselves (its metric is DTW); the pixel "encoder" flattens pixels.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, Sequence

import numpy as np

from edge.features import SpeechFeatureSettings, settings_mismatch
from edge.images import ImageSettings, preprocess_batch
from edge.matching import SpeechMetric, SupportSet, pack_fused
from edge.model_io import (
    EMBEDDING_OUTPUT,
    IMAGE_INPUT,
    SPEECH_INPUT,
    SPEECH_LENGTHS,
    ModelError,
    ModelInfo,
)
from edge.model_probe import probe_image_encoder, probe_speech_encoder
from edge.settings import setting

log = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).resolve().parent / "models"
# Shipped encoders by name; a name not here is taken as a path to an .onnx file (or .engine).
SHIPPED_SPEECH = {"default": "speech.onnx", "ensemble": "speech_ensemble5.onnx"}
SHIPPED_IMAGE = {"digits": "image_digits.onnx", "objects": "image_objects.onnx", "default": "image_digits.onnx"}
PIXEL_SETTINGS = ImageSettings(size_px=28, color="gray")


@dataclass(frozen=True)
class EncoderSettings:
    """Which encoders turn speech and images into embeddings, and on what runtime."""

    speech: str = setting("default", "speech encoder: 'dtw' (MFCC frames, baseline), 'default' (shipped ONNX), 'ensemble' (five training seeds of it as one: about 1 point more accurate, 5x the embedding time) or a path to an .onnx/.engine file")
    image: str = setting("objects", "image encoder: 'pixels' (baseline), 'digits' (handwriting), 'objects' (natural objects) or a path")
    backend: Literal["onnxruntime", "tensorrt"] = setting("onnxruntime", "runtime for model files: onnxruntime (CPU) or tensorrt (Jetson, needs .engine files)")
    threads: int = setting(1, "ONNX Runtime intra-op threads per session (keep low on small CPUs)", min=1, max=64)
    fuse_dtw: float = setting(
        0.5,
        "weight of DTW over the MFCC frames fused with a model speech encoder, 0-1: the embedding shortlists the 10 "
        "nearest utterances, DTW re-ranks them (0 = the embedding alone; ignored for speech: dtw)",
        min=0.0,
        max=1.0,
    )


class SpeechEncoder(Protocol):
    """Maps utterances' feature matrices to what the support set compares."""

    encoder_id: str
    metric: SpeechMetric

    def embed(self, features: Sequence[np.ndarray]) -> np.ndarray | list[np.ndarray]:
        """Embeddings (N, dim) for cosine encoders; the feature matrices themselves for DTW."""
        ...


class ImageEncoder(Protocol):
    """Maps preprocessed image batches to (N, dim) embeddings."""

    encoder_id: str
    settings: ImageSettings

    def embed(self, images: np.ndarray) -> np.ndarray:
        """(N, dim) embeddings of a (N, channels, size, size) batch."""
        ...


def embed_crops(encoder: ImageEncoder, crops: Sequence[np.ndarray]) -> np.ndarray:
    """(N, dim) embeddings of raw uint8 crops, preprocessed with the encoder's own settings."""
    return encoder.embed(preprocess_batch(list(crops), encoder.settings))


class DtwSpeech:
    """The baseline: utterances are compared frame by frame with DTW, so the 'embedding' is the features."""

    metric: SpeechMetric = "dtw"

    def __init__(self, feature_settings: SpeechFeatureSettings) -> None:
        self.encoder_id = "dtw-mfcc-" + _short_hash(repr(feature_settings.as_dict()))

    def embed(self, features: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The feature matrices, unchanged."""
        return [np.asarray(f, np.float32) for f in features]


class FusedSpeech:
    """A model speech encoder fused with DTW: each utterance keeps its embedding and its feature frames."""

    metric: SpeechMetric = "fused"

    def __init__(self, inner: SpeechEncoder, dtw_weight: float) -> None:
        self.inner, self.dtw_weight = inner, float(dtw_weight)
        self.encoder_id = f"{inner.encoder_id}+dtw"  # the weight is applied at matching time, not stored

    def embed(self, features: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Packed (embedding, frames) per utterance (:func:`edge.matching.pack_fused`)."""
        vectors = self.inner.embed(features)
        return [pack_fused(v, f) for v, f in zip(vectors, features)]


def support_set_for(encoder: SpeechEncoder) -> SupportSet:
    """An empty support set that compares utterances the way this speech encoder needs."""
    return SupportSet(encoder.metric, dtw_weight=getattr(encoder, "dtw_weight", 0.5))


class PixelImage:
    """The baseline: images compared by cosine distance over their pixels."""

    def __init__(self, settings: ImageSettings = PIXEL_SETTINGS) -> None:
        self.settings = settings
        self.encoder_id = "pixels-" + _short_hash(repr(settings.as_dict()))

    def embed(self, images: np.ndarray) -> np.ndarray:
        """Flattened pixels, (N, channels * size * size)."""
        return np.asarray(images, np.float32).reshape(len(images), -1)


def _short_hash(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:8]


def pad_features(features: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Zero-padded (N, T_max, D) batch and (N,) int32 lengths of variable-length feature matrices."""
    lengths = np.array([f.shape[0] for f in features], np.int32)
    batch = np.zeros((len(features), int(lengths.max()), features[0].shape[1]), np.float32)
    for i, f in enumerate(features):
        batch[i, : f.shape[0]] = f
    return batch, lengths


def read_onnx_info(path: Path, session: "object | None" = None) -> ModelInfo:
    """Metadata of an ONNX encoder, read through ONNX Runtime (the onnx package is not a runtime dependency)."""
    if session is None:
        session = _ort_session(path, threads=1)
    meta = session.get_modelmeta().custom_metadata_map  # type: ignore[attr-defined]
    return ModelInfo.from_metadata(meta, str(path))


def _ort_session(path: Path, threads: int) -> "object":
    import onnxruntime as ort

    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own Fail/InvalidGraph/... types for corrupt files
        raise ModelError(f"{path}: not a loadable ONNX model ({type(exc).__name__}: {exc})") from None


class OnnxEncoder:
    """An exported encoder on ONNX Runtime (CPU); speech or image by its metadata."""

    metric: SpeechMetric = "cosine"

    def __init__(self, path: str | os.PathLike, threads: int = 1) -> None:
        self.path = Path(path)
        self._session = _ort_session(self.path, threads)
        self.info = read_onnx_info(self.path, self._session)
        self.encoder_id = self.info.model_id
        self.settings = self.info.image_settings  # image encoders only
        names = {i.name for i in self._session.get_inputs()}  # type: ignore[attr-defined]
        expected = {SPEECH_INPUT, SPEECH_LENGTHS} if self.info.kind == "speech" else {IMAGE_INPUT}
        if names != expected:
            raise ModelError(f"{self.path}: inputs are {sorted(names)}, expected {sorted(expected)} for a {self.info.kind} encoder")

    def embed(self, batch: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """(N, dim) embeddings: a list of feature matrices for speech, an image batch for images."""
        if len(batch) == 0:
            return np.zeros((0, self.info.embedding_dim), np.float32)
        if self.info.kind == "speech":
            feats, lengths = pad_features(batch)  # type: ignore[arg-type]
            feeds = {SPEECH_INPUT: feats, SPEECH_LENGTHS: lengths}
        else:
            feeds = {IMAGE_INPUT: np.ascontiguousarray(batch, np.float32)}
        (out,) = self._session.run([EMBEDDING_OUTPUT], feeds)  # type: ignore[attr-defined]
        return out


def check_speech_features(info: ModelInfo, ours: SpeechFeatureSettings, source: str) -> None:
    """Refuse a speech model trained on other features than this runtime computes."""
    diffs = settings_mismatch(ours.as_dict(), info.speech_features or {})
    if diffs:
        raise ModelError(
            f"{source}: the model was trained on other speech features than the config computes ({'; '.join(diffs)}); "
            "set speech_features in the config to the model's values or use a model trained with yours"
        )


def model_path(name: str, shipped: dict[str, str]) -> Path:
    """Path of a shipped encoder by name, or the name itself as a path."""
    if name in shipped:
        return MODELS_DIR / shipped[name]
    return Path(name).expanduser()


def load_speech_encoder(settings: EncoderSettings, features: SpeechFeatureSettings) -> SpeechEncoder:
    """The configured speech encoder, checked against the configured features."""
    if settings.speech == "dtw":
        return DtwSpeech(features)
    path = model_path(settings.speech, SHIPPED_SPEECH)
    enc = _load_model(path, settings, features)
    if enc.info.kind != "speech":
        raise ModelError(f"{path}: an {enc.info.kind} encoder was given as the speech encoder")
    check_speech_features(enc.info, features, str(path))
    probe_speech_encoder(enc, features, str(path))  # one run on a probe input: names, shape, finiteness, weights hash
    return FusedSpeech(enc, settings.fuse_dtw) if settings.fuse_dtw > 0 else enc


def load_image_encoder(settings: EncoderSettings) -> ImageEncoder:
    """The configured image encoder."""
    if settings.image == "pixels":
        return PixelImage()
    path = model_path(settings.image, SHIPPED_IMAGE)
    enc = _load_model(path, settings)
    if enc.info.kind != "image":
        raise ModelError(f"{path}: a {enc.info.kind} encoder was given as the image encoder")
    probe_image_encoder(enc, str(path))
    return enc


def _load_model(path: Path, settings: EncoderSettings, features: SpeechFeatureSettings | None = None) -> OnnxEncoder:
    if settings.backend == "tensorrt":
        from edge import trt_backend  # imports tensorrt/pycuda only on this path

        # 'M.onnx' (or a shipped name) runs as the 'M.engine' built beside it; its manifest is checked against the features
        return trt_backend.load_engine_encoder(path, features.as_dict() if features else None)  # type: ignore[return-value]
    return OnnxEncoder(path, threads=settings.threads)
