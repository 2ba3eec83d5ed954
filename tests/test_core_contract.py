"""The method contract, for every registered method (parametrised over the registry)."""
import pytest
import torch
from conftest import TINY_BACKBONE, tiny_fit_kwargs

import ufer
from ufer.engine.train import train_method
from ufer.inference.export import export_bundle, load_bundle
from ufer.methods.base import FERMethod, load_method

METHODS = ufer.list_methods()


def test_public_api():
    assert "baseline" in METHODS
    m = ufer.create_method("baseline", backbone=TINY_BACKBONE, num_classes=7, num_train=5)
    assert isinstance(m, FERMethod)
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        ufer.create_method("nope")


@pytest.mark.parametrize("name", METHODS)
def test_one_epoch_fit_and_inference_contract(name, tiny_noisy_manifest, tmp_path):
    result = train_method(tiny_noisy_manifest, name, tmp_path / name, 1,
                          method_kwargs={"backbone": TINY_BACKBONE},
                          data_kwargs={"batch_size": 32}, **tiny_fit_kwargs())
    assert 0.0 <= result["test"]["acc"] <= 1.0
    assert "acc_clean" in result["test"]  # synthetic data: accuracy against the truth
    method, _ = load_method(tmp_path / name / "checkpoints" / "last.ckpt")
    # the inference network has exactly the baseline's parameters ...
    base = ufer.create_method("baseline", backbone=TINY_BACKBONE, num_classes=7, num_train=1)
    assert {k: v.shape for k, v in method.net.state_dict().items()} == \
        {k: v.shape for k, v in base.net.state_dict().items()}
    # ... and the exported module computes the same output
    net, meta = load_bundle(export_bundle(method, tmp_path / "export"))
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(net(x), method.net.eval()(x), atol=1e-6)
    assert meta["method"] == name and meta["image_size"] is None or meta["image_size"] > 0


def test_checkpoint_of_another_method_is_refused(tiny_manifest, tmp_path):
    train_method(tiny_manifest, "baseline", tmp_path, 1, method_kwargs={"backbone": TINY_BACKBONE},
                 data_kwargs={"batch_size": 64}, test=False, **tiny_fit_kwargs())

    class Other(FERMethod):
        method_name = "other"

    with pytest.raises(ValueError, match="written by method 'baseline', not 'other'"):
        Other.load_from_checkpoint(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)


def test_checkpoint_loads_without_its_pretrained_file(tiny_manifest, tmp_path):
    from safetensors.torch import save_file

    from ufer.models.backbones import build_backbone

    weights = tmp_path / "start.safetensors"
    save_file(build_backbone(TINY_BACKBONE).model.state_dict(), str(weights))
    train_method(tiny_manifest, "baseline", tmp_path / "run", 1, test=False,
                 method_kwargs={"backbone": TINY_BACKBONE, "pretrained_path": str(weights)},
                 data_kwargs={"batch_size": 64}, **tiny_fit_kwargs())
    weights.unlink()  # e.g. the checkpoint was copied to another machine
    method, data = load_method(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert data["batch_size"] == 64 and method.net.classifier.out_features == 7
