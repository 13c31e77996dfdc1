"""Runs the one-shot benchmark with the runtime's own objects: features, encoders and the SupportSet."""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np
from tqdm import tqdm

from edge.bench.episodes import Episode, EpisodeSampler, SpeakerMode, TeacherMode
from edge.bench.manifest import ImageItem, SpeechItem
from edge.encoders import ImageEncoder, SpeechEncoder, mirrored, support_set_for
from edge.audio import read_wav
from edge.features import SpeechFeatureSettings, warped_speech_features
from edge.images import load_image, preprocess_batch
from edge.matching import DISTANCE_ONLY, MatchSettings

log = logging.getLogger(__name__)
BATCH = 64


@dataclass(frozen=True)
class BenchSettings:
    """One benchmark configuration."""

    ways: int = 10
    shots: int = 1
    episodes: int = 400
    queries: int = 10
    speakers: SpeakerMode = "different"
    teachers: TeacherMode = "one"  # one teacher per episode (the seeds' protocol), or half the speakers teaching and the other half asking
    seeds: tuple[int, ...] = (0,)
    min_view_gap: int = 0
    teach_views: int = 1  # images per support pair: the taught view and those around it (needs a view column)
    teach_view_step: int = 1  # views apart
    mirror_views: bool = False  # each support view also stored flipped left-right, as the daemon's teach.mirror_views does
    pairs_as_words: bool = False  # True: each pair is its own word (the seeds' K-shot rule); False: pairs of a label form one word
    mutual_exclusivity: float | None = MatchSettings().mutual_exclusivity  # the daemon's default ranking; None: distance only
    word_best_of: int = MatchSettings().word_best_of  # a request names the word whose N nearest utterances are nearest on average
    dtw_warp: float = MatchSettings().dtw_warp  # DTW also compares each query's frequency-warped copies (speech encoders dtw and fused)


@dataclass(frozen=True)
class QueryOutcome:
    """One spoken query: what the speech step heard and which image each ranking chose."""

    label: str  # the query's class
    heard: str  # the class of the taught word the speech step named (its nearest utterance's)
    speech_distance: float  # query to that word's nearest utterance, in the speech encoder's units
    chosen: int  # matching-set index answered (the ranking under test)
    image_distance: float  # the chosen image to the heard word's taught images (cosine)
    chosen_distance_only: int  # matching-set index answered when ranking by distance alone

    def verdict(self, classes: Sequence[str]) -> str:
        """'right', 'speech' (the wrong word was heard and the answer is wrong) or 'image' (the word was right, the image not)."""
        if classes[self.chosen] == self.label:
            return "right"
        return "speech" if self.heard != self.label else "image"


@dataclass
class EpisodeOutcome:
    """What one episode scored, with the choices needed to draw it."""

    episode: Episode
    multimodal: float  # fraction of queries answered with an image of the right class
    multimodal_distance_only: float  # the same, candidates ranked by distance alone (the seeds' rule), same nearest utterances
    speech: float  # fraction of queries whose nearest support utterance has the right class
    image: float  # fraction of matching images whose nearest support image has the right class
    chosen: list[int] = field(default_factory=list)  # matching-set index chosen for each query
    queries: list[QueryOutcome] = field(default_factory=list)  # per query, in ``episode.queries`` order
    image_nearest: list[str] = field(default_factory=list)  # image-only: class of each matching image's nearest support image
    seed: int | None = None


class EmbeddingCache:
    """Embeds manifest items once, in batches, with the encoders under test."""

    def __init__(self, speech: Sequence[SpeechItem], images: Sequence[ImageItem], speech_enc: SpeechEncoder, image_enc: ImageEncoder, features: SpeechFeatureSettings) -> None:
        self.speech_items, self.image_items = speech, images
        self.speech_enc, self.image_enc, self.features = speech_enc, image_enc, features
        self.speech: dict[int, Any] = {}
        self.warped: dict[int, list[np.ndarray]] = {}  # query item -> frames of its frequency-warped copies
        self.images: dict[int, np.ndarray] = {}
        self.mirrors: dict[int, np.ndarray] = {}  # image item -> embedding of it flipped left-right (support views, --mirror-views)
        self.embed_s = 0.0
        self.speech_s = 0.0  # reading, features and embedding of utterances
        self.speech_count = 0

    def fill(self, speech_idx: set[int], image_idx: set[int], progress: bool, warp_idx: set[int] = frozenset(), warp: float = 0.0,
             mirror_idx: set[int] = frozenset()) -> None:
        """Embed whatever of these items is not cached yet; ``warp_idx``: utterances that also need warped copies' frames (DTW);
        ``mirror_idx``: images also embedded flipped left-right."""
        t0 = time.perf_counter()
        if warp > 0 and self.speech_enc.metric != "cosine":
            for i in sorted(i for i in warp_idx if i not in self.warped):
                t_speech = time.perf_counter()
                samples = read_wav(self.speech_items[i].path, self.features.sample_rate_hz)
                self.warped[i] = warped_speech_features(samples, self.features, warp)
                self.speech_s += time.perf_counter() - t_speech
        todo = sorted(i for i in speech_idx if i not in self.speech)
        for start in tqdm(range(0, len(todo), BATCH), desc="speech", disable=not progress, unit="batch", leave=False):
            chunk = todo[start : start + BATCH]
            t_speech = time.perf_counter()
            rate = self.speech_enc.sample_rate_hz  # MFCC encoders: the features' rate; waveform encoders: their own
            embedded = self.speech_enc.embed_audio([read_wav(self.speech_items[i].path, rate) for i in chunk])
            for i, e in zip(chunk, embedded):
                self.speech[i] = e
            self.speech_s += time.perf_counter() - t_speech
            self.speech_count += len(chunk)
        todo = sorted(i for i in image_idx if i not in self.images)
        for start in tqdm(range(0, len(todo), BATCH), desc="images", disable=not progress, unit="batch", leave=False):
            chunk = todo[start : start + BATCH]
            batch = preprocess_batch([load_image(self.image_items[i].path) for i in chunk], self.image_enc.settings)
            for i, e in zip(chunk, self.image_enc.embed(batch)):
                self.images[i] = np.asarray(e, np.float32)
        todo = sorted(i for i in mirror_idx if i not in self.mirrors)
        for start in tqdm(range(0, len(todo), BATCH), desc="mirrored images", disable=not progress, unit="batch", leave=False):
            chunk = todo[start : start + BATCH]
            batch = preprocess_batch([mirrored(load_image(self.image_items[i].path)) for i in chunk], self.image_enc.settings)
            for i, e in zip(chunk, self.image_enc.embed(batch)):
                self.mirrors[i] = np.asarray(e, np.float32)
        self.embed_s += time.perf_counter() - t0


def score_episode(ep: Episode, cache: EmbeddingCache, pairs_as_words: bool, ranking: MatchSettings = DISTANCE_ONLY) -> EpisodeOutcome:
    """Multimodal (candidates ranked with ``ranking``, and by distance alone), speech-only and image-only accuracy of one episode."""
    support = support_set_for(cache.speech_enc)
    for pid, (s, lab) in enumerate(zip(ep.support_speech, ep.support_labels)):
        views = [cache.images[i] for i in ep.views_of(pid)] + [cache.mirrors[i] for i in ep.views_of(pid) if i in cache.mirrors]
        support.add(pid, cache.speech[s], np.stack(views), None if pairs_as_words else lab)
    matching = np.stack([cache.images[i] for i in ep.matching])  # (L, E)
    match_labels = ep.classes  # matching[k] is an image of classes[k]
    right_mm = right_dist = right_sp = 0
    chosen, answers = [], []
    for q in ep.queries:
        truth = cache.speech_items[q].label
        row, speech_d = support.nearest_utterance(cache.speech[q], ranking.word_best_of, cache.warped.get(q, ()))  # every request is answered
        best = support.rank_candidates(row, matching, ranking)[0]
        by_distance = support.rank_candidates(row, matching, DISTANCE_ONLY)[0]
        chosen.append(best.index)
        answers.append(QueryOutcome(truth, ep.support_labels[row], speech_d, best.index, best.image_distance, by_distance.index))
        right_mm += match_labels[best.index] == truth
        right_dist += match_labels[by_distance.index] == truth
        right_sp += ep.support_labels[row] == truth
    # Image-only one-shot: classify each matching image by its nearest support image.
    nearest = support.nearest_rows(matching)  # the pair with the nearest view
    right_im = sum(ep.support_labels[n] == lab for n, lab in zip(nearest, match_labels))
    n_q = len(ep.queries)
    return EpisodeOutcome(ep, right_mm / n_q, right_dist / n_q, right_sp / n_q, right_im / len(match_labels), chosen, answers,
                          [ep.support_labels[n] for n in nearest])


def row_protocol(speech_enc: Any, image_enc: Any) -> str:
    """``seeds`` when both encoders were trained only on background data (or are baselines), else ``pretrained``."""
    both = (getattr(speech_enc, "protocol", "pretrained"), getattr(image_enc, "protocol", "pretrained"))
    return "seeds" if both == ("seeds", "seeds") else "pretrained"


def mean_ci95(values: Sequence[float]) -> tuple[float, float]:
    """Mean and the half-width of its normal-approximation 95% confidence interval."""
    v = np.asarray(values, np.float64)
    if v.size < 2:
        return float(v.mean()) if v.size else float("nan"), float("nan")
    return float(v.mean()), float(1.96 * v.std(ddof=1) / np.sqrt(v.size))


def run_benchmark(
    speech: Sequence[SpeechItem],
    images: Sequence[ImageItem],
    speech_enc: SpeechEncoder,
    image_enc: ImageEncoder,
    features: SpeechFeatureSettings,
    settings: BenchSettings,
    progress: bool = True,
) -> tuple[dict[str, Any], list[EpisodeOutcome]]:
    """Run every seed; returns the summary (JSON-ready) and the per-episode outcomes."""
    t_start = time.perf_counter()
    sampler = EpisodeSampler(list(speech), list(images), settings.ways, settings.shots, settings.queries, settings.speakers, settings.min_view_gap,
                             teachers=settings.teachers, teach_views=settings.teach_views, teach_view_step=settings.teach_view_step)
    cache = EmbeddingCache(speech, images, speech_enc, image_enc, features)
    outcomes: list[EpisodeOutcome] = []
    per_seed = []
    match_s = 0.0
    ranking = MatchSettings(unknown_word_distance=None, not_in_view_distance=None, mutual_exclusivity=settings.mutual_exclusivity,
                            word_best_of=settings.word_best_of, dtw_warp=settings.dtw_warp)
    for seed in settings.seeds:
        rng = np.random.default_rng(seed)
        episodes = [sampler.sample(rng) for _ in range(settings.episodes)]
        cache.fill(
            {i for ep in episodes for i in (*ep.support_speech, *ep.queries)},
            {i for ep in episodes for i in (*ep.support_images, *(j for v in ep.support_views for j in v), *ep.matching)},
            progress,
            {i for ep in episodes for i in ep.queries},
            settings.dtw_warp,
            {j for ep in episodes for k in range(len(ep.support_images)) for j in ep.views_of(k)} if settings.mirror_views else set(),
        )
        t0 = time.perf_counter()
        seed_out = [
            score_episode(ep, cache, settings.pairs_as_words, ranking)
            for ep in tqdm(episodes, desc=f"seed {seed}", disable=not progress, unit="ep", leave=False)
        ]
        match_s += time.perf_counter() - t0
        for o in seed_out:
            o.seed = seed
        outcomes.extend(seed_out)
        per_seed.append(
            {
                "seed": seed,
                "accuracy": mean_ci95([o.multimodal for o in seed_out])[0],
                "accuracy_distance_only": mean_ci95([o.multimodal_distance_only for o in seed_out])[0],
                "speech_accuracy": mean_ci95([o.speech for o in seed_out])[0],
                "image_accuracy": mean_ci95([o.image for o in seed_out])[0],
            }
        )
    n_queries = settings.queries * settings.episodes * len(settings.seeds)
    acc, ci = mean_ci95([o.multimodal for o in outcomes])
    acc_dist, ci_dist = mean_ci95([o.multimodal_distance_only for o in outcomes])
    sp, sp_ci = mean_ci95([o.speech for o in outcomes])
    im, im_ci = mean_ci95([o.image for o in outcomes])
    summary = {
        "ways": settings.ways,
        "shots": settings.shots,
        "episodes": settings.episodes,
        "queries": settings.queries,
        "speakers": settings.speakers,
        "teachers": settings.teachers,
        "seeds": list(settings.seeds),
        "min_view_gap": settings.min_view_gap,
        "teach_views": settings.teach_views,
        "teach_view_step": settings.teach_view_step,
        "mirror_views": settings.mirror_views,
        "pairs_as_words": settings.pairs_as_words,
        "mutual_exclusivity": settings.mutual_exclusivity,
        "word_best_of": settings.word_best_of,
        "dtw_warp": settings.dtw_warp if speech_enc.metric != "cosine" else None,
        "speech_encoder": speech_enc.encoder_id,
        "image_encoder": image_enc.encoder_id,
        "protocol": row_protocol(speech_enc, image_enc),
        "speech_protocol": getattr(speech_enc, "protocol", "pretrained"),
        "image_protocol": getattr(image_enc, "protocol", "pretrained"),
        "accuracy": acc,
        "ci95": ci,
        "accuracy_distance_only": acc_dist,
        "ci95_distance_only": ci_dist,
        "speech_accuracy": sp,
        "speech_ci95": sp_ci,
        "image_accuracy": im,
        "image_ci95": im_ci,
        "seconds_per_query": (time.perf_counter() - t_start) / n_queries,
        "matching_seconds_per_query": match_s / n_queries,
        "embedding_seconds": cache.embed_s,
        "speech_ms_per_utterance": 1000 * cache.speech_s / max(cache.speech_count, 1),  # read + features + embed
        "per_seed": per_seed,
        # Everything that changes a score, in one place (BenchSettings as given, the encoders and the features).
        "settings": {**asdict(settings), "seeds": list(settings.seeds), "speech_encoder": speech_enc.encoder_id,
                     "image_encoder": image_enc.encoder_id, "speech_features": features.as_dict()},
    }
    return summary, outcomes
