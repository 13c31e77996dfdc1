"""The seeds' table: each system over its training seeds on FSDD x MNIST, 1- and 5-shot, different and same speakers.

    python tools/seeds_table.py --spec tools/seeds_table.yaml --json out/seeds_table.json
    python tools/seeds_table.py --spec tools/seeds_table.yaml --json out/seeds_table.json --render   # one line per row

The spec (YAML) lists rows: ``name``, ``protocol`` (seeds / pretrained), ``data`` (what it was trained
on), ``fuse_dtw`` (0: the embedding alone), optional ``episodes`` per shot count, and ``pairs``: one
``{speech, image}`` per training seed (names or .onnx paths as ``showsay bench`` takes them, speech
``efficientword-net`` for the peer). Every pair runs the benchmark with the same episodes (episode
seed 0, the config's mutual exclusivity and ``word_best_of``); a row prints the mean over its pairs
with a t-based 95% interval over them (over episodes when it has one pair) and the pairs' own values.
This is the TEST set: it is reported, never used to choose anything.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from scipy import stats

from edge.bench.manifest import read_image_manifest, read_speech_manifest
from edge.bench.runner import BenchSettings, run_benchmark
from edge.config import load_config
from edge.encoders import EncoderSettings, load_image_encoder, load_speech_encoder


def over_seeds(values: list[float], episode_ci: float) -> tuple[float, float]:
    """Mean and t-based 95% half-width over training seeds (the episodes' interval with one seed)."""
    v = np.asarray(values, np.float64)
    if v.size < 2:
        return float(v.mean()), episode_ci
    return float(v.mean()), float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))


def run_row(row: dict[str, Any], speech, images, cfg, speakers: str, shots: int, episodes: int) -> dict[str, Any]:
    """The benchmark for every pair of one row in one setting."""
    results = []
    for pair in row["pairs"]:
        enc = EncoderSettings(speech=pair["speech"] if pair["speech"] != "efficientword-net" else "dtw", image=pair["image"],
                              threads=cfg.encoders.threads, fuse_dtw=float(row.get("fuse_dtw", 0.0)))
        if pair["speech"] == "efficientword-net":
            from edge.bench.peers import EfficientWordNetSpeech

            speech_enc = EfficientWordNetSpeech(threads=cfg.encoders.threads)
        else:
            speech_enc = load_speech_encoder(enc, cfg.speech_features)
        settings = BenchSettings(ways=10, shots=shots, episodes=episodes, queries=10, speakers=speakers, seeds=(0,),
                                 mutual_exclusivity=cfg.matching.mutual_exclusivity, word_best_of=cfg.matching.word_best_of, dtw_warp=0.0)
        summary, _ = run_benchmark(speech, images, speech_enc, load_image_encoder(enc), cfg.speech_features, settings, progress=False)
        results.append(summary)
    out: dict[str, Any] = {"name": row["name"], "protocol": row["protocol"], "data": row["data"], "speakers": speakers, "shots": shots,
                           "episodes": episodes, "encoders": [[r["speech_encoder"], r["image_encoder"]] for r in results]}
    for key, ci_key in (("accuracy", "ci95"), ("speech_accuracy", "speech_ci95"), ("image_accuracy", "image_ci95")):
        vals = [r[key] for r in results]
        out[key], out[key + "_ci95"] = over_seeds(vals, results[0][ci_key])
        out[key + "_per_seed"] = vals
    out["speech_ms_per_utterance"] = float(np.mean([r["speech_ms_per_utterance"] for r in results]))
    return out


def fmt(r: dict[str, Any], key: str, seeds: bool) -> str:
    s = f"{100 * r[key]:.1f} ± {100 * r[key + '_ci95']:.1f}"
    if seeds and len(r[key + "_per_seed"]) > 1:
        s += " (" + " / ".join(f"{100 * v:.1f}" for v in r[key + "_per_seed"]) + ")"
    return s


def render(results: list[dict[str, Any]], spec_rows: list[dict[str, Any]]) -> list[str]:
    """One Markdown line per system (in the spec's order; the last result of each setting wins): multimodal /
    speech-only per setting, image-only one- and five-shot, and what it was trained on."""
    settings = [("different", 1), ("different", 5), ("same", 1), ("same", 5)]
    by = {(r["name"], r["speakers"], r["shots"]): r for r in results}
    head = "| system | protocol | " + " | ".join(f"{sp} {k}-shot: multimodal / speech-only" for sp, k in settings)
    lines = [head + " | image-only 1 / 5-shot | trained on |", "|---|---|" + "---|" * (len(settings) + 2)]
    for row in spec_rows:
        got = [by.get((row["name"], sp, k)) for sp, k in settings]
        if not any(got):
            continue
        cells = [f"{fmt(r, 'accuracy', True)} / {fmt(r, 'speech_accuracy', True)}" if r else "" for r in got]
        image = " / ".join(f"{100 * r['image_accuracy']:.1f}" for r in (got[0], got[1]) if r)
        lines.append(f"| {row['name']} | {row['protocol']} | " + " | ".join(cells) + f" | {image} | {row['data']} |")
    return lines


def main() -> int:
    """Run every row in every setting and print the table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", type=Path, required=True)
    ap.add_argument("--speech", type=Path, default=Path("out/data/fsdd.csv"))
    ap.add_argument("--images", type=Path, default=Path("out/data/mnist/mnist.csv"))
    ap.add_argument("--episodes", type=int, default=400)
    ap.add_argument("--only", nargs="*", help="names of the rows to run (default: all)")
    ap.add_argument("--settings", nargs="*", default=["different:1", "different:5", "same:1", "same:5"], help="speakers:shots")
    ap.add_argument("--json", type=Path, help="write every result here (appended to what is there)")
    ap.add_argument("--config", type=Path)
    ap.add_argument("--render", action="store_true", help="print the --json results as one line per system and run nothing")
    args = ap.parse_args()
    spec = yaml.safe_load(args.spec.read_text())
    if args.render:
        if not args.json or not args.json.is_file():
            raise SystemExit("--render needs --json with results")
        print("\n".join(render(json.loads(args.json.read_text()), spec["rows"])))
        return 0
    cfg = load_config(args.config)
    speech, images = read_speech_manifest(args.speech), read_image_manifest(args.images)
    done: list[dict[str, Any]] = json.loads(args.json.read_text()) if args.json and args.json.is_file() else []
    print("| system | protocol | trained on | speakers | shots | multimodal | speech-only | image-only |")
    print("|---|---|---|---|---|---|---|---|")
    for row in spec["rows"]:
        if args.only and row["name"] not in args.only:
            continue
        for setting in args.settings:
            speakers, shots = setting.split(":")
            episodes = int(row.get("episodes", {}).get(int(shots), args.episodes))
            r = run_row(row, speech, images, cfg, speakers, int(shots), episodes)
            print(f"| {r['name']} | {r['protocol']} | {r['data']} | {speakers} | {shots} | {fmt(r, 'accuracy', True)} | "
                  f"{fmt(r, 'speech_accuracy', True)} | {fmt(r, 'image_accuracy', False)} |", flush=True)
            done.append(r)
            if args.json:
                args.json.parent.mkdir(parents=True, exist_ok=True)
                args.json.write_text(json.dumps(done, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
