"""Time per crop of image encoders on this CPU with ONNX Runtime (1 thread by default).

    python tools/time_image_encoders.py edge/models/image_objects.onnx [more.onnx ...] [--reference-cnn]

``--reference-cnn`` also exports (to a temporary folder, timing only) a small 3-conv CNN on 28x28
grey crops, the size of the Omniglot-trained "digits" encoder, for a comparison when that model is
not at hand. Needs torch only for that reference.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from export.objects import time_per_crop_ms


def reference_cnn(path: Path) -> Path:
    """Export a 3-conv CNN (32-64-128 channels, 28x28 grey in, 128-d out) with random weights."""
    import torch

    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.BatchNorm2d(32), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.BatchNorm2d(64), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(64, 128, 3, padding=1), torch.nn.BatchNorm2d(128), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
    ).eval()
    torch.onnx.export(net, (torch.zeros(1, 1, 28, 28),), str(path), input_names=["images"], output_names=["embeddings"],
                      dynamic_axes={"images": {0: "batch"}}, opset_version=17, dynamo=False)
    return path


def main() -> None:
    """Print size and ms per crop at batch 1 and batch 8."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="*", type=Path)
    p.add_argument("--reference-cnn", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=50)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        models = list(args.models) + ([reference_cnn(Path(tmp) / "reference_3conv_cnn.onnx")] if args.reference_cnn else [])
        print("| model | size MB | ms per crop, batch 1 | ms per crop, batch 8 |\n|---|---|---|---|")
        for m in models:
            b1 = time_per_crop_ms(m, args.threads, 1, args.repeats)
            b8 = time_per_crop_ms(m, args.threads, 8, max(5, args.repeats // 4))
            print(f"| {m.name} | {m.stat().st_size / 1e6:.2f} | {b1:.2f} | {b8:.2f} |")


if __name__ == "__main__":
    main()
