"""``ufer pseudo-va``: add valence/arousal to a manifest (for LDLVA), written as a NEW manifest."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from ufer.engine.pseudo_va import pseudo_va

_EPILOG = """\
LDLVA finds each training image's neighbours in valence-arousal space, so it needs VA for
the training images. Predict them with a model that has a VA head, trained on data with VA
(the LDLVA protocol: AffectNet -> RAF-DB), or read your own table. The values come from the
images (or your table) only, never from the class labels. The input manifest is never
modified; OUT (and its sidecar) must not exist unless --overwrite. The sidecar's va_source
records the source and the coverage.

examples:
  ufer train --model MTAC --data.manifest affectnet/manifest.csv --run_dir runs/mtac_affectnet
  ufer pseudo-va --manifest rafdb/manifest.csv --model runs/mtac_affectnet/checkpoints/last.ckpt --out rafdb/manifest_va.csv
  ufer pseudo-va --manifest rafdb/manifest.csv --csv my_va.csv --scale 1 9 --out rafdb/manifest_va.csv
  ufer train --config configs/paper/ldlva_rafdb.yaml --data.manifest rafdb/manifest_va.csv
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("pseudo-va", help="add valence/arousal to a manifest (for LDLVA)",
                            description=__doc__.split(": ", 1)[1], epilog=_EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--manifest", type=Path, required=True, metavar="M",
                        help="input manifest (.csv or .parquet with its sidecar)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, metavar="CKPT",
                        help="a ufer checkpoint whose method predicts valence/arousal "
                             "(e.g. MTAC with its VA branch)")
    source.add_argument("--csv", type=Path, metavar="FILE",
                        help="a table 'path, valence, arousal'")
    parser.add_argument("--scale", nargs=2, type=float, metavar=("LO", "HI"),
                        help="--csv values lie in [LO, HI]; mapped linearly onto [-1, 1]")
    parser.add_argument("--out", type=Path, required=True, metavar="OUT",
                        help="the new manifest (.csv or .parquet)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace OUT if it exists (never the input manifest)")
    parser.add_argument("--batch-size", type=int, default=256, metavar="B",
                        help="images per forward pass with --model (default: 256)")
    parser.add_argument("--device", default="auto", metavar="DEV",
                        help="cpu, cuda, cuda:1 ... or auto (cuda when available; default)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    device = args.device if args.device != "auto" else (
        "cuda" if torch.cuda.is_available() else "cpu")
    try:
        info = pseudo_va(args.manifest, args.out, model=args.model, csv=args.csv,
                         scale=tuple(args.scale) if args.scale else None,
                         batch_size=args.batch_size, device=device, overwrite=args.overwrite)
    except (OSError, ValueError) as exc:
        print(f"ufer pseudo-va: error: {exc}", file=sys.stderr)
        return 1
    source = (f"model {info['checkpoint']} (method {info['method']})"
              if info["kind"] == "model" else f"table {info['source']}")
    cover = info["coverage"]
    splits = ", ".join(f"{s} {v:.1%}" for s, v in cover["per_split"].items())
    print(f"wrote {args.out}: valence/arousal from {source}")
    print(f"  coverage {cover['annotated']} of {cover['rows']} images ({cover['share']:.1%}; "
          f"{splits})")
    return 0
