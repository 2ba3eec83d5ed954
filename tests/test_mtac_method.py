"""MTAC as a method (and its ULC-AG preset): relabeling, branch switches, configs, resume."""
import inspect
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
import yaml
from conftest import TINY_BACKBONE, tiny_fit_kwargs
from lightning.pytorch.callbacks import ModelCheckpoint

import ufer
from ufer.data.datamodule import FERDataModule
from ufer.engine.lightning_cli import UferCLI
from ufer.engine.train import train_method
from ufer.losses.au import weighted_au_bce
from ufer.methods.base import FERMethod, read_checkpoint
from ufer.methods.mtac import MTAC, load_au_graph
from ufer.models.au_graph import au_cooccurrence_graph, row_normalize
from ufer.models.net import FERNet

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SIZES = {"backbone": TINY_BACKBONE, "num_classes": 3, "num_train": 8}


def make(**kwargs) -> MTAC:
    torch.manual_seed(0)
    m = MTAC(**{**SIZES, "num_aus": 4, "has_va": True, **kwargs})
    m.samples.reset(torch.arange(m.hparams.num_train) % m.hparams.num_classes)
    return m


def batch_of(n: int = 6, num_aus: int = 4, va: bool = True, size: int = 32) -> dict:
    g = torch.Generator().manual_seed(1)
    batch = {"image": torch.randn(n, 3, size, size, generator=g),
             "label": torch.arange(n) % 3, "index": torch.arange(n)}
    if va:
        batch["va"] = torch.rand(n, 2, generator=g) * 2 - 1
        batch["va_mask"] = torch.ones(n, dtype=torch.bool)
    if num_aus:
        batch["au"] = (torch.rand(n, num_aus, generator=g) > 0.5).float()
        batch["au_mask"] = torch.ones(n, num_aus, dtype=torch.bool)
    return batch


def paper_init_args(*files: str) -> dict:
    args: dict = {}
    for name in files:
        args.update(yaml.safe_load((CONFIGS / "paper" / name).read_text())["model"]["init_args"])
    return args


# ----------------------------------------------------------------------------- relabeling
def _relabel_setup(**kwargs):
    """Templates set by hand; frozen (w_min 0, h large) so the update keeps them."""
    m = make(num_classes=3, template_w_min=0.0, **kwargs)
    m.samples.reset(torch.zeros(8, dtype=torch.long))
    m.templates.copy_(torch.tensor([[1.0, 0, 0, 0], [0, 1.0, 0, 0], [0, 0, 1.0, 0]]))
    m.template_initialized.fill_(True)
    m.template_step.fill_(100)  # w_h = exp(-90): the batch centers do not move T
    index = torch.tensor([0, 1, 2, 3, 4])
    alpha = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.1])  # sample 4 alone in the low group
    s = torch.tensor([[1.0, 0, 0, 0], [1.0, 0.1, 0, 0], [0, 1.0, 0, 0],  # sample 2: high, near 1
                      [1.0, 0, 0.2, 0], [0.1, 0, 1.0, 0]])               # sample 4: low, near 2
    batch = {"index": index, "label": torch.zeros(5, dtype=torch.long)}
    return m, batch, {"alpha": alpha, "au_logits": s}


def test_mtac_relabels_low_confidence_sample_to_nearest_template():
    m, batch, out = _relabel_setup(relabel_start=0)
    m.update_state(batch, out)
    assert m.samples.current[:5].tolist() == [0, 0, 0, 0, 2]  # high-confidence sample 2 kept
    assert m.samples.original.tolist() == [0] * 8
    assert m.samples.corrected_epoch[4] == 0 and m.template_step == 101
    assert torch.allclose(m.templates[2], torch.tensor([0.0, 0, 1, 0]), atol=1e-6)
    assert torch.allclose(m.samples.confidence[:5], out["alpha"])
    assert m.samples.confidence[5:].isnan().all()


def test_mtac_relabel_scope_all_moves_high_samples_too():
    m, batch, out = _relabel_setup(relabel_start=0, relabel_scope="all")
    m.update_state(batch, out)
    assert m.samples.current[:5].tolist() == [0, 0, 1, 0, 2]


def test_mtac_no_relabel_before_relabel_start():
    m, batch, out = _relabel_setup(relabel_start=1)  # current_epoch is 0 without a trainer
    m.update_state(batch, out)
    assert torch.equal(m.samples.current, m.samples.original)
    assert m.template_step == 101  # the templates still update


# ----------------------------------------------------------------------------- branches
def test_mtac_branches_switch_off_without_aus_or_va():
    m = make(num_aus=0, has_va=False)
    assert m.au_head is None and m.va_head is None
    assert not any("au_head" in n or "va_head" in n for n, _ in m.named_parameters())
    assert m.gamma_placement == "target" and not m.relabel_active
    batch = batch_of(num_aus=0, va=False)
    losses = m.training_losses(batch, m.forward_train(batch))
    assert losses["au"] == 0 and losses["ccc"] == 0
    assert set(losses) == {"loss", "wce", "ccc", "au", "rr", "lambda1", "lambda2"}


def test_mtac_total_loss_is_eq13_and_groups_have_au_lr():
    m = make(au_lr=0.003, lr=0.02)
    batch = batch_of()
    losses = m.training_losses(batch, m.forward_train(batch))
    assert m.gamma_placement == "va" and losses["au"] > 0 and losses["ccc"] > 0
    expected = (losses["lambda1"] * (losses["wce"] + losses["ccc"])
                + losses["lambda2"] * losses["au"])
    assert torch.allclose(losses["loss"], expected) and losses["rr"] == 0
    au_params = {id(p) for p in m.au_head.parameters()}
    for group in m.param_groups():
        if group["params"]:
            in_au = {id(p) in au_params for p in group["params"]}
            assert len(in_au) == 1 and group["lr"] == (0.003 if in_au.pop() else 0.02)


def test_ulcag_preset_differs_from_mtac_in_its_switches():
    ulcag_args = paper_init_args("ulcag_rafdb.yaml")
    ulcag_args.update(backbone=TINY_BACKBONE, au_start_epoch=0)  # AU branch active at epoch 0
    mtac = make(**{**paper_init_args("mtac_rafdb.yaml"), "backbone": TINY_BACKBONE})
    ulcag = make(**ulcag_args)
    assert mtac.gamma_placement == "va" and ulcag.gamma_placement == "target"
    assert ulcag.va_head is None and mtac.va_head is not None
    batch = batch_of()
    grads = {}
    for name, m in (("mtac", mtac), ("ulcag", ulcag)):
        out = m.forward_train(batch)
        losses = m.training_losses(batch, out)
        if name == "ulcag":  # eq 11: lambda1 / 2 (L_wce + L_rr) + lambda2 L_au, L_rr active
            assert losses["rr"] > 0
            expected = losses["lambda1"] / 2 * (losses["wce"] + losses["rr"]) \
                + losses["lambda2"] * losses["au"]
            assert torch.allclose(losses["loss"], expected)
        else:
            assert losses["rr"] == 0
        m.zero_grad()
        weighted_au_bce(out["au_logits"], batch["au"], batch["au_mask"], out["alpha"]).backward()
        grads[name] = [p.grad for p in m.net.backbone.parameters()]
        assert m.au_head.node_weight.grad.abs().sum() > 0
    assert all(g is None or g.abs().sum() == 0 for g in grads["mtac"])  # MTAC: f detached
    assert any(g is not None and g.abs().sum() > 0 for g in grads["ulcag"])


def test_mtac_inference_is_a_plain_fernet():
    m = make().eval()
    net = FERNet(TINY_BACKBONE, 3).eval()
    net.load_state_dict(m.net.state_dict())
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(m(x), net(x))


# ----------------------------------------------------------------------------- AU graph
def test_mtac_graph_from_training_split_and_from_file(tmp_path):
    au = torch.tensor([[1.0, 1, 0, 0], [1, 0, 1, 0], [0, 1, 1, 1], [1, 1, 1, 0]])
    mask = torch.ones(4, 4, dtype=torch.bool)
    names = ["AU01", "AU02", "AU04", "AU06"]

    class Train:  # the part of ManifestDataset that setup_from_data reads
        au_names = names

        def au_matrix(self):
            return au, mask

        def __len__(self):
            return 4

    dm = SimpleNamespace(train_set=Train())
    m = make()
    m.setup_from_data(dm)
    graph = au_cooccurrence_graph(au, mask)
    assert torch.allclose(m.au_head.adjacency, row_normalize(graph))
    # a graph file with the AUs in another order is reordered to the data's
    perm = [2, 0, 3, 1]
    torch.save({"graph": graph[perm][:, perm], "aus": [names[i] for i in perm]},
               tmp_path / "g.pt")
    assert torch.equal(load_au_graph(tmp_path / "g.pt", names), graph)
    np.save(tmp_path / "g.npy", graph.numpy())
    m = make(au_graph_path=str(tmp_path / "g.npy"))
    m.setup_from_data(dm)
    assert torch.allclose(m.au_head.adjacency, row_normalize(graph))
    # random graphs are seeded and fixed at init
    a, b = make(au_graph="random"), make(au_graph="random", au_graph_seed=1)
    assert torch.equal(a.au_head.adjacency, make(au_graph="random").au_head.adjacency)
    assert not torch.equal(a.au_head.adjacency, b.au_head.adjacency)


# ----------------------------------------------------------------------------- configs
class _ParseOnly(UferCLI):
    def instantiate_classes(self) -> None:  # parse and validate against the signatures only
        pass


def _parse(*configs: Path):
    args = [a for c in configs for a in ("--config", str(c))] + ["--data.manifest", "unused"]
    return _ParseOnly(FERMethod, FERDataModule, subclass_mode_model=True, run=False,
                      args=args).config


def test_mtac_and_ulcag_configs_parse_and_build():
    files = sorted((CONFIGS / "paper").glob("*.yaml")) + sorted((CONFIGS / "tuned").glob("*.yaml"))
    files = [f for f in files if f.name.startswith(("mtac_", "ulcag_"))]
    assert len(files) >= 20
    for file in files:
        base = CONFIGS / "paper" / f"{file.name.split('_')[0]}_rafdb.yaml"
        ablation = "_ablation_" in file.name
        config = _parse(base, file) if ablation else _parse(file)
        init = dict(vars(config.model.init_args))
        assert config.model.class_path == "ufer.methods.mtac.MTAC", file.name
        if ablation:  # the base's values survive, the ablation's switches win
            assert init["optimizer"] == "adam" and init["milestones"] == [10, 20], file.name
            for key, value in yaml.safe_load(file.read_text())["model"]["init_args"].items():
                assert init[key] == value, (file.name, key)
        init.update(backbone=TINY_BACKBONE, num_classes=7, num_train=4, num_aus=17, has_va=True)
        MTAC(**init)


# ----------------------------------------------------------------------------- resume
class _EveryEpoch(ModelCheckpoint):
    @property
    def state_key(self) -> str:
        return "every-epoch"


def _fit(manifest, run_dir, resume=None):
    return train_method(manifest, "mtac", run_dir, 3, seed=1, resume=resume, test=False,
                        method_kwargs={"backbone": TINY_BACKBONE, "relabel_start": 0,
                                       "relabel_scope": "all"},
                        data_kwargs={"batch_size": 64},
                        **tiny_fit_kwargs(extra_callbacks=[_EveryEpoch(
                            dirpath=run_dir / "epochs", filename="{epoch}", save_top_k=-1)]))


def test_mtac_resume_with_relabeling_is_exact(tiny_noisy_manifest, tmp_path):
    full = _fit(tiny_noisy_manifest, tmp_path / "full")
    _fit(tiny_noisy_manifest, tmp_path / "resumed", tmp_path / "full" / "epochs" / "epoch=0.ckpt")
    a = read_checkpoint(tmp_path / "full" / "checkpoints" / "last.ckpt")["state_dict"]
    b = read_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.ckpt")["state_dict"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, equal_nan=True, msg=key)
    assert full["labels"]["corrected"] > 0 and int(a["template_step"]) > 0
    assert (a["samples.confidence"] >= 0).all()
    metrics = (tmp_path / "full" / "metrics.csv").read_text().splitlines()[0].split(",")
    for key in ("labels/corrected_this_epoch", "uncertainty/auroc_wrong",
                "uncertainty/mean_wrong", "train/au", "train/ccc", "train/lambda2"):
        assert key in metrics, key
    flow = json.loads((tmp_path / "full" / "label_flow.json").read_text())
    assert flow["epoch"] == 2 and sum(map(sum, flow["flow"])) == full["labels"]["corrected"]


def test_ulcag_preset_defaults_match_the_paper_config_ulcag():
    """`ulcag` is MTAC with ULC-AG's switches; they must agree with configs/paper/ulcag_rafdb.yaml."""
    from ufer.methods.mtac import ULCAG

    config = yaml.safe_load((Path(__file__).parent.parent / "configs/paper/ulcag_rafdb.yaml")
                            .read_text())["model"]["init_args"]
    mtac = inspect.signature(MTAC.__init__).parameters
    for name, param in inspect.signature(ULCAG.__init__).parameters.items():
        if name in ("self", "kwargs"):
            continue
        assert config[name] == param.default, name
        assert mtac[name].default != param.default, name  # a preset only lists what differs
    method = ufer.create_method("ulcag", backbone=TINY_BACKBONE, num_classes=7, num_train=4,
                                num_aus=3)
    assert isinstance(method, MTAC) and method.method_name == "ulcag"


def test_mtac_auxiliary_outputs_va_and_au_without_touching_the_class_output():
    m = MTAC(backbone=TINY_BACKBONE, num_classes=7, num_train=4, num_aus=5, has_va=True).eval()
    x = torch.randn(3, 3, 32, 32)
    logits = m(x)
    aux = m.auxiliary_outputs(x)
    assert aux["valence_arousal"].shape == (3, 2) and aux["valence_arousal"].abs().max() <= 1
    assert aux["au_probs"].shape == (3, 5) and 0 <= aux["au_probs"].min()
    assert torch.equal(m(x), logits)
    assert MTAC(backbone=TINY_BACKBONE, num_classes=7, num_train=4).auxiliary_outputs(x) == {}
