"""Reliability: nothing the user gave is silently lost or mis-attached (issue 11)."""
from pathlib import Path

import pytest
from conftest import TINY_BACKBONE, tiny_fit_kwargs

from ufer.data.manifest import read_manifest, write_manifest
from ufer.engine.train import train_method


def _reordered(manifest: str, tmp_path: Path) -> Path:
    """The same rows, training rows in reverse order, next to the original images."""
    data = read_manifest(manifest)
    frame = data.frame.drop(columns=["row"], errors="ignore")
    train = frame[frame["split"] == "train"].iloc[::-1]
    frame = frame.loc[list(train.index) + list(frame.index[frame["split"] != "train"])]
    return write_manifest(frame.reset_index(drop=True),
                          {k: v for k, v in data.meta.items() if k != "counts"},
                          Path(manifest).with_name("reordered.csv"))


def test_reliab_resume_with_a_reordered_manifest_is_refused(tiny_noisy_manifest, tmp_path):
    run = tmp_path / "run"
    train_method(tiny_noisy_manifest, "scn", run, 1, test=False,
                 method_kwargs={"backbone": TINY_BACKBONE}, data_kwargs={"batch_size": 64},
                 **tiny_fit_kwargs())
    shuffled = _reordered(tiny_noisy_manifest, tmp_path)
    with pytest.raises(ValueError, match=r"reordered.csv: row \d+ \(line \d+, path .* is not "
                                         r"the row the run trained on"):
        train_method(shuffled, "scn", tmp_path / "resumed", 2, test=False,
                     method_kwargs={"backbone": TINY_BACKBONE}, data_kwargs={"batch_size": 64},
                     resume=run / "checkpoints" / "last.ckpt", **tiny_fit_kwargs())


def test_reliab_report_with_a_reordered_manifest_is_refused(tiny_noisy_manifest, tmp_path):
    from ufer.engine.report import write_report

    run = tmp_path / "run"
    train_method(tiny_noisy_manifest, "baseline", run, 1, test=False,
                 method_kwargs={"backbone": TINY_BACKBONE}, data_kwargs={"batch_size": 64},
                 **tiny_fit_kwargs())
    with pytest.raises(ValueError, match="is not the row the run trained on"):
        write_report(run, manifest=_reordered(tiny_noisy_manifest, tmp_path))
