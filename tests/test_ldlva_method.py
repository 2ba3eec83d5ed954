"""LDLVA as a method: refusal without VA, the lambda step (eqs 7-9) on the batch's samples
only, the bank's first epoch, forward mode and its exact resume, configs."""
import math
from pathlib import Path

import pytest
import torch
import yaml
from conftest import TINY_BACKBONE, tiny_fit_kwargs
from test_mtac_method import _EveryEpoch, _parse

from ufer.engine.train import train_method
from ufer.methods.base import read_checkpoint
from ufer.methods.ldlva import LDLVA, CalibrationMLP

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
N, C = 6, 3
F_FIXED = (0.1, 0.1, 0.8)  # every image's prediction (classifier weights 0, bias log f)
E0, E2 = [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]


def _method(**kwargs) -> LDLVA:
    """6 samples labelled (0, 2, 0, 1, 2, 1), 2 neighbours each, contributions = s_ik."""
    m = LDLVA(backbone=TINY_BACKBONE, num_classes=C, num_train=N, has_va=True,
              num_neighbours=2, adaptive_similarity=False, discriminative_loss=False, **kwargs)
    m.samples.reset(torch.tensor([0, 2, 0, 1, 2, 1]))
    m.samples.neighbours.copy_(torch.tensor([[4, 5], [2, 3], [0, 1], [0, 1], [0, 1], [0, 1]]))
    m.samples.similarity.fill_(1.0)
    with torch.no_grad():
        m.net.classifier.weight.zero_()
        m.net.classifier.bias.copy_(torch.tensor(F_FIXED).log())
    return m


def _step(m: LDLVA, index: list[int], optimizer: torch.optim.Optimizer | None = None) -> None:
    """One training step on the samples ``index`` (random images)."""
    index_t = torch.tensor(index)
    batch = {"image": torch.randn(len(index), 3, 32, 32), "index": index_t,
             "label": m.samples.original[index_t]}
    out = m.forward_train(batch)
    loss = m.training_losses(batch, out)["loss"]
    if optimizer is not None:
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    m.apply_state_update(batch, out)


def test_ldlva_refuses_data_without_va_and_says_how_to_get_it():
    problem = LDLVA.data_problem({"has_va": False})
    assert "ufer pseudo-va" in problem and "--csv" in problem and "--model" in problem
    assert LDLVA.data_problem({"has_va": True}) is None
    with pytest.raises(ValueError, match="ufer pseudo-va") as err:
        LDLVA(backbone=TINY_BACKBONE, num_classes=C, num_train=N, has_va=False)
    assert str(err.value) == problem


def test_ldlva_lambda_follows_eqs_7_9_and_absent_samples_never_move():
    m = _method()
    m.samples.uncertainty_factor.copy_(torch.tensor([0.0, 0.5, 0.3, 0.3, 0.3, 0.3]))
    m.samples.bank_probs.copy_(torch.tensor([E0, E0, E0, E0, E2, E2]))
    # sample 0 (label 0): its neighbours 4, 5 say class 2 like the prediction -> lambda rises
    # by lambda_lr (CE(l) - CE(d~)) = 0.05 (ln 0.8 - ln 0.1); sample 1 (label 2, agreeing
    # with the prediction; neighbours 2, 3 say class 0) falls by the same amount
    delta = 0.05 * (math.log(0.8) - math.log(0.1))
    optimizer = torch.optim.Adam([g for g in m.param_groups() if g["params"]], lr=0.01)
    _step(m, [0, 1], optimizer)
    lam = m.samples.uncertainty_factor
    assert lam[:2].tolist() == pytest.approx([delta, 0.5 - delta], abs=1e-6)
    # the stored targets are eq 6 with the lambdas of the forward pass (0 and 0.5)
    torch.testing.assert_close(m.label_distribution()[:2], torch.tensor([E0, [0.5, 0.0, 0.5]]))
    before = lam.clone()
    for _ in range(3):  # Adam keeps stepping the network; lambda is not among its parameters
        _step(m, [0, 1], optimizer)
    assert torch.equal(lam[2:], before[2:])  # absent samples: bit-identical
    assert not torch.equal(lam[:2], before[:2])  # (present ones keep moving)
    assert not any(p is lam for g in m.param_groups() for p in g["params"])
    unc = m.sample_uncertainty()
    assert torch.equal(unc[:2], lam[:2]) and unc[2:].isnan().all()  # NaN = not trained on


def test_ldlva_lambda_stays_in_0_1():
    m = _method(lambda_lr=10.0)
    m.samples.uncertainty_factor.copy_(torch.tensor([0.9, 0.1, 0, 0, 0, 0]))
    m.samples.bank_probs.copy_(torch.tensor([E0, E0, E0, E0, E2, E2]))
    _step(m, [0, 1])
    assert m.samples.uncertainty_factor[:2].tolist() == [1.0, 0.0]


def test_ldlva_bank_first_epoch_uses_only_written_neighbours():
    m = _method()
    m.samples.uncertainty_factor.fill_(0.5)
    # nothing written yet: sample 0 trains on its label, lambda untouched
    _step(m, [0, 3])
    torch.testing.assert_close(m.samples.distribution[0], torch.tensor(E0))
    assert m.samples.uncertainty_factor[0] == 0.5
    # neighbour 4 written (class 2), neighbour 5 not: d~ = e2 alone
    m.samples.bank_probs[4] = torch.tensor(E2)
    m.samples.bank_probs[5] = float("nan")
    _step(m, [0, 3])
    torch.testing.assert_close(m.samples.distribution[0], torch.tensor([0.5, 0.0, 0.5]))
    assert m.samples.uncertainty_factor[0] > 0.5
    # the bank now holds sample 0's own prediction
    torch.testing.assert_close(m.samples.bank_probs[0], torch.tensor(F_FIXED))


def test_ldlva_switches_build_what_they_need():
    full = LDLVA(backbone=TINY_BACKBONE, num_classes=C, num_train=N, has_va=True)
    assert full.calibration is not None and full.centers.shape == (C, full.net.num_features)
    assert full.samples.bank_features.dtype == torch.bfloat16
    plain = LDLVA(backbone=TINY_BACKBONE, num_classes=C, num_train=N, has_va=True,
                  distribution_targets=False, discriminative_loss=False)
    assert plain.calibration is None and plain.centers is None
    assert "neighbours" not in plain.samples.fields
    assert plain.sample_uncertainty() is None and plain.label_distribution() is None
    forward = LDLVA(backbone=TINY_BACKBONE, num_classes=C, num_train=N, has_va=True,
                    neighbours="forward")
    assert "bank_probs" not in forward.samples.fields
    with pytest.raises(ValueError, match="neighbours must be"):
        LDLVA(backbone=TINY_BACKBONE, num_classes=C, num_train=N, has_va=True, neighbours="x")


def _fit(manifest, run_dir, resume=None):
    return train_method(manifest, "ldlva", run_dir, 3, seed=2, resume=resume, test=False,
                        method_kwargs={"backbone": TINY_BACKBONE, "neighbours": "forward",
                                       "num_neighbours": 3, "lambda_lr": 0.5},
                        data_kwargs={"batch_size": 32},
                        **tiny_fit_kwargs(extra_callbacks=[_EveryEpoch(
                            dirpath=run_dir / "epochs", filename="{epoch}", save_top_k=-1)]))


def test_ldlva_forward_mode_trains_and_resume_keeps_lambda(tiny_noisy_manifest, tmp_path):
    _fit(tiny_noisy_manifest, tmp_path / "full")
    first = read_checkpoint(tmp_path / "full" / "epochs" / "epoch=0.ckpt")["state_dict"]
    assert (first["samples.uncertainty_factor"] > 0).any()  # lambda moved in epoch 1 ...
    _fit(tiny_noisy_manifest, tmp_path / "resumed", tmp_path / "full" / "epochs" / "epoch=0.ckpt")
    a = read_checkpoint(tmp_path / "full" / "checkpoints" / "last.ckpt")["state_dict"]
    b = read_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.ckpt")["state_dict"]
    assert a.keys() == b.keys()
    for key in a:  # ... and the resumed run (lambda, centers, weights) ends identical
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, equal_nan=True, msg=key)
    assert not a["samples.distribution"].isnan().any()  # every sample trained on


def test_ldlva_configs_parse_and_build():
    files = sorted((CONFIGS / "paper").glob("ldlva_*.yaml")) + \
        sorted((CONFIGS / "tuned").glob("ldlva_*.yaml"))
    assert len(files) >= 13
    base = {"paper": CONFIGS / "paper" / "ldlva_rafdb.yaml",
            "tuned": CONFIGS / "tuned" / "ldlva_synthetic.yaml"}
    for file in files:
        composed = file not in base.values()
        config = _parse(base[file.parent.name], file) if composed else _parse(file)
        init = dict(vars(config.model.init_args))
        assert config.model.class_path == "ufer.methods.ldlva.LDLVA", file.name
        if composed:  # the base's values survive, the file's switches win
            assert init["lr"] == (0.001 if file.parent.name == "paper" else 0.05), file.name
            for key, value in yaml.safe_load(file.read_text())["model"]["init_args"].items():
                assert init[key] == value, (file.name, key)
        init.update(backbone=TINY_BACKBONE, num_classes=7, num_train=4, has_va=True)
        LDLVA(**init)
    paper = dict(vars(_parse(base["paper"]).model.init_args))
    assert (paper["optimizer"], paper["lr"], paper["num_neighbours"], paper["delta"],
            paper["gamma"], paper["lambda_init"]) == ("adam", 0.001, 8, 0.5, 0.1, 0.0)


def test_ldlva_diagnostics_bank_vs_forward_distance():
    m = _method()
    m.eval()
    g = torch.Generator().manual_seed(3)
    train_set = [{"image": torch.randint(0, 256, (3, 32, 32), generator=g, dtype=torch.uint8)}
                 for _ in range(N)]
    with torch.no_grad():
        m.net.classifier.weight.normal_(generator=g)  # predictions that differ per image
        probs = m.net.classifier(m._features(train_set)).softmax(dim=1)
    m.samples.bank_probs.copy_(probs)  # the bank holds exactly what the network says now
    assert m.diagnostics(train_set)["bank_vs_forward_tv"] == 0.0
    # sample 4's entry replaced by class 2: only sample 0 (neighbours 4, 5; weights equal)
    # changes, by 1/2 * 1/2 * ||e2 - p4||_1 = (1 - p4[2]) / 2
    m.samples.bank_probs[4] = torch.tensor(E2)
    tv = m.diagnostics(train_set)["bank_vs_forward_tv"]
    assert tv == pytest.approx((1 - probs[4, 2].item()) / 2 / N)


def test_ldlva_calibration_far_below_zero_still_weighs_the_neighbours():
    """Eq 5 uses only ratios of the zeta_ik: shifting g far below zero (sigmoid rounds to 0)
    keeps the neighbour distribution, it does not fall back to the label."""
    m = LDLVA(backbone=TINY_BACKBONE, num_classes=C, num_train=N, has_va=True,
              num_neighbours=2, discriminative_loss=False)
    m.samples.reset(torch.tensor([0, 2, 0, 1, 2, 1]))
    m.samples.neighbours.copy_(torch.tensor([[4, 1], [2, 3], [0, 1], [0, 1], [0, 1], [0, 1]]))
    m.samples.similarity.fill_(1.0)
    m.samples.bank_probs.copy_(torch.tensor([E0, [0.0, 1.0, 0.0], E0, E0, E2, E2]))
    g = torch.Generator().manual_seed(0)
    m.samples.bank_features.copy_(torch.randn(N, m.net.num_features, generator=g))
    batch = {"image": torch.randn(2, 3, 32, 32, generator=g), "index": torch.tensor([0, 1]),
             "label": torch.tensor([0, 2])}
    m.eval()
    mixtures = []
    for shift in (-200.0, -400.0):
        with torch.no_grad():
            m.calibration.rest[-1].bias.fill_(shift)
            mixtures.append(m.forward_train(batch)["neighbour_distribution"])
    torch.testing.assert_close(mixtures[0], mixtures[1])
    # sample 0's neighbours 4 (class 2) and 1 (class 1) both weigh in; not its label (class 0)
    assert mixtures[0][0, 0] == 0 and mixtures[0][0, 1] > 0 and mixtures[0][0, 2] > 0


def test_ldlva_calibration_output_is_float32_under_autocast():
    g = CalibrationMLP(16)
    with torch.no_grad():
        g.rest[-1].bias.fill_(-93.0)  # where bfloat16's spacing is 0.5
    gen = torch.Generator().manual_seed(0)
    anchor, neighbours = torch.randn(2, 16, generator=gen), torch.randn(2, 3, 16, generator=gen)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        log_zeta = g(anchor, neighbours)
    assert log_zeta.dtype == torch.float32
    assert not torch.equal(log_zeta * 2, (log_zeta * 2).round())  # not on bfloat16's 0.5 grid
    torch.testing.assert_close(log_zeta, g(anchor, neighbours), rtol=0, atol=0.1)
