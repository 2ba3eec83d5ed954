"""``ufer demo``: a small pretrained start, synthetic faces with 30 % wrong labels, the
baseline and tuned MTAC fine-tuned from that start, evaluated, one table."""
from __future__ import annotations

import argparse

_EPILOG = """\
Every row fine-tunes the same small face-recognition start (made once with `ufer pretrain`
and cached in --cache) with one demo recipe (ours, not a paper's): Adam 0.001, lr x0.1
after epochs 10 and 15, batch 128, 20 epochs. The table names each row's switches (paper
or ours) and counts the wrong labels among the training labels as given and as left.

examples:
  ufer demo                      # baseline (clean, noisy) and tuned MTAC
  ufer demo --all                # every registered method with its paper switches too
  ufer demo --methods scn mtac   # the baselines and these rows
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the main job end to end on synthetic data (make demo)",
                       description=__doc__, epilog=_EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="runs/demo", help="output folder (data and runs)")
    p.add_argument("--epochs", type=int, default=20, help="epochs per model")
    p.add_argument("--rate", type=float, default=0.3, help="symmetric noise rate")
    p.add_argument("--seed", type=int, default=0, help="data, noise and training seed")
    rows = p.add_mutually_exclusive_group()
    rows.add_argument("--methods", nargs="+", default=None,
                      help="rows beside the two baselines: methods (paper switches) or "
                           "mtac@tuned (default: mtac@tuned)")
    rows.add_argument("--all", action="store_true", dest="all_methods",
                      help="every registered method with its paper switches, and mtac@tuned")
    p.add_argument("--cache", default="runs/cache/demo-pretrain",
                   help="where the demo's pretrained start is made once and reused")
    p.add_argument("--pretrained", default=None,
                   help="backbone weights to start from instead (e.g. `ufer pretrain` output)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ufer.engine.demo import run_demo

    run_demo(args.out, args.epochs, args.rate, args.seed, args.methods, args.all_methods,
             args.cache, args.pretrained)
    return 0
