"""Encoders: one interface, ``embed(batch) -> (N, dim)``, over ONNX Runtime, TensorRT or the baselines.

Speech encoders say what they eat (``input_kind``: ``mfcc`` frames or ``waveform`` samples, from the
model's metadata) and at which rate (``sample_rate_hz``). Every caller (the daemon, ``ask``, memory
re-embedding, the benchmark, the latency benchmark) hands them audio through one method,
``embed_audio(utterances)``: mono float32 samples at the encoder's rate; ``embed(batch)`` takes the
model's own input (feature matrices or waveforms). Image encoders take a preprocessed (N, channels,
size, size) batch (see :func:`embed_crops` for raw crops). The DTW "encoder" returns the features
themselves (its metric is DTW); the pixel "encoder" flattens pixels. Every encoder also says which
benchmark ``protocol`` its results belong to: ``seeds`` (trained only on background data) or
``pretrained``.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, Sequence

import numpy as np

from edge.audio import resample
from edge.features import SpeechFeatureSettings, settings_mismatch, speech_features
from edge.images import ImageSettings, preprocess_batch
from edge.matching import SpeechMetric, SupportSet, pack_fused
from edge.model_io import (
    EMBEDDING_OUTPUT,
    InputKind,
    ModelError,
    ModelInfo,
    Protocol as BenchProtocol,
    model_feeds,
    model_inputs,
)
from edge.model_probe import probe_image_encoder, probe_speech_encoder
from edge.settings import setting

log = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).resolve().parent / "models"
# Shipped encoders by name; a name not here is taken as a path to an .onnx file (or .engine).
# 'default' is what 'triplet' was called before the pretrained 'keywords' encoder shipped: kept as an
# alias of 'triplet' so that a config written then runs as before (its thresholds were measured for it).
SHIPPED_SPEECH = {
    "keywords": "keywords.onnx",
    "keywords-head": "keywords_head.onnx",
    "triplet": "speech.onnx",
    "ensemble": "speech_ensemble3.onnx",
    "default": "speech.onnx",
}
OLD_SPEECH_NAMES = {"default": "triplet"}
SHIPPED_IMAGE = {"digits": "image_digits.onnx", "objects": "image_objects.onnx", "default": "image_digits.onnx"}
PIXEL_SETTINGS = ImageSettings(size_px=28, color="gray")


@dataclass(frozen=True)
class EncoderSettings:
    """Which encoders turn speech and images into embeddings, and on what runtime."""

    speech: str = setting(
        "keywords",
        "speech encoder: 'keywords' (Google's pretrained speech_embedding over 16 kHz samples, edge/models/README.md), "
        "'keywords-head' (the same frames through a small head trained here on non-digit words; the thresholds were chosen for keywords), "
        "'triplet' (ours, MFCC frames, trained on background words only), 'ensemble' (three training seeds of triplet as one), "
        "'dtw' (MFCC frames, baseline) or a path to an .onnx/.engine file; 'default' is an old name of 'triplet'",
    )
    image: str = setting("objects", "image encoder: 'pixels' (baseline), 'digits' (handwriting), 'objects' (natural objects) or a path")
    backend: Literal["onnxruntime", "tensorrt"] = setting("onnxruntime", "runtime for model files: onnxruntime (CPU) or tensorrt (Jetson, needs .engine files)")
    threads: int = setting(1, "ONNX Runtime intra-op threads per session (keep low on small CPUs)", min=1, max=64)
    fuse_dtw: float | None = setting(
        None,
        "weight of DTW over the MFCC frames fused with a model speech encoder, 0-1: the embedding shortlists the 10 "
        "nearest utterances, DTW re-ranks them (0 = the embedding alone; ignored for speech: dtw); null = the value "
        "chosen for that encoder on held-out speakers (keywords, keywords-head and triplet 0, ensemble 0.1; see fuse_dtw_for)",
        min=0.0,
        max=1.0,
    )


# What the held-out real speakers chose for encoders whose file records no recommendation
# (edge/models/README.md, "Choosing on held-out speakers"); a model's showsay.recommended wins. The
# networks trained with real voices (issue 16): one gains 1.0 from DTW at 0.1, inside its +-1.3, so none; the
# three-seed ensemble gains 1.4 at 0.1 (paired +-0.5), outside its +-1.2, so 0.1 (0.5 costs both 3-4 points).
FUSE_DTW_CHOSEN = {"triplet": 0.0, "ensemble": 0.1, "default": 0.0}

# matching.unknown_word_distance "encoder": the threshold where taught words (said by other speakers) are
# answered as often as untaught ones are rejected, measured on the held-out real speakers with each shipped
# encoder as loaded (tools/thresholds.py --speech-encoder NAME --no-images; docs/daemon.md). A model file's
# showsay.recommended "unknown_word_distance" wins; an encoder in neither rejects nothing (and says so).
UNKNOWN_WORD_CHOSEN = {"keywords": 0.24, "keywords-head": 0.51, "triplet": 0.47, "default": 0.47, "ensemble": 0.47, "dtw": 0.725}


def unknown_word_distance_for(settings: EncoderSettings, info: ModelInfo | None = None) -> float | None:
    """The unknown-word threshold measured for this speech encoder: the model's recorded choice, else the table's, else None."""
    if info is not None and "unknown_word_distance" in info.recommended:
        return float(info.recommended["unknown_word_distance"])
    return UNKNOWN_WORD_CHOSEN.get(settings.speech)


def fuse_dtw_for(settings: EncoderSettings, info: ModelInfo | None = None) -> float:
    """The DTW weight for this speech encoder: the config's number, else the model's recorded choice, else the table's, else 0."""
    if settings.fuse_dtw is not None:
        return settings.fuse_dtw
    if info is not None and "fuse_dtw" in info.recommended:
        return float(info.recommended["fuse_dtw"])
    return FUSE_DTW_CHOSEN.get(settings.speech, 0.0)


class SpeechEncoder(Protocol):
    """Maps utterances to what the support set compares."""

    encoder_id: str
    metric: SpeechMetric
    input_kind: InputKind  # "mfcc" or "waveform": what embed() takes
    sample_rate_hz: int  # embed_audio() takes mono float32 samples at this rate
    protocol: BenchProtocol
    # matching.unknown_word_distance "encoder" takes this (set by load_speech_encoder; None: none measured)
    unknown_word_distance: float | None

    def embed(self, batch: Sequence[np.ndarray]) -> np.ndarray | list[np.ndarray]:
        """Embeddings (N, dim) of the model's own inputs (feature matrices or waveforms); DTW: the feature matrices."""
        ...

    def embed_audio(self, utterances: Sequence[np.ndarray]) -> np.ndarray | list[np.ndarray]:
        """The same for mono float32 utterances at ``sample_rate_hz``: what every caller uses."""
        ...


class ImageEncoder(Protocol):
    """Maps preprocessed image batches to (N, dim) embeddings."""

    encoder_id: str
    settings: ImageSettings
    protocol: BenchProtocol

    def embed(self, images: np.ndarray) -> np.ndarray:
        """(N, dim) embeddings of a (N, channels, size, size) batch."""
        ...


def embed_crops(encoder: ImageEncoder, crops: Sequence[np.ndarray]) -> np.ndarray:
    """(N, dim) embeddings of raw uint8 crops, preprocessed with the encoder's own settings."""
    return encoder.embed(preprocess_batch(list(crops), encoder.settings))


def mirror_id(encoder_id: str) -> str:
    """The key under which the embeddings of an encoder's mirrored crops are stored (``teach.mirror_views``)."""
    return f"{encoder_id}+mirror"


def mirrored(crop: np.ndarray) -> np.ndarray:
    """The crop flipped left-right."""
    return np.ascontiguousarray(crop[:, ::-1])


def embed_with_mirror(encoder: ImageEncoder, crops: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(N, dim) embeddings of the crops and (N, dim) of the same crops flipped left-right, in one batch."""
    out = embed_crops(encoder, [*crops, *(mirrored(c) for c in crops)])
    return out[: len(crops)], out[len(crops):]


class DtwSpeech:
    """The baseline: utterances are compared frame by frame with DTW, so the 'embedding' is the features."""

    metric: SpeechMetric = "dtw"
    input_kind: InputKind = "mfcc"
    protocol: BenchProtocol = "seeds"
    unknown_word_distance: float | None = None  # set by load_speech_encoder: the threshold measured for it

    def __init__(self, feature_settings: SpeechFeatureSettings) -> None:
        self.features = feature_settings
        self.sample_rate_hz = feature_settings.sample_rate_hz
        self.encoder_id = "dtw-mfcc-" + _short_hash(repr(feature_settings.as_dict()))

    def embed(self, features: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The feature matrices, unchanged."""
        return [np.asarray(f, np.float32) for f in features]

    def embed_audio(self, utterances: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The utterances' MFCC frames."""
        return [speech_features(u, self.features) for u in utterances]


class FusedSpeech:
    """A model speech encoder fused with DTW: each utterance keeps its embedding and its MFCC frames."""

    metric: SpeechMetric = "fused"
    unknown_word_distance: float | None = None  # set by load_speech_encoder: the threshold measured for it

    def __init__(self, inner: SpeechEncoder, dtw_weight: float, feature_settings: SpeechFeatureSettings | None = None) -> None:
        self.inner, self.dtw_weight = inner, float(dtw_weight)
        self.features = feature_settings or SpeechFeatureSettings()
        self.encoder_id = f"{inner.encoder_id}+dtw"  # the weight is applied at matching time, not stored
        self.input_kind, self.sample_rate_hz, self.protocol = inner.input_kind, inner.sample_rate_hz, inner.protocol

    def embed(self, features: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Packed (embedding, frames) per utterance (:func:`edge.matching.pack_fused`); MFCC models only."""
        if self.input_kind != "mfcc":
            raise TypeError(f"{self.inner.encoder_id} eats waveforms: call embed_audio")
        vectors = self.inner.embed(features)
        return [pack_fused(v, f) for v, f in zip(vectors, features)]

    def embed_audio(self, utterances: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Packed (embedding, MFCC frames) per utterance; the frames at the configured feature rate."""
        vectors = self.inner.embed_audio(utterances)
        rate = self.features.sample_rate_hz
        frames = [speech_features(resample(u, self.sample_rate_hz, rate) if rate != self.sample_rate_hz else u, self.features) for u in utterances]
        return [pack_fused(v, f) for v, f in zip(vectors, frames)]


def support_set_for(encoder: SpeechEncoder) -> SupportSet:
    """An empty support set that compares utterances the way this speech encoder needs."""
    return SupportSet(encoder.metric, dtw_weight=getattr(encoder, "dtw_weight", 0.5))


class PixelImage:
    """The baseline: images compared by cosine distance over their pixels."""

    protocol: BenchProtocol = "seeds"

    def __init__(self, settings: ImageSettings = PIXEL_SETTINGS) -> None:
        self.settings = settings
        self.encoder_id = "pixels-" + _short_hash(repr(settings.as_dict()))

    def embed(self, images: np.ndarray) -> np.ndarray:
        """Flattened pixels, (N, channels * size * size)."""
        return np.asarray(images, np.float32).reshape(len(images), -1)


def _short_hash(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()[:8]


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
    """An exported encoder on ONNX Runtime (CPU); speech (MFCC or waveform input) or image by its metadata."""

    metric: SpeechMetric = "cosine"
    unknown_word_distance: float | None = None  # set by load_speech_encoder: the threshold measured for it

    def __init__(self, path: str | os.PathLike, threads: int = 1) -> None:
        self.path = Path(path)
        self._session = _ort_session(self.path, threads)
        self.info = read_onnx_info(self.path, self._session)
        self.encoder_id = self.info.model_id
        self.settings = self.info.image_settings  # image encoders only
        self.input_kind, self.sample_rate_hz, self.protocol = self.info.input_kind, self.info.sample_rate_hz, self.info.protocol
        names = {i.name for i in self._session.get_inputs()}  # type: ignore[attr-defined]
        expected = self.info.input_names
        if names != expected:
            raise ModelError(f"{self.path}: inputs are {sorted(names)}, expected {sorted(expected)} for a {self.info.kind} encoder ({self.input_kind} input)")

    def embed(self, batch: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """(N, dim) embeddings: feature matrices or waveforms for speech (by ``input_kind``), an image batch for images."""
        if len(batch) == 0:
            return np.zeros((0, self.info.embedding_dim), np.float32)
        if self.input_kind == "waveform" and len(batch) > 1:
            # one utterance per run: on a CPU, padding a batch of waveforms to its longest costs more than batching saves
            return np.concatenate([self.embed(batch[i : i + 1]) for i in range(len(batch))])
        (out,) = self._session.run([EMBEDDING_OUTPUT], model_feeds(self.info, batch))  # type: ignore[attr-defined]
        return out

    def embed_audio(self, utterances: Sequence[np.ndarray]) -> np.ndarray:
        """(N, dim) embeddings of mono float32 utterances at ``sample_rate_hz`` (speech encoders)."""
        return self.embed(model_inputs(self.info, utterances))


def check_speech_features(info: ModelInfo, ours: SpeechFeatureSettings, source: str) -> None:
    """Refuse an MFCC speech model trained on other features than this runtime computes (waveform models need none)."""
    if info.input_kind == "waveform":
        return
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
        dtw = DtwSpeech(features)
        dtw.unknown_word_distance = unknown_word_distance_for(settings)
        return dtw
    if settings.speech in OLD_SPEECH_NAMES:
        log.info("encoders.speech: %r is the old name of %r (kept so older configs run as before)", settings.speech, OLD_SPEECH_NAMES[settings.speech])
    path = model_path(settings.speech, SHIPPED_SPEECH)
    enc = _load_model(path, settings, features)
    if enc.info.kind != "speech":
        raise ModelError(f"{path}: an {enc.info.kind} encoder was given as the speech encoder")
    check_speech_features(enc.info, features, str(path))
    probe_speech_encoder(enc, features, str(path))  # one run on a probe input: names, shape, finiteness, weights hash
    weight = fuse_dtw_for(settings, enc.info)
    speech: SpeechEncoder = FusedSpeech(enc, weight, features) if weight > 0 else enc
    speech.unknown_word_distance = unknown_word_distance_for(settings, enc.info)
    return speech


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
