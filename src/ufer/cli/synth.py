"""``ufer synth``: write the synthetic expression dataset (images + manifest)."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import pandas as pd

from ufer.data import schema
from ufer.data.synthetic import PRESETS, RAFDB_PRIOR, generate, make_config
from ufer.engine.plots import contact_sheet

_SHEET_PER_CLASS = 10


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Register the ``synth`` subcommand."""
    p = subparsers.add_parser(
        "synth", help="generate the synthetic expression dataset",
        description="Generate procedurally drawn faces whose expression is caused by action "
                    "units, with known true label, AUs, valence/arousal and simulated annotator "
                    "votes. Synthetic data: never a substitute for results on real faces.")
    p.add_argument("--preset", choices=sorted(PRESETS), default="demo",
                   help="size preset: tiny (tests), demo, bench-cpu (balanced test), bench "
                        "(112 px); default: %(default)s")
    p.add_argument("--seed", type=int, default=0,
                   help="random seed; the same seed gives byte-identical output (default: 0)")
    p.add_argument("--out", type=Path, required=True,
                   help="output folder for images/ and manifest.csv/.json")
    p.add_argument("--image-size", type=int, help="output image side in pixels (preset default)")
    p.add_argument("--n-train", type=int, help="number of training images (preset default)")
    p.add_argument("--n-val", type=int, help="number of validation images (preset default)")
    p.add_argument("--n-test", type=int, help="number of test images (preset default)")
    p.add_argument("--classes", type=int, choices=(7, 8),
                   help="7 basic classes, or 8 with contempt (default: 7)")
    p.add_argument("--class-prior", type=_prior, metavar="uniform|raf|P1,P2,...",
                   help="class shares of the splits that are not balanced: uniform, raf "
                        "(RAF-DB's training shares, 38.9 %% happy ... 2.3 %% fear) or one "
                        "weight per class (preset default)")
    p.add_argument("--workers", type=int, default=1,
                   help="processes used for drawing; the output does not depend on it "
                        "(default: 1)")
    p.add_argument("--sheet", type=Path,
                   help="also write a contact sheet PNG: up to 10 training faces per true class")
    p.add_argument("--overwrite", action="store_true",
                   help="allow writing into a non-empty --out (files are replaced, "
                        "stale extra files are left alone)")
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    """Generate, then print counts, annotator-error share, AU prevalence and speed."""
    out: Path = args.out
    if out.exists() and not out.is_dir():
        print(f"ufer synth: error: --out {out} is a file, not a folder", file=sys.stderr)
        return 1
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        print(f"ufer synth: error: {out} is not empty; pass --overwrite to write into it",
              file=sys.stderr)
        return 1
    overrides = {k: getattr(args, k) for k in ("image_size", "n_train", "n_val", "n_test",
                                               "classes") if getattr(args, k) is not None}
    if args.class_prior is not None:
        overrides["class_prior"] = None if args.class_prior == "uniform" else args.class_prior
    try:
        make_config(args.preset, **overrides)
    except ValueError as err:
        print(f"ufer synth: error: {err}", file=sys.stderr)
        return 1
    start = time.perf_counter()
    manifest = generate(out, preset=args.preset, seed=args.seed, workers=args.workers,
                        **overrides)
    seconds = time.perf_counter() - start
    frame = pd.read_csv(manifest)
    meta = json.loads(schema.sidecar_path(manifest).read_text())
    classes = meta["classes"]
    _summary(frame, classes, meta["au_occurrence_threshold"], manifest, seconds)
    if args.sheet:
        print(f"contact sheet: {_sheet(frame, classes, manifest.parent, args.sheet)}")
    return 0


def _prior(text: str) -> tuple[float, ...] | str:
    """``uniform``, ``raf`` or comma-separated class weights."""
    if text in ("uniform", "raf"):
        return RAFDB_PRIOR if text == "raf" else "uniform"
    try:
        return tuple(float(x) for x in text.split(","))
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected uniform, raf or weights like "
                                         f"1,2,1,1,1,1,1; got {text!r}") from err


def _summary(frame: pd.DataFrame, classes: list[str], threshold: float, manifest: Path,
             seconds: float) -> None:
    names = frame[schema.CLEAN_LABEL].map(dict(enumerate(classes)))
    counts = pd.crosstab(frame[schema.SPLIT], names)
    print(f"wrote {manifest} ({len(frame)} images)")
    print("true class counts per split:")
    print(counts.reindex(index=[s for s in schema.SPLITS if s in counts.index],
                         columns=classes, fill_value=0).to_string())
    noisy = frame.groupby(schema.SPLIT, sort=False)[schema.NOISY].mean()
    print("annotator majority != true class: "
          + ", ".join(f"{s} {100 * v:.1f}%" for s, v in noisy.items()))
    aus = [c for c in frame.columns if schema.is_au_column(c)]
    train = frame[frame[schema.SPLIT] == "train"]
    print("AU prevalence in train (offered / true occurrence):")
    print("  " + "  ".join(f"{c} {train[c].mean():.2f}/"
                           f"{(train[schema.TRUE_AU_PREFIX + c[2:]] >= threshold).mean():.2f}"
                           for c in aus))
    print(f"time {seconds:.1f} s, {len(frame) / max(seconds, 1e-9):.0f} images/s")


def _sheet(frame: pd.DataFrame, classes: list[str], root: Path, out_png: Path) -> Path:
    train = frame[frame[schema.SPLIT] == "train"]
    images, titles = [], []
    for k, name in enumerate(classes):
        for _, row in train[train[schema.CLEAN_LABEL] == k].head(_SHEET_PER_CLASS).iterrows():
            path = root / row[schema.PATH]
            image = cv2.imread(str(path))
            if image is None:
                raise FileNotFoundError(f"cannot read image {path}")
            images.append(image[:, :, ::-1])
            given = classes[int(row[schema.LABEL])]
            titles.append(name if given == name else f"{name}>{given}")
    return contact_sheet(images, titles, out_png, ncols=_SHEET_PER_CLASS)
