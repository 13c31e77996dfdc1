"""The multi-view tools behind the not-in-view threshold: the rendered turntable and the teaching views."""
from __future__ import annotations

import numpy as np
import pytest

from tests.tool_modules import load_tool as _tool


def test_teaching_views_are_spread_around_the_taught_pose_as_the_benchmark_spreads_them():
    thresholds = _tool("thresholds")
    assert thresholds.support_poses(10, 5, 2) == [10, 12, 8, 14, 6]
    assert thresholds.support_poses(0, 3, 2) == [0, 2, 70]  # round the turntable
    assert thresholds.support_poses(5, 1, 2) == [5]


def test_a_rendered_object_turns_on_a_black_turntable():
    pytest.importorskip("skimage")
    turntable = _tool("turntable")
    rng = np.random.default_rng(0)
    photos = turntable._photos()
    for _ in range(2):  # a box and a can, whichever the draw gives
        obj = turntable.random_object(photos, rng)
        front, turned, again = (turntable.render(obj, a, size_px=48, supersample=1) for a in (0.0, 90.0, 360.0))
        assert front.shape == (48, 48, 3) and front.dtype == np.uint8
        assert (front[0, 0] == 0).all() and (front[-1, -1] == 0).all()  # the background is black
        assert (front.max(axis=2) > 0).mean() > 0.1  # the object fills part of the frame
        assert np.abs(front.astype(int) - turned).mean() > 5  # a quarter turn shows other sides
        assert np.abs(front.astype(int) - again).mean() < 1  # a full turn comes back to the same view


def test_view_tricks_rules_on_known_vectors():
    tricks = _tool("view_tricks")
    rng = np.random.default_rng(0)
    unit = lambda x: x / np.linalg.norm(x, axis=-1, keepdims=True)  # noqa: E731
    plain = unit(np.abs(rng.normal(size=(8, 6))))
    flip = unit(np.abs(rng.normal(size=(8, 6))))
    emb = {"plain": plain, "flip": flip}
    views, queries = [[0, 1, 2], [3, 4, 5]], [6, 7]
    base = tricks.word_distances("base", emb, views, queries)
    d = 1.0 - plain[queries] @ plain.T
    np.testing.assert_allclose(base, np.stack([d[:, v].min(axis=1) for v in views], axis=1), atol=1e-12)
    mirror = tricks.word_distances("mirror", emb, views, queries)
    dm = np.minimum(d, 1.0 - plain[queries] @ flip.T)
    np.testing.assert_allclose(mirror, np.stack([dm[:, v].min(axis=1) for v in views], axis=1), atol=1e-12)
    assert (mirror <= base + 1e-12).all() and (mirror < base - 1e-9).any()
    mean2 = tricks.word_distances("mean2", emb, views, queries)
    np.testing.assert_allclose(mean2, np.stack([np.sort(d[:, v], axis=1)[:, :2].mean(axis=1) for v in views], axis=1), atol=1e-12)
    flat = tricks.word_distances("pow1.0", emb, views, queries)  # the power 1 is no transform
    np.testing.assert_allclose(flat, base, atol=1e-9)
    # a crop shifted sideways keeps its size and moves its content
    img = np.zeros((20, 20, 3), np.uint8)
    img[5:15, 8:12] = 200
    moved = tricks.VARIANTS["right"](img)
    assert moved.shape == img.shape and not np.array_equal(moved, img) and moved.sum() == img.sum()
