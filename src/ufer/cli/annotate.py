"""``ufer annotate``: add AU or VA annotations to a manifest, written as a NEW manifest."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from ufer.data.annotate import (
    OPENFACE_KINDS,
    column_va,
    openface_aus,
    prior_aus,
    table_aus,
    table_va,
    write_annotated,
)
from ufer.data.manifest import Manifest, read_manifest

_EPILOG = """\
The input manifest is never modified; OUT (and its sidecar) must not exist unless
--overwrite. The sidecar records the source (au_source / va_source) and its coverage.
The AU prior restates the training label (after `ufer noise`, the noisy one; never
clean_label) and is marked weak.

examples:
  ufer annotate au --manifest data/rafdb/manifest.csv --openface openface_out/ --out data/rafdb/au.csv
  ufer annotate au --manifest data/rafdb/noisy30.csv --source prior --out data/rafdb/noisy30_prior.csv
  ufer annotate au --manifest m.csv --csv my_aus.csv --out m_au.csv
  ufer annotate va --manifest m.csv --csv va.csv --scale 1 9 --out m_va.csv
  ufer annotate va --manifest m.csv --columns val aro --out m_va.csv
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("annotate", help="add AU or VA annotations to a manifest",
                            description=__doc__.split(": ", 1)[1], epilog=_EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = parser.add_subparsers(dest="what", metavar="{au,va}", required=True)
    au = kinds.add_parser("au", help="action units: OpenFace CSVs, a table, or the prior table")
    source = au.add_mutually_exclusive_group(required=True)
    source.add_argument("--openface", type=Path, metavar="DIR_OR_CSV",
                        help="OpenFace 2.x output: one CSV per image (FaceLandmarkImg, or "
                             "FeatureExtraction -f IMAGE), a folder searched recursively")
    source.add_argument("--csv", type=Path, metavar="FILE",
                        help="a table 'path, AU01, AU02, ...' with values in [0, 1]")
    source.add_argument("--source", choices=("prior",),
                        help="prior: the emotion-AU table (POI table I) applied to the label "
                             "column; weak")
    au.add_argument("--kind", choices=tuple(OPENFACE_KINDS), default="presence",
                    help="OpenFace AUxx_c presence (default) or AUxx_r intensity (/5)")
    au.add_argument("--min-confidence", type=float, default=0.8, metavar="C",
                    help="OpenFace faces below this confidence are not used (default: 0.8)")
    va = kinds.add_parser("va", help="valence/arousal: a table or two manifest columns")
    source = va.add_mutually_exclusive_group(required=True)
    source.add_argument("--csv", type=Path, metavar="FILE",
                        help="a table 'path, valence, arousal'")
    source.add_argument("--columns", nargs=2, metavar=("VALENCE", "AROUSAL"),
                        help="two columns of the manifest holding valence and arousal")
    va.add_argument("--scale", nargs=2, type=float, metavar=("LO", "HI"),
                    help="the values lie in [LO, HI]; mapped linearly onto [-1, 1]")
    for sub_parser in (au, va):
        sub_parser.add_argument("--manifest", type=Path, required=True, metavar="M",
                                help="input manifest (.csv or .parquet with its sidecar)")
        sub_parser.add_argument("--out", type=Path, required=True, metavar="OUT",
                                help="the new manifest (.csv or .parquet)")
        sub_parser.add_argument("--overwrite", action="store_true",
                                help="replace OUT if it exists (never the input manifest)")
        sub_parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        manifest = read_manifest(args.manifest)
        values, info = _values(args, manifest)
        write_annotated(manifest, values, info, args.out, what=args.what,
                        overwrite=args.overwrite)
    except (OSError, ValueError) as exc:
        print(f"ufer annotate {args.what}: error: {exc}", file=sys.stderr)
        return 1
    _summary(args, list(values.columns), info)
    return 0


def _values(args: argparse.Namespace, manifest: Manifest) -> tuple[pd.DataFrame, dict]:
    if args.what == "va":
        scale = tuple(args.scale) if args.scale else None
        if args.csv is not None:
            return table_va(manifest, args.csv, scale)
        return column_va(manifest, tuple(args.columns), scale)
    if args.openface is not None:
        return openface_aus(manifest, args.openface, kind=args.kind,
                            min_confidence=args.min_confidence)
    if args.csv is not None:
        return table_aus(manifest, args.csv)
    return prior_aus(manifest)


def _summary(args: argparse.Namespace, columns: list[str], info: dict) -> None:
    cover = info["coverage"]
    weak = " (weak: derived from the labels)" if info.get("weak") else ""
    print(f"wrote {args.out}: {args.what.upper()} from {info['kind']}{weak}")
    print(f"  columns  {', '.join(columns)}")
    splits = ", ".join(f"{s} {v:.1%}" for s, v in cover["per_split"].items())
    print(f"  coverage {cover['annotated']} of {cover['rows']} rows ({cover['share']:.1%}; "
          f"{splits})")
    for what, count in info.get("counts", {}).items():
        print(f"  {what}: {count}")
