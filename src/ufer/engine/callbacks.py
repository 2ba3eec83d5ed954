"""Callbacks the engine adds to every run: the plain epoch line, the label-flow file, the
training clock, and an optional per-epoch log of a method's ``diagnostics``. Side effects
(files, console) live here, never in a LightningModule."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from ufer.methods.base import FERMethod


class EpochLine(Callback):
    """One plain line per epoch (used instead of progress bars when nobody watches)."""

    KEYS = ("train/loss", "train/acc", "val/acc", "labels/corrected")

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_rank != 0:
            return
        m = trainer.callback_metrics
        parts = [f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}",
                 f"{time.perf_counter() - self._start:.1f}s"]
        parts += [f"{key} {float(m[key]):.4g}" for key in self.KEYS if key in m]
        print("  " + "  ".join(parts), flush=True)


class TrainingClock(Callback):
    """Wall-clock seconds of a run's training, summed over every process that trained it.

    The sum is saved in each checkpoint, so a run resumed from ``last.ckpt`` reports the time
    of the whole run (earlier processes up to their last checkpoint, plus this one), not only
    the part after the resume; work lost after a checkpoint is trained again and counted once.
    """

    def __init__(self) -> None:
        self.before = 0.0  # seconds of earlier processes, from the checkpoint resumed
        self._start: float | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def seconds(self) -> float:
        """Seconds so far: earlier processes plus this one since ``fit`` started."""
        return self.before + (0.0 if self._start is None else time.perf_counter() - self._start)

    def state_dict(self) -> dict[str, float]:
        return {"seconds": self.seconds()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.before = float(state_dict["seconds"])

    @staticmethod
    def recorded(checkpoint: dict[str, Any]) -> float:
        """Seconds a loaded checkpoint's clock recorded (0 for one saved before the clock
        existed). Read by the launching process: under ``ddp_spawn`` the callback's hooks run
        in the workers, not on the launcher's copy."""
        state = checkpoint.get("callbacks", {}).get(TrainingClock.__qualname__, {})
        return float(state.get("seconds", 0.0))


class LabelFlowWriter(Callback):
    """For methods that relabel (``FERMethod.relabels``): write the cumulative (C, C)
    original -> current label flow to ``RUN/label_flow.json`` after every epoch."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / "label_flow.json"

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: FERMethod) -> None:
        if trainer.global_rank != 0 or not pl_module.relabels:
            return
        num_classes = pl_module.hparams.num_classes
        names = pl_module.hparams.class_names or [str(j) for j in range(num_classes)]
        flow = pl_module.samples.flow(num_classes).cpu().tolist()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps({"epoch": trainer.current_epoch,
                                         "classes": list(names), "flow": flow}) + "\n")


class DiagnosticsLog(Callback):
    """Append ``{"epoch", **method.diagnostics(dataset)}`` of every ``every``-th epoch to
    ``path`` (JSON lines): how a method's internals evolve during training."""

    def __init__(self, dataset: Any, path: str | Path, every: int = 1):
        self.dataset, self.path, self.every = dataset, Path(path), every

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: FERMethod) -> None:
        epoch = trainer.current_epoch
        if trainer.global_rank != 0 or (epoch + 1) % self.every:
            return
        row = {"epoch": epoch, **pl_module.diagnostics(self.dataset)}
        with self.path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")
