"""The readings MTAC / ULC-AG leave open, as switches: each changes exactly what it names."""
import math

import pytest
import torch
from conftest import TINY_BACKBONE

from ufer.methods.mtac import MTAC
from ufer.methods.relabel import (
    estimated_move_precision,
    keep_agreeing,
    keep_confident,
    relabel_nearest_template,
)

M, C = 3, 3


def _mtac(**kwargs) -> MTAC:
    torch.manual_seed(0)
    m = MTAC(backbone=TINY_BACKBONE, num_classes=C, num_train=6, num_aus=M, has_va=False,
             **kwargs)
    m.samples.reset(torch.tensor([0, 0, 1, 1, 2, 2]))
    return m


def _at_epoch(monkeypatch, epoch: int) -> None:
    monkeypatch.setattr(MTAC, "current_epoch", property(lambda self: epoch))


def _batch() -> dict:
    g = torch.Generator().manual_seed(1)
    return {"image": torch.randn(6, 3, 32, 32, generator=g), "index": torch.arange(6),
            "label": torch.tensor([0, 0, 1, 1, 2, 2]),
            "au": (torch.rand(6, M, generator=g) > 0.5).float(),
            "au_mask": torch.ones(6, M, dtype=torch.bool)}


def _backbone_grad_of_au_loss(m: MTAC) -> float:
    out = m.forward_train(_batch())
    if "au_logits" not in out:
        return float("nan")
    m.zero_grad()
    out["au_logits"].sum().backward()
    grads = [p.grad for p in m.net.backbone.parameters() if p.grad is not None]
    return sum(float(g.abs().sum()) for g in grads)


@pytest.mark.parametrize("mode", ["branch", "gradient"])
def test_au_start_mode_delays_what_it_names(monkeypatch, mode):
    ulcag_like = {"au_grad_to_backbone": True, "au_start_epoch": 10, "au_start_mode": mode}
    _at_epoch(monkeypatch, 0)
    early = _backbone_grad_of_au_loss(_mtac(**ulcag_like))
    _at_epoch(monkeypatch, 10)
    late = _backbone_grad_of_au_loss(_mtac(**ulcag_like))
    if mode == "branch":  # literal: no AU branch at all before epoch 10
        assert math.isnan(early)  # no AU logits
    else:  # the head and templates run from the start; only the backbone gradient waits
        assert early == 0.0
    assert late > 0.0  # from epoch 10 the AU loss trains the backbone in both readings


def test_template_labels_given_groups_by_the_given_labels(monkeypatch):
    _at_epoch(monkeypatch, 0)
    s = torch.eye(3).repeat_interleave(2, dim=0)  # sample i's s = e_{i // 2}
    out = {"alpha": torch.ones(6), "logits": torch.zeros(6, C), "au_logits": s}
    batch = {"index": torch.arange(6), "label": torch.tensor([0, 0, 1, 1, 2, 2])}
    current, given = _mtac(template_labels="current"), _mtac(template_labels="given")
    for m in (current, given):
        m.samples.current[1] = 2  # sample 1 was corrected from 0 to 2 earlier
        m.apply_state_update(batch, out)
    assert torch.allclose(given.templates, torch.eye(3))  # classes by the given labels
    # by the current labels class 0 holds sample 0 only, class 2 holds samples 1, 4, 5
    assert torch.allclose(current.templates[0], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(current.templates[2], torch.tensor([1 / 3, 0.0, 2 / 3]))


def test_template_h_epoch_restarts_the_update_weight(monkeypatch):
    out0 = {"alpha": torch.ones(6), "logits": torch.zeros(6, C),
            "au_logits": torch.eye(3).repeat_interleave(2, dim=0)}
    out1 = {**out0, "au_logits": 2 * torch.eye(3).flip(1).repeat_interleave(2, dim=0)}
    batch = {"index": torch.arange(6), "label": torch.tensor([0, 0, 1, 1, 2, 2])}
    ms = {h: _mtac(template_h=h, template_w_min=0.0, relabel=False) for h in ("global", "epoch")}
    for epoch, out in ((0, out0), (0, out0), (1, out1)):
        _at_epoch(monkeypatch, epoch)
        for m in ms.values():
            if epoch == 1 and m._epoch_h:
                m.on_train_epoch_start()
            m.apply_state_update(batch, out)
    # global h = 2 at epoch 1: w = exp(-1.8) = 0.165; per-epoch h = 0: w = 1 (a copy)
    assert torch.allclose(ms["epoch"].templates, out1["au_logits"][::2])
    w = torch.exp(torch.tensor(-1.8))
    assert torch.allclose(ms["global"].templates, (1 - w) * torch.eye(3) + w * out1["au_logits"][::2])


@pytest.mark.parametrize("decay", [True, False])
def test_au_lr_decay_switch_keeps_the_au_rate(decay):
    m = _mtac(optimizer="adam", lr=0.01, au_lr=0.005, scheduler="multistep", milestones=[1],
              au_lr_decay=decay)
    config = m.configure_optimizers()
    opt, sched = config["optimizer"], config["lr_scheduler"]["scheduler"]
    opt.step()
    sched.step()  # past the milestone at epoch 1
    au_ids = {id(p) for p in m.au_head.parameters()}
    for group in opt.param_groups:
        is_au = any(id(p) in au_ids for p in group["params"])
        expected = (0.005 * (0.1 if decay else 1.0)) if is_au else 0.001
        assert group["lr"] == pytest.approx(expected)


def test_relabel_margin_needs_a_clear_winner():
    templates = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    s = torch.tensor([[0.9, 1.0]])  # cos to t1 (0.743) beats cos to t0 (0.669) by 0.074
    args = (s, templates, torch.tensor([0]), torch.tensor([True]), torch.tensor([True, True]))
    assert relabel_nearest_template(*args).tolist() == [1]
    assert relabel_nearest_template(*args, margin=0.07).tolist() == [1]
    assert relabel_nearest_template(*args, margin=0.08).tolist() == [0]


def test_relabel_waits_for_the_validation_accuracy(monkeypatch):
    _at_epoch(monkeypatch, 0)
    m = _mtac(relabel_start=0, relabel_scope="all", relabel_min_val_acc=0.6)
    out = {"alpha": torch.ones(6), "logits": torch.zeros(6, C),
           "au_logits": torch.eye(3).flip(1).repeat_interleave(2, dim=0)}
    batch = {"index": torch.arange(6), "label": torch.tensor([0, 0, 1, 1, 2, 2])}
    m.templates.copy_(torch.eye(3))
    m.template_initialized.fill_(True)
    m.template_step.fill_(1000)
    m.apply_state_update(batch, out)
    assert not bool(m.relabel_gate) and int(m.samples.summary()["corrected"]) == 0
    monkeypatch.setattr(MTAC, "trainer", property(lambda self: type(
        "T", (), {"state": type("S", (), {"fn": "fit"})()})()))
    m.val_acc.update(torch.eye(C)[[0, 1, 2, 0]], torch.tensor([0, 1, 2, 1]))  # 3 of 4 right
    m.on_validation_epoch_end()
    assert bool(m.relabel_gate)
    m.apply_state_update(batch, out)
    assert int(m.samples.summary()["corrected"]) == 4  # samples of classes 0 and 2 swap


def test_keep_agreeing_keeps_only_the_moves_the_classifier_shares():
    labels, new = torch.tensor([0, 0, 1, 2]), torch.tensor([1, 2, 1, 0])
    predicted = torch.tensor([1, 1, 0, 2])
    # sample 0 moves (both say 1); 1 stays (template 2, classifier 1); 2 never moved;
    # 3 stays (template 0, classifier keeps its own label 2)
    assert keep_agreeing(new, labels, predicted).tolist() == [1, 0, 1, 2]


@pytest.mark.parametrize("agreement", [False, True])
def test_relabel_agreement_asks_the_classifier(monkeypatch, agreement):
    _at_epoch(monkeypatch, 0)
    m = _mtac(relabel_start=0, relabel_scope="all", relabel_agreement=agreement)
    # every sample's s is the template of the class two steps on (0 -> 2, 1 -> 0, 2 -> 1);
    # the classifier predicts that class only for samples 0 and 3
    logits = torch.eye(C)[[2, 0, 1, 0, 0, 0]] * 5.0
    out = {"alpha": torch.ones(6), "logits": logits,
           "au_logits": torch.eye(3)[[2, 2, 0, 0, 1, 1]]}
    batch = {"index": torch.arange(6), "label": torch.tensor([0, 0, 1, 1, 2, 2])}
    m.templates.copy_(torch.eye(3))
    m.template_initialized.fill_(True)
    m.template_step.fill_(1000)  # w = template_w_min: the templates barely move
    m.apply_state_update(batch, out)
    expected = [2, 0, 1, 0, 2, 2] if agreement else [2, 2, 0, 0, 1, 1]
    assert m.samples.current.tolist() == expected


def test_keep_confident_keeps_only_moves_the_classifier_is_sure_of():
    labels, new = torch.tensor([0, 0, 1, 2]), torch.tensor([1, 2, 1, 0])
    probs = torch.tensor([[0.05, 0.95, 0.0], [0.2, 0.2, 0.6], [0.1, 0.9, 0.0], [0.9, 0.0, 0.1]])
    # moves 0 (p 0.95) and 3 (p 0.9, exactly the threshold) stay; 1 (p 0.6) is undone
    assert keep_confident(new, labels, probs, 0.9).tolist() == [1, 0, 1, 0]
    assert keep_confident(new, labels, probs, 0.0).tolist() == new.tolist()


@pytest.mark.parametrize("min_prob", [0.0, 0.9])
def test_relabel_min_prob_asks_for_a_sure_classifier(monkeypatch, min_prob):
    _at_epoch(monkeypatch, 0)
    m = _mtac(relabel_start=0, relabel_scope="all", relabel_agreement=True,
              relabel_min_prob=min_prob)
    # as above, but the classifier's vote for sample 3 is weak: softmax e/(e+2) = 0.58
    logits = torch.eye(C)[[2, 0, 1, 0, 0, 0]] * torch.tensor([5.0, 5, 5, 1, 5, 5])[:, None]
    out = {"alpha": torch.ones(6), "logits": logits,
           "au_logits": torch.eye(3)[[2, 2, 0, 0, 1, 1]]}
    batch = {"index": torch.arange(6), "label": torch.tensor([0, 0, 1, 1, 2, 2])}
    m.templates.copy_(torch.eye(3))
    m.template_initialized.fill_(True)
    m.template_step.fill_(1000)
    m.apply_state_update(batch, out)
    expected = [2, 0, 1, 1, 2, 2] if min_prob else [2, 0, 1, 0, 2, 2]
    assert m.samples.current.tolist() == expected
    with pytest.raises(ValueError, match="relabel_min_prob"):
        _mtac(relabel_min_prob=1.5)


@pytest.mark.parametrize("floor", [0.0, 0.1])
def test_confidence_floor_lifts_alpha(floor):
    m = _mtac(confidence_floor=floor)
    torch.nn.init.zeros_(m.confidence_head.weight)
    f = torch.ones(2, m.net.num_features)
    for bias, expected in ((-100.0, floor), (0.0, floor + (1 - floor) * 0.5), (100.0, 1.0)):
        torch.nn.init.constant_(m.confidence_head.bias, bias)
        assert torch.allclose(m.confidence(f), torch.full((2,), expected))
    with pytest.raises(ValueError, match="confidence_floor"):
        _mtac(confidence_floor=1.0)


def test_estimated_move_precision_by_hand():
    # training: 100 moves in 1000 samples (0.1); validation: 5 in 500 (0.01) -> 1 - 0.1 = 0.9
    assert estimated_move_precision(100, 1000, 5, 500) == pytest.approx(0.9)
    assert estimated_move_precision(10, 100, 1, 20) == pytest.approx(0.5)  # 0.05 vs 0.1
    assert estimated_move_precision(1, 100, 5, 100) == 0.0  # validation moves more: clipped
    assert estimated_move_precision(0, 100, 0, 100) == 0.0  # nothing proposed: no estimate
    assert estimated_move_precision(10, 100, 0, 0) == 0.0  # no validation split


class _FixedAU(torch.nn.Module):
    def __init__(self, s: torch.Tensor):
        super().__init__()
        self.s = s

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.s


def test_relabel_min_precision_gates_on_the_validation_move_rate(monkeypatch):
    _at_epoch(monkeypatch, 0)
    monkeypatch.setattr(MTAC, "trainer", property(lambda self: type(
        "T", (), {"state": type("S", (), {"fn": "fit"})()})()))
    m = _mtac(relabel_start=0, relabel_scope="all", relabel_min_precision=0.5)
    m.templates.copy_(torch.eye(3))
    m.template_initialized.fill_(True)
    m.template_step.fill_(1000)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    batch = {"index": torch.arange(6), "label": labels}
    out = {"alpha": torch.ones(6), "logits": torch.zeros(6, C),
           "au_logits": torch.eye(3)[[2, 2, 0, 0, 1, 1]]}  # every label is proposed a move

    def validate(s: torch.Tensor) -> None:
        m.au_head = _FixedAU(s)
        m.on_validation_epoch_start()
        m.validation_step({"image": torch.zeros(6, 3, 32, 32), "label": labels}, 0)
        m.on_validation_epoch_end()

    m.on_train_epoch_start()
    m.apply_state_update(batch, out)
    assert int(m.samples.summary()["corrected"]) == 0  # closed until the first validation
    assert m._proposed["train"] == [6, 6]
    validate(torch.eye(3)[[0, 0, 1, 1, 1, 1]])  # moves 2 of 6 validation labels (class 2)
    assert m._proposed["val"] == [2, 6]
    assert bool(m.precision_gate)  # 1 - (2/6) / (6/6) = 0.67 >= 0.5
    m.on_train_epoch_start()
    m.apply_state_update(batch, out)
    assert int(m.samples.summary()["corrected"]) == 6
    validate(torch.eye(3)[[1, 1, 1, 1, 1, 1]])  # moves 4 of 6: 1 - 4/6 = 0.33 < 0.5
    assert not bool(m.precision_gate)
    out = {**out, "au_logits": torch.eye(3)[[0, 0, 1, 1, 2, 2]]}  # would move every label back
    m.apply_state_update(batch, out)
    assert m.samples.current.tolist() == [2, 2, 0, 0, 1, 1]  # the gate holds them


def test_relabel_min_precision_off_adds_no_validation_work():
    m = _mtac()
    assert not m.checks_precision and bool(m.precision_gate)
    m.validation_step({"image": torch.zeros(2, 3, 32, 32), "label": torch.tensor([0, 1])}, 0)
    assert m._proposed["val"] == [0, 0]  # the relabel rule did not run on validation


def test_checkpoint_from_before_the_gates_loads_with_them_open():
    from ufer.methods.base import CKPT_KEY, STATE_FORMAT

    old = _mtac().state_dict()
    for gate in ("relabel_gate", "precision_gate"):
        del old[gate]
    m = _mtac(relabel_min_val_acc=0.6, relabel_min_precision=0.5)
    assert not bool(m.relabel_gate) and not bool(m.precision_gate)
    ckpt = {CKPT_KEY: {"method": "mtac", "state_format": STATE_FORMAT}, "state_dict": old}
    m.on_load_checkpoint(ckpt)
    m.load_state_dict(ckpt["state_dict"])
    assert bool(m.relabel_gate) and bool(m.precision_gate)


@pytest.mark.parametrize("confidence_lr", [None, 1e-4])
def test_confidence_lr_sets_the_rate_of_the_confidence_head_only(confidence_lr):
    m = _mtac(optimizer="adam", lr=0.01, au_lr=0.005, confidence_lr=confidence_lr,
              scheduler="none")
    rate = {id(p): g["lr"] for g in m.configure_optimizers().param_groups
            for p in g["params"]}
    assert {rate[id(p)] for p in m.confidence_head.parameters()} == {confidence_lr or 0.01}
    assert {rate[id(p)] for p in m.net.parameters()} == {0.01}
    assert {rate[id(p)] for p in m.au_head.parameters()} == {0.005}
