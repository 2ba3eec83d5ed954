"""SCN wiring: attention head, CE + rank regularization, margin relabel through LabelState."""
import math

import pytest
import torch
from conftest import TINY_BACKBONE

import ufer
from ufer.methods.scn import SCN

N = 10


def _scn(**kwargs) -> SCN:
    method = ufer.create_method("scn", backbone=TINY_BACKBONE, num_classes=3, num_train=N,
                                **kwargs)
    method.samples.reset(torch.ones(N, dtype=torch.long))  # every given label is class 1
    return method


def _at_epoch(monkeypatch, epoch: int) -> None:
    monkeypatch.setattr(SCN, "current_epoch", property(lambda self: epoch))


def _relabel_batch():
    """10 samples, label 1. alpha: 7 high (0.9), 3 low (0.2): beta = 0.7 -> low = {7, 8, 9}.

    probs (after alpha scaling): sample 0 (high) and 7 (low) have max - p_y = 0.21 > 0.2;
    sample 8 (low) 0.19 (below the margin); the rest prefer their own label.
    """
    alpha = torch.tensor([0.9] * 7 + [0.2] * 3)
    probs = torch.tensor([[0.20, 0.70, 0.10]] * N)
    probs[0] = probs[7] = torch.tensor([0.60, 0.39, 0.01])
    probs[8] = torch.tensor([0.59, 0.40, 0.01])
    logits = probs.log() / alpha.unsqueeze(1)  # softmax(alpha * logits) == probs
    batch = {"index": torch.arange(N), "label": torch.ones(N, dtype=torch.long)}
    return batch, {"logits": logits, "alpha": alpha}


def test_relabel_low_group_above_margin_only(monkeypatch):
    method = _scn(relabel_start=9)
    batch, out = _relabel_batch()
    _at_epoch(monkeypatch, 9)
    method.update_state(batch, out)
    moved = (method.samples.current != 1).nonzero().flatten().tolist()
    assert moved == [7]  # 0 is high-importance, 8 is below the margin
    assert method.samples.current[7] == 0 and method.samples.corrected_epoch[7] == 9
    assert torch.equal(method.samples.original, torch.ones(N, dtype=torch.long))
    assert torch.allclose(method.samples.confidence, out["alpha"])
    assert method.samples.summary()["corrected"] == 1.0


def test_no_relabel_before_start_but_confidence_kept(monkeypatch):
    method = _scn(relabel_start=9)
    batch, out = _relabel_batch()
    _at_epoch(monkeypatch, 8)
    method.update_state(batch, out)
    assert torch.equal(method.samples.current, torch.ones(N, dtype=torch.long))
    assert torch.allclose(method.samples.confidence, out["alpha"])


def test_relabel_scope_all_and_switch_off(monkeypatch):
    batch, out = _relabel_batch()
    _at_epoch(monkeypatch, 0)
    method = _scn(relabel_start=0, relabel_scope="all")
    method.update_state(batch, out)
    assert (method.samples.current != 1).nonzero().flatten().tolist() == [0, 7]
    off = _scn(relabel_start=0, relabel=False)
    off.update_state(batch, out)
    assert int((off.samples.current != 1).sum()) == 0


def test_unseen_samples_have_nan_confidence(monkeypatch):
    method = _scn()
    _at_epoch(monkeypatch, 0)
    method.update_state({"index": torch.tensor([2, 5]), "label": torch.ones(2, dtype=torch.long)},
                        {"logits": torch.zeros(2, 3), "alpha": torch.tensor([0.3, 0.6])})
    conf = 1.0 - method.sample_uncertainty()
    assert conf[2].item() == pytest.approx(0.3) and conf[5].item() == pytest.approx(0.6)
    assert int(conf.isnan().sum()) == N - 2


def test_loss_is_weighted_ce_plus_rank_regularization():
    method = _scn(rank_margin=0.6)
    method.samples.reset(torch.tensor([1, 0] + [0] * (N - 2)))
    # sample 0: alpha 1, logits [0, ln 2], y = 1 -> CE = log 1.5
    # sample 1: alpha 0.5, logits [0, 2 ln 2] -> scaled [0, ln 2], y = 0 -> CE = log 3
    alpha = torch.tensor([1.0, 0.5], requires_grad=True)
    logits = torch.tensor([[0.0, math.log(2)], [0.0, 2 * math.log(2)]])
    batch = {"index": torch.tensor([0, 1]), "label": torch.tensor([1, 0])}
    losses = method.training_losses(batch, {"logits": logits, "alpha": alpha})
    ce = (math.log(1.5) + math.log(3.0)) / 2
    # beta = 0.7 of 2 -> high {1.0}, low {0.5}: RR = max(0, 0.6 - 0.5) = 0.1
    assert losses["ce"].item() == pytest.approx(ce, abs=1e-6)
    assert losses["rr"].item() == pytest.approx(0.1, abs=1e-6)
    assert losses["loss"].item() == pytest.approx(ce + 0.1, abs=1e-6)
    losses["loss"].backward()
    assert alpha.grad is not None and bool((alpha.grad != 0).all())  # alpha is trained


def test_attention_head_is_training_only_and_optimized():
    method = _scn()
    out = method.forward_train({"image": torch.randn(4, 3, 32, 32)})
    assert out["alpha"].shape == (4,) and bool(((out["alpha"] > 0) & (out["alpha"] < 1)).all())
    assert not any(k.startswith("attention") for k in method.net.state_dict())
    optimized = {id(p) for g in method.param_groups() for p in g["params"]}
    assert all(id(p) in optimized for p in method.attention.parameters())


def test_bad_scope_is_refused():
    with pytest.raises(ValueError, match="relabel_scope"):
        _scn(relabel_scope="some")
