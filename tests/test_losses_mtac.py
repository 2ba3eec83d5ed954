"""Hand-computed values for MTAC / ULC-AG losses (MTAC eqs 2-5 and 8, ULC-AG eqs 2-4 and 7)."""
import math

import pytest
import torch

from ufer.losses.au import weighted_au_bce
from ufer.losses.ccc import ccc, class_balanced_ccc_loss
from ufer.losses.classification import (
    class_weights,
    confidence_weighted_ce,
    rank_regularization,
    split_high_low,
)

LOG_E_PLUS_2 = 1.5514447139320509  # log(e + 2) = log(4.718282)


def test_class_weights_mtac():
    # batch [0, 0, 1, 2], C = 4: N_j = [2, 1, 1, 0], N = 4 -> gamma = 1 - N_j / 4
    gamma = class_weights(torch.bincount(torch.tensor([0, 0, 1, 2]), minlength=4))
    assert torch.allclose(gamma, torch.tensor([0.5, 0.75, 0.75, 1.0]))


def test_confidence_weighted_ce_mtac():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    labels = torch.tensor([0, 2])
    confidence = torch.tensor([0.5, 0.25], requires_grad=True)
    loss = confidence_weighted_ce(logits, labels, confidence)
    # sample 0: scaled logits [1, 0, 0], y = 0: CE = log(e + 1 + 1) - 1 = 0.551445
    # sample 1: scaled logits [0, 1, 0], y = 2: CE = log(1 + e + 1) - 0 = 1.551445
    # mean = 1.051445
    assert loss.item() == pytest.approx(1.0514447, abs=1e-6)
    loss.backward()
    assert confidence.grad is not None and torch.all(confidence.grad != 0)


def test_class_weighted_ce_ulcag():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 4.0, 0.0]])
    labels = torch.tensor([0, 2])
    confidence = torch.tensor([0.5, 0.25])
    loss = confidence_weighted_ce(logits, labels, confidence, scale=torch.tensor([2.0, 1.0]))
    # sample 0: logits * 0.5 * 2 = [2, 0, 0]: CE = log(e^2 + 2) - 2 = 0.239545
    # sample 1 unchanged: log(e + 2) = 1.551445; mean = (0.239545 + 1.551445) / 2 = 0.895495
    assert loss.item() == pytest.approx(0.8954947, abs=1e-6)


def test_rank_regularization_margin_met_ulcag():
    confidence = torch.tensor([0.9, 0.1, 0.8, 0.3, 0.7])
    # high_fraction 0.6 of 5 -> top 3: H = {0.9, 0.8, 0.7} (mean 0.8), L = {0.1, 0.3} (mean 0.2)
    assert split_high_low(confidence, 0.6).tolist() == [True, False, True, False, True]
    # 0.15 - (0.8 - 0.2) < 0 -> 0
    assert rank_regularization(confidence, 0.6, 0.15).item() == 0.0


def test_rank_regularization_active_ulcag():
    confidence = torch.tensor([0.3, 0.5, 0.35, 0.45, 0.4], requires_grad=True)
    # 0.8 of 5 -> top 4: H = {0.5, 0.45, 0.4, 0.35}, mean 0.425; L = {0.3}
    # loss = 0.15 - (0.425 - 0.3) = 0.025
    loss = rank_regularization(confidence, 0.8, 0.15)
    assert loss.item() == pytest.approx(0.025, abs=1e-6)
    loss.backward()
    # d/d alpha_H = -1/4, d/d alpha_L = +1
    assert torch.allclose(confidence.grad, torch.tensor([1.0, -0.25, -0.25, -0.25, -0.25]))


def test_rank_regularization_tiny_batch_ulcag():
    confidence = torch.tensor([0.4], requires_grad=True)
    assert split_high_low(confidence, 0.8).tolist() == [True]
    loss = rank_regularization(confidence)
    assert loss.item() == 0.0
    loss.backward()
    assert confidence.grad is not None


def test_ccc_population_statistics_mtac():
    # target [-1, 0, 1]: mean 0, var 2/3; pred [-0.5, 0, 0.5]: var 1/6, cov 1/3
    # rho = (2/3) / (2/3 + 1/6) = 0.8
    assert ccc(torch.tensor([-0.5, 0.0, 0.5]), torch.tensor([-1.0, 0.0, 1.0])).item() == (
        pytest.approx(0.8, abs=1e-6)
    )
    # target [0, 0, 0.6]: mean 0.2, var (0.04 + 0.04 + 0.16) / 3 = 0.08; pred = target + 0.3
    # rho = 2 * 0.08 / (0.08 + 0.08 + 0.3^2) = 0.64  (the sample-variance version gives 0.727)
    target = torch.tensor([0.0, 0.0, 0.6])
    assert ccc(target + 0.3, target).item() == pytest.approx(0.64, abs=1e-6)


def _ccc_batch():
    nan = float("nan")
    va_pred = torch.tensor(
        [
            [-0.5, 0.3], [0.0, 0.3], [0.5, 0.9],  # class 0, rho_v = 0.8, rho_a = 0.64
            [0.7, 0.7],  # class 0, VA unknown (masked)
            [0.1, 0.2],  # class 1, the only one with VA: skipped
            [0.9, 0.9],  # class 1, VA unknown
            [0.2, 0.1], [0.4, -0.3],  # class 2, perfect agreement
        ],
        requires_grad=True,
    )
    va = torch.tensor(
        [
            [-1.0, 0.0], [0.0, 0.0], [1.0, 0.6],
            [nan, nan],
            [-0.8, 0.5],
            [nan, nan],
            [0.2, 0.1], [0.4, -0.3],
        ]
    )
    va_mask = torch.tensor([True, True, True, False, True, False, True, True])
    labels = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    return va_pred, va, va_mask, labels


def test_class_balanced_ccc_loss_mtac():
    va_pred, va, va_mask, labels = _ccc_batch()
    # class 0: 1 - (0.8 + 0.64) / 2 = 0.28; class 1 skipped; class 2: 1 - 1 = 0
    loss = class_balanced_ccc_loss(va_pred, va, va_mask, labels, 3)
    assert loss.item() == pytest.approx(0.28, abs=1e-5)
    weighted = class_balanced_ccc_loss(
        va_pred, va, va_mask, labels, 3, weights=torch.tensor([0.5, 1.0, 1.0])
    )
    assert weighted.item() == pytest.approx(0.14, abs=1e-5)  # 0.5 * 0.28
    weighted.backward()
    assert torch.isfinite(va_pred.grad).all()
    assert torch.all(va_pred.grad[[3, 4, 5]] == 0)  # masked rows and the skipped class


def test_class_balanced_ccc_perfect_agreement_mtac():
    va_pred, va, va_mask, labels = _ccc_batch()
    only_class2 = labels == 2
    loss = class_balanced_ccc_loss(va_pred, va, va_mask & only_class2, labels, 3)
    assert loss.item() == pytest.approx(0.0, abs=1e-5)


def test_class_balanced_ccc_no_va_mtac():
    va_pred, va, _, labels = _ccc_batch()
    loss = class_balanced_ccc_loss(va_pred, va, torch.zeros(8, dtype=torch.bool), labels, 3)
    assert loss.item() == 0.0
    loss.backward()
    assert torch.all(va_pred.grad == 0)


def test_weighted_au_bce_mtac():
    ln3 = math.log(3.0)  # sigmoid(ln 3) = 0.75
    nan = float("nan")
    au_logits = torch.tensor(
        [[ln3, ln3, 5.0], [0.0, 7.0, 7.0], [1.0, 1.0, 1.0]], requires_grad=True
    )
    au = torch.tensor([[1.0, 0.0, nan], [1.0, nan, nan], [nan, nan, nan]])
    au_mask = torch.tensor([[True, True, False], [True, False, False], [False, False, False]])
    confidence = torch.tensor([0.5, 1.0, 0.7], requires_grad=True)
    loss = weighted_au_bce(au_logits, au, au_mask, confidence)
    # row 0: -log 0.75 - log 0.25 = 0.287682 + 1.386294 = 1.673976, * 0.5 = 0.836988
    # row 1: -log 0.5 = 0.693147, * 1.0; row 2 has no known AU: not in the mean
    # mean over the 2 labelled rows = (0.836988 + 0.693147) / 2 = 0.765068
    assert loss.item() == pytest.approx(0.7650677, abs=1e-6)
    loss.backward()
    assert confidence.grad is None
    assert torch.all(au_logits.grad[~au_mask] == 0)
    assert torch.all(au_logits.grad[au_mask] != 0)
    unweighted = weighted_au_bce(au_logits, au, au_mask)
    assert unweighted.item() == pytest.approx(1.1835618, abs=1e-6)  # (1.673976 + 0.693147) / 2


def test_weighted_au_bce_no_labels_mtac():
    au_logits = torch.zeros(2, 3, requires_grad=True)
    loss = weighted_au_bce(au_logits, torch.zeros(2, 3), torch.zeros(2, 3, dtype=torch.bool))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.all(au_logits.grad == 0)
