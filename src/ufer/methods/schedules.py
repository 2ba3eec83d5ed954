"""Epoch and batch schedules: loss ramps (MTAC eqs 14-15) and template weight (MTAC eq 10).

Epochs are 0-based here (Lightning's ``current_epoch``); the papers count from 1, so the
paper's epoch index beta (MTAC) / epoch (ULC-AG eqs 12-13) is ``epoch + 1``.
"""
from __future__ import annotations

import math


def ramp_lambda1(epoch: int, H: float) -> float:
    """lambda_1 = exp(-(1 - beta/H)^2) for beta <= H, else 1, with beta = epoch + 1.

    MTAC eq 14 (ULC-AG eq 12, where H is called beta). Weight of the target and VA losses:
    rises to 1 at the paper's epoch H (0-based ``H - 1``) and stays there.

    Args:
        epoch: 0-based epoch.
        H: ramp length in epochs (> 0), 5 in MTAC.

    Returns:
        A float in (0, 1].
    """
    beta = epoch + 1
    return math.exp(-((1.0 - beta / H) ** 2)) if beta <= H else 1.0


def ramp_lambda2(epoch: int, H: float) -> float:
    """lambda_2 = 1 for beta <= H, else exp(-(1 - H/beta)^2), with beta = epoch + 1.

    MTAC eq 15 (ULC-AG eq 13). Weight of the AU loss: 1 up to the paper's epoch H, then
    decays towards exp(-1).

    Args:
        epoch: 0-based epoch.
        H: ramp length in epochs (> 0), 5 in MTAC.

    Returns:
        A float in (exp(-1), 1].
    """
    beta = epoch + 1
    return 1.0 if beta <= H else math.exp(-((1.0 - H / beta) ** 2))


def template_weight(h: int, tau: float = 0.9, w_min: float = 0.01) -> float:
    """Template update weight w_h = max(exp(-tau h), w_min) (MTAC eq 10).

    The literal formula (``w_min=0``) falls below 1e-3 after 8 batches and freezes the
    template; the floor ``w_min`` turns it into an exponential moving average.

    Args:
        h: batch counter, 0 at the first batch in which the AU branch is active (so the
            first update has w = 1 and copies the batch centers).
        tau: update-rate factor in (0, 1], 0.9 in MTAC.
        w_min: floor of the weight; 0 reproduces the paper literally.

    Returns:
        A float in [w_min, 1].
    """
    return max(math.exp(-tau * h), w_min)
