"""``showsay data``: write benchmark manifests for the data sets in ../shared/data."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge.bench.datasets import (
    coil20_manifest,
    fsdd_manifest,
    mnist_manifest,
    omniglot_manifest,
    speech_commands_manifest,
    speechocean762_manifest,
)
from edge.bench.manifest import ManifestError


def register(sub: argparse._SubParsersAction) -> None:
    """Add the subcommand and its data sets."""
    p = sub.add_parser("data", help="write benchmark manifests for FSDD, MNIST, COIL-20, Speech Commands, speechocean762 and Omniglot")
    kinds = p.add_subparsers(dest="dataset", metavar="DATASET", required=True)
    f = kinds.add_parser("fsdd", help="speech manifest of the Free Spoken Digit Dataset (wavs stay where they are)")
    f.add_argument("--root", type=Path, required=True, help="folder of {digit}_{speaker}_{n}.wav files")
    f.add_argument("--out", type=Path, required=True, help="CSV to write")
    m = kinds.add_parser("mnist", help="unpack MNIST test idx files to PNGs + mnist.csv")
    m.add_argument("--root", type=Path, required=True, help="folder with t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz")
    m.add_argument("--out", type=Path, required=True, help="folder to write images/ and mnist.csv into")
    m.add_argument("--per-class", type=int, help="keep only the first N images of each digit")
    c = kinds.add_parser("coil20", help="unpack the COIL-20 npz to PNGs + coil20.csv (with views; object k -> label k-1)")
    c.add_argument("--npz", type=Path, required=True, help="coil20_objects_01_10.npz")
    c.add_argument("--out", type=Path, required=True, help="folder to write images/ and coil20.csv into")
    sc = kinds.add_parser("speech-commands", help="speech manifest of Speech Commands ({word}/{speaker}_nohash_{n}.wav; wavs stay where they are)")
    sc.add_argument("--root", type=Path, required=True, help="folder with one subfolder per word")
    sc.add_argument("--out", type=Path, required=True, help="CSV to write")
    so = kinds.add_parser("speechocean762", help="speech manifest of the speechocean762_words folder (FLAC stays where it is)")
    so.add_argument("--root", type=Path, required=True, help="the speechocean762_words folder (with manifest.csv)")
    so.add_argument("--out", type=Path, required=True, help="CSV to write")
    so.add_argument("--split", choices=("validation", "all"), default="validation",
                    help="validation (default): the held-out speakers and words no shipped encoder was trained on; all: every clip")
    om = kinds.add_parser("omniglot", help="give each label of a speech manifest an Omniglot character: PNGs + omniglot.csv")
    om.add_argument("--npz", type=Path, required=True, help="images_evaluation.npz (the characters no shipped image encoder was trained on)")
    om.add_argument("--labels-from", type=Path, required=True, help="speech manifest whose labels get a character each")
    om.add_argument("--out", type=Path, required=True, help="folder to write images/ and omniglot.csv into")
    om.add_argument("--seed", type=int, default=0, help="which characters are drawn")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the requested manifest."""
    try:
        if args.dataset == "fsdd":
            n, where = fsdd_manifest(args.root, args.out), args.out
        elif args.dataset == "mnist":
            n, where = mnist_manifest(args.root, args.out, args.per_class), args.out / "mnist.csv"
        elif args.dataset == "coil20":
            n, where = coil20_manifest(args.npz, args.out), args.out / "coil20.csv"
        elif args.dataset == "speech-commands":
            n, where = speech_commands_manifest(args.root, args.out), args.out
        elif args.dataset == "speechocean762":
            n, where = speechocean762_manifest(args.root, args.out, args.split), args.out
        else:
            n, where = omniglot_manifest(args.npz, args.labels_from, args.out, args.seed), args.out / "omniglot.csv"
    except (ManifestError, OSError) as exc:
        print(f"showsay data: {exc}", file=sys.stderr)
        return 1
    print(f"{where}: {n} items")
    return 0
