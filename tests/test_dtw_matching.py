"""DTW against hand-computed cases, and the matching core on constructed embeddings."""
from __future__ import annotations

import numpy as np
import pytest

from edge.dtw import dtw_distance, dtw_one_to_many
from edge.matching import DISTANCE_ONLY, NO_REJECTION, MatchSettings, SupportSet, cosine_distances, pack_fused, unpack_fused


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



def test_dtw_breaks_ties_like_the_double_loop():
    # Frames drawn from three unit vectors make many paths of equal cost; the path length that
    # normalises the cost then depends on which predecessor wins a tie (diagonal, then above, then left).
    rng = np.random.default_rng(7)
    basis = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    for _ in range(30):
        q = basis[rng.integers(0, 3, size=int(rng.integers(1, 12)))]
        refs = [basis[rng.integers(0, 3, size=int(rng.integers(1, 12)))] for _ in range(4)]
        assert np.allclose(dtw_one_to_many(q, refs), [_naive(q, r) for r in refs], atol=1e-9)

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
    r = s.resolve(_unit(0.9, 0.1, 0), candidates, DISTANCE_ONLY)
    assert r.status == "resolved" and r.label == "cup" and r.pair_id == 1
    assert r.best is not None and r.best.index == 1
    assert [c.index for c in r.ranked] == [1, 0, 2]
    assert r.speech_distance == pytest.approx(1 - 0.9 / np.hypot(0.9, 0.1), abs=1e-6)
    assert r.ranked[0].image_distance < r.ranked[1].image_distance <= r.ranked[2].image_distance
    assert all(c.word_probability is None for c in r.ranked)
    # With mutual exclusivity the ball (candidate 0) is ranked below the thing unlike either taught object:
    # it is surely the ball, so surely not the cup.
    r = s.resolve(_unit(0.9, 0.1, 0), candidates)
    assert [c.index for c in r.ranked] == [1, 2, 0]
    assert r.ranked[0].word_probability > 0.99 and r.ranked[1].word_probability == pytest.approx(0.5, abs=1e-6)
    assert r.ranked[2].word_probability < 1e-6


def test_mutual_exclusivity_prefers_the_candidate_that_is_no_other_taught_word():
    s = make_support()  # cup (1, 0, 0, 0), ball (0, 1, 0, 0)
    ball_like = _unit(0.8, 0.9, 0, 0)  # cosine distance 0.34 to the cup's image, 0.25 to the ball's
    odd_cup = _unit(0.6, 0, 0.8, 0)  # 0.40 to the cup's image, 1.0 to the ball's
    candidates = np.stack([ball_like, odd_cup])
    assert s.resolve(_unit(1, 0, 0), candidates, DISTANCE_ONLY).best.index == 0  # nearest to the cup's image
    r = s.resolve(_unit(1, 0, 0), candidates)
    assert r.best.index == 1 and r.best.image_distance == pytest.approx(0.4, abs=1e-6)
    assert s.resolve(_unit(0, 1, 0), candidates).best.index == 0  # and "ball" still finds the ball


def test_mutual_exclusivity_with_one_taught_word_ranks_by_distance():
    s = SupportSet("cosine")
    s.add(1, _unit(1, 0), _unit(1, 0, 0), "cup")
    candidates = np.stack([_unit(0, 1, 0), _unit(1, 0.5, 0), _unit(1, 0.1, 0), _unit(0, 0, 1)])
    for settings in (MatchSettings(unknown_word_distance=None, not_in_view_distance=None), MatchSettings(unknown_word_distance=0.5)):
        ranked = s.resolve(_unit(1, 0), candidates, settings).ranked
        assert [c.index for c in ranked] == [2, 1, 0, 3]  # ties (all surely the cup) are broken by distance


def test_mutual_exclusivity_never_changes_the_not_in_view_rejection():
    s = make_support()
    settings = MatchSettings(unknown_word_distance=None, not_in_view_distance=0.3, mutual_exclusivity=0.05)
    near_but_ball_like = _unit(1, 0.9, 0, 0)  # 0.26 from the cup's image: within the threshold, yet more like the ball
    far_but_only_cup = _unit(0.5, 0, 1, 0)  # 0.55 from the cup's image, 1.0 from the ball's
    r = s.resolve(_unit(1, 0, 0), np.stack([far_but_only_cup, near_but_ball_like]), settings)
    assert r.status == "resolved" and r.best.index == 1  # candidates beyond the threshold are ranked last
    r = s.resolve(_unit(1, 0, 0), np.stack([far_but_only_cup]), settings)
    assert r.status == "not_in_view"


def test_word_image_distances_are_the_minimum_over_each_words_images():
    rng = np.random.default_rng(3)
    s = SupportSet("cosine")
    labels = ["cup", "ball", None, "cup", "box", "ball", None, "cup"]
    images = rng.normal(size=(len(labels), 6)).astype(np.float32)
    for i, (lab, img) in enumerate(zip(labels, images)):
        s.add(i, _unit(*rng.normal(size=3)), img, lab)
    s.remove(4)  # the only "box": its word disappears
    s.relabel(6, "ball")
    cand = rng.normal(size=(5, 6)).astype(np.float32)
    got, words = s.word_image_distances(cand)
    assert got.shape == (5, len(words)) == (5, 3)  # cup, ball (with pair 6), the unlabelled pair 2
    full = cosine_distances(cand, images)
    for j, w in enumerate(words):
        rows = [s.ids[r] for r in np.flatnonzero(s._groups == w)]
        assert np.allclose(got[:, j], full[:, rows].min(axis=1), atol=1e-6)


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


def test_fused_representation_round_trips_and_refuses_garbage():
    rng = np.random.default_rng(1)
    vec, frames = rng.normal(size=16), rng.normal(size=(23, 39)).astype(np.float32)
    e, f = unpack_fused(pack_fused(vec, frames))
    np.testing.assert_allclose(e, vec / np.linalg.norm(vec), rtol=1e-6)
    np.testing.assert_array_equal(f, frames)
    for bad in (np.zeros(1), np.array([16, 39, 1.0, 2.0]), np.array([0, 39] + [0.0] * 39)):
        with pytest.raises(ValueError, match="fused"):
            unpack_fused(bad)


def test_fused_metric_lets_dtw_overrule_a_close_embedding_and_keeps_the_cosine_distance():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(30, 39)), rng.normal(size=(25, 39))
    s = SupportSet("fused", dtw_weight=0.5)
    s.add(1, pack_fused(_unit(1, 0, 0), a), _unit(1, 0), "a")
    s.add(2, pack_fused(_unit(0.9, 0.44, 0), b), _unit(0, 1), "b")
    s.add(3, pack_fused(_unit(0, 0, 1), rng.normal(size=(28, 39))), _unit(1, 1), "c")
    # the query's frames are b's (slowed down), its embedding nearer to a's than to b's
    query = pack_fused(_unit(0.99, 0.1, 0), np.repeat(b, 2, axis=0) + 0.01)
    assert SupportSet("cosine").metric == "cosine"
    cosine_only = SupportSet("fused", dtw_weight=0.0)
    for pid, sp, im, lab in ((1, pack_fused(_unit(1, 0, 0), a), _unit(1, 0), "a"), (2, pack_fused(_unit(0.9, 0.44, 0), b), _unit(0, 1), "b")):
        cosine_only.add(pid, sp, im, lab)
    assert cosine_only.resolve(query, np.stack([_unit(1, 0), _unit(0, 1)])).label == "a"
    r = s.resolve(query, np.stack([_unit(1, 0), _unit(0, 1)]))
    assert r.label == "b" and r.best.index == 1
    # the distance reported (and compared with unknown_word_distance) is the embedding's cosine distance
    assert r.speech_distance == pytest.approx(1 - float(_unit(0.99, 0.1, 0) @ _unit(0.9, 0.44, 0)), abs=1e-6)
    s.remove(2)
    assert s.resolve(query, np.stack([_unit(1, 0)])).label == "a"
    with pytest.raises(ValueError, match="dtw_weight"):
        SupportSet("fused", dtw_weight=1.5)


def test_shipped_speech_encoder_fused_with_dtw_packs_both_and_matches():
    from edge.encoders import EncoderSettings, load_speech_encoder, support_set_for
    from edge.features import SpeechFeatureSettings

    enc = load_speech_encoder(EncoderSettings(speech="default", fuse_dtw=0.5), SpeechFeatureSettings())
    assert enc.metric == "fused" and enc.encoder_id.endswith("+dtw")
    rng = np.random.default_rng(3)
    utterances = [rng.normal(size=(n, 39)).astype(np.float32) for n in (40, 55, 70)]
    packed = enc.embed(utterances)
    vec, frames = unpack_fused(packed[1])
    np.testing.assert_array_equal(frames, utterances[1])
    assert vec.shape == (128,) and np.linalg.norm(vec) == pytest.approx(1.0, abs=1e-5)
    support = support_set_for(enc)
    assert support.metric == "fused" and support.dtw_weight == 0.5
    for i, p in enumerate(packed):
        support.add(i, p, _unit(*np.eye(3)[i]), f"w{i}")
    r = support.resolve(enc.embed([utterances[2] + 0.01])[0], np.eye(3, dtype=np.float32))
    assert r.label == "w2" and r.best.index == 2 and r.speech_distance < 0.01
    assert load_speech_encoder(EncoderSettings(speech="dtw", fuse_dtw=0.5), SpeechFeatureSettings()).metric == "dtw"


def _word_by_brute_force(dist: np.ndarray, labels: list[str], best_of: int) -> str:
    """The word whose min(best_of, shots) nearest rows have the smallest mean distance."""
    words = sorted(set(labels))
    means = [np.sort(dist[[i for i, lab in enumerate(labels) if lab == w]])[:best_of].mean() for w in words]
    return words[int(np.argmin(means))]


def test_word_best_of_lets_a_word_with_several_close_utterances_beat_one_close_outlier():
    s = SupportSet("cosine")
    # "cup": one utterance very near the query, the others far; "cat": three utterances fairly near.
    for pid, (vec, lab) in enumerate([((1, 0.05, 0), "cup"), ((0, 0, 1), "cup"), ((0, 0.2, 1), "cup"),
                                      ((1, 0.3, 0), "cat"), ((1, 0.32, 0), "cat"), ((1, 0.34, 0), "cat")]):
        s.add(pid, _unit(*vec), _unit(1, 0), lab)
    query = _unit(1, 0, 0)
    assert s.labels[s.nearest_utterance(query)[0]] == "cup"
    row, dist = s.nearest_utterance(query, best_of=2)
    # the row returned is the chosen word's nearest utterance, with its own distance
    assert s.labels[row] == "cat" and row == 3 and dist == pytest.approx(1 - float(query @ _unit(1, 0.3, 0)), abs=1e-6)
    assert s.resolve(query, np.stack([_unit(1, 0)]), MatchSettings(unknown_word_distance=None)).label == "cat"  # the default: 2
    assert s.resolve(query, np.stack([_unit(1, 0)]), MatchSettings(unknown_word_distance=None, word_best_of=1)).label == "cup"  # the seeds' rule
    with pytest.raises(ValueError, match="best_of"):
        s.nearest_utterance(query, best_of=0)


@pytest.mark.parametrize("best_of", [1, 2, 3, 5])
def test_word_best_of_matches_brute_force_with_words_taught_different_numbers_of_times(best_of):
    rng = np.random.default_rng(best_of)
    for _ in range(20):
        s = SupportSet("cosine")
        labels = []
        for w in range(6):
            for _ in range(int(rng.integers(1, 6))):
                s.add(len(labels), rng.normal(size=8), _unit(1, 0), f"w{w}")
                labels.append(f"w{w}")
        s.remove(0)  # rows move; the words must follow them
        labels = labels[1:]
        query = rng.normal(size=8)
        dist = s.speech_distances(query)
        row, _ = s.nearest_utterance(query, best_of)
        assert s.labels[row] == _word_by_brute_force(dist, labels, best_of)
        assert dist[row] == dist[[i for i, lab in enumerate(labels) if lab == s.labels[row]]].min()


def test_fused_word_best_of_counts_utterances_outside_the_shortlist_as_the_worst_score():
    from edge import matching

    rng = np.random.default_rng(3)
    s = SupportSet("fused", dtw_weight=0.5)
    frames = [rng.normal(size=(20, 39)).astype(np.float32) for _ in range(40)]
    vectors = rng.normal(size=(40, 16))
    labels = [f"w{i % 8}" for i in range(40)]
    for i in range(40):
        s.add(i, pack_fused(vectors[i], frames[i]), _unit(1, 0), labels[i])
    query = pack_fused(rng.normal(size=16), rng.normal(size=(22, 39)))
    q_vec, q_frames = unpack_fused(query)
    cos = s.speech_distances(query)
    for best_of in (1, 2, 3):
        short = np.argsort(cos, kind="stable")[: matching.FUSED_SHORTLIST * best_of]
        dtw = dtw_one_to_many(q_frames, [frames[i] for i in short])
        fused = 0.5 * matching.zscore(dtw) + 0.5 * matching.zscore(cos[short])
        worst = fused.max()
        full = np.full(40, worst)  # every utterance outside the shortlist scores the worst shortlisted score
        full[short] = fused
        expect = _word_by_brute_force(full, labels, best_of)
        row, _ = s.nearest_utterance(query, best_of)
        assert s.labels[row] == expect and row in short


def test_dtw_takes_the_lowest_cost_over_the_request_and_its_warped_copies():
    rng = np.random.default_rng(4)
    taught = [rng.normal(size=(20 + 3 * i, 39)).astype(np.float32) for i in range(3)]
    heard = taught[0] + 1.5 * rng.normal(size=taught[0].shape).astype(np.float32)  # word 0, blurred
    copy_of_2 = taught[2] + 0.01  # a warped copy that matches word 2 almost exactly
    for metric in ("dtw", "fused"):
        s = SupportSet(metric, dtw_weight=1.0)  # fused with all weight on DTW: the shortlist is everything here
        for i, frames in enumerate(taught):
            speech = frames if metric == "dtw" else pack_fused(_unit(1, i, 0), frames)
            s.add(i, speech, _unit(1, 0), f"w{i}")
        query = heard if metric == "dtw" else pack_fused(_unit(1, 0.1, 0), heard)
        row, dist = s.nearest_utterance(query)
        assert row == 0
        row, dist_warped = s.nearest_utterance(query, 1, [copy_of_2])
        assert row == 2
        if metric == "dtw":  # the distance reported is the lowest DTW cost
            assert dist_warped == pytest.approx(dtw_distance(copy_of_2, taught[2]), abs=1e-5)
        else:  # fused reports the embedding's cosine distance, whatever DTW chose
            assert dist_warped == pytest.approx(1 - float(_unit(1, 0.1, 0) @ _unit(1, 2, 0)), abs=1e-6)
        assert s.resolve(query, np.stack([_unit(1, 0)]), NO_REJECTION, [copy_of_2]).label == "w2"


def _rank_as_before(s: SupportSet, row: int, candidates: np.ndarray, settings: MatchSettings) -> list[tuple[int, float, float]]:
    """The mutual-exclusivity ranking as rank_candidates computed it before the request-independent part was precomputed."""
    from scipy.special import logsumexp

    from edge.matching import SURE, l2_normalise

    d = 1.0 - l2_normalise(candidates) @ s.image_embeddings().T
    groups = s._groups[s.view_rows()]
    words, inverse = np.unique(groups, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    word_d = np.minimum.reduceat(d[:, order], np.searchsorted(inverse[order], np.arange(len(words))), axis=1)
    image_d = word_d[:, int(np.searchsorted(words, s._groups[row]))]
    temperature = max(settings.mutual_exclusivity * float(np.median(word_d)), 1e-6)
    logits = -word_d / temperature
    beyond = np.zeros(len(image_d), bool)
    if settings.not_in_view_distance is not None:
        logits = np.concatenate([logits, np.full((len(logits), 1), -settings.not_in_view_distance / temperature)], axis=1)
        beyond = image_d > settings.not_in_view_distance
    p = np.exp(-image_d / temperature - logsumexp(logits, axis=1))
    ranked = np.lexsort((image_d, -np.minimum(p, SURE), beyond))
    return [(int(c), float(image_d[c]), float(p[c])) for c in ranked]


def _views_support(rng: np.random.Generator, pairs: int, views: int, dim: int = 16) -> SupportSet:
    s = SupportSet("cosine")
    for i in range(pairs):
        label = f"w{rng.integers(pairs // 2 + 1)}" if rng.random() < 0.7 else None  # shared words and unlabelled pairs
        s.add(i, rng.normal(size=8).astype(np.float32), rng.normal(size=(views, dim)).astype(np.float32), label)
    return s


@pytest.mark.parametrize("not_in_view", [None, 0.9])
def test_precomputed_candidate_distances_give_the_very_same_answers(not_in_view):
    rng = np.random.default_rng(11)
    s = _views_support(rng, 60, 5)
    settings = MatchSettings(unknown_word_distance=None, not_in_view_distance=not_in_view, mutual_exclusivity=0.05)
    candidates = rng.normal(size=(10, 16)).astype(np.float32)
    pre = s.candidate_distances(candidates, settings)  # while the person speaks
    for _ in range(20):
        query = rng.normal(size=8).astype(np.float32)
        fresh = s.resolve(query, candidates, settings)
        early = s.resolve(query, candidates, settings, precomputed=pre)
        assert early == fresh  # every field, every candidate's distance and probability, bit for bit
        got = [(c.index, c.image_distance, c.word_probability) for c in early.ranked]
        assert got == _rank_as_before(s, fresh.pair_index, candidates, settings)  # and as the ranking was before


def test_precomputed_distances_go_stale_when_the_taught_set_changes():
    rng = np.random.default_rng(12)
    s = _views_support(rng, 30, 3)
    settings = MatchSettings(unknown_word_distance=None, not_in_view_distance=None, mutual_exclusivity=0.05)
    candidates = rng.normal(size=(6, 16)).astype(np.float32)
    query = rng.normal(size=8).astype(np.float32)
    changes = [
        lambda: s.add(100, rng.normal(size=8).astype(np.float32), rng.normal(size=(2, 16)).astype(np.float32), "new"),
        lambda: s.add_view(3, candidates[0] + 0.01, key=7),  # a confirmed answer's crop, near a candidate
        lambda: s.relabel(5, "w0"),
        lambda: s.remove_view(7),
        lambda: s.remove(4),
    ]
    for change in changes:
        pre = s.candidate_distances(candidates, settings)
        change()
        assert pre.version != s.version
        assert s.resolve(query, candidates, settings, precomputed=pre) == s.resolve(query, candidates, settings)
        row = s.resolve(query, candidates, settings).pair_index
        got = [(c.index, c.image_distance, c.word_probability) for c in s.rank_candidates(row, candidates, settings, pre)]
        assert got == _rank_as_before(s, row, candidates, settings)
    # distances computed for other candidates (another view) are not used either
    other = s.candidate_distances(candidates[:3], settings)
    assert s.resolve(query, candidates, settings, precomputed=other) == s.resolve(query, candidates, settings)
