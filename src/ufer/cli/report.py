"""``ufer report RUN``: which training labels a run judged uncertain or corrected, and why."""
from __future__ import annotations

import argparse

_EPILOG = """\
Writes RUN/report/: samples.csv (one row per training sample: original, final and true
label, corrected, corrected_epoch, label_quality in [0, 1] where lower = more likely
wrong, is_label_issue), corrections.png (class-to-class corrections), uncertain.png and
corrected.png (contact sheets titled given->final), curves.png (losses, accuracy and label
counts per epoch from metrics.csv), summary.json.

example:
  ufer report runs/demo/scn-noisy
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="per-sample label report of a trained run",
                       description=__doc__, epilog=_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="run directory (holds checkpoints/last.ckpt and metrics.csv)")
    p.add_argument("--manifest", default=None,
                   help="training manifest (default: the one recorded in the checkpoint)")
    p.add_argument("--out", default=None, help="output folder (default: RUN/report)")
    p.add_argument("--top", type=int, default=40, help="images per contact sheet")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ufer.engine.report import format_summary, write_report

    summary = write_report(args.run, args.out, args.manifest, args.top)
    print(format_summary(summary))
    return 0
