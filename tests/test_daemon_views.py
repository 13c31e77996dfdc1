"""Teaching several views of an object, and views learned from confirmed answers, in the controller (issue 17)."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from edge.control import check_request
from edge.daemon import AnswerSettings, TeachSample, TeachSettings, choose_views
from edge.encoders import PixelImage, embed_crops, mirror_id, mirrored
from edge.matching import MatchSettings
from tests.daemon_fakes import BOXES, FRAME_SAMPLES, centre_region, scene, silence, word
from tests.test_daemon import Rig


def turned(angle_deg: float, slot: int = 1, blur: bool = False) -> np.ndarray:
    """A plain scene with a triangle turned by ``angle_deg`` in ``slot`` (a flat stand-in for an object turned in hand)."""
    img = scene()
    x, y = BOXES[slot][0] + 40, BOXES[slot][1] + 40
    a = np.deg2rad(angle_deg) + np.array([0.0, 2.2, 4.0])
    r = np.array([32.0, 30.0, 18.0])  # uneven, so turning changes the outline
    pts = np.stack([x + r * np.cos(a), y + r * np.sin(a)], axis=1).astype(np.int32)
    cv2.fillPoly(img, [pts], (40, 200, 60))
    return cv2.GaussianBlur(img, (21, 21), 8) if blur else img


def say_while_turning(rig: Rig, kind: int, frames: list[np.ndarray]) -> dict:
    """Speak word ``kind``, showing ``frames`` one after another while it is heard; returns the ``taught`` event."""
    pcm = word(kind)
    n_audio = len(pcm) // FRAME_SAMPLES
    cuts = np.linspace(0, n_audio, len(frames) + 1).astype(int) * FRAME_SAMPLES
    seen = len(rig.events)
    rig.audio.push(silence(0.06))
    while not rig.audio.q.empty():
        rig.ctrl.step(0.01)
    for image, a, b in zip(frames, cuts[:-1], cuts[1:]):
        rig.frames.show(image)
        rig.audio.push(pcm[a:b])
        while not rig.audio.q.empty():
            rig.ctrl.step(0.01)
    rig.audio.push(silence(0.3))
    for _ in range(200):
        rig.ctrl.step(0.01)
        taught = [e for e in rig.events[seen:] if e["event"] == "taught"]
        if taught:
            return taught[0]
    raise AssertionError(f"not taught: {rig.names()}")


def start_teaching(rig: Rig, first: np.ndarray) -> None:
    rig.frames.show(first)
    rig.ctrl.press("test")
    rig.run_until("teach_started")


def crops_of(pair) -> list[np.ndarray]:
    return [pair.crop, *(v.crop for v in pair.views)]


class CountingPixels(PixelImage):
    def __init__(self) -> None:
        super().__init__()
        self.crops = 0

    def embed(self, images: np.ndarray) -> np.ndarray:
        self.crops += len(images)
        return super().embed(images)


def test_teaching_keeps_several_views_of_the_turned_object_and_answers_from_the_side():
    rig = Rig(teach=TeachSettings(timeout_s=5.0, sample_interval_ms=0.0, views=3), matching=MatchSettings(unknown_word_distance=None, not_in_view_distance=None))
    start_teaching(rig, turned(0))
    assert rig.events[-1]["event"] == "turn_object" and rig.events[-1]["views"] == 3  # the teacher is asked to turn it
    angles = [0, 10, 20, 30, 40, 50, 60, 70, 80]
    taught = say_while_turning(rig, 0, [turned(a) for a in angles])
    assert taught["views"] == 3 and len(taught["view_frame_times_s"]) == 3
    pair = rig.memory.pairs()[0]
    crops = crops_of(pair)
    assert len(crops) == 3 and [v.source for v in pair.views] == ["taught", "taught"]
    shown = [centre_region(turned(a)).crop for a in angles]
    kept = [next(k for k, c in enumerate(shown) if np.array_equal(c, crop)) for crop in crops]
    assert len(set(kept)) == 3 and max(kept) - min(kept) >= 5  # far apart, not three neighbouring frames
    assert rig.ctrl.support.view_count(pair.pair_id) == 3  # not mirrored: teach.mirror_views is off by default
    # the object later seen turned as at the end of the teaching: nearer than with the first view alone
    rig.frames.show(turned(angles[max(kept)], slot=0))
    rig.say(0)
    ev = rig.run_until("resolved")
    assert ev["box"] == list(BOXES[0]) and ev["image_distance"] < 1e-5
    assert set(taught["timings_ms"]) == {"speech_embedding", "image_embedding", "views_and_store"}


def test_crops_from_before_the_word_and_blurred_crops_are_not_kept_as_views():
    rig = Rig(teach=TeachSettings(timeout_s=5.0, sample_interval_ms=0.0, views=4))
    start_teaching(rig, scene())  # nothing held up yet: the teach region shows the table
    rig.ctrl.step(0.01)
    time.sleep(0.35)  # then the object comes, and the word
    frames = [turned(0), turned(25), turned(40, blur=True), turned(50)]
    say_while_turning(rig, 1, frames)
    crops = crops_of(rig.memory.pairs()[0])
    empty, blurred = centre_region(scene()).crop, centre_region(frames[2]).crop
    assert not any(np.array_equal(c, empty) or np.array_equal(c, blurred) for c in crops)
    assert len(crops) == 3


def test_an_object_held_still_gives_one_view_and_one_view_is_the_old_behaviour():
    still = Rig(teach=TeachSettings(timeout_s=5.0, sample_interval_ms=0.0, views=5))
    start_teaching(still, turned(0))
    assert say_while_turning(still, 0, [turned(0)] * 5)["views"] == 1  # the same crop five times adds nothing
    encoder = CountingPixels()
    old = Rig(teach=TeachSettings(timeout_s=5.0, sample_interval_ms=0.0, views=1, mirror_views=False), image_encoder=encoder)
    start_teaching(old, turned(0))
    assert "turn_object" not in old.names()
    taught = say_while_turning(old, 0, [turned(a) for a in (0, 20, 40, 60)])
    assert taught["views"] == 1 and old.memory.pairs()[0].views == []
    assert encoder.crops == 1  # no crop embedded while sampling: only the stored one, on the teach step


def test_views_come_back_from_the_sqlite_memory_and_are_reembedded_for_another_encoder(tmp_path):
    from edge.images import ImageSettings
    from edge.memory import Memory

    memory = Memory(tmp_path / "memory.sqlite3")
    mirrors = TeachSettings(mirror_views=True)
    first = Rig(memory=memory, teach=TeachSettings(timeout_s=5.0, sample_interval_ms=0.0, views=3, mirror_views=True))
    start_teaching(first, turned(0))
    say_while_turning(first, 0, [turned(a) for a in range(0, 90, 10)])
    memory.close()
    memory = Memory(tmp_path / "memory.sqlite3")
    second = Rig(memory=memory, teach=mirrors)
    assert second.ctrl.load_memory() == 1 and second.ctrl.support.view_count(1) == 6  # 3 views and their mirrors
    other = PixelImage(ImageSettings(size_px=16))
    third = Rig(memory=memory, image_encoder=other, teach=mirrors)
    assert third.ctrl.load_memory() == 1 and third.ctrl.support.view_count(1) == 6
    assert len(memory.view_embeddings(other.encoder_id)) == 2  # stored for the next start
    assert len(memory.view_embeddings(mirror_id(other.encoder_id))) == 2 and 1 in memory.embeddings(mirror_id(other.encoder_id))
    memory.close()


def test_choose_views_takes_the_farthest_sharp_crops_in_turn():
    def sample(vec, sharp=100.0):
        return TeachSample(frame=None, candidate=None, sharpness=sharp, embedding=np.asarray(vec, np.float32))

    first = sample([1, 0, 0])
    near, far, other, dull = sample([0.99, 0.1, 0]), sample([0, 1, 0]), sample([0.6, 0.6, 0.5]), sample([0, 0, 1], sharp=10.0)
    got = choose_views([first, near, far, other, dull], first, 3, min_sharpness=0.5, min_distance=0.02)
    assert got == [first, far, other]  # far first, then the one farthest from both; the blurred one never
    assert choose_views([first, near], first, 3, 0.5, 0.2) == [first]  # nothing far enough to add
    assert choose_views([first, far], first, 1, 0.5, 0.02) == [first]


# ---------------------------------------------------------------------------- confirmed and wrong answers


def ask(rig: Rig, req: dict) -> dict:
    return rig.request(req)


def answer(rig: Rig, image: np.ndarray, kind: int = 0) -> dict:
    rig.frames.show(image)
    rig.say(kind)
    return rig.run_until("resolved")


def learning_rig(**teach) -> Rig:
    settings = TeachSettings(timeout_s=3.0, sample_interval_ms=0.0, views=1, learn_confirmed=True, **teach)
    return Rig(teach=settings, matching=MatchSettings(unknown_word_distance=None, not_in_view_distance=None),
               answers=AnswerSettings(reuse_view_ms=0.0))  # each answer looks at the frame shown for it


def test_a_confirmed_answer_becomes_a_learned_view_bounded_per_word_oldest_dropped():
    rig = learning_rig(learned_views_per_word=2, mirror_views=True)
    start_teaching(rig, turned(0))
    say_while_turning(rig, 0, [turned(0)])
    learned = []
    for angle in (40, 60, 80):
        ev = answer(rig, turned(angle, slot=2))
        reply = ask(rig, {"cmd": "confirm"})
        assert reply["ok"] and reply["event"] == "confirmed" and reply["learned"] is True and reply["pair_id"] == 1
        learned.append(reply["view_id"])
        assert reply["box"] == ev["box"] == list(BOXES[2])
    assert reply["dropped_view_ids"] == learned[:1] and reply["views"] == 3  # the taught crop and the two newest
    pair = rig.memory.pairs()[0]
    assert [v.view_id for v in pair.views] == learned[1:] and all(v.source == "learned" for v in pair.views)
    assert np.array_equal(pair.views[-1].crop, turned(80, slot=2)[40:120, 160:240])  # the answer's own crop
    assert rig.ctrl.support.view_count(1) == 6  # each with its mirror
    # the object seen as when confirmed is now found at distance 0
    assert answer(rig, turned(80, slot=0))["image_distance"] < 1e-5
    assert ask(rig, {"cmd": "confirm"})["ok"] is True
    assert ask(rig, {"cmd": "confirm"})["ok"] is False  # one verdict per answer


def test_wrong_logs_the_miss_and_removes_nothing():
    rig = learning_rig()
    start_teaching(rig, turned(0))
    say_while_turning(rig, 0, [turned(0)])
    assert ask(rig, {"cmd": "wrong"})["ok"] is False  # nothing answered yet
    answer(rig, turned(30, slot=0))
    reply = ask(rig, {"cmd": "wrong"})
    assert reply["ok"] and reply["event"] == "answer_wrong" and reply["pair_id"] == 1 and reply["box"] == list(BOXES[0])
    assert rig.memory.pairs()[0].views == [] and rig.ctrl.support.view_count(1) == 1 and len(rig.memory.pairs()) == 1
    assert rig.ctrl.status()["wrong"] == 1


def test_the_button_right_after_an_answer_confirms_it_and_later_it_teaches_again():
    clock = [1000.0]
    rig = learning_rig(confirm_window_s=5.0)
    rig.ctrl._clock = lambda: clock[0]
    start_teaching(rig, turned(0))
    say_while_turning(rig, 0, [turned(0)])
    answer(rig, turned(50, slot=0))
    rig.ctrl.press("button")
    ev = rig.run_until("confirmed")
    assert ev["source"] == "button" and ev["learned"] is True and rig.ctrl.state == "idle"
    answer(rig, turned(70, slot=0))
    clock[0] += 6.0  # too late to be about the answer
    rig.ctrl.press("button")
    rig.run_until("teach_started")
    assert rig.ctrl.state == "teaching"


def test_without_learning_a_confirmation_is_logged_and_the_button_teaches():
    rig = Rig(teach=TeachSettings(timeout_s=3.0, sample_interval_ms=0.0, views=1),
              matching=MatchSettings(unknown_word_distance=None, not_in_view_distance=None))
    start_teaching(rig, turned(0))
    say_while_turning(rig, 0, [turned(0)])
    answer(rig, turned(50, slot=0))
    reply = ask(rig, {"cmd": "confirm"})
    assert reply["ok"] and reply["learned"] is False and rig.memory.pairs()[0].views == []
    answer(rig, turned(50, slot=0))
    rig.ctrl.press("button")
    rig.run_until("teach_started")


@pytest.mark.parametrize("cmd", ["confirm", "wrong"])
def test_the_control_socket_knows_confirm_and_wrong(cmd):
    assert check_request({"cmd": cmd}) is None


def test_confirm_and_wrong_from_the_command_line(tmp_path, capsys):
    from edge.cli import main
    from edge.control import ControlServer, ControlSettings

    got = []
    sock = str(tmp_path / "ctl.sock")
    with ControlServer(ControlSettings(socket_path=sock), lambda r: got.append(r) or {"ok": True, "event": "confirmed"}):
        assert main(["confirm", "--socket", sock]) == 0
        assert main(["wrong", "--socket", sock]) == 0
    assert [r["cmd"] for r in got] == ["confirm", "wrong"]
    assert '"confirmed"' in capsys.readouterr().out


def showing_mirrored(crop: np.ndarray, slot: int = 0) -> np.ndarray:
    """A plain scene with ``crop`` flipped left-right in box ``slot``."""
    x, y, w, h = BOXES[slot]
    out = scene()
    out[y : y + h, x : x + w] = mirrored(crop)
    return out


@pytest.mark.parametrize("views", [1, 3])
def test_mirror_views_store_each_kept_view_flipped_and_find_the_object_seen_mirrored(views):
    rig = Rig(teach=TeachSettings(timeout_s=5.0, sample_interval_ms=0.0, views=views, mirror_views=True),
              matching=MatchSettings(unknown_word_distance=None, not_in_view_distance=None), answers=AnswerSettings(reuse_view_ms=0.0))
    start_teaching(rig, turned(0))
    taught = say_while_turning(rig, 0, [turned(a) for a in range(0, 90, 10)] if views > 1 else [turned(0)])
    pair = rig.memory.pairs()[0]
    enc, key = rig.ctrl.image_encoder, mirror_id(rig.ctrl.image_encoder.encoder_id)
    crops = crops_of(pair)
    assert taught["views"] == len(crops) == views and rig.ctrl.support.view_count(1) == 2 * views
    np.testing.assert_allclose(rig.memory.embeddings(key)[1], embed_crops(enc, [mirrored(pair.crop)])[0], atol=1e-6)
    stored = rig.memory.view_embeddings(key)
    assert len(stored) == views - 1
    for v in pair.views:
        np.testing.assert_allclose(stored[v.view_id], embed_crops(enc, [mirrored(v.crop)])[0], atol=1e-6)
    # the taught side seen mirrored (as the object turned the other way shows it) is found at distance 0
    assert answer(rig, showing_mirrored(crops[-1]))["image_distance"] < 1e-5
    off = Rig(teach=TeachSettings(timeout_s=5.0, sample_interval_ms=0.0, views=views, mirror_views=False),
              matching=MatchSettings(unknown_word_distance=None, not_in_view_distance=None), answers=AnswerSettings(reuse_view_ms=0.0))
    start_teaching(off, turned(0))
    say_while_turning(off, 0, [turned(a) for a in range(0, 90, 10)] if views > 1 else [turned(0)])
    assert off.ctrl.support.view_count(1) == views and not off.memory.embeddings(key)
    assert answer(off, showing_mirrored(crops_of(off.memory.pairs()[0])[-1]))["image_distance"] > 1e-3


def test_a_memory_taught_without_mirrors_gets_them_at_load_and_keeps_them(tmp_path):
    from edge.memory import Memory

    memory = Memory(tmp_path / "memory.sqlite3")
    first = Rig(memory=memory, teach=TeachSettings(timeout_s=5.0, sample_interval_ms=0.0, views=3, mirror_views=False))
    start_teaching(first, turned(0))
    say_while_turning(first, 0, [turned(a) for a in range(0, 90, 10)])
    key = mirror_id(first.ctrl.image_encoder.encoder_id)
    assert not memory.embeddings(key) and not memory.view_embeddings(key)
    memory.close()
    memory = Memory(tmp_path / "memory.sqlite3")
    encoder = CountingPixels()
    second = Rig(memory=memory, image_encoder=encoder, teach=TeachSettings(mirror_views=True))
    assert second.ctrl.load_memory() == 1 and second.ctrl.support.view_count(1) == 6 and encoder.crops == 3  # the 3 mirrors, once
    assert set(memory.embeddings(key)) == {1} and len(memory.view_embeddings(key)) == 2
    third = Rig(memory=memory, image_encoder=(again := CountingPixels()), teach=TeachSettings(mirror_views=True))
    assert third.ctrl.load_memory() == 1 and third.ctrl.support.view_count(1) == 6 and again.crops == 0  # stored: nothing re-embedded
    off = Rig(memory=memory, teach=TeachSettings(mirror_views=False))
    assert off.ctrl.load_memory() == 1 and off.ctrl.support.view_count(1) == 3  # mirrors stored but not matched against
    memory.close()
