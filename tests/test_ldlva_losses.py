"""LDLVA's equations (losses/ldlva.py) against hand-computed values."""
import math

import pytest
import torch
import torch.nn.functional as F

from ufer.losses.ldlva import (
    center_pull,
    center_repulsion,
    center_repulsion_gradient,
    center_step,
    distribution_cross_entropy,
    label_distribution,
    local_similarity,
    log_contributions,
    neighbour_distribution,
    uncertainty_factor_gradient,
)

ONE_HOT_0 = torch.tensor([[1.0, 0.0, 0.0]])


def close(actual: torch.Tensor, expected: list) -> None:
    torch.testing.assert_close(actual, torch.tensor(expected, dtype=actual.dtype))


def test_ldlva_local_similarity_eq2_and_the_code_variant():
    anchor = torch.tensor([[0.0, 0.0]])
    neighbours = torch.tensor([[[0.5, 0.0], [0.3, 0.4], [0.0, 0.0]]])
    # ||d||^2 = 0.25, 0.25, 0 -> exp(-0.25 / 0.5^2) = exp(-1), exp(-1), 1
    s = local_similarity(anchor, neighbours, delta=0.5)
    close(s, [[math.exp(-1), math.exp(-1), 1.0]])
    # the authors' code: ||d||_1 / delta = 1.0, 1.4, 0
    s1 = local_similarity(anchor, neighbours, delta=0.5, distance="l1")
    close(s1, [[math.exp(-1.0), math.exp(-1.4), 1.0]])
    with pytest.raises(ValueError, match="squared_l2"):
        local_similarity(anchor, neighbours, 0.5, distance="l3")


def test_ldlva_contributions_eq4():
    s = torch.tensor([[0.8, 0.4, 0.0]])
    zeta = torch.tensor([[0.5, 1.0, 0.9]])
    close(log_contributions(s, zeta.log()).exp(), [[0.4, 0.4, 0.0]])
    close(log_contributions(s, None).exp(), [[0.8, 0.4, 0.0]])  # table 4 (iv)
    assert log_contributions(s, zeta.log())[0, 2] == -math.inf  # a non-neighbour


def test_ldlva_neighbour_and_label_distribution_eqs5_6():
    c = torch.tensor([[1.0, 3.0], [0.0, 0.0]])
    probs = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]] * 2)
    one_hot = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    d_tilde = neighbour_distribution(c.log(), probs, one_hot)
    # row 0: (1 * e0 + 3 * e1) / 4; row 1: no contribution -> the label itself
    close(d_tilde, [[0.25, 0.75, 0.0], [0.0, 0.0, 1.0]])
    d = label_distribution(one_hot, d_tilde, torch.tensor([0.4, 0.9]))
    close(d, [[0.7, 0.3, 0.0], [0.0, 0.0, 1.0]])


def test_ldlva_neighbour_distribution_when_every_zeta_underflows():
    # g = -200 and -200 + log 3: sigmoid(g) is 0 in float32 for both, yet eq 5 weighs the two
    # neighbours 1 : 3 (the paper regime's calibration drifted to g near -93 everywhere)
    g = torch.tensor([[-200.0, -200.0 + math.log(3.0)]], requires_grad=True)
    assert (torch.sigmoid(g) == 0).all()
    probs = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]])
    s = torch.tensor([[1.0, 1.0]])
    d_tilde = neighbour_distribution(log_contributions(s, F.logsigmoid(g)), probs, ONE_HOT_0)
    close(d_tilde.detach(), [[0.25, 0.75, 0.0]])
    d_tilde[0, 1].backward()  # d(w_2)/dg_2 = w_2 (1 - w_2) (1 - zeta_2) = 3/16
    assert g.grad.tolist()[0] == pytest.approx([-3 / 16, 3 / 16], rel=1e-5)
    assert not torch.isnan(g.grad).any()


def test_ldlva_neighbour_distribution_without_known_neighbours_has_no_nan_gradient():
    g = torch.zeros(1, 2, requires_grad=True)
    log_c = torch.where(torch.tensor([[False, False]]), g, -torch.inf)
    d_tilde = neighbour_distribution(log_c, torch.full((1, 2, 3), 1 / 3), ONE_HOT_0)
    close(d_tilde.detach(), [[1.0, 0.0, 0.0]])  # the label itself
    d_tilde.sum().backward()
    assert g.grad.tolist() == [[0.0, 0.0]]


def test_ldlva_distribution_cross_entropy_eq1():
    logits = torch.tensor([[0.5, 0.25, 0.25]]).log()  # f = (0.5, 0.25, 0.25)
    d = torch.tensor([[0.7, 0.3, 0.0]])
    expected = -(0.7 * math.log(0.5) + 0.3 * math.log(0.25))  # 0.9011
    assert distribution_cross_entropy(d, logits).tolist() == pytest.approx([expected])


@pytest.mark.parametrize("f, neighbours, rises", [
    ((0.1, 0.8, 0.1), (0.0, 1.0, 0.0), True),     # prediction agrees with the neighbours
    ((0.5, 0.25, 0.25), (0.25, 0.75, 0.0), False),  # prediction agrees with the label
])
def test_ldlva_uncertainty_factor_gradient_eqs7_9(f, neighbours, rises):
    logits = torch.tensor([f]).log()
    d_tilde = torch.tensor([neighbours])
    grad = uncertainty_factor_gradient(logits, ONE_HOT_0, d_tilde)
    ce_tilde = -(d_tilde * logits.log_softmax(1)).sum().item()
    ce_label = -(ONE_HOT_0 * logits.log_softmax(1)).sum().item()
    assert grad.tolist() == pytest.approx([ce_tilde - ce_label])  # eq 9
    assert (grad.item() < 0) == rises  # gradient descent raises lambda when negative
    # eq 9 is autograd's derivative of CE(d(lambda), f) (eq 1 with eq 6), at any lambda
    for value in (0.0, 0.3, 1.0):
        lam = torch.tensor([value], requires_grad=True)
        distribution_cross_entropy(label_distribution(ONE_HOT_0, d_tilde, lam), logits).sum() \
            .backward()
        assert lam.grad.tolist() == pytest.approx(grad.tolist())


def test_ldlva_discriminative_loss_eq10():
    features = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    centers = torch.tensor([[0.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 1])
    weights = torch.tensor([1.0, 0.5])  # 1 - lambda
    # 1/2 mean(1 * 1^2, 0.5 * 1^2) = 0.375
    assert center_pull(features, centers, labels, weights).item() == pytest.approx(0.375)
    # two ordered pairs of centers at squared distance 1, V = 2: 2 exp(-1 / sqrt 2)
    assert center_repulsion(centers).item() == pytest.approx(2 * math.exp(-1 / math.sqrt(2)))


def test_ldlva_center_repulsion_gradient_is_autograd():
    centers = torch.randn(4, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    leaf = centers.clone().requires_grad_()
    center_repulsion(leaf).backward()
    torch.testing.assert_close(center_repulsion_gradient(centers).float(), leaf.grad.float())


def test_ldlva_center_step_is_wen_et_al():
    centers = torch.zeros(2, 2)
    # class 0: features (1, 1) and (1, 3), weights 1 -> sum (2, 4), n = 2; class 1 absent
    step = center_step(centers, torch.tensor([[2.0, 4.0], [0.0, 0.0]]), torch.tensor([2.0, 0.0]),
                       torch.tensor([2.0, 0.0]))
    close(step, [[-2 / 3, -4 / 3], [0.0, 0.0]])
    # alpha 0.5: a third of the way to the class mean (1, 2)
    assert (centers - 0.5 * step)[0].tolist() == pytest.approx([1 / 3, 2 / 3])


def test_ldlva_neighbour_distribution_stays_float32_under_autocast():
    g = torch.Generator().manual_seed(1)
    log_c = torch.rand(4, 8, generator=g).log()
    probs = torch.rand(4, 8, 7, generator=g).softmax(-1)
    one_hot = torch.eye(7)[:4]
    reference = neighbour_distribution(log_c, probs, one_hot)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = neighbour_distribution(log_c, probs, one_hot)
    assert mixed.dtype == torch.float32
    torch.testing.assert_close(mixed, reference, rtol=0, atol=0)
