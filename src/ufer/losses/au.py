"""Confidence-weighted AU detection loss (MTAC eq 8, ULC-AG eq 7)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def weighted_au_bce(
    au_logits: Tensor, au: Tensor, au_mask: Tensor, confidence: Tensor | None = None
) -> Tensor:
    """L_wau = mean_i alpha_i * sum_m BCE(sigmoid(s_im), z_im) over known AUs (MTAC eq 8).

    ULC-AG eq 7 is the same sum; pass ``confidence=None`` for an unweighted loss. The
    confidence is detached here, so this loss never trains alpha (otherwise it would
    push alpha towards 0). BCE is computed from logits for numerical stability.
    The mean runs over the samples with at least one known AU, so rows without AU
    labels do not dilute the loss.

    Args:
        au_logits: (N, M) AU logits s_i.
        au: (N, M) targets z in {0, 1} or soft targets in [0, 1]; entries outside
            ``au_mask`` may hold anything, NaN included.
        au_mask: (N, M) bool, True where the AU label is known.
        confidence: (N,) alpha_i in (0, 1), or None for weight 1.

    Returns:
        Scalar >= 0; 0, still attached to ``au_logits``, when no AU label is known.
    """
    target = torch.where(au_mask, au, torch.zeros_like(au))
    bce = F.binary_cross_entropy_with_logits(au_logits, target, reduction="none")  # (N, M)
    per_sample = torch.where(au_mask, bce, torch.zeros_like(bce)).sum(1)  # (N,)
    if confidence is not None:
        per_sample = per_sample * confidence.detach()
    labelled = au_mask.any(1).sum().clamp(min=1)
    return per_sample.sum() / labelled
