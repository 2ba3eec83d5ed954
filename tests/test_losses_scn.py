"""SCN (Wang et al., CVPR 2020) on the shared losses and relabel rule, hand-computed."""
import pytest
import torch

from ufer.losses.classification import confidence_weighted_ce, rank_regularization
from ufer.methods.relabel import relabel_margin


def test_weighted_ce_scn():
    # SCN: logits alpha * W f inside the softmax, no class weight.
    # [0, ln 2] * 1.0 with y = 1: CE = log(1 + 2) - log 2 = log 1.5 = 0.405465
    logits = torch.tensor([[0.0, 0.6931472]])
    loss = confidence_weighted_ce(logits, torch.tensor([1]), torch.tensor([1.0]))
    assert loss.item() == pytest.approx(0.4054651, abs=1e-6)


def test_rank_regularization_scn():
    # beta = 0.7 of 10 -> top 7 = {1.0, 0.9, ..., 0.4}, mean 0.7; low = {0.3, 0.2, 0.1}, mean 0.2
    confidence = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert rank_regularization(confidence, 0.7, 0.15).item() == 0.0  # 0.15 - 0.5 < 0
    # margin 0.6: 0.6 - (0.7 - 0.2) = 0.1
    assert rank_regularization(confidence, 0.7, 0.6).item() == pytest.approx(0.1, abs=1e-6)


def test_relabel_margin_scn():
    probs = torch.tensor(
        [
            [0.60, 0.39, 0.01],  # y = 1: 0.60 - 0.39 = 0.21 > 0.2 -> moves to 0
            [0.59, 0.40, 0.01],  # y = 1: 0.59 - 0.40 = 0.19 <= 0.2 -> stays
            [0.60, 0.39, 0.01],  # y = 1, above the margin but not eligible -> stays
            [0.10, 0.10, 0.80],  # y = 2 is already the argmax -> stays
        ]
    )
    labels = torch.tensor([1, 1, 1, 2])
    eligible = torch.tensor([True, True, False, True])
    assert relabel_margin(probs, labels, eligible, 0.2).tolist() == [0, 1, 1, 2]
