"""The strict config loader, the shipped YAML and `showsay check`."""
from __future__ import annotations

from pathlib import Path

import pytest

from edge.cli import main
from edge.config import Config, ConfigError, config_from_mapping, default_yaml, load_config

ROOT = Path(__file__).resolve().parents[1]


def test_shipped_yaml_is_the_defaults_with_every_key_commented():
    text = (ROOT / "config" / "showsay.yaml").read_text()
    assert text == default_yaml(), "config/showsay.yaml is stale: run `python -m edge.config > config/showsay.yaml`"
    assert load_config(ROOT / "config" / "showsay.yaml") == Config()
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() and not line.lstrip().startswith("#"):
            assert lines[i - 1].lstrip().startswith("#"), f"key without a comment: {line!r}"


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"speech_features": {"n_mfcc": 0}}, "speech_features.n_mfcc: must be >= 1, got 0"),
        ({"speech_features": {"hop_ms": "ten"}}, "speech_features.hop_ms: expected a number, got 'ten'"),
        ({"speech_features": {"normalise": 1}}, "speech_features.normalise: expected true or false, got 1"),
        ({"speech_features": {"colour": 3}}, "speech_features.colour: unknown key"),
        ({"nonsense": {}}, "nonsense: unknown key"),
        ({"encoders": {"backend": "cuda"}}, "encoders.backend: must be one of 'onnxruntime', 'tensorrt', got 'cuda'"),
        ({"encoders": {"threads": 0}}, "encoders.threads: must be >= 1, got 0"),
        ({"matching": {"not_in_view_distance": -0.5}}, "matching.not_in_view_distance: must be >= 0.0, got -0.5"),
        ({"matching": []}, "matching: expected a mapping of settings, got []"),
        ({"speech_features": {"sample_rate_hz": 8000, "high_freq_hz": 5000}}, "speech_features.high_freq_hz: must be <= half the sample rate"),
    ],
)
def test_each_kind_of_error_names_its_key_and_value(values, message):
    with pytest.raises(ConfigError) as err:
        config_from_mapping(values, "test.yaml")
    assert message in str(err.value)
    assert str(err.value).startswith("test.yaml: ")


def test_file_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="no such config file"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("speech_features: [unclosed\n")
    with pytest.raises(ConfigError, match=f"{bad}: not valid YAML"):
        load_config(bad)
    top = tmp_path / "top.yaml"
    top.write_text("- a list\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        load_config(top)


def test_relative_model_paths_resolve_against_the_config_folder(tmp_path):
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("encoders:\n  speech: models/s.onnx\n  image: pixels\n")
    cfg = load_config(cfg_file)
    assert cfg.encoders.speech == str(tmp_path / "models" / "s.onnx")
    assert cfg.encoders.image == "pixels"
    for speech in ("default", "ensemble", "dtw"):  # shipped names are names, wherever the config lives
        cfg_file.write_text(f"encoders:\n  speech: {speech}\n  image: objects\n")
        cfg = load_config(cfg_file)
        assert (cfg.encoders.speech, cfg.encoders.image) == (speech, "objects")


def test_check_command(tmp_path, capsys):
    # --config-only: the shipped paths (/var/lib/showsay, /run/showsay) are the service's, not this user's
    assert main(["check", "--config-only", "--config", str(ROOT / "config" / "showsay.yaml")]) == 0
    missing = tmp_path / "m.yaml"
    missing.write_text("encoders:\n  speech: nowhere.onnx\n")
    assert main(["check", "--config", str(missing)]) == 1
    assert "nowhere.onnx: no such model file" in capsys.readouterr().err
    corrupt_model = tmp_path / "corrupt.onnx"
    corrupt_model.write_bytes(b"\x00garbage" * 10)
    bad = tmp_path / "b.yaml"
    bad.write_text(f"encoders:\n  image: {corrupt_model}\n")
    assert main(["check", "--config", str(bad)]) == 1
    assert "corrupt.onnx: not a loadable ONNX model" in capsys.readouterr().err
    typo = tmp_path / "t.yaml"
    typo.write_text("matching:\n  unknown_word_distanse: 0.3\n")
    assert main(["check", "--config", str(typo)]) == 1
    assert "matching.unknown_word_distanse: unknown key" in capsys.readouterr().err
