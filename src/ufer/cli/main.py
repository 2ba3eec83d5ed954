"""The ``ufer`` command: one argparse subcommand per verb; each verb lives in its own module.

A verb module exposes ``add_parser(subparsers)`` (which registers the subcommand and
sets ``func``) and does all real work through library functions. A module with
``PASSTHROUGH = True`` parses its own arguments in ``main(argv)`` (``ufer train``).

``main`` is the one error boundary of every verb: an error prints one line,
``ufer VERB: error: MESSAGE``, on stderr and exits non-zero (2 for a wrong argument, 1
otherwise); ``--debug`` anywhere on the command line or ``UFER_DEBUG=1`` shows the
traceback instead.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import warnings
from typing import NoReturn

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
DEBUG_FLAG = "--debug"
DEBUG_ENV = "UFER_DEBUG"
# errors that describe the user's input (files, values, arguments): their message is the
# whole story; anything else is unexpected and the line says how to see the traceback
INPUT_ERRORS = (ValueError, OSError, argparse.ArgumentError)


class UsageError(argparse.ArgumentError):
    """A wrong command line; the message ends by naming the help to read."""

    def __init__(self, message: str) -> None:
        super().__init__(None, message)


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose usage errors raise :class:`UsageError` (one line at the error
    boundary) instead of printing the usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raised = sys.exc_info()[1]
        if isinstance(raised, UsageError):  # a subcommand's own, passing through its parent
            raise raised
        raise UsageError(f"{message} (see {self.prog} --help)")


def build_parser(verbs: dict[str, str] = VERBS) -> argparse.ArgumentParser:
    parser = Parser(
        prog="ufer", description="ufer: facial expression recognition under uncertain labels")
    sub = parser.add_subparsers(dest="verb", metavar="VERB")
    for module in verbs.values():
        importlib.import_module(f"ufer.cli.{module}").add_parser(sub)
    return parser


def _show_ufer_logs() -> None:
    """ufer's INFO lines (branch switches, pretrained loading, label flow) on this call's
    stderr (a training run sends them to its log file instead: ``engine.train.RunLog``)."""
    logger = logging.getLogger("ufer")
    console = next((h for h in logger.handlers if type(h) is logging.StreamHandler), None)
    if console is None:
        console = logging.StreamHandler()
        console.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        logger.addHandler(console)
        logger.setLevel(logging.INFO)
    console.stream = sys.stderr  # not setStream: it flushes the old one, maybe closed


def debugging(argv: list[str]) -> bool:
    """True when the traceback of an error is wanted: ``--debug`` in ``argv`` or
    ``UFER_DEBUG`` set to anything but empty or 0."""
    return DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "") not in ("", "0")


def error_line(verb: str, error: BaseException) -> str:
    """The one line printed for ``error``: its message's first line; for an unexpected
    kind of error also its type and how to see the traceback."""
    prefix = f"ufer {verb}: error:" if verb else "ufer: error:"
    text = str(error).strip()
    if isinstance(error, INPUT_ERRORS) and text:
        return f"{prefix} {text.splitlines()[0]}"
    first = text.splitlines()[0] if text else ""
    return (f"{prefix} {type(error).__name__}: {first} (an unexpected error: run again with "
            f"{DEBUG_FLAG} or {DEBUG_ENV}=1 for the traceback)")


def main(argv: list[str] | None = None) -> int:
    """Run one verb; errors become one line on stderr and exit status 1 (2: arguments)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = debugging(argv)
    argv = [a for a in argv if a != DEBUG_FLAG]
    verb = argv[0] if argv and argv[0] in VERBS else ""
    try:
        return _run(argv)
    except Exception as error:  # the error boundary of every verb
        if debug:
            raise
        print(error_line(verb, error), file=sys.stderr)
        return 2 if isinstance(error, argparse.ArgumentError) else 1


def _run(argv: list[str]) -> int:
    _show_ufer_logs()
    # lightning 2.6 + torch 2.14 warn about their own internals on every run
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
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
