"""Confidence-weighted classification: MTAC eqs 1-2 and 4, ULC-AG eqs 2-4, SCN's losses.

Notation: a batch of N samples, C classes, ``confidence`` is the per-sample alpha_i in
(0, 1) produced by a sigmoid head (MTAC eq 1 / ULC-AG eq 1 / SCN's self-attention).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def class_weights(counts: Tensor) -> Tensor:
    """Class-oriented weights gamma_j = 1 - N_j / N of one batch (MTAC eq 4 / ULC-AG eq 2).

    Args:
        counts: (C,) N_j, samples of class j in the batch (summed over processes when the
            batch is split across them), e.g. ``torch.bincount(labels, minlength=C)``.

    Returns:
        (C,) float weights in [0, 1]; a class absent from the batch gets 1. An empty
        batch gives all ones.
    """
    counts = counts.to(torch.get_default_dtype())
    return 1.0 - counts / counts.sum().clamp(min=1.0)


def confidence_weighted_ce(
    logits: Tensor, labels: Tensor, confidence: Tensor, scale: Tensor | None = None
) -> Tensor:
    """Cross-entropy with the confidence scaling the logits inside the softmax.

    L_wce = mean_i CE(alpha_i * scale_i * z_i, y_i): MTAC eq 2 and SCN with ``scale=None``;
    ULC-AG eq 3 with ``scale = class_weights(counts)[labels]`` (gamma_{y_i}).
    Gradient flows into ``confidence``: this loss is what trains alpha.

    Args:
        logits: (N, C) classifier outputs z_i.
        labels: (N,) int64 current labels y_i.
        confidence: (N,) alpha_i in (0, 1).
        scale: (N,) optional extra per-sample factor on the logits.

    Returns:
        Scalar mean over the batch.
    """
    factor = confidence if scale is None else confidence * scale
    return F.cross_entropy(logits * factor.unsqueeze(1), labels)


def split_high_low(confidence: Tensor, high_fraction: float) -> Tensor:
    """Mask of the high-confidence group H of a batch (ULC-AG eq 4 ratio phi, SCN beta).

    H is the top ``floor(high_fraction * N + 0.5)`` samples by confidence (ties keep batch
    order), clamped so that both groups are non-empty when N >= 2. The low group L is
    ``~mask``: it is the set eligible for relabeling (ULC-AG section II-D, SCN).

    Args:
        confidence: (N,) alpha_i.
        high_fraction: fraction of the batch in H, in (0, 1) (phi = 0.8, SCN beta = 0.7).

    Returns:
        (N,) bool, True for H. With N < 2 every sample is in H.
    """
    n = confidence.numel()
    mask = torch.ones(n, dtype=torch.bool, device=confidence.device)
    if n < 2:
        return mask
    k = min(max(math.floor(high_fraction * n + 0.5), 1), n - 1)
    order = torch.argsort(confidence.detach(), descending=True, stable=True)
    mask[order[k:]] = False
    return mask


def rank_regularization(
    confidence: Tensor, high_fraction: float = 0.8, margin: float = 0.15
) -> Tensor:
    """Rank regularization L_rr = max(0, margin - (mean_H alpha - mean_L alpha)).

    ULC-AG eq 4 (phi = 0.8, theta = 0.15) and SCN eq 2 (beta = 0.7, delta_1 = 0.15), with
    H and L from :func:`split_high_low`.

    Args:
        confidence: (N,) alpha_i in (0, 1); gradient flows into it.
        high_fraction: phi / beta, fraction of the batch in the high group.
        margin: theta / delta_1.

    Returns:
        Scalar >= 0; 0 (still attached to ``confidence``) when N < 2.
    """
    if confidence.numel() < 2:
        return confidence.sum() * 0.0
    high = split_high_low(confidence, high_fraction)
    gap = confidence[high].mean() - confidence[~high].mean()
    return torch.clamp(margin - gap, min=0.0)
