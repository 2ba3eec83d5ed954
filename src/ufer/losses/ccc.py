"""Concordance correlation coefficient and MTAC's class-balanced CCC loss (MTAC eqs 3 and 5)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _ccc_from_moments(
    mean_p: Tensor, mean_t: Tensor, var_p: Tensor, var_t: Tensor, cov: Tensor, eps: float
) -> Tensor:
    """rho = 2 cov / (var_p + var_t + (mean_p - mean_t)^2 + eps), elementwise (MTAC eq 3)."""
    return 2.0 * cov / (var_p + var_t + (mean_p - mean_t) ** 2 + eps)


def ccc(pred: Tensor, target: Tensor, eps: float = 1e-8) -> Tensor:
    """Concordance correlation coefficient with population statistics (MTAC eq 3).

    Args:
        pred: (n,) predictions.
        target: (n,) labels.
        eps: added to the denominator, so a constant pair gives 0 instead of NaN.

    Returns:
        Scalar in [-1, 1]; 1 for perfect agreement (up to eps).
    """
    mean_p, mean_t = pred.mean(), target.mean()
    dp, dt = pred - mean_p, target - mean_t
    return _ccc_from_moments(
        mean_p, mean_t, (dp**2).mean(), (dt**2).mean(), (dp * dt).mean(), eps
    )


def class_balanced_ccc_loss(
    va_pred: Tensor,
    va: Tensor,
    va_mask: Tensor,
    labels: Tensor,
    num_classes: int,
    weights: Tensor | None = None,
    eps: float = 1e-8,
) -> Tensor:
    """L_w3c = sum_j w_j (1 - (rho_j^v + rho_j^a) / 2) over per-class CCCs (MTAC eq 5).

    rho_j is :func:`ccc` (population statistics) over the samples of class j that have VA.
    A class with fewer than 2 such samples is skipped in this batch.

    Args:
        va_pred: (N, 2) predicted (valence, arousal).
        va: (N, 2) VA labels; rows outside ``va_mask`` may hold anything, NaN included.
        va_mask: (N,) bool, True where the sample has a VA label.
        labels: (N,) int64 current class labels.
        num_classes: C.
        weights: (C,) per-class w_j, e.g. gamma from
            :func:`ufer.losses.classification.class_weights` (MTAC ``gamma="va"``);
            ``None`` means w_j = 1.
        eps: CCC denominator epsilon.

    Returns:
        Scalar float32 >= 0 (<= 2 sum_j w_j); 0, still attached to ``va_pred``, when no class
        has 2 samples with VA. The moments are computed in float32 with autocast off (a bf16
        variance of a small VA spread is mostly rounding).
    """
    with torch.autocast(va_pred.device.type, enabled=False):
        return _class_balanced_ccc_fp32(va_pred.float(), va.float(), va_mask, labels,
                                        num_classes, weights, eps)


def _class_balanced_ccc_fp32(va_pred: Tensor, va: Tensor, va_mask: Tensor, labels: Tensor,
                             num_classes: int, weights: Tensor | None, eps: float) -> Tensor:
    keep = va_mask.unsqueeze(1)
    pred = torch.where(keep, va_pred, torch.zeros_like(va_pred))  # (N, 2)
    target = torch.where(keep, va, torch.zeros_like(va))  # (N, 2)
    member = F.one_hot(labels, num_classes).to(pred.dtype) * keep.to(pred.dtype)  # (N, C)
    count = member.sum(0)  # (C,)
    denom = count.clamp(min=1.0).unsqueeze(1)  # (C, 1)
    mean_p = member.T @ pred / denom  # (C, 2)
    mean_t = member.T @ target / denom  # (C, 2)
    dp = pred.unsqueeze(1) - mean_p  # (N, C, 2)
    dt = target.unsqueeze(1) - mean_t  # (N, C, 2)
    w = member.unsqueeze(2)  # (N, C, 1)
    var_p = (w * dp**2).sum(0) / denom
    var_t = (w * dt**2).sum(0) / denom
    cov = (w * dp * dt).sum(0) / denom
    rho = _ccc_from_moments(mean_p, mean_t, var_p, var_t, cov, eps)  # (C, 2)
    per_class = 1.0 - rho.mean(1)  # (C,)
    if weights is not None:
        per_class = per_class * weights
    return torch.where(count >= 2, per_class, torch.zeros_like(per_class)).sum()
