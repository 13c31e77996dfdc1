"""Values the strict loader must refuse whatever their range: NaN, infinities, huge integers, NUL bytes (issue 19, items 6 and 12)."""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass

import pytest

from edge.config import Config, ConfigError, config_from_mapping
from edge.images import ImageSettings
from edge.settings import SettingsError, build, setting


def leaves(cls: type, prefix: str = "") -> list[tuple[str, typing.Any]]:
    """(dotted key, annotation) of every leaf setting under ``cls``."""
    out = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp, key = hints[f.name], f"{prefix}{f.name}"
        if dataclasses.is_dataclass(tp):
            out.extend(leaves(tp, key + "."))
        else:
            out.append((key, tp))
    return out


def takes_floats(tp: typing.Any) -> bool:
    if tp is float:
        return True
    return any(takes_floats(a) for a in typing.get_args(tp) if a is not Ellipsis)


def is_list(tp: typing.Any) -> bool:
    return typing.get_origin(tp) is tuple


def nested(key: str, value: typing.Any) -> dict:
    section, name = key.split(".")
    return {section: {name: value}}


FLOAT_KEYS = [key for key, tp in leaves(Config) if takes_floats(tp)]
LIST_KEYS = [key for key, tp in leaves(Config) if is_list(tp)]
NONFINITE = [float("nan"), float("inf"), float("-inf")]


def test_the_sweep_covers_every_float_setting():
    assert len(FLOAT_KEYS) >= 40  # 41 when written: a refactor that hides them from the sweep fails here
    assert "service.watchdog_fraction" in FLOAT_KEYS and "matching.unknown_word_distance" in FLOAT_KEYS
    assert "candidates.clutter_foreground_fractions" in LIST_KEYS


@pytest.mark.parametrize("bad", NONFINITE, ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("key", FLOAT_KEYS)
def test_every_float_setting_refuses_nonfinite_numbers(key, bad):
    tp = dict(leaves(Config))[key]
    value = [bad] if is_list(tp) else bad
    with pytest.raises(ConfigError) as err:
        config_from_mapping(nested(key, value), "test.yaml")
    assert f"test.yaml: {key}: must be a finite number" in str(err.value)


@pytest.mark.parametrize("key", LIST_KEYS)
def test_lists_refuse_a_nonfinite_element_among_finite_ones(key):
    default = getattr(getattr(Config(), key.split(".")[0]), key.split(".")[1])
    value = [*default[:-1], float("nan")] if default else [float("nan")]
    with pytest.raises(ConfigError, match=f"{key}: must be a finite number"):
        config_from_mapping(nested(key, value), "test.yaml")


def test_yaml_spellings_of_nan_and_infinity_are_refused(tmp_path):
    from edge.config import load_config

    for text in (".nan", ".inf", "-.inf", ".NaN", "1.0e+400"):
        path = tmp_path / "c.yaml"
        path.write_text(f"service:\n  stop_timeout_s: {text}\n")
        with pytest.raises(ConfigError, match="service.stop_timeout_s: must be a finite number"):
            load_config(path)


def test_model_metadata_settings_refuse_nonfinite_numbers():
    with pytest.raises(SettingsError, match="std: must be a finite number"):
        build(ImageSettings, {"std": [float("nan")]})
    with pytest.raises(SettingsError, match="mean: must be a finite number"):
        build(ImageSettings, {"mean": [float("inf")]})


def test_a_setting_can_say_it_accepts_nonfinite_numbers():
    @dataclass(frozen=True)
    class Limits:
        ceiling: float = setting(1.0, "largest value (inf: none)", min=0.0, accepts_nonfinite=True)
        floor: float = setting(0.0, "smallest value", min=0.0)

    assert build(Limits, {"ceiling": float("inf")}).ceiling == math.inf
    with pytest.raises(SettingsError, match="ceiling: must be >= 0.0"):
        build(Limits, {"ceiling": -1.0})
    with pytest.raises(SettingsError, match="floor: must be a finite number"):
        build(Limits, {"floor": float("inf")})


def test_integers_beyond_64_bits_are_refused_with_a_short_message():
    huge = 10**5000
    with pytest.raises(ConfigError) as err:
        config_from_mapping({"encoders": {"threads": huge}}, "test.yaml")
    assert "encoders.threads: integer out of the 64-bit range" in str(err.value)
    assert len(str(err.value)) < 200
    with pytest.raises(ConfigError, match="matching.dtw_warp: number out of range"):
        config_from_mapping({"matching": {"dtw_warp": huge}}, "test.yaml")


def test_nul_characters_in_strings_are_refused():
    for section, name in (("memory", "state_dir"), ("control", "socket_path"), ("camera", "source"), ("encoders", "speech")):
        with pytest.raises(ConfigError, match=f"{section}.{name}: contains a NUL character"):
            config_from_mapping({section: {name: "/tmp/a\x00b"}}, "test.yaml")


def test_values_quoted_in_messages_are_shortened():
    deep: list = []
    for _ in range(50):
        deep = [deep, "x" * 1000]
    with pytest.raises(ConfigError) as err:
        config_from_mapping({"matching": {"dtw_warp": deep}}, "test.yaml")
    assert "matching.dtw_warp: expected a number" in str(err.value)
    assert len(str(err.value)) < 300
