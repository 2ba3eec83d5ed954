"""``ufer noise``: write a copy of a manifest with label noise injected into some splits."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ufer.data import schema
from ufer.data.manifest import Manifest, read_manifest
from ufer.data.noise import (
    DEFAULT_PAIRS,
    check_output,
    load_label_list,
    load_transition,
    pairs_by_name,
    pairwise_matrix,
    write_noisy_manifest,
)

_EPILOG = """\
The input manifest is never modified. The new manifest keeps `given_label` (the label
before noise), `clean_label` (the true label if the input had one, else the label before
noise), the noisy `label`, and `noisy` (label != clean_label); its sidecar records the
protocol, rate, seed, splits, flipped count and realised rate. Image paths are rewritten
relative to OUT's folder.

examples:
  ufer noise data/m.csv --out data/m_sym30.csv --protocol symmetric --rate 0.3 --seed 0
  ufer noise data/m.csv --out noisy/m.csv --protocol pairwise --rate 0.2 --seed 1
  ufer noise data/m.csv --out noisy/m.csv --protocol matrix --matrix T.csv --seed 2
  ufer noise rafdb/m.csv --out rafdb/m_eac10.csv --protocol list --list noise01.txt
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "noise", help="inject label noise into a manifest (writes a new one)",
        description=__doc__.splitlines()[0].split(": ", 1)[1], epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest", type=Path, metavar="MANIFEST",
                        help="input manifest (.csv or .parquet with its .json sidecar)")
    parser.add_argument("--out", type=Path, required=True, metavar="OUT",
                        help="new manifest (.csv or .parquet); must differ from MANIFEST and "
                             "not share its sidecar")
    parser.add_argument("--protocol", required=True,
                        choices=("symmetric", "pairwise", "matrix", "list"),
                        help="symmetric: each label changed with probability RATE to a uniform "
                             "other class; pairwise: RATE of each class moved to its partner "
                             "(--pairs); matrix: class-conditional flips along --matrix; "
                             "list: labels read from an EAC-style list (--list)")
    parser.add_argument("--rate", type=float, metavar="R",
                        help="noise rate in [0, 1] (symmetric, pairwise)")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="random seed; same seed, same noisy labels (default: 0)")
    parser.add_argument("--exact", action="store_true",
                        help="symmetric: change exactly round(R * N) labels instead of each "
                             "with probability R")
    parser.add_argument("--matrix", type=Path, metavar="FILE",
                        help="matrix: C x C transition matrix (.csv without header or .npy), "
                             "T[i, j] = P(noisy = j | given = i), rows summing to 1")
    default_pairs = ", ".join(f"{a}={b}" for a, b in DEFAULT_PAIRS.items())
    parser.add_argument("--pairs", metavar="A=B,...", default=default_pairs,
                        help=f"pairwise: class-name pairs source=target (default: "
                             f"{default_pairs}; pairs naming unknown classes are skipped)")
    parser.add_argument("--list", type=Path, metavar="FILE", dest="label_list",
                        help="list: '<image name> <label 1-based>' per line (EAC's noise01.txt)")
    parser.add_argument("--splits", nargs="+", default=["train"], choices=schema.SPLITS,
                        metavar="SPLIT", help="splits whose labels change (default: train)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace OUT if it exists (never the input manifest)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        check_output(args.manifest, args.out, args.overwrite)
        manifest = read_manifest(args.manifest)
        _, noise = write_noisy_manifest(
            manifest, args.out, overwrite=args.overwrite, protocol=args.protocol,
            rate=args.rate, seed=args.seed, exact=args.exact,
            transition=_transition(args, manifest), splits=args.splits,
            label_list=load_label_list(args.label_list) if args.label_list else None)
    except (OSError, ValueError) as exc:
        print(f"ufer noise: error: {exc}", file=sys.stderr)
        return 1
    _summary(noise, manifest.classes, args.out)
    return 0


def _transition(args: argparse.Namespace, manifest: Manifest) -> np.ndarray | None:
    c = manifest.num_classes
    if args.protocol == "matrix":
        if args.matrix is None:
            raise ValueError("--protocol matrix needs --matrix FILE")
        return load_transition(args.matrix, c)
    if args.protocol == "pairwise":
        if args.rate is None:
            raise ValueError("--protocol pairwise needs --rate")
        return pairwise_matrix(c, args.rate, pairs_by_name(manifest.classes, _pairs(args.pairs)))
    return None


def _pairs(text: str) -> dict[str, str]:
    pairs = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        source, sep, target = item.partition("=")
        if not sep or not source or not target:
            raise ValueError(f"--pairs: expected 'source=target', got {item!r}")
        pairs[source.strip()] = target.strip()
    return pairs


def _summary(noise: dict, classes: list[str], out: Path) -> None:
    print(f"wrote {out} ({noise['protocol']} noise, seed {noise['seed']}, "
          f"splits {', '.join(noise['splits'])})")
    print(f"flipped {noise['flipped']} labels, realised rate {noise['realised_rate']:.4f}")
    counts = pd.DataFrame(noise["flip_counts"], index=classes, columns=classes)
    counts.index.name = "given \\ noisy"
    print(counts.to_string())
