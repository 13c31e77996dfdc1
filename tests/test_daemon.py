"""The controller's state machine with in-memory devices, real features, DTW and pixel encoders."""
from __future__ import annotations

import time

import numpy as np
import pytest

from edge.daemon import AnswerSettings, Controller, TeachSettings, run_in_thread, sharpness
from edge.encoders import DtwSpeech, PixelImage
from edge.features import SpeechFeatureSettings
from edge.matching import MatchSettings
from edge.vad import Utterance
from tests.daemon_fakes import (
    BOXES,
    RATE,
    DictMemory,
    EnergyEndpointer,
    QueueAudio,
    StaticFrames,
    ThreeSlots,
    centre_region,
    scene,
    silence,
    word,
)


class Rig:
    """A controller over fakes, stepped by the test (no thread) unless ``threaded``."""

    def __init__(self, memory=None, image_encoder=None, teach=TeachSettings(timeout_s=2.0, sample_interval_ms=0.0),
                 answers=AnswerSettings(), matching=MatchSettings(unknown_word_distance=None, not_in_view_distance=0.25),
                 speech_encoder=None):
        self.audio = QueueAudio()
        self.frames = StaticFrames()
        self.frames.start()  # connected, no frame yet
        self.memory = memory if memory is not None else DictMemory()  # an empty Memory is falsy (len 0)
        self.events: list[dict] = []
        self.ctrl = Controller(
            speech_encoder=speech_encoder or DtwSpeech(SpeechFeatureSettings()),
            image_encoder=image_encoder or PixelImage(),
            feature_settings=SpeechFeatureSettings(),
            memory=self.memory,
            audio=self.audio,
            endpointer=EnergyEndpointer(),
            frames=self.frames,
            finder=ThreeSlots(),
            teach_region=centre_region,
            teach=teach,
            answers=answers,
            matching=matching,
            publish=self.events.append,
        )

    def names(self) -> list[str]:
        return [e["event"] for e in self.events]

    def run_until(self, name: str, timeout_s: float = 10.0) -> dict:
        """Step until an event called ``name`` appears (new since the call)."""
        seen = len(self.events)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.ctrl.step(read_timeout_s=0.01)
            for e in self.events[seen:]:
                if e["event"] == name:
                    return e
        raise AssertionError(f"no {name!r} event within {timeout_s} s; got {self.names()}")

    def request(self, req: dict, timeout_s: float = 5.0) -> dict:
        """A control command answered by the controller, stepped here while a thread waits for the reply."""
        import threading

        done: list[dict] = []
        t = threading.Thread(target=lambda: done.append(self.ctrl.request(req, timeout_s=timeout_s)))
        t.start()
        deadline = time.monotonic() + timeout_s
        while not done and time.monotonic() < deadline:
            self.ctrl.step(0.01)
        t.join(timeout=timeout_s)
        return done[0]

    def say(self, kind: int) -> None:
        self.audio.push(np.concatenate([silence(0.09), word(kind), silence(0.3)]))

    def teach(self, kind: int, shape: str) -> dict:
        self.frames.show(scene(None, shape, None))
        self.ctrl.press("test")
        self.run_until("teach_started")
        self.ctrl.step(0.01)  # sample the teach region
        self.say(kind)
        return self.run_until("taught")


def test_teach_then_requests_find_each_object_in_view():
    rig = Rig()
    taught = {shape: rig.teach(k, shape)["pair_id"] for k, shape in enumerate(("circle", "square", "triangle"))}
    assert sorted(taught.values()) == [1, 2, 3]
    assert len(rig.memory.pairs()) == 3
    rig.frames.show(scene("triangle", "circle", "square"))  # objects in other places than taught
    for kind, shape, slot in ((0, "circle", 1), (1, "square", 2), (2, "triangle", 0)):
        rig.say(kind)
        ev = rig.run_until("resolved")
        assert ev["pair_id"] == taught[shape]
        assert ev["box"] == list(BOXES[slot])
        assert ev["image_distance"] < 0.05 and ev["speech_distance"] >= 0
        assert ev["latency_ms"] > 0


def test_object_not_in_view_and_unknown_word():
    rig = Rig(matching=MatchSettings(unknown_word_distance=None, not_in_view_distance=0.02))
    rig.teach(0, "circle")
    rig.teach(1, "square")
    rig.frames.show(scene(None, "triangle", "square"))
    rig.say(0)  # the circle is asked for but not there
    ev = rig.run_until("not_in_view")
    assert ev["pair_id"] == 1 and ev["image_distance"] > 0.02
    # an unknown word: nearest utterance further than the threshold
    far = Rig(matching=MatchSettings(unknown_word_distance=1e-6))
    far.teach(0, "circle")
    far.say(2)
    ev = far.run_until("unknown_word")
    assert ev["speech_distance"] > 1e-6


def test_second_press_cancels_and_timeout_cancels():
    rig = Rig(teach=TeachSettings(timeout_s=1.0))
    rig.frames.show(scene(None, "circle", None))
    rig.ctrl.press("test")
    rig.run_until("teach_started")
    rig.ctrl.press("test")
    assert rig.run_until("teach_cancelled")["reason"] == "second_press"
    assert rig.ctrl.state == "idle"
    rig.ctrl.press("test")
    rig.run_until("teach_started")
    t0 = time.monotonic()
    assert rig.run_until("teach_cancelled", timeout_s=5.0)["reason"] == "timeout"
    assert 0.9 <= time.monotonic() - t0 < 3.0
    # after a cancel an utterance is a request again, and nothing was stored
    rig.say(0)
    assert rig.run_until("unknown_word")["reason"] == "nothing_taught"
    assert rig.memory.pairs() == []


def test_cancel_command_and_status_list_label_forget():
    rig = Rig()
    rig.teach(0, "circle")
    rig.teach(1, "square")
    reply = {}
    ask = rig.request

    assert ask({"cmd": "cancel"})["ok"] is False
    assert ask({"cmd": "teach"})["state"] == "teaching"
    assert ask({"cmd": "cancel"}) == {"ok": True, "state": "idle"}
    assert rig.events[-1]["event"] == "teach_cancelled" and rig.events[-1]["reason"] == "cancelled"
    status = ask({"cmd": "status"})
    assert status["ok"] and status["pairs"] == 2 and status["state"] == "idle"
    assert [p["pair_id"] for p in ask({"cmd": "list"})["pairs"]] == [1, 2]
    assert ask({"cmd": "label", "pair_id": 1, "label": "ball"})["ok"]
    assert ask({"cmd": "label", "pair_id": 9, "label": "x"})["ok"] is False
    assert ask({"cmd": "label", "pair_id": "1", "label": "x"})["ok"] is False  # bad type: error reply, no crash
    rig.frames.show(scene("square", "circle", None))
    rig.say(0)
    ev = rig.run_until("resolved")
    assert ev["label"] == "ball" and ev["box"] == list(BOXES[1])
    assert ask({"cmd": "forget", "pair_id": 1})["ok"]
    assert ask({"cmd": "forget", "pair_id": 1})["ok"] is False
    assert ask({"cmd": "nonsense"})["ok"] is False
    assert ask({"cmd": "ask"})["ok"] is False
    assert len(rig.ctrl.support) == 1 and [p.pair_id for p in rig.memory.pairs()] == [2]


def test_restart_loads_the_sqlite_memory_and_reembeds_for_another_image_encoder(tmp_path):
    from edge.images import ImageSettings
    from edge.memory import Memory

    memory = Memory(tmp_path / "memory.sqlite3")
    first = Rig(memory=memory)
    first.teach(0, "circle")
    first.teach(1, "square")
    memory.close()
    memory = Memory(tmp_path / "memory.sqlite3")
    other = PixelImage(ImageSettings(size_px=16))  # another encoder id: its embeddings are not stored yet
    second = Rig(memory=memory, image_encoder=other)
    assert memory.embeddings(other.encoder_id) == {}
    calls = []
    assert second.ctrl.load_memory(lambda done, total: calls.append((done, total))) == 2
    assert calls == [(0, 2), (1, 2)]  # the two crops re-embedded; the speech embeddings were stored
    assert sorted(memory.embeddings(other.encoder_id)) == [1, 2]  # stored for the next start
    second.frames.show(scene("square", None, "circle"))
    second.say(1)
    assert second.run_until("resolved")["box"] == list(BOXES[0])
    memory.close()


def test_restart_with_the_speech_ensemble_reembeds_the_taught_audio(tmp_path):
    """Switching encoders.speech from default to ensemble keeps every taught pair: the stored audio is embedded again."""
    from edge.encoders import EncoderSettings, load_speech_encoder
    from edge.matching import unpack_fused
    from edge.memory import Memory

    def speech(name):
        return load_speech_encoder(EncoderSettings(speech=name, fuse_dtw=0.5), SpeechFeatureSettings())  # fused with DTW

    memory = Memory(tmp_path / "memory.sqlite3")
    first = Rig(memory=memory, speech_encoder=speech("default"))
    first.teach(0, "circle")
    first.teach(1, "square")
    memory.close()
    memory = Memory(tmp_path / "memory.sqlite3")
    ensemble = speech("ensemble")
    second = Rig(memory=memory, speech_encoder=ensemble)
    assert memory.embeddings(ensemble.encoder_id) == {}
    assert second.ctrl.load_memory() == 2
    stored = memory.embeddings(ensemble.encoder_id)
    assert sorted(stored) == [1, 2]
    assert all(unpack_fused(v)[0].shape == (384,) for v in stored.values())  # the three members' embedding, beside the DTW frames
    second.frames.show(scene("square", None, "circle"))
    second.say(1)
    assert second.run_until("resolved")["box"] == list(BOXES[0])
    memory.close()


def test_candidates_are_embedded_while_speaking_so_the_answer_reuses_them():
    rig = Rig(answers=AnswerSettings(prefetch_interval_ms=0.0, reuse_view_ms=5000.0))
    rig.teach(0, "circle")
    rig.frames.show(scene("circle", None, None))
    # speech begins: a new frame arrives while the person is still speaking
    rig.audio.push(word(0)[:4800])
    for _ in range(20):
        rig.ctrl.step(0.01)
    rig.frames.show(scene("circle", None, None))
    for _ in range(5):
        rig.ctrl.step(0.01)
    assert rig.ctrl._views, "no view was embedded while speaking"
    rig.audio.push(np.concatenate([word(0)[4800:], silence(0.3)]))
    ev = rig.run_until("resolved")
    assert ev["view_cached"] is True and ev["box"] == list(BOXES[0])


def test_mutual_exclusivitys_request_independent_part_is_computed_with_the_candidates_not_at_answer_time():
    rig = Rig(answers=AnswerSettings(prefetch_interval_ms=0.0, reuse_view_ms=5000.0),
              matching=MatchSettings(unknown_word_distance=None, not_in_view_distance=0.25, mutual_exclusivity=0.05))
    rig.teach(0, "circle")
    rig.teach(1, "square")
    rig.frames.show(scene("square", "circle", None))
    view = rig.ctrl.prefetch_view()  # as the loop does while the person speaks
    assert view.distances is not None and view.distances.version == rig.ctrl.support.version
    support = rig.ctrl.support
    computed = []
    real = support.candidate_distances
    support.candidate_distances = lambda *a, **k: computed.append(1) or real(*a, **k)  # type: ignore[method-assign]
    early = rig.ctrl.answer(word(0), RATE)
    assert early["view_cached"] is True and early["box"] == list(BOXES[1]) and computed == []  # nothing left to compute
    rig.ctrl.clear_views()
    late = rig.ctrl.answer(word(0), RATE)  # no prefetch: computed on the critical path, the same answer
    assert late["view_cached"] is False and len(computed) == 1
    for key in ("pair_id", "box", "image_distance", "word_probability", "speech_distance"):
        assert early[key] == late[key]
    # a word taught since the view was embedded: the stale part is not used, the answer sees the new word
    rig.ctrl.prefetch_view()
    rig.teach(2, "triangle")
    rig.frames.show(scene("square", "circle", "triangle"))
    computed.clear()
    rig.ctrl.prefetch_view()
    assert computed == [1]


def test_silence_embeds_no_candidates():
    rig = Rig()
    rig.teach(0, "circle")
    time.sleep(0.6)  # the taught word has faded
    rig.ctrl._views.clear()
    for i in range(30):
        rig.frames.show(scene("circle", None, None))
        rig.audio.push(silence(0.03))
        rig.ctrl.step(0.01)
    assert not rig.ctrl._views


def test_recent_view_answers_with_an_object_that_just_left():
    rig = Rig(answers=AnswerSettings(recent_view_s=30.0, recent_view_interval_s=0.1, reuse_view_ms=0.0),
              matching=MatchSettings(not_in_view_distance=0.05))
    rig.teach(0, "circle")
    rig.frames.show(scene(None, None, "circle"))
    time.sleep(0.15)
    rig.ctrl.step(0.01)  # embeds the view in silence (recent views on)
    rig.frames.show(scene(None, None, None))  # the circle has left
    rig.say(0)
    ev = rig.run_until("resolved")
    assert ev["in_view"] is False and ev["box"] == list(BOXES[2])


def test_annotated_answer_images_are_written(tmp_path):
    rig = Rig(answers=AnswerSettings(save_dir=str(tmp_path / "answers"), max_saved_images=2))
    rig.teach(0, "circle")
    rig.frames.show(scene(None, "circle", None))
    paths = []
    for _ in range(3):
        rig.say(0)
        paths.append(rig.run_until("resolved")["image"])
    files = sorted(p.name for p in (tmp_path / "answers").iterdir())
    assert len(files) == 2 and all(f.endswith("-resolved.jpg") for f in files)  # oldest pruned, no temp files left
    import cv2

    img = cv2.imread(paths[-1])
    x, y, w, h = BOXES[1]
    assert img is not None and img.shape[:2] == (160, 240)
    assert img[y, x + w // 2, 1] > 150 and img[y, x + w // 2, 2] < 100  # green box edge drawn (BGR)


def test_teach_keeps_the_sharpest_sampled_crop():
    rig = Rig(teach=TeachSettings(timeout_s=5.0, sample_interval_ms=0.0, frames_to_sample=8))
    import cv2

    sharp = scene(None, "square", None)
    blurred = cv2.GaussianBlur(sharp, (21, 21), 8)
    rig.frames.show(blurred)
    rig.ctrl.press("test")
    rig.run_until("teach_started")
    rig.ctrl.step(0.01)
    rig.frames.show(sharp)
    rig.ctrl.step(0.01)
    rig.frames.show(blurred)
    rig.ctrl.step(0.01)
    rig.say(1)
    ev = rig.run_until("taught")
    crop = rig.memory.pairs()[0].crop
    assert np.array_equal(crop, centre_region(sharp).crop)
    assert ev["sharpness"] == pytest.approx(sharpness(crop), abs=0.1)


def test_a_failing_step_is_reported_and_the_loop_goes_on():
    rig = Rig()

    class Boom:
        def find(self, image):
            raise RuntimeError("finder exploded")

    rig.teach(0, "circle")
    rig.ctrl.finder = Boom()
    rig.frames.show(scene("circle", None, None))
    rig.say(0)
    assert "finder exploded" in rig.run_until("error")["error"]
    rig.ctrl.finder = ThreeSlots()
    rig.say(0)
    assert rig.run_until("resolved")["pair_id"] == 1


def test_device_lost_and_recovered_events():
    rig = Rig(answers=AnswerSettings(audio_lost_s=0.5))
    rig.frames.show(scene())
    rig.ctrl.step(0.01)
    rig.frames.connected = False
    assert rig.run_until("device_lost")["device"] == "camera"
    rig.frames.connected = True
    assert rig.run_until("device_recovered")["device"] == "camera"
    assert rig.run_until("device_lost", timeout_s=3.0)["device"] == "microphone"
    rig.audio.push(silence(0.06))
    assert rig.run_until("device_recovered")["device"] == "microphone"


def test_threaded_controller_ends_with_a_finite_source():
    rig = Rig()
    rig.frames.show(scene(None, "circle", None))
    thread = run_in_thread(rig.ctrl)
    rig.ctrl.press("test")
    rig.audio.push(np.concatenate([silence(0.3), word(0)]))  # the utterance ends with the source
    rig.audio.finish()
    assert rig.ctrl.finished.wait(10.0)
    thread.join(timeout=5.0)
    assert rig.names()[-1] == "taught"


def test_a_stored_pair_that_cannot_be_reembedded_is_left_out_not_fatal():
    memory = DictMemory()
    first = Rig(memory=memory)
    first.teach(0, "circle")
    first.teach(1, "square")
    memory.rows[2].crop = np.zeros((0, 0, 3), np.uint8)  # damaged crop, and no stored embedding for it
    memory.vectors = {k: v for k, v in memory.vectors.items() if not k[1].startswith("pixels")}
    second = Rig(memory=memory)
    assert second.ctrl.load_memory() == 1
    assert second.ctrl.support.ids == [1] and len(memory.pairs()) == 2  # nothing deleted


def test_teach_over_the_socket_with_a_label():
    rig = Rig()
    rig.frames.show(scene(None, "triangle", None))
    import threading

    reply = []
    t = threading.Thread(target=lambda: reply.append(rig.ctrl.request({"cmd": "teach", "label": "tent"}, timeout_s=5.0)))
    t.start()
    rig.run_until("teach_started")
    t.join(timeout=5.0)
    assert reply == [{"ok": True, "state": "teaching"}]
    rig.ctrl.step(0.01)
    rig.say(2)
    assert rig.run_until("taught")["label"] == "tent"
    assert rig.memory.pairs()[0].label == "tent"
    rig.frames.show(scene("triangle", None, None))
    rig.say(2)
    assert rig.run_until("resolved")["label"] == "tent"


def test_teaching_waits_longer_for_the_end_of_the_name():
    """While teaching the endpointer uses vad.teach_end_silence_ms; back to end_silence_ms once taught or cancelled."""
    from edge.vad import Endpointer, VadSettings

    rig = Rig()
    rig.ctrl.endpointer = real = Endpointer(VadSettings(end_silence_ms=240, teach_end_silence_ms=600))
    frames = lambda: real._end_frames  # noqa: E731 - 30 ms frames in the end window
    assert frames() == 8
    rig.ctrl.press()
    rig.run_until("teach_started")
    assert frames() == 20
    rig.ctrl.press()  # a second press cancels
    rig.run_until("teach_cancelled")
    assert frames() == 8


def test_restart_with_the_keywords_encoder_reembeds_the_taught_audio_as_waveforms(tmp_path):
    """From an old config's 'default' (the triplet, MFCC frames, fused with DTW) to keywords (16 kHz samples): every pair kept."""
    from edge.encoders import EncoderSettings, load_speech_encoder
    from edge.memory import Memory

    memory = Memory(tmp_path / "memory.sqlite3")
    first = Rig(memory=memory, speech_encoder=load_speech_encoder(EncoderSettings(speech="default"), SpeechFeatureSettings()))
    first.teach(0, "circle")
    first.teach(1, "square")
    memory.close()
    memory = Memory(tmp_path / "memory.sqlite3")
    keywords = load_speech_encoder(EncoderSettings(), SpeechFeatureSettings())  # the config default
    assert keywords.input_kind == "waveform" and keywords.encoder_id.startswith("speech-keywords-")
    second = Rig(memory=memory, speech_encoder=keywords)
    assert second.ctrl.load_memory() == 2
    stored = memory.embeddings(keywords.encoder_id)
    assert sorted(stored) == [1, 2] and all(v.shape == (96,) for v in stored.values())
    second.frames.show(scene("square", None, "circle"))
    second.say(1)
    assert second.run_until("resolved")["box"] == list(BOXES[0])
    asked = second.ctrl.answer(word(0), 16000)  # the path of 'showsay ask'
    assert asked["event"] == "resolved" and asked["pair_id"] == 1 and asked["box"] == list(BOXES[2])
    memory.close()


class PausingEndpointer(EnergyEndpointer):
    """Like EnergyEndpointer, but the utterance ends at the second quiet frame and is offered (pending) at the first."""

    def __init__(self) -> None:
        super().__init__()
        self.quiet = 0
        self.offer = None

    def push(self, frame):
        if np.abs(frame.pcm).max() > 1000:
            self.quiet = 0
            self.frames.append(frame)
            return None
        if not self.frames:
            return None
        self.quiet += 1
        if self.quiet == 1:
            self.offer = Utterance(np.concatenate([f.pcm for f in self.frames]), 16000, self.frames[0].time_s, self.frames[-1].time_s)
            return None
        self.quiet = 0
        return self.flush()

    def pending(self):
        offer, self.offer = self.offer, None
        return offer


def test_the_speech_side_of_a_request_is_computed_at_its_first_pause():
    rig = Rig()
    rig.ctrl.endpointer = PausingEndpointer()
    rig.teach(0, "circle")
    rig.frames.show(scene("circle", None, None))
    rig.say(0)
    ev = rig.run_until("resolved")
    assert ev["speech_precomputed"] is True and ev["box"] == list(BOXES[0])
    assert ev["timings_ms"]["speech_embedding"] > 0  # its cost is still reported
    rig.ctrl.endpointer = EnergyEndpointer()  # no pending(): computed when the utterance ends
    rig.say(0)
    assert rig.run_until("resolved")["speech_precomputed"] is False
