"""``ufer prepare``: convert a dataset, as downloaded, into a manifest + images (ROOT is only read)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ufer.data.adapters import ADAPTERS, option_names, prepare
from ufer.data.adapters.common import Aligner

_EPILOG = """\
OUT receives manifest.csv (or .parquet), its sidecar manifest.json (classes, source files,
options, what was kept, dropped and why) and images/. ROOT is never written to. A missing
or corrupt image, unknown label, malformed row or NaN stops the run with the file, line and
value; --skip-bad skips and counts such rows instead.

examples:
  ufer prepare rafdb ~/data/RAF-DB/basic data/rafdb
  ufer prepare affectnet ~/data/AffectNet data/affectnet8 --classes 8 --crop
  ufer prepare ferplus ~/data/fer data/ferplus --label ferplus-majority
  ufer prepare affwild2 ~/data/ABAW4 data/affwild2
  ufer prepare ckplus ~/data/CK+ data/ckplus --folds 10 --test-fold 3
  ufer prepare folder ~/my_faces data/mine --csv ~/my_faces/va.csv
Run `ufer prepare SOURCE --help` for the options of one source.
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "prepare", help="convert a dataset as downloaded (RAF-DB, AffectNet, ...) into a manifest",
        description=__doc__.split(": ", 1)[1], epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sources = parser.add_subparsers(dest="source", metavar="SOURCE", required=True,
                                    title="sources")
    for name, adapter in ADAPTERS.items():
        source = sources.add_parser(name, help=adapter.SUMMARY, description=adapter.__doc__,
                                    formatter_class=argparse.RawDescriptionHelpFormatter)
        source.add_argument("root", type=Path, metavar="ROOT", help="the dataset as downloaded")
        source.add_argument("out", type=Path, metavar="OUT", help="output folder (outside ROOT)")
        adapter.add_arguments(source.add_argument_group(f"{name} options"))
        _add_common(source.add_argument_group("common options"), adapter.ALIGNS)
        source.set_defaults(func=run)


def _add_common(group: argparse._ArgumentGroup, aligns: bool) -> None:
    group.add_argument("--skip-bad", action="store_true",
                       help="skip bad rows (missing/corrupt image, unknown label, malformed row, "
                            "NaN) and count them, instead of stopping at the first")
    group.add_argument("--overwrite", action="store_true",
                       help="replace a manifest already in OUT")
    group.add_argument("--link", action="store_true",
                       help="symlink unchanged images into OUT/images instead of copying them")
    group.add_argument("--format", choices=("csv", "parquet"), default="csv",
                       help="manifest table format (default: csv)")
    group.add_argument("--cache", type=int, metavar="SIZE",
                       help="also write every image, resized to SIZE x SIZE, once into a "
                            "memory-mapped uint8 file beside the manifest; training at "
                            "image_size SIZE then reads it instead of decoding images")
    if aligns:
        group.add_argument("--detect", action="store_true",
                           help="detect the largest face (MTCNN) and align it by its five "
                                "landmarks; frames without a face are dropped and counted")
        group.add_argument("--size", type=int, default=112, metavar="PX",
                           help="side of the aligned crops with --detect (default: 112)")


def _aligner(args: argparse.Namespace) -> Aligner | None:
    """The face detector + aligner that --detect asks for, or None."""
    if not getattr(args, "detect", False):
        return None
    from ufer.inference.detect import FaceAligner, MTCNNDetector

    return FaceAligner(MTCNNDetector(), size=args.size)


def run(args: argparse.Namespace) -> int:
    options = {name: getattr(args, name) for name in option_names(args.source)}
    try:
        manifest = prepare(args.source, args.root, args.out, options=options,
                           align=_aligner(args), skip_bad=args.skip_bad,
                           overwrite=args.overwrite, link=args.link,
                           table=f"manifest.{args.format}")
        if args.cache is not None:
            from ufer.data.cache import cache_manifest

            print(f"image cache ({args.cache} px): {cache_manifest(manifest, args.cache)}")
    except (OSError, ValueError, ImportError) as exc:
        print(f"ufer prepare {args.source}: error: {exc}", file=sys.stderr)
        return 1
    return 0
