"""Training runs: the Trainer setup shared by ``ufer train``, ``ufer bench`` and the demo.

A run directory holds ``metrics.csv`` (CSVLogger), TensorBoard events, ``checkpoints/``
(``last.ckpt`` every epoch, ``best.ckpt`` by validation accuracy) and ``results.json``.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

from ufer.data.datamodule import FERDataModule
from ufer.engine.callbacks import EpochLine, LabelFlowWriter
from ufer.methods.base import FERMethod

log = logging.getLogger(__name__)


def set_threads(processes: int = 1) -> int:
    """Give each process an equal share of the cores (oversubscription costs up to 6x here)."""
    threads = max(1, (os.cpu_count() or 1) // max(processes, 1))
    torch.set_num_threads(threads)
    return threads


def interactive() -> bool:
    """True when a person watches a terminal (progress bars); False under CI or pipes."""
    return sys.stdout.isatty() and not os.environ.get("CI")


def trainer_kwargs(run_dir: str | Path, max_epochs: int, *, progress: bool | None = None,
                   checkpoints: bool = True, extra_callbacks: list[Callback] | None = None,
                   **overrides: Any) -> dict[str, Any]:
    """Keyword arguments for ``pl.Trainer``: loggers, checkpoints and output for one run."""
    run_dir = Path(run_dir)
    progress = interactive() if progress is None else progress
    callbacks: list[Callback] = list(extra_callbacks or []) + [LabelFlowWriter(run_dir)]
    callbacks += [] if progress else [EpochLine()]
    if checkpoints:
        callbacks += [ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="best",
                                      monitor="val/acc", mode="max", save_top_k=1,
                                      enable_version_counter=False),
                      ModelCheckpoint(dirpath=run_dir / "checkpoints", filename="last",
                                      save_top_k=1, enable_version_counter=False)]
    kwargs: dict[str, Any] = {
        "max_epochs": max_epochs, "default_root_dir": str(run_dir), "accelerator": "auto",
        "devices": 1,
        "logger": [CSVLogger(run_dir, name="", version=""),
                   TensorBoardLogger(run_dir, name="", version="", default_hp_metric=False)],
        "callbacks": callbacks, "enable_checkpointing": checkpoints,
        "enable_progress_bar": progress, "enable_model_summary": False, "log_every_n_steps": 1,
        "use_distributed_sampler": False, "num_sanity_val_steps": 0, "deterministic": False}
    kwargs.update(overrides)
    return kwargs


def fit(method: FERMethod, datamodule: FERDataModule, run_dir: str | Path, max_epochs: int, *,
        seed: int = 0, resume: str | Path | None = None, test: bool = True,
        **overrides: Any) -> dict[str, Any]:
    """Train ``method`` on ``datamodule``, test the final weights, write ``results.json``.

    Returns:
        ``{"method", "run_dir", "test": {metric: value}, "labels": {...}, "seconds",
        "images_per_second"}``; test metrics are of the LAST epoch's weights (no selection
        on the test split; ``checkpoints/best.ckpt`` is selected on validation).
    """
    pl.seed_everything(seed, workers=True, verbose=False)
    run_dir = Path(run_dir)
    trainer = pl.Trainer(**trainer_kwargs(run_dir, max_epochs, **overrides))
    start = time.perf_counter()
    trainer.fit(method, datamodule=datamodule, ckpt_path=resume, weights_only=True)
    seconds = time.perf_counter() - start
    result: dict[str, Any] = {"method": method.method_name, "run_dir": str(run_dir),
                              "seconds": seconds, "epochs": trainer.current_epoch,
                              "images_per_second": datamodule.num_train * max_epochs / seconds,
                              "labels": method.samples.summary()}
    if test and trainer.global_rank == 0:
        metrics = trainer.test(method, datamodule=datamodule, verbose=False)[0]
        result["test"] = {k.removeprefix("test/"): float(v) for k, v in metrics.items()}
    if trainer.global_rank == 0:
        (run_dir / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def train_method(manifest: str | Path, method: str, run_dir: str | Path, max_epochs: int, *,
                 seed: int = 0, method_kwargs: dict[str, Any] | None = None,
                 data_kwargs: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """Build the data module and the method ``method`` sized from it, then ``fit``.

    The one entry point shared by ``ufer demo`` and ``ufer bench``: every cell of a
    comparison goes through here, so all methods get the same data, augmentation and
    schedule unless ``method_kwargs`` says otherwise.
    """
    from ufer._registry import create_method

    dm = FERDataModule(str(manifest), seed=seed, **(data_kwargs or {}))
    pl.seed_everything(seed, workers=True, verbose=False)
    model = create_method(method, **{**dm.method_sizes(), **(method_kwargs or {})})
    return fit(model, dm, run_dir, max_epochs, seed=seed, **overrides)
