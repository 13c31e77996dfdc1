"""Triplet loss with cosine distance and online semi-hard mining (Schroff et al. 2015, FaceNet)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def cosine_distances(emb: torch.Tensor) -> torch.Tensor:
    """(B, B) cosine distances 1 - cos, in [0, 2]."""
    e = F.normalize(emb, dim=1)
    return (1.0 - e @ e.T).clamp_min(0.0)


def semihard_triplet_loss(emb: torch.Tensor, labels: torch.Tensor, margin: float) -> torch.Tensor:
    """Mean over anchor-positive pairs of max(0, d(a,p) - d(a,n) + margin).

    For each pair the negative is the closest one still farther than the positive (semi-hard);
    where every negative is closer than the positive, the farthest negative is used (as in
    TensorFlow Addons' triplet_semihard_loss), so a collapsed batch still gets a gradient.
    """
    d = cosine_distances(emb)  # (B, B)
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=emb.device)
    pos = same & ~eye
    if not pos.any():
        raise ValueError("a triplet batch needs at least two examples of some class")
    neg = (~same)[:, None, :]  # (B, 1, B): anchor, -, negative
    d_ap = d[:, :, None]  # (B, B, 1): anchor, positive, -
    d_an = d[:, None, :]  # (B, 1, B)
    big = torch.finfo(d.dtype).max / 4
    outside = neg & (d_an > d_ap)  # (B, B, B) semi-hard candidates
    semi = torch.where(outside, d_an, torch.full_like(d_an, big)).amin(dim=2)  # (B, B)
    hardest_inside = torch.where(neg, d_an, torch.full_like(d_an, -big)).amax(dim=2)  # (B, 1) -> broadcast
    chosen = torch.where(outside.any(dim=2), semi, hardest_inside.expand_as(semi))
    loss = F.relu(d - chosen + margin)
    return loss[pos].mean()
