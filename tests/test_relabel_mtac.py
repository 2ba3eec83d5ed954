"""Batch centers, template update and relabel (MTAC eqs 9-12, ULC-AG eqs 8-10), by hand."""
import pytest
import torch

from ufer.methods.relabel import batch_centers, relabel_nearest_template, update_templates
from ufer.methods.schedules import template_weight


def test_batch_centers_mtac():
    s = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    labels = torch.tensor([0, 0, 2])
    alpha = torch.tensor([0.5, 1.0, 2.0])
    sums, counts = batch_centers(s, labels, 3, alpha)
    # class 0: 0.5*[1,2] + 1*[3,4] = [3.5, 5]; class 2: 2*[5,6] = [10, 12]
    assert torch.allclose(sums, torch.tensor([[3.5, 5.0], [0.0, 0.0], [10.0, 12.0]]))
    assert counts.tolist() == [2.0, 0.0, 1.0]


def test_batch_centers_high_group_ulcag():
    s = torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    sums, counts = batch_centers(
        s, torch.tensor([0, 0, 2]), 3, torch.tensor([0.5, 1.0, 2.0]),
        mask=torch.tensor([True, False, False]),
    )
    assert torch.allclose(sums, torch.tensor([[0.5, 1.0], [0.0, 0.0], [0.0, 0.0]]))
    assert counts.tolist() == [1.0, 0.0, 0.0]


def test_update_templates_mtac():
    templates = torch.zeros(3, 2)
    initialized = torch.tensor([False, False, False])
    sums = torch.tensor([[2.0, 4.0], [0.0, 0.0], [3.0, 0.0]])
    counts = torch.tensor([2.0, 0.0, 1.0])
    # first sight: T_j = U_j whatever w; U_0 = [1, 2], U_2 = [3, 0]; class 1 absent
    t1 = update_templates(templates, sums, counts, 0.3, initialized)
    assert torch.allclose(t1, torch.tensor([[1.0, 2.0], [0.0, 0.0], [3.0, 0.0]]))
    assert torch.equal(templates, torch.zeros(3, 2))  # input untouched
    initialized = initialized | (counts > 0)
    # second: class 0 only, U_0 = [3, 0], w = 0.5 -> 0.5*[1,2] + 0.5*[3,0] = [2, 1]
    t2 = update_templates(
        t1, torch.tensor([[3.0, 0.0], [0.0, 0.0], [0.0, 0.0]]), torch.tensor([1.0, 0.0, 0.0]),
        0.5, initialized,
    )
    assert torch.allclose(t2, torch.tensor([[2.0, 1.0], [0.0, 0.0], [3.0, 0.0]]))


@pytest.mark.parametrize(("w_min", "low", "high"), [(0.0, 0.40, 0.45), (0.01, 0.0, 0.01)])
def test_template_literal_freezes_ema_tracks_mtac(w_min, low, high):
    # h = 0 copies U = [1, 0]; then U = [0, 1] for h = 1..500. T[0] = prod_h (1 - w_h).
    # literal: prod_{h=1..5} (1 - e^{-0.9h}) = 0.4444, the rest ~0.993 -> ~0.441: frozen.
    # w_min = 0.01 (w_h < 0.01 from h = 6): 0.4444 * 0.99^495 = 0.0031: tracks the new center.
    initialized = torch.tensor([False])
    t = update_templates(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]), torch.ones(1),
                         template_weight(0, 0.9, w_min), initialized)
    initialized = torch.tensor([True])
    for h in range(1, 501):
        t = update_templates(t, torch.tensor([[0.0, 1.0]]), torch.ones(1),
                             template_weight(h, 0.9, w_min), initialized)
    assert low < t[0, 0].item() < high


def test_relabel_nearest_template_mtac():
    templates = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    initialized = torch.tensor([True, True, True, False])  # class 3: not set yet
    s = torch.tensor(
        [
            [0.1, 1.0],  # y=0: dist to t0 = 1 - 0.0995 = 0.90, to t1 = 0.005 -> moves to 1
            [1.0, 0.2],  # y=0: already nearest its own template (0.019) -> stays
            [0.1, 1.0],  # y=0, would move but not eligible -> stays
            [0.1, -1.0],  # y=1: t0 0.90 < t2 1.10 < t1 1.995; t3 would be 0.005 -> moves to 0
            [0.0, -1.0],  # y=3: own template not initialized -> stays
        ]
    )
    labels = torch.tensor([0, 0, 0, 1, 3])
    eligible = torch.tensor([True, True, False, True, True])
    new = relabel_nearest_template(s, templates, labels, eligible, initialized)
    assert new.tolist() == [1, 0, 0, 0, 3]
