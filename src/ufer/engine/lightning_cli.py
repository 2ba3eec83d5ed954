"""``ufer train``: LightningCLI over every registered method and the manifest data module.

Configs are YAML (``configs/paper/`` = paper defaults, ``configs/tuned/`` = ours), composed
with repeated ``--config``; ``--print_config`` shows every switch of a method.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from ufer._registry import list_methods
from ufer.data.datamodule import METHOD_SIZES, FERDataModule
from ufer.engine.train import set_threads, trainer_kwargs
from ufer.methods.base import FERMethod


class UferCLI(LightningCLI):
    """LightningCLI that sizes the method from the data and owns the run directory."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--run_dir", type=str | None, default=None,
                            help="output folder (default runs/<method>-<time>)")
        parser.add_argument("--test_after_fit", type=bool, default=True,
                            help="evaluate the final weights on the test split after fit")
        for name in METHOD_SIZES:
            parser.link_arguments(f"data.{name}", f"model.init_args.{name}",
                                  apply_on="instantiate")

    def instantiate_trainer(self, **kwargs: Any):
        config = self.config[self.subcommand] if self.subcommand else self.config
        method = str(config["model"]["class_path"]).rsplit(".", 1)[-1].lower()
        run_dir = Path(config.get("run_dir") or f"runs/{method}-{time.strftime('%Y%m%d-%H%M%S')}")
        defaults = trainer_kwargs(run_dir, kwargs.get("max_epochs") or 30)
        if kwargs.get("enable_progress_bar") is None:  # bars only when a person watches
            kwargs["enable_progress_bar"] = defaults["enable_progress_bar"]
        for key in ("logger", "callbacks", "default_root_dir"):
            if key == "callbacks":
                kwargs[key] = list(kwargs.get(key) or []) + defaults[key]
            elif not kwargs.get(key) or key == "logger":
                kwargs[key] = defaults[key]
        self.run_dir = run_dir
        return super().instantiate_trainer(**kwargs)

    def after_fit(self) -> None:
        config = self.config[self.subcommand]
        if config.get("test_after_fit", True):
            self.trainer.test(self.model, datamodule=self.datamodule)
        print(f"run directory: {self.run_dir} (metrics.csv, TensorBoard events, checkpoints/)")


def main(argv: list[str] | None = None) -> int:
    """Entry of ``ufer train ARGS``: ``fit`` is implied unless another subcommand is given."""
    list_methods()  # import every method so `--model MTAC` resolves
    argv = list(argv or [])
    if not argv or argv[0] not in ("fit", "validate", "test", "predict"):
        argv = ["fit", *argv]
    set_threads(int(_flag(argv, "--trainer.devices") or 1))
    UferCLI(FERMethod, FERDataModule, subclass_mode_model=True, args=argv,
            seed_everything_default=0, save_config_kwargs={"overwrite": True},
            trainer_defaults={"max_epochs": 30, "use_distributed_sampler": False,
                              "num_sanity_val_steps": 0, "log_every_n_steps": 1,
                              "enable_model_summary": False},
            )
    return 0


def _flag(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
    return None
