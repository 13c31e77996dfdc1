"""ONNX export: runtime-compatible names and metadata, parity with PyTorch, refusal of mismatched features."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from edge.encoders import MODELS_DIR, EncoderSettings, OnnxEncoder, load_image_encoder, load_speech_encoder
from edge.features import SpeechFeatureSettings
from edge.model_io import ModelError
from export.cli import main as export_main
from export.onnx_export import PARITY_TOLERANCE, export_onnx, parity_inputs, torch_embed
from tests._train_data import write_tiny_config, write_tiny_data
from train.fit import load_checkpoint, load_train_settings, rebuild_model, train


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export")
    data = write_tiny_data(root)
    out = {}
    for kind in ("speech", "image"):
        cfg = write_tiny_config(root / f"{kind}.yaml", data, root / f"{kind}.pt", "triplet", max_epochs=1)
        train(kind, load_train_settings(cfg), progress=False)
        out[kind] = root / f"{kind}.pt"
    return out


def test_speech_export_matches_pytorch_on_several_lengths(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    res = export_onnx(checkpoints["speech"], tmp_path / "s.onnx")
    assert res.kind == "speech" and res.max_abs_diff < PARITY_TOLERANCE
    enc = OnnxEncoder(tmp_path / "s.onnx")  # the runtime's loader
    assert enc.info.kind == "speech" and enc.info.embedding_dim == 8 and enc.info.model_id == res.model_id
    assert enc.info.speech_features == SpeechFeatureSettings().as_dict()
    assert "showsay.training_data" in enc.info.extra and len(enc.info.weights_sha256) == 64
    model, _ = rebuild_model(load_checkpoint(checkpoints["speech"]))
    rng = np.random.default_rng(1)
    utterances = [rng.standard_normal((t, 39)).astype(np.float32) for t in (5, 80, 233)]  # one padded batch
    np.testing.assert_allclose(enc.embed(utterances), torch_embed(model, "speech", utterances), atol=PARITY_TOLERANCE)


def test_image_export_through_the_runtime_loader(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    assert export_main(["onnx", "--checkpoint", str(checkpoints["image"]), "--out", str(tmp_path / "i.onnx")]) == 0
    enc = load_image_encoder(EncoderSettings(image=str(tmp_path / "i.onnx")))
    assert enc.settings is not None and enc.settings.size_px == 28
    model, _ = rebuild_model(load_checkpoint(checkpoints["image"]))
    for batch in parity_inputs("image", {"channels": 1, "size_px": 28}):
        np.testing.assert_allclose(enc.embed(batch), torch_embed(model, "image", batch), atol=PARITY_TOLERANCE)


def test_runtime_refuses_a_speech_model_trained_on_other_features(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    export_onnx(checkpoints["speech"], tmp_path / "s.onnx")
    settings = EncoderSettings(speech=str(tmp_path / "s.onnx"))
    load_speech_encoder(settings, SpeechFeatureSettings())  # the features it was trained on: accepted
    with pytest.raises(ModelError, match=r"n_mfcc: config has 20, model has 13"):
        load_speech_encoder(settings, replace(SpeechFeatureSettings(), n_mfcc=20))
    export_onnx(checkpoints["image"], tmp_path / "i.onnx")
    with pytest.raises(ModelError, match="an image encoder was given as the speech encoder"):
        load_speech_encoder(EncoderSettings(speech=str(tmp_path / "i.onnx")), SpeechFeatureSettings())


def test_export_reports_a_bad_checkpoint(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.pt").write_bytes(b"\x00" * 10)
    assert export_main(["onnx", "--checkpoint", str(tmp_path / "bad.pt"), "--out", str(tmp_path / "x.onnx")]) == 1
    assert "bad.pt" in capsys.readouterr().err


@pytest.mark.parametrize("name,kind", [("speech.onnx", "speech"), ("image_digits.onnx", "image")])
def test_shipped_encoders_load_with_the_default_config(name: str, kind: str) -> None:
    path = MODELS_DIR / name
    if not path.is_file():
        pytest.fail(f"{path} is not shipped")
    if kind == "speech":
        enc = load_speech_encoder(EncoderSettings(speech="default", fuse_dtw=0.0), SpeechFeatureSettings())  # the model alone
        out = enc.embed([np.zeros((40, 39), np.float32), np.ones((90, 39), np.float32)])
    else:
        enc = load_image_encoder(EncoderSettings(image="digits"))
        out = enc.embed(np.zeros((2, 1, 28, 28), np.float32))
    assert out.shape[0] == 2 and np.all(np.isfinite(out))
    assert path.stat().st_size < 5_000_000


def test_shipped_speech_ensemble_contains_the_default_network() -> None:
    """'ensemble' loads by name, is unit length, and its first member is the shipped default network itself."""
    import json

    ens = load_speech_encoder(EncoderSettings(speech="ensemble", fuse_dtw=0.0), SpeechFeatureSettings())
    single = load_speech_encoder(EncoderSettings(speech="default", fuse_dtw=0.0), SpeechFeatureSettings())
    members = json.loads(ens.info.extra["showsay.members"])
    assert len(members) == 3 and members[0]["model_id"] == single.info.model_id
    assert members[0]["weights_sha256"] == single.info.weights_sha256
    rng = np.random.default_rng(0)
    utterances = [rng.standard_normal((t, 39)).astype(np.float32) for t in (12, 40, 95)]
    out, one = ens.embed(utterances), single.embed(utterances)
    assert out.shape == (3, 3 * one.shape[1])
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(out[:, : one.shape[1]] * np.sqrt(3), one, atol=1e-5)


def test_export_records_the_dtw_weight_chosen_on_held_out_speakers(tmp_path: Path, checkpoints: dict[str, Path]) -> None:
    from edge.encoders import fuse_dtw_for

    assert export_main(["onnx", "--checkpoint", str(checkpoints["speech"]), "--out", str(tmp_path / "s.onnx"), "--fuse-dtw", "0.25"]) == 0
    info = OnnxEncoder(tmp_path / "s.onnx").info
    assert info.recommended == {"fuse_dtw": 0.25} and info.protocol == "seeds"
    assert fuse_dtw_for(EncoderSettings(speech=str(tmp_path / "s.onnx")), info) == 0.25  # the config's null takes the model's choice
    assert fuse_dtw_for(EncoderSettings(speech=str(tmp_path / "s.onnx"), fuse_dtw=0.5), info) == 0.5  # a number in the config wins
    assert export_main(["onnx", "--checkpoint", str(checkpoints["speech"]), "--out", str(tmp_path / "t.onnx"), "--fuse-dtw", "2"]) == 1


def test_shipped_speech_model_records_how_it_was_chosen() -> None:
    """speech.onnx says it is ours (seeds), its training seed, its real-speaker validation and the DTW weight chosen there."""
    info = OnnxEncoder(MODELS_DIR / "speech.onnx").info
    assert info.protocol == "seeds" and info.recommended == {"fuse_dtw": 0.0}
    assert info.extra["showsay.train_seed"] == "2"
    assert info.extra["showsay.val_real_speakers"].startswith("0.7282 ")
    assert "speechocean762" in info.extra["showsay.training_data"]
