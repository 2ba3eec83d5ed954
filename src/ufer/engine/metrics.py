"""Classification metrics from a confusion matrix (pure functions, numpy/torch in, floats out).

Vocabulary, as in FER papers: *accuracy* (overall accuracy, the headline number) is the
share of all test images classified correctly; *mean class accuracy* is the mean of the
per-class recalls (RAF-DB papers report it too; it is insensitive to class imbalance).
"""
from __future__ import annotations

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
