"""The ``ufer`` command: one argparse subcommand per verb; each verb lives in its own module.

A verb module exposes ``add_parser(subparsers)`` (which registers the subcommand and
sets ``func``) and does all real work through library functions. A module with
``PASSTHROUGH = True`` parses its own arguments in ``main(argv)`` (``ufer train``).
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
import warnings

# verb -> module under ufer.cli; imported lazily so `ufer --help` stays fast.
VERBS = {
    "synth": "synth",
    "noise": "noise",
    "train": "train",
    "evaluate": "evaluate",
    "demo": "demo",
    "bench": "bench",
    "report": "report",
    "prepare": "prepare",
    "annotate": "annotate",
    "weights": "weights",
    "pseudo-va": "pseudo_va",
    "predict": "predict",
    "export": "export",
    "pretrain": "pretrain",
}


def build_parser(verbs: dict[str, str] = VERBS) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ufer", description="ufer: facial expression recognition under uncertain labels")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for module in verbs.values():
        importlib.import_module(f"ufer.cli.{module}").add_parser(sub)
    return parser


def _show_ufer_logs() -> None:
    """ufer's INFO lines (branch switches, pretrained loading, label flow) on stderr."""
    logger = logging.getLogger("ufer")
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    _show_ufer_logs()
    # lightning 2.6 + torch 2.14 warn about their own internals on every run
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in VERBS:
        module = importlib.import_module(f"ufer.cli.{VERBS[argv[0]]}")
        if getattr(module, "PASSTHROUGH", False):  # the verb parses its own arguments
            return int(module.main(argv[1:]) or 0)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verb is None:
        parser.print_help()
        return 2
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
