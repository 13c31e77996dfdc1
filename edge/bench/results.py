"""Benchmark results that can be traced and compared: provenance, per-episode records, the JSON file.

A run's JSON holds the summary (``runner.run_benchmark``), a ``provenance`` block (showsay version,
git commit when run from a checkout, the command line, the time, library versions, each manifest's
SHA-256) and ``per_episode``: for every episode its identity (``id``: a hash of the files it drew,
named by label, speaker and file name so a moved data folder keeps the same ids), the support set,
the matching set and, per query, the label, the word the speech step heard, the image chosen, right
or wrong at each stage and both distances. Two runs with the same episode ids can be compared query
by query (``edge.bench.compare``).
"""
from __future__ import annotations

import hashlib
import json
import platform
import shlex
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Sequence

import edge
from edge.bench.episodes import Episode
from edge.bench.manifest import ImageItem, SpeechItem
from edge.bench.runner import EpisodeOutcome

RESULTS_FORMAT = 2  # 1: the summary alone (no per_episode)


class ResultsError(ValueError):
    """A results file cannot be read or used; the message names the file."""


def _git(repo: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state(repo: Path | None = None) -> dict[str, Any]:
    """The commit of the checkout showsay runs from, and whether tracked files differ from it; nulls outside a checkout."""
    repo = Path(edge.__file__).resolve().parent.parent if repo is None else repo
    if not (repo / ".git").exists():  # an installed package, not a checkout
        return {"git_commit": None, "git_dirty": None}
    commit = _git(repo, "rev-parse", "HEAD")
    status = _git(repo, "status", "--porcelain", "--untracked-files=no") if commit else None
    return {"git_commit": commit, "git_dirty": None if status is None else bool(status)}


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def file_sha256(path: Path) -> str | None:
    """SHA-256 of a file's bytes (None when it cannot be read)."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


def provenance(argv: Sequence[str], arguments: dict[str, Any], manifests: dict[str, Path]) -> dict[str, Any]:
    """Where a run came from: versions, commit, the process's command line and parsed options, time, the manifests it read."""
    return {
        "showsay_version": edge.__version__,
        **git_state(),
        "command": shlex.join([Path(argv[0]).name if argv else "showsay", *argv[1:]]),
        "arguments": arguments,
        "time_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": platform.python_version(),
        "libraries": {name: _version(name) for name in ("numpy", "scipy", "onnxruntime", "opencv-python-headless")},
        "manifests": {kind: {"path": str(p), "sha256": file_sha256(p)} for kind, p in manifests.items()},
    }


def _speech_key(it: SpeechItem) -> list[str]:
    return [it.label, it.speaker, it.path.name]


def _image_key(it: ImageItem) -> list[Any]:
    return [it.label, it.path.name, it.view]


def episode_id(ep: Episode, speech: Sequence[SpeechItem], images: Sequence[ImageItem]) -> str:
    """A short hash of the files an episode drew (by label, speaker and file name) and their order."""
    drawn = {
        "classes": list(ep.classes),
        "support": [[*_speech_key(speech[s]), *_image_key(images[i])] for s, i in zip(ep.support_speech, ep.support_images)],
        "queries": [_speech_key(speech[q]) for q in ep.queries],
        "matching": [_image_key(images[m]) for m in ep.matching],
    }
    return hashlib.sha256(json.dumps(drawn, sort_keys=True).encode()).hexdigest()[:16]


def _r(x: float) -> float:
    return round(float(x), 6)


def episode_record(index: int, o: EpisodeOutcome, speech: Sequence[SpeechItem], images: Sequence[ImageItem]) -> dict[str, Any]:
    """One episode as JSON: what it drew and, per query, what each stage chose."""
    ep = o.episode
    queries = []
    for q, a in zip(ep.queries, o.queries):
        queries.append({
            "utterance": str(speech[q].path), "speaker": speech[q].speaker, "label": a.label,
            "heard": a.heard, "speech_distance": _r(a.speech_distance), "speech_right": a.heard == a.label,
            "image": str(images[ep.matching[a.chosen]].path), "chosen": ep.classes[a.chosen], "image_distance": _r(a.image_distance),
            "right": ep.classes[a.chosen] == a.label,
            "chosen_distance_only": ep.classes[a.chosen_distance_only], "distance_only_right": ep.classes[a.chosen_distance_only] == a.label,
            "miss": {"right": None, "speech": "speech", "image": "image"}[a.verdict(ep.classes)],
        })
    return {
        "seed": o.seed,
        "index": index,
        "id": episode_id(ep, speech, images),
        "classes": list(ep.classes),
        "teaching": list(ep.teaching),
        "support": [{"utterance": str(speech[s].path), "speaker": speech[s].speaker, "label": lab, "image": str(images[i].path)}
                    for s, i, lab in zip(ep.support_speech, ep.support_images, ep.support_labels)],
        "matching": [str(images[m].path) for m in ep.matching],
        "accuracy": o.multimodal, "accuracy_distance_only": o.multimodal_distance_only, "speech_accuracy": o.speech, "image_accuracy": o.image,
        "queries": queries,
        "image_only": [{"label": lab, "nearest": near, "right": near == lab} for lab, near in zip(ep.classes, o.image_nearest)],
    }


def episode_records(outcomes: Sequence[EpisodeOutcome], speech: Sequence[SpeechItem], images: Sequence[ImageItem]) -> list[dict[str, Any]]:
    """Every episode's record; ``index`` counts within its seed."""
    records, seen = [], {}
    for o in outcomes:
        k = seen[o.seed] = seen.get(o.seed, -1) + 1
        records.append(episode_record(k, o, speech, images))
    return records


def write_results(path: Path, summary: dict[str, Any]) -> None:
    """The summary indented, each ``per_episode`` record on one line (a 400-episode seed is a few MB)."""
    body = {k: v for k, v in summary.items() if k != "per_episode"}
    body["format"] = RESULTS_FORMAT
    text = json.dumps(body, indent=2)
    episodes = summary.get("per_episode")
    if episodes is not None:
        lines = ",\n".join("    " + json.dumps(r, separators=(",", ":")) for r in episodes)
        text = text[:-2] + ',\n  "per_episode": [\n' + lines + "\n  ]\n}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n", encoding="utf-8")


def read_results(path: Path) -> dict[str, Any]:
    """A results file written by ``showsay bench --json``, with its per-episode records."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ResultsError(f"{path}: no such results file") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise ResultsError(f"{path}: not a readable results JSON ({exc})") from None
    if not isinstance(data, dict) or "accuracy" not in data:
        raise ResultsError(f"{path}: not a showsay bench results file")
    if not isinstance(data.get("per_episode"), list) or not data["per_episode"]:
        raise ResultsError(f"{path}: has no per-episode results (written before they were recorded?); rerun showsay bench --json")
    return data
