"""Metrics as pure functions: classification from a confusion matrix, and the ROC of a score
for a binary target (spotting wrong labels). Shared by every layer (methods log them during
training; the engine reports them), so they live at the package top, below everything.

Vocabulary, as in FER papers: *accuracy* (overall accuracy, the headline number) is the
share of all test images classified correctly; *mean class accuracy* is the mean of the
per-class recalls (RAF-DB papers report it too; it is insensitive to class imbalance).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def confusion_matrix(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """(C, C) int64 counts, row = true class, column = predicted class."""
    flat = target.long() * num_classes + pred.long()
    return torch.bincount(flat, minlength=num_classes**2).view(num_classes, num_classes)


def accuracy(confusion: Tensor) -> float:
    """Overall accuracy in [0, 1]: trace / total (0 for an empty matrix)."""
    total = confusion.sum()
    return float(confusion.trace()) / float(total) if total > 0 else 0.0


def per_class_accuracy(confusion: Tensor) -> Tensor:
    """(C,) recall of each class; NaN for a class with no samples."""
    support = confusion.sum(dim=1).double()
    return confusion.diag().double() / support.where(support > 0, torch.nan)


def mean_class_accuracy(confusion: Tensor) -> float:
    """Mean of the per-class accuracies over classes that have samples."""
    return float(per_class_accuracy(confusion).nanmean())


def roc_curve(scores: np.ndarray, positives: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rates, true positive rates) of thresholding ``scores`` (N,) (higher =
    more likely positive) against the bool ``positives`` (N,): one point per distinct score,
    from (0, 0) to (1, 1)."""
    scores, positives = np.asarray(scores, float), np.asarray(positives, bool)
    order = np.argsort(-scores, kind="stable")
    s, p = scores[order], positives[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tp, fp = np.cumsum(p)[last_of_tie], np.cumsum(~p)[last_of_tie]
    tpr = np.r_[0.0, tp / max(p.sum(), 1)]
    fpr = np.r_[0.0, fp / max((~p).sum(), 1)]
    return fpr, tpr


def auroc(scores: np.ndarray, positives: np.ndarray) -> float | None:
    """Area under the ROC curve in [0, 1] of ``scores`` (N,) for ``positives`` (N,) bool (ties
    count one half); None when one of the two classes is absent."""
    positives = np.asarray(positives, bool)
    if positives.all() or not positives.any():
        return None
    fpr, tpr = roc_curve(scores, positives)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
