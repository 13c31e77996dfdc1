"""Choose ``matching.dtw_warp`` on background data: the held-out words of ``showsay train prepare``.

    python tools/calibrate_dtw_warp.py --data out/train-data --episodes 300

No test class is looked at: the words are the 60 background words that training holds out for
validation (``train.data.load_speech``), read again from their wav files (the synthesized clips in
``DATA/wav`` and the Speech Commands clips in ``../shared``), because the warped copies are made from
audio. Each 10-way one-shot episode teaches one clip per word and asks for each word with a clip by
another voice; a request is right when it names the word asked for. Printed: accuracy of DTW alone
and of the shipped speech encoder fused with DTW (the config default) for each warp value.

``--real-voices`` uses the recorded background words instead (Speech Commands and 40 clips of each
wake word: many crowd-sourced speakers) and DTW alone: the speech encoder was trained
on these clips, DTW learns nothing. Wake-word clips carry no speaker label; each counts as its own.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from edge.audio import read_wav
from edge.encoders import EncoderSettings, load_speech_encoder
from edge.features import SpeechFeatureSettings, speech_features, warped_speech_features
from edge.matching import SupportSet, unpack_fused
from train.augment import trim_silence
from train.data import load_speech
from train.prepare import PrepareSettings, _real_clips
from train.synth import available_engines, plan_jobs
from train.words import ENGLISH_WORDS, split_digit_words

WARPS = (0.0, 0.1, 0.15, 0.2)
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def held_out_clips(data: Path, shared: Path, val_words: int) -> list[tuple[str, str, str]]:
    """(wav path, word, speaker) of the clean held-out clips, rebuilt the way ``showsay train prepare`` planned them."""
    _, _, summary = load_speech(data, val_words)
    held = set(summary["validation_words"])
    s = PrepareSettings()
    words, _ = split_digit_words(list(dict.fromkeys(ENGLISH_WORDS)))
    engines, _ = available_engines()
    per_word = {"espeak-ng": s.espeak_per_word, "flite": s.flite_per_word, "festival": s.festival_per_word}
    jobs = plan_jobs(words, engines, per_word, data / "wav", s.seed)
    clips = [(str(j.out), j.word, j.speaker) for j in jobs if j.word in held and j.out.is_file()]
    for word in sorted(held):
        folder = shared / "speech_commands_sample" / word
        if folder.is_dir():
            clips += [(str(f), word, "speech_commands:" + f.name.split("_")[0]) for f in sorted(folder.glob("*.wav"))]
    return clips


def main() -> None:
    """Print a Markdown table: DTW alone and fused, per warp."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, help="folder built by 'showsay train prepare' (not needed with --real-voices)")
    ap.add_argument("--shared", type=Path, default=SHARED, help="the shared data folder (Speech Commands clips)")
    ap.add_argument("--val-words", type=int, default=60, help="held-out words (as in training)")
    ap.add_argument("--ways", type=int, default=10)
    ap.add_argument("--episodes", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--real-voices", action="store_true", help="recorded background words, DTW alone (see above)")
    args = ap.parse_args()
    fs = SpeechFeatureSettings()
    if args.real_voices:
        clips = [(path, word, speaker) for path, word, speaker, _ in _real_clips(args.shared, PrepareSettings(max_wake_word_clips=40), {}, [])]
    elif args.data is None:
        ap.error("--data is needed unless --real-voices is given")
    else:
        clips = held_out_clips(args.data, args.shared, args.val_words)
    audio = [trim_silence(read_wav(path, fs.sample_rate_hz), fs.sample_rate_hz) for path, _, _ in clips]
    packed = load_speech_encoder(EncoderSettings(speech="default", fuse_dtw=0.5), fs).embed([speech_features(x, fs) for x in audio])
    warped = {w: [warped_speech_features(x, fs, w) for x in audio] for w in WARPS if w > 0}
    labels = np.array([c[1] for c in clips])
    speakers = np.array([c[2] for c in clips])
    words = sorted(set(labels.tolist()))
    rng = np.random.default_rng(args.seed)
    right = {(m, w): 0 for m in ("dtw", "fused") for w in WARPS}
    asked = 0
    for _ in range(args.episodes):
        taught = SupportSet("dtw"), SupportSet("fused", dtw_weight=0.5)
        queries = []
        for k, word in enumerate(rng.choice(words, args.ways, replace=False)):
            idx = rng.permutation(np.flatnonzero(labels == word))
            s = idx[0]
            queries.append(next(i for i in idx[1:] if speakers[i] != speakers[s]))
            taught[0].add(k, unpack_fused(packed[s])[1], np.ones(1, np.float32), str(k))
            taught[1].add(k, packed[s], np.ones(1, np.float32), str(k))
        for k, q in enumerate(queries):
            for w in WARPS:
                extra = warped[w][q] if w > 0 else []
                right[("dtw", w)] += taught[0].labels[taught[0].nearest_utterance(unpack_fused(packed[q])[1], 1, extra)[0]] == str(k)
                if not args.real_voices:
                    right[("fused", w)] += taught[1].labels[taught[1].nearest_utterance(packed[q], 1, extra)[0]] == str(k)
            asked += 1
    which = "recorded background words" if args.real_voices else "held-out background words"
    print(f"background validation: {len(words)} {which}, {len(clips)} clean clips; {args.ways}-way one-shot, "
          f"{args.episodes} episodes x {args.ways} requests, seed {args.seed}; the request's voice differs from the teacher's")
    print("| speech | " + " | ".join(f"warp {w}" for w in WARPS) + " |")
    print("|---|" + "---|" * len(WARPS))
    for m, name in (("dtw", "DTW alone"), ("fused", "shipped encoder fused with DTW (0.5)"))[: 1 if args.real_voices else 2]:
        print(f"| {name} | " + " | ".join(f"{100 * right[(m, w)] / asked:.1f}" for w in WARPS) + " |")


if __name__ == "__main__":
    main()
