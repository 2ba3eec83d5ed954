"""Per-sample state indexed by dataset index: the one module that knows about processes.

Every per-sample quantity (labels, confidences, uncertainty factors, prediction banks) is a
named field of one ``SampleState``: a buffer of shape (N, ...) saved in checkpoints. A write
gathers the (index, values) pairs of every process in ONE collective and applies the same
update everywhere, so all ranks hold identical state by construction. Indices that occur
more than once (the distributed sampler pads by repeating samples) keep their first
occurrence in rank order, so the result does not depend on write order.

Because the ranks are identical by construction, per-sample buffers are kept out of DDP's
per-step buffer broadcast (``ddp_ignored``); every other buffer, BatchNorm's running
statistics included, keeps DDP's default policy: broadcast from rank 0 at each forward
(each rank's own statistics are overwritten by rank 0's, as in plain DDP training).

Collectives (``SampleState.gather``/``write``, ``all_reduce_sum``) must be called by every
rank in the same order, with the same number of calls per step.
"""
from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor, nn


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


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


def unused_parameters_term(*modules: nn.Module | None) -> Tensor:
    """A zero-valued loss term that touches every parameter of ``modules``.

    DDP expects a gradient for every parameter in every step; a branch that is switched
    off for a while (an AU branch before its start epoch, a gate a configuration does not
    use) adds this term so its parameters get a zero gradient instead of stalling DDP. In a
    single process it is a constant 0 (no gradient: the optimizer then leaves those
    parameters alone, without weight decay or momentum).
    """
    params = [p for m in modules if m is not None for p in m.parameters() if p.requires_grad]
    if not params or not is_distributed():
        return torch.zeros(())
    return sum(p.sum() for p in params) * 0.0


class SampleState(nn.Module):
    """Named per-sample fields, each a buffer (N, *shape) saved in checkpoints.

    Fields are added with ``add`` and read as attributes (``state.confidence``). Writes go
    through ``gather`` (one all_gather of one packed tensor per call) and ``write``.

    Args:
        num_samples: N, the training samples.
        capacity: most rows one process writes per call; multi-process writes pad to it so
            every rank sends the same shape in one collective (set from the batch size by
            ``FERMethod.prepare_state``).
    """

    def __init__(self, num_samples: int, capacity: int = 512):
        super().__init__()
        self.num_samples = num_samples
        self.capacity = capacity
        self.fields: list[str] = []

    def add(self, name: str, shape: tuple[int, ...] = (), dtype: torch.dtype = torch.float32,
            fill: float = float("nan")) -> None:
        """Register field ``name`` of shape (N, *shape) filled with ``fill``."""
        if name in self.fields or hasattr(self, name):
            raise ValueError(f"sample state already has a field or attribute {name!r}")
        self.register_buffer(name, torch.full((self.num_samples, *shape), fill, dtype=dtype))
        self.fields.append(name)

    @torch.no_grad()
    def gather(self, index: Tensor, **values: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The (index, values) pairs of every process, de-duplicated, with one collective.

        Args:
            index: (n,) int64 dataset indices of this process's rows.
            **values: field name -> (n, *field shape) new values.

        Returns:
            (unique indices (U,), {name: (U, *shape)}) in the fields' dtypes, identical on
            every rank; a repeated index keeps its first occurrence in rank order.
        """
        if is_distributed():
            index, values = self._all_gather(index, values)
        unique, first = first_occurrence(index)
        return unique, {k: v[first].to(getattr(self, k).dtype) for k, v in values.items()}

    @torch.no_grad()
    def write(self, index: Tensor, **values: Tensor) -> Tensor:
        """``field[index] = value`` for every given field on every process; returns the
        unique indices written (U,)."""
        unique, gathered = self.gather(index, **values)
        for name, value in gathered.items():
            getattr(self, name)[unique] = value
        return unique

    def _all_gather(self, index: Tensor, values: dict[str, Tensor]
                    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Pack index and values into one float64 (capacity, 1 + D) tensor per rank (int64
        indices and labels, float32 and 16-bit values are exact in float64), all_gather it
        once, drop the padding rows (index -1) and unpack."""
        n = index.numel()
        if n > self.capacity:
            raise ValueError(f"a sample-state write of {n} rows exceeds the capacity "
                             f"{self.capacity}; set capacity to the per-process batch size")
        columns = [index.reshape(n, 1)] + [v.reshape(n, -1) for v in values.values()]
        packed = torch.full((self.capacity, sum(c.shape[1] for c in columns)), -1.0,
                            dtype=torch.float64, device=index.device)
        packed[:n] = torch.cat([c.to(torch.float64) for c in columns], dim=1)
        rows = torch.empty((dist.get_world_size() * self.capacity, packed.shape[1]),
                           dtype=packed.dtype, device=packed.device)
        dist.all_gather_into_tensor(rows, packed)  # rank r's rows at r * capacity
        rows = rows[rows[:, 0] >= 0]
        out, start = {}, 1
        for name, value in values.items():
            width = value[0].numel() if n else int(getattr(self, name)[0].numel())
            out[name] = rows[:, start:start + width].reshape(-1, *getattr(self, name).shape[1:])
            start += width
        return rows[:, 0].long(), out


class LabelState(SampleState):
    """The per-sample store of a method: the labels of the training split, plus whatever
    fields the method adds (``add``).

    Label fields (all (N,) int64):
        original: the label as given (possibly noisy); never changed after setup.
        current: the label training uses now; only ``relabel`` changes it.
        clean: the true label where known (synthetic data), else -1.
        corrected_epoch: epoch of the last change of ``current``, -1 if never.
        row_id: the training row each index stands for (``Manifest.row_ids``: a hash of its
            path and given label; 0 = unknown), checked on resume and by ``ufer report``.
    """

    LABEL_FIELDS = ("original", "current", "clean", "corrected_epoch", "row_id")

    def __init__(self, num_samples: int, capacity: int = 512):
        super().__init__(num_samples, capacity)
        for name in self.LABEL_FIELDS:
            self.add(name, dtype=torch.long, fill=-1)

    def reset(self, labels: Tensor, clean: Tensor | None = None,
              row_ids: Tensor | None = None) -> None:
        """Fill from the dataset at the start of a fresh run (a resumed run then loads its own)."""
        if labels.shape != self.original.shape:
            raise ValueError(f"the sample state holds {self.original.numel()} samples but the "
                             f"training split has {labels.numel()}; was num_train set?")
        self.original.copy_(labels)
        self.current.copy_(labels)
        self.clean.copy_(clean if clean is not None else torch.full_like(labels, -1))
        self.corrected_epoch.fill_(-1)
        self.row_id.copy_(row_ids if row_ids is not None else torch.zeros_like(labels))

    def __getitem__(self, index: Tensor) -> Tensor:
        """Current labels of the samples ``index`` (n,)."""
        return self.current[index]

    @property
    def known_clean(self) -> bool:
        """True when every sample's true label is known (synthetic data)."""
        return bool((self.clean >= 0).all())

    def wrong_given(self) -> Tensor:
        """(N,) bool: the given label differs from the true one (only meaningful where known)."""
        return (self.original != self.clean) & (self.clean >= 0)

    @torch.no_grad()
    def relabel(self, index: Tensor, new_labels: Tensor, epoch: int) -> Tensor:
        """Set ``current[index] = new_labels`` on every process (one collective).

        Returns how many labels changed as a 0-d tensor (no device sync in the step).
        """
        unique, gathered = self.gather(index, current=new_labels)
        new = gathered["current"]
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


def ddp_ignored(module: nn.Module) -> list[str]:
    """Fully qualified names of every ``SampleState`` buffer inside ``module``: what
    ``FERMethod`` hands to DDP as ``_ddp_params_and_buffers_to_ignore`` so per-sample state
    (identical on every rank) stays out of the per-step buffer broadcast."""
    return [f"{prefix}.{name}" if prefix else name
            for prefix, sub in module.named_modules() if isinstance(sub, SampleState)
            for name in sub.fields]
