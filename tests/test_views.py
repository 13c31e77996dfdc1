"""Several views per taught object in the matching core, and the benchmark's teaching views (issue 17)."""
from __future__ import annotations

import numpy as np
import pytest

from edge.bench.episodes import EpisodeError, EpisodeSampler, view_distance, view_offsets
from edge.bench.manifest import ImageItem, SpeechItem
from edge.matching import DISTANCE_ONLY, NO_REJECTION, MatchSettings, SupportSet, l2_normalise


def unit(rng: np.random.Generator, n: int, d: int = 16) -> np.ndarray:
    return l2_normalise(rng.standard_normal((n, d)).astype(np.float32))


def test_a_candidate_near_any_view_of_a_word_is_found_at_that_views_distance() -> None:
    rng = np.random.default_rng(0)
    speech = unit(rng, 2)
    front, side, other = unit(rng, 3)
    s = SupportSet("cosine")
    s.add(1, speech[0], np.stack([front, side]), "cup")  # two views taught
    s.add(2, speech[1], other, "ball")
    seen_from_the_side = l2_normalise(side + 0.05 * unit(rng, 1)[0])
    res = s.resolve(speech[0], np.stack([other, seen_from_the_side]), DISTANCE_ONLY)
    assert res.status == "resolved" and res.best.index == 1
    assert res.best.image_distance == pytest.approx(1.0 - float(seen_from_the_side @ side), abs=1e-5)
    # With only the front view taught, the same candidate is much further.
    one = SupportSet("cosine")
    one.add(1, speech[0], front, "cup")
    one.add(2, speech[1], other, "ball")
    assert one.resolve(speech[0], np.stack([other, seen_from_the_side]), DISTANCE_ONLY).ranked[0].image_distance > res.best.image_distance + 0.3
    assert s.view_count(1) == 2 and s.view_count(2) == 1


def brute_force(pairs: dict[int, list[np.ndarray]], ids: list[int], images: np.ndarray) -> np.ndarray:
    return np.stack([[min(1.0 - float(im @ v) for v in pairs[p]) for p in ids] for im in images])


def test_views_stay_with_their_pair_through_adds_and_removals() -> None:
    rng = np.random.default_rng(1)
    s = SupportSet("cosine")
    truth: dict[int, list[np.ndarray]] = {}
    learned: dict[int, tuple[int, np.ndarray]] = {}
    next_key = 100
    for step in range(300):
        op = rng.integers(4)
        if op == 0 or len(truth) < 3:
            pid = step + 1
            views = unit(rng, int(rng.integers(1, 5)))
            s.add(pid, unit(rng, 1)[0], views, f"w{rng.integers(5)}")
            truth[pid] = list(views)
        elif op == 1:
            pid = int(rng.choice(list(truth)))
            s.remove(pid)
            del truth[pid]
            learned = {k: v for k, v in learned.items() if v[0] != pid}
        elif op == 2:
            pid = int(rng.choice(list(truth)))
            v = unit(rng, 1)[0]
            s.add_view(pid, v, next_key)
            truth[pid].append(v)
            learned[next_key] = (pid, v)
            next_key += 1
        elif learned:
            key = int(rng.choice(list(learned)))
            pid, v = learned.pop(key)
            assert s.remove_view(key)
            truth[pid] = [w for w in truth[pid] if w is not v]
        probe = unit(rng, 3)
        np.testing.assert_allclose(s.pair_image_distances(probe), brute_force(truth, s.ids, probe), atol=1e-5)
        assert [s.view_count(p) for p in s.ids] == [len(truth[p]) for p in s.ids]
    assert not s.remove_view(99999)


def test_word_distance_is_the_minimum_over_every_view_of_every_shot_and_exclusivity_sees_them() -> None:
    rng = np.random.default_rng(2)
    speech = unit(rng, 3)
    a1, a2, a3, b = unit(rng, 4)
    s = SupportSet("cosine")
    s.add(1, speech[0], a1, "a")
    s.add(2, speech[1], np.stack([a2, a3]), "a")
    s.add(3, speech[2], b, "b")
    cands = np.stack([a3, b, a1])
    d, words = s.word_image_distances(cands)
    assert d.shape == (3, 2)
    np.testing.assert_allclose(d[:, 0], [0.0, min(1 - b @ a1, 1 - b @ a2, 1 - b @ a3), 0.0], atol=1e-5)
    ranked = s.rank_candidates(0, cands, MatchSettings(unknown_word_distance=None, not_in_view_distance=None))
    assert {ranked[0].index, ranked[1].index} == {0, 2}  # both views of word a beat b's crop


def test_a_learned_view_changes_the_answer_and_removing_it_restores_the_old_one() -> None:
    rng = np.random.default_rng(3)
    speech = unit(rng, 2)
    cup, ball, cup_back = unit(rng, 3)
    s = SupportSet("cosine")
    s.add(1, speech[0], cup, "cup")
    s.add(2, speech[1], ball, "ball")
    settings = MatchSettings(unknown_word_distance=None, not_in_view_distance=0.35)
    assert s.resolve(speech[0], cup_back[None], settings).status == "not_in_view"
    s.add_view(1, cup_back, key=7)
    assert s.resolve(speech[0], cup_back[None], settings).status == "resolved"
    with pytest.raises(ValueError, match="already"):
        s.add_view(1, cup_back, key=7)
    assert s.remove_view(7)
    assert s.resolve(speech[0], cup_back[None], settings).status == "not_in_view"


def test_a_view_added_with_its_mirror_is_matched_by_both_and_removed_with_both() -> None:
    rng = np.random.default_rng(4)
    speech = unit(rng, 2)
    cup, ball, side, side_mirrored = unit(rng, 4)
    s = SupportSet("cosine")
    s.add(1, speech[0], cup, "cup")
    s.add(2, speech[1], ball, "ball")
    s.add_view(1, np.stack([side, side_mirrored]), key=9)  # one view: the crop and its mirror
    assert s.view_count(1) == 3
    np.testing.assert_allclose(s.pair_image_distances(np.stack([side, side_mirrored]))[:, 0], 0.0, atol=1e-6)
    with pytest.raises(ValueError, match="embedding size"):
        s.add_view(2, np.ones((2, 3), np.float32), key=10)
    assert s.remove_view(9) and s.view_count(1) == 1
    assert s.pair_image_distances(side_mirrored[None])[0, 0] > 0.1


def test_nearest_rows_is_the_image_only_rule_over_views() -> None:
    rng = np.random.default_rng(4)
    views = unit(rng, 5)
    s = SupportSet("cosine")
    s.add(10, unit(rng, 1)[0], views[:3])
    s.add(20, unit(rng, 1)[0], views[3:])
    assert list(s.nearest_rows(views)) == [0, 0, 0, 1, 1]
    assert list(s.view_rows()) == [0, 0, 0, 1, 1]


# ---------------------------------------------------------------------------- the benchmark's teaching views


def test_view_offsets_start_at_the_taught_view_and_alternate_sides() -> None:
    assert view_offsets(1, 2) == (0,)
    assert view_offsets(3, 2) == (0, 2, -2)
    assert view_offsets(4, 1) == (0, 1, -1, 2)
    assert view_offsets(5, 2) == (0, 2, -2, 4, -4)


def turntable(classes: int = 4, views: int = 72) -> tuple[list[SpeechItem], list[ImageItem]]:
    speech = [SpeechItem(f"s{c}_{spk}_{k}.wav", str(c), spk) for c in range(classes) for spk in ("a", "b") for k in range(3)]
    images = [ImageItem(f"i{c}_{v}.png", str(c), v) for c in range(classes) for v in range(views)]
    return speech, images


def test_sampler_adds_teaching_views_around_each_taught_view_and_keeps_the_gap_from_all() -> None:
    speech, images = turntable()
    sampler = EpisodeSampler(speech, images, ways=4, shots=2, queries=3, min_view_gap=9, teach_views=5, teach_view_step=2)
    rng = np.random.default_rng(0)
    for _ in range(50):
        ep = sampler.sample(rng)
        assert len(ep.support_views) == len(ep.support_images) == 8
        for taught, views, label in zip(ep.support_images, ep.support_views, ep.support_labels):
            assert views[0] == taught and len(views) == 5
            assert all(images[i].label == label for i in views)
            offsets = sorted((images[i].view - images[taught].view + 36) % 72 - 36 for i in views)
            assert offsets == [-4, -2, 0, 2, 4]
        for k, c in enumerate(ep.classes):
            m = ep.matching[k]
            support = [i for views, lab in zip(ep.support_views, ep.support_labels) if lab == c for i in views]
            assert min(view_distance(images[m].view, images[i].view, 72) for i in support) >= 9


def test_teaching_views_need_a_view_column_and_one_view_is_the_old_sampler() -> None:
    speech, images = turntable()
    no_views = [ImageItem(it.path, it.label) for it in images]
    with pytest.raises(EpisodeError, match="view column"):
        EpisodeSampler(speech, no_views, ways=4, shots=1, queries=2, teach_views=3, teach_view_step=1)
    old = EpisodeSampler(speech, images, ways=4, shots=1, queries=2, min_view_gap=3)
    new = EpisodeSampler(speech, images, ways=4, shots=1, queries=2, min_view_gap=3, teach_views=1, teach_view_step=5)
    a, b = old.sample(np.random.default_rng(5)), new.sample(np.random.default_rng(5))
    assert a.support_images == b.support_images and a.matching == b.matching and a.queries == b.queries
    assert b.support_views == tuple((i,) for i in b.support_images)


def turntable_images(root) -> "Path":
    """Three drawn shapes on a 12-step turntable (30 degrees a step), as an image manifest with a view column."""
    import cv2

    from edge.bench.manifest import write_manifest

    rows = []
    (root / "turn").mkdir(parents=True, exist_ok=True)
    for word, sides in (("rise", 3), ("fall", 4), ("flat", 5)):
        for v in range(12):
            img = np.zeros((28, 28), np.uint8)
            a = np.deg2rad(30 * v) + np.arange(sides) * 2 * np.pi / sides
            r = 6 + 6 * (np.arange(sides) % 2)
            pts = np.stack([14 + r * np.cos(a), 14 + r * np.sin(a)], axis=1).astype(np.int32)
            cv2.polylines(img, [pts], True, 255, 2)
            name = f"turn/{word}_{v}.png"
            cv2.imwrite(str(root / name), img)
            rows.append((name, word, v))
    write_manifest(root / "turn.csv", ("path", "label", "view"), rows)
    return root / "turn.csv"


def test_bench_cli_teach_views(tmp_path, capsys):
    import json

    from edge.cli import main
    from tests.test_bench import make_toy_data

    speech_csv, flat_images = make_toy_data(tmp_path)
    images_csv = turntable_images(tmp_path)
    base = ["bench", "--speech", str(speech_csv), "--images", str(images_csv), "--ways", "3", "--episodes", "30", "--queries", "3",
            "--min-view-gap", "3", "--quiet"]
    for views in ("1", "3"):
        assert main([*base, "--teach-views", views, "--teach-view-step", "1", "--json", str(tmp_path / f"v{views}.json")]) == 0
    one, three = (json.loads((tmp_path / f"v{v}.json").read_text()) for v in ("1", "3"))
    assert (one["teach_views"], three["teach_views"], three["teach_view_step"]) == (1, 3, 1)
    assert three["image_accuracy"] > 0.3 and one["image_accuracy"] > 0.3
    capsys.readouterr()
    assert main([*base, "--teach-views", "0"]) == 1
    assert "--teach-views and --teach-view-step must be >= 1" in capsys.readouterr().err
    assert main(["bench", "--speech", str(speech_csv), "--images", str(flat_images), "--ways", "3", "--teach-views", "3", "--quiet"]) == 1
    assert "needs a view column" in capsys.readouterr().err


def mirrored_turntable(root) -> "Path":
    """Two objects seen from two sides, each side the other's mirror image: the two sides of "rise" (a bar at the left or
    right edge) share nothing, and each is nearer either side of "fall" (both bars and a mark near one corner)."""
    import cv2

    from edge.bench.manifest import write_manifest

    rows = []
    (root / "mirror").mkdir(parents=True, exist_ok=True)
    rise, fall = np.zeros((28, 28), np.uint8), np.zeros((28, 28), np.uint8)
    rise[4:24, 0:2] = 255
    fall[4:24, 0:2] = fall[4:24, 26:28] = fall[0:3, 5:10] = 255
    for word, img in (("rise", rise), ("fall", fall)):
        for v, side in enumerate((img, img[:, ::-1])):
            name = f"mirror/{word}_{v}.png"
            cv2.imwrite(str(root / name), np.ascontiguousarray(side))
            rows.append((name, word, v))
    write_manifest(root / "mirror.csv", ("path", "label", "view"), rows)
    return root / "mirror.csv"


def test_bench_mirror_views_store_each_support_view_flipped(tmp_path):
    import json

    from edge.cli import main
    from tests.test_bench import make_toy_data

    speech_csv, _ = make_toy_data(tmp_path)
    images_csv = mirrored_turntable(tmp_path)
    base = ["bench", "--speech", str(speech_csv), "--images", str(images_csv), "--ways", "2", "--episodes", "20", "--queries", "2",
            "--min-view-gap", "1", "--image-encoder", "pixels", "--quiet"]
    assert main([*base, "--json", str(tmp_path / "plain.json")]) == 0
    assert main([*base, "--mirror-views", "--json", str(tmp_path / "mirror.json")]) == 0
    plain, mirror = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("plain", "mirror"))
    assert (plain["mirror_views"], mirror["mirror_views"]) == (False, True)
    # without mirrors "rise" seen from its other side is named "fall", with them it is its own taught side mirrored
    assert plain["image_accuracy"] == 0.5 and mirror["image_accuracy"] == 1.0
