"""Dynamic time warping over feature frames, vectorised with numpy (the seeds' speech baseline).

Frame distance is cosine distance (1 - cos, in [0, 2]); the alignment cost is normalised by the
length of the chosen path, as in Kamper's speech_dtw. The recurrence is evaluated one
anti-diagonal at a time, all cells of a diagonal and all reference sequences at once, so one
query against R references costs (T + M) numpy steps instead of T * M * R Python steps.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _unit_frames(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-10)


def dtw_one_to_many(query: np.ndarray, refs: Sequence[np.ndarray], chunk: int = 512) -> np.ndarray:
    """Path-length-normalised DTW cost of ``query`` (T, D) against each of ``refs`` (M_r, D); shape (R,)."""
    out = np.empty(len(refs), np.float64)
    q = _unit_frames(np.asarray(query, np.float32))
    for start in range(0, len(refs), chunk):
        block = refs[start : start + chunk]
        out[start : start + len(block)] = _dtw_block(q, [_unit_frames(np.asarray(r, np.float32)) for r in block])
    return out


def _dtw_block(q: np.ndarray, refs: list[np.ndarray]) -> np.ndarray:
    t_len = q.shape[0]
    lens = np.array([r.shape[0] for r in refs])
    m_len = int(lens.max())
    padded = np.zeros((len(refs), m_len, q.shape[1]), np.float32)
    for i, r in enumerate(refs):
        padded[i, : r.shape[0]] = r
    # cost[r, i, j]: cosine distance between query frame i and frame j of reference r.  (R, T, M)
    cost = 1.0 - np.einsum("td,rmd->rtm", q, padded).astype(np.float64)
    # acc and steps use a border row/column of inf so the recurrence needs no bounds checks. (R, T+1, M+1)
    acc = np.full((len(refs), t_len + 1, m_len + 1), np.inf)
    steps = np.zeros((len(refs), t_len + 1, m_len + 1), np.int32)
    acc[:, 0, 0] = 0.0
    for k in range(2, t_len + m_len + 1):
        i = np.arange(max(1, k - m_len), min(t_len, k - 1) + 1)  # cells (i, k - i) on this diagonal
        j = k - i
        cand = np.stack([acc[:, i - 1, j - 1], acc[:, i - 1, j], acc[:, i, j - 1]])  # (3, R, n)
        cand_steps = np.stack([steps[:, i - 1, j - 1], steps[:, i - 1, j], steps[:, i, j - 1]])
        best = cand.argmin(axis=0)  # (R, n)
        acc[:, i, j] = cost[:, i - 1, j - 1] + np.take_along_axis(cand, best[None], 0)[0]
        steps[:, i, j] = np.take_along_axis(cand_steps, best[None], 0)[0] + 1
    rows = np.arange(len(refs))
    return acc[rows, t_len, lens] / steps[rows, t_len, lens]


def dtw_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Path-length-normalised DTW cost between two sequences."""
    return float(dtw_one_to_many(a, [b])[0])
