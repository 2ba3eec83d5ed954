"""LDLVA's equations as pure functions (Le et al., "Uncertainty-aware Label Distribution
Learning for Facial Expression Recognition", WACV 2023; shared/papers/ldlva-wacv2023.txt).

Notation: a batch of B anchors x_i, each with K neighbours x_k in valence-arousal space,
C classes, V-dimensional backbone features v, softmax predictions f(x), one-hot labels l_i,
uncertainty factors lambda_i in [0, 1], class centers mu (C, V).
"""
from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

Distance = Literal["squared_l2", "l1"]


def local_similarity(anchor_va: Tensor, neighbour_va: Tensor, delta: float,
                     distance: Distance = "squared_l2") -> Tensor:
    """Local similarity s_ik of each anchor and its neighbours (eq 2).

    ``squared_l2``: s_ik = exp(-||a_i - a_k||_2^2 / delta^2) (the paper);
    ``l1``: s_ik = exp(-||a_i - a_k||_1 / delta) (the authors' code, shared/spec/peers.md 2.1).

    Args:
        anchor_va: (..., 2) a_i.
        neighbour_va: (..., K, 2) a_k.
        delta: the bandwidth delta (paper 0.5).

    Returns:
        (..., K) in (0, 1].
    """
    diff = anchor_va.unsqueeze(-2) - neighbour_va
    if distance == "squared_l2":
        return torch.exp(-diff.square().sum(-1) / delta**2)
    if distance == "l1":
        return torch.exp(-diff.abs().sum(-1) / delta)
    raise ValueError(f"distance must be 'squared_l2' or 'l1', got {distance!r}")


def log_contributions(similarity: Tensor, log_calibration: Tensor | None) -> Tensor:
    """Log contribution degrees log c_ik = log zeta_ik + log s_ik (eq 4, c_ik = zeta_ik s_ik,
    in log space); log s_ik alone without the adaptive similarity (table 4, setting iv).

    Args:
        similarity: (B, K) s_ik in [0, 1]; non-neighbours carry 0 (log -inf).
        log_calibration: (B, K) log zeta_ik <= 0, or None.

    Returns:
        (B, K) in [-inf, 0].
    """
    log_s = similarity.log()
    return log_s if log_calibration is None else log_calibration + log_s


def neighbour_distribution(log_contribution: Tensor, neighbour_probs: Tensor,
                           fallback: Tensor) -> Tensor:
    """Aggregated neighbour distribution d~_i = sum_k c_ik f(x_k) / sum_k c_ik (eq 5).

    The weights c_ik / sum_k c_ik are a softmax over k of log c_ik: the same numbers, but
    they do not underflow when every zeta_ik of an anchor is tiny. Eq 5 depends only on the
    ratios of the c_ik, so g of eq 3 can drift towards -inf together over a run (measured:
    g near -93 for every pair after 5 epochs of Adam 0.001 in the paper regime), where
    sigmoid(g) rounds to 0 in float32 and the plain ratio would fall back to the label.

    Args:
        log_contribution: (B, K) log c_ik, -inf for neighbours that do not contribute.
        neighbour_probs: (B, K, C) f(x_k).
        fallback: (B, C) used for anchors no neighbour contributes to (none known yet): the
            one-hot label, so that d_i = l_i whatever lambda_i (eq 6) and lambda_i's
            gradient (eq 9) is exactly 0.

    Returns:
        (B, C), rows summing to 1, in float32 (a product and a sum, which autocast leaves
        alone, where an einsum would run in bfloat16).
    """
    log_c = log_contribution.float()
    known = torch.isfinite(log_c).any(dim=1, keepdim=True)
    weights = torch.where(known, log_c, 0.0).softmax(dim=1)  # no NaN in the unused branch
    mixed = (weights.unsqueeze(-1) * neighbour_probs.float()).sum(dim=1)
    return torch.where(known, mixed, fallback.float())


def label_distribution(one_hot: Tensor, neighbour_dist: Tensor,
                       uncertainty_factor: Tensor) -> Tensor:
    """Target d_i = (1 - lambda_i) l_i + lambda_i d~_i (eq 6); (B, C), (B, C), (B,) -> (B, C)."""
    lam = uncertainty_factor.unsqueeze(1)
    return (1.0 - lam) * one_hot + lam * neighbour_dist


def distribution_cross_entropy(target: Tensor, logits: Tensor) -> Tensor:
    """Per-sample CE(d_i, f(x_i)) = -sum_j d_ij log f_j(x_i) (eq 1's summand), in float32.

    Args:
        target: (B, C) d_i.
        logits: (B, C) the classifier's logits (f = softmax).

    Returns:
        (B,); eq 1's L_cls is its mean over the batch.
    """
    return -(target.float() * F.log_softmax(logits.float(), dim=1)).sum(dim=1)


def uncertainty_factor_gradient(logits: Tensor, one_hot: Tensor,
                                neighbour_dist: Tensor) -> Tensor:
    """dCE(d_i, f(x_i)) / dlambda_i = CE(d~_i, f(x_i)) - CE(l_i, f(x_i)) (eqs 7-9), (B,).

    Negative (so gradient descent raises lambda_i) when the neighbours' distribution agrees
    with the prediction better than the given label does.
    """
    return (distribution_cross_entropy(neighbour_dist, logits)
            - distribution_cross_entropy(one_hot, logits))


def center_pull(features: Tensor, centers: Tensor, labels: Tensor, weights: Tensor) -> Tensor:
    """First term of eq 10 as a batch mean: 1/2 mean_i w_i ||v_i - mu_{y_i}||^2 with
    w_i = 1 - lambda_i; (B, V), (C, V), (B,), (B,) -> scalar (float32)."""
    diff = features.float() - centers[labels].float()
    return 0.5 * (weights.float() * diff.square().sum(dim=1)).mean()


def center_repulsion(centers: Tensor) -> Tensor:
    """Second term of eq 10: sum_{j != k} exp(-||mu_j - mu_k||^2 / sqrt(V)); (C, V) -> scalar
    (every ordered pair, so each unordered pair counts twice)."""
    sq = torch.cdist(centers.float(), centers.float(),
                     compute_mode="donot_use_mm_for_euclid_dist").square()
    off = ~torch.eye(centers.shape[0], dtype=torch.bool, device=centers.device)
    return torch.exp(-sq[off] / math.sqrt(centers.shape[1])).sum()


def center_repulsion_gradient(centers: Tensor) -> Tensor:
    """d center_repulsion / d mu_j = -(4 / sqrt(V)) sum_k e_jk (mu_j - mu_k) with
    e_jk = exp(-||mu_j - mu_k||^2 / sqrt(V)) (eq 10's second term); (C, V) -> (C, V)."""
    scale = math.sqrt(centers.shape[1])
    diff = centers.unsqueeze(1) - centers.unsqueeze(0)  # (C, C, V): mu_j - mu_k
    e = torch.exp(-diff.square().sum(-1) / scale)
    e.fill_diagonal_(0.0)
    return -(4.0 / scale) * torch.einsum("jk,jkv->jv", e, diff)


def center_step(centers: Tensor, weighted_sums: Tensor, weight_totals: Tensor,
                counts: Tensor) -> Tensor:
    """Wen et al.'s center update direction (ECCV 2016, eq 4) for eq 10's first term, with
    LDLVA's per-sample weights w_i = 1 - lambda_i:

        delta_mu_j = sum_{i: y_i = j} w_i (mu_j - v_i) / (1 + n_j)

    Args:
        centers: (C, V) mu.
        weighted_sums: (C, V) sum_{i: y_i = j} w_i v_i.
        weight_totals: (C,) sum_{i: y_i = j} w_i.
        counts: (C,) n_j, samples of class j (all processes' batches).

    Returns:
        (C, V) delta_mu; mu <- mu - alpha delta_mu moves each center towards its samples.
    """
    return (weight_totals.unsqueeze(1) * centers - weighted_sums) / (1.0 + counts.unsqueeze(1))
