"""Peer systems measured beside ours in the benchmark (benchmark-only, never in the product).

``efficientword-net`` 1.0.5 (Apache-2.0) ships a ResNet-50 one-shot word embedder as ONNX inside
its wheel: 64 log-mel filterbank energies (25 ms window, 10 ms hop, no pre-emphasis) over a
1.5 s window at 16 kHz -> a 2048-d embedding compared by cosine. Install it without its
dependencies (`pip install --no-deps efficientword-net==1.0.5`); only its model file is used, with
its preprocessing re-stated here. Its own code pads or crops at a random offset; here the word is
centred (padded or cropped symmetrically) so that results are deterministic.
"""
from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import python_speech_features as psf

from edge.matching import SpeechMetric
from edge.model_io import ModelError

EWN_VERSION = "1.0.5"
EWN_MODEL = "models/resnet_50_arc/slim_93%_accuracy_72.7390%.onnx"
EWN_RATE_HZ = 16000
EWN_WINDOW_SAMPLES = int(1.5 * EWN_RATE_HZ)


def efficientword_net_model() -> Path:
    """Path of the ONNX model inside the installed efficientword-net package."""
    spec = importlib.util.find_spec("eff_word_net")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"efficientword-net is not installed: pip install --no-deps efficientword-net=={EWN_VERSION}")
    path = Path(list(spec.submodule_search_locations)[0]) / EWN_MODEL
    if not path.is_file():
        raise ModelError(f"{path}: the efficientword-net model file is missing (version {EWN_VERSION} expected)")
    return path


def centre_window(samples: np.ndarray, length: int = EWN_WINDOW_SAMPLES) -> np.ndarray:
    """Trim exact-zero padding, then pad or crop symmetrically to ``length`` samples."""
    nz = np.flatnonzero(samples)
    x = samples[nz[0] : nz[-1] + 1] if nz.size else samples[:0]
    if x.size >= length:
        start = (x.size - length) // 2
        return x[start : start + length].astype(np.float32)
    before = (length - x.size) // 2
    return np.pad(x, (before, length - x.size - before)).astype(np.float32)


class EfficientWordNetSpeech:
    """The peer's embedder behind the benchmark's speech-encoder interface (raw audio in)."""

    metric: SpeechMetric = "cosine"
    input_kind = "waveform"
    sample_rate_hz = EWN_RATE_HZ
    protocol = "pretrained"  # trained elsewhere, on data not documented as free of digit words

    def __init__(self, model_path: Path | None = None, threads: int = 1) -> None:
        import onnxruntime as ort

        path = model_path or efficientword_net_model()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        try:
            self._session = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT's own exception types for unreadable models
            raise ModelError(f"{path}: not a loadable ONNX model ({exc})") from None
        self._input = self._session.get_inputs()[0].name
        self._output = self._session.get_outputs()[0].name
        self.encoder_id = f"efficientword-net-{EWN_VERSION}"
        self.embed_s = 0.0
        self.embedded = 0

    def embed_audio(self, utterances: Sequence[np.ndarray]) -> np.ndarray:
        """(N, 2048) embeddings of 16 kHz float utterances (the model takes one window at a time)."""
        t0 = time.perf_counter()
        out = []
        for x in utterances:
            fb = psf.logfbank(centre_window(x), samplerate=EWN_RATE_HZ, winlen=0.025, winstep=0.01, nfilt=64, nfft=512, preemph=0.0)
            (emb,) = self._session.run([self._output], {self._input: fb[None, None].astype(np.float32)})
            out.append(emb[0])
        self.embed_s += time.perf_counter() - t0
        self.embedded += len(utterances)
        return np.stack(out) if out else np.zeros((0, 2048), np.float32)

    def embed(self, waveforms: Sequence[np.ndarray]) -> np.ndarray:
        """The same as :meth:`embed_audio` (the peer's input is the waveform); feature matrices are refused."""
        if any(np.ndim(w) != 1 for w in waveforms):
            raise TypeError("efficientword-net embeds raw audio (1-D samples at 16 kHz), not feature matrices")
        return self.embed_audio(waveforms)
