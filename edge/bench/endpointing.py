"""End of word to answer: how long a person waits, measured through the real endpointer.

A stream of known words (the bundled session, or recorded clips laid end to end with gaps of faint
noise) is cut into 30 ms frames and pushed through :class:`edge.vad.Endpointer` exactly as the
daemon does; the frame that closes an utterance arrives when its last sample is captured, so the
endpointing delay of a word is the end of that frame minus the end of the word's last voiced
sample (the last 10 ms whose energy is within ``voiced_below_peak_db`` of the word's loudest, the
rule ``utterances.trim_below_peak_db`` uses). Each utterance is then answered by the controller's
own answer path (features, speech embedding, the match), and its ``latency_ms`` added: the sum is
what the ``resolved`` event would have waited for. Words cut in two (split) or two words heard as
one (merged) and words never heard (missed) are counted; any of them is a wrong answer.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from edge.hearing import AudioFrame
from edge.vad import Endpointer, Utterance, VadSettings

RATE_HZ = 16000


@dataclass(frozen=True)
class Word:
    """One word of a stream: where it starts and where its last voiced sample ends (seconds)."""

    start_s: float
    end_s: float
    label: str = ""


def voiced_end_s(samples: np.ndarray, rate_hz: int, below_peak_db: float = 40.0) -> tuple[float, float]:
    """(start, end) in seconds of the 10 ms frames within ``below_peak_db`` of the loudest one."""
    hop = rate_hz // 100
    n = max(1, samples.size // hop)
    energy = 10 * np.log10(np.mean(np.square(np.pad(samples, (0, max(0, n * hop - samples.size)))[: n * hop].reshape(n, hop)), axis=1) + 1e-12)
    keep = np.flatnonzero(energy > energy.max() - below_peak_db)
    return keep[0] * hop / rate_hz, (keep[-1] + 1) * hop / rate_hz


def words_in(samples: np.ndarray, starts_s: Sequence[float], labels: Sequence[str], rate_hz: int = RATE_HZ, below_peak_db: float = 40.0) -> list[Word]:
    """The words of a recording whose word onsets are known (the session script): each one's voiced end within its slot."""
    bounds = list(starts_s) + [samples.size / rate_hz]
    out = []
    for i, label in enumerate(labels):
        lo, hi = int(max(0.0, bounds[i] - 0.1) * rate_hz), int((bounds[i + 1] - 0.1) * rate_hz)  # onsets are approximate
        s, e = voiced_end_s(samples[lo:hi], rate_hz, below_peak_db)
        out.append(Word(lo / rate_hz + s, lo / rate_hz + e, label))
    return out


def lay_out(clips: Sequence[np.ndarray], labels: Sequence[str], gap_s: float, noise_dbfs: float, seed: int = 0,
            rate_hz: int = RATE_HZ, below_peak_db: float = 40.0) -> tuple[np.ndarray, list[Word]]:
    """Clips end to end, ``gap_s`` of white noise at ``noise_dbfs`` before each and after the last; the words' voiced spans."""
    rng = np.random.default_rng(seed)
    gap = int(gap_s * rate_hz)
    parts, words, at = [], [], 0
    for clip, label in zip(clips, labels):
        parts.append(np.zeros(gap, np.float32))
        at += gap
        s, e = voiced_end_s(clip, rate_hz, below_peak_db)
        words.append(Word(at / rate_hz + s, at / rate_hz + e, label))
        parts.append(np.asarray(clip, np.float32))
        at += clip.size
    parts.append(np.zeros(gap, np.float32))
    stream = np.concatenate(parts)
    stream = stream + rng.normal(0, 10 ** (noise_dbfs / 20), stream.size).astype(np.float32)
    return np.clip(stream, -1, 1), words


def _key(utt: Utterance) -> tuple:
    return (float(utt.start_s), float(utt.end_s), int(len(utt.pcm)))


def endpoint(samples: np.ndarray, settings: VadSettings, rate_hz: int = RATE_HZ) -> list[tuple[Utterance, float, float | None]]:
    """Utterances of a stream through the real endpointer: each with the time (s) its closing frame was complete and the
    time the controller could start on it at its first pause (:meth:`Endpointer.pending`; None if that utterance changed)."""
    ep = Endpointer(settings)
    n = rate_hz * settings.frame_ms // 1000
    pcm = (np.clip(samples, -1, 1) * 32767).astype(np.int16)
    out = []
    pending: dict[tuple, float] = {}
    for i in range(pcm.size // n):
        frame = AudioFrame(pcm[i * n : (i + 1) * n], i * n / rate_hz, rate_hz)
        utt = ep.push(frame)
        now = frame.time_s + frame.duration_s
        if utt is not None:
            out.append((utt, now, pending.get(_key(utt))))
        else:
            ahead = ep.pending()
            if ahead is not None:
                pending[_key(ahead)] = now
    last = ep.flush()
    if last is not None:
        out.append((last, pcm.size / rate_hz, pending.get(_key(last))))
    return out


@dataclass
class EndOfWordResult:
    """What one setting did on one stream."""

    words: int
    utterances: int
    split: int  # words heard as two or more utterances
    merged: int  # utterances that hold two or more words
    missed: int  # words no utterance holds
    endpoint_ms: list[float]  # per word heard whole: end of the word's last voiced sample -> end of the closing frame
    answer_ms: list[float]  # the same plus the controller's answer latency

    def summary(self) -> dict:
        def pct(xs: list[float], q: float) -> float | None:
            return round(float(np.percentile(xs, q)), 1) if xs else None

        return {
            "words": self.words, "utterances": self.utterances, "split": self.split, "merged": self.merged, "missed": self.missed,
            "endpoint_p50_ms": pct(self.endpoint_ms, 50), "endpoint_p95_ms": pct(self.endpoint_ms, 95),
            "answer_p50_ms": pct(self.answer_ms, 50), "answer_p95_ms": pct(self.answer_ms, 95),
        }


def end_of_word(samples: np.ndarray, words: Sequence[Word], settings: VadSettings,
                answer_ms: Callable[[Utterance], tuple[float, float]] = lambda u: (0.0, 0.0), rate_hz: int = RATE_HZ) -> EndOfWordResult:
    """Endpoint the stream, match utterances to words by overlap, and time every word heard whole.

    ``answer_ms(utterance)`` gives the controller's (speech side, the rest) in ms; the speech side
    starts at the first pause when the endpointer offered the utterance then, as the daemon does.
    """
    heard = endpoint(samples, settings, rate_hz)
    owners: list[list[int]] = [[] for _ in words]  # utterances overlapping each word's voiced span
    held: list[list[int]] = [[] for _ in heard]  # words inside each utterance
    for u, (utt, _, _) in enumerate(heard):
        for w, word in enumerate(words):
            if utt.start_s < word.end_s and word.start_s < utt.end_s:
                owners[w].append(u)
                held[u].append(w)
    result = EndOfWordResult(len(words), len(heard), sum(len(o) > 1 for o in owners), sum(len(h) > 1 for h in held),
                             sum(not o for o in owners), [], [])
    for w, word in enumerate(words):
        if len(owners[w]) != 1 or len(held[owners[w][0]]) != 1:
            continue
        utt, closed_s, pending_s = heard[owners[w][0]]
        speech_ms, rest_ms = answer_ms(utt)
        closed_ms = 1000.0 * (closed_s - word.end_s)
        start_ms = closed_ms if pending_s is None else 1000.0 * (pending_s - word.end_s)
        result.endpoint_ms.append(closed_ms)
        result.answer_ms.append(max(closed_ms, start_ms + speech_ms) + rest_ms)
    return result


def paused_pairs(clips: Sequence[np.ndarray], speakers: Sequence[str], pause_ms: float, rate_hz: int = RATE_HZ,
                 below_peak_db: float = 40.0, seed: int = 0) -> list[np.ndarray]:
    """Two words of one speaker joined by ``pause_ms`` of silence, each trimmed to its voiced span: one request
    with a pause inside ("red ... cup"), for counting splits."""
    by_speaker: dict[str, list[int]] = {}
    for i, s in enumerate(speakers):
        by_speaker.setdefault(s, []).append(i)
    rng = np.random.default_rng(seed)
    out = []
    for s in sorted(by_speaker):
        idx = by_speaker[s]
        for a, b in zip(idx[0::2], idx[1::2]):
            parts = []
            for k in (a, b):
                lo, hi = voiced_end_s(clips[k], rate_hz, below_peak_db)
                parts.append(clips[k][int(lo * rate_hz) : int(hi * rate_hz)])
            out.append(np.concatenate([parts[0], np.zeros(int(pause_ms * rate_hz / 1000), np.float32), parts[1]]))
    rng.shuffle(out)
    return out
