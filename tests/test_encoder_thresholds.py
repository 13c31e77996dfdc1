"""matching.unknown_word_distance "encoder": each speech encoder answers with the threshold measured for it."""
from __future__ import annotations

import logging
import shutil

import pytest

from edge.encoders import MODELS_DIR, UNKNOWN_WORD_CHOSEN, EncoderSettings, load_speech_encoder
from edge.features import SpeechFeatureSettings
from edge.matching import MatchSettings
from edge.settings import SettingsError, build
from tests.test_daemon import Rig


@pytest.mark.parametrize("name", ["keywords", "triplet", "dtw"])
def test_a_loaded_speech_encoder_carries_the_threshold_measured_for_it(name):
    enc = load_speech_encoder(EncoderSettings(speech=name), SpeechFeatureSettings())
    assert enc.unknown_word_distance == UNKNOWN_WORD_CHOSEN[name]


def test_thresholds_differ_by_encoder_so_one_number_cannot_serve_all():
    # the point of "encoder": the keywords value would leave the triplet and DTW nearly deaf
    assert UNKNOWN_WORD_CHOSEN["keywords"] < UNKNOWN_WORD_CHOSEN["triplet"] < UNKNOWN_WORD_CHOSEN["dtw"]


def test_a_model_file_with_no_measurement_gets_none(tmp_path):
    path = tmp_path / "mine.onnx"
    shutil.copy(MODELS_DIR / "keywords.onnx", path)
    assert load_speech_encoder(EncoderSettings(speech=str(path)), SpeechFeatureSettings()).unknown_word_distance is None


def test_the_controller_uses_the_encoders_threshold_unless_the_config_sets_one(caplog):
    measured = Rig(matching=MatchSettings(unknown_word_distance="encoder")).ctrl
    assert measured.speech_encoder.unknown_word_distance is None  # a DtwSpeech made by hand: nothing measured
    assert measured.matching.unknown_word_distance is None and "no threshold was measured" in caplog.text
    dtw = load_speech_encoder(EncoderSettings(speech="dtw"), SpeechFeatureSettings())
    ctrl = Rig(matching=MatchSettings(unknown_word_distance="encoder"), speech_encoder=dtw).ctrl
    assert ctrl.matching.unknown_word_distance == UNKNOWN_WORD_CHOSEN["dtw"]
    assert Rig(matching=MatchSettings(unknown_word_distance=0.1), speech_encoder=dtw).ctrl.matching.unknown_word_distance == 0.1
    assert Rig(matching=MatchSettings(unknown_word_distance=None), speech_encoder=dtw).ctrl.matching.unknown_word_distance is None
    # a reload (SIGHUP) with "encoder" is resolved the same way
    assert ctrl.with_encoder_thresholds(MatchSettings(unknown_word_distance="encoder")).unknown_word_distance == UNKNOWN_WORD_CHOSEN["dtw"]


def test_the_config_takes_encoder_a_number_or_null_and_names_anything_else():
    assert build(MatchSettings, {"unknown_word_distance": "encoder"}).unknown_word_distance == "encoder"
    assert build(MatchSettings, {"unknown_word_distance": 0.3}).unknown_word_distance == 0.3
    assert build(MatchSettings, {"unknown_word_distance": None}).unknown_word_distance is None
    with pytest.raises(SettingsError, match="unknown_word_distance"):
        build(MatchSettings, {"unknown_word_distance": "auto"})
    with pytest.raises(SettingsError, match="unknown_word_distance"):
        build(MatchSettings, {"unknown_word_distance": -1})
