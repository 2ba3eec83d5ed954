"""``ufer evaluate CKPT --manifest M``: accuracy, mean class accuracy, per-class, confusion."""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a checkpoint on a manifest split",
                       description=__doc__)
    p.add_argument("checkpoint", help="a ufer checkpoint (.ckpt); the method is read from it")
    p.add_argument("--manifest", required=True, help="manifest CSV/Parquet to evaluate on")
    p.add_argument("--split", default="test", help="split to evaluate (default: test)")
    p.add_argument("--out", default=None,
                   help="output folder (default: <run>/eval-<split>): metrics.json, "
                        "per_class.csv, confusion.png")
    p.add_argument("--batch-size", type=int, default=256, help="inference batch size")
    p.add_argument("--image-size", type=int, default=None,
                   help="resize images to this size (default: as stored)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ufer.engine.evaluate import evaluate, format_table

    result = evaluate(args.checkpoint, args.manifest, args.split, args.out, args.batch_size,
                      args.image_size)
    print(format_table(result))
    print(f"written: {result['out_dir']}/metrics.json, per_class.csv, confusion.png")
    return 0
