"""Nearest neighbours of the training samples in an auxiliary space (LDLVA's valence-arousal).

LDLVA (WACV 2023, section 3.2) finds, once before training, the K nearest training samples
of every training sample in valence-arousal space (Euclidean, the sample itself excluded)
and builds each sample's label distribution from them. ``nearest_neighbours`` is that
search: exact brute force in float64 over chunks of rows, a pure function of the points,
run on whatever device the points are on (the method passes its training device). Cost
grows as N^2: RAF-DB's 12k training faces take seconds on a CPU; AffectNet's 280k take
about 15 minutes on one CPU core and seconds on a GPU.

Delivery: the (N, K) table lives in the method's per-sample store (``SampleState``), indexed
by each batch's ``index``, not in the batch. The store is identical on every process by
construction and checkpointed, so a resumed or multi-process run reads the same table
without the data pipeline; the data module only needs it when a method wants the
neighbours' images (``FERDataModule.neighbours``).
"""
from __future__ import annotations

import torch
from torch import Tensor

CHUNK_ELEMENTS = 2**24  # distances held at once (rows x N), 128 MiB in float64


def nearest_neighbours(points: Tensor, k: int, valid: Tensor | None = None,
                       chunk_elements: int = CHUNK_ELEMENTS) -> Tensor:
    """Indices of the ``k`` nearest other valid points of every point (Euclidean).

    Args:
        points: (N, D) coordinates, e.g. (valence, arousal).
        k: neighbours per point.
        valid: (N,) bool, points with known coordinates; None = all. An invalid point has no
            neighbours and is nobody's neighbour.
        chunk_elements: most distances computed at once (rows per chunk = this / N).

    Returns:
        (N, k) int64, nearest first (ties as ``torch.topk`` breaks them, the same on every
        process of a run); -1 where a point has fewer than k valid others, and on every
        invalid point's row. A point is never its own neighbour.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    n = points.shape[0]
    out = torch.full((n, k), -1, dtype=torch.long, device=points.device)
    if valid is None:
        valid = torch.ones(n, dtype=torch.bool, device=points.device)
    kept = valid.nonzero().squeeze(1)
    take = min(k, kept.numel() - 1)
    if take <= 0:
        return out
    x = points[kept].to(torch.float64)
    rows = max(1, chunk_elements // x.shape[0])
    for start in range(0, x.shape[0], rows):
        stop = min(start + rows, x.shape[0])
        dist = torch.cdist(x[start:stop], x, compute_mode="donot_use_mm_for_euclid_dist")
        own = torch.arange(start, stop, device=x.device)
        dist[own - start, own] = float("inf")  # never one's own neighbour
        nearest = torch.topk(dist, take, dim=1, largest=False).indices
        out[kept[start:stop], :take] = kept[nearest]
    return out
