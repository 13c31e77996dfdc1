"""``showsay export ensemble``: several ONNX encoders merged into one, checked through the runtime's loaders."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edge.encoders import EncoderSettings, OnnxEncoder, load_image_encoder, load_speech_encoder
from edge.features import SpeechFeatureSettings
from edge.model_io import ModelError
from export.cli import main as export_main
from export.ensemble import export_ensemble
from tests.test_trt import FEATURES, write_image_model, write_speech_model


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture()
def speech_members(tmp_path: Path) -> list[Path]:
    return [write_speech_model(tmp_path / f"s{seed}.onnx", seed=seed) for seed in (0, 1, 2)]


def test_speech_ensemble_is_the_members_side_by_side(tmp_path: Path, speech_members: list[Path]) -> None:
    out = tmp_path / "ens.onnx"
    res = export_ensemble(speech_members, out)
    assert res.embedding_dim == 24 and res.kind == "speech" and res.max_abs_diff < 1e-5
    enc = load_speech_encoder(EncoderSettings(speech=str(out), fuse_dtw=0.0), FEATURES)  # the runtime's path, features checked
    rng = np.random.default_rng(3)
    utterances = [rng.standard_normal((t, 39)).astype(np.float32) for t in (5, 40, 17, 90)]
    got = enc.embed(utterances)
    members = [_unit(OnnxEncoder(p).embed(utterances)) for p in speech_members]
    np.testing.assert_allclose(got, np.concatenate(members, axis=1) / np.sqrt(3), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-6)
    # the cosine between two ensemble embeddings is the mean of the members' cosines
    np.testing.assert_allclose(got @ got.T, np.mean([m @ m.T for m in members], axis=0), atol=1e-6)
    info = enc.info
    assert info.model_id == res.model_id and info.model_id.startswith("speech-ensemble3-")
    assert [m["model_id"] for m in json.loads(info.extra["showsay.members"])] == ["speech-tiny-s0", "speech-tiny-s1", "speech-tiny-s2"]
    assert info.speech_features == FEATURES.as_dict()


def test_image_ensemble_loads_as_an_image_encoder(tmp_path: Path) -> None:
    members = [write_image_model(tmp_path / f"i{seed}.onnx", seed=seed) for seed in (0, 1)]
    out = tmp_path / "ens.onnx"
    assert export_main(["ensemble", "--model", str(members[0]), "--model", str(members[1]), "--out", str(out)]) == 0
    enc = load_image_encoder(EncoderSettings(image=str(out)))
    images = np.random.default_rng(0).random((5, 1, 16, 16)).astype(np.float32)
    want = np.concatenate([_unit(OnnxEncoder(p).embed(images)) for p in members], axis=1) / np.sqrt(2)
    np.testing.assert_allclose(enc.embed(images), want, atol=1e-6)
    assert enc.settings == OnnxEncoder(members[0]).settings


def test_members_that_do_not_fit_together_are_refused(tmp_path: Path, speech_members: list[Path], capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ens.onnx"
    image = write_image_model(tmp_path / "img.onnx")
    other_features = write_speech_model(tmp_path / "mfcc20.onnx", seed=5, features=replace(SpeechFeatureSettings(), n_mfcc=20))
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07 not a model")
    cases = [
        ([speech_members[0]], "at least two"),
        ([speech_members[0], speech_members[0]], "the same encoder is given twice"),
        ([speech_members[0], image], f"{image}: its kind is image"),
        ([speech_members[0], other_features], f"{other_features}: its showsay.speech_features differ"),
        ([speech_members[0], corrupt], f"{corrupt}: not a readable ONNX model"),
        ([speech_members[0], tmp_path / "missing.onnx"], "missing.onnx: no such model file"),
    ]
    for paths, message in cases:
        with pytest.raises(ModelError, match=message.replace(".", r"\.")):
            export_ensemble(paths, out)
    assert not out.exists()
    argv = ["ensemble", "--model", str(speech_members[0]), "--model", str(image), "--out", str(out)]
    assert export_main(argv) == 1
    assert f"showsay export ensemble: {image}: its kind is image" in capsys.readouterr().err
