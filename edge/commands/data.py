"""``showsay data``: write benchmark manifests for the data sets in ../shared/data."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from edge.bench.datasets import coil20_manifest, fsdd_manifest, mnist_manifest
from edge.bench.manifest import ManifestError


def register(sub: argparse._SubParsersAction) -> None:
    """Add the subcommand and its three data sets."""
    p = sub.add_parser("data", help="write benchmark manifests for FSDD, MNIST and COIL-20")
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
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Write the requested manifest."""
    try:
        if args.dataset == "fsdd":
            n, where = fsdd_manifest(args.root, args.out), args.out
        elif args.dataset == "mnist":
            n, where = mnist_manifest(args.root, args.out, args.per_class), args.out / "mnist.csv"
        else:
            n, where = coil20_manifest(args.npz, args.out), args.out / "coil20.csv"
    except (ManifestError, OSError) as exc:
        print(f"showsay data: {exc}", file=sys.stderr)
        return 1
    print(f"{where}: {n} items")
    return 0
