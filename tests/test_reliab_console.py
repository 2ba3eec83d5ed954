"""The console of a training run (issue 11): ``ufer train`` in its own process shows one
line per epoch and nothing of Lightning's, whose lines go to RUN/train.log; an error in the
data is one line on stderr."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
from conftest import TINY_BACKBONE

LIGHTNING_CHATTER = ("GPU available", "TPU available", "Tip:", "Loading `train_dataloader`",
                     "exists and is not empty", "LightningCLI's args", "Seed set")


def _ufer(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CI": "1", "OMP_NUM_THREADS": "1"}
    env.pop("UFER_DEBUG", None)
    command = [sys.executable, "-m", "ufer.cli.main", "train", "--model", "Baseline",
               "--model.backbone", TINY_BACKBONE, "--trainer.accelerator", "cpu",
               "--data.batch_size", "16", *args]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def _small_data(tmp_path: Path) -> Path:
    from ufer.data.synthetic import generate

    return generate(tmp_path / "data", preset="tiny", seed=0, n_train=32, n_val=8, n_test=8)


def test_reliab_train_console_is_one_line_per_epoch(tmp_path):
    _small_data(tmp_path)
    done = _ufer(tmp_path, "--data.manifest", "data/manifest.csv", "--trainer.max_epochs", "2",
                 "--run_dir", "run")
    assert done.returncode == 0, done.stderr
    console = done.stdout + done.stderr
    assert not [c for c in LIGHTNING_CHATTER if c in console], console
    assert done.stderr == ""
    epochs = [line for line in done.stdout.splitlines() if line.strip().startswith("epoch ")]
    assert [line.split()[1] for line in epochs] == ["1/2", "2/2"]
    log = (tmp_path / "run" / "train.log").read_text()
    assert "GPU available" in log and "Seed set to 0" in log and "no pretrained_path" in log


def test_reliab_train_data_error_is_one_line_on_stderr(tmp_path):
    manifest = _small_data(tmp_path)
    frame = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    frame.loc[1, "path"] = "broken.png"
    (tmp_path / "data" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    frame.to_csv(tmp_path / "data" / "broken.csv", index=False)
    (tmp_path / "data" / "broken.json").write_text(manifest.with_suffix(".json").read_text())
    done = _ufer(tmp_path, "--data.manifest", "data/broken.csv", "--trainer.max_epochs", "1",
                 "--run_dir", "run")
    assert done.returncode == 1
    assert done.stderr == (
        "ufer train: error: data/broken.csv, row 1 (line 3), column 'path': value 'broken.png' "
        "points to an image that cannot be decoded: data/broken.png (cannot identify image "
        "file 'data/broken.png')\n")
