"""``showsay bench``: one-shot accuracy of an encoder pair on real recordings and images."""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from edge.bench.compare import compare_files, compare_table
from edge.bench.episodes import EpisodeError
from edge.bench.manifest import ManifestError, check_files, read_image_manifest, read_speech_manifest
from edge.bench.report import markdown_table, save_plot
from edge.bench.results import ResultsError, episode_records, provenance, write_results
from edge.bench.runner import BenchSettings, run_benchmark
from edge.config import ConfigError, load_config
from edge.encoders import EncoderSettings, load_image_encoder, load_speech_encoder
from edge.model_io import ModelError


def _seeds(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(s) for s in text.split(",") if s.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"seeds must be comma-separated integers, got {text!r}") from None


def _temperature(text: str) -> float | str:
    if text.strip().lower() in ("off", "none", "null"):
        return "off"
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value >= 0.001:
        raise argparse.ArgumentTypeError(f"a temperature >= 0.001 or off, got {text!r}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    """Add the subcommand."""
    p = sub.add_parser("bench", help="one-shot multimodal matching accuracy (the seeds' protocol)")
    p.add_argument("--speech", type=Path, help="speech manifest CSV: path,label,speaker (required unless --compare)")
    p.add_argument("--images", type=Path, help="image manifest CSV: path,label[,view] (required unless --compare)")
    p.add_argument("--ways", type=int, default=10, help="classes per episode (L)")
    p.add_argument("--shots", type=int, default=1, help="support pairs per class (K)")
    p.add_argument("--episodes", type=int, default=400, help="episodes per seed")
    p.add_argument("--queries", type=int, default=10, help="spoken queries per episode")
    p.add_argument("--seed", type=int, default=0, help="episode seed (ignored when --seeds is given)")
    p.add_argument("--seeds", type=_seeds, help="several episode seeds, e.g. 0,1,2")
    p.add_argument("--speakers", choices=("different", "same"), default="different", help="queries from speakers other than the teacher (default) or from the teacher")
    p.add_argument("--teachers", choices=("one", "half"), default="one",
                   help="one teacher per episode says every class (default, the seeds' protocol), or half the speakers, drawn per episode, "
                        "teach (any of them may say a class) and only the other half ask")
    p.add_argument("--min-view-gap", type=int, default=0, help="support and matching views of an object at least this many views apart (needs a view column)")
    p.add_argument("--teach-views", type=int, default=1, metavar="N",
                   help="support images per taught pair: the taught view and the views around it, as a teacher turning the object shows them (needs a view column; default 1)")
    p.add_argument("--teach-view-step", type=int, default=1, metavar="S",
                   help="with --teach-views: views S apart, centred on the taught one (0, +S, -S, +2S, ...); --min-view-gap is kept from each")
    p.add_argument("--mirror-views", action="store_true",
                   help="also store every support view flipped left-right, as the daemon's teach.mirror_views (on by default there) does")
    p.add_argument("--pairs-as-words", action="store_true", help="treat each support pair as its own word (K-shot: compare with the nearest utterance's image only)")
    p.add_argument("--speech-encoder", help="keywords, triplet, ensemble, dtw, an .onnx path, or efficientword-net (the peer, if installed); default: the config's encoders.speech")
    p.add_argument("--image-encoder", help="pixels, digits, objects, or an .onnx path; default: the config's encoders.image")
    p.add_argument("--fuse-dtw", type=float, metavar="W",
                   help="fuse DTW with a model speech encoder at this weight, 0-1 (encoders.fuse_dtw; default: the config's, which when null is "
                        "the weight chosen for that encoder: keywords 0, triplet 0.5)")
    p.add_argument("--mutual-exclusivity", type=_temperature, metavar="T|off",
                   help="rank candidates with mutual exclusivity at this temperature (matching.mutual_exclusivity; default: the config's); "
                        "the distance-only ranking is always reported beside it")
    p.add_argument("--word-best-of", type=int, metavar="N",
                   help="a request names the word whose N nearest taught utterances are nearest on average (matching.word_best_of; default: the config's; 1: the nearest utterance)")
    p.add_argument("--dtw-warp", type=float, metavar="W",
                   help="DTW also compares each query with copies of it whose frequencies are scaled by 1 - W and 1 + W "
                        "(matching.dtw_warp; default: the config's; 0: as heard, the seeds' baseline)")
    p.add_argument("--config", type=Path, help="YAML config for the speech feature settings and encoder threads")
    p.add_argument("--json", type=Path, help="write the summary here")
    p.add_argument("--plot", type=Path, help="write a PNG of a few episodes and the accuracy bars here")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--compare", nargs=2, type=Path, metavar=("A.json", "B.json"),
                   help="compare two --json results drawn on the same episodes, query by query (paired bootstrap over episodes, McNemar), and exit")
    p.set_defaults(func=run)


def _arguments(args: argparse.Namespace) -> dict[str, object]:
    """The parsed options, JSON-ready (the defaults filled in: what the run used, whatever the command line left out)."""
    out: dict[str, object] = {}
    for k, v in vars(args).items():
        if k in ("func", "compare") or callable(v):
            continue
        out[k] = str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v
    return out


def run_compare(path_a: Path, path_b: Path) -> int:
    """Print B - A at each stage with paired intervals; refuse runs not drawn on the same episodes."""
    try:
        results, differences, warnings = compare_files(path_a, path_b)
    except ResultsError as exc:
        print(f"showsay bench --compare: {exc}", file=sys.stderr)
        return 1
    for w in warnings:
        print(f"showsay bench --compare: warning: {w}", file=sys.stderr)
    print(compare_table(results, str(path_a), str(path_b)))
    print("\nsettings that differ (A -> B): " + ("; ".join(differences) if differences else "none"))
    return 0


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print the table."""
    if args.compare:
        return run_compare(*args.compare)
    for name in ("speech", "images"):
        if getattr(args, name) is None:
            print(f"showsay bench: --{name} is required (or --compare A.json B.json)", file=sys.stderr)
            return 1
    for name in ("ways", "shots", "episodes", "queries"):
        if getattr(args, name) < 1:
            print(f"showsay bench: --{name} must be >= 1, got {getattr(args, name)}", file=sys.stderr)
            return 1
    try:
        cfg = load_config(args.config)
        if args.fuse_dtw is not None and not 0.0 <= args.fuse_dtw <= 1.0:
            raise ValueError(f"--fuse-dtw must be in [0, 1], got {args.fuse_dtw}")
        if args.dtw_warp is not None and not 0.0 <= args.dtw_warp <= 0.5:
            raise ValueError(f"--dtw-warp must be in [0, 0.5], got {args.dtw_warp}")
        if args.word_best_of is not None and args.word_best_of < 1:
            raise ValueError(f"--word-best-of must be >= 1, got {args.word_best_of}")
        enc = dataclasses.replace(  # the product's settings unless an option says otherwise: one source of truth
            cfg.encoders,
            speech=args.speech_encoder or cfg.encoders.speech,
            image=args.image_encoder or cfg.encoders.image,
            fuse_dtw=cfg.encoders.fuse_dtw if args.fuse_dtw is None else args.fuse_dtw,
        )
        if enc.speech == "efficientword-net":  # benchmark-only peer
            from edge.bench.peers import EfficientWordNetSpeech

            speech_enc = EfficientWordNetSpeech(threads=cfg.encoders.threads)
        else:
            speech_enc = load_speech_encoder(enc, cfg.speech_features)
        image_enc = load_image_encoder(enc)
        speech = read_speech_manifest(args.speech)
        images = read_image_manifest(args.images)
        check_files(args.speech, speech)  # every missing or unreadable file at once, before any episode
        check_files(args.images, images)
        settings = BenchSettings(
            ways=args.ways, shots=args.shots, episodes=args.episodes, queries=args.queries, speakers=args.speakers, teachers=args.teachers,
            seeds=args.seeds or (args.seed,), min_view_gap=args.min_view_gap,
            teach_views=args.teach_views, teach_view_step=args.teach_view_step, mirror_views=args.mirror_views,
            pairs_as_words=args.pairs_as_words, mutual_exclusivity={None: cfg.matching.mutual_exclusivity, "off": None}.get(args.mutual_exclusivity, args.mutual_exclusivity),
            word_best_of=cfg.matching.word_best_of if args.word_best_of is None else args.word_best_of,
            dtw_warp=cfg.matching.dtw_warp if args.dtw_warp is None else args.dtw_warp,
        )
        summary, outcomes = run_benchmark(speech, images, speech_enc, image_enc, cfg.speech_features, settings, progress=not args.quiet and sys.stderr.isatty())
    except (ConfigError, ModelError, ManifestError, EpisodeError, ValueError, OSError) as exc:
        print(f"showsay bench: {exc}", file=sys.stderr)
        return 1
    summary["speech_manifest"], summary["image_manifest"] = str(args.speech), str(args.images)
    summary["fuse_dtw"] = summary["settings"]["fuse_dtw"] = getattr(speech_enc, "dtw_weight", 0.0)  # the weight in effect
    summary["provenance"] = provenance(sys.argv, _arguments(args), {"speech": args.speech, "images": args.images})
    print(markdown_table([summary]))
    print(f"\nsettings: fuse_dtw {summary['fuse_dtw']:g}, word_best_of {summary['word_best_of']}, mutual_exclusivity "
          f"{summary['mutual_exclusivity']}, dtw_warp {summary['dtw_warp']}; protocol {summary['protocol']} "
          f"(speech {summary['speech_protocol']}, images {summary['image_protocol']})")
    print(
        f"\n{summary['seconds_per_query'] * 1000:.2f} ms per query in all ({summary['matching_seconds_per_query'] * 1000:.2f} ms matching, "
        f"{summary['embedding_seconds']:.1f} s features and embedding; {summary['speech_ms_per_utterance']:.2f} ms per utterance: read, features, embed)"
    )
    try:
        if args.json:
            write_results(args.json, {**summary, "per_episode": episode_records(outcomes, speech, images)})
        if args.plot:
            save_plot(args.plot, summary, outcomes, speech, images)
    except (OSError, ValueError) as exc:  # an unwritable output, an image that broke since the check
        print(f"showsay bench: {exc}", file=sys.stderr)
        return 1
    return 0
