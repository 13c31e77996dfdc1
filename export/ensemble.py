"""``showsay export ensemble --model A.onnx --model B.onnx --out E.onnx``: several encoders as one.

Encoders trained from different seeds make different mistakes on data unlike their training data
(the seeds' one-shot transfer). Their ensemble is one ONNX graph that runs every member on the same
input, scales each member's embedding to unit length and outputs them side by side times
1/sqrt(n): the result is unit length, and the cosine between two ensemble embeddings is the mean
of the members' cosines. The runtime and the memory see one ordinary encoder with a larger
embedding; the merge adds only plain operators (ReduceL2, Max, Div, Concat, Mul) for TensorRT.

Members must be showsay encoders of one kind with identical speech features or image settings and
the same opset. The merged file carries the same metadata as a single encoder plus the members' ids;
after writing, its output is compared with the members run one by one on ONNX Runtime.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from edge.encoders import OnnxEncoder
from edge.matching import l2_normalise
from edge.model_io import (
    EMBEDDING_OUTPUT,
    META_IMAGE_SETTINGS,
    META_INPUT_LAYOUT,
    META_SPEECH_FEATURES,
    META_TRAINING_DATA,
    ModelError,
    ModelInfo,
)
from export.onnx_export import ExportResult, parity_inputs

PARITY_TOLERANCE = 1e-5  # the merged graph computes exactly what the members do; only float order differs
MEMBER_KEYS = ("showsay.objective", "showsay.train_seed", "showsay.val_one_shot")


def _read(path: Path) -> tuple["object", ModelInfo, dict[str, str]]:
    import onnx

    if not path.is_file():
        raise ModelError(f"{path}: no such model file")
    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # onnx raises DecodeError and others for a corrupt file
        raise ModelError(f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc})") from None
    meta = {p.key: p.value for p in proto.metadata_props}
    return proto, ModelInfo.from_metadata(meta, str(path)), meta


def _opset(proto: "object") -> int:
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))  # type: ignore[attr-defined]


def merge_encoders(paths: Sequence[Path]) -> tuple["object", ModelInfo, list[dict[str, str]]]:
    """The members' graphs side by side behind one Concat and a 1/sqrt(n) scale; raises ModelError on members that do not fit together."""
    import onnx
    from onnx import TensorProto, compose, helper

    if len(paths) < 2:
        raise ModelError("an ensemble needs at least two --model files")
    read = [_read(Path(p)) for p in paths]
    first_proto, first, first_meta = read[0]
    for path, (proto, info, meta) in zip(paths[1:], read[1:]):
        if info.kind != first.kind:
            raise ModelError(f"{path}: its kind is {info.kind}, but {paths[0]} is a {first.kind} encoder")
        for key in (META_SPEECH_FEATURES, META_IMAGE_SETTINGS):
            theirs, ours = meta.get(key), first_meta.get(key)
            if (json.loads(theirs) if theirs else None) != (json.loads(ours) if ours else None):
                raise ModelError(f"{path}: its {key} differ from {paths[0]}'s; members must take the same input")
        if [i.name for i in proto.graph.input] != [i.name for i in first_proto.graph.input]:
            raise ModelError(f"{path}: inputs differ from {paths[0]}'s")
        if _opset(proto) != _opset(first_proto):
            raise ModelError(f"{path}: opset {_opset(proto)} differs from {paths[0]}'s {_opset(first_proto)}")
    if len({info.weights_sha256 for _, info, _ in read}) < len(read):
        raise ModelError("the same encoder is given twice; an ensemble of copies is the member itself")

    n = len(read)
    nodes, outputs = [], []
    inits = [
        helper.make_tensor("ensemble_scale", TensorProto.FLOAT, [], [1.0 / np.sqrt(n)]),
        helper.make_tensor("ensemble_eps", TensorProto.FLOAT, [], [1e-12]),
    ]
    for i, (proto, _, _) in enumerate(read):
        member = compose.add_prefix(proto, f"m{i}_", rename_inputs=False)  # inputs stay shared
        nodes += member.graph.node
        inits += member.graph.initializer
        out = member.graph.output[0].name
        # each member to unit length again, so that none outweighs the others whatever its output's scale
        nodes += [
            helper.make_node("ReduceL2", [out], [f"m{i}_norm"], axes=[1], keepdims=1, name=f"m{i}_norm"),
            helper.make_node("Max", [f"m{i}_norm", "ensemble_eps"], [f"m{i}_norm_eps"], name=f"m{i}_norm_eps"),
            helper.make_node("Div", [out, f"m{i}_norm_eps"], [f"m{i}_unit"], name=f"m{i}_unit"),
        ]
        outputs.append(f"m{i}_unit")
    dim = sum(info.embedding_dim for _, info, _ in read)
    nodes += [
        helper.make_node("Concat", outputs, ["ensemble_concat"], axis=1, name="ensemble_concat"),
        helper.make_node("Mul", ["ensemble_concat", "ensemble_scale"], [EMBEDDING_OUTPUT], name="ensemble_scale"),
    ]
    out = helper.make_tensor_value_info(EMBEDDING_OUTPUT, TensorProto.FLOAT, ["batch", dim])
    graph = helper.make_graph(nodes, f"showsay_{first.kind}_ensemble", list(first_proto.graph.input), [out], inits)
    merged = helper.make_model(graph, opset_imports=list(first_proto.opset_import), ir_version=first_proto.ir_version)
    merged.producer_name = first_proto.producer_name
    onnx.checker.check_model(merged)
    members = [{"model_id": info.model_id, "weights_sha256": info.weights_sha256, **{k: meta[k] for k in MEMBER_KEYS if k in meta}} for _, info, meta in read]
    return merged, first, members


def export_ensemble(paths: Sequence[Path], out: Path) -> ExportResult:
    """Merge, attach metadata, write, and compare with the members run one by one."""
    import onnx

    from export.metadata import attach_metadata

    merged, first, members = merge_encoders(paths)
    first_meta = first.extra  # the first member's metadata beyond the required keys
    dim = int(merged.graph.output[0].type.tensor_type.shape.dim[1].dim_value)
    ids = [m["model_id"] for m in members]
    model_id = f"{first.kind}-ensemble{len(ids)}-{hashlib.sha256(' '.join(ids).encode()).hexdigest()[:8]}"
    layout = first_meta.get(META_INPUT_LAYOUT, "").rsplit(f"; {EMBEDDING_OUTPUT}:", 1)[0]
    attach_metadata(
        merged,
        kind=first.kind,
        model_id=model_id,
        embedding_dim=dim,
        input_layout=layout + f"; {EMBEDDING_OUTPUT}:(batch,{dim}) float32 unit length (members side by side, each / sqrt({len(ids)}))",
        training_data=f"Ensemble of {len(ids)} encoders ({', '.join(ids)}), each trained on: {first_meta.get(META_TRAINING_DATA, 'unknown')}",
        speech_features=first.speech_features,
        image_settings=first.image_settings.as_dict() if first.image_settings is not None else None,
        extra={
            "showsay.objective": "ensemble: " + ", ".join(m.get("showsay.objective", "?") for m in members),
            "showsay.train_seed": ",".join(m.get("showsay.train_seed", "?") for m in members),
            "showsay.members": json.dumps(members),
        },
    )
    onnx.checker.check_model(merged)
    out.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(merged, str(out))
    encoder = OnnxEncoder(out, threads=1)  # the runtime's loader: names, metadata
    parts = [OnnxEncoder(p, threads=1) for p in paths]
    shape = [d.dim_value for d in merged.graph.input[0].type.tensor_type.shape.dim]
    spec = {"feat_dim": shape[2]} if first.kind == "speech" else {"channels": shape[1], "size_px": shape[2]}
    worst = 0.0
    for batch in parity_inputs(first.kind, spec):
        # each member to unit length, as the graph does, side by side times 1/sqrt(n)
        ref = np.concatenate([l2_normalise(p.embed(batch)) for p in parts], axis=1) / np.sqrt(len(parts))
        worst = max(worst, float(np.abs(encoder.embed(batch) - ref).max()))
    if worst > PARITY_TOLERANCE:
        raise ModelError(f"{out}: the ensemble differs from its members by {worst:.2e} (> {PARITY_TOLERANCE:g})")
    return ExportResult(out, model_id, first.kind, dim, worst, out.stat().st_size)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``ensemble``."""
    p = sub.add_parser("ensemble", help="merge several ONNX encoders of one kind into one (cosine = mean of the members' cosines)")
    p.add_argument("--model", type=Path, action="append", required=True, help="member ONNX encoder (give two or more)")
    p.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Merge from the command line."""
    try:
        import onnx  # noqa: F401
    except ImportError as exc:
        print(f"showsay export ensemble: needs the onnx package: pip install -e '.[train]' ({exc})", file=sys.stderr)
        return 1
    try:
        res = export_ensemble(args.model, args.out)
    except ModelError as exc:
        print(f"showsay export ensemble: {exc}", file=sys.stderr)
        return 1
    print(f"{res.path}: {res.kind} ensemble {res.model_id}, {res.embedding_dim}-d, {res.size_bytes / 1e6:.2f} MB; "
          f"max abs diff from the members {res.max_abs_diff:.2e}")
    return 0
