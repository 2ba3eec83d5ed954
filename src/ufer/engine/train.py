"""Training runs: the Trainer setup shared by ``ufer train``, ``ufer bench`` and the demo.

A run directory holds ``metrics.csv`` (CSVLogger), TensorBoard events, ``checkpoints/``
(``last.ckpt`` every epoch, ``best.ckpt`` by validation accuracy), ``results.json`` and
``train.log`` (Lightning's and ufer's INFO lines and warnings; the console shows one line
per epoch). A folder that holds a run is never written by another one: only a resume of
that run continues it, appending to its ``metrics.csv`` and ``train.log``.
"""
from __future__ import annotations

import csv
import json
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from logging.handlers import MemoryHandler
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.fabric.loggers.logger import rank_zero_experiment
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter

from ufer.data.datamodule import FERDataModule
from ufer.engine.callbacks import EpochLine, LabelFlowWriter, TrainingClock
from ufer.methods.base import CKPT_KEY, FERMethod, read_checkpoint

log = logging.getLogger(__name__)

RUN_LOG = "train.log"
# schedulers that plan their whole run in steps, and the state entry holding the plan
STEP_PLANNED = {"onecycle": "total_steps", "cosine": "T_max"}
# loggers whose INFO lines a run writes to its train.log instead of the console
RUN_LOGGERS = ("lightning.pytorch", "lightning.fabric", "ufer", "py.warnings")


def set_threads(processes: int = 1) -> int:
    """Give each process an equal share of the cores (oversubscription costs up to 6x here)."""
    threads = max(1, (os.cpu_count() or 1) // max(processes, 1))
    torch.set_num_threads(threads)
    return threads


def interactive() -> bool:
    """True when a person watches a terminal (progress bars); False under CI or pipes."""
    return sys.stdout.isatty() and not os.environ.get("CI")


# ----------------------------------------------------------------------------- run folders
def holds_run(run_dir: str | Path) -> bool:
    """True when ``run_dir`` holds a run's work: a checkpoint or ``results.json``."""
    run_dir = Path(run_dir)
    return (run_dir / "results.json").is_file() or any((run_dir / "checkpoints").glob("*.ckpt"))


def claim_run_dir(run_dir: str | Path, resume: str | Path | None = None) -> bool:
    """Check that a run may write into ``run_dir``; True when it continues the run there.

    A folder holding a run (``holds_run``) is only written by a resume from one of its own
    checkpoints, whose logs are then appended to. Anything else would replace its
    checkpoints and metrics, so it is refused with what to do instead.
    """
    run_dir = Path(run_dir)
    own = resume is not None and Path(resume).resolve().is_relative_to(run_dir.resolve())
    if holds_run(run_dir) and not own:
        last = run_dir / "checkpoints" / "last.ckpt"
        raise FileExistsError(
            f"{run_dir} holds a run already (its checkpoints and metrics would be replaced): "
            f"choose another run folder, or continue that run with --ckpt_path {last}")
    return own


def default_run_dir(method: str) -> Path:
    """``runs/<method>-<date>-<time>``, with a ``-2``, ``-3``... suffix if that one is taken."""
    base = Path("runs") / f"{method}-{time.strftime('%Y%m%d-%H%M%S')}"
    candidate, n = base, 1
    while candidate.exists():
        n += 1
        candidate = base.with_name(f"{base.name}-{n}")
    return candidate


def check_max_epochs(max_epochs: int | None) -> None:
    """A run must train at least one epoch (0 trains nothing; Lightning's -1 never stops)."""
    if max_epochs is None or max_epochs < 1:
        raise ValueError(f"max_epochs must be at least 1, got {max_epochs}: a run that trains "
                         "no epoch would report an untrained network")


# ----------------------------------------------------------------------------- resume
def check_resume(path: str | Path, method: FERMethod, datamodule: FERDataModule,
                 max_epochs: int, *, finished_ok: bool = False) -> dict[str, Any]:
    """Refuse a resume from checkpoint ``path`` that would not continue that run as it was.

    Resuming restores the checkpoint's weights, optimizer and schedule, so a method,
    hyper-parameter or data setting other than the run's would be silently replaced (or
    silently mixed in). Also refused: a schedule planned in steps (onecycle, cosine) for
    another number of epochs (it cannot be extended; multistep, exponential and none can),
    and, unless ``finished_ok``, a run that has no epoch left to train. Nothing is written.

    Returns:
        the checkpoint, as ``read_checkpoint`` loaded it.
    """
    path = Path(path)
    ckpt = read_checkpoint(path)
    run_config = path.parent.parent / "config.yaml"
    hint = (f" (the run's arguments are in {run_config}: resume with --config {run_config} "
            f"--ckpt_path {path})" if run_config.is_file() else "")
    written_by = ckpt[CKPT_KEY].get("method")
    if written_by != method.method_name:
        raise ValueError(f"{path} was trained by method {written_by!r}, not "
                         f"{method.method_name!r}: a resumed run continues its own method; "
                         f"pass that method{hint}, or start a new run without --ckpt_path")
    differ = _setting_differences(ckpt, method, datamodule)
    if differ:
        raise ValueError(f"{path} was trained with {'; '.join(differ)}: a resumed run "
                         f"continues with its own settings, so pass the same ones{hint}, or "
                         "start a new run without --ckpt_path")
    _check_epochs_left(path, ckpt, max_epochs, finished_ok)
    return ckpt


def _setting_differences(ckpt: dict[str, Any], method: FERMethod,
                         datamodule: FERDataModule) -> list[str]:
    """``model.<name> <run's value>, not <this value>`` for every differing hyper-parameter
    and data setting (the manifest's rows are checked when training starts)."""
    pairs = [("model", ckpt.get("hyper_parameters", {}), dict(method.hparams)),
             ("data", ckpt.get("datamodule_hyper_parameters", {}), dict(datamodule.hparams))]
    differ = []
    for prefix, stored, given in pairs:
        for name, value in stored.items():
            if name.startswith("_") or name == "manifest" or name not in given:
                continue
            if _plain(value) != _plain(given[name]):
                differ.append(f"{prefix}.{name} {value!r}, not {given[name]!r}")
    return differ


def _plain(value: Any) -> Any:
    """Tuples as lists, recursively, so that settings compare by value."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _check_epochs_left(path: Path, ckpt: dict[str, Any], max_epochs: int,
                       finished_ok: bool) -> None:
    """Epochs the checkpoint has trained (ufer saves at the end of an epoch) against
    ``max_epochs``, and the plan of a step-planned schedule."""
    done = int(ckpt["epoch"]) + 1
    if done >= max_epochs and not finished_ok:
        raise ValueError(f"{path} has trained {_count(done, 'epoch')} already: max_epochs "
                         f"{max_epochs} leaves nothing to train; give a larger max_epochs to "
                         "extend the run, or evaluate it with ufer evaluate")
    scheduler = ckpt.get("hyper_parameters", {}).get("scheduler")
    states = ckpt.get("lr_schedulers") or [{}]
    planned_steps = states[0].get(STEP_PLANNED.get(scheduler, ""))
    steps = int(ckpt.get("global_step", 0))
    planned = round(planned_steps * done / steps) if planned_steps and steps else None
    if planned not in (None, max_epochs) and done < max_epochs:
        raise ValueError(
            f"{path} was planned for {_count(planned, 'epoch')} by its {scheduler} schedule "
            f"({_count(planned_steps, 'step')}), which cannot be re-planned: resume it with "
            f"max_epochs {planned}; runs with a per-epoch schedule (--model.scheduler "
            "multistep or exponential) can be extended")
    log.info("resuming %s after epoch %d, up to epoch %d (%s schedule)", path, done,
             max_epochs, scheduler)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


# ----------------------------------------------------------------------------- logs
class RunLog:
    """Where a run's detail goes instead of the console.

    While active, INFO lines of Lightning and ufer and Python warnings are kept in memory,
    then written to ``RUN/train.log`` once the run's folder is known and claimed
    (``write_to``); the console keeps ufer's warnings, errors and the epoch lines.
    """

    def __init__(self) -> None:
        self._sink: logging.Handler = MemoryHandler(capacity=100_000,
                                                    flushLevel=logging.CRITICAL + 1)
        self._saved: list[tuple[Any, str, Any]] = []
        self._warnings = warnings.catch_warnings()

    def start(self) -> None:
        """Quiet the console handlers of ``RUN_LOGGERS`` and collect their records."""
        for name in RUN_LOGGERS:
            logger = logging.getLogger(name)
            self._keep(logger, "level", logging.INFO)
            self._keep(logger, "propagate", logger.propagate and name != "py.warnings")
            for handler in logger.handlers:
                if type(handler) is logging.StreamHandler:
                    self._keep(handler, "level",
                               logging.WARNING if name == "ufer" else logging.ERROR)
            logger.addHandler(self._sink)
        self._warnings.__enter__()
        logging.captureWarnings(True)

    def _keep(self, owner: Any, attribute: str, value: Any) -> None:
        self._saved.append((owner, attribute, getattr(owner, attribute)))
        setattr(owner, attribute, value)

    def write_to(self, run_dir: str | Path, append: bool) -> Path:
        """Write what was collected, and everything from now on, to ``run_dir/train.log``
        (appended to when the run continues)."""
        path = Path(run_dir) / RUN_LOG
        path.parent.mkdir(parents=True, exist_ok=True)
        file = logging.FileHandler(path, mode="a" if append else "w", encoding="utf-8")
        file.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s"))
        if isinstance(self._sink, MemoryHandler):
            self._sink.setTarget(file)
            self._sink.flush()
        self._swap_sink(file)
        return path

    def _swap_sink(self, sink: logging.Handler) -> None:
        for name in RUN_LOGGERS:
            logging.getLogger(name).removeHandler(self._sink)
            logging.getLogger(name).addHandler(sink)
        self._sink.close()
        self._sink = sink

    def stop(self) -> None:
        """Restore the console, the warnings and the loggers; close the file."""
        logging.captureWarnings(False)
        self._warnings.__exit__(None, None, None)
        for name in RUN_LOGGERS:
            logging.getLogger(name).removeHandler(self._sink)
        self._sink.close()
        for owner, attribute, value in reversed(self._saved):
            setattr(owner, attribute, value)


_ACTIVE: list[RunLog] = []


@contextmanager
def run_log() -> Iterator[RunLog]:
    """The active ``RunLog``, or a new one for the duration of the block."""
    if _ACTIVE:
        yield _ACTIVE[-1]
        return
    current = RunLog()
    current.start()
    _ACTIVE.append(current)
    try:
        yield current
    finally:
        _ACTIVE.pop()
        current.stop()


class RunCSVLogger(CSVLogger):
    """``metrics.csv`` of a run, written after every logging call (a killed run keeps its
    rows). A continued run (``append``) keeps the rows of the epochs its checkpoint holds
    and adds its own; Lightning's CSVLogger would delete the file."""

    def __init__(self, run_dir: str | Path, append: bool) -> None:
        super().__init__(run_dir, name="", version="", flush_logs_every_n_steps=1)
        self.append = append

    @property
    @rank_zero_experiment
    def experiment(self) -> ExperimentWriter:
        if self._experiment is None:
            metrics = Path(self.log_dir) / ExperimentWriter.NAME_METRICS_FILE
            if not self.append:
                metrics.unlink(missing_ok=True)
            self._experiment = _AppendingWriter(self.log_dir)
        return self._experiment


class _AppendingWriter(ExperimentWriter):
    """Lightning's writer without its deletion of an existing ``metrics.csv``: the file's
    columns are read back, so new rows extend it (new columns rewrite it, keeping rows)."""

    def __init__(self, log_dir: str) -> None:
        super().__init__(log_dir)
        if os.path.isfile(self.metrics_file_path):
            with open(self.metrics_file_path, newline="") as fh:
                self.metrics_keys = list(csv.DictReader(fh).fieldnames or [])

    def _check_log_dir_exists(self) -> None:
        """Nothing to check: the run folder was claimed (``claim_run_dir``)."""

    def drop_rows_from(self, epoch: int) -> int:
        """Remove training and validation rows of epochs >= ``epoch`` (logged by a killed
        run after its last checkpoint; the continued run logs them again); test rows stay.
        Returns how many were removed."""
        if not os.path.isfile(self.metrics_file_path):
            return 0
        with open(self.metrics_file_path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        kept = [r for r in rows if _row_epoch(r) < epoch or
                any(v != "" for k, v in r.items() if k.startswith("test/"))]
        if len(kept) < len(rows):
            with open(self.metrics_file_path, "w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=self.metrics_keys)
                writer.writeheader()
                writer.writerows(kept)
        return len(rows) - len(kept)


def _row_epoch(row: dict[str, str]) -> float:
    return float(row["epoch"]) if row.get("epoch") else -1.0


class ContinueMetrics(Callback):
    """When a run continues from its checkpoint, drop the rows its ``metrics.csv`` holds of
    the epochs about to be trained again (``_AppendingWriter.drop_rows_from``)."""

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, RunCSVLogger) and logger.append and trainer.global_rank == 0:
                dropped = logger.experiment.drop_rows_from(trainer.current_epoch)
                log.info("continuing at epoch %d; %d rows of later epochs dropped from %s",
                         trainer.current_epoch + 1, dropped, logger.experiment.metrics_file_path)


class SplitNotes(Callback):
    """Say once, on the console, when the data has no validation rows: no ``best.ckpt``."""

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        dm = trainer.datamodule
        if isinstance(dm, FERDataModule) and not dm.split_size(dm.val_split):
            log.warning("%s has no '%s' rows: nothing is validated and checkpoints/best.ckpt "
                        "is not written; checkpoints/last.ckpt (the last epoch) is the run's "
                        "final model", dm.manifest_path, dm.val_split)


def trainer_kwargs(run_dir: str | Path, max_epochs: int, *, progress: bool | None = None,
                   checkpoints: bool = True, extra_callbacks: list[Callback] | None = None,
                   append: bool = False, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments for ``pl.Trainer``: loggers, checkpoints and output for one run.

    ``append``: the run continues the one in ``run_dir`` (``claim_run_dir``), so its
    ``metrics.csv`` is extended rather than replaced.
    """
    run_dir = Path(run_dir)
    progress = interactive() if progress is None else progress
    callbacks: list[Callback] = list(extra_callbacks or []) + [
        LabelFlowWriter(run_dir), ContinueMetrics(), SplitNotes(), TrainingClock()]
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
        "logger": [RunCSVLogger(run_dir, append),
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

    ``run_dir`` must not hold another run (``claim_run_dir``); ``resume`` (a checkpoint)
    must continue a run with this method and these settings (``check_resume``; a finished
    run is accepted and only tested). Both are checked before anything is written.

    Returns:
        ``{"method", "run_dir", "test": {metric: value}, "labels": {...}, "seconds",
        "images_per_second"}``; test metrics are of the LAST epoch's weights (no selection
        on the test split; ``checkpoints/best.ckpt`` is selected on validation). No
        ``test`` entry when the data has no test rows.
    """
    check_max_epochs(max_epochs)
    run_dir = Path(run_dir)
    with run_log() as logs:
        append = claim_run_dir(run_dir, resume)
        # read before fit: resuming from last.ckpt overwrites it
        earlier = 0.0 if resume is None else TrainingClock.recorded(
            check_resume(resume, method, datamodule, max_epochs, finished_ok=True))
        logs.write_to(run_dir, append)
        pl.seed_everything(seed, workers=True, verbose=False)
        trainer = pl.Trainer(**trainer_kwargs(run_dir, max_epochs, append=append, **overrides))
        start = time.perf_counter()
        trainer.fit(method, datamodule=datamodule, ckpt_path=resume, weights_only=True)
        seconds = earlier + time.perf_counter() - start
        result: dict[str, Any] = {"method": method.method_name, "run_dir": str(run_dir),
                                  "seconds": seconds, "epochs": trainer.current_epoch,
                                  "images_per_second": datamodule.num_train * max_epochs / seconds,
                                  "labels": method.samples.summary()}
        if test and trainer.global_rank == 0 and tested(datamodule):
            metrics = trainer.test(method, datamodule=datamodule, verbose=False)[0]
            result["test"] = {k.removeprefix("test/"): float(v) for k, v in metrics.items()}
        if trainer.global_rank == 0:
            (run_dir / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def tested(datamodule: FERDataModule) -> bool:
    """True when the data has test rows; otherwise says once that the run is not tested."""
    if datamodule.split_size(datamodule.test_split):
        return True
    log.warning("%s has no '%s' rows: the run is not tested", datamodule.manifest_path,
                datamodule.test_split)
    return False


def train_method(manifest: str | Path, method: str, run_dir: str | Path, max_epochs: int, *,
                 seed: int = 0, method_kwargs: dict[str, Any] | None = None,
                 data_kwargs: dict[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """Build the data module and the method ``method`` sized from it, then ``fit``.

    The one entry point shared by ``ufer demo`` and ``ufer bench``: every cell of a
    comparison goes through here, so all methods get the same data, augmentation and
    schedule unless ``method_kwargs`` says otherwise.
    """
    from ufer._registry import create_method

    check_max_epochs(max_epochs)
    with run_log():  # the model's and data's INFO lines belong to the run's log
        dm = FERDataModule(str(manifest), seed=seed, **(data_kwargs or {}))
        pl.seed_everything(seed, workers=True, verbose=False)
        model = create_method(method, **{**dm.method_sizes(), **(method_kwargs or {})})
        return fit(model, dm, run_dir, max_epochs, seed=seed, **overrides)
