"""The endpointer on synthesised speech: utterance count, boundaries, pre-roll, length limits, warm-up."""
from __future__ import annotations

import logging

import numpy as np
import pytest
from speech_fixtures import RATE_HZ, compose, espeak, voiced_span_s

from edge.hearing import AudioFrame, WavFileSource
from edge.settings import SettingsError, build
from edge.vad import Endpointer, VadSettings


@pytest.fixture(scope="module")
def words(tmp_path_factory):
    d = tmp_path_factory.mktemp("words")
    return {w: espeak(w, d / f"{w}.wav") for w in ("apple", "banana", "scissors")}


def test_two_words_give_two_utterances_at_the_right_times(words, tmp_path):
    path = tmp_path / "two.wav"
    spans = compose([0.5, words["apple"], 1.0, words["banana"], 0.7], path)
    tight = Endpointer(VadSettings(pre_roll_ms=0, post_roll_ms=0)).segment_wav(path)
    assert len(tight) == 2
    for u, (start, end) in zip(tight, spans):
        # the VAD answers per 30 ms frame and has some hangover at the end
        assert abs(u.start_s - start) <= 0.09, (u.start_s, start)
        assert -0.06 <= u.end_s - end <= 0.25, (u.end_s, end)
        assert u.pcm.dtype == np.int16 and u.sample_rate_hz == RATE_HZ
        assert u.pcm.size == round((u.end_s - u.start_s) * RATE_HZ)


def test_pre_roll_keeps_the_onset(words, tmp_path):
    path = tmp_path / "one.wav"
    [(start, end)] = compose([0.8, words["scissors"], 0.8], path)
    [tight] = Endpointer(VadSettings(pre_roll_ms=0, post_roll_ms=0)).segment_wav(path)
    [padded] = Endpointer(VadSettings(pre_roll_ms=300, post_roll_ms=150)).segment_wav(path)
    assert padded.start_s == pytest.approx(tight.start_s - 0.3, abs=1e-6)
    assert padded.end_s == pytest.approx(tight.end_s + 0.15, abs=1e-6)
    assert padded.start_s <= start - 0.2  # the soft "s" onset is inside the utterance, with room to spare
    offset = round((tight.start_s - padded.start_s) * RATE_HZ)
    np.testing.assert_array_equal(padded.pcm[offset : offset + tight.pcm.size], tight.pcm)
    assert padded.samples().dtype == np.float32 and np.abs(padded.samples()).max() <= 1.0


def test_too_short_and_too_long_are_dropped_with_a_log_line(words, tmp_path, caplog):
    path = tmp_path / "mix.wav"
    sentence = espeak("this is a long sentence that keeps going on and on without a single pause", tmp_path / "long.wav")
    compose([0.5, words["apple"], 1.0, sentence, 1.0, words["banana"], 0.6], path)
    events = []
    ep = Endpointer(VadSettings(min_utterance_ms=300, max_utterance_ms=2000), on_event=events.append)
    ep_short = Endpointer(VadSettings(min_utterance_ms=1000, max_utterance_ms=2000), on_event=events.append)
    with caplog.at_level(logging.INFO, logger="edge.vad"):
        kept = ep.segment_wav(path)
        kept_short = ep_short.segment_wav(path)
    assert len(kept) == 2  # the sentence is dropped, the words on either side survive
    assert kept[0].end_s < 1.7 and kept[1].start_s > 6.5
    assert ep.dropped_long == 1 and ep.dropped_short == 0
    assert kept_short == [] and ep_short.dropped_short == 2 and ep_short.dropped_long == 1
    reasons = [e["reason"] for e in events]
    assert reasons.count("too_long") == 2 and reasons.count("too_short") == 2
    assert all(e["event"] == "utterance_dropped" for e in events)
    assert any("too long" in r.message and "max_utterance_ms=2000" in r.message for r in caplog.records)
    assert any("too short" in r.message and "min_utterance_ms=1000" in r.message for r in caplog.records)


def test_fresh_vad_artefact_is_ignored():
    """A fresh webrtcvad calls the first frames of noise speech; the warm-up window hides that."""
    rng = np.random.default_rng(0)
    noise = (rng.standard_normal(480 * 66) * 100).astype(np.int16).reshape(-1, 480)
    frames = [AudioFrame(f, i * 0.03) for i, f in enumerate(noise)]
    quick = dict(start_window_ms=90, start_voiced_ratio=0.6, min_utterance_ms=0)
    naive = Endpointer(VadSettings(ignore_first_ms=0, **quick))
    warmed = Endpointer(VadSettings(**quick))
    assert [u for u in (naive.push(f) for f in frames) if u] + [naive.flush()] != [None]  # the artefact exists
    assert [u for u in (warmed.push(f) for f in frames) if u] == [] and warmed.flush() is None


def test_push_and_segment_agree(words, tmp_path):
    path = tmp_path / "two.wav"
    compose([0.4, words["apple"], 0.9, words["banana"], 0.7], path)
    ep = Endpointer()
    source = WavFileSource(path, start_time_s=0.0)
    pushed = []
    while not source.closed:
        frame = source.read(1.0)
        u = ep.push(frame)
        if u:
            pushed.append(u)
    tail = ep.flush()
    pushed += [tail] if tail else []
    segmented = Endpointer().segment_wav(path)
    assert [(u.start_s, u.end_s) for u in pushed] == [(u.start_s, u.end_s) for u in segmented]
    assert len(segmented) == 2


def test_word_running_into_the_end_of_input_is_flushed(words, tmp_path):
    path = tmp_path / "cut.wav"
    [(start, end)] = compose([0.5, words["banana"][: int(voiced_span_s(words["banana"])[1] * RATE_HZ)]], path)
    ep = Endpointer()
    assert ep.segment_wav(path) != []  # the word ends with the file: flush() closes it
    [u] = Endpointer().segment_wav(path)
    assert u.start_s < start and u.end_s >= end - 0.03


def test_wrong_frame_size_is_a_clear_error():
    ep = Endpointer(VadSettings(frame_ms=20))
    with pytest.raises(ValueError, match="frame_ms"):
        ep.push(AudioFrame(np.zeros(480, np.int16), 0.0))


def test_settings_need_hysteresis():
    with pytest.raises(SettingsError, match="vad.end_voiced_ratio"):
        build(VadSettings, {"start_voiced_ratio": 0.3, "end_voiced_ratio": 0.5}, prefix="vad")
    with pytest.raises(SettingsError, match="vad.frame_ms"):
        build(VadSettings, {"frame_ms": 25}, prefix="vad")


def test_listen_command_on_a_wav(words, tmp_path, capsys):
    import json

    from edge.cli import main

    path = tmp_path / "two.wav"
    spans = compose([0.5, words["apple"], 1.0, words["banana"], 0.7], path)
    assert main(["listen", "--wav", str(path), "--save-dir", str(tmp_path / "utts")]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["utterance"] for line in lines] == [1, 2]
    for line, (start, end) in zip(lines, spans):
        assert line["start_s"] < start < end < line["end_s"]
        assert WavFileSource(line["wav"]).frame_count == round(line["duration_ms"] / 30)
    assert main(["listen", "--wav", str(tmp_path / "missing.wav")]) == 1
    assert "missing.wav" in capsys.readouterr().err


def test_a_pause_inside_a_request_splits_it_unless_the_end_silence_is_longer(words, tmp_path):
    """The default end silence (240 ms) answers sooner; teaching uses teach_end_silence_ms (600) to keep a name whole."""
    path = tmp_path / "paused.wav"
    spans = compose([0.5, words["apple"], 0.1, words["banana"], 1.0], path)  # "apple ... banana": espeak's own silence makes it about 470 ms
    assert 0.35 < spans[1][0] - spans[0][1] < 0.55
    assert len(Endpointer().segment_wav(path)) == 2
    patient = Endpointer()
    patient.set_end_silence_ms(VadSettings().teach_end_silence_ms)
    (whole,) = patient.segment_wav(path)
    assert whole.duration_ms > 1000
    apart = tmp_path / "apart.wav"
    compose([0.5, words["apple"], 0.9, words["banana"], 1.0], apart)  # two requests 0.9 s apart stay two either way
    assert len(patient.segment_wav(apart)) == 2


def test_pending_offers_the_utterance_as_it_will_end_once_per_pause(words, tmp_path):
    path = tmp_path / "one.wav"
    compose([0.5, words["apple"], 1.0], path)
    ep = Endpointer()
    source = WavFileSource(path, frame_ms=30, sample_rate_hz=16000, start_time_s=0.0)
    source.start()
    offered, ended = [], []
    while not source.closed:
        frame = source.read(0.1)
        if frame is None:
            continue
        utt = ep.push(frame)
        if utt is not None:
            ended.append((utt, frame.time_s))
        else:
            ahead = ep.pending()
            if ahead is not None:
                offered.append((ahead, frame.time_s))
    assert len(offered) == 1 and len(ended) == 1
    (ahead, offered_at), (utt, ended_at) = offered[0], ended[0]
    assert np.array_equal(ahead.pcm, utt.pcm) and (ahead.start_s, ahead.end_s) == (utt.start_s, utt.end_s)
    assert 0.05 <= ended_at - offered_at <= 0.2  # offered post_roll_ms after the last voiced frame, before the end silence ran out
