"""Candidate finders on drawn table-top scenes with known object boxes."""
from __future__ import annotations

import numpy as np
import pytest
from drawn_scenes import scene

from edge.candidates import CandidateSettings, ContourFinder, center_box, iou, make_finder, teach_region
from edge.settings import SettingsError, build

SCENES = 20  # per surface; the full 40-scene run is in the report


def recall(textured: bool, settings: CandidateSettings = CandidateSettings()) -> tuple[float, int]:
    """Fraction of drawn objects matched by a candidate at IoU >= 0.5, and the unmatched candidates."""
    finder = make_finder(settings)
    hits = total = extra = 0
    for seed in range(SCENES):
        image, boxes = scene(seed, textured)
        found = [c.box for c in finder.find(image)]
        hits += sum(any(iou(b, f) >= 0.5 for f in found) for b in boxes)
        total += len(boxes)
        extra += sum(not any(iou(b, f) >= 0.5 for b in boxes) for f in found)
    return hits / total, extra


def test_contours_find_objects_on_a_plain_surface():
    r, extra = recall(textured=False)
    print(f"plain surface: recall {r:.3f}, {extra} extra candidates")
    assert r >= 0.95 and extra <= 2


def test_contours_find_objects_on_a_textured_shadowed_surface():
    r, extra = recall(textured=True)
    print(f"textured surface: recall {r:.3f}, {extra} extra candidates")
    assert r >= 0.9 and extra <= 4


def test_contours_see_nothing_on_an_empty_surface():
    for seed, textured in ((0, False), (1, True), (2, True)):
        image, boxes = scene(seed, textured, objects=0)
        assert boxes == [] and ContourFinder(CandidateSettings()).find(image) == []


def test_candidate_crops_match_their_boxes():
    image, _ = scene(3, textured=False)
    candidates = make_finder(CandidateSettings(max_candidates=2)).find(image)
    assert len(candidates) == 2
    for c in candidates:
        x, y, w, h = c.box
        np.testing.assert_array_equal(c.crop, image[y : y + h, x : x + w])
    areas = [c.box[2] * c.box[3] for c in candidates]
    assert areas == sorted(areas, reverse=True)


def test_margin_and_area_limits():
    image, boxes = scene(4, textured=False)
    tight = ContourFinder(CandidateSettings(margin_fraction=0.0)).boxes(image)
    wide = ContourFinder(CandidateSettings(margin_fraction=0.2)).boxes(image)
    assert len(tight) == len(wide) == len(boxes)
    assert sum(w * h for _, _, w, h in wide) > 1.5 * sum(w * h for _, _, w, h in tight)
    assert ContourFinder(CandidateSettings(min_area_fraction=0.3, max_area_fraction=0.5)).boxes(image) == []


def test_center_finder_and_teach_region():
    image = np.zeros((480, 640, 3), np.uint8)
    image[120:360, 160:480] = 255
    settings = CandidateSettings(finder="center", center_fraction=0.5)
    [c] = make_finder(settings).find(image)
    assert c.box == (160, 120, 320, 240) and c.crop.shape == (240, 320, 3) and c.crop.min() == 255
    assert teach_region(image, settings).box == c.box
    assert center_box(101, 51, 1.0) == (0, 0, 101, 51)


def test_grid_finder_tiles_the_frame():
    image = np.zeros((100, 200, 3), np.uint8)
    cells = make_finder(CandidateSettings(finder="grid", grid_rows=2, grid_cols=3)).find(image)
    assert [c.box for c in cells] == [(0, 0, 67, 50), (67, 0, 66, 50), (133, 0, 67, 50), (0, 50, 67, 50), (67, 50, 66, 50), (133, 50, 67, 50)]
    assert sum(c.crop.shape[0] * c.crop.shape[1] for c in cells) == 100 * 200
    assert len(make_finder(CandidateSettings(finder="grid", grid_rows=4, grid_cols=4, max_candidates=5)).find(image)) == 5


def test_bad_image_and_settings_are_clear_errors():
    with pytest.raises(ValueError, match="uint8 RGB"):
        make_finder(CandidateSettings()).find(np.zeros((10, 10), np.float32))
    with pytest.raises(SettingsError, match="candidates.min_area_fraction"):
        build(CandidateSettings, {"min_area_fraction": 0.6, "max_area_fraction": 0.5}, prefix="candidates")
    with pytest.raises(SettingsError, match="candidates.finder"):
        build(CandidateSettings, {"finder": "yolo"}, prefix="candidates")


def test_iou():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0


def test_look_command_on_an_image(tmp_path, capsys):
    import json

    import cv2

    from edge.cli import main

    image, boxes = scene(5, textured=True)
    path = tmp_path / "table.png"
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert main(["look", "--image", str(path), "--out", str(tmp_path / "boxes.png")]) == 0
    found = [tuple(json.loads(line)["box"]) for line in capsys.readouterr().out.splitlines()]
    assert all(any(iou(b, f) >= 0.5 for f in found) for b in boxes)
    annotated = cv2.imread(str(tmp_path / "boxes.png"))
    assert annotated.shape == image.shape and not np.array_equal(annotated, cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    assert main(["look", "--image", str(tmp_path / "nope.png")]) == 1
    assert "nope.png" in capsys.readouterr().err
