"""Episodes of the seeds' one-shot protocol: L-way K-shot support set, spoken queries, a matching set.

An episode draws L classes. With ``teachers="one"`` (the seeds' protocol) one teacher, a speaker
drawn at random, says each class K times; with ``"half"`` (a household) the speakers are split at
random into a teaching half (the larger half when their number is odd) and an asking half, and each
class's K utterances are drawn from all the teaching half's recordings of it, whoever said them
(the split is drawn first, then the L classes among those the teaching half said K times and the
asking half said at least once, so that sparse corpora, where most speakers said few words, work).
Each utterance is paired with an image of its class: the support set of L x K pairs. Q spoken
queries of those classes come from speakers who did not teach (``speakers="different"``; with
``"half"``: the asking half only) or from the teacher (``"same"``, one teacher only: a robot's
teacher often asks too), never a support utterance. The matching set holds one image per class,
none of them in the support set and, when views are known, at least ``min_view_gap`` turntable
steps from every support view of its object.

With ``teach_views`` N > 1 (manifests with a view column) each support pair also keeps the views
``teach_view_step`` S apart around its taught view (offsets 0, +S, -S, +2S, ...: what a teacher
turning the object in hand shows the camera), and the matching view keeps the gap from all of them.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Literal

import numpy as np

from edge.bench.manifest import ImageItem, SpeechItem

SpeakerMode = Literal["different", "same"]
TeacherMode = Literal["one", "half"]


class EpisodeError(ValueError):
    """The manifests cannot supply the requested episodes."""


@dataclass(frozen=True)
class Episode:
    """Indices into the speech and image manifests."""

    classes: tuple[str, ...]
    support_speech: tuple[int, ...]  # L * K, class-major
    support_images: tuple[int, ...]  # paired with support_speech
    support_labels: tuple[str, ...]
    queries: tuple[int, ...]
    matching: tuple[int, ...]  # one image per class, in ``classes`` order
    teaching: tuple[str, ...] = ()  # the speakers who may teach in this episode (sorted): the teacher, or the teaching half
    support_views: tuple[tuple[int, ...], ...] = ()  # per support pair: its images, the taught one first (empty: support_images alone)

    def views_of(self, k: int) -> tuple[int, ...]:
        """The images taught with support pair ``k``."""
        return self.support_views[k] if self.support_views else (self.support_images[k],)


def view_offsets(n: int, step: int) -> tuple[int, ...]:
    """Offsets of ``n`` teaching views ``step`` apart, centred on the taught view: 0, +step, -step, +2 step, ..."""
    return tuple(((k + 1) // 2) * step * (1 if k % 2 else -1) for k in range(n))


def view_distance(a: int, b: int, n_views: int) -> int:
    """Steps between two views on a circle of ``n_views``."""
    d = abs(a - b) % n_views
    return min(d, n_views - d)


class EpisodeSampler:
    """Draws episodes from two manifests; deterministic for a seed."""

    def __init__(
        self,
        speech: list[SpeechItem],
        images: list[ImageItem],
        ways: int,
        shots: int,
        queries: int,
        speakers: SpeakerMode = "different",
        min_view_gap: int = 0,
        teachers: TeacherMode = "one",
        teach_views: int = 1,
        teach_view_step: int = 1,
    ) -> None:
        self.ways, self.shots, self.n_queries, self.speakers = ways, shots, queries, speakers
        self.teachers = teachers
        self.min_view_gap = min_view_gap
        if teach_views < 1 or teach_view_step < 1:
            raise EpisodeError(f"--teach-views and --teach-view-step must be >= 1, got {teach_views} and {teach_view_step}")
        self.offsets = view_offsets(teach_views, teach_view_step)
        self.speech_by = defaultdict(lambda: defaultdict(list))  # label -> speaker -> [index]
        for i, it in enumerate(speech):
            self.speech_by[it.label][it.speaker].append(i)
        self.images_by = defaultdict(list)  # label -> [index]
        for i, it in enumerate(images):
            self.images_by[it.label].append(i)
        self.views = [it.view for it in images]
        self.n_views = {lab: max((self.views[i] or 0) for i in idx) + 1 for lab, idx in self.images_by.items()}
        if min_view_gap and any(v is None for v in self.views):
            raise EpisodeError("--min-view-gap needs a view column in the image manifest")
        if teach_views > 1 and any(v is None for v in self.views):
            raise EpisodeError("--teach-views needs a view column in the image manifest")
        self.index_of_view = {(images[i].label, v): i for i, v in enumerate(self.views) if v is not None}
        self.classes = sorted(set(self.speech_by) & set(self.images_by))
        if len(self.classes) < ways:
            raise EpisodeError(f"{ways}-way episodes need {ways} classes present in both manifests; found {len(self.classes)}: {self.classes}")
        speakers_all = sorted({it.speaker for it in speech})
        if speakers == "different" and len(speakers_all) < 2:
            raise EpisodeError("--speakers different needs at least two speakers in the speech manifest")
        if teachers not in ("one", "half"):
            raise EpisodeError(f"--teachers must be one or half, got {teachers!r}")
        if teachers == "half" and speakers != "different":
            raise EpisodeError("--teachers half asks with the speakers who did not teach: use it with --speakers different")
        self.speakers_all = speakers_all
        self._most_teachable = 0  # the most classes a drawn split could teach and ask (for the error message)

    def sample(self, rng: np.random.Generator, attempts: int = 100) -> Episode:
        """One episode; retries a few draws when the chosen teacher cannot supply it."""
        for _ in range(attempts):
            ep = self._try(rng)
            if ep is not None:
                return ep
        if self.teachers == "one":
            raise EpisodeError(
                f"could not draw a {self.ways}-way {self.shots}-shot episode with {self.speakers} speakers and one teacher in {attempts} tries: "
                "too few recordings per speaker (try --teachers half), or too few images per class"
            )
        if self._most_teachable >= self.ways:
            raise EpisodeError(
                f"could not draw a {self.ways}-way {self.shots}-shot episode with half of the speakers teaching in {attempts} tries: "
                f"no matching image at least {self.min_view_gap} views from the support views"
            )
        raise EpisodeError(
            f"could not draw a {self.ways}-way {self.shots}-shot episode with half of the speakers teaching in {attempts} tries: "
            f"at most {self._most_teachable} of the {len(self.classes)} classes had {self.shots} recordings by a teaching half, "
            f"one by the asking half and {self.shots + 1} images"
        )

    def _try(self, rng: np.random.Generator) -> Episode | None:
        if self.teachers == "one":  # classes, then the teacher: the seeds' sampler, draw for draw
            classes = [self.classes[i] for i in rng.choice(len(self.classes), self.ways, replace=False)]
            teaching = self._draw_teaching(rng)
        else:  # the split first, then classes among those it can teach and ask (sparse corpora: most are not)
            teaching = self._draw_teaching(rng)
            eligible = [c for c in self.classes if self._teachable(c, teaching)]
            self._most_teachable = max(self._most_teachable, len(eligible))
            if len(eligible) < self.ways:
                return None
            classes = [eligible[i] for i in rng.choice(len(eligible), self.ways, replace=False)]
        support_speech, support_images, labels, matching, support_views = [], [], [], [], []
        for c in classes:
            own = sorted(i for spk in teaching for i in self.speech_by[c].get(spk, []))
            extra = self.shots + (1 if self.speakers == "same" else 0)  # "same" also needs a query left over
            if len(own) < extra:
                return None
            support_speech.extend(int(i) for i in rng.choice(own, self.shots, replace=False))
            imgs = self.images_by[c]
            if len(imgs) < self.shots + 1:
                return None
            chosen = [int(i) for i in rng.choice(imgs, self.shots, replace=False)]
            views = [self._teaching_views(i, c) for i in chosen]
            if any(v is None for v in views):
                return None
            support_images.extend(chosen)
            support_views.extend(views)  # type: ignore[arg-type]
            labels.extend([c] * self.shots)
            taught = [i for v in views for i in v]  # type: ignore[union-attr]
            pool = [i for i in imgs if i not in taught and self._far_from(i, taught, c)]
            if not pool:
                return None
            matching.append(int(pool[rng.integers(len(pool))]))
        used = set(support_speech)
        query_pool = {
            c: [i for spk, idx in self.speech_by[c].items() if (spk not in teaching) == (self.speakers == "different") for i in idx if i not in used]
            for c in classes
        }
        askable = [c for c in classes if query_pool[c]]
        if not askable:
            return None
        queries = []
        for _ in range(self.n_queries):
            c = askable[rng.integers(len(askable))]
            queries.append(int(query_pool[c][rng.integers(len(query_pool[c]))]))
        return Episode(tuple(classes), tuple(support_speech), tuple(support_images), tuple(labels), tuple(queries), tuple(matching),
                       tuple(sorted(teaching)), tuple(support_views))

    def _teaching_views(self, i: int, label: str) -> tuple[int, ...] | None:
        """Image ``i`` and the views around it (:func:`view_offsets`), or None when one is missing from the manifest."""
        if len(self.offsets) == 1:
            return (i,)
        n = self.n_views[label]
        out = tuple(self.index_of_view.get((label, (self.views[i] + o) % n)) for o in self.offsets)  # type: ignore[operator]
        return None if None in out else out  # type: ignore[return-value]

    def _teachable(self, label: str, teaching: set[str]) -> bool:
        """The teaching half said ``label`` at least K times, someone else said it, and it has K + 1 images."""
        said = self.speech_by[label]
        taught = sum(len(idx) for spk, idx in said.items() if spk in teaching)
        return taught >= self.shots and len(said) > sum(spk in teaching for spk in said) and len(self.images_by[label]) > self.shots

    def _draw_teaching(self, rng: np.random.Generator) -> set[str]:
        """The speakers who teach this episode: one drawn at random, or a random half (the larger when odd)."""
        n = len(self.speakers_all)
        if self.teachers == "one":
            return {self.speakers_all[rng.integers(n)]}
        order = rng.permutation(n)
        return {self.speakers_all[i] for i in order[: n - n // 2]}

    def _far_from(self, i: int, chosen: list[int], label: str) -> bool:
        if not self.min_view_gap:
            return True
        n = self.n_views[label]
        return all(view_distance(self.views[i], self.views[j], n) >= self.min_view_gap for j in chosen)  # type: ignore[arg-type]
