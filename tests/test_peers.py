"""The efficientword-net peer adapter, on a stand-in ONNX model of the same input and output."""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge.bench.peers import EWN_WINDOW_SAMPLES, EfficientWordNetSpeech, centre_window
from edge.model_io import ModelError


def test_centre_window_trims_zero_padding_then_centres():
    word = np.ones(1000, np.float32)
    padded = np.concatenate([np.zeros(500, np.float32), word, np.zeros(3000, np.float32)])
    w = centre_window(padded)
    assert w.shape == (EWN_WINDOW_SAMPLES,)
    nz = np.flatnonzero(w)
    assert nz[0] == (EWN_WINDOW_SAMPLES - 1000) // 2 and nz.size == 1000
    long = np.arange(1, 30001, dtype=np.float32)
    assert centre_window(long)[0] == 3001  # cropped symmetrically


def stand_in_model(path):
    """(1, 1, 149, 64) log-mel window -> mean over time -> (1, 2048) through a fixed projection."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(64, 2048)).astype(np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("ReduceMean", ["input"], ["m"], axes=[2], keepdims=0),
            helper.make_node("Flatten", ["m"], ["f"]),
            helper.make_node("MatMul", ["f", "w"], ["feature_output"]),
        ],
        "stand_in",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 1, 149, 64])],
        [helper.make_tensor_value_info("feature_output", TensorProto.FLOAT, [1, 2048])],
        [w],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def test_embed_audio_feeds_the_model_one_window_each(tmp_path):
    stand_in_model(tmp_path / "m.onnx")
    enc = EfficientWordNetSpeech(tmp_path / "m.onnx")
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=8000).astype(np.float32), rng.normal(size=30000).astype(np.float32)
    emb = enc.embed_audio([a, b, a])
    assert emb.shape == (3, 2048)
    assert np.allclose(emb[0], emb[2]) and not np.allclose(emb[0], emb[1])
    assert enc.embedded == 3 and enc.embed_s > 0
    with pytest.raises(TypeError, match="raw audio"):
        enc.embed([np.zeros((10, 39))])


def test_missing_or_corrupt_peer_model(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"nope")
    with pytest.raises(ModelError, match="bad.onnx: not a loadable ONNX model"):
        EfficientWordNetSpeech(bad)
