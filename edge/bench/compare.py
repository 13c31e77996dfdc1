"""Paired comparison of two benchmark runs drawn on the same episodes (``showsay bench --compare A B``).

Both runs answered the same queries, so the question is how often one was right where the other
was wrong, not whether two confidence intervals overlap. For each stage (multimodal, distance-only,
speech-only over the queries; image-only over the matching images) this gives B - A with a 95%
interval from a paired bootstrap over episodes (queries of one episode share its support set, so
episodes, not queries, are the independent draws), and McNemar's exact test on the discordant
queries (which treats queries as independent: read its p-value as a guide, the interval as the result).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy.stats import binom

from edge.bench.results import ResultsError, read_results

BOOTSTRAP_RESAMPLES = 10_000
BOOTSTRAP_SEED = 0
# Keys of a summary that describe how it was scored; shown when they differ between the two runs.
_NOT_SETTINGS = {"per_episode", "per_seed", "provenance", "format", "speech_manifest", "image_manifest"}
_RESULT_PREFIXES = ("accuracy", "ci95", "speech_accuracy", "speech_ci95", "image_accuracy", "image_ci95", "seconds_per_query",
                    "matching_seconds_per_query", "embedding_seconds", "speech_ms_per_utterance")
# (name, where the per-item outcomes live, which field says right)
STAGES = (
    ("multimodal", "queries", "right"),
    ("multimodal, distance only", "queries", "distance_only_right"),
    ("speech-only", "queries", "speech_right"),
    ("image-only", "image_only", "right"),
)


class CompareError(ResultsError):
    """The two runs cannot be compared pair by pair."""


@dataclass(frozen=True)
class PairedResult:
    """One stage of A against B on the same items."""

    stage: str
    items: int  # queries (or matching images) compared
    a: float  # accuracy of A
    b: float
    diff: float  # b - a
    ci_low: float  # paired bootstrap over episodes, 95%
    ci_high: float
    only_a: int  # items A got right and B wrong
    only_b: int
    mcnemar_p: float  # exact two-sided McNemar test on (only_a, only_b)


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: the discordant pairs against a fair coin."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    return float(min(1.0, 2.0 * binom.cdf(min(only_a, only_b), n, 0.5)))


def paired_bootstrap(per_episode_a: np.ndarray, per_episode_b: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES,
                     seed: int = BOOTSTRAP_SEED) -> tuple[float, float]:
    """95% percentile interval of mean(B) - mean(A) (per-item accuracy), episodes resampled with replacement.

    Inputs are (episodes, 2) arrays of [right, items] per episode, so episodes of different sizes weigh
    by their items, as the pooled accuracy does.
    """
    n = len(per_episode_a)
    rng = np.random.default_rng(seed)
    diffs = np.empty(resamples)
    chunk = max(1, 2_000_000 // max(n, 1))
    for start in range(0, resamples, chunk):
        m = min(chunk, resamples - start)
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=m)  # (m, n): how often each episode is drawn
        items = counts @ per_episode_a[:, 1]
        diffs[start : start + m] = (counts @ per_episode_b[:, 0] - counts @ per_episode_a[:, 0]) / items
    low, high = np.percentile(diffs, [2.5, 97.5])
    return float(low), float(high)


def check_same_episodes(a: dict[str, Any], b: dict[str, Any], name_a: str, name_b: str) -> None:
    """Refuse two runs that were not drawn on the same episodes, naming the first difference."""
    ea, eb = a["per_episode"], b["per_episode"]
    for key in ("ways", "shots", "queries", "speakers", "teachers", "seeds", "episodes"):
        if a.get(key) != b.get(key):
            raise CompareError(f"{name_a} and {name_b} were not drawn on the same episodes: {key} is {a.get(key)!r} vs {b.get(key)!r}")
    if len(ea) != len(eb):
        raise CompareError(f"{name_a} and {name_b} were not drawn on the same episodes: {len(ea)} vs {len(eb)} episodes")
    for ra, rb in zip(ea, eb):
        if ra.get("id") != rb.get("id") or ra.get("seed") != rb.get("seed"):
            raise CompareError(
                f"{name_a} and {name_b} were not drawn on the same episodes: episode {ra.get('index')} of seed {ra.get('seed')} "
                f"draws other recordings or images (ids {ra.get('id')} vs {rb.get('id')}); use the same manifests, seeds and episode options"
            )


def _outcomes(run: dict[str, Any], where: str, field: str) -> tuple[np.ndarray, np.ndarray]:
    """Flat right/wrong per item, and (episodes, 2) [right, items] per episode."""
    flat, per_ep = [], []
    for r in run["per_episode"]:
        rights = [bool(x[field]) for x in r[where]]
        flat.extend(rights)
        per_ep.append((sum(rights), len(rights)))
    return np.asarray(flat, bool), np.asarray(per_ep, np.float64)


def compare_runs(a: dict[str, Any], b: dict[str, Any], name_a: str = "A", name_b: str = "B",
                 resamples: int = BOOTSTRAP_RESAMPLES) -> list[PairedResult]:
    """B against A at each stage, paired over the same queries and matching images."""
    check_same_episodes(a, b, name_a, name_b)
    results = []
    for stage, where, field in STAGES:
        ra, pa = _outcomes(a, where, field)
        rb, pb = _outcomes(b, where, field)
        only_a, only_b = int((ra & ~rb).sum()), int((rb & ~ra).sum())
        low, high = paired_bootstrap(pa, pb, resamples)
        acc_a, acc_b = float(ra.mean()), float(rb.mean())
        results.append(PairedResult(stage, len(ra), acc_a, acc_b, acc_b - acc_a, low, high, only_a, only_b, mcnemar_exact(only_a, only_b)))
    return results


def setting_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """``key: A -> B`` for every recorded setting (top-level values and the ``settings`` block) that differs between the runs."""
    def flat(run: dict[str, Any]) -> dict[str, Any]:
        top = {k: v for k, v in run.items() if k not in _NOT_SETTINGS and k != "settings" and not k.startswith(_RESULT_PREFIXES)}
        return {**top, **(run.get("settings") or {})}

    fa, fb = flat(a), flat(b)
    return [f"{k}: {fa.get(k)!r} -> {fb.get(k)!r}" for k in dict.fromkeys([*fa, *fb]) if fa.get(k) != fb.get(k)]


def _pts(x: float) -> str:
    return f"{100 * x:+.1f}"


def compare_table(results: Sequence[PairedResult], name_a: str, name_b: str) -> str:
    """Markdown: each stage's accuracies, the paired difference with its interval, and McNemar."""
    rows = [
        f"| stage | items | A % | B % | B - A, points | paired 95% CI (bootstrap over episodes) | right only in A | right only in B | McNemar p |",
        "|" + "---|" * 9,
    ]
    for r in results:
        rows.append(f"| {r.stage} | {r.items} | {100 * r.a:.1f} | {100 * r.b:.1f} | {_pts(r.diff)} | [{_pts(r.ci_low)}, {_pts(r.ci_high)}] | "
                    f"{r.only_a} | {r.only_b} | {r.mcnemar_p:.3g} |")
    return f"A: {name_a}\nB: {name_b}\n\n" + "\n".join(rows)


def compare_files(path_a: Path, path_b: Path) -> tuple[list[PairedResult], list[str], list[str]]:
    """Read two results files; returns the paired results, the settings that differ, and warnings."""
    a, b = read_results(path_a), read_results(path_b)
    try:
        results = compare_runs(a, b, str(path_a), str(path_b))
    except (KeyError, TypeError, AttributeError) as exc:
        raise CompareError(f"{path_a} or {path_b}: a per-episode record lacks {exc} (not written by showsay bench --json?)") from None
    warnings = []
    ma = (a.get("provenance") or {}).get("manifests") or {}
    mb = (b.get("provenance") or {}).get("manifests") or {}
    for kind in sorted(set(ma) & set(mb)):
        if ma[kind].get("sha256") != mb[kind].get("sha256"):
            warnings.append(f"the {kind} manifests differ ({ma[kind].get('path')} vs {mb[kind].get('path')}) but the episodes name the same files")
    return results, setting_differences(a, b), warnings
