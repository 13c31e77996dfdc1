"""Tiny synthetic background sets in the layout 'showsay train prepare' writes, for fast training tests."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from edge.features import SpeechFeatureSettings
from train.prepare import IMAGE_SETTINGS


def write_tiny_data(root: Path, words: int = 20, speakers: int = 3, seed: int = 0) -> Path:
    """speech.npz (words x speakers x clean+augmented, class-specific frame patterns) and images.npz."""
    rng = np.random.default_rng(seed)
    feats, labels, spk, aug = [], [], [], []
    for w in range(words):
        proto = rng.standard_normal((6, 39)).astype(np.float32)
        for s in range(speakers):
            for a in (False, True):
                t = int(rng.integers(20, 60))
                x = np.repeat(proto, int(np.ceil(t / 6)), axis=0)[:t] + 0.3 * rng.standard_normal((t, 39)).astype(np.float32)
                feats.append(x)
                labels.append(f"word_{chr(97 + w)}")
                spk.append(f"voice{s}")
                aug.append(a)
    offsets = np.concatenate([[0], np.cumsum([f.shape[0] for f in feats])])
    np.savez(
        root / "speech.npz", feats=np.concatenate(feats).astype(np.float16), offsets=offsets, labels=np.array(labels),
        speakers=np.array(spk), sources=np.array(["espeak-ng"] * len(labels)), augmented=np.array(aug),
        feature_settings=json.dumps(SpeechFeatureSettings().as_dict(), sort_keys=True),
    )
    parts = {}
    for name, n_cls in (("background", 12), ("evaluation", 6)):
        protos = rng.random((n_cls, 1, 28, 28)) > 0.8
        parts[name] = np.clip((protos * 200 + rng.random((n_cls, 4, 28, 28)) * 55), 0, 255).astype(np.uint8)
    np.savez_compressed(root / "images.npz", image_settings=json.dumps(IMAGE_SETTINGS.as_dict(), sort_keys=True), **parts)
    return root


def write_tiny_config(path: Path, data_dir: Path, out: Path, objective: str, **extra: object) -> Path:
    """A training YAML for a few steps on the tiny data."""
    cfg = {
        "objective": objective, "data_dir": str(data_dir), "out": str(out), "seed": 0,
        "net": {"channels": [16, 16], "kernel_size": 3, "embedding_dim": 8, "dropout": 0.0},
        "batch_classes": 4, "per_class": 2, "steps_per_epoch": 3, "max_epochs": 2, "val_words": 4, "val_ways": 3,
        "val_episodes": 10, "threads": 1, **extra,
    }
    path.write_text(yaml.safe_dump(cfg))
    return path
