"""INT8 calibration over real recordings or images listed in a manifest CSV.

The manifest is the benchmark's (:mod:`edge.bench.manifest`): ``path,label,speaker`` for recordings,
``path,label`` for images, paths relative to the CSV. The batching is plain numpy (:func:`calibration_batches`), so it is
tested without TensorRT; :func:`make_entropy_calibrator` wraps it in TensorRT's
``IInt8EntropyCalibrator2`` on the device.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Union

import numpy as np

from edge.audio import AudioError, read_wav
from edge.bench.manifest import ImageItem, ManifestError, SpeechItem, read_image_manifest, read_speech_manifest
from edge.features import SpeechFeatureSettings, wav_features
from edge.images import ImageError, ImageSettings, load_image, preprocess_image
from edge.model_io import IMAGE_INPUT, SPEECH_INPUT, SPEECH_LENGTHS, WAVEFORM_INPUT, ModelError, ModelInfo, model_inputs
from edge.settings import SettingsError, build
from edge.fileio import write_atomic

log = logging.getLogger(__name__)


Item = Union[SpeechItem, ImageItem]


def read_items(csv_path: str | os.PathLike, kind: str) -> list[Item]:
    """Recordings (``path,label,speaker``) or images (``path,label``) of a benchmark manifest, as ModelError on failure."""
    try:
        return list(read_speech_manifest(csv_path) if kind == "speech" else read_image_manifest(csv_path))
    except ManifestError as exc:
        raise ModelError(str(exc)) from None


def speech_input(item: Item, features: SpeechFeatureSettings) -> np.ndarray:
    """(frames, dim) features of one recording; errors name the file."""
    try:
        return wav_features(item.path, features)
    except (AudioError, OSError, ValueError) as exc:
        raise ModelError(f"{item.path}: cannot compute speech features ({exc})") from None


def speech_model_input(item: Item, info: ModelInfo) -> np.ndarray:
    """What a speech model eats for one recording: (frames, dim) MFCC features or (samples,) at its rate; errors name the file."""
    try:
        return model_inputs(info, [read_wav(item.path, int(info.sample_rate_hz or 16000))])[0]
    except (AudioError, OSError, ValueError) as exc:
        raise ModelError(f"{item.path}: cannot read the recording for the speech model ({exc})") from None


def fix_samples(wave: np.ndarray, samples: int) -> tuple[np.ndarray, int]:
    """Crop (centre) or zero-pad a waveform to exactly ``samples``; returns it and the valid length."""
    n = wave.shape[0]
    if n >= samples:
        start = (n - samples) // 2
        return wave[start : start + samples].astype(np.float32), samples
    out = np.zeros(samples, np.float32)
    out[:n] = wave
    return out, n


def image_input(item: Item, settings: ImageSettings) -> np.ndarray:
    """(channels, size, size) encoder input of one image; errors name the file."""
    try:
        return preprocess_image(load_image(item.path), settings)
    except ImageError as exc:
        raise ModelError(f"{item.path}: {exc}") from None


def feature_settings_of(info: ModelInfo, source: str) -> SpeechFeatureSettings:
    """The speech feature settings a model was trained on, from its metadata."""
    try:
        return build(SpeechFeatureSettings, info.speech_features or {})
    except SettingsError as exc:
        raise ModelError(f"{source}: malformed speech feature settings in its metadata ({exc})") from None


def fix_frames(feats: np.ndarray, frames: int) -> tuple[np.ndarray, int]:
    """Crop (centre) or zero-pad a (T, D) matrix to exactly ``frames`` rows; returns it and the valid length."""
    t = feats.shape[0]
    if t >= frames:
        start = (t - frames) // 2
        return feats[start : start + frames], frames
    out = np.zeros((frames, feats.shape[1]), np.float32)
    out[:t] = feats
    return out, t


def calibration_batches(
    items: Iterable[Item],
    info: ModelInfo,
    batch_size: int,
    frames: int,
    max_batches: int | None = None,
    seed: int = 0,
) -> Iterator[dict[str, np.ndarray]]:
    """Fixed-shape input batches (as TensorRT calibration needs) from real files, in a seeded shuffled order.

    Speech: ``features`` (batch_size, frames, dim) with each utterance centre-cropped or zero-padded
    to ``frames`` and ``lengths`` (batch_size,) int32, or for waveform models ``waveform``
    (batch_size, frames) samples the same way; images: ``images`` (batch_size, C, S, S).
    The last incomplete batch is dropped.
    """
    items = list(items)
    if len(items) < batch_size:
        raise ModelError(f"calibration needs at least {batch_size} files (one batch), the manifest lists {len(items)}")
    order = np.random.default_rng(seed).permutation(len(items))
    n_batches = len(items) // batch_size
    if max_batches is not None:
        n_batches = min(n_batches, max_batches)
    if info.input_kind == "mfcc":
        features = feature_settings_of(info, info.model_id)
    for b in range(n_batches):
        chosen = [items[i] for i in order[b * batch_size : (b + 1) * batch_size]]
        if info.input_kind == "waveform":
            waves = [fix_samples(speech_model_input(it, info), frames) for it in chosen]
            yield {WAVEFORM_INPUT: np.stack([w for w, _ in waves]), SPEECH_LENGTHS: np.array([n for _, n in waves], np.int32)}
        elif info.kind == "speech":
            fixed = [fix_frames(speech_input(it, features), frames) for it in chosen]
            yield {
                SPEECH_INPUT: np.stack([f for f, _ in fixed]).astype(np.float32),
                SPEECH_LENGTHS: np.array([n for _, n in fixed], np.int32),
            }
        else:
            assert info.image_settings is not None  # ModelInfo guarantees it for image encoders
            yield {IMAGE_INPUT: np.stack([image_input(it, info.image_settings) for it in chosen]).astype(np.float32)}


def calibration_shapes(info: ModelInfo, batch_size: int, frames: int) -> dict[str, tuple[int, ...]]:
    """Input shapes of every calibration batch (the calibration profile is fixed to them); ``frames`` are samples for waveform models."""
    if info.input_kind == "waveform":
        return {WAVEFORM_INPUT: (batch_size, frames), SPEECH_LENGTHS: (batch_size,)}
    if info.kind == "speech":
        dim = feature_settings_of(info, info.model_id).dim
        return {SPEECH_INPUT: (batch_size, frames, dim), SPEECH_LENGTHS: (batch_size,)}
    s = info.image_settings
    assert s is not None
    return {IMAGE_INPUT: (batch_size, s.channels, s.size_px, s.size_px)}


def make_entropy_calibrator(
    trt: Any,
    cuda: Any,
    batches: Iterable[Mapping[str, np.ndarray]],
    dtypes: Mapping[str, Any],
    batch_size: int,
    cache_path: Path,
) -> Any:
    """A ``trt.IInt8EntropyCalibrator2`` feeding ``batches`` through device buffers; the cache is kept at ``cache_path``."""

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._batches = iter(batches)
            self._device: dict[str, Any] = {}
            self.batches_used = 0
            self.error: Exception | None = None  # raised by the builder's caller: exceptions cannot cross into TensorRT

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names: list[str]) -> list[int] | None:
            try:
                batch = next(self._batches)
                pointers = []
                for name in names:
                    arr = np.ascontiguousarray(batch[name], dtype=np.dtype(dtypes[name]))
                    dev = self._device.get(name)
                    if dev is None:  # every batch has the same shape, so one buffer per input
                        dev = self._device[name] = cuda.mem_alloc(arr.nbytes)
                    cuda.memcpy_htod(dev, arr)
                    pointers.append(int(dev))
            except StopIteration:
                return None
            except Exception as exc:  # noqa: BLE001 - kept and re-raised after the build
                log.error("calibration batch %d failed: %s", self.batches_used, exc)
                self.error = exc
                return None
            self.batches_used += 1
            log.info("calibration batch %d", self.batches_used)
            return pointers

        def read_calibration_cache(self) -> bytes | None:
            if cache_path.is_file():
                log.info("reusing the calibration cache %s", cache_path)
                return cache_path.read_bytes()
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            write_atomic(cache_path, bytes(cache))
            log.info("wrote the calibration cache %s", cache_path)

    return EntropyCalibrator()
