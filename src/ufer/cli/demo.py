"""``ufer demo``: synthesize, add noise, train every method, evaluate, print a table."""
from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the main job end to end on synthetic data (make demo)",
                       description=__doc__)
    p.add_argument("--out", default="runs/demo", help="output folder (data and runs)")
    p.add_argument("--epochs", type=int, default=25, help="epochs per model")
    p.add_argument("--rate", type=float, default=0.3, help="symmetric noise rate")
    p.add_argument("--seed", type=int, default=0, help="data, noise and training seed")
    p.add_argument("--methods", nargs="*", default=None,
                   help="methods to train on noisy labels (default: every registered one)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ufer.engine.demo import run_demo

    run_demo(args.out, args.epochs, args.rate, args.seed, args.methods)
    return 0
