"""Per-sample state indexed by dataset index: the one place that knows about processes.

Every per-sample quantity (current labels, confidences, uncertainty factors, banks) is a
module buffer of shape (N, ...) so it is saved in checkpoints. Updates go through
``scatter_gathered``: gather (index, value) pairs from every process, then apply the
same update everywhere, so all ranks hold identical state even though DDP re-broadcasts
buffers from rank 0 (shared/research/ecosystem.md §2). Indices that occur more than once
(the distributed sampler pads by repeating samples) keep their first occurrence in rank
order, so the result does not depend on write order.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def all_gather_cat(x: Tensor) -> Tensor:
    """Concatenate ``x`` (n_r, ...) from every process in rank order; sizes may differ."""
    if not is_distributed():
        return x
    sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, torch.tensor([x.shape[0]], device=x.device))
    longest = int(max(s.item() for s in sizes))
    padded = torch.zeros((longest, *x.shape[1:]), dtype=x.dtype, device=x.device)
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([p[: int(s.item())] for p, s in zip(parts, sizes)])


def all_reduce_sum(x: Tensor) -> Tensor:
    """Sum ``x`` over processes (a batch statistic such as class counts); identity alone."""
    if is_distributed():
        x = x.clone()
        dist.all_reduce(x)
    return x


def first_occurrence(index: Tensor) -> tuple[Tensor, Tensor]:
    """(unique indices (U,), position of each one's first occurrence in ``index`` (U,))."""
    unique, inverse = torch.unique(index, return_inverse=True)
    positions = torch.arange(index.numel(), device=index.device)
    first = torch.full_like(unique, index.numel()).scatter_reduce(
        0, inverse, positions, reduce="amin")
    return unique, first


@torch.no_grad()
def scatter_gathered(buffer: Tensor, index: Tensor, values: Tensor) -> tuple[Tensor, Tensor]:
    """``buffer[index] = values`` with the pairs of every process, identically on all ranks.

    Args:
        buffer: (N, ...) per-sample state, modified in place.
        index: (n,) int64 dataset indices of this process's batch.
        values: (n, ...) new values for those samples.

    Returns:
        (indices written (U,), values written (U, ...)) after gathering and de-duplication.
    """
    index, values = all_gather_cat(index), all_gather_cat(values)
    unique, first = first_occurrence(index)
    buffer[unique] = values[first].to(buffer.dtype)
    return unique, values[first]


class LabelState(nn.Module):
    """The per-sample labels of the training split.

    Buffers (all (N,) int64, N = training samples):
        original: the label as given (possibly noisy); never changed after setup.
        current: the label training uses now; only ``relabel`` changes it.
        clean: the true label where known (synthetic data), else -1.
        corrected_epoch: epoch of the last change of ``current``, -1 if never.
    """

    def __init__(self, num_samples: int):
        super().__init__()
        for name in ("original", "current", "clean", "corrected_epoch"):
            self.register_buffer(name, torch.full((num_samples,), -1, dtype=torch.long))

    def reset(self, labels: Tensor, clean: Tensor | None = None) -> None:
        """Fill from the dataset at the start of a fresh run (a resumed run then loads its own)."""
        if labels.shape != self.original.shape:
            raise ValueError(f"label state holds {self.original.numel()} samples but the "
                             f"training split has {labels.numel()}; was num_train set?")
        self.original.copy_(labels)
        self.current.copy_(labels)
        self.clean.copy_(clean if clean is not None else torch.full_like(labels, -1))
        self.corrected_epoch.fill_(-1)

    def __getitem__(self, index: Tensor) -> Tensor:
        """Current labels of the samples ``index`` (n,)."""
        return self.current[index]

    @torch.no_grad()
    def relabel(self, index: Tensor, new_labels: Tensor, epoch: int) -> Tensor:
        """Set ``current[index] = new_labels`` on every process.

        Returns how many labels changed as a 0-d tensor (no device sync in the step).
        """
        index, new_labels = all_gather_cat(index), all_gather_cat(new_labels)
        unique, first = first_occurrence(index)
        new = new_labels[first]
        changed = new != self.current[unique]
        self.current[unique[changed]] = new[changed]
        self.corrected_epoch[unique[changed]] = epoch
        return changed.sum()

    @torch.no_grad()
    def summary(self) -> dict[str, float]:
        """Counts of what happened to the labels; the clean-label ones only where known."""
        changed = self.current != self.original
        out = {"corrected": float(changed.sum())}
        known = self.clean >= 0
        if bool(known.any()):
            right = changed & (self.current == self.clean)
            out["corrected_right"] = float(right.sum())
            out["correction_precision"] = float(right.sum()) / max(float(changed.sum()), 1.0)
            out["noisy_given"] = float((known & (self.original != self.clean)).sum())
            out["noisy_left"] = float((known & (self.current != self.clean)).sum())
        return out

    @torch.no_grad()
    def flow(self, num_classes: int) -> Tensor:
        """(C, C) counts of samples whose label moved from class i (original) to j (current)."""
        changed = self.current != self.original
        flat = self.original[changed] * num_classes + self.current[changed]
        return torch.bincount(flat, minlength=num_classes**2).view(num_classes, num_classes)
