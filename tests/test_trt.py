"""TensorRT engines: manifests, profiles, calibration batches, the missing-library path, parity and latency.

Everything except the tests marked ``gpu`` runs on a CPU without tensorrt or pycuda. The ``gpu``
tests build, verify and run real engines and skip with a reason where tensorrt is not installed.
"""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import threading
from pathlib import Path
from unittest import mock

import cv2
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge.audio import write_wav
from edge.config import ConfigError, config_from_mapping, load_config
from edge.encoders import OnnxEncoder
from edge.fileio import write_atomic
from edge.features import SpeechFeatureSettings
from edge.images import ImageSettings
from edge.model_io import IMAGE_INPUT, SPEECH_INPUT, SPEECH_LENGTHS, ModelError
from edge.trt_backend import BackendUnavailable, GrowingBuffers, OwnerThread, TensorRTEncoder, engine_path_for, load_engine_encoder
from edge.trt_manifest import (
    DeviceIdentity,
    EngineManifest,
    TensorRTSettings,
    check_in_profile,
    check_manifest,
    compute_profile,
    manifest_path,
    read_manifest,
    sha256_file,
    timing_cache_path,
)
from export import cli as export_cli
from export.calibration import calibration_batches, make_entropy_calibrator, read_items
from export.engine import create_network, metadata_of, parser_errors
from export.metadata import attach_metadata
from export.parity import THRESHOLDS, compare_encoders, load_inputs, one_shot_accuracy
from tests.fake_tensorrt import FakeCuda, FakeTensorRT, pycuda_package

FEATURES = SpeechFeatureSettings()
IMAGE_SETTINGS = ImageSettings(size_px=16, color="gray")
ORIN = DeviceIdentity("Orin", "8.7", "10.3.0")


# ---------------------------------------------------------------- tiny real ONNX encoders


def _speech_graph(rng: np.random.Generator, dim: int = 39, hidden: int = 24, emb: int = 8) -> onnx.ModelProto:
    """features (B, T, D) + lengths (B,) -> masked mean over valid frames -> tanh(W1) -> W2 -> (B, emb)."""
    w1 = numpy_helper.from_array(rng.standard_normal((dim, hidden)).astype(np.float32) * 0.3, "w1")
    w2 = numpy_helper.from_array(rng.standard_normal((hidden, emb)).astype(np.float32), "w2")
    consts = [
        numpy_helper.from_array(np.array(1, np.int64), "one"),
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
        numpy_helper.from_array(np.array([1], np.int64), "axis1"),
        numpy_helper.from_array(np.array([0], np.int64), "axis0"),
        numpy_helper.from_array(np.array([2], np.int64), "axis2"),
    ]
    nodes = [
        helper.make_node("Shape", [SPEECH_INPUT], ["shape"]),
        helper.make_node("Gather", ["shape", "one"], ["frames"], axis=0),
        helper.make_node("Range", ["zero", "frames", "one"], ["steps"]),  # (T,)
        helper.make_node("Unsqueeze", ["steps", "axis0"], ["steps_row"]),  # (1, T)
        helper.make_node("Cast", [SPEECH_LENGTHS], ["len64"], to=TensorProto.INT64),
        helper.make_node("Unsqueeze", ["len64", "axis1"], ["len_col"]),  # (B, 1)
        helper.make_node("Less", ["steps_row", "len_col"], ["mask"]),  # (B, T)
        helper.make_node("Cast", ["mask"], ["maskf"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["maskf", "axis2"], ["mask3"]),  # (B, T, 1)
        helper.make_node("Mul", [SPEECH_INPUT, "mask3"], ["masked"]),
        helper.make_node("ReduceSum", ["masked", "axis1"], ["summed"], keepdims=0),  # (B, D)
        helper.make_node("Cast", ["len_col"], ["count"], to=TensorProto.FLOAT),
        helper.make_node("Div", ["summed", "count"], ["mean"]),
        helper.make_node("MatMul", ["mean", "w1"], ["h"]),
        helper.make_node("Tanh", ["h"], ["ht"]),
        helper.make_node("MatMul", ["ht", "w2"], ["embeddings"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_speech",
        [
            helper.make_tensor_value_info(SPEECH_INPUT, TensorProto.FLOAT, ["batch", "frames", dim]),
            helper.make_tensor_value_info(SPEECH_LENGTHS, TensorProto.INT32, ["batch"]),
        ],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", emb])],
        [w1, w2, *consts],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def write_speech_model(path: Path, seed: int = 0, features: SpeechFeatureSettings = FEATURES) -> Path:
    """A real speech encoder file with showsay metadata."""
    model = _speech_graph(np.random.default_rng(seed))
    attach_metadata(
        model, kind="speech", model_id=f"speech-tiny-s{seed}", embedding_dim=8,
        input_layout="features:(batch,frames,39) lengths:(batch,)", training_data="random weights (test)",
        speech_features=features.as_dict(),
    )
    onnx.save(model, str(path))
    return path


def write_image_model(path: Path, seed: int = 0) -> Path:
    """images (B, 1, 16, 16) -> flatten -> relu(W) -> (B, 8)."""
    rng = np.random.default_rng(seed)
    w = numpy_helper.from_array(rng.standard_normal((256, 8)).astype(np.float32) * 0.1, "w")
    nodes = [
        helper.make_node("Flatten", [IMAGE_INPUT], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "w"], ["h"]),
        helper.make_node("Relu", ["h"], ["embeddings"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny_image",
        [helper.make_tensor_value_info(IMAGE_INPUT, TensorProto.FLOAT, ["batch", 1, 16, 16])],
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["batch", 8])],
        [w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    attach_metadata(
        model, kind="image", model_id=f"image-tiny-s{seed}", embedding_dim=8,
        input_layout="images:(batch,1,16,16)", training_data="random weights (test)",
        image_settings=IMAGE_SETTINGS.as_dict(),
    )
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def speech_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_speech_model(tmp_path_factory.mktemp("models") / "speech.onnx")


@pytest.fixture(scope="module")
def image_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_image_model(tmp_path_factory.mktemp("models") / "image.onnx")


def tone_manifest(folder: Path, labels=("a", "b", "c"), speakers=("s1", "s2"), per: int = 2) -> Path:
    """Recordings of harmonic tones of several lengths (label = pitch, speaker = timbre) and their manifest CSV."""
    rows = ["path,label,speaker"]
    (folder / "wavs").mkdir(parents=True, exist_ok=True)
    for li, label in enumerate(labels):
        for si, spk in enumerate(speakers):
            for k in range(per):
                dur_s = 0.3 + 0.35 * ((li + si + k) % 4)  # 0.3 to 1.35 s: 29 to 134 frames
                t = np.arange(int(16000 * dur_s)) / 16000
                f0 = 200.0 * (li + 1)
                x = 0.3 * np.sin(2 * np.pi * f0 * t) + (0.1 + 0.1 * si) * np.sin(2 * np.pi * 2 * f0 * t)
                x += 0.01 * np.random.default_rng(li * 100 + si * 10 + k).standard_normal(t.size)
                name = f"wavs/{label}_{spk}_{k}.wav"
                write_wav(folder / name, x.astype(np.float32), 16000)
                rows.append(f"{name},{label},{spk}")
    csv = folder / "speech.csv"
    csv.write_text("\n".join(rows) + "\n")
    return csv


def image_manifest(folder: Path, n_per: int = 3, labels=("box", "bar", "dot")) -> Path:
    """Png images of three shapes (a box, a bar, a dot, named by ``labels``) and their manifest CSV."""
    (folder / "imgs").mkdir(parents=True, exist_ok=True)
    rows = ["path,label"]
    for label, shape in zip(labels, ("box", "bar", "dot")):
        for k in range(n_per):
            img = np.zeros((40 + 4 * k, 40), np.uint8)
            if shape == "box":
                img[8:30, 8:30] = 255
            elif shape == "bar":
                img[:, 18 + k : 22 + k] = 255
            else:
                cv2.circle(img, (20, 20), 6 + k, 255, -1)
            name = f"imgs/{label}{k}.png"
            cv2.imwrite(str(folder / name), img)
            rows.append(f"{name},{label}")
    csv = folder / "images.csv"
    csv.write_text("\n".join(rows) + "\n")
    return csv


def make_manifest(engine: Path, onnx_path: Path, **changes) -> EngineManifest:
    """A manifest as 'showsay export engine' writes it, for an engine file already on disk."""
    enc = OnnxEncoder(onnx_path)
    m = EngineManifest(
        kind=enc.info.kind, model_id=enc.info.model_id, precision="fp16", engine_file=engine.name,
        engine_sha256=sha256_file(engine), source_onnx=onnx_path.name, source_onnx_sha256=sha256_file(onnx_path),
        gpu_name=ORIN.gpu_name, compute_capability=ORIN.compute_capability, tensorrt_version=ORIN.tensorrt_version,
        profiles=[compute_profile("speech", TensorRTSettings(), feat_dim=39)], metadata=metadata_of(enc.info),
        speech_features=enc.info.speech_features,
    )
    return dataclasses.replace(m, **changes)


@pytest.fixture
def engine_dir(tmp_path: Path, speech_onnx: Path) -> tuple[Path, Path]:
    """A folder with M.onnx, an engine file M.engine and its manifest."""
    onnx_path = tmp_path / "speech.onnx"
    onnx_path.write_bytes(speech_onnx.read_bytes())
    engine = tmp_path / "speech.engine"
    engine.write_bytes(b"not a real engine: the manifest checks come first")
    write_atomic(manifest_path(engine), make_manifest(engine, onnx_path).to_json().encode())
    return engine, onnx_path


# ---------------------------------------------------------------- manifests


def test_manifest_round_trips_and_matches_this_device(engine_dir):
    engine, onnx_path = engine_dir
    m = read_manifest(engine)
    assert m == make_manifest(engine, onnx_path)
    assert m.speech_features == FEATURES.as_dict()
    check_manifest(m, engine, ORIN, FEATURES.as_dict())  # no exception: same GPU, TensorRT, features


@pytest.mark.parametrize(
    "device, expect",
    [
        (DeviceIdentity("Xavier", "7.2", "10.3.0"), "built for GPU 'Orin' (compute capability 8.7), this device has 'Xavier' (compute capability 7.2)"),
        (DeviceIdentity("Orin", "8.7", "8.6.2"), "built with TensorRT 10.3.0, this device has TensorRT 8.6.2"),
    ],
)
def test_manifest_refuses_other_gpu_or_tensorrt_with_rebuild_command(engine_dir, device, expect):
    engine, onnx_path = engine_dir
    with pytest.raises(ModelError) as err:
        check_manifest(read_manifest(engine), engine, device, FEATURES.as_dict())
    assert expect in str(err.value)
    assert f"showsay export engine --onnx {onnx_path} --out {engine} --fp16" in str(err.value)


def test_manifest_refuses_other_speech_features(engine_dir):
    engine, _ = engine_dir
    ours = dataclasses.replace(FEATURES, n_mfcc=20, high_freq_hz=8000.0).as_dict()
    with pytest.raises(ModelError) as err:
        check_manifest(read_manifest(engine), engine, ORIN, ours)
    msg = str(err.value)
    assert "n_mfcc: config has 20, model has 13" in msg and "high_freq_hz: config has 8000.0, model has 4000.0" in msg
    assert "showsay export engine --onnx" in msg


def test_manifest_refuses_engine_whose_onnx_changed(engine_dir, tmp_path):
    engine, onnx_path = engine_dir
    write_speech_model(onnx_path, seed=1)  # re-exported after the build
    with pytest.raises(ModelError, match="speech.onnx beside it changed since the engine was built"):
        check_manifest(read_manifest(engine), engine, ORIN, FEATURES.as_dict())


def test_missing_or_malformed_manifest_is_refused(tmp_path):
    engine = tmp_path / "m.engine"
    engine.write_bytes(b"x")
    with pytest.raises(ModelError, match="no manifest beside the engine .*showsay export engine --onnx MODEL.onnx"):
        read_manifest(engine)
    manifest_path(engine).write_text("{not json")
    with pytest.raises(ModelError, match="not a valid engine manifest"):
        read_manifest(engine)
    manifest_path(engine).write_text(json.dumps({"format": 1, "kind": "speech"}))
    with pytest.raises(ModelError, match="lacks .*engine_sha256"):
        read_manifest(engine)


def test_timing_cache_is_per_gpu_and_tensorrt_version():
    s = TensorRTSettings(timing_cache_dir="/tmp/cache")
    a = timing_cache_path(s, ORIN)
    assert a == Path("/tmp/cache/timing-trt10.3.0-orin-sm87.cache")
    assert timing_cache_path(s, DeviceIdentity("Orin", "8.7", "8.6.2")) != a


# ---------------------------------------------------------------- profiles and config


def test_profiles_come_from_the_config():
    cfg = config_from_mapping({"tensorrt": {"min_frames": 5, "opt_frames": 120, "max_frames": 300, "max_speech_batch": 4, "opt_image_batch": 2, "max_image_batch": 12}})
    speech = compute_profile("speech", cfg.tensorrt, feat_dim=39)
    assert speech[SPEECH_INPUT] == {"min": [1, 5, 39], "opt": [1, 120, 39], "max": [4, 300, 39]}
    assert speech[SPEECH_LENGTHS] == {"min": [1], "opt": [1], "max": [4]}
    image = compute_profile("image", cfg.tensorrt, image_settings=ImageSettings(size_px=64, color="rgb"))
    assert image == {IMAGE_INPUT: {"min": [1, 3, 64, 64], "opt": [2, 3, 64, 64], "max": [12, 3, 64, 64]}}


def test_shapes_outside_the_profile_are_refused_naming_the_setting():
    profile = compute_profile("speech", TensorRTSettings(max_frames=300, max_speech_batch=4), feat_dim=39)
    check_in_profile({SPEECH_INPUT: (2, 300, 39), SPEECH_LENGTHS: (2,)}, profile, "m.engine")
    with pytest.raises(ModelError, match=r"utterance of 301 frames, engine takes 1 to 300 \(tensorrt.min_frames/max_frames\)"):
        check_in_profile({SPEECH_INPUT: (1, 301, 39)}, profile, "m.engine")
    with pytest.raises(ModelError, match=r"batch of 5, engine takes 1 to 4"):
        check_in_profile({SPEECH_INPUT: (5, 100, 39)}, profile, "m.engine")
    with pytest.raises(ModelError, match="outside the engine's profile"):
        check_in_profile({SPEECH_INPUT: (1, 100, 13)}, profile, "m.engine")


def test_config_validates_the_backend_and_tensorrt_sections(tmp_path):
    cfg = config_from_mapping({"encoders": {"backend": "tensorrt"}, "tensorrt": {"max_image_batch": 32, "workspace_mb": 256}})
    assert cfg.encoders.backend == "tensorrt" and cfg.tensorrt.max_image_batch == 32
    bad = {
        "encoders: {backend: cuda}": "encoders.backend: must be one of 'onnxruntime', 'tensorrt', got 'cuda'",
        "tensorrt: {opt_frames: 600}": "tensorrt.opt_frames: must lie in [min_frames, max_frames] = [1, 500], got 600",
        "tensorrt: {opt_image_batch: 20}": "tensorrt.opt_image_batch: must be <= max_image_batch (16), got 20",
        "tensorrt: {max_frames: 0}": "tensorrt.max_frames: must be >= 1, got 0",
        "tensorrt: {workspace_gb: 1}": "tensorrt.workspace_gb: unknown key",
    }
    for text, expect in bad.items():
        path = tmp_path / "c.yaml"
        path.write_text(text + "\n")
        with pytest.raises(ConfigError) as err:
            load_config(path)
        assert str(path) in str(err.value) and expect in str(err.value), text


def test_onnx_name_maps_to_the_engine_beside_it():
    assert engine_path_for("/m/speech.onnx") == Path("/m/speech.engine")
    assert engine_path_for("/m/speech.engine") == Path("/m/speech.engine")


# ---------------------------------------------------------------- missing tensorrt / pycuda


NO_TRT = {"tensorrt": None, "pycuda": None, "pycuda.driver": None}


def test_runtime_loader_without_tensorrt_says_what_to_install(engine_dir):
    engine, _ = engine_dir
    with mock.patch.dict(sys.modules, NO_TRT):
        with pytest.raises(BackendUnavailable) as err:
            load_engine_encoder(engine)
    assert "JetPack" in str(err.value) and "pip install 'showsay[jetson]'" in str(err.value)


def test_check_command_with_tensorrt_backend_but_no_tensorrt_exits_1_with_message(engine_dir, tmp_path, capsys):
    from edge.cli import main

    engine, onnx_path = engine_dir
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"encoders: {{backend: tensorrt, speech: {onnx_path.name}}}\n")
    with mock.patch.dict(sys.modules, NO_TRT):
        assert main(["check", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err
    assert "TensorRT is not available" in err and "JetPack" in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [["engine", "--fp16"], ["verify", "--engine", "x.engine", "--speech", "s.csv"]])
def test_export_commands_without_tensorrt_print_one_message(speech_onnx, tmp_path, capsys, argv):
    argv = [argv[0], "--onnx", str(speech_onnx)] + argv[1:]
    if argv[0] == "engine":
        argv += ["--out", str(tmp_path / "m.engine")]
    with mock.patch.dict(sys.modules, NO_TRT):
        assert export_cli.main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"showsay export {argv[0]}: TensorRT is not available" in err
    assert "JetPack" in err and "showsay[jetson]" in err and "Traceback" not in err
    assert not (tmp_path / "m.engine").exists()


# ---------------------------------------------------------------- calibration batches


def test_calibration_batches_over_real_recordings(tmp_path, speech_onnx):
    csv = tone_manifest(tmp_path)  # 12 recordings of 29 to 134 frames
    items = read_items(csv, "speech")
    assert len(items) == 12 and items[0].path.is_file() and items[0].speaker == "s1"
    info = OnnxEncoder(speech_onnx).info
    batches = list(calibration_batches(items, info, batch_size=5, frames=80))
    assert len(batches) == 2  # 12 // 5: the incomplete batch is dropped
    for b in batches:
        assert b[SPEECH_INPUT].shape == (5, 80, 39) and b[SPEECH_INPUT].dtype == np.float32
        assert b[SPEECH_LENGTHS].dtype == np.int32
        for feats, n in zip(b[SPEECH_INPUT], b[SPEECH_LENGTHS]):
            assert 1 <= n <= 80
            assert not feats[n:].any()  # zero padding past the valid frames
            assert np.abs(feats[:n]).sum(axis=1).min() > 0
    assert sorted(b[SPEECH_LENGTHS].max() for b in batches)[-1] == 80  # long ones are cropped
    again = list(calibration_batches(items, info, batch_size=5, frames=80))
    assert all(np.array_equal(a[SPEECH_INPUT], b[SPEECH_INPUT]) for a, b in zip(batches, again))  # seeded order
    assert len(list(calibration_batches(items, info, batch_size=5, frames=80, max_batches=1))) == 1
    with pytest.raises(ModelError, match="at least 13 files"):
        next(calibration_batches(items, info, batch_size=13, frames=80))


def test_calibration_batches_over_fsdd_recordings(tmp_path, speech_onnx, shared_data):
    from edge.bench.datasets import fsdd_manifest

    csv = tmp_path / "fsdd.csv"
    fsdd_manifest(shared_data / "fsdd", csv)
    items = read_items(csv, "speech")[:40]
    info = OnnxEncoder(speech_onnx).info
    batches = list(calibration_batches(items, info, batch_size=8, frames=100))
    assert len(batches) == 5
    lengths = np.concatenate([b[SPEECH_LENGTHS] for b in batches])
    assert lengths.min() >= 10 and lengths.max() <= 100  # real 8 kHz digits of 0.2 to 1+ s, resampled to 16 kHz features


def test_calibration_batches_over_images_and_bad_files(tmp_path, image_onnx):
    csv = image_manifest(tmp_path)
    info = OnnxEncoder(image_onnx).info
    batches = list(calibration_batches(read_items(csv, "image"), info, batch_size=4, frames=0))
    assert [b[IMAGE_INPUT].shape for b in batches] == [(4, 1, 16, 16)] * 2
    (tmp_path / "imgs" / "box0.png").write_bytes(b"garbage")
    with pytest.raises(ModelError, match="box0.png: not a readable image"):
        list(calibration_batches(read_items(csv, "image"), info, batch_size=9, frames=0))
    (tmp_path / "bad.csv").write_text("file,word\nx.png,a\n")
    with pytest.raises(ModelError, match="bad.csv: header must have path,label"):
        read_items(tmp_path / "bad.csv", "image")


def test_entropy_calibrator_feeds_batches_in_the_order_tensorrt_names_inputs(tmp_path):
    """The TensorRT subclass over the batch iterator, with stand-ins for the tensorrt base class and pycuda."""
    memory: dict[int, np.ndarray] = {}

    class Alloc:
        def __init__(self, nbytes: int) -> None:
            self.ptr = 0x1000 * (len(memory) + 1)
            memory[self.ptr] = np.zeros(nbytes, np.uint8)

        def __int__(self) -> int:
            return self.ptr

    class FakeCalibratorBase:
        def __init__(self) -> None:
            pass

    trt = mock.Mock(IInt8EntropyCalibrator2=FakeCalibratorBase)
    cuda = mock.Mock(mem_alloc=Alloc, memcpy_htod=lambda dev, arr: memory[int(dev)].__setitem__(slice(None), arr.view(np.uint8).ravel()))
    batches = [{SPEECH_INPUT: np.full((2, 3, 39), i, np.float32), SPEECH_LENGTHS: np.array([3, 2], np.int64)} for i in (1, 2)]
    cache = tmp_path / "m.calib"
    cal = make_entropy_calibrator(trt, cuda, batches, {SPEECH_INPUT: np.float32, SPEECH_LENGTHS: np.int32}, 2, cache)
    assert cal.get_batch_size() == 2 and cal.read_calibration_cache() is None
    for i in (1, 2):
        lengths_ptr, feats_ptr = cal.get_batch([SPEECH_LENGTHS, SPEECH_INPUT])
        assert np.array_equal(memory[lengths_ptr].view(np.int32), [3, 2])  # cast to the network's dtype
        assert np.all(memory[feats_ptr].view(np.float32) == i)
    assert cal.get_batch([SPEECH_LENGTHS, SPEECH_INPUT]) is None and cal.batches_used == 2 and cal.error is None
    cal.write_calibration_cache(memoryview(b"TRT-calibration"))
    assert cal.read_calibration_cache() == b"TRT-calibration"


# ---------------------------------------------------------------- TensorRT API version handling


def test_parser_errors_name_the_node_on_tensorrt_8_and_10():
    class Err86:
        def __init__(self, node, desc):
            self._node, self._desc = node, desc

        def node(self):
            return self._node

        def desc(self):
            return self._desc

        def code(self):
            return "ErrorCode.UNSUPPORTED_NODE"

    class Err10(Err86):
        def node_name(self):
            return "/enc/Range"

        def node_operator(self):
            return "Range"

    parser = mock.Mock(num_errors=3)
    parser.get_error.side_effect = [Err86(4, "unsupported op"), Err10(7, "bad input"), Err86(-1, "graph fails")]
    assert parser_errors(parser) == [
        "node 4: unsupported op [ErrorCode.UNSUPPORTED_NODE]",
        "node 7 '/enc/Range' (Range): bad input [ErrorCode.UNSUPPORTED_NODE]",
        "graph: graph fails [ErrorCode.UNSUPPORTED_NODE]",
    ]


def test_explicit_batch_flag_only_on_tensorrt_8():
    builder = mock.Mock()
    trt8 = mock.Mock(__version__="8.6.2.3")
    trt8.NetworkDefinitionCreationFlag.EXPLICIT_BATCH = 0
    create_network(trt8, builder)
    builder.create_network.assert_called_with(1)
    create_network(mock.Mock(__version__="10.3.0.30"), builder)
    builder.create_network.assert_called_with(0)


# ---------------------------------------------------------------- runtime machinery without a GPU


def test_buffers_are_reused_and_grown_only_for_larger_shapes():
    freed = []
    bufs = GrowingBuffers(lambda n, dt: np.zeros(n, dt), lambda nbytes: bytearray(nbytes), freed.append)
    h1, d1 = bufs.get("features", (1, 100, 39), np.float32)
    h2, d2 = bufs.get("features", (1, 50, 39), np.float32)  # smaller: same memory
    assert h2.shape == (1, 50, 39) and d2 is d1 and np.shares_memory(h1, h2) and bufs.allocations == 1
    h3, d3 = bufs.get("features", (2, 100, 39), np.float32)  # larger: grown, old device buffer freed
    assert d3 is not d1 and bufs.allocations == 2 and freed == [d1] and bufs.capacity("features") == 7800
    bufs.get("lengths", (2,), np.int32)
    bufs.get("lengths", (2,), np.int64)  # another dtype (TensorRT 10 int64 engines) reallocates
    assert bufs.allocations == 4
    bufs.clear()
    assert len(freed) == 4 and bufs.capacity("features") == 0  # grown features, int32 lengths, then both at clear()


def test_owner_thread_runs_every_call_on_the_thread_that_opened_the_resource():
    seen = []

    def open_resource():
        return {"owner": threading.get_ident()}

    owner = OwnerThread("test-owner", open_resource, lambda r: seen.append(("close", threading.get_ident() == r["owner"])))
    owner.start(timeout_s=5)
    results = []

    def caller():
        results.append(owner.call(lambda r: r["owner"] == threading.get_ident(), timeout_s=5))

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=5)
    assert results == [True] * 8
    with pytest.raises(ZeroDivisionError):
        owner.call(lambda r: 1 / 0, timeout_s=5)  # the caller gets the error, the owner keeps running
    assert owner.call(lambda r: "alive", timeout_s=5) == "alive"
    owner.close(timeout_s=5)
    assert seen == [("close", True)]
    with pytest.raises(ModelError, match="closed"):
        owner.call(lambda r: None, timeout_s=1)


def test_owner_thread_start_reraises_what_opening_raised():
    def fail():
        raise ModelError("m.engine: cannot run this engine here")

    owner = OwnerThread("test-owner", fail, lambda r: None)
    with pytest.raises(ModelError, match="cannot run this engine here"):
        owner.start(timeout_s=5)


class OrtRunner:
    """Stands in for the GPU: the EngineRunner interface (``run(feeds)``) over ONNX Runtime, opened on the owner thread."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self.thread = threading.get_ident()

    def run(self, feeds):
        assert threading.get_ident() == self.thread
        return self.session.run(["embeddings"], dict(feeds))[0]


def _encoder_over(onnx_path: Path, engine: Path, settings: TensorRTSettings) -> TensorRTEncoder:
    manifest = make_manifest(engine, onnx_path)
    info = OnnxEncoder(onnx_path).info
    profile = compute_profile(info.kind, settings, feat_dim=39, image_settings=info.image_settings)
    owner = OwnerThread("test-engine", lambda: OrtRunner(onnx_path), lambda r: None)
    owner.start(timeout_s=10)
    return TensorRTEncoder(engine, manifest, owner, profile)


def test_engine_encoder_pads_checks_profile_and_matches_onnxruntime(engine_dir, speech_onnx):
    engine, onnx_path = engine_dir
    rng = np.random.default_rng(3)
    utterances = [rng.standard_normal((t, 39)).astype(np.float32) for t in (7, 120, 45)]
    with _encoder_over(onnx_path, engine, TensorRTSettings(max_frames=200, max_speech_batch=4)) as enc:
        assert enc.encoder_id == "speech-tiny-s0" and enc.precision == "fp16" and enc.info.kind == "speech"
        got = enc.embed(utterances)
        want = OnnxEncoder(speech_onnx).embed(utterances)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(enc.embed(utterances[:1]), want[:1], rtol=1e-5, atol=1e-6)  # padding does not leak
        assert enc.embed([]).shape == (0, 8)
        with pytest.raises(ModelError, match="utterance of 201 frames.*rebuild the engine"):
            enc.embed([rng.standard_normal((201, 39)).astype(np.float32)])
        five = utterances + utterances[:2]  # more than max_speech_batch: run in two calls, same results
        np.testing.assert_allclose(enc.embed(five), OnnxEncoder(speech_onnx).embed(five), rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- verify and latency logic on CPU


def test_one_shot_accuracy_counts_nearest_support_and_skips_same_speaker_queries():
    centres = {"a": [1.0, 0, 0], "b": [0, 1.0, 0], "c": [0, 0, 1.0]}
    labels = [lab for lab in "abc" for _ in range(4)]
    speakers = ["s1", "s2", "s1", "s2"] * 3
    rng = np.random.default_rng(0)
    emb = np.array([centres[lab] for lab in labels]) + 0.05 * rng.standard_normal((12, 3))
    assert one_shot_accuracy(emb, labels, speakers, episodes=20, seed=0) == 1.0
    emb_bad = emb.copy()
    emb_bad[labels.index("a") + 1] = centres["b"]  # one 'a' by s2 looks like 'b'
    acc = one_shot_accuracy(emb_bad, labels, speakers, episodes=50, seed=0)
    assert 0.5 < acc < 1.0
    with pytest.raises(ModelError, match="no one-shot queries"):  # one speaker: every query is excluded
        one_shot_accuracy(emb, labels, ["s1"] * 12, episodes=5, seed=0)
    assert one_shot_accuracy(emb, labels, [None] * 12, episodes=5, seed=0) == 1.0  # no speakers: no exclusion
    with pytest.raises(ModelError, match="at least 2 labels"):
        one_shot_accuracy(emb[:4], labels[:4], speakers[:4], episodes=5, seed=0)


def test_compare_encoders_passes_the_same_model_and_fails_another(tmp_path, speech_onnx):
    csv = tone_manifest(tmp_path, per=2)
    ref = OnnxEncoder(speech_onnx)
    inputs, labels, speakers = load_inputs(read_items(csv, "speech"), ref.info, max_items=100, seed=0)
    assert len({f.shape[0] for f in inputs}) >= 3  # several lengths
    same = compare_encoders(ref, OnnxEncoder(speech_onnx), inputs, labels, speakers, "speech", THRESHOLDS["fp16"], 4, 20, 0, max_frames=120)
    assert same.passed and same.min_cosine > 0.99999 and same.accuracy_reference == same.accuracy_candidate
    assert same.skipped == sum(f.shape[0] > 120 for f in inputs) > 0 and same.n == len(inputs) - same.skipped
    assert sum(n for _, _, n, _ in same.by_length) == same.n
    other = OnnxEncoder(write_speech_model(tmp_path / "other.onnx", seed=5))
    diff = compare_encoders(ref, other, inputs, labels, speakers, "speech", THRESHOLDS["int8"], 4, 20, 0)
    assert not diff.passed and diff.below > 0 and diff.min_cosine < 0.99


def test_latency_command_times_onnxruntime_and_reports_missing_tensorrt(speech_onnx, image_onnx, capsys):
    argv = ["latency", "--onnx", str(speech_onnx), "--onnx", str(image_onnx), "--repeats", "3", "--warmup", "1"]
    with mock.patch.dict(sys.modules, NO_TRT):
        assert export_cli.main(argv) == 0
    out = capsys.readouterr().out
    rows = [line.split("|")[1:-1] for line in out.splitlines() if "| onnxruntime-cpu (1 thread) | fp32 |" in line]
    assert [(r[0].strip(), r[3].strip()) for r in rows] == [
        ("speech-tiny-s0", "1 x 50 frames"), ("speech-tiny-s0", "1 x 100 frames"), ("speech-tiny-s0", "1 x 300 frames"),
        ("image-tiny-s0", "1 image"), ("image-tiny-s0", "4 images"), ("image-tiny-s0", "16 images"),
    ]
    assert all(0 < float(r[4]) <= float(r[5]) for r in rows)  # median <= p90, in ms
    assert "tensorrt: not measured here: TensorRT is not available" in out


def test_latency_command_names_a_missing_onnx(tmp_path, capsys):
    assert export_cli.main(["latency", "--onnx", str(tmp_path / "nope.onnx")]) == 1
    assert "nope.onnx: no such model file" in capsys.readouterr().err


# ---------------------------------------------------------------- on a GPU with TensorRT


def _require_tensorrt():
    pytest.importorskip("tensorrt", reason="needs TensorRT (JetPack) and an NVIDIA GPU")
    pytest.importorskip("pycuda.driver", reason="needs pycuda (pip install 'showsay[jetson]')")


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_gpu_build_load_and_match_onnxruntime(tmp_path, speech_onnx, capsys, precision):
    _require_tensorrt()
    onnx_path = tmp_path / "speech.onnx"
    onnx_path.write_bytes(speech_onnx.read_bytes())
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"tensorrt: {{timing_cache_dir: {tmp_path / 'cache'}, max_frames: 300}}\n")
    engine = tmp_path / "speech.engine"
    argv = ["engine", "--onnx", str(onnx_path), "--out", str(engine), "--config", str(cfg)] + (["--fp16"] if precision == "fp16" else [])
    assert export_cli.main(argv) == 0, capsys.readouterr().err
    manifest = read_manifest(engine)
    assert manifest.precision == precision and manifest.engine_sha256 == sha256_file(engine)
    assert list((tmp_path / "cache").glob("timing-*.cache"))
    enc = load_engine_encoder(onnx_path, FEATURES.as_dict())  # the .onnx name maps to the engine beside it
    try:
        rng = np.random.default_rng(0)
        ref = OnnxEncoder(onnx_path)
        for lengths in ([1], [50], [300], [10, 200, 77]):
            feats = [rng.standard_normal((t, 39)).astype(np.float32) for t in lengths]
            cos = np.sum(ref.embed(feats) * enc.embed(feats), 1) / np.linalg.norm(ref.embed(feats), axis=1) / np.linalg.norm(enc.embed(feats), axis=1)
            assert cos.min() >= THRESHOLDS[precision], (lengths, cos)
    finally:
        enc.close()
    csv = tone_manifest(tmp_path / "data")
    assert export_cli.main(["verify", "--onnx", str(onnx_path), "--engine", str(engine), "--speech", str(csv), "--episodes", "10"]) == 0
    assert "PASS" in capsys.readouterr().out


@pytest.mark.gpu
def test_gpu_int8_with_calibration_on_recordings(tmp_path, speech_onnx, capsys):
    _require_tensorrt()
    onnx_path = tmp_path / "speech.onnx"
    onnx_path.write_bytes(speech_onnx.read_bytes())
    csv = tone_manifest(tmp_path / "data", per=4)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"tensorrt: {{timing_cache_dir: {tmp_path / 'cache'}, calibration_batch: 4}}\n")
    engine = tmp_path / "speech.engine"
    assert export_cli.main(["engine", "--onnx", str(onnx_path), "--out", str(engine), "--int8", "--calibration", str(csv), "--config", str(cfg)]) == 0
    assert read_manifest(engine).precision == "int8" and list(tmp_path.glob("speech.int8-*.calib"))
    assert export_cli.main(["latency", "--onnx", str(onnx_path), "--engine", str(engine), "--repeats", "5"]) == 0
    assert "| int8 |" in capsys.readouterr().out


# ---------------------------------------------------------------- build and run paths over stand-ins for tensorrt/pycuda


@pytest.fixture
def fake_gpu():
    """tensorrt and pycuda.driver replaced by the stand-ins in tests/fake_tensorrt.py (an 'Orin', TensorRT 10.3.0)."""

    def install(version: str = "10.3.0", gpu: str = "Orin"):
        cuda = FakeCuda(gpu_name=gpu)
        trt = FakeTensorRT(cuda, version)
        patcher = mock.patch.dict(sys.modules, {"tensorrt": trt, "pycuda": pycuda_package(cuda), "pycuda.driver": cuda})
        patcher.start()
        patches.append(patcher)
        return trt

    patches: list = []
    yield install
    for p in reversed(patches):
        p.stop()


def _build(tmp_path: Path, src: Path, *flags: str, config: str = "") -> tuple[int, Path, Path]:
    onnx_path = tmp_path / src.name
    if not onnx_path.exists():
        onnx_path.write_bytes(src.read_bytes())
    cfg = tmp_path / "build.yaml"
    cfg.write_text(f"tensorrt: {{timing_cache_dir: {tmp_path / 'cache'}, max_frames: 300{config}}}\n")
    engine = onnx_path.with_suffix(".engine")
    rc = export_cli.main(["engine", "--onnx", str(onnx_path), "--out", str(engine), "--config", str(cfg), *flags])
    return rc, onnx_path, engine


@pytest.mark.parametrize("version", ["8.6.1", "10.3.0"])
def test_build_writes_engine_and_manifest_and_reuses_the_timing_cache(tmp_path, speech_onnx, fake_gpu, capsys, version):
    trt = fake_gpu(version)
    rc, onnx_path, engine = _build(tmp_path, speech_onnx, "--fp16", "--workspace-mb", "64")
    assert rc == 0, capsys.readouterr().err
    assert f"{engine}: fp16 engine of speech-tiny-s0 for Orin (sm 8.7), TensorRT {version}" in capsys.readouterr().out
    m = read_manifest(engine)
    assert (m.precision, m.gpu_name, m.compute_capability, m.tensorrt_version) == ("fp16", "Orin", "8.7", version)
    assert m.engine_sha256 == sha256_file(engine) and m.source_onnx == "speech.onnx" and m.source_onnx_sha256 == sha256_file(onnx_path)
    assert m.speech_features == FEATURES.as_dict() and m.metadata["showsay.model_id"] == "speech-tiny-s0"
    assert m.profiles == [compute_profile("speech", TensorRTSettings(max_frames=300), feat_dim=39)]
    assert trt.built[0]["flags"] == ["FP16"] and trt.built[0]["workspace"] == 64 << 20
    assert trt.built[0]["profile"][SPEECH_INPUT] == ([1, 1, 39], [1, 100, 39], [16, 300, 39])
    (cache,) = (tmp_path / "cache").glob("timing-*.cache")
    assert cache.read_bytes() == b"+build"
    assert _build(tmp_path, speech_onnx, "--fp16")[0] == 0
    assert cache.read_bytes() == b"+build+build"  # the second build started from the first one's cache
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["build.yaml", "speech.engine", "speech.engine.json", "speech.onnx"]


def test_build_reports_every_parser_error_with_its_node(tmp_path, fake_gpu, capsys):
    trt = fake_gpu()
    trt.OnnxParser.SUPPORTED = trt.OnnxParser.SUPPORTED - {"Range", "Tanh"}  # as if this TensorRT lacked them
    model = _speech_graph(np.random.default_rng(0))
    model.graph.node[2].name = "/pool/steps"
    model.graph.node[14].name = "/proj/act"
    src = tmp_path / "src" / "bad.onnx"
    src.parent.mkdir()
    onnx.save(attach_metadata(model, kind="speech", model_id="bad", embedding_dim=8, input_layout="", training_data="", speech_features=FEATURES.as_dict()), str(src))
    rc, _, engine = _build(tmp_path, src)
    err = capsys.readouterr().err
    assert rc == 1 and "TensorRT's ONNX parser failed" in err
    assert "node 2 '/pool/steps' (Range): no importer for op Range" in err
    assert "node 14 '/proj/act' (Tanh): no importer for op Tanh" in err
    assert not engine.exists() and not manifest_path(engine).exists()


def test_int8_build_calibrates_on_the_manifest_then_reuses_the_cache(tmp_path, speech_onnx, fake_gpu, capsys):
    trt = fake_gpu()
    csv = tone_manifest(tmp_path / "data", per=2)  # 12 recordings
    rc, _, engine = _build(tmp_path, speech_onnx, "--int8", "--calibration", str(csv), config=", calibration_batch: 4")
    assert rc == 0, capsys.readouterr().err
    assert trt.built[0]["flags"] == ["FP16", "INT8"] and trt.built[0]["calibration_batches"] == 3
    assert read_manifest(engine).precision == "int8"
    (calib,) = tmp_path.glob("speech.int8-*.calib")
    assert calib.read_bytes() == b"fake calibration table"
    assert _build(tmp_path, speech_onnx, "--int8", "--calibration", str(csv), config=", calibration_batch: 4")[0] == 0
    assert trt.built[1]["calibration_batches"] == 0  # the cache answered
    assert export_cli.main(["engine", "--onnx", str(speech_onnx), "--out", str(engine), "--int8"]) == 1
    assert "--int8 needs --calibration" in capsys.readouterr().err


def test_runtime_runs_the_engine_on_its_owner_thread_and_matches_onnxruntime(tmp_path, speech_onnx, fake_gpu, capsys):
    fake_gpu()
    rc, onnx_path, engine = _build(tmp_path, speech_onnx, "--fp16")
    assert rc == 0
    enc = load_engine_encoder(onnx_path, FEATURES.as_dict())  # 'speech.onnx' means the engine beside it
    try:
        assert enc.path == engine and enc.encoder_id == "speech-tiny-s0" and enc.precision == "fp16"
        ref = OnnxEncoder(onnx_path)
        rng = np.random.default_rng(1)
        allocations = []
        for lengths in ([50], [30], [120, 7], [300], [20, 20, 20]):
            feats = [rng.standard_normal((t, 39)).astype(np.float32) for t in lengths]
            np.testing.assert_allclose(enc.embed(feats), ref.embed(feats), rtol=1e-5, atol=1e-6)
            allocations.append(enc._worker.call(lambda r: r._buffers.allocations))
        # features, lengths, embeddings allocated once; grown for (2, 120), (1, 300) features and the batch of 3
        assert allocations == [3, 3, 6, 7, 9]
        with pytest.raises(ModelError, match="utterance of 301 frames"):
            enc.embed([np.zeros((301, 39), np.float32)])
    finally:
        enc.close()


def test_runtime_refuses_an_engine_from_another_gpu_or_a_corrupt_file(tmp_path, speech_onnx, fake_gpu):
    fake_gpu()
    with pytest.raises(ModelError, match=r"speech.engine: no such TensorRT engine; build it on this device with: showsay export engine --onnx .*speech.onnx --out .*speech.engine"):
        load_engine_encoder(tmp_path / "speech.onnx")
    rc, onnx_path, engine = _build(tmp_path, speech_onnx)
    assert rc == 0
    fake_gpu(gpu="Xavier")  # the same engine taken to another board
    with pytest.raises(ModelError, match=r"cannot run this engine here: it was built for GPU 'Orin'.*showsay export engine --onnx .*speech.onnx --out .*speech.engine"):
        load_engine_encoder(engine, FEATURES.as_dict())
    fake_gpu(version="10.4.0")
    with pytest.raises(ModelError, match="built with TensorRT 10.3.0, this device has TensorRT 10.4.0"):
        load_engine_encoder(engine)
    fake_gpu()
    engine.write_bytes(engine.read_bytes()[:-10])
    with pytest.raises(ModelError, match="does not match its manifest"):
        load_engine_encoder(engine)


def test_check_verify_and_latency_commands_run_engines(tmp_path, speech_onnx, image_onnx, fake_gpu, capsys):
    from edge.cli import main

    fake_gpu()
    assert _build(tmp_path, speech_onnx, "--fp16")[0] == 0
    assert _build(tmp_path, image_onnx, "--fp16")[0] == 0
    capsys.readouterr()
    cfg = tmp_path / "daemon.yaml"
    cfg.write_text("encoders: {backend: tensorrt, speech: speech.onnx, image: image.engine}\n")
    assert main(["check", "--config", str(cfg)]) == 0
    # a model of the user's own records no chosen DTW weight: fuse_dtw null means the embedding alone
    assert "ok (speech encoder speech-tiny-s0, image encoder image-tiny-s0)" in capsys.readouterr().out
    cfg.write_text("encoders: {backend: tensorrt, speech: speech.onnx, image: image.engine, fuse_dtw: 0.5}\n")
    assert main(["check", "--config", str(cfg)]) == 0
    assert "ok (speech encoder speech-tiny-s0+dtw, image encoder image-tiny-s0)" in capsys.readouterr().out
    cfg.write_text("encoders: {backend: tensorrt, speech: speech.onnx}\nspeech_features: {n_mfcc: 20}\n")
    assert main(["check", "--config", str(cfg)]) == 1
    assert "n_mfcc: config has 20, model has 13" in capsys.readouterr().err

    csv = tone_manifest(tmp_path / "data")
    argv = ["verify", "--onnx", str(tmp_path / "speech.onnx"), "--engine", str(tmp_path / "speech.engine"), "--speech", str(csv), "--episodes", "10"]
    assert export_cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "cosine tensorrt-fp16 vs onnxruntime-cpu: min 1.00000" in out and "-> PASS" in out and "one-shot" in out
    img_csv = image_manifest(tmp_path / "imgdata")
    argv = ["verify", "--onnx", str(tmp_path / "image.onnx"), "--engine", str(tmp_path / "image.engine"), "--images", str(img_csv), "--episodes", "10"]
    assert export_cli.main(argv) == 0 and "-> PASS" in capsys.readouterr().out
    argv = ["verify", "--onnx", str(speech_onnx), "--engine", str(tmp_path / "image.engine"), "--speech", str(csv)]
    assert export_cli.main(argv) == 1 and "built from another ONNX file" in capsys.readouterr().err

    # both manifests (same labels): the one-shot benchmark of edge.bench, ONNX Runtime and engine side by side
    paired = image_manifest(tmp_path / "paired", labels=("a", "b", "c"))
    argv = ["verify", "--onnx", str(tmp_path / "speech.onnx"), "--engine", str(tmp_path / "speech.engine"), "--speech", str(csv), "--images", str(paired), "--episodes", "5"]
    assert export_cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "benchmark: 3-way 1-shot, 5 episodes x 10 queries, speakers different, speech speech-tiny-s0, images pixels-" in out
    rows = [r.split("|")[2:5] for r in out.splitlines() if r.startswith(("| onnxruntime-cpu |", "| tensorrt-fp16 |"))]
    assert len(rows) == 2 and rows[0] == rows[1]  # the stand-in engine computes exactly what ONNX Runtime does

    argv = ["latency", "--onnx", str(tmp_path / "speech.onnx"), "--onnx", str(tmp_path / "image.onnx"), "--repeats", "2", "--warmup", "1"]
    assert export_cli.main(argv) == 0  # no --engine: the engines beside the ONNX files
    rows = [r.split("|")[1:-1] for r in capsys.readouterr().out.splitlines() if "| tensorrt 10.3.0 (Orin) | fp16 |" in r]
    assert [(r[0].strip(), r[3].strip()) for r in rows] == [
        ("speech-tiny-s0", "1 x 50 frames"), ("speech-tiny-s0", "1 x 100 frames"), ("speech-tiny-s0", "1 x 300 frames"),
        ("image-tiny-s0", "1 image"), ("image-tiny-s0", "4 images"), ("image-tiny-s0", "16 images"),
    ]
    argv = ["latency", "--onnx", str(tmp_path / "speech.onnx"), "--engine", str(tmp_path / "image.engine")]
    assert export_cli.main(argv) == 1
    assert "image.engine: not built from any --onnx given" in capsys.readouterr().err


def test_export_engine_needs_neither_torch_nor_onnx():
    # A Jetson has TensorRT but no PyTorch or onnx package: the export group must still load.
    code = (
        "import sys\n"
        "sys.modules.update({'torch': None, 'onnx': None})\n"
        "from export.cli import main\n"
        "try:\n"
        "    main(['engine', '--help'])\n"
        "except SystemExit as e:\n"
        "    print('help exit', e.code)\n"
        "print('onnx command', main(['onnx', '--checkpoint', 'c.pt', '--out', 'm.onnx']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert "help exit 0" in proc.stdout, proc.stderr
    assert "onnx command 1" in proc.stdout
    assert "needs the train extra" in proc.stderr
    assert "Traceback" not in proc.stderr
