"""Relabel rules shared by the methods that correct labels (MTAC eqs 9-12, ULC-AG eqs 8-10, SCN).

Pure functions of batch tensors. The persistent per-sample label buffer and the
cross-process reduction live elsewhere (``methods/state.py``); these functions only say
what the new templates and labels are.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


@torch.no_grad()
def batch_centers(
    features: Tensor,
    labels: Tensor,
    num_classes: int,
    weights: Tensor | None = None,
    mask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Sums and counts of the per-class batch centers U_j = (1/N_j) sum_i alpha_i s_i (MTAC eq 9).

    Returned unreduced so the caller can all-reduce both across processes before
    dividing (U_j = sums_j / counts_j, see :func:`update_templates`). Inputs are detached.

    Args:
        features: (N, M) semantic representations s_i.
        labels: (N,) int64 current labels.
        num_classes: C.
        weights: (N,) alpha_i, or None for weight 1.
        mask: (N,) bool of the samples that count: None for all (MTAC,
            ``template_from="all"``), the high-confidence group for ULC-AG eq 8
            (``template_from="high"``).

    Returns:
        sums: (C, M) sum over counted samples of class j of alpha_i s_i.
        counts: (C,) number N_j of counted samples of class j (not the sum of alpha).
    """
    weighted = features if weights is None else features * weights.unsqueeze(1)
    if mask is not None:
        weighted, labels = weighted[mask], labels[mask]
    sums = weighted.new_zeros(num_classes, features.shape[1]).index_add_(0, labels, weighted)
    counts = torch.bincount(labels, minlength=num_classes).to(features.dtype)
    return sums, counts


@torch.no_grad()
def update_templates(
    templates: Tensor, sums: Tensor, counts: Tensor, w: float, initialized: Tensor
) -> Tensor:
    """Memory template update T_j <- (1 - w) T_j + w U_j (MTAC eq 10).

    Only classes with counts_j > 0 change. A class seen for the first time
    (``initialized[j]`` False) takes T_j = U_j whatever w is, so a template never
    blends with its zero initial value. The caller then sets
    ``initialized |= counts > 0``.

    Args:
        templates: (C, M) current templates T.
        sums: (C, M) from :func:`batch_centers` (reduced across processes if any).
        counts: (C,) from :func:`batch_centers`.
        w: update weight in [0, 1], from :func:`ufer.methods.schedules.template_weight`.
        initialized: (C,) bool, True where T_j has been set before.

    Returns:
        (C, M) new templates (the input is not modified).
    """
    centers = sums / counts.clamp(min=1).unsqueeze(1)  # (C, M) U
    blended = torch.where(initialized.unsqueeze(1), (1.0 - w) * templates + w * centers, centers)
    return torch.where((counts > 0).unsqueeze(1), blended, templates)


@torch.no_grad()
def relabel_nearest_template(
    s: Tensor, templates: Tensor, labels: Tensor, eligible: Tensor, initialized: Tensor,
    *, margin: float = 0.0
) -> Tensor:
    """Semantic-similarity relabel (MTAC eqs 11-12, ULC-AG eqs 9-10).

    dist(s_i, t_j) = 1 - cos(s_i, t_j) over initialized templates. An eligible sample moves
    to argmin_j dist when dist(s_i, t_{y_i}) > min_j dist + margin (strictly: ties keep the
    label; ``margin`` 0 is the papers' rule, a positive one is ours). A sample whose own
    class has no template yet keeps its label.

    Args:
        s: (N, M) semantic representations.
        templates: (C, M) memory templates T.
        labels: (N,) int64 current labels.
        eligible: (N,) bool, e.g. the low-confidence group (``relabel_scope="low"``) or all.
        initialized: (C,) bool, True where T_j has been set.
        margin: cosine distance by which the nearest template must beat the own one.

    Returns:
        (N,) int64 new labels.
    """
    cosine = F.normalize(s, dim=1) @ F.normalize(templates, dim=1).T  # (N, C)
    dist = (1.0 - cosine).masked_fill(~initialized.unsqueeze(0), float("inf"))
    nearest_dist, nearest = dist.min(1)
    own = dist.gather(1, labels.unsqueeze(1)).squeeze(1)
    move = eligible & initialized[labels] & (own > nearest_dist + margin)
    return torch.where(move, nearest, labels)


@torch.no_grad()
def keep_agreeing(new: Tensor, labels: Tensor, predicted: Tensor) -> Tensor:
    """Keep only the moves that a second opinion agrees with (ours, no paper's rule).

    Args:
        new: (N,) int64 labels proposed by a relabel rule (e.g. eq 12's nearest template).
        labels: (N,) int64 current labels.
        predicted: (N,) int64 the second opinion, e.g. the classifier's argmax.

    Returns:
        (N,) int64: ``new`` where it equals ``predicted``, else ``labels``.
    """
    return torch.where(new == predicted, new, labels)


@torch.no_grad()
def keep_confident(new: Tensor, labels: Tensor, probs: Tensor, min_prob: float) -> Tensor:
    """Keep only the moves to a class the classifier is sure of (ours, no paper's rule).

    Args:
        new: (N,) int64 labels proposed by a relabel rule.
        labels: (N,) int64 current labels.
        probs: (N, C) the classifier's softmax probabilities.
        min_prob: in [0, 1]; a move is kept when ``probs[i, new_i] >= min_prob``.

    Returns:
        (N,) int64: ``new`` where the classifier gives it at least ``min_prob``, else ``labels``.
    """
    p_new = probs.gather(1, new.unsqueeze(1)).squeeze(1)
    return torch.where(p_new >= min_prob, new, labels)


def estimated_move_precision(train_moves: float, train_seen: float, val_moves: float,
                             val_seen: float) -> float:
    """Share of a relabel rule's training moves that fix a wrong label, estimated (ours).

    A rule that moves validation labels at rate r_val = val_moves / val_seen is taken to
    move right training labels at that rate too; of the training moves, proposed at rate
    r_train = train_moves / train_seen, the share 1 - r_val / r_train is then left for the
    wrong labels. Validation samples are not fitted the way training samples are, and a
    noisy validation split adds its right moves to r_val: both make the estimate low, not
    high. Moves that fix as many labels as they break give 0.5.

    Args:
        train_moves, train_seen: moves the rule proposed on training samples, and how many
            samples it looked at (>= 0).
        val_moves, val_seen: the same on validation samples, with their given labels.

    Returns:
        1 - r_val / r_train clipped to [0, 1]; 0.0 when the rule proposed nothing on the
        training samples or no validation sample was seen.
    """
    if train_moves <= 0 or train_seen <= 0 or val_seen <= 0:
        return 0.0
    ratio = (val_moves / val_seen) / (train_moves / train_seen)
    return min(max(1.0 - ratio, 0.0), 1.0)


@torch.no_grad()
def relabel_margin(
    probs: Tensor, labels: Tensor, eligible: Tensor, margin: float = 0.2
) -> Tensor:
    """SCN relabel: label := argmax_j p_j when max_j p_j - p_{y_i} > margin (SCN, delta_2).

    Args:
        probs: (N, C) softmax probabilities.
        labels: (N,) int64 current labels.
        eligible: (N,) bool (SCN paper: the low group; SCN code: all samples).
        margin: delta_2, 0.2 in SCN.

    Returns:
        (N,) int64 new labels.
    """
    top, argmax = probs.max(1)
    own = probs.gather(1, labels.unsqueeze(1)).squeeze(1)
    return torch.where(eligible & (top - own > margin), argmax, labels)
