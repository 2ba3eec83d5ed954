"""The emotion -> action-unit prior table, the one home shared by data and methods.

POI (Liu et al., arXiv 2411.13024), table I: the AUs whose marginal probability given the
expression exceeds 70 %. POI trains 6 eye-region AU nets and 7 mouth-region AU nets on these
targets, smoothed as z (1 - eps) + eps / 2 (eq. 4; eps is not given in the text, see
``shared/spec/peers.md`` section 1.3). ``ufer annotate au --source prior`` writes the
unsmoothed table into a manifest as weak AU labels; MTAC can train on those.

The targets come from the label a manifest TRAINS on (``label``; after ``ufer noise`` the
noisy one), never from ``clean_label``: a method only ever knows the given label.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ufer.data import schema

EYE_AUS = (1, 2, 4, 5, 6, 9)  # POI's eye nets, in order (AU9 is grouped with the eyes)
MOUTH_AUS = (10, 12, 14, 15, 17, 24, 26)  # POI's mouth nets, in order
PRIOR_AUS = EYE_AUS + MOUTH_AUS  # M = 13 columns of the table

# POI table I: class -> the AUs that are 1. Neutral has none; contempt only AU14.
TABLE: dict[str, tuple[int, ...]] = {
    "neutral": (),
    "happy": (6, 12, 26),
    "sad": (1, 4, 15, 17),
    "surprise": (1, 2, 5, 26),
    "fear": (1, 4, 5, 26),
    "disgust": (9, 10, 17),
    "anger": (4, 24),
    "contempt": (14,),
}
CITATION = "POI (Liu et al., arXiv 2411.13024) table I"


def prior_matrix(classes: Sequence[str], aus: Sequence[int] = PRIOR_AUS) -> np.ndarray:
    """The prior table for a class list and AU list.

    Args:
        classes: C class names in the manifest's order, each one of ``schema.EMOTIONS8``.
        aus: M AU numbers (default ``PRIOR_AUS``: POI's 13, eye nets then mouth nets). An AU
            the table does not mention is 0 for every class.

    Returns:
        float32 (C, M) of 0 and 1: entry [c, m] = 1 when AU ``aus[m]`` belongs to class c.

    Raises:
        ValueError: a class the table does not cover (e.g. ``other``), naming it.
    """
    unknown = [c for c in classes if c not in TABLE]
    if unknown:
        raise ValueError(f"the emotion-AU prior ({CITATION}) covers {list(TABLE)}; no row for "
                         f"{unknown}")
    return np.array([[float(au in TABLE[c]) for au in aus] for c in classes], dtype=np.float32)


def smooth(z: np.ndarray | torch.Tensor, eps: float) -> np.ndarray | torch.Tensor:
    """Label smoothing of binary AU targets, POI eq. 4: z (1 - eps) + eps / 2.

    Args:
        z: targets in [0, 1], any shape (array or tensor).
        eps: smoothing in [0, 1]; 0 returns the values unchanged, 1 gives 0.5 everywhere.

    Returns:
        Same type and shape as ``z``: 1 -> 1 - eps / 2, 0 -> eps / 2.
    """
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"eps must lie in [0, 1], got {eps}")
    return z * (1.0 - eps) + eps / 2.0


def au_targets(labels: np.ndarray | torch.Tensor, classes: Sequence[str],
               aus: Sequence[int] = PRIOR_AUS, eps: float = 0.0) -> np.ndarray | torch.Tensor:
    """AU targets of a batch of class labels: rows of the (smoothed) prior table.

    Args:
        labels: int (N,) class indices into ``classes`` (the label trained on); a tensor
            gives a tensor on its device (not range-checked there, to avoid a device sync).
        classes: C class names (see ``prior_matrix``).
        aus: M AU numbers.
        eps: smoothing (``smooth``).

    Returns:
        float32 (N, M): row i is ``smooth(prior_matrix(classes, aus)[labels[i]], eps)``.
    """
    table = smooth(prior_matrix(classes, aus), eps)
    if isinstance(labels, torch.Tensor):
        return torch.as_tensor(table, device=labels.device)[labels]
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
        raise ValueError(f"labels must lie in 0..{len(classes) - 1}, found "
                         f"{labels.min()}..{labels.max()}")
    return table[labels]


def au_columns(aus: Sequence[int] = PRIOR_AUS) -> list[str]:
    """Manifest column names of AU numbers: (1, 2, ...) -> ["AU01", "AU02", ...]."""
    return [schema.au_column(a) for a in aus]
