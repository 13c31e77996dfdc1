"""Each model runs once on a small probe input before it is trusted: in ``check`` and at start-up, before READY=1.

A model file can load and still fail on its first real use: an output named otherwise than the
runtime asks for, image settings in its metadata that do not fit its graph, NaN embeddings, an
embedding size other than its metadata says, weights changed after export. The encoder loaders
(:func:`edge.encoders.load_speech_encoder`, :func:`edge.encoders.load_image_encoder`) call
:func:`probe_speech_encoder` / :func:`probe_image_encoder`, which check, with a :class:`ModelError`
naming the file for each:

- the ONNX graph's output and image input against the metadata (ONNX Runtime sessions);
- the initializers' sha256 against ``showsay.weights_sha256`` (ONNX files; a TensorRT engine's own
  hash is checked against its manifest by the backend), read straight from the protobuf so the
  ``onnx`` package is not needed on the device;
- one run on two probe inputs of different sizes (speech: 0.45 s and 0.8 s of a synthetic vowel,
  as MFCC frames or as the raw 16 kHz waveform, as the encoder says it takes; images: two synthetic
  crops through the encoder's own preprocessing): the shape is (2, embedding_dim), every value is
  finite, and not every value is zero.

The probe costs one model call and one pass over the file (about 20-120 ms for the shipped models).
"""
from __future__ import annotations

import hashlib
import mmap
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edge import model_io
from edge.features import SpeechFeatureSettings, speech_features
from edge.images import preprocess_batch
from edge.model_io import EMBEDDING_OUTPUT, IMAGE_INPUT, META_WEIGHTS_SHA256, ModelError

WAVEFORM_RATE_HZ = 16000
PROBE_SECONDS = (0.45, 0.8)  # two lengths: a model with a fixed time axis fails here, not on the first word
# The metadata key a waveform-input speech encoder records (the encoder's own ``input_kind`` attribute wins).
META_INPUT_KIND = getattr(model_io, "META_INPUT_KIND", "showsay.input_kind")


def probe_speech_encoder(encoder: Any, features: SpeechFeatureSettings, source: str) -> None:
    """Check a speech encoder on two probe utterances; ModelError naming ``source`` for anything wrong."""
    _check_file(encoder, source)
    kind = input_kind(encoder)
    waves = [_vowel(seconds, WAVEFORM_RATE_HZ if kind == "waveform" else features.sample_rate_hz, i) for i, seconds in enumerate(PROBE_SECONDS)]
    batch = waves if kind == "waveform" else [speech_features(w, features) for w in waves]
    what = "two probe utterances as 16 kHz waveforms" if kind == "waveform" else f"two probe utterances ({batch[0].shape[0]} and {batch[1].shape[0]} MFCC frames)"
    _check_output(_run(encoder, batch, source, what), encoder, source, what)


def probe_image_encoder(encoder: Any, source: str) -> None:
    """Check an image encoder on two probe crops; ModelError naming ``source`` for anything wrong."""
    _check_file(encoder, source)
    settings = encoder.settings
    session = onnx_session(encoder)
    if session is not None and settings is not None:
        for tensor in session.get_inputs():
            if tensor.name != IMAGE_INPUT or len(tensor.shape) != 4:
                continue
            want = (settings.channels, settings.size_px, settings.size_px)
            graph = tuple(tensor.shape[1:])
            if any(isinstance(g, int) and g != w for g, w in zip(graph, want)):
                raise ModelError(
                    f"{source}: its image_settings ({settings.size_px} px {settings.color}: input (batch, {want[0]}, {want[1]}, {want[2]})) "
                    f"do not fit the graph's input {IMAGE_INPUT} {['batch', *graph]}; re-export it with matching settings"
                )
    crops = [_crop(40, 56, 0), _crop(64, 48, 1)]
    what = "two probe crops"
    try:
        batch = preprocess_batch(crops, settings)
    except Exception as exc:  # noqa: BLE001 - bad settings in the metadata
        raise ModelError(f"{source}: its image_settings cannot preprocess a crop ({type(exc).__name__}: {_short(exc)})") from None
    _check_output(_run(encoder, batch, source, what), encoder, source, what)


def input_kind(encoder: Any) -> str:
    """'frames' (MFCC feature matrices) or 'waveform' (raw 16 kHz samples): what a speech encoder takes."""
    kind = getattr(encoder, "input_kind", None)
    if kind is None:
        info = getattr(encoder, "info", None)
        kind = (getattr(info, "extra", None) or {}).get(META_INPUT_KIND)
    return "waveform" if kind in ("waveform", "wave", "samples") else "frames"


def onnx_session(encoder: Any) -> Any | None:
    """The encoder's ONNX Runtime session when it runs on one (duck-typed: the probe does not import the encoders)."""
    session = getattr(encoder, "_session", None)
    return session if hasattr(session, "get_outputs") and hasattr(session, "get_modelmeta") else None


def _check_file(encoder: Any, source: str) -> None:
    session = onnx_session(encoder)
    if session is None:
        return  # TensorRT engines: names, shapes and the engine's hash are checked by the backend against its manifest
    outputs = [o.name for o in session.get_outputs()]
    if EMBEDDING_OUTPUT not in outputs:
        raise ModelError(f"{source}: the graph's outputs are {outputs}, the runtime reads {EMBEDDING_OUTPUT!r}; re-export it with 'showsay export onnx'")
    path = Path(getattr(encoder, "path", source))
    recorded = encoder.info.weights_sha256
    actual = onnx_weights_sha256(path)
    if actual != recorded:
        raise ModelError(
            f"{source}: its weights changed after export ({META_WEIGHTS_SHA256} records {recorded[:12]}..., "
            f"the file's initializers hash to {actual[:12]}...); use the exported file or export it again"
        )


def _run(encoder: Any, batch: Any, source: str, what: str) -> np.ndarray:
    try:
        return np.asarray(encoder.embed(batch))
    except ModelError as exc:
        raise ModelError(f"{source}: the first run on {what} failed: {_short(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - ORT/TensorRT raise their own types for graphs that do not fit
        raise ModelError(f"{source}: the first run on {what} failed ({type(exc).__name__}: {_short(exc)})") from None


def _check_output(out: np.ndarray, encoder: Any, source: str, what: str) -> None:
    dim = encoder.info.embedding_dim
    if out.shape != (2, dim):
        got = f"{out.shape[1]}-dimensional embeddings" if out.ndim == 2 and out.shape[0] == 2 else f"an output of shape {out.shape}"
        raise ModelError(f"{source}: gives {got} for {what}; its metadata (showsay.embedding_dim) says (2, {dim})")
    if not np.issubdtype(out.dtype, np.floating):
        raise ModelError(f"{source}: gives {out.dtype} embeddings, expected floats")
    bad = int(np.count_nonzero(~np.isfinite(out)))
    if bad:
        raise ModelError(f"{source}: gives non-finite embeddings (NaN or infinity in {bad} of {out.size} values) for {what}")
    if not np.any(out):
        raise ModelError(f"{source}: gives all-zero embeddings for {what}")


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _vowel(seconds: float, rate_hz: int, seed: int) -> np.ndarray:
    """A synthetic vowel: a 120-160 Hz pulse train through two formants, with a little noise; float32 in [-1, 1]."""
    t = np.arange(int(seconds * rate_hz)) / rate_hz
    f0 = 120.0 + 40.0 * seed
    voice = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 12))
    formants = 1.0 + 0.8 * np.sin(2 * np.pi * 700.0 * t) + 0.5 * np.sin(2 * np.pi * 1200.0 * t)
    noise = np.random.default_rng(seed).standard_normal(t.size)
    wave = voice * formants * np.hanning(t.size) + 0.02 * noise
    return (0.5 * wave / np.max(np.abs(wave))).astype(np.float32)


def _crop(height: int, width: int, seed: int) -> np.ndarray:
    """A synthetic RGB crop: a coloured disc on a gradient with noise, uint8 (H, W, 3)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    img = np.stack([x * 255.0 / width, y * 255.0 / height, np.full((height, width), 90.0 + 60 * seed)], axis=-1)
    disc = (x - width / 2) ** 2 + (y - height / 2) ** 2 < (min(height, width) / 3) ** 2
    img[disc] = (200.0, 40.0 + 120 * seed, 60.0)
    return np.clip(img + rng.normal(0, 8, img.shape), 0, 255).astype(np.uint8)


# ---------------------------------------------------------------------------- weights hash from the ONNX protobuf

# TensorProto.DataType -> numpy dtype of its values (as onnx.numpy_helper.to_array gives them).
_DTYPES = {1: np.float32, 2: np.uint8, 3: np.int8, 4: np.uint16, 5: np.int16, 6: np.int32, 7: np.int64,
           9: np.bool_, 10: np.float16, 11: np.float64, 12: np.uint32, 13: np.uint64, 16: np.uint16}
_FROM_INT32_DATA = {2, 3, 4, 5, 6, 9, 10, 16}  # stored one per varint in int32_data (float16/bfloat16 as their bits)


def onnx_weights_sha256(path: str | os.PathLike) -> str:
    """The exporter's content hash (export.metadata.weights_sha256) of an ONNX file, without the onnx package.

    sha256 over the graph's initializers sorted by name: name, ``repr(tuple(dims))``, the values' bytes.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            data = memoryview(mm)
            try:
                tensors = []
                for field, value in _fields(data, 0, len(data)):
                    if field == 7:  # ModelProto.graph
                        tensors += [_tensor(data, s, e, path.parent) for f2, (s, e) in _fields(data, *value) if f2 == 5]
                h = hashlib.sha256()
                for name, dims, payload in sorted(tensors, key=lambda t: t[0]):
                    h.update(name.encode())
                    h.update(repr(tuple(dims)).encode())
                    h.update(payload)
                return h.hexdigest()
            finally:
                data.release()
    except (OSError, ValueError, IndexError) as exc:
        raise ModelError(f"{path}: cannot read its initializers to verify {META_WEIGHTS_SHA256} ({_short(exc)})") from None


def _varint(data: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("malformed varint")


def _fields(data: memoryview, start: int, end: int) -> Iterator[tuple[int, Any]]:
    """(field number, value) of one protobuf message: an int for varints, (start, end) for length-delimited fields."""
    pos = start
    while pos < end:
        key, pos = _varint(data, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = bytes(data[pos : pos + 8]), pos + 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = (pos, pos + length), pos + length
        elif wire == 5:
            value, pos = bytes(data[pos : pos + 4]), pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > end:
            raise ValueError("truncated protobuf message")
        yield field, value


def _varints(data: memoryview, value: Any) -> list[int]:
    if isinstance(value, int):
        return [value]
    out, pos = [], value[0]
    while pos < value[1]:
        v, pos = _varint(data, pos)
        out.append(v)
    return out


def _tensor(data: memoryview, start: int, end: int, base_dir: Path) -> tuple[str, list[int], bytes]:
    """(name, dims, bytes of the values as numpy holds them) of one TensorProto."""
    name, dims, dtype, raw, external, location = "", [], 0, None, {}, 0
    typed: dict[int, list[Any]] = {}
    for field, value in _fields(data, start, end):
        if field == 1:
            dims += [v - (1 << 64) if v >= 1 << 63 else v for v in _varints(data, value)]
        elif field == 2:
            dtype = value
        elif field == 8:
            name = bytes(data[value[0] : value[1]]).decode("utf-8")
        elif field == 9:
            raw = bytes(data[value[0] : value[1]])
        elif field == 13:  # external_data: key/value entries
            entry = {f: bytes(data[v[0] : v[1]]).decode("utf-8") for f, v in _fields(data, *value)}
            external[entry.get(1, "")] = entry.get(2, "")
        elif field == 14:
            location = value
        elif field in (4, 10):  # float_data (fixed32), double_data (fixed64): packed or one by one
            typed.setdefault(field, []).append(bytes(data[value[0] : value[1]]) if isinstance(value, tuple) else value)
        elif field in (5, 7, 11):
            typed.setdefault(field, []).extend(_varints(data, value))
    if dtype not in _DTYPES:
        raise ValueError(f"initializer {name!r} has data type {dtype}, which this check does not read")
    np_dtype = _DTYPES[dtype]
    if location == 1:  # EXTERNAL: the bytes live in a file beside the model
        with open(base_dir / external["location"], "rb") as f:
            f.seek(int(external.get("offset", 0)))
            length = external.get("length")
            raw = f.read(int(length)) if length else f.read()
    if raw is not None:
        return name, dims, np.frombuffer(raw, np_dtype).tobytes()
    if dtype in (1, 11):
        return name, dims, b"".join(typed.get(4 if dtype == 1 else 10, []))
    if dtype in _FROM_INT32_DATA:
        ints = np.array(typed.get(5, []), np.uint64).astype(np.int64)  # varints of negative int32 are 64-bit two's complement
        if dtype in (10, 16):
            return name, dims, ints.astype(np.uint16).tobytes()
        return name, dims, ints.astype(np_dtype).tobytes()
    if dtype == 7:
        return name, dims, np.array(typed.get(7, []), np.uint64).astype(np.int64).tobytes()
    return name, dims, np.array(typed.get(11, []), np.uint64).astype(np_dtype).tobytes()
