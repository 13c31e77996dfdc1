"""DTW against hand-computed cases, and the matching core on constructed embeddings."""
from __future__ import annotations

import numpy as np
import pytest

from edge.dtw import dtw_distance, dtw_one_to_many
from edge.matching import MatchSettings, SupportSet, cosine_distances


def test_dtw_hand_computed():
    # Unit 2-d frames: e0 = (1, 0), e1 = (0, 1). Cosine distance 0 for equal frames, 1 for orthogonal.
    e0, e1 = [1.0, 0.0], [0.0, 1.0]
    a = np.array([e0, e1], np.float32)
    b = np.array([e0, e0, e1], np.float32)
    # Best path (0,0) (0,1) (1,2): costs 0 + 0 + 0 over 3 steps.
    assert dtw_distance(a, b) == pytest.approx(0.0)
    c = np.array([e1, e1], np.float32)
    # a vs c: path (0,0) (1,1): costs 1 + 0 = 1 over 2 steps -> 0.5 (the path through (0,1)/(1,0) costs more).
    assert dtw_distance(a, c) == pytest.approx(0.5)
    d = np.array([[-1.0, 0.0]], np.float32)
    # a vs d: path (0,0) (1,0): costs 2 + 1 = 3 over 2 steps.
    assert dtw_distance(a, d) == pytest.approx(1.5)


def _naive(a: np.ndarray, b: np.ndarray) -> float:
    cost = cosine_distances(a, b)
    t, m = cost.shape
    acc = np.full((t + 1, m + 1), np.inf)
    steps = np.zeros((t + 1, m + 1))
    acc[0, 0] = 0
    for i in range(1, t + 1):
        for j in range(1, m + 1):
            prev = [(acc[i - 1, j - 1], steps[i - 1, j - 1]), (acc[i - 1, j], steps[i - 1, j]), (acc[i, j - 1], steps[i, j - 1])]
            k = int(np.argmin([p[0] for p in prev]))
            acc[i, j] = cost[i - 1, j - 1] + prev[k][0]
            steps[i, j] = prev[k][1] + 1
    return acc[t, m] / steps[t, m]


def test_vectorised_dtw_equals_the_double_loop_on_ragged_batches():
    rng = np.random.default_rng(1)
    q = rng.normal(size=(23, 39))
    refs = [rng.normal(size=(n, 39)) for n in (1, 5, 23, 40, 17)]
    got = dtw_one_to_many(q, refs, chunk=2)  # several chunks of ragged lengths
    want = [_naive(q, r) for r in refs]
    assert np.allclose(got, want, atol=1e-5)


def _unit(*v):
    x = np.array(v, np.float32)
    return x / np.linalg.norm(x)


def make_support() -> SupportSet:
    s = SupportSet("cosine")
    s.add(1, _unit(1, 0, 0), _unit(1, 0, 0, 0), "cup")
    s.add(2, _unit(0, 1, 0), _unit(0, 1, 0, 0), "ball")
    return s


def test_resolve_ranks_candidates_by_the_words_image():
    s = make_support()
    candidates = np.stack([_unit(0, 1, 0, 0.1), _unit(1, 0.2, 0, 0), _unit(0, 0, 1, 0)])
    r = s.resolve(_unit(0.9, 0.1, 0), candidates)
    assert r.status == "resolved" and r.label == "cup" and r.pair_id == 1
    assert r.best is not None and r.best.index == 1
    assert [c.index for c in r.ranked] == [1, 0, 2]
    assert r.speech_distance == pytest.approx(1 - 0.9 / np.hypot(0.9, 0.1), abs=1e-6)
    assert r.ranked[0].image_distance < r.ranked[1].image_distance <= r.ranked[2].image_distance


def test_both_rejections():
    s = make_support()
    candidates = np.stack([_unit(0, 0, 1, 0), _unit(0, 0, 0, 1)])  # neither taught object in view
    settings = MatchSettings(unknown_word_distance=0.2, not_in_view_distance=0.3)
    unknown = s.resolve(_unit(0, 0, 1), candidates, settings)  # a word never taught
    assert unknown.status == "unknown_word" and unknown.best is None and unknown.speech_distance == pytest.approx(1.0)
    away = s.resolve(_unit(1, 0, 0), candidates, settings)
    assert away.status == "not_in_view" and away.label == "cup" and away.best is None
    assert away.ranked[0].image_distance == pytest.approx(1.0)
    here = s.resolve(_unit(1, 0, 0), np.vstack([candidates, _unit(1, 0.1, 0, 0)[None]]), settings)
    assert here.status == "resolved" and here.best.index == 2


def test_k_shots_of_a_word_all_count_and_unlabelled_pairs_stand_alone():
    s = SupportSet("cosine")
    s.add(1, _unit(1, 0), _unit(1, 0, 0), "cup")  # the cup seen from the front
    s.add(2, _unit(1, 0.1), _unit(0, 0, 1), "cup")  # and from above
    s.add(3, _unit(0, 1), _unit(0, 1, 0), None)
    from_above = np.stack([_unit(0, 1, 0), _unit(0, 0.1, 1)])
    r = s.resolve(_unit(1, 0), from_above)  # nearest utterance is pair 1, but pair 2's view matches
    assert r.pair_id == 1 and r.best.index == 1
    s.relabel(2, "bowl")  # now pair 2 is another word: only the front view counts for "cup"
    r = s.resolve(_unit(1, 0), from_above)
    assert r.best.index == 0 or r.ranked[0].image_distance > 0.9
    s.remove(1)
    assert s.ids == [2, 3] and s.labels == ["bowl", None]
    assert s.resolve(_unit(1, 0), from_above).pair_id == 2


def test_empty_memory_and_no_candidates():
    assert SupportSet().resolve(_unit(1, 0), np.zeros((1, 2))).status == "nothing_taught"
    r = make_support().resolve(_unit(1, 0, 0), np.zeros((0, 4), np.float32))
    assert r.status == "no_candidates" and r.label == "cup"


def test_dtw_support_set():
    s = SupportSet("dtw")
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(20, 39)), rng.normal(size=(30, 39))
    s.add(1, a, _unit(1, 0), "a")
    s.add(2, b, _unit(0, 1), "b")
    r = s.resolve(b[::2] + 0.01, np.stack([_unit(1, 0), _unit(0.1, 1)]))
    assert r.label == "b" and r.best.index == 1


def test_embedding_size_mismatch_is_refused():
    s = make_support()
    with pytest.raises(ValueError, match="embedding size"):
        s.add(3, _unit(1, 0, 0, 0, 0), _unit(1, 0, 0, 0), "x")
    with pytest.raises(ValueError, match="already"):
        s.add(1, _unit(1, 0, 0), _unit(1, 0, 0, 0))


def test_matching_ten_thousand_pairs_returns_the_planted_pair():
    rng = np.random.default_rng(0)
    s = SupportSet("cosine")
    speech = rng.normal(size=(10_000, 64)).astype(np.float32)
    images = rng.normal(size=(10_000, 64)).astype(np.float32)
    for i in range(10_000):
        s.add(i, speech[i], images[i], None)
    cand = rng.normal(size=(10, 64)).astype(np.float32)
    cand[7] = images[4321] + 0.05 * rng.normal(size=64)
    r = s.resolve(speech[4321] + 0.05 * rng.normal(size=64), cand)
    assert r.pair_id == 4321 and r.best.index == 7
