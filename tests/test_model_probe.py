"""Models that load but would fail on first use are refused by `check` and at start-up (issue 19, item 8)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edge.cli import main
from edge.config import config_from_mapping
from edge.encoders import EncoderSettings, load_image_encoder, load_speech_encoder
from edge.features import SpeechFeatureSettings
from edge.model_io import ModelError, ModelInfo
from edge.model_probe import input_kind, onnx_weights_sha256, probe_speech_encoder
from export.metadata import weights_sha256

MODELS = Path(__file__).resolve().parents[1] / "edge" / "models"
FEATURES = SpeechFeatureSettings()


def doctored(tmp_path: Path, src: str, change: Callable[[onnx.ModelProto], None], refresh_hash: bool = True) -> Path:
    """A copy of a shipped model with ``change`` applied (and its weights hash brought up to date unless told not to)."""
    model = onnx.load(str(MODELS / src))
    change(model)
    if refresh_hash:
        set_meta(model, "showsay.weights_sha256", weights_sha256(model))
    out = tmp_path / f"doctored-{src}"
    onnx.save(model, str(out))
    return out


def set_meta(model: onnx.ModelProto, key: str, value: str) -> None:
    for prop in model.metadata_props:
        if prop.key == key:
            prop.value = value


def meta(model: onnx.ModelProto, key: str) -> str:
    return next(p.value for p in model.metadata_props if p.key == key)


def rename_output(model: onnx.ModelProto) -> None:
    for node in model.graph.node:
        node.output[:] = ["emb" if o == "embeddings" else o for o in node.output]
    model.graph.output[0].name = "emb"


def poison(model: onnx.ModelProto) -> None:
    init = model.graph.initializer[0]
    arr = numpy_helper.to_array(init).copy()
    arr[...] = np.nan
    init.CopyFrom(numpy_helper.from_array(arr, init.name))


def nudge(model: onnx.ModelProto) -> None:
    init = model.graph.initializer[0]
    arr = numpy_helper.to_array(init)
    init.CopyFrom(numpy_helper.from_array((arr * 1.01).astype(arr.dtype), init.name))


def bigger_size(model: onnx.ModelProto) -> None:
    set_meta(model, "showsay.image_settings", json.dumps({**json.loads(meta(model, "showsay.image_settings")), "size_px": 32}))


def wrong_dim(model: onnx.ModelProto) -> None:
    set_meta(model, "showsay.embedding_dim", str(int(meta(model, "showsay.embedding_dim")) + 1))


def zero_output(model: onnx.ModelProto) -> None:
    """The embeddings multiplied by 0 (a dead model whose outputs are finite)."""
    for node in model.graph.node:
        node.output[:] = ["before_zero" if o == "embeddings" else o for o in node.output]
    model.graph.initializer.append(numpy_helper.from_array(np.zeros((), np.float32), "zero"))
    model.graph.node.append(helper.make_node("Mul", ["before_zero", "zero"], ["embeddings"]))


DEFECTS = {
    "output misnamed": (rename_output, True, "the graph's outputs are ['emb'], the runtime reads 'embeddings'"),
    "NaN outputs": (poison, True, "gives non-finite embeddings"),
    "embedding size": (wrong_dim, True, "gives 128-dimensional embeddings"),
    "weights changed": (nudge, False, "its weights changed after export (showsay.weights_sha256 records"),
    "all-zero outputs": (zero_output, True, "gives all-zero embeddings"),
}


@pytest.mark.parametrize("defect", list(DEFECTS))
@pytest.mark.parametrize("kind", ["speech", "image"])
def test_a_defective_model_is_refused_naming_the_file(tmp_path, kind, defect):
    change, refresh, expected = DEFECTS[defect]
    path = doctored(tmp_path, "speech.onnx" if kind == "speech" else "image_digits.onnx", change, refresh)
    with pytest.raises(ModelError) as err:
        if kind == "speech":
            load_speech_encoder(EncoderSettings(speech=str(path)), FEATURES)
        else:
            load_image_encoder(EncoderSettings(image=str(path)))
    assert str(err.value).startswith(f"{path}: ") and expected in str(err.value), str(err.value)


def test_image_settings_that_do_not_fit_the_graph_are_refused(tmp_path):
    path = doctored(tmp_path, "image_digits.onnx", bigger_size)
    with pytest.raises(ModelError, match=r"image_settings \(32 px gray.*do not fit the graph's input images \['batch', 1, 28, 28\]"):
        load_image_encoder(EncoderSettings(image=str(path)))


@pytest.mark.parametrize(("speech", "image"), [("default", "objects"), ("ensemble", "digits"), ("dtw", "pixels")])
def test_the_shipped_models_pass_the_probe(speech, image):
    assert load_speech_encoder(EncoderSettings(speech=speech), FEATURES).encoder_id
    assert load_image_encoder(EncoderSettings(image=image)).encoder_id


def test_check_reports_a_defective_model_in_one_line(tmp_path, capsys):
    model = doctored(tmp_path, "image_digits.onnx", poison)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"encoders: {{speech: dtw, image: {model}}}\n")
    assert main(["check", "--config-only", "--config", str(cfg)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "gives non-finite embeddings" in err[0] and str(model) in err[0]


def test_start_up_refuses_it_before_ready(tmp_path):
    from edge.service import Daemon, Notifier

    class Recorder(Notifier):
        def __init__(self) -> None:
            super().__init__(None)
            self.sent: list[str] = []

        def notify(self, *lines: str) -> bool:
            self.sent += lines
            return True

    model = doctored(tmp_path, "speech.onnx", poison)
    cfg = config_from_mapping({"encoders": {"speech": str(model), "image": "pixels"}, "memory": {"state_dir": str(tmp_path / "state")}})
    notifier = Recorder()
    daemon = Daemon(cfg, audio=None, frames=None, button=None, notifier=notifier, control=False)
    with pytest.raises(ModelError, match="gives non-finite embeddings"):
        daemon.start()
    assert "READY=1" not in notifier.sent and not (tmp_path / "state").exists()


def test_the_weights_hash_is_the_exporters_for_every_stored_form(tmp_path):
    for name in ("speech.onnx", "speech_ensemble3.onnx", "image_digits.onnx", "image_objects.onnx"):
        model = onnx.load(str(MODELS / name))
        assert onnx_weights_sha256(MODELS / name) == weights_sha256(model) == meta(model, "showsay.weights_sha256"), name
    typed = [
        helper.make_tensor("f", TensorProto.FLOAT, [3], [1.5, -2.0, 3.0]),
        helper.make_tensor("i64", TensorProto.INT64, [2], [-5, 7]),
        helper.make_tensor("i32", TensorProto.INT32, [2], [-5, 7]),
        helper.make_tensor("i8", TensorProto.INT8, [2], [-5, 7]),
        helper.make_tensor("h", TensorProto.FLOAT16, [2], np.array([1.5, -2.0], np.float16).view(np.uint16).tolist()),
        helper.make_tensor("d", TensorProto.DOUBLE, [2], [-5.5, 7.0]),
        helper.make_tensor("b", TensorProto.BOOL, [2], [True, False]),
        helper.make_tensor("u64", TensorProto.UINT64, [2], [5, 2**63 + 1]),
        helper.make_tensor("empty", TensorProto.FLOAT, [0], []),
        numpy_helper.from_array(np.arange(3000, dtype=np.float32).reshape(30, 100), "big"),
    ]
    model = helper.make_model(helper.make_graph([], "g", [], [], typed))
    expected = weights_sha256(model)
    onnx.save(model, str(tmp_path / "typed.onnx"))
    assert onnx_weights_sha256(tmp_path / "typed.onnx") == expected
    onnx.save(model, str(tmp_path / "external.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
              location="external.onnx.data", size_threshold=1024)  # converts the model in memory to external references
    assert (tmp_path / "external.onnx.data").stat().st_size >= 12000
    assert onnx_weights_sha256(tmp_path / "external.onnx") == expected


class RecordingSpeech:
    """A speech encoder that records what the probe hands it."""

    def __init__(self, kind: str | None = None, extra: dict | None = None) -> None:
        if kind is not None:
            self.input_kind = kind
        self.info = ModelInfo("speech", "fake", 4, "0" * 64, FEATURES.as_dict(), None, extra or {})
        self.batches: list = []

    def embed(self, batch):
        self.batches.append(batch)
        return np.ones((len(batch), 4), np.float32)


@pytest.mark.parametrize(
    ("encoder", "expected"),
    [(RecordingSpeech(), "frames"), (RecordingSpeech("waveform"), "waveform"),
     (RecordingSpeech(extra={"showsay.input_kind": "waveform"}), "waveform")],
    ids=["no kind given", "attribute", "metadata"],
)
def test_the_speech_probe_gives_what_the_encoder_takes(encoder, expected):
    assert input_kind(encoder) == expected
    probe_speech_encoder(encoder, FEATURES, "fake.onnx")
    (batch,) = encoder.batches
    assert len(batch) == 2 and batch[0].shape[0] < batch[1].shape[0]
    if expected == "frames":
        assert batch[0].ndim == 2 and batch[0].shape[1] == 3 * FEATURES.n_mfcc
    else:
        assert batch[0].ndim == 1 and batch[1].shape == (int(0.8 * 16000),) and batch[1].dtype == np.float32
        assert 0.1 < np.abs(batch[1]).max() <= 1.0

