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
