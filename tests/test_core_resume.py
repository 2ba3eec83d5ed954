"""Exact resume: a run resumed from its epoch-2 checkpoint ends identical to the full run."""
import pytest
import torch
from conftest import TINY_BACKBONE, tiny_fit_kwargs
from lightning.pytorch.callbacks import ModelCheckpoint

import ufer
from ufer.engine.train import train_method
from ufer.methods.base import read_checkpoint


class EveryEpoch(ModelCheckpoint):
    """Keeps every epoch's checkpoint (a third ModelCheckpoint needs its own state key)."""

    @property
    def state_key(self) -> str:
        return "every-epoch"


def _train(manifest, method, run_dir, resume=None):
    every_epoch = EveryEpoch(dirpath=run_dir / "epochs", filename="{epoch}", save_top_k=-1)
    return train_method(manifest, method, run_dir, 4, seed=3, resume=resume, test=False,
                        method_kwargs={"backbone": TINY_BACKBONE},
                        data_kwargs={"batch_size": 32},
                        **tiny_fit_kwargs(extra_callbacks=[every_epoch]))


@pytest.mark.parametrize("name", ufer.list_methods())
def test_resume_matches_uninterrupted_run(name, tiny_noisy_manifest, tmp_path):
    _train(tiny_noisy_manifest, name, tmp_path / "full")
    _train(tiny_noisy_manifest, name, tmp_path / "resumed",
           resume=tmp_path / "full" / "epochs" / "epoch=1.ckpt")  # after 2 of 4 epochs
    full = read_checkpoint(tmp_path / "full" / "checkpoints" / "last.ckpt")["state_dict"]
    resumed = read_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.ckpt")["state_dict"]
    assert full.keys() == resumed.keys()
    for key in full:  # weights and every per-sample buffer (labels, confidences, ...)
        torch.testing.assert_close(full[key], resumed[key], rtol=0, atol=0, equal_nan=True,
                                   msg=key)
