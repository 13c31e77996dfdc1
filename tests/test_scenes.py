"""Composed scenes: boxes where the objects really are, recall at IoU >= 0.5, and the scene-level bench."""
from __future__ import annotations

import dataclasses

import json

import cv2
import numpy as np
import pytest

from edge.audio import write_wav
from edge.bench.manifest import ImageItem, SpeechItem, write_manifest
from edge.bench.runner import BenchSettings
from edge.bench.scenes import (
    BACKGROUNDS,
    SceneError,
    SceneSettings,
    compose_scene,
    iou,
    load_backgrounds,
    object_mask,
    recall_hits,
    run_scene_benchmark,
    score_finder,
)
from edge.cli import main
from edge.encoders import DtwSpeech, PixelImage
from edge.features import SpeechFeatureSettings

SMALL = SceneSettings(frame_width_px=200, frame_height_px=160, object_min_px=30, object_max_px=40, shadow_offset_px=3)


def studio(shape: str, size: int = 32) -> np.ndarray:
    """A grey studio image: a bright shape on a near-black background (like COIL-20)."""
    img = np.full((size, size), 4, np.uint8)
    if shape == "disc":
        cv2.circle(img, (size // 2, size // 2), size // 3, 200, -1)
    elif shape == "bar":
        cv2.rectangle(img, (4, size // 2 - 4), (size - 5, size // 2 + 4), 160, -1)
    else:
        cv2.fillPoly(img, [np.array([[size // 2, 3], [3, size - 4], [size - 4, size - 4]], np.int32)], 230)
    return img


def test_iou_and_recall_on_hand_made_boxes():
    assert iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert iou((0, 0, 10, 10), (5, 0, 10, 10)) == pytest.approx(50 / 150)
    assert iou((0, 0, 10, 10), (20, 20, 5, 5)) == 0.0
    truth = [(0, 0, 10, 10), (50, 50, 20, 20), (100, 0, 10, 40)]
    candidates = [(1, 1, 10, 10), (48, 48, 30, 30), (100, 0, 10, 10)]  # IoU 0.68, 0.44, 0.25
    assert recall_hits(truth, candidates) == [True, False, False]
    assert recall_hits(truth, candidates, threshold=0.4) == [True, True, False]
    assert recall_hits(truth, []) == [False, False, False]


def test_object_mask_fills_the_shape_and_leaves_the_background():
    img = studio("disc")
    img[16, 16] = 4  # a dark hole inside the object is still object
    mask = object_mask(img, 24)
    assert mask[16, 16] and mask[16, 8] and not mask[0, 0] and not mask[16, 1]


def test_composed_boxes_hold_exactly_the_pasted_objects():
    rng = np.random.default_rng(0)
    background = np.full((120, 150, 3), (90, 120, 60), np.uint8)  # a plain green surface
    shapes = ["disc", "bar", "tri"]
    for _ in range(10):
        scene = compose_scene(background, [studio(s) for s in shapes], rng, SMALL)
        assert scene.frame.shape == (160, 200, 3) and scene.frame.dtype == np.uint8 and len(scene.boxes) == 3
        frame = scene.frame.astype(int)
        grey_object = np.abs(frame[..., 1] - frame[..., 0]) < 8  # objects are grey, the surface is green (shadowed or not)
        for a in range(3):
            x, y, w, h = scene.boxes[a]
            assert 0 <= x and 0 <= y and x + w <= 200 and y + h <= 160
            assert 8 <= max(w, h) <= 40
            for b in range(a + 1, 3):
                assert iou(scene.boxes[a], scene.boxes[b]) == 0.0
            inside = grey_object[y : y + h, x : x + w]
            assert inside[:2].any() and inside[-2:].any() and inside[:, :2].any() and inside[:, -2:].any()  # the box is tight
        outside = grey_object.copy()
        for x, y, w, h in scene.boxes:
            outside[y : y + h, x : x + w] = False
        assert not outside.any()  # no object pixel outside the boxes


def test_objects_that_cannot_fit_are_refused_with_a_reason():
    rng = np.random.default_rng(0)
    crowded = SceneSettings(frame_width_px=64, frame_height_px=64, object_min_px=30, object_max_px=30, gap_px=8)
    with pytest.raises(SceneError, match="no free place"):
        compose_scene(np.zeros((64, 64, 3), np.uint8), [studio("disc")] * 6, rng, crowded)
    with pytest.raises(SceneError, match="nothing above the background"):
        compose_scene(np.zeros((64, 64, 3), np.uint8), [np.full((32, 32), 4, np.uint8)], rng, SceneSettings(frame_width_px=64, frame_height_px=64, object_min_px=20, object_max_px=20))


def test_background_photographs_come_from_the_installed_scikit_image_wheel():
    backgrounds = load_backgrounds()
    assert len(backgrounds) == len(BACKGROUNDS) >= 6
    for bg in backgrounds:
        assert bg.ndim == 3 and bg.shape[2] == 3 and min(bg.shape[:2]) >= 256


def test_finder_scores_count_hits_and_candidates():
    rng = np.random.default_rng(1)
    background = np.full((160, 200, 3), 100, np.uint8)
    scenes = [compose_scene(background, [studio("disc"), studio("bar")], rng, SMALL) for _ in range(4)]
    perfect = score_finder(lambda frame: list(next(s.boxes for s in scenes if s.frame is frame)), scenes)
    assert perfect.recall == 1.0 and perfect.candidates_per_frame == 2 and perfect.objects == 8
    whole = score_finder(lambda frame: [(0, 0, frame.shape[1], frame.shape[0])], scenes)
    assert whole.recall == 0.0 and whole.candidates_per_frame == 1


@pytest.fixture
def tiny_set(tmp_path):
    """Three very different shapes (4 sizes each) and three tone 'words' (2 speakers x 3), with manifests."""
    speech, images = [], []
    for c, (shape, hz) in enumerate([("disc", 300), ("bar", 700), ("tri", 1300)]):
        for spk in ("a", "b"):
            for r in range(3):
                t = np.arange(int(0.4 * 16000)) / 16000
                wav = tmp_path / f"{c}_{spk}_{r}.wav"
                write_wav(wav, (0.3 * np.sin(2 * np.pi * hz * (1 + 0.02 * r) * t)).astype(np.float32), 16000)
                speech.append(SpeechItem(wav, str(c), spk))
        for v in range(4):
            png = tmp_path / f"{shape}_{v}.png"
            cv2.imwrite(str(png), studio(shape, 32 + 2 * v))
            images.append(ImageItem(png, str(c), v))
    write_manifest(tmp_path / "speech.csv", ("path", "label", "speaker"), [(i.path.name, i.label, i.speaker) for i in speech])
    write_manifest(tmp_path / "images.csv", ("path", "label", "view"), [(i.path.name, i.label, i.view) for i in images])
    return speech, images


def test_scene_level_bench_counts_finder_errors(tiny_set):
    """Pixels + DTW: a perfect finder scores high; one that misses every object scores nothing."""
    speech, images = tiny_set
    backgrounds = [np.full((160, 200, 3), 90, np.uint8)]
    settings = BenchSettings(ways=3, shots=1, episodes=6, queries=4)
    feats = SpeechFeatureSettings()
    common = (speech, images, DtwSpeech(feats), PixelImage(), feats, settings)
    oracle = run_scene_benchmark(*common, None, backgrounds, SMALL)
    blind = run_scene_benchmark(*common, lambda frame: [(0, 0, 10, 10)], backgrounds, SMALL)
    assert oracle["finder_recall"] == 1.0 and oracle["candidates_per_frame"] == 3
    assert oracle["image_accuracy"] >= 0.9 and oracle["accuracy"] >= 0.9
    assert blind["finder_recall"] == 0.0 and blind["accuracy"] == 0.0 and blind["image_accuracy"] == 0.0
    # support views stored with their mirrors (teach.mirror_views): the same scenes, the taught crops flipped as well
    calls = []
    flip_counting = PixelImage()
    flip_counting.embed = lambda batch: (calls.append(len(batch)), PixelImage.embed(flip_counting, batch))[1]  # type: ignore[method-assign]
    mirrored = run_scene_benchmark(speech, images, DtwSpeech(feats), flip_counting, feats, dataclasses.replace(settings, mirror_views=True),
                                   None, backgrounds, SMALL)
    plain_calls = []
    counting = PixelImage()
    counting.embed = lambda batch: (plain_calls.append(len(batch)), PixelImage.embed(counting, batch))[1]  # type: ignore[method-assign]
    run_scene_benchmark(speech, images, DtwSpeech(feats), counting, feats, settings, None, backgrounds, SMALL)
    assert mirrored["mirror_views"] is True and mirrored["image_accuracy"] >= 0.9
    assert sum(calls) > sum(plain_calls)  # the support images were embedded flipped too


def test_scenes_command_runs_the_oracle_bench_and_reports_bad_input(tiny_set, tmp_path, capsys):
    args = ["scenes", "--images", str(tmp_path / "images.csv"), "--finders", "", "--frames", "2", "--objects", "3",
            "--speech", str(tmp_path / "speech.csv"), "--bench-finder", "oracle", "--ways", "3", "--episodes", "3", "--queries", "2",
            "--image-encoder", "pixels", "--json", str(tmp_path / "out.json")]
    assert main(args) == 0
    result = json.loads((tmp_path / "out.json").read_text())
    assert result["bench"]["finder_recall"] == 1.0 and result["bench"]["finder"] == "oracle"
    saved = tmp_path / "saved"
    assert main(["scenes", "--images", str(tmp_path / "images.csv"), "--finders", "contours,grid", "--frames", "3", "--objects", "2",
                 "--save-frames", str(saved), "--json", str(tmp_path / "recall.json")]) == 0
    finders = json.loads((tmp_path / "recall.json").read_text())["finders"]
    assert set(finders) == {"contours", "grid"} and finders["grid"]["candidates_per_frame"] == 6 and finders["contours"]["objects"] == 6
    cap = cv2.VideoCapture(str(saved / "frames" / "%04d.png"))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    rows = (saved / "boxes.csv").read_text().splitlines()
    assert len(frames) == 3 and frames[0].shape == (480, 640, 3)
    assert rows[0] == "frame,label,x,y,w,h" and len(rows) == 1 + 3 * 2 and {r.split(",")[1] for r in rows[1:]} <= {"0", "1", "2"}
    assert main(["scenes", "--images", str(tmp_path / "missing.csv")]) == 1
    assert "missing.csv: no such manifest" in capsys.readouterr().err
    assert main(["scenes", "--images", str(tmp_path / "images.csv"), "--backgrounds", "nope.png", "--finders", ""]) == 1
    assert "nope.png: no such image file" in capsys.readouterr().err


def test_missing_scikit_image_is_named_in_the_error(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "skimage" else real(name, *a))
    with pytest.raises(SceneError, match=r"scikit-image is not installed.*pip install scikit-image==0.26.0"):
        load_backgrounds()


def test_contours_clutter_mode_finds_objects_on_real_textured_photographs():
    """Drawn studio objects on scikit-image's gravel, brick, coffee-table and grass photographs."""
    from edge.candidates import CandidateSettings, ContourFinder

    rng = np.random.default_rng(0)
    backgrounds = load_backgrounds(["gravel.png", "brick.png", "coffee.png", "grass.png"])
    scenes = [compose_scene(backgrounds[i % 4], [studio(s) for s in ("disc", "bar", "tri", "disc")], rng) for i in range(16)]
    one_mask = score_finder(ContourFinder(CandidateSettings(clutter_foreground_fractions=())).boxes, scenes)
    clutter = score_finder(ContourFinder(CandidateSettings()).boxes, scenes)
    assert clutter.recall >= 0.4 and clutter.recall >= 2 * one_mask.recall, (one_mask, clutter)  # measured 0.52 vs 0.19
    assert clutter.candidates_per_frame <= CandidateSettings().max_candidates
