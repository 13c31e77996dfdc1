"""Dynamic time warping over feature frames, vectorised with numpy (the seeds' speech baseline).

Frame distance is cosine distance (1 - cos, in [0, 2]); the alignment cost is normalised by the
length of the chosen path, as in Kamper's speech_dtw. The recurrence is evaluated one query frame
(row) at a time for all reference sequences at once; within a row, the dependence on the cell to
the left is a running minimum (``np.minimum.accumulate``), so one query against R references costs
T numpy steps instead of T * M * R Python steps.
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
    # cost[i, r, j]: cosine distance between query frame i and frame j of reference r.  (T, R, M)
    cost = 1.0 - np.einsum("td,rmd->trm", q, padded).astype(np.float64)
    n_refs, cols = len(refs), np.arange(1, m_len + 1)
    # up / up_steps: accumulated cost and path length of the previous row of cells, column 0 being the
    # border; the row before the first is the border too, where only the cell before (1, 1) is reachable.
    up, up_steps = np.full((n_refs, m_len + 1), np.inf), np.zeros((n_refs, m_len + 1))
    up[:, 0] = 0.0
    row, row_steps = np.full((n_refs, m_len + 1), np.inf), np.zeros((n_refs, m_len + 1))
    for c in cost:  # one query frame at a time, (R, M)
        # From the row above: the diagonal predecessor wins ties, as in the seeds' speech_dtw.
        diag_first = up[:, :-1] <= up[:, 1:]
        above = np.where(diag_first, up[:, :-1], up[:, 1:])
        above_steps = np.where(diag_first, up_steps[:, :-1], up_steps[:, 1:])
        # Along the row, acc[j] = c[j] + min(above[j], acc[j - 1]): with S the running sum of c,
        # acc[j] = S[j] + min over k <= j of (c[k] + above[k] - S[k]), the path entering the row at k.
        run = np.cumsum(c, axis=1)
        entry = c + above - run
        best = np.minimum.accumulate(entry, axis=1)
        k = np.maximum.accumulate(np.where(entry <= best, cols, 0), axis=1)  # the latest entry at the minimum: above wins ties
        row[:, 0] = np.inf  # the border column: reachable only before the first row
        row[:, 1:] = run + best
        row_steps[:, 1:] = np.take_along_axis(above_steps, k - 1, axis=1) + (cols + 1 - k)
        up, row, up_steps, row_steps = row, up, row_steps, up_steps
    refs_idx = np.arange(n_refs)
    return up[refs_idx, lens] / up_steps[refs_idx, lens]


def dtw_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Path-length-normalised DTW cost between two sequences."""
    return float(dtw_one_to_many(a, [b])[0])
