"""POI as a method: the prior table as used, AU targets, gradients in every configuration,
export = plain backbone + classifier, UEM hooks, paper configs, evaluate's confidence subsets."""
import itertools
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import yaml
from conftest import TINY_BACKBONE

import ufer
from ufer.data import schema
from ufer.data.au_prior import PRIOR_AUS
from ufer.data.datamodule import FERDataModule
from ufer.data.dataset import ManifestDataset
from ufer.data.manifest import read_manifest
from ufer.engine.evaluate import confidence_subsets, predict_with_uncertainty
from ufer.engine.lightning_cli import UferCLI
from ufer.inference.export import export_bundle, load_bundle
from ufer.losses.poi import au_prior_loss
from ufer.methods import state
from ufer.methods.base import FERMethod
from ufer.methods.poi import POI
from ufer.models.net import FERNet
from ufer.models.subregions import crop_uncertainty

CLASSES8 = list(schema.EMOTIONS8)
CONFIGS = Path(__file__).parent.parent / "configs"


def make(**kwargs) -> POI:
    torch.manual_seed(0)
    args = {"backbone": TINY_BACKBONE, "num_classes": 8, "num_train": 16,
            "class_names": CLASSES8, **kwargs}
    method = POI(**args)
    method.samples.reset(torch.arange(16) % args["num_classes"])
    return method


def batch(n: int = 6, num_classes: int = 8, size: int = 32) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {"image": torch.randn(n, 3, size, size, generator=g), "index": torch.arange(n),
            "label": torch.arange(n) % num_classes}


def column(au: int) -> int:
    return PRIOR_AUS.index(au)


def test_poi_prior_table_as_used_neutral_zero_contempt_only_au14():
    prior = make().prior
    assert prior.shape == (8, 13)
    assert prior[CLASSES8.index("neutral")].sum() == 0
    contempt = prior[CLASSES8.index("contempt")]
    assert contempt.sum() == 1 and contempt[column(14)] == 1
    happy = prior[CLASSES8.index("happy")]
    assert {PRIOR_AUS[i] for i in happy.nonzero().flatten().tolist()} == {6, 12, 26}


def test_poi_au_targets_smoothed_from_the_current_label_not_the_clean_one():
    method = make(au_eps=0.1)
    b = batch(4)
    happy, neutral, contempt = (CLASSES8.index(c) for c in ("happy", "neutral", "contempt"))
    method.samples.reset(torch.full((16,), neutral), torch.full((16,), contempt))
    method.samples.relabel(torch.arange(4), torch.full((4,), happy), epoch=0)
    targets, known = method.au_targets(b, method.targets(b))
    assert known.all()
    assert targets[0, column(12)].item() == pytest.approx(0.95)  # happy's AU12: 1 -> 1 - eps/2
    assert targets[0, column(14)].item() == pytest.approx(0.05)  # contempt's AU14: 0 -> eps/2
    out = method.forward_train(b)
    losses = method.training_losses(b, out)
    mask = method.pin.au_mask.unsqueeze(0).expand(4, -1, -1)
    assert losses["au"].item() == pytest.approx(
        au_prior_loss(out["au_logits"], targets, mask).item())
    clean_targets = method.prior[torch.full((4,), contempt)] * 0.9 + 0.05
    assert losses["au"].item() != pytest.approx(
        au_prior_loss(out["au_logits"], clean_targets, mask).item())


def test_poi_au_targets_from_the_data_and_data_then_prior():
    datamodule = SimpleNamespace(train_set=SimpleNamespace(au_names=["AU12", "AU01", "AU20"]))
    b = batch(2)
    b["au"] = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    b["au_mask"] = torch.tensor([[True, True, True], [True, False, True]])
    labels = torch.tensor([CLASSES8.index("neutral")] * 2)
    data = make(au_targets="data", au_eps=0.0)
    data.setup_from_data(datamodule)
    assert data.au_index[column(12)] == 0 and data.au_index[column(1)] == 1
    assert (data.au_index >= 0).sum() == 2  # AU20 is not one of POI's AUs
    targets, known = data.au_targets(b, labels)
    assert known.sum(1).tolist() == [2, 1]  # AU12 and AU1; AU1 of image 2 unknown
    assert targets[0, column(12)] == 1 and targets[0, column(1)] == 0
    both = make(au_targets="data_then_prior", au_eps=0.0)
    both.setup_from_data(datamodule)
    targets, known = both.au_targets(b, torch.tensor([CLASSES8.index("surprise")] * 2))
    assert known.all()
    assert targets[0, column(1)] == 0  # the data says AU1 is off, surprise's prior says on
    assert targets[1, column(1)] == 1 and targets[1, column(2)] == 1  # unknown: prior
    with pytest.raises(ValueError, match="none of POI's AUs"):
        make(au_targets="data").setup_from_data(
            SimpleNamespace(train_set=SimpleNamespace(au_names=["AU20"])))


def test_poi_classes_outside_the_prior_are_named():
    sizes = {"num_classes": 8, "class_names": CLASSES8[:7] + ["other"]}
    assert "other" in POI.data_problem(sizes)
    assert POI.data_problem({"num_classes": 7, "class_names": CLASSES8[:7]}) is None
    with pytest.raises(ValueError, match="no row for classes \\['other'\\]"):
        make(class_names=sizes["class_names"])


SWITCHES = {"prior_branches": [True, False], "oim": [True, False], "uem": [True, False],
            "gate_ce": [True, False], "detach_teacher": [True, False],
            "gate_on": ["probs", "logits"]}


@pytest.mark.parametrize("values", list(itertools.product(*SWITCHES.values())))
def test_poi_every_parameter_gets_a_gradient_or_is_declared_unused(values, monkeypatch):
    switches = dict(zip(SWITCHES, values))
    monkeypatch.setattr(state, "is_distributed", lambda: True)  # declared-unused terms on
    method = make(**switches)
    b = batch()
    method.training_losses(b, method.forward_train(b))["loss"].backward()
    missing = [n for n, p in method.named_parameters() if p.grad is None]
    assert not missing, (switches, missing)
    if method.pin is None or method.pin.gate is None:
        return
    gate_trained = switches["gate_ce"] or not switches["detach_teacher"]
    assert (method.pin.gate.weight.grad.abs().sum() > 0) == gate_trained, switches


def test_poi_without_prior_branches_and_oim_is_the_baseline():
    method = make(prior_branches=False, oim=False, uem=False)
    assert method.pin is None
    baseline = ufer.create_method("baseline", backbone=TINY_BACKBONE, num_classes=8, num_train=16)
    baseline.net.load_state_dict(method.net.state_dict())
    baseline.samples.reset(method.samples.current.clone())
    b = batch()
    ours = method.training_losses(b, method.forward_train(b))["loss"]
    theirs = baseline.training_losses(b, baseline.forward_train(b))["loss"]
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-6)
    assert method.sample_uncertainty() is None


def test_poi_inpre_has_no_gate_and_no_mutual_learning():
    method = make(oim=False)
    b = batch()
    out = method.forward_train(b)
    losses = method.training_losses(b, out)
    assert method.pin.gate is None and "gate" not in out
    assert losses["ml"] == 0 and losses["ce_gate"] == 0 and losses["kd"] > 0


def test_poi_training_forward_equals_the_inference_network():
    method = make().eval()
    b = batch()
    with torch.no_grad():
        assert torch.allclose(method.forward_train(b)["logits"], method.net(b["image"]),
                              atol=1e-6)


def test_poi_uem_score_of_training_samples_and_of_test_images():
    method = make()
    b = batch()
    out = method.forward_train(b)
    method.apply_state_update(b, out)
    score = method.sample_uncertainty()
    assert torch.equal(score[:6], out["uem"].detach().float())
    assert score[6:].isnan().all()
    method.eval()
    test_score = method.inference_uncertainty(b["image"])
    assert torch.allclose(test_score, crop_uncertainty(method.net, b["image"], 9 / 14))
    # the training score is the same function of the TRN (here on eval-mode maps)
    assert torch.allclose(method.forward_train(b)["uem"], test_score, atol=1e-6)


def test_poi_uem_in_training_leaves_batchnorm_statistics_alone():
    method = make(prior_branches=False, oim=False, uem=True)
    method.train()
    with torch.no_grad():
        x3 = method.net.backbone.forward_until(batch()["image"], 3)
    stats = {k: v.clone() for k, v in method.net.state_dict().items() if "running" in k}
    method.uem_of_map(x3)
    assert all(torch.equal(v, method.net.state_dict()[k]) for k, v in stats.items())
    assert method.net.training


def test_poi_exported_network_is_the_plain_backbone_and_classifier(tmp_path):
    method = make()
    with torch.no_grad():
        for p in method.pin.parameters():
            p.add_(1.0)  # the PIN must not matter
    net, meta = load_bundle(export_bundle(method, tmp_path / "export"))
    plain = FERNet(TINY_BACKBONE, num_classes=8)
    assert net.state_dict().keys() == plain.state_dict().keys()
    plain.load_state_dict(method.net.state_dict())
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(net(x), plain.eval()(x), atol=1e-6)
        assert torch.allclose(net(x), plain.classifier(plain.backbone(x)), atol=1e-6)
    assert meta["method"] == "poi"


def test_poi_compare_pin_logs_pin_accuracies(monkeypatch):
    method = make(compare_pin=True).eval()
    logged = {}
    monkeypatch.setattr(method, "log", lambda name, value, **kw: logged.setdefault(name, value))
    b = batch()
    with torch.no_grad():
        method.validation_step(b, 0)
    assert {"val/acc", "val/acc_p_in", "val/acc_p_avg"} <= logged.keys()


class _ParseOnly(UferCLI):
    def instantiate_classes(self) -> None:  # parse and check against the signatures only
        pass


def _init_args(*configs: Path) -> dict:
    """``model.init_args`` of ``ufer train --config A --config B ...`` as LightningCLI parses it."""
    args = [a for c in configs for a in ("--config", str(c))] + ["--data.manifest", "unused"]
    config = _ParseOnly(FERMethod, FERDataModule, subclass_mode_model=True, run=False,
                        args=args).config
    assert config.model.class_path == "ufer.methods.poi.POI", configs
    return dict(vars(config.model.init_args))


def test_poi_paper_configs_say_reconstructed_parse_and_build():
    base = CONFIGS / "paper" / "poi_rafdb.yaml"
    ablations = sorted((CONFIGS / "paper").glob("poi_*.yaml"))
    assert len(ablations) >= 25
    recipe = yaml.safe_load(base.read_text())
    assert (recipe["trainer"]["max_epochs"], recipe["data"]["batch_size"]) == (60, 256)
    assert recipe["model"]["init_args"]["milestones"] == [20, 40]
    for file in ablations + sorted((CONFIGS / "tuned").glob("poi_*.yaml")):
        assert "reconstructed" in file.read_text().lower(), file.name
        composed = file.parent.name == "paper" and file != base
        init = _init_args(base, file) if composed else _init_args(file)
        if composed:  # the recipe survives, the ablation's switches win
            assert init["lr"] == 0.1 and init["milestones"] == [20, 40], file.name
            for key, value in yaml.safe_load(file.read_text())["model"]["init_args"].items():
                assert init[key] == value, (file.name, key)
        init.update(backbone=TINY_BACKBONE, pretrained_path=None, num_classes=7, num_train=4)
        POI(**init)
    assert POI.paper_config == base.name


def test_poi_confidence_subsets_by_hand():
    uncertainty = torch.tensor([0.9, 0.1, 0.5, 0.3, 0.7, 0.2, 0.8, 0.4, 0.6, 0.0])
    correct = torch.tensor([0, 1, 1, 1, 0, 1, 0, 0, 1, 1], dtype=torch.bool)
    # ranked by uncertainty: 0.0 1, 0.1 1, 0.2 1, 0.3 1, 0.4 0, 0.5 1, 0.6 1, 0.7 0, 0.8 0, 0.9 0
    subsets = confidence_subsets(uncertainty, correct)
    assert subsets["most_confident"] == pytest.approx({"30%": 1.0, "50%": 0.8, "70%": 6 / 7})
    assert subsets["least_confident"] == pytest.approx({"30%": 0.0, "50%": 0.4, "70%": 3 / 7})


def test_poi_evaluate_ranks_by_inference_uncertainty_or_softmax(tiny_manifest):
    dataset = ManifestDataset(read_manifest(tiny_manifest), "test", 32)
    poi = make(num_classes=7, class_names=CLASSES8[:7])
    probs, uncertainty, source = predict_with_uncertainty(poi, dataset, batch_size=64)
    assert source == "poi.inference_uncertainty" and uncertainty.shape == (len(dataset),)
    images = ufer.data.transforms.preprocess(torch.stack([dataset[i]["image"] for i in range(3)]),
                                             *poi.normalization)
    assert torch.allclose(uncertainty[:3], poi.inference_uncertainty(images), atol=1e-5)
    base = ufer.create_method("baseline", backbone=TINY_BACKBONE, num_classes=7, num_train=1)
    probs, uncertainty, source = predict_with_uncertainty(base, dataset, batch_size=64)
    assert source == "softmax maximum"
    assert torch.allclose(uncertainty, 1 - probs.max(1).values)
