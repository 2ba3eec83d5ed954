"""``ufer train``: forwards its arguments to the LightningCLI in ``ufer.engine.lightning_cli``."""
from __future__ import annotations

import argparse

PASSTHROUGH = True


def add_parser(sub: argparse._SubParsersAction) -> None:
    sub.add_parser("train", add_help=False,
                   help="train a method (LightningCLI: ufer train --help, --print_config)")


def main(argv: list[str]) -> int:
    from ufer.engine.lightning_cli import main as cli_main

    return cli_main(argv)
