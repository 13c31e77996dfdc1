"""The multi-view tools behind the not-in-view threshold: the rendered turntable and the teaching views."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(f"tool_{name}", TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


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
