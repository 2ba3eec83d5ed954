"""POI's losses (Liu et al., "Prior-based Objective Inference", arXiv 2411.13024).

The published text lost every equation; these are the reconstructions of
``shared/spec/peers.md`` section 1.3 ("reconstructed, eq N"), not the authors' code.

Notation: a batch of N images, R subregions (R = 4), C classes, T the temperature, M AU
columns. Every function computes in float32 (inputs are cast), so bf16 autocast does not
change the loss.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def subregion_ce(logits: Tensor, labels: Tensor) -> Tensor:
    """PIN cross-entropy, reconstructed eq 5: -1/(NR) sum_i sum_r log softmax(o_i^r)_{y_i}.

    Args:
        logits: (N, R, C) subregion logits o.
        labels: (N,) int64 current labels y.

    Returns:
        Scalar, the mean over images and subregions.
    """
    n, r, c = logits.shape
    return F.cross_entropy(logits.float().reshape(n * r, c), labels.repeat_interleave(r))


def intermediate_prediction(gate: Tensor, logits: Tensor, temperature: float,
                            gate_on: str = "probs") -> Tensor:
    """The OIM's gated intermediate prediction q_bar, reconstructed eq 7.

    ``probs``: q_bar = sum_r g_r softmax(o_r / T) (the reconstruction);
    ``logits``: q_bar = softmax(sum_r g_r o_r / T) (ONE's form, Lan et al. 2018).

    Args:
        gate: (N, R) subregion weights g, rows summing to 1.
        logits: (N, R, C) subregion logits o.
        temperature: T of eq 6.
        gate_on: ``probs`` | ``logits``.

    Returns:
        (N, C) probabilities.
    """
    g, o = gate.float().unsqueeze(2), logits.float()
    if gate_on == "probs":
        return (g * (o / temperature).softmax(dim=2)).sum(dim=1)
    if gate_on == "logits":
        return ((g * o).sum(dim=1) / temperature).softmax(dim=1)
    raise ValueError(f"gate_on must be 'probs' or 'logits', got {gate_on!r}")


def kl_divergence(target: Tensor, log_probs: Tensor) -> Tensor:
    """KL(p || q) = sum_c p_c (log p_c - log q_c) per row, with 0 log 0 = 0.

    Args:
        target: (..., C) probabilities p.
        log_probs: (..., C) log q.

    Returns:
        (...,) divergences.
    """
    p = target.float()
    return torch.xlogy(p, p).sum(dim=-1) - (p * log_probs.float()).sum(dim=-1)


def mutual_learning(teacher: Tensor, logits: Tensor, temperature: float) -> Tensor:
    """Mutual learning of the subregions, reconstructed eq 8:
    T^2 / (NR) sum_i sum_r KL(q_bar_i || softmax(o_i^r / T)).

    Args:
        teacher: (N, C) q_bar (detach it before the call for a stop-gradient).
        logits: (N, R, C) subregion logits o.
        temperature: T.

    Returns:
        Scalar.
    """
    log_q = (logits.float() / temperature).log_softmax(dim=2)
    return temperature ** 2 * kl_divergence(teacher.unsqueeze(1), log_q).mean()


def weighted_distillation(teacher: Tensor, logits: Tensor, weight: Tensor,
                          temperature: float) -> Tensor:
    """Confidence-weighted distillation into the TRN, reconstructed eq 11:
    T^2 / N sum_i w_i KL(q_bar_i || softmax(u_i / T)), with w_i = 1 - c_i (UEM) or 1.

    Args:
        teacher: (N, C) soft label q_bar (detach it before the call for a stop-gradient).
        logits: (N, C) TRN logits u.
        weight: (N,) per-image weights w (not differentiated).
        temperature: T.

    Returns:
        Scalar.
    """
    kl = kl_divergence(teacher, (logits.float() / temperature).log_softmax(dim=1))
    return temperature ** 2 * (weight.detach().float() * kl).mean()


def au_prior_loss(au_logits: Tensor, targets: Tensor, mask: Tensor) -> Tensor:
    """AU loss, reconstructed eq 4: -1/(NR) sum_i sum_r sum_{n in N(r)} [z log p + (1 - z)
    log(1 - p)], p = sigmoid(AU logit), over the entries of ``mask``.

    Args:
        au_logits: (N, R, M) AU logits (entries outside ``mask`` may hold anything).
        targets: (N, M) smoothed targets z~ in [0, 1], shared by the subregions.
        mask: (N, R, M) bool, True where subregion r has AU net n and its target is known.

    Returns:
        Scalar, divided by N R whatever the mask (the paper's normalisation); 0, still
        attached to ``au_logits``, when the mask is empty.
    """
    n, r, _ = au_logits.shape
    z = targets.float().unsqueeze(1).expand_as(au_logits)
    bce = F.binary_cross_entropy_with_logits(au_logits.float(), z, reduction="none")
    return torch.where(mask, bce, torch.zeros_like(bce)).sum() / (n * r)


def uem_variance(probs: Tensor) -> Tensor:
    """Epistemic uncertainty across subregions, reconstructed eq 10 (Kendall & Gal's
    predictive variance with subregions in place of MC samples):
    U_i = 1/R sum_r ||pi_i^r - pi_bar_i||^2, pi_bar_i = 1/R sum_r pi_i^r.

    Args:
        probs: (N, R, C) the TRN's subregion probabilities pi.

    Returns:
        (N,) U in [0, 1 - 1/R]: 0 when every subregion predicts the same, 1 - 1/R for
        one-hot predictions on R different classes.
    """
    p = probs.float()
    return (p - p.mean(dim=1, keepdim=True)).pow(2).sum(dim=2).mean(dim=1)


def uem_confidence(variance: Tensor, regions: int) -> Tensor:
    """Confidence c = 1 - U / (1 - 1/R) in [0, 1] (reconstructed eq 10, normalised).

    Args:
        variance: (N,) U of ``uem_variance``.
        regions: R.

    Returns:
        (N,) c.
    """
    return 1.0 - variance / (1.0 - 1.0 / regions)
