"""Per-sample state math runs in float32 even when training runs under bf16 autocast."""
import copy

import torch
from conftest import TINY_BACKBONE

from ufer.losses.ccc import class_balanced_ccc_loss
from ufer.methods.mtac import MTAC
from ufer.methods.relabel import relabel_nearest_template

# Templates 0 and 1 point almost the same way (cosine 1 - 2e-6); sample i's AU logits s_i
# lie between them, nearer template 1 in fp32. bf16 (spacing 2^-8 near 1) rounds every
# cosine to 1: a tie, so no sample moves.
TEMPLATES = torch.tensor([[1.0, 0.0, 0.0], [1.0, 0.002, 0.0], [0.0, 0.0, 1.0]])
S = torch.tensor([[1.0, 0.0015, 0.0], [1.0, 0.0018, 0.0], [1.0, 0.0012, 0.0]])
LABELS = torch.zeros(3, dtype=torch.long)


def test_bf16_would_flip_the_relabel_decisions():
    everyone, ready = torch.ones(3, dtype=torch.bool), torch.ones(3, dtype=torch.bool)
    fp32 = relabel_nearest_template(S, TEMPLATES, LABELS, everyone, ready)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        bf16 = relabel_nearest_template(S, TEMPLATES, LABELS, everyone, ready)
    assert fp32.tolist() == [1, 1, 1] and bf16.tolist() == [0, 0, 0]


def _method() -> MTAC:
    m = MTAC(backbone=TINY_BACKBONE, num_classes=3, num_train=3, num_aus=3, has_va=False,
             relabel_start=0, relabel_scope="all", template_w_min=0.0)
    m.samples.reset(LABELS.clone())
    m.templates.copy_(TEMPLATES)
    m.template_initialized.fill_(True)
    m.template_step.fill_(1000)  # w_h = exp(-0.9 * 1000) = 0: the templates stay as set
    return m


def test_relabel_decisions_under_bf16_autocast_equal_fp32():
    batch = {"index": torch.arange(3), "label": LABELS.clone()}
    out = {"alpha": torch.full((3,), 0.5), "logits": torch.zeros(3, 3), "au_logits": S.clone()}
    reference, mixed = _method(), _method()
    reference.apply_state_update(batch, out)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed.apply_state_update(batch, copy.deepcopy(out))
    assert reference.samples.current.tolist() == [1, 1, 1]
    assert torch.equal(mixed.samples.current, reference.samples.current)
    assert torch.equal(mixed.templates, reference.templates)


def test_ccc_loss_is_float32_under_autocast():
    g = torch.Generator().manual_seed(0)
    pred = (torch.rand(16, 2, generator=g) * 0.02 + 0.5).requires_grad_()
    va = torch.rand(16, 2, generator=g) * 0.02 + 0.5
    mask, labels = torch.ones(16, dtype=torch.bool), torch.arange(16) % 2
    fp32 = class_balanced_ccc_loss(pred, va, mask, labels, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = class_balanced_ccc_loss(pred.bfloat16().float(), va, mask, labels, 2)
    assert mixed.dtype == torch.float32
    assert torch.allclose(mixed, class_balanced_ccc_loss(pred.bfloat16().float(), va, mask,
                                                         labels, 2))
    assert fp32.dtype == torch.float32
