"""``ufer train``: LightningCLI over every registered method and the manifest data module.

Configs are YAML (``configs/paper/`` = paper defaults, ``configs/tuned/`` = ours), composed
with repeated ``--config``; ``--print_config`` shows every switch of a method. ``--model``
takes a class name (``SCN``), a registry name (``scn``) or a class path.

A resume (``--ckpt_path``) continues that run as it was: the checkpoint is read
weights-only, and a method, hyper-parameter or data setting other than the run's is an
error (Lightning would silently replace the command's with the checkpoint's).
"""
from __future__ import annotations

import argparse
import re
import warnings
from pathlib import Path
from typing import Any

from jsonargparse import ArgumentParser
from lightning.pytorch import Trainer
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from ufer._registry import list_methods, method_class
from ufer.data.datamodule import METHOD_SIZES, FERDataModule
from ufer.engine.train import (
    RUN_LOG,
    check_max_epochs,
    check_resume,
    claim_run_dir,
    default_run_dir,
    run_log,
    set_threads,
    tested,
    trainer_kwargs,
)
from ufer.methods.base import FERMethod

SUBCOMMANDS = ("fit", "validate", "test", "predict")
# how jsonargparse wraps the error of a class it failed to instantiate (``--model``)
_UNION_REPORT = "Does not validate against any of the Union subtypes"


class UferCLI(LightningCLI):
    """LightningCLI that sizes the method from the data and owns the run directory.

    Everything it does runs under a ``RunLog``: Lightning's and ufer's INFO lines go to the
    run's ``train.log``, the console keeps the epoch lines, warnings of ufer and errors.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        with run_log():
            warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
            super().__init__(*args, **kwargs)

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--run_dir", type=str | None, default=None,
                            help="output folder (default runs/<method>-<time>); a folder that "
                                 "holds a run is only written by a resume of that run")
        parser.add_argument("--test_after_fit", type=bool, default=True,
                            help="evaluate the final weights on the test split after fit")
        for name in METHOD_SIZES:
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}",
                                  apply_on="instantiate")

    def parse_arguments(self, parser: ArgumentParser, args: Any) -> None:
        """Parse; a wrong argument is one ``argparse.ArgumentError`` line (see ``one_line``)."""
        try:
            super().parse_arguments(parser, args)
        except argparse.ArgumentError as error:
            raise argparse.ArgumentError(None, one_line(str(error))) from error

    def _parse_ckpt_path(self) -> None:
        """Lightning replaces the command's model with the checkpoint's hyper-parameters here;
        ufer keeps the command's and compares them with the checkpoint (``check_resume``)."""

    def instantiate_classes(self) -> None:
        """Instantiate; a constructor's own error (an unknown backbone, data a method cannot
        use) is raised as is, not inside jsonargparse's multi-line union report."""
        try:
            super().instantiate_classes()
        except ValueError as error:
            cause = error.__cause__
            if _UNION_REPORT in str(error) and isinstance(cause, Exception):
                raise cause from None
            raise

    def before_instantiate_classes(self) -> None:
        if self.subcommand == "fit":
            check_max_epochs(self._config()["trainer"]["max_epochs"])

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        config = self._config()
        method = str(config["model"]["class_path"]).rsplit(".", 1)[-1].lower()
        run_dir = Path(config.get("run_dir") or default_run_dir(method))
        self.append = claim_run_dir(run_dir, config.get("ckpt_path"))
        defaults = trainer_kwargs(run_dir, kwargs.get("max_epochs") or 30, append=self.append)
        if kwargs.get("enable_progress_bar") is None:  # bars only when a person watches
            kwargs["enable_progress_bar"] = defaults["enable_progress_bar"]
        for key in ("logger", "callbacks", "default_root_dir"):
            if key == "callbacks":
                kwargs[key] = list(kwargs.get(key) or []) + defaults[key]
            elif not kwargs.get(key) or key == "logger":
                kwargs[key] = defaults[key]
        self.run_dir = run_dir
        return super().instantiate_trainer(**kwargs)

    def fit(self, model: FERMethod, datamodule: FERDataModule, ckpt_path: str | None = None,
            weights_only: bool | None = None, **kwargs: Any) -> None:
        """``Trainer.fit`` after the resume checks, reading checkpoints weights-only."""
        if weights_only is False:
            raise ValueError("--weights_only false: ufer reads checkpoints weights-only (a "
                             "checkpoint that needs more could run code)")
        if ckpt_path is not None:
            check_resume(ckpt_path, model, datamodule, self.trainer.max_epochs)
        with run_log() as logs:  # the one of __init__: its lines go to the claimed folder
            logs.write_to(self.run_dir, self.append)
            self.trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path,
                             weights_only=True, **kwargs)

    def after_fit(self) -> None:
        config = self._config()
        if config.get("test_after_fit", True) and tested(self.datamodule):
            self.trainer.test(self.model, datamodule=self.datamodule)
        print(f"run directory: {self.run_dir} (metrics.csv, {RUN_LOG}, TensorBoard events, "
              "checkpoints/)")

    def _config(self) -> Any:
        return self.config[self.subcommand] if self.subcommand else self.config


def main(argv: list[str] | None = None) -> int:
    """Entry of ``ufer train ARGS``: ``fit`` is implied unless another subcommand is given."""
    list_methods()  # import every method so that class names in configs resolve
    argv = resolve_model_names(list(argv or []))
    if not argv or argv[0] not in SUBCOMMANDS:
        argv = ["fit", *argv]
    set_threads(int(_flag(argv, "--trainer.devices") or 1))
    strict = {"exit_on_error": False}
    UferCLI(FERMethod, FERDataModule, subclass_mode_model=True, args=argv,
            seed_everything_default=0, save_config_kwargs={"overwrite": True},
            parser_kwargs={**strict, **{name: strict for name in SUBCOMMANDS}},
            trainer_defaults={"max_epochs": 30, "use_distributed_sampler": False,
                              "num_sanity_val_steps": 0, "log_every_n_steps": 1,
                              "enable_model_summary": False},
            )
    return 0


def resolve_model_names(argv: list[str]) -> list[str]:
    """``--model NAME`` with a registry name (``scn``) or a class name in any case (``Scn``)
    rewritten to the class path; an unknown plain name is an error listing the methods.
    Class paths, config files and inline YAML pass through to LightningCLI."""
    out = list(argv)
    for i, arg in enumerate(out):
        if arg in ("--model", "--model.class_path") and i + 1 < len(out):
            out[i + 1] = _method_path(out[i + 1])
        elif arg.startswith(("--model=", "--model.class_path=")):
            flag, value = arg.split("=", 1)
            out[i] = f"{flag}={_method_path(value)}"
    return out


def _method_path(value: str) -> str:
    if not re.fullmatch(r"\w+", value) or Path(value).exists():
        return value  # a class path, a config file or inline YAML
    names = {name: method_class(name) for name in list_methods()}
    for name, cls in names.items():
        if value.lower() in (name, cls.__name__.lower()):
            return f"{cls.__module__}.{cls.__qualname__}"
    known = ", ".join(f"{cls.__name__} ({name})" for name, cls in names.items())
    raise argparse.ArgumentError(None, f"--model {value}: unknown method; known: {known}")


def one_line(message: str) -> str:
    """jsonargparse's nested report of a wrong argument as one line: the argument (its
    nested ``Parser key`` names joined) and the innermost problem."""
    keys = re.findall(r'Parser key "([^"]+)"', message)
    lines = [re.sub(r'Parser key "[^"]+":\s*', "", line).strip(" -")
             for line in message.splitlines()]
    problems = [line for line in lines if line and not _REPORT_FRAME.match(line)]
    problem = problems[-1] if problems else message.splitlines()[0]
    problem = re.sub(r"Expected an? (<class '(\w+)'>)?", lambda m: f"expected {m[2] or ''}",
                     problem).replace("typing.Literal", "one of ")
    problem = re.sub(r"\.? Got value: (.*)$", r", got '\1'", problem)
    given = re.search(r"Given value: (.*)", message)
    if given and "NestedArg" not in given[1] and "got '" not in problem:
        problem += f", got {given[1]!r}"
    where = f"--{'.'.join(keys)}: " if keys else ""
    return f"{where}{problem} (see ufer train --help)"


# lines of jsonargparse's report that frame the problem rather than state it
_REPORT_FRAME = re.compile(r"(Does not validate|Subtypes|Errors:|Given value|Problem with given "
                           r"class_path|Expected a <class 'NoneType'>)")


def _flag(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
    return None
