"""The matching core: taught (speech, image) pairs and the resolution of a spoken request.

A request is matched against the taught utterances (cosine distance between speech embeddings,
DTW over feature frames for the baseline, or both fused: the embedding shortlists, DTW re-ranks). The nearest utterance names a word: its label, or
the pair itself when it has none. The candidates in view are compared with the images taught
for that word (cosine distance, the minimum over every view of every shot of the word: a pair may
keep several crops of its object, taken from other angles while it was taught or confirmed later) and ranked, by default with
mutual exclusivity: a candidate that looks more like another taught word's images is less likely to
be the one asked for (a bias children show when they learn words). Two rejections
guard the answer: the request is an ``unknown_word`` when even the nearest utterance is too far,
and ``not_in_view`` when even the best candidate is too far from what was taught.
numpy and scipy only; the daemon and the benchmark use these same objects.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Sequence

import numpy as np
from scipy.special import logsumexp

from edge.dtw import dtw_one_to_many
from edge.settings import setting

SpeechMetric = Literal["cosine", "dtw", "fused"]
FUSED_SHORTLIST = 10  # "fused": DTW re-ranks this many utterances nearest by embedding
SURE = 0.999  # mutual exclusivity: candidates at least this surely the word are ranked by distance among themselves


def pack_fused(embedding: np.ndarray, frames: np.ndarray) -> np.ndarray:
    """One flat float32 array for the "fused" metric: [D, F, the unit D-d embedding, the (T, F) frames].

    Self-describing so it can be stored like any embedding (the memory keeps one array per encoder).
    """
    e = l2_normalise(np.asarray(embedding, np.float32).reshape(-1))
    f = np.asarray(frames, np.float32)
    return np.concatenate([np.array([e.size, f.shape[1]], np.float32), e, f.reshape(-1)])


def unpack_fused(packed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(embedding, frames) back from :func:`pack_fused`."""
    p = np.asarray(packed, np.float32).reshape(-1)
    if p.size < 2:
        raise ValueError("not a fused speech representation: too short")
    d, f = int(p[0]), int(p[1])
    if d < 1 or f < 1 or (p.size - 2 - d) % f or p.size - 2 - d < f:
        raise ValueError(f"not a fused speech representation (header {d}, {f}; {p.size} values)")
    return p[2 : 2 + d], p[2 + d :].reshape(-1, f)


def zscore(x: np.ndarray) -> np.ndarray:
    """Standardised to mean 0 and unit spread (all zeros when the values are all equal)."""
    x = np.asarray(x, np.float64)
    spread = x.std()
    return np.zeros_like(x) if spread < 1e-12 else (x - x.mean()) / spread


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    x = np.asarray(x, np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def cosine_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(Q, N) cosine distances, in [0, 2], between rows of ``a`` (Q, D) and ``b`` (N, D)."""
    return 1.0 - l2_normalise(a) @ l2_normalise(b).T


@dataclass(frozen=True)
class MatchSettings:
    """Rejection thresholds of the matching core (null disables a rejection)."""

    unknown_word_distance: float | Literal["encoder"] | None = setting(
        "encoder",
        "reject a request whose nearest taught utterance is further than this (cosine distance 0-2, or DTW cost); "
        "'encoder' = the value measured for the speech encoder in use on held-out real speakers, where taught words are "
        "answered as often as untaught ones rejected (keywords 0.24, keywords-head 0.51, triplet and ensemble 0.47, "
        "dtw 0.725; a model file's own recommendation otherwise; docs/daemon.md); a number sets it; null never rejects",
        min=0.0,
    )
    not_in_view_distance: float | None = setting(
        0.30,
        "reject when the best candidate is further than this from the word's taught images (cosine distance 0-2, the "
        "minimum over every view); 0.30 is measured for the shipped objects encoder with 5 teaching views on rendered "
        "turntable objects, not the COIL-20 test set (in view answered as often as absent rejected, docs/daemon.md); "
        "0.35 with one view",
        min=0.0,
    )
    mutual_exclusivity: float | None = setting(
        0.05,
        "rank candidates by how surely each is the asked word rather than another taught word (mutual exclusivity): "
        "softmax temperature as a fraction of the median candidate-to-taught-image distance, chosen on background data "
        "(Omniglot's evaluation alphabets, edge/models/README.md); "
        "null ranks by distance to the word's images alone (the seeds' rule)",
        min=0.001,
    )
    word_best_of: int = setting(
        2,
        "a spoken request names the word whose N nearest taught utterances are nearest on average (all of them for "
        "a word taught fewer times); chosen on recorded background words (edge/models/README.md); "
        "1 = the single nearest utterance (the seeds' rule)",
        min=1,
        max=20,
    )
    dtw_warp: float = setting(
        0.0,
        "DTW (speech: dtw, or fused) also compares a request with copies of it whose frequencies are scaled by 1 - and "
        "1 + this (speakers' vocal tracts differ in length), and the lowest cost counts; 0.15 helps across voices of "
        "many recorded speakers (background words) but not across FSDD's four adult men, and costs 2-3x as much on the speech "
        "side (edge/models/README.md); 0 compares the request as heard (the seeds' rule)",
        min=0.0,
        max=0.5,
    )


def _temperature(mutual_exclusivity: float, median_d: float) -> float:
    """Mutual exclusivity's softmax temperature: the setting times the median candidate-to-word distance."""
    return max(mutual_exclusivity * median_d, 1e-6)


NO_REJECTION = MatchSettings(unknown_word_distance=None, not_in_view_distance=None)  # the benchmark: every request answered
DISTANCE_ONLY = MatchSettings(unknown_word_distance=None, not_in_view_distance=None, mutual_exclusivity=None)  # the seeds' rule


@dataclass(frozen=True, eq=False)
class CandidateDistances:
    """The part of mutual exclusivity that does not depend on the request, for one set of candidates in view.

    Computed with the candidates (:meth:`SupportSet.candidate_distances`), while the person is still
    speaking, so the answer only picks the asked word's column. Valid for the support set's
    ``version`` it was computed at (any teach, forget, relabel or view added makes it stale and the
    ranking computes afresh); the softmax normaliser is kept per (temperature, not-in-view) setting.
    """

    version: int
    candidates: int  # C, the rows it was computed for
    word_d: np.ndarray  # (C, G) distance from each candidate to each taught word (minimum over its views)
    words: np.ndarray  # (G,) word ids of the columns
    median_d: float  # median of word_d: the temperature's scale
    _normalisers: dict = field(default_factory=dict, repr=False)

    def normaliser(self, temperature: float, not_in_view_distance: float | None) -> np.ndarray:
        """(C,) log of the softmax's denominator over the taught words (and "none of them" at ``not_in_view_distance``)."""
        key = (temperature, not_in_view_distance)
        if key not in self._normalisers:
            self._normalisers[key] = _log_normaliser(self.word_d, temperature, not_in_view_distance)
        return self._normalisers[key]


def _log_normaliser(word_d: np.ndarray, temperature: float, not_in_view_distance: float | None) -> np.ndarray:
    logits = -word_d / temperature
    if not_in_view_distance is not None:
        logits = np.concatenate([logits, np.full((len(logits), 1), -not_in_view_distance / temperature)], axis=1)
    return logsumexp(logits, axis=1)


@dataclass(frozen=True)
class RankedCandidate:
    """One candidate in view, with its distance to the chosen word's images."""

    index: int
    image_distance: float
    word_probability: float | None = None  # with mutual exclusivity: P(this candidate is the word rather than another taught one)


@dataclass(frozen=True)
class Resolution:
    """The answer to one request."""

    status: Literal["resolved", "unknown_word", "not_in_view", "nothing_taught", "no_candidates"]
    pair_index: int | None = None  # row of the nearest taught utterance in the support set
    pair_id: int | None = None
    label: str | None = None
    speech_distance: float | None = None
    ranked: tuple[RankedCandidate, ...] = ()

    @property
    def best(self) -> RankedCandidate | None:
        """The chosen candidate, when the request was resolved."""
        return self.ranked[0] if self.status == "resolved" and self.ranked else None


class SupportSet:
    """Taught pairs: a speech representation, one or more unit image embeddings (views), an id and an optional label each.

    Speech representations are fixed-size embeddings (``metric="cosine"``), (frames, dim) feature
    matrices (``metric="dtw"``), or both packed by :func:`pack_fused` (``metric="fused"``: the
    :data:`FUSED_SHORTLIST` utterances nearest by embedding are re-ranked by ``dtw_weight`` x DTW plus
    the rest x cosine, each standardised over the shortlist; the distance reported, and compared with
    ``unknown_word_distance``, stays the cosine one). Rows are kept in growable arrays so adding a pair
    is amortised O(1) and matching 10,000 pairs is one matrix-vector product.

    Images are kept as views: each pair has one or more (the crops kept while it was taught, and
    views learned from confirmed answers, :meth:`add_view`). A candidate's distance to a pair, or
    to a word, is the minimum over all of its views.
    """

    def __init__(self, metric: SpeechMetric = "cosine", dtw_weight: float = 0.5) -> None:
        if metric not in ("cosine", "dtw", "fused"):
            raise ValueError(f"unknown speech metric {metric!r}")
        if not 0.0 <= dtw_weight <= 1.0:
            raise ValueError(f"dtw_weight must be in [0, 1], got {dtw_weight}")
        self.metric: SpeechMetric = metric
        self.dtw_weight = float(dtw_weight)
        self._ids: list[int] = []
        self._labels: list[str | None] = []
        self._speech_rows: list[np.ndarray] = []  # dtw: one (T, D) matrix per pair
        self._speech = np.zeros((0, 0), np.float32)  # cosine: (capacity, D) unit rows
        self._images = np.zeros((0, 0), np.float32)  # (view capacity, E) unit rows, one per view
        self._view_rows = np.zeros(0, np.int64)  # (V,) the pair row of each view
        self._view_keys: list[int | None] = []  # (V,) an id for views that can be removed alone (learned ones), else None
        self._groups = np.zeros(0, np.int64)  # word id of each row: same label -> same word
        self._group_of_label: dict[str, int] = {}
        self._next_group = 0
        self.version = 0  # bumped by every change to the pairs, their views or their words (see CandidateDistances)
        self._word_columns: tuple[int, np.ndarray, np.ndarray, np.ndarray] | None = None  # (version, order, starts, words)

    def __len__(self) -> int:
        return len(self._ids)

    @property
    def ids(self) -> list[int]:
        """Pair ids in row order."""
        return list(self._ids)

    @property
    def labels(self) -> list[str | None]:
        """Labels in row order (None for an unlabelled pair)."""
        return list(self._labels)

    def image_embeddings(self) -> np.ndarray:
        """(V, E) unit image embeddings of every view, in the order of :meth:`view_rows`."""
        return self._images[: len(self._view_keys)]

    def view_rows(self) -> np.ndarray:
        """(V,) the pair row each view belongs to."""
        return self._view_rows.copy()

    def view_count(self, pair_id: int) -> int:
        """How many views pair ``pair_id`` has."""
        return int(np.count_nonzero(self._view_rows == self._ids.index(pair_id)))

    def pair_image_distances(self, images: np.ndarray) -> np.ndarray:
        """(M, N) cosine distance from each image (M, E) to each pair (the minimum over its views), pairs in row order."""
        d = 1.0 - l2_normalise(images) @ self.image_embeddings().T  # (M, V)
        out = np.full((d.shape[0], len(self)), np.inf, np.float32)
        np.minimum.at(out.T, self._view_rows, d.T)
        return out

    def nearest_rows(self, images: np.ndarray) -> np.ndarray:
        """(M,) the row of the pair whose nearest view is nearest to each image (the image-only one-shot rule)."""
        d = 1.0 - l2_normalise(images) @ self.image_embeddings().T  # (M, V)
        return self._view_rows[d.argmin(axis=1)]

    def _grow(self, arr: np.ndarray, row: np.ndarray, n: int | None = None) -> np.ndarray:
        n = len(self) if n is None else n
        if arr.shape[1] not in (0, row.shape[0]):
            raise ValueError(f"embedding size {row.shape[0]} differs from the taught pairs' {arr.shape[1]}")
        if n >= arr.shape[0] or arr.shape[1] == 0:
            bigger = np.zeros((max(16, 2 * arr.shape[0]), row.shape[0]), np.float32)
            if n:
                bigger[:n] = arr[:n]
            arr = bigger
        arr[n] = row
        return arr

    def _group_for(self, label: str | None) -> int:
        if label is not None and label in self._group_of_label:
            return self._group_of_label[label]
        g = self._next_group
        self._next_group += 1
        if label is not None:
            self._group_of_label[label] = g
        return g

    def add(self, pair_id: int, speech: np.ndarray, image: np.ndarray, label: str | None = None) -> None:
        """Add one taught pair; ``image`` is one embedding (E,) or several views of the object (V, E)."""
        if pair_id in self._ids:
            raise ValueError(f"pair {pair_id} is already in the support set")
        views = np.asarray(image, np.float32)
        views = l2_normalise(views.reshape(-1, views.shape[-1]) if views.ndim > 1 else views.reshape(1, -1))
        if views.shape[0] == 0:
            raise ValueError(f"pair {pair_id}: no image")
        if self._images.shape[1] not in (0, views.shape[1]):
            raise ValueError(f"embedding size {views.shape[1]} differs from the taught pairs' {self._images.shape[1]}")
        if self.metric == "fused":
            vector, frames = unpack_fused(speech)
            self._speech = self._grow(self._speech, l2_normalise(vector))
            self._speech_rows.append(frames)
        elif self.metric == "cosine":
            self._speech = self._grow(self._speech, l2_normalise(np.asarray(speech, np.float32).reshape(-1)))
        else:
            self._speech_rows.append(np.asarray(speech, np.float32))
        row = len(self)
        self._groups = np.append(self._groups, self._group_for(label))  # O(N) but tiny next to embedding
        self._ids.append(pair_id)
        self._labels.append(label)
        for v in views:
            self._append_view(row, v, None)

    def _append_view(self, row: int, image: np.ndarray, key: int | None) -> None:
        self.version += 1
        self._images = self._grow(self._images, image, len(self._view_keys))
        self._view_rows = np.append(self._view_rows, row)
        self._view_keys.append(key)

    def add_view(self, pair_id: int, image: np.ndarray, key: int) -> None:
        """One more view of a taught pair's object (a confirmed answer's crop); ``key`` lets :meth:`remove_view` drop it later.

        ``image``: one embedding (E,), or (V, E) of one view (the crop and its mirror, ``teach.mirror_views``), dropped together."""
        if key in self._view_keys:
            raise ValueError(f"view {key} is already in the support set")
        arr = np.asarray(image, np.float32)
        rows = l2_normalise(arr.reshape(-1, arr.shape[-1]) if arr.ndim > 1 else arr.reshape(1, -1))
        if self._images.shape[1] != rows.shape[1]:
            raise ValueError(f"embedding size {rows.shape[1]} differs from the taught pairs' {self._images.shape[1]}")
        row = self._ids.index(pair_id)
        for r in rows:
            self._append_view(row, r, int(key))

    def remove_view(self, key: int) -> bool:
        """Drop the view added under ``key``; False if there is none (views added with a pair stay)."""
        if key is None or key not in self._view_keys:
            return False
        self._drop_views(np.array([k == key for k in self._view_keys]))
        return True

    def _drop_views(self, drop: np.ndarray) -> None:
        self.version += 1
        v = len(self._view_keys)
        keep = ~drop
        self._images[: int(keep.sum())] = self._images[:v][keep]
        self._view_rows = self._view_rows[keep]
        self._view_keys = [k for k, kept in zip(self._view_keys, keep) if kept]

    def remove(self, pair_id: int) -> None:
        """Forget one pair."""
        i = self._ids.index(pair_id)
        n = len(self)
        keep = np.arange(n) != i
        if self.metric in ("cosine", "fused"):
            self._speech[: n - 1] = self._speech[:n][keep]
        if self.metric in ("dtw", "fused"):
            del self._speech_rows[i]
        self._drop_views(self._view_rows == i)
        self._view_rows = self._view_rows - (self._view_rows > i)
        self._groups = self._groups[keep]
        del self._ids[i]
        del self._labels[i]
        self.version += 1

    def relabel(self, pair_id: int, label: str | None) -> None:
        """Change a pair's label (and so which word it belongs to)."""
        i = self._ids.index(pair_id)
        self._labels[i] = label
        self._groups[i] = self._group_for(label)
        self.version += 1

    def _cosine_to_taught(self, vector: np.ndarray) -> np.ndarray:
        return 1.0 - self._speech[: len(self)] @ l2_normalise(np.asarray(vector, np.float32).reshape(-1))

    def speech_distances(self, query: np.ndarray) -> np.ndarray:
        """(N,) distances from a query (embedding, features for DTW, packed for "fused": the cosine part) to every taught utterance."""
        if len(self) == 0:
            return np.zeros(0, np.float32)
        if self.metric == "dtw":
            return dtw_one_to_many(query, self._speech_rows).astype(np.float32)
        return self._cosine_to_taught(unpack_fused(query)[0] if self.metric == "fused" else query)

    def _dtw_to_rows(self, frames: Sequence[np.ndarray], rows: np.ndarray) -> np.ndarray:
        """DTW cost from the query (the lowest over its frame matrices: as heard, then warped copies) to these rows."""
        refs = [self._speech_rows[i] for i in rows]
        return np.min([dtw_one_to_many(f, refs) for f in frames], axis=0)

    def nearest_utterance(self, query: np.ndarray, best_of: int = 1, warped: Sequence[np.ndarray] = ()) -> tuple[int, float]:
        """(row, distance) of the taught utterance nearest to the query, by this set's metric.

        ``warped``: feature frames of frequency-warped copies of the query
        (:func:`edge.features.warped_speech_features`); DTW takes the lowest cost over the query and
        them. The cosine part (and the distance of "fused", compared with ``unknown_word_distance``)
        uses the query's embedding alone.

        With ``best_of`` > 1 the nearest *word* is chosen first: each word's score is the mean of its
        ``best_of`` best utterance scores (all of them when it was taught fewer times), and the row
        returned is that word's nearest utterance. With "fused", only the shortlist is re-ranked by DTW;
        a word's utterances outside it count as the shortlist's worst score.
        """
        if best_of < 1:
            raise ValueError(f"best_of must be at least 1, got {best_of}")
        best_of = min(best_of, int(np.bincount(self._groups).max()))  # no word taught that often: no need to look further
        if self.metric == "dtw":
            speech_d = self._dtw_to_rows([query, *warped], np.arange(len(self))).astype(np.float32)
            rows, scores = np.arange(len(self)), speech_d.astype(np.float64)
        elif self.metric != "fused" or self.dtw_weight == 0.0 or len(self) == 1:
            speech_d = self.speech_distances(query)
            rows, scores = np.arange(len(self)), speech_d.astype(np.float64)
        else:
            vector, frames = unpack_fused(query)
            speech_d = self._cosine_to_taught(vector)
            rows = np.argsort(speech_d, kind="stable")[: FUSED_SHORTLIST * best_of]
            dtw_d = self._dtw_to_rows([frames, *warped], rows)
            scores = self.dtw_weight * zscore(dtw_d) + (1.0 - self.dtw_weight) * zscore(speech_d[rows])
        word_scores = self._word_scores(rows, scores, best_of) if best_of > 1 else scores
        row = int(rows[np.lexsort((scores, word_scores))[0]])  # the best word's nearest utterance
        return row, float(speech_d[row])

    def _word_scores(self, rows: np.ndarray, scores: np.ndarray, best_of: int) -> np.ndarray:
        """Each row's score replaced by its word's: the mean of the word's ``best_of`` best (missing rows count as the worst score)."""
        groups = self._groups[rows]
        words, shots = np.unique(self._groups, return_counts=True)
        g = np.searchsorted(words, groups)  # word index of each scored row
        order = np.lexsort((scores, g))
        first = np.searchsorted(g[order], g[order], side="left")
        rank = np.empty(len(rows), np.int64)
        rank[order] = np.arange(len(rows)) - first  # 0 for a word's best scored row
        wanted = np.minimum(shots, best_of)  # per word
        keep = rank < wanted[g]
        total = np.bincount(g[keep], weights=scores[keep], minlength=len(words))
        have = np.bincount(g[keep], minlength=len(words))
        total += (wanted - have) * scores.max()  # rows outside the scored set are no better than the worst in it
        return (total / wanted)[g]

    def word_rows(self, row: int) -> np.ndarray:
        """Rows taught as the same word as ``row`` (same label; an unlabelled pair is a word of its own)."""
        return np.flatnonzero(self._groups == self._groups[row])

    def _word_view_columns(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(order, starts, words): the views sorted by word, where each word's run starts, the word ids; kept until the set changes."""
        if self._word_columns is None or self._word_columns[0] != self.version:
            words, inverse = np.unique(self._groups[self._view_rows], return_inverse=True)
            order = np.argsort(inverse, kind="stable")
            starts = np.searchsorted(inverse[order], np.arange(len(words)))
            self._word_columns = (self.version, order, starts, words)
        return self._word_columns[1:]

    def word_image_distances(self, candidates: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(C, G) cosine distance from each candidate to each taught word (minimum over its views), and the (G,) word ids."""
        order, starts, words = self._word_view_columns()
        d = 1.0 - l2_normalise(candidates) @ self.image_embeddings().T  # (C, V)
        return np.minimum.reduceat(d[:, order], starts, axis=1), words

    def candidate_distances(self, candidates: np.ndarray, settings: MatchSettings | None = None) -> CandidateDistances:
        """The request-independent part of :meth:`rank_candidates` for these candidates (C, E), for this version of the set.

        With ``settings`` the softmax normaliser of its mutual exclusivity is computed too.
        """
        word_d, words = self.word_image_distances(np.asarray(candidates, np.float32))
        pre = CandidateDistances(self.version, len(word_d), word_d, words, float(np.median(word_d)))
        if settings is not None and settings.mutual_exclusivity is not None:
            pre.normaliser(_temperature(settings.mutual_exclusivity, pre.median_d), settings.not_in_view_distance)
        return pre

    def rank_candidates(self, row: int, candidates: np.ndarray, settings: MatchSettings = NO_REJECTION,
                        precomputed: CandidateDistances | None = None) -> tuple[RankedCandidate, ...]:
        """The candidates (C, E) ranked for the word taught at ``row``.

        Without mutual exclusivity: by distance to the word's images. With it: by P(word | candidate), a
        softmax over the taught words of -distance / T, with "none of them" as one more outcome at
        ``not_in_view_distance`` when that is set (candidates beyond that distance are ranked last, so
        the rejection is the same as without). T is ``mutual_exclusivity`` times the median distance
        between the candidates and the taught words, so one setting fits any encoder's scale.
        Candidates that are surely the word (P >= :data:`SURE`) are ranked by distance among themselves.
        ``precomputed``: :meth:`candidate_distances` of these candidates, computed earlier (used while
        the set is unchanged; the ranking is the same either way).
        """
        if settings.mutual_exclusivity is None:
            views = np.isin(self._view_rows, self.word_rows(row))
            image_d = (1.0 - l2_normalise(candidates) @ self.image_embeddings()[views].T).min(axis=1)  # (C,)
            return tuple(RankedCandidate(int(c), float(image_d[c])) for c in np.argsort(image_d, kind="stable"))
        if precomputed is None or precomputed.version != self.version or precomputed.candidates != len(candidates):
            precomputed = self.candidate_distances(candidates)
        word_d, words = precomputed.word_d, precomputed.words
        image_d = word_d[:, int(np.searchsorted(words, self._groups[row]))]
        temperature = _temperature(settings.mutual_exclusivity, precomputed.median_d)  # in this encoder's units
        beyond = np.zeros(len(image_d), bool)
        if settings.not_in_view_distance is not None:
            beyond = image_d > settings.not_in_view_distance
        p = np.exp(-image_d / temperature - precomputed.normaliser(temperature, settings.not_in_view_distance))
        order = np.lexsort((image_d, -np.minimum(p, SURE), beyond))  # within the threshold, then most probable, then nearest
        return tuple(RankedCandidate(int(c), float(image_d[c]), float(p[c])) for c in order)

    def resolve(self, query: np.ndarray, candidates: np.ndarray, settings: MatchSettings = NO_REJECTION,
                warped: Sequence[np.ndarray] = (), precomputed: CandidateDistances | None = None) -> Resolution:
        """Answer a request: nearest taught word, then the candidates ranked for it (:meth:`rank_candidates`).

        ``candidates`` is (C, E): the image embeddings of what is in view; ``warped``: see :meth:`nearest_utterance`;
        ``precomputed``: see :meth:`rank_candidates`.
        """
        if len(self) == 0:
            return Resolution(status="nothing_taught")
        row, speech_distance = self.nearest_utterance(query, settings.word_best_of, warped)
        found = dict(pair_index=row, pair_id=self._ids[row], label=self._labels[row], speech_distance=speech_distance)
        threshold = settings.unknown_word_distance
        if isinstance(threshold, str):  # "encoder": Controller.with_encoder_thresholds replaces it before any request
            raise ValueError("unknown_word_distance 'encoder' must be replaced by the speech encoder's measured value")
        if threshold is not None and speech_distance > threshold:
            return Resolution(status="unknown_word", **found)
        return self.resolve_in_view(Resolution(status="resolved", **found), candidates, settings, precomputed)

    def resolve_in_view(self, heard: Resolution, candidates: np.ndarray, settings: MatchSettings = NO_REJECTION,
                        precomputed: CandidateDistances | None = None) -> Resolution:
        """The second half of :meth:`resolve`: the word already heard (``heard.pair_index``), ranked among other candidates.

        Lets the daemon look through earlier views without matching the request's speech again.
        """
        found = dict(pair_index=heard.pair_index, pair_id=heard.pair_id, label=heard.label, speech_distance=heard.speech_distance)
        candidates = np.asarray(candidates, np.float32)
        if candidates.shape[0] == 0:
            return Resolution(status="no_candidates", **found)
        ranked = self.rank_candidates(heard.pair_index, candidates, settings, precomputed)
        if settings.not_in_view_distance is not None and ranked[0].image_distance > settings.not_in_view_distance:
            return Resolution(status="not_in_view", ranked=ranked, **found)
        return Resolution(status="resolved", ranked=ranked, **found)
