"""``showsay scenes``: candidate finders on composed scenes (recall, candidates per frame) and the scene-level bench."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np

from edge.bench.episodes import EpisodeError
from edge.bench.manifest import ManifestError, read_image_manifest, read_speech_manifest
from edge.bench.runner import BenchSettings
from edge.bench.scenes import BACKGROUNDS, SceneError, SceneSettings, load_backgrounds, random_scenes, run_scene_benchmark, save_frames, score_finder
from edge.config import ConfigError, load_config
from edge.encoders import load_image_encoder, load_speech_encoder
from edge.images import ImageError
from edge.model_io import ModelError


def register(sub: argparse._SubParsersAction) -> None:
    """Add the subcommand."""
    p = sub.add_parser("scenes", help="compose scenes of objects on real photographs; score candidate finders and the scene-level bench")
    p.add_argument("--images", required=True, type=Path, help="image manifest of studio object images (path,label[,view]), e.g. from 'showsay data coil20'")
    p.add_argument("--finders", default="contours,grid", help="comma-separated finders to score: contours, grid, center (edge.candidates), with the config's candidates settings")
    p.add_argument("--frames", type=int, default=100, help="scenes to compose for the recall measurement")
    p.add_argument("--objects", type=int, default=6, help="objects per scene for the recall measurement")
    p.add_argument("--backgrounds", default=",".join(BACKGROUNDS), help=f"background photographs from scikit-image's bundled data: {','.join(BACKGROUNDS)}")
    p.add_argument("--seed", type=int, default=0, help="scene seed")
    p.add_argument("--save-frames", type=Path, help="also write the recall scenes here as frames/%%04d.png (a cv2.VideoCapture image sequence) and boxes.csv (frame,label,x,y,w,h)")
    p.add_argument("--speech", type=Path, help="speech manifest: also run the scene-level bench (matching set from the finder)")
    p.add_argument("--bench-finder", default="contours", help="finder for the scene-level bench: a finder name, or 'oracle' (the true boxes)")
    p.add_argument("--ways", type=int, default=10, help="classes per episode (objects per scene in the bench)")
    p.add_argument("--shots", type=int, default=1, help="support pairs per class")
    p.add_argument("--episodes", type=int, default=200, help="episodes (one scene each)")
    p.add_argument("--queries", type=int, default=10, help="spoken queries per episode")
    p.add_argument("--min-view-gap", type=int, default=0, help="support and matching views at least this many views apart")
    p.add_argument("--teach-views", type=int, default=1, metavar="N", help="support images per taught pair: the taught view and those around it (needs a view column)")
    p.add_argument("--mirror-views", action="store_true", help="also store every support view flipped left-right, as the daemon's teach.mirror_views does")
    p.add_argument("--teach-view-step", type=int, default=1, metavar="S", help="with --teach-views: views S apart, centred on the taught one")
    p.add_argument("--speech-encoder", help="keywords, triplet, ensemble, dtw, or an .onnx path (fused with DTW at the config's "
                   "encoders.fuse_dtw); default: the config's encoders.speech")
    p.add_argument("--image-encoder", help="pixels, digits, objects, or an .onnx path; default: the config's encoders.image")
    p.add_argument("--config", type=Path, help="YAML config (speech features, encoder threads, candidates settings)")
    p.add_argument("--json", type=Path, help="write the results here")
    p.set_defaults(func=run)


def _finder(name: str, cfg):  # -> Finder
    """A boxes-only finder from edge.candidates with the config's settings, ``name`` replacing its finder."""
    import dataclasses

    from edge import candidates

    settings = dataclasses.replace(cfg.candidates, finder=name)
    finder = candidates.make_finder(settings)
    return lambda frame: [c.box for c in finder.find(frame)]


def run(args: argparse.Namespace) -> int:
    """Score the finders, then (with --speech) run the scene-level bench."""
    results: dict = {"finders": {}}
    try:
        cfg = load_config(args.config)
        images = read_image_manifest(args.images)
        backgrounds = load_backgrounds([b.strip() for b in args.backgrounds.split(",") if b.strip()])
        scene_settings = SceneSettings()
        finders = [f.strip() for f in args.finders.split(",") if f.strip()]
        if finders or args.save_frames:
            scenes = random_scenes(images, backgrounds, args.frames, args.objects, np.random.default_rng(args.seed), scene_settings)
        if args.save_frames:
            n = save_frames(args.save_frames, scenes)
            print(f"{args.save_frames}: {len(scenes)} frames, {n} boxes")
        if finders:
            print("| finder | recall at IoU >= 0.5 % | candidates per frame | ms per frame |\n|---|---|---|---|")
            for name in finders:
                score = score_finder(_finder(name, cfg), scenes)
                results["finders"][name] = score.as_dict()
                print(f"| {name} | {100 * score.recall:.1f} | {score.candidates_per_frame:.1f} | {score.ms_per_frame:.1f} |")
            print(f"({args.frames} scenes of {args.objects} objects, {scene_settings.frame_width_px}x{scene_settings.frame_height_px}, backgrounds {args.backgrounds})")
        if args.speech:
            enc = dataclasses.replace(cfg.encoders, speech=args.speech_encoder or cfg.encoders.speech, image=args.image_encoder or cfg.encoders.image)
            bench = BenchSettings(ways=args.ways, shots=args.shots, episodes=args.episodes, queries=args.queries, seeds=(args.seed,),
                                  min_view_gap=args.min_view_gap, teach_views=args.teach_views, teach_view_step=args.teach_view_step, mirror_views=args.mirror_views,
                                  mutual_exclusivity=cfg.matching.mutual_exclusivity,
                                  word_best_of=cfg.matching.word_best_of, dtw_warp=cfg.matching.dtw_warp)
            finder = None if args.bench_finder == "oracle" else _finder(args.bench_finder, cfg)
            summary = run_scene_benchmark(
                read_speech_manifest(args.speech), images, load_speech_encoder(enc, cfg.speech_features), load_image_encoder(enc),
                cfg.speech_features, bench, finder, backgrounds, scene_settings, cfg.matching.not_in_view_distance,
            )
            summary["finder"] = args.bench_finder
            results["bench"] = summary
            print(
                f"\nscene-level bench (protocol {summary['protocol']}: speech {summary['speech_encoder']}, image {summary['image_encoder']}), "
                f"finder {args.bench_finder}, {args.ways}-way {args.shots}-shot, {args.episodes} scenes: "
                f"multimodal {100 * summary['accuracy']:.1f} ± {100 * summary['ci95']:.1f} % (distance only {100 * summary['accuracy_distance_only']:.1f} %), image-only {100 * summary['image_accuracy']:.1f} ± {100 * summary['image_ci95']:.1f} %, "
                f"finder recall {100 * summary['finder_recall']:.1f} %, {summary['candidates_per_frame']:.1f} candidates per frame"
            )
    except (ConfigError, ModelError, ManifestError, EpisodeError, SceneError, ImageError, OSError) as exc:
        print(f"showsay scenes: {exc}", file=sys.stderr)
        return 1
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0
