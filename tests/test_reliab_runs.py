"""Runs (issue 11): training that trains nothing is an error, a run folder is never
clobbered, a resume appends and continues the run as it was, checkpoints are read
weights-only and their errors name the file."""
from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY_BACKBONE, tiny_fit_kwargs
from lightning.pytorch.callbacks import ModelCheckpoint

from ufer.cli.main import main
from ufer.data.manifest import ManifestError, read_manifest, write_manifest
from ufer.engine.callbacks import TrainingClock
from ufer.engine.train import train_method
from ufer.methods.base import read_checkpoint


class EveryEpoch(ModelCheckpoint):
    """Keeps every epoch's checkpoint (a third ModelCheckpoint needs its own state key)."""

    @property
    def state_key(self) -> str:
        return "every-epoch"


def _fit(manifest, run: Path, epochs: int, resume=None, callbacks=(), **method_kwargs):
    return train_method(manifest, "baseline", run, epochs, resume=resume, test=False,
                        method_kwargs={"backbone": TINY_BACKBONE, **method_kwargs},
                        data_kwargs={"batch_size": 64},
                        **tiny_fit_kwargs(extra_callbacks=list(callbacks)))


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def _train_rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open(newline="") as fh:
        return [r for r in csv.DictReader(fh) if r.get("train/loss")]


def _subset(manifest: str, name: str, keep) -> Path:
    """A copy of ``manifest`` with the rows ``keep(frame)`` selects, next to its images."""
    data = read_manifest(manifest, check_images=False)
    meta = {k: v for k, v in data.meta.items() if k != "counts"}
    return write_manifest(keep(data.frame), meta, Path(manifest).with_name(name))


# ----------------------------------------------------------------------------- item 3
def test_reliab_training_that_trains_nothing_is_an_error(tiny_manifest, tmp_path):
    no_train = _subset(tiny_manifest, "no_train.csv", lambda f: f[f["split"] != "train"])
    header_only = _subset(tiny_manifest, "header_only.csv", lambda f: f.iloc[:0])
    for manifest, counts in ((no_train, r"val 50, test 100"), (header_only, "no rows at all")):
        with pytest.raises(ManifestError, match=rf"{manifest.name}: has no 'train' rows "
                                                rf"\({counts}\): nothing to train on"):
            _fit(manifest, tmp_path / manifest.stem, 1)
        assert not (tmp_path / manifest.stem / "checkpoints").exists()
    with pytest.raises(ValueError, match="max_epochs must be at least 1, got 0"):
        _fit(tiny_manifest, tmp_path / "zero", 0)
    assert not (tmp_path / "zero").exists()


def test_reliab_cli_max_epochs_0_is_an_error(tiny_manifest, tmp_path, capsys):
    status = main(["train", "--model", "Baseline", "--model.backbone", TINY_BACKBONE,
                   "--data.manifest", tiny_manifest, "--trainer.accelerator", "cpu",
                   "--trainer.max_epochs", "0", "--run_dir", str(tmp_path / "run")])
    torch.set_num_threads(1)
    assert status == 1
    assert "max_epochs must be at least 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


# ----------------------------------------------------------------------------- item 4
def test_reliab_existing_run_folder_is_refused_untouched(tiny_manifest, tmp_path):
    run = tmp_path / "run"
    _fit(tiny_manifest, run, 1)
    before = _files(run)
    with pytest.raises(FileExistsError, match=r"run holds a run already .* continue that run "
                                              r"with --ckpt_path .*run/checkpoints/last.ckpt"):
        _fit(tiny_manifest, run, 1)
    assert _files(run) == before


def test_reliab_resume_appends_to_metrics_csv(tiny_manifest, tmp_path):
    """A run killed after epoch 1 of 3 (its epoch-2 rows were logged, its epoch-2 checkpoint
    lost) continues from epoch 1's checkpoint: epoch 1's rows stay as they were, epochs 2
    and 3 are logged once each; a per-epoch schedule (multistep) is extended to 3 epochs."""
    run = tmp_path / "run"
    every = EveryEpoch(dirpath=run / "epochs", filename="{epoch}", save_top_k=-1)
    _fit(tiny_manifest, run, 2, callbacks=[every], scheduler="multistep")
    first = _train_rows(run)
    assert [r["epoch"] for r in first] == ["0", "1"]
    _fit(tiny_manifest, run, 3, resume=run / "epochs" / "epoch=0.ckpt", scheduler="multistep")
    rows = _train_rows(run)
    assert [r["epoch"] for r in rows] == ["0", "1", "2"]
    assert rows[0] == first[0]
    assert "continuing at epoch 2" in (run / "train.log").read_text()


def test_reliab_extending_a_onecycle_run_is_refused_before_anything_is_touched(
        tiny_manifest, tmp_path):
    run = tmp_path / "run"
    _fit(tiny_manifest, run, 1)
    before = _files(run)
    with pytest.raises(ValueError, match=r"was planned for 1 epoch by its onecycle schedule "
                                         r".* resume it with max_epochs 1"):
        _fit(tiny_manifest, run, 2, resume=run / "checkpoints" / "last.ckpt")
    assert _files(run) == before


# ----------------------------------------------------------------------------- items 6, 8
@pytest.fixture(scope="module")
def cli_run(tiny_manifest, tmp_path_factory) -> Path:
    """A one-epoch Baseline run trained by ``ufer train`` with a per-epoch schedule."""
    run = tmp_path_factory.mktemp("cli") / "run"
    assert _train(tiny_manifest, "--model", "Baseline", "--run_dir", str(run)) == 0
    return run


def _train(manifest: str, *args: str) -> int:
    common = ["--model.backbone", TINY_BACKBONE, "--model.scheduler", "multistep",
              "--data.manifest", manifest, "--data.batch_size", "64",
              "--trainer.accelerator", "cpu", "--trainer.max_epochs", "1"]
    try:
        return main(["train", *common, *args])
    finally:
        torch.set_num_threads(1)


def test_reliab_resume_refuses_another_method_or_hyper_parameter(tiny_manifest, cli_run,
                                                                 capsys):
    last = str(cli_run / "checkpoints" / "last.ckpt")
    before = _files(cli_run)
    capsys.readouterr()
    assert _train(tiny_manifest, "--model", "SCN", "--model.lr", "0.5", "--ckpt_path", last,
                  "--trainer.max_epochs", "2", "--run_dir", str(cli_run)) == 1
    err = capsys.readouterr().err
    assert "was trained by method 'baseline', not 'scn'" in err and len(err.splitlines()) == 1
    assert _train(tiny_manifest, "--model", "Baseline", "--model.lr", "0.5", "--ckpt_path",
                  last, "--trainer.max_epochs", "2", "--run_dir", str(cli_run)) == 1
    assert "was trained with model.lr 0.05, not 0.5" in capsys.readouterr().err
    assert _files(cli_run) == before


def test_reliab_cli_resume_reads_checkpoints_weights_only(tiny_manifest, cli_run, tmp_path,
                                                          monkeypatch):
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    assert _train(tiny_manifest, "--model", "Baseline", "--trainer.max_epochs", "2",
                  "--ckpt_path", str(cli_run / "checkpoints" / "last.ckpt"),
                  "--run_dir", str(tmp_path / "continued")) == 0
    assert calls and all(w is True for w in calls), calls


def _payload_checkpoint(path: Path, marker: Path) -> None:
    class Payload:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    torch.save({"ufer": {}, "x": Payload()}, path)


def test_reliab_checkpoint_errors_name_the_file(tmp_path):
    good = tmp_path / "good.ckpt"
    torch.save({"ufer": {"method": "baseline"}, "state_dict": {"w": torch.zeros(64)}}, good)
    (tmp_path / "text.ckpt").write_text("hello, not a checkpoint\n")
    (tmp_path / "truncated.ckpt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (tmp_path / "empty.ckpt").write_bytes(b"")
    _payload_checkpoint(tmp_path / "evil.ckpt", tmp_path / "PAYLOAD_RAN")
    cases = {"text.ckpt": "cannot be read as a checkpoint", "truncated.ckpt": "cannot be read as a checkpoint: it is truncated",
             "empty.ckpt": r"is empty \(0 bytes\)", "evil.ckpt": "holds objects other than "
             "weights and plain values, which are never loaded"}
    for name, problem in cases.items():
        with pytest.raises(ValueError, match=rf"{tmp_path / name} {problem}"):
            read_checkpoint(tmp_path / name)
    with pytest.raises(FileNotFoundError, match=r"checkpoint not found: .* \(a folder"):
        read_checkpoint(tmp_path)
    assert read_checkpoint(good)["ufer"] == {"method": "baseline"}
    assert not (tmp_path / "PAYLOAD_RAN").exists()


def test_reliab_training_clock_sums_the_processes_of_a_resumed_run(tiny_manifest, tmp_path):
    """``seconds`` of a run continued from its checkpoint counts the earlier process too: a
    finished one-epoch run "resumed" trains nothing more, and still reports at least the
    seconds its checkpoint recorded (before the clock it reported only the new process)."""
    clock = TrainingClock()
    clock.load_state_dict({"seconds": 100.0})
    assert clock.seconds() == 100.0  # not started: the earlier processes only
    clock.on_fit_start(None, None)
    assert 100.0 <= clock.state_dict()["seconds"] < 160.0

    run = tmp_path / "run"
    first = _fit(tiny_manifest, run, 1, scheduler="multistep")
    last = run / "checkpoints" / "last.ckpt"
    saved = torch.load(last, weights_only=True)["callbacks"]["TrainingClock"]["seconds"]
    assert 0.0 < saved <= first["seconds"]
    again = _fit(tiny_manifest, run, 1, resume=last, scheduler="multistep")
    assert again["seconds"] >= saved


def test_reliab_training_clock_counts_a_resume_from_last_ckpt_once(tiny_manifest, tmp_path):
    """Resuming from ``last.ckpt`` overwrites it; the earlier seconds come from the file as it
    was before training, so the resumed run is at most the first run plus this call."""
    run = tmp_path / "run"
    _fit(tiny_manifest, run, 1, scheduler="multistep")
    last = run / "checkpoints" / "last.ckpt"
    saved = TrainingClock.recorded(read_checkpoint(last))
    start = time.perf_counter()
    again = _fit(tiny_manifest, run, 2, resume=last, scheduler="multistep")
    call = time.perf_counter() - start
    assert saved <= again["seconds"] <= saved + call
