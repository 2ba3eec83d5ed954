"""POI's reconstructed losses (losses/poi.py) on hand-computed distributions."""
import math

import pytest
import torch

from ufer.losses.poi import (
    au_prior_loss,
    intermediate_prediction,
    kl_divergence,
    mutual_learning,
    subregion_ce,
    uem_confidence,
    uem_variance,
    weighted_distillation,
)

T = 3.0
KL_HALF_QUARTER = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)  # KL([.5,.5]||[.25,.75])


def logits_for(probs: list[float], temperature: float = T) -> torch.Tensor:
    """Logits whose softmax at ``temperature`` is ``probs``."""
    return temperature * torch.tensor(probs).log()


def test_poi_kl_divergence_by_hand_and_zero_log_zero():
    p = torch.tensor([0.5, 0.5])
    assert kl_divergence(p, torch.tensor([0.25, 0.75]).log()).item() == pytest.approx(
        KL_HALF_QUARTER)
    one_hot = torch.tensor([1.0, 0.0])
    assert kl_divergence(one_hot, torch.tensor([0.8, 0.2]).log()).item() == pytest.approx(
        -math.log(0.8))


def test_poi_mutual_learning_by_hand():
    teacher = torch.tensor([[0.5, 0.5]])
    logits = torch.stack([logits_for([0.5, 0.5]), logits_for([0.25, 0.75])]).unsqueeze(0)
    # T^2 / (N R) * (0 + KL)
    assert mutual_learning(teacher, logits, T).item() == pytest.approx(T**2 * KL_HALF_QUARTER / 2)


def test_poi_weighted_distillation_by_hand():
    teacher = torch.tensor([[0.5, 0.5], [0.5, 0.5]])
    logits = torch.stack([logits_for([0.25, 0.75]), logits_for([0.5, 0.5])])
    weight = torch.tensor([0.4, 1.0])
    assert weighted_distillation(teacher, logits, weight, T).item() == pytest.approx(
        T**2 * (0.4 * KL_HALF_QUARTER + 0.0) / 2)


def test_poi_distillation_does_not_train_the_weight():
    weight = torch.tensor([0.5], requires_grad=True)
    logits = torch.zeros(1, 2, requires_grad=True)
    weighted_distillation(torch.tensor([[0.9, 0.1]]), logits, weight, T).backward()
    assert weight.grad is None and logits.grad.abs().sum() > 0


def test_poi_intermediate_prediction_on_probs_and_on_logits():
    gate = torch.tensor([[0.25, 0.75]])
    p1, p2 = [0.2, 0.8], [0.6, 0.4]
    logits = torch.stack([logits_for(p1), logits_for(p2)]).unsqueeze(0)
    on_probs = intermediate_prediction(gate, logits, T, "probs")
    assert on_probs[0].tolist() == pytest.approx([0.25 * 0.2 + 0.75 * 0.6, 0.25 * 0.8 + 0.75 * 0.4])
    # softmax(sum_r g_r o_r / T) = normalised prod_r p_r^{g_r}
    geo = [p1[c] ** 0.25 * p2[c] ** 0.75 for c in range(2)]
    on_logits = intermediate_prediction(gate, logits, T, "logits")
    assert on_logits[0].tolist() == pytest.approx([g / sum(geo) for g in geo])
    with pytest.raises(ValueError, match="gate_on"):
        intermediate_prediction(gate, logits, T, "features")


def test_poi_subregion_ce_is_the_mean_over_images_and_subregions():
    logits = torch.stack([logits_for([0.5, 0.5], 1.0), logits_for([0.2, 0.8], 1.0)]).unsqueeze(0)
    expected = -(math.log(0.5) + math.log(0.2)) / 2
    assert subregion_ce(logits, torch.tensor([0])).item() == pytest.approx(expected)


def test_poi_au_loss_sums_aus_and_divides_by_images_times_subregions():
    logits = torch.zeros(2, 2, 3)  # p = 0.5 everywhere: BCE = log 2 for any target
    mask = torch.tensor([[True, True, False], [False, False, True]]).expand(2, 2, 3)
    targets = torch.full((2, 3), 0.95)
    assert au_prior_loss(logits, targets, mask).item() == pytest.approx(
        (2 * 2 + 2 * 1) * math.log(2) / 4)
    # a sure, right prediction costs only the smoothing's entropy
    sure = torch.tensor([[[math.log(0.95 / 0.05)] * 3] * 2])
    loss = au_prior_loss(sure, torch.full((1, 3), 0.95), torch.ones(1, 2, 3, dtype=torch.bool))
    entropy = -(0.95 * math.log(0.95) + 0.05 * math.log(0.05))
    assert loss.item() == pytest.approx(3 * entropy, rel=1e-5)
    empty = au_prior_loss(logits.requires_grad_(), targets, torch.zeros_like(mask))
    assert empty.item() == 0.0 and empty.requires_grad


def test_poi_uem_zero_for_identical_and_maximum_for_disagreeing_one_hot_predictions():
    same = torch.tensor([[0.1, 0.6, 0.3]]).expand(1, 4, 3)
    assert uem_variance(same).item() == pytest.approx(0.0)
    assert uem_confidence(uem_variance(same), 4).item() == pytest.approx(1.0)
    distinct = torch.eye(4).unsqueeze(0)  # four subregions, four different classes
    assert uem_variance(distinct).item() == pytest.approx(0.75)  # 1 - 1/R
    assert uem_confidence(uem_variance(distinct), 4).item() == pytest.approx(0.0)
    split = torch.tensor([[[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]])
    assert uem_variance(split).item() == pytest.approx(0.5)  # 2 vs 2: ||e - (.5, .5)||^2 = .5
    assert uem_confidence(uem_variance(split), 4).item() == pytest.approx(1 / 3)
