"""The two encoders: a 1-D CNN over MFCC frames for speech and a 3-layer CNN at 28x28 for images.

Why a CNN and not the seeds' GRU for speech: a word is 30-200 frames; three dilated convolutions
(kernel 5, dilations 1, 2, 4: a 29-frame, 0.3 s receptive field) followed by masked mean and max
pooling over time see whole syllables, train several times faster than a recurrent net on two CPU
cores, export to ONNX/TensorRT as plain Conv/Reduce ops with a dynamic time axis, and embed a
word in well under a millisecond. Every layer's output is multiplied by the frame mask, so an
utterance's embedding does not depend on how much padding its batch needed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from edge.settings import setting


@dataclass(frozen=True)
class NetSettings:
    """Shape of an encoder network (speech: Conv1d over frames; image: Conv2d + max pooling)."""

    channels: tuple[int, ...] = setting((128, 128, 128), "output channels of each convolution layer")
    kernel_size: int = setting(5, "convolution kernel: frames (speech) or pixels (image, use 3)", min=1, max=15)
    embedding_dim: int = setting(128, "size of the embedding (the hidden layer that is exported)", min=8, max=2048)
    dropout: float = setting(0.1, "dropout before the classifier head / embedding layer in training", min=0.0, max=0.9)


class MaskedBatchNorm1d(nn.BatchNorm1d):
    """Batch norm over (B, C, T) whose training statistics count only the valid (unpadded) frames."""

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        if self.training:
            n = mask.sum().clamp_min(1.0)
            mean = (x * mask).sum(dim=(0, 2)) / n  # (C,)
            var = (((x - mean[None, :, None]) ** 2) * mask).sum(dim=(0, 2)) / n
            with torch.no_grad():
                m = self.momentum if self.momentum is not None else 0.1
                self.running_mean.mul_(1 - m).add_(m * mean)
                self.running_var.mul_(1 - m).add_(m * var * n / (n - 1).clamp_min(1.0))
                self.num_batches_tracked.add_(1)
        else:
            mean, var = self.running_mean, self.running_var
        y = (x - mean[None, :, None]) / torch.sqrt(var[None, :, None] + self.eps)
        return y * self.weight[None, :, None] + self.bias[None, :, None]


class SpeechCNN(nn.Module):
    """(B, T, feat_dim) zero-padded frames + (B,) lengths -> (B, embedding_dim) unit-length embeddings."""

    def __init__(self, feat_dim: int, net: NetSettings) -> None:
        super().__init__()
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        c_in = feat_dim
        for i, c in enumerate(net.channels):
            d = 2**i
            self.convs.append(nn.Conv1d(c_in, c, net.kernel_size, padding=d * (net.kernel_size // 2), dilation=d))
            self.norms.append(MaskedBatchNorm1d(c))
            c_in = c
        self.dropout = nn.Dropout(net.dropout)
        self.proj = nn.Linear(2 * c_in, net.embedding_dim)

    def hidden(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The embedding layer before normalisation, (B, embedding_dim)."""
        x = features.transpose(1, 2)  # (B, D, T)
        t = torch.arange(x.shape[2], device=x.device)
        mask = (t[None, :] < lengths.to(t.dtype)[:, None]).to(x.dtype)[:, None, :]  # (B, 1, T)
        x = x * mask
        for conv, norm in zip(self.convs, self.norms):
            x = F.relu(norm(conv(x), mask)) * mask  # (B, C, T), zero past each length
        n = mask.sum(dim=2).clamp_min(1.0)  # (B, 1)
        mean = x.sum(dim=2) / n
        peak = x.amax(dim=2)  # activations are >= 0 and padding is 0, so padding never wins
        return self.proj(self.dropout(torch.cat([mean, peak], dim=1)))

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.hidden(features, lengths), dim=1)


class ImageCNN(nn.Module):
    """(B, C, S, S) preprocessed images -> (B, embedding_dim) unit-length embeddings."""

    def __init__(self, in_channels: int, size_px: int, net: NetSettings) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in, side = in_channels, size_px
        for c in net.channels:
            layers += [nn.Conv2d(c_in, c, net.kernel_size, padding=net.kernel_size // 2), nn.BatchNorm2d(c), nn.ReLU(), nn.MaxPool2d(2)]
            c_in, side = c, side // 2
        self.trunk = nn.Sequential(*layers)
        self.dropout = nn.Dropout(net.dropout)
        self.proj = nn.Linear(c_in * side * side, net.embedding_dim)

    def hidden(self, images: torch.Tensor) -> torch.Tensor:
        """The embedding layer before normalisation, (B, embedding_dim)."""
        return self.proj(self.dropout(self.trunk(images).flatten(1)))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.hidden(images), dim=1)


def build_model(kind: str, net: NetSettings, input_spec: dict[str, Any]) -> nn.Module:
    """The encoder for ``kind`` ('speech' needs input_spec feat_dim; 'image' needs channels, size_px)."""
    if kind == "speech":
        return SpeechCNN(int(input_spec["feat_dim"]), net)
    if kind == "image":
        return ImageCNN(int(input_spec["channels"]), int(input_spec["size_px"]), net)
    raise ValueError(f"unknown encoder kind {kind!r} (speech or image)")
