"""``showsay export onnx --checkpoint C --out M.onnx``: a trained encoder as a self-describing ONNX file.

Opset 17 with the legacy TorchScript exporter (one file, parsed by TensorRT 8.6+), dynamic batch
(and, for speech, time) axes, the tensor names of :mod:`edge.model_io`, and showsay metadata
(feature settings, input layout, embedding size, model id, weights hash, training data). After
writing, the file is loaded through the runtime's own :class:`edge.encoders.OnnxEncoder` and
compared with PyTorch on several batch shapes and utterance lengths.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge.encoders import OnnxEncoder
from edge.model_io import EMBEDDING_OUTPUT, IMAGE_INPUT, META_PROTOCOL, META_RECOMMENDED, SPEECH_INPUT, SPEECH_LENGTHS, ModelError

if TYPE_CHECKING:  # torch, onnx and train come with the train extra; 'showsay export engine' on a Jetson needs none of them
    import torch

log = logging.getLogger(__name__)
OPSET = 17
PARITY_TOLERANCE = 1e-4  # max abs difference between PyTorch and ONNX Runtime embeddings (unit length)
SPEECH_PARITY_LENGTHS = ((1,), (7,), (40, 13), (101, 57, 3), (300, 150, 75, 20))  # frames per utterance, per batch


@dataclass(frozen=True)
class ExportResult:
    """What was written and how closely it matches PyTorch."""

    path: Path
    model_id: str
    kind: str
    embedding_dim: int
    max_abs_diff: float
    size_bytes: int


def _dummy(kind: str, spec: dict[str, Any]) -> tuple[torch.Tensor, ...]:
    import torch

    if kind == "speech":
        return torch.randn(2, 50, int(spec["feat_dim"])), torch.tensor([50, 31], dtype=torch.int32)
    return (torch.randn(2, int(spec["channels"]), int(spec["size_px"]), int(spec["size_px"])),)


def parity_inputs(kind: str, spec: dict[str, Any], seed: int = 0) -> list[list[np.ndarray] | np.ndarray]:
    """Batches to compare PyTorch with ONNX Runtime on: speech of several lengths, images of several batch sizes."""
    rng = np.random.default_rng(seed)
    if kind == "speech":
        return [[rng.standard_normal((t, int(spec["feat_dim"]))).astype(np.float32) for t in lengths] for lengths in SPEECH_PARITY_LENGTHS]
    c, n = int(spec["channels"]), int(spec["size_px"])
    return [rng.random((b, c, n, n)).astype(np.float32) for b in (1, 3, 17)]


def torch_embed(model: torch.nn.Module, kind: str, batch: list[np.ndarray] | np.ndarray) -> np.ndarray:
    """Reference embeddings from PyTorch; speech utterances one at a time (no padding at all)."""
    import torch

    with torch.no_grad():
        if kind == "speech":
            return np.concatenate([model(torch.from_numpy(x)[None], torch.tensor([x.shape[0]], dtype=torch.int32)).numpy() for x in batch])
        return model(torch.from_numpy(np.asarray(batch))).numpy()


def export_onnx(checkpoint: Path, out: Path, fuse_dtw: float | None = None) -> ExportResult:
    """Export, attach metadata, then check parity through the runtime's loader; raises ModelError on a mismatch.

    ``fuse_dtw``: the DTW weight chosen for this speech model on held-out speakers, recorded as ``showsay.recommended``."""
    import onnx
    import torch

    from export.metadata import attach_metadata
    from train.fit import load_checkpoint, rebuild_model

    ckpt = load_checkpoint(checkpoint)
    model, settings = rebuild_model(ckpt)
    kind, spec = ckpt["kind"], ckpt["input_spec"]
    if kind == "speech":
        names = [SPEECH_INPUT, SPEECH_LENGTHS]
        axes = {SPEECH_INPUT: {0: "batch", 1: "frames"}, SPEECH_LENGTHS: {0: "batch"}, EMBEDDING_OUTPUT: {0: "batch"}}
        layout = f"{SPEECH_INPUT}:(batch,frames,{spec['feat_dim']}) float32 zero-padded; {SPEECH_LENGTHS}:(batch,) int32 valid frames"
    else:
        names = [IMAGE_INPUT]
        axes = {IMAGE_INPUT: {0: "batch"}, EMBEDDING_OUTPUT: {0: "batch"}}
        layout = f"{IMAGE_INPUT}:(batch,{spec['channels']},{spec['size_px']},{spec['size_px']}) float32 from edge.images.preprocess_batch"
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        # the legacy exporter is chosen on purpose: opset 17 in one file, which TensorRT 8.6+ parses
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            model, _dummy(kind, spec), str(out), dynamo=False, opset_version=OPSET,
            input_names=names, output_names=[EMBEDDING_OUTPUT], dynamic_axes=axes, do_constant_folding=True,
        )
    proto = onnx.load(str(out))
    attach_metadata(
        proto,
        kind=kind,
        model_id=ckpt["model_id"],
        embedding_dim=settings.net.embedding_dim,
        input_layout=layout + f"; {EMBEDDING_OUTPUT}:(batch,{settings.net.embedding_dim}) float32 unit length",
        training_data=ckpt["training_data"],
        speech_features=ckpt.get("speech_features"),
        image_settings=ckpt.get("image_settings"),
        extra={
            "showsay.objective": settings.objective,
            "showsay.val_one_shot": f"{ckpt['val_one_shot']:.4f} ({ckpt['val_ways']}-way, held-out background classes)",
            "showsay.train_seed": str(settings.seed),
            META_PROTOCOL: "seeds",  # showsay train uses background data only
            **({META_RECOMMENDED: json.dumps({"fuse_dtw": float(fuse_dtw)})} if fuse_dtw is not None else {}),
            **({"showsay.val_real_speakers": f"{ckpt['val_real']:.4f} ({ckpt['val_ways']}-way one-shot, 40 held-out speechocean762 speakers, "
                                             "edge/bench/validation.py)"} if ckpt.get("val_real") is not None else {}),
        },
    )
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out))
    encoder = OnnxEncoder(out, threads=1)  # the runtime's loader: names, metadata
    worst = 0.0
    for batch in parity_inputs(kind, spec):
        ref = torch_embed(model, kind, batch)
        got = encoder.embed(batch)
        diff = float(np.abs(ref - got).max())
        shape = [x.shape[0] for x in batch] if kind == "speech" else list(np.asarray(batch).shape)
        log.info("parity %s: max abs diff %.2e", f"lengths {shape}" if kind == "speech" else f"batch {shape}", diff)
        worst = max(worst, diff)
    if worst > PARITY_TOLERANCE:
        raise ModelError(f"{out}: ONNX Runtime differs from PyTorch by {worst:.2e} (> {PARITY_TOLERANCE:g})")
    return ExportResult(out, ckpt["model_id"], kind, settings.net.embedding_dim, worst, out.stat().st_size)


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``onnx``."""
    p = sub.add_parser("onnx", help="export a training checkpoint to an ONNX encoder with metadata, checked against PyTorch")
    p.add_argument("--checkpoint", type=Path, required=True, help="checkpoint written by 'showsay train speech|image'")
    p.add_argument("--out", type=Path, required=True, help="ONNX file to write")
    p.add_argument("--fuse-dtw", type=float, metavar="W",
                   help="speech: record W as the DTW weight chosen for this model on held-out speakers (showsay.recommended; "
                        "encoders.fuse_dtw: null then uses it)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export from the command line."""
    from train.data import DataError

    try:
        import onnx  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        print(f"showsay export onnx: needs the train extra (PyTorch, onnx): pip install -e '.[train]' ({exc})", file=sys.stderr)
        return 1
    try:
        if args.fuse_dtw is not None and not 0.0 <= args.fuse_dtw <= 1.0:
            raise ModelError(f"--fuse-dtw must be in [0, 1], got {args.fuse_dtw}")
        res = export_onnx(args.checkpoint, args.out, args.fuse_dtw)
    except (DataError, ModelError) as exc:
        print(f"showsay export onnx: {exc}", file=sys.stderr)
        return 1
    print(f"{res.path}: {res.kind} encoder {res.model_id}, {res.embedding_dim}-d, {res.size_bytes / 1e6:.2f} MB, opset {OPSET}; "
          f"PyTorch vs ONNX Runtime max abs diff {res.max_abs_diff:.2e}")
    return 0
