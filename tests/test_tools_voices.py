"""The study tools of issue 16: paired gains on the real-speaker validation set and the seeds' table."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.tool_modules import TOOLS
from tests.tool_modules import load_tool as _tool


def test_the_paired_gain_is_the_mean_difference_per_episode_with_its_own_interval():
    validate = _tool("validate_speech")
    rng = np.random.default_rng(0)
    ref = rng.uniform(0.3, 0.9, 400)
    better = np.clip(ref + 0.02 + rng.normal(0, 0.01, ref.size), 0, 1)
    gain, ci = validate.paired_gain(better, ref)
    assert gain == pytest.approx(float(np.mean(better - ref)))
    assert 0.015 < gain < 0.025
    assert ci < 0.005  # far narrower than either row's own interval (about +-0.017 here)
    assert ci < 1.96 * ref.std(ddof=1) / np.sqrt(ref.size) / 5
    assert np.isnan(validate.paired_gain(better, None)[0])


def test_against_names_a_measured_encoder_and_weight():
    validate = _tool("validate_speech")
    assert validate.parse_against("keywords:0", ["keywords", "a.onnx"], [0.0]) == ("keywords", 0.0)
    assert validate.parse_against("out/m:x.onnx:0.25", ["out/m:x.onnx"], [0.0, 0.25]) == ("out/m:x.onnx", 0.25)
    assert validate.parse_against("dtw:7", ["dtw"], [0.0]) == ("dtw", 0.0)  # DTW has no fuse weight
    with pytest.raises(SystemExit, match="one of --speech-encoder"):
        validate.parse_against("triplet:0", ["keywords"], [0.0])
    with pytest.raises(SystemExit, match="not one of --fuse-dtw"):
        validate.parse_against("keywords:0.5", ["keywords"], [0.0, 0.25])
    with pytest.raises(SystemExit, match="not a number"):
        validate.parse_against("keywords:half", ["keywords"], [0.0])


def test_a_row_over_training_seeds_gets_a_t_interval_and_one_seed_keeps_the_episodes_interval():
    table = _tool("seeds_table")
    mean, ci = table.over_seeds([0.70, 0.72, 0.74], episode_ci=0.01)
    assert mean == pytest.approx(0.72)
    assert ci == pytest.approx(4.303 * 0.02 / np.sqrt(3), rel=1e-3)  # t(0.975, 2 dof) x sd / sqrt(3)
    assert table.over_seeds([0.5], episode_ci=0.013) == (0.5, 0.013)


def test_the_committed_seeds_table_spec_labels_every_row():
    spec = yaml.safe_load((TOOLS / "seeds_table.yaml").read_text())
    names = [r["name"] for r in spec["rows"]]
    assert len(names) == len(set(names))
    for row in spec["rows"]:
        assert row["protocol"] in ("seeds", "pretrained"), row["name"]
        assert row["data"] and row["pairs"], row["name"]
        speech = [p["speech"] for p in row["pairs"]]
        # a pretrained part (Google's base, the peer) never sits in a seeds row
        if row["protocol"] == "seeds":
            assert not any(s in ("keywords", "efficientword-net") or "head" in s for s in speech), row["name"]
        else:
            assert any(s in ("keywords", "efficientword-net") or "head" in s for s in speech), row["name"]


def test_the_readme_states_each_speech_encoders_own_dtw_weight():
    """README's 'keywords, keywords-head and triplet 0, ensemble 0.1' is what fuse_dtw: null gives each shipped name."""
    from edge.encoders import MODELS_DIR, SHIPPED_SPEECH, EncoderSettings, OnnxEncoder, fuse_dtw_for

    weights = {n: fuse_dtw_for(EncoderSettings(speech=n), OnnxEncoder(MODELS_DIR / SHIPPED_SPEECH[n]).info)
               for n in ("keywords", "keywords-head", "triplet", "ensemble")}
    zero = " and ".join([", ".join(n for n, w in weights.items() if w == 0.0)][0].rsplit(", ", 1))
    others = ", ".join(f"{n} {w:g}" for n, w in weights.items() if w != 0.0)
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    assert f"real speakers ({zero} 0, {others})" in readme


def test_the_rendered_seeds_table_has_one_line_per_system_with_its_settings_in_order():
    table = _tool("seeds_table")

    def result(name, speakers, shots, acc, seeds=(0.5,)):
        return {"name": name, "speakers": speakers, "shots": shots, "accuracy": acc, "accuracy_ci95": 0.02,
                "accuracy_per_seed": list(seeds), "speech_accuracy": acc + 0.1, "speech_accuracy_ci95": 0.01,
                "speech_accuracy_per_seed": [s + 0.1 for s in seeds], "image_accuracy": 0.8, "image_ci95": 0.01}

    rows = [{"name": "a", "protocol": "seeds", "data": "synthetic"}, {"name": "b", "protocol": "pretrained", "data": "?"},
            {"name": "never run", "protocol": "seeds", "data": "x"}]
    results = [result("b", "different", 1, 0.7), result("a", "same", 5, 0.9, (0.88, 0.92)), result("a", "different", 1, 0.4),
               result("a", "different", 1, 0.5)]  # the later run of a setting wins
    lines = table.render(results, rows)
    assert len(lines) == 4 and lines[1].startswith("|---|")
    assert lines[2].startswith("| a | seeds | 50.0 ± 2.0 / 60.0 ± 1.0 |  |  | 90.0 ± 2.0 (88.0 / 92.0) / 100.0 ± 1.0 (98.0 / 102.0) | 80.0 | synthetic |")
    assert lines[3].startswith("| b | pretrained | 70.0 ± 2.0 / 80.0 ± 1.0 |")
