"""Template diagnostics of MTAC (why relabeling helps or hurts) on a hand-built case."""
import pytest
import torch
from conftest import TINY_BACKBONE

from ufer.methods import mtac_diagnostics as diagnose
from ufer.methods.mtac import MTAC


def _case(monkeypatch) -> MTAC:
    """10 samples, 3 classes, 4 AUs; samples 0 and 9 have wrong given labels and low alpha;
    s_i = e_{clean_i}, so the nearest template (rows of the identity) is the clean class."""
    m = MTAC(backbone=TINY_BACKBONE, num_classes=3, num_train=10, num_aus=4, has_va=False)
    clean = torch.tensor([0, 0, 0, 1, 1, 1, 2, 2, 2, 0])
    given = clean.clone()
    given[0], given[9] = 2, 1
    m.samples.reset(given, clean)
    m.templates.copy_(torch.eye(3, 4))
    m.template_initialized.fill_(True)
    s = torch.nn.functional.one_hot(clean, 4).float()
    alpha = torch.full((10,), 0.9)
    alpha[[0, 9]] = 0.1
    au = s.clone()  # AU m present exactly where s_m is high (AU 3 never present: no AUROC)
    outputs = {"alpha": alpha, "s": s, "f": s.clone(), "au": au, "au_mask": torch.ones(10, 4, dtype=torch.bool)}
    monkeypatch.setattr(diagnose, "_outputs", lambda method, dataset: outputs)
    return m


def test_mtac_template_diagnostics_hand_case(monkeypatch):
    m = _case(monkeypatch)
    d = diagnose.template_diagnostics(m, dataset=None)
    assert d["au_auroc"] == pytest.approx(1.0)
    assert d["template_cosine"] == pytest.approx(0.0)  # orthogonal templates
    assert d["template_acc_clean"] == pytest.approx(1.0)
    assert d["template_acc_given"] == pytest.approx(0.8)
    assert d["alpha_auroc"] == pytest.approx(1.0)
    assert d["flipped"] == pytest.approx(0.2)
    assert d["eligible_flipped"] == pytest.approx(1.0)  # the low 20 % = samples 0 and 9
    assert d["would_move"] == pytest.approx(0.2) and d["would_move_right"] == pytest.approx(1.0)


def test_mtac_probe_refits_the_au_head_on_frozen_features(monkeypatch):
    m = _case(monkeypatch)  # features = the AU pattern: a fitted head must find it
    d = diagnose.template_diagnostics(m, dataset=None, probe_steps=300)
    assert d["probe_au_auroc"] == pytest.approx(1.0)
    assert d["probe_template_acc_clean"] == pytest.approx(1.0)
    assert d["probe_would_move"] == pytest.approx(0.2)
    assert d["probe_would_move_right"] == pytest.approx(1.0)


def test_mtac_collapsed_templates_move_nothing(monkeypatch):
    m = _case(monkeypatch)
    m.templates.copy_(torch.ones(3, 4))  # every template the same direction
    d = diagnose.template_diagnostics(m, dataset=None)
    assert d["template_cosine"] == pytest.approx(1.0)
    assert d["would_move"] == 0.0 and d["would_move_right"] is None


def test_mtac_report_includes_template_diagnostics(tiny_noisy_manifest, tmp_path):
    from conftest import tiny_fit_kwargs

    from ufer.engine.report import format_summary, write_report
    from ufer.engine.train import train_method

    run_dir = tmp_path / "mtac"
    train_method(tiny_noisy_manifest, "mtac", run_dir, 1, test=False,
                 method_kwargs={"backbone": TINY_BACKBONE}, data_kwargs={"batch_size": 64},
                 **tiny_fit_kwargs())
    summary = write_report(run_dir)
    d = summary["diagnostics"]  # MTAC.diagnostics: the engine asks the method, nothing else
    assert 0.0 <= d["au_auroc"] <= 1.0 and -1.0 <= d["template_cosine"] <= 1.0
    assert d["flipped"] == pytest.approx(summary["wrong_given"] / summary["samples"])
    assert "diagnostics: au_auroc" in format_summary(summary)
