"""Two CPU processes (gloo) hold identical per-sample state after overlapping updates."""
import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import TINY_BACKBONE, tiny_fit_kwargs
from lightning.pytorch.callbacks import Callback

from ufer.engine.train import train_method
from ufer.methods.state import LabelState, scatter_gathered


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    torch.set_num_threads(1)
    state = LabelState(8)
    state.reset(torch.zeros(8, dtype=torch.long), torch.arange(8) % 3)
    # both ranks touch samples 2 and 3 with different values; rank 0's occurrence comes first
    index = torch.tensor([0, 2, 3]) if rank == 0 else torch.tensor([3, 2, 5, 5])
    new = torch.tensor([1, 1, 1]) if rank == 0 else torch.tensor([2, 2, 2, 2])
    changed = state.relabel(index, new, epoch=4)
    bank = torch.zeros(8, 2)
    scatter_gathered(bank, index, torch.full((len(index), 2), float(rank + 1)))
    torch.save({"current": state.current, "epoch": state.corrected_epoch, "bank": bank,
                "changed": changed}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def test_label_state_identical_on_two_processes(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    for key in r0:
        assert torch.equal(torch.as_tensor(r0[key]), torch.as_tensor(r1[key])), key
    assert r0["current"].tolist() == [1, 0, 1, 1, 0, 2, 0, 0]  # 2, 3 from rank 0; 5 from rank 1
    assert r0["epoch"].tolist() == [4, -1, 4, 4, -1, 4, -1, -1]
    assert r0["changed"] == 4
    assert r0["bank"][:, 0].tolist() == [1, 0, 1, 1, 0, 2, 0, 0]


class RelabelEveryBatch(Callback):
    """Moves every batch's samples to (label + 1 + rank) % C: ranks disagree on purpose."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        new = (pl_module.targets(batch) + 1 + trainer.global_rank) % pl_module.hparams.num_classes
        pl_module.labels.relabel(batch["index"], new, trainer.current_epoch)

    def on_train_end(self, trainer, pl_module):
        torch.save({k: v.cpu() for k, v in pl_module.labels.state_dict().items()},
                   os.path.join(trainer.default_root_dir, f"labels{trainer.global_rank}.pt"))


@pytest.mark.slow
def test_ddp_spawn_fit_keeps_ranks_identical(tiny_noisy_manifest, tmp_path):
    train_method(tiny_noisy_manifest, "baseline", tmp_path, 1, test=False,
                 method_kwargs={"backbone": TINY_BACKBONE}, data_kwargs={"batch_size": 48},
                 **tiny_fit_kwargs(devices=2, strategy="ddp_spawn", checkpoints=False,
                                   extra_callbacks=[RelabelEveryBatch()]))
    s0, s1 = (torch.load(tmp_path / f"labels{r}.pt", weights_only=True) for r in (0, 1))
    for key in s0:
        assert torch.equal(s0[key], s1[key]), key
    assert (s0["current"] != s0["original"]).any()
