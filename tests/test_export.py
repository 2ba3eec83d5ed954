"""``ufer export``: bundles that reproduce the checkpoint, ONNX that matches PyTorch, and
the metadata (preprocessing, alignment, provenance) actually present in both."""
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_BACKBONE, tiny_fit_kwargs

from ufer.cli.main import main
from ufer.engine.train import train_method
from ufer.inference.export import (
    export_bundle,
    export_onnx,
    load_bundle,
    load_network,
    onnx_max_difference,
    read_bundle_meta,
    read_onnx_metadata,
)
from ufer.inference.recognizer import Recognizer
from ufer.methods.base import load_method

SIZE = 32


@pytest.fixture(scope="module")
def checkpoints(tiny_manifest, tmp_path_factory) -> dict[str, Path]:
    """Checkpoints of MTAC (VA and AU heads) and POI (uncertainty) after two steps."""
    out = {}
    for name in ("mtac", "poi"):
        run = tmp_path_factory.mktemp(name)
        train_method(tiny_manifest, name, run, 1, method_kwargs={"backbone": TINY_BACKBONE},
                     data_kwargs={"batch_size": 32, "image_size": SIZE}, test=False,
                     limit_train_batches=2, limit_val_batches=1, **tiny_fit_kwargs())
        out[name] = run / "checkpoints" / "last.ckpt"
    return out


def _faces(n: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, SIZE, SIZE), dtype=torch.uint8,
                         generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", ["mtac", "poi"])
def test_export_bundle_round_trip_is_identical_to_the_checkpoint(name, checkpoints, tmp_path):
    ckpt = checkpoints[name]
    folder = export_bundle(ckpt, tmp_path / "bundle", heads=True)
    from_bundle = Recognizer.from_bundle(folder).classify(_faces())
    from_ckpt = Recognizer.from_checkpoint(ckpt).classify(_faces())
    assert from_bundle.keys() == from_ckpt.keys()
    for key in from_ckpt:
        assert np.array_equal(from_bundle[key], from_ckpt[key]), key
    # ... and both equal what the training code itself computes
    method, _ = load_method(ckpt)
    mean, std = method.normalization
    from ufer.data.transforms import preprocess

    x = preprocess(_faces(), mean, std)
    with torch.no_grad():
        own = {"logits": method.net(x), **method.auxiliary_outputs(x)}
        uncertainty = method.inference_uncertainty(x)
    if uncertainty is not None:
        own["uncertainty"] = uncertainty
    expected = {"mtac": {"logits", "valence_arousal", "au_probs"},
                "poi": {"logits", "uncertainty"}}[name]
    assert set(own) == expected and set(from_bundle) == expected | {"probs"}
    for key, value in own.items():
        np.testing.assert_allclose(from_bundle[key], value.numpy(), atol=1e-6, err_msg=key)


def test_export_bundle_without_heads_keeps_the_class_output(checkpoints, tmp_path):
    ckpt = checkpoints["mtac"]
    plain = export_bundle(ckpt, tmp_path / "plain")
    network, meta = load_network(plain)
    assert network.outputs == ["logits"] and meta["heads"] == {} and meta["au_names"] == []
    with_heads = Recognizer.from_bundle(export_bundle(ckpt, tmp_path / "heads", heads=True))
    assert np.array_equal(Recognizer.from_bundle(plain).classify(_faces())["logits"],
                          with_heads.classify(_faces())["logits"])
    net, _ = load_bundle(plain)  # the class network alone, as before
    x = torch.randn(2, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(net(x), network.net(x))


def test_export_bundle_records_preprocessing_and_provenance(checkpoints, tiny_manifest, tmp_path):
    ckpt = checkpoints["mtac"]
    meta = read_bundle_meta(export_bundle(ckpt, tmp_path / "b", heads=True))
    method, data = load_method(ckpt)
    assert meta["format"] == "ufer-bundle" and meta["architecture"] == "FERNet"
    assert meta["backbone"] == TINY_BACKBONE and meta["method"] == "mtac"
    assert meta["class_names"] == list(method.hparams.class_names)
    assert meta["image_size"] == SIZE
    assert (tuple(meta["mean"]), tuple(meta["std"])) == method.normalization
    assert meta["alignment"]["template"]["name"] == "arcface_112"
    assert len(meta["alignment"]["template"]["points"]) == 5
    assert meta["au_names"][:3] == ["AU01", "AU02", "AU04"]
    assert meta["heads"]["au"]["num_aus"] == len(meta["au_names"])
    provenance = meta["provenance"]
    assert provenance["training_data"]["manifest"] == data["manifest"] == tiny_manifest
    assert provenance["training_data"]["source"] == "synthetic"
    assert provenance["checkpoint_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    head = subprocess.run(["git", "-C", str(Path(__file__).parent), "rev-parse", "HEAD"],
                          capture_output=True, text=True, check=False)
    assert provenance["git_commit"] == (head.stdout.strip() if head.returncode == 0 else None)


def test_export_onnx_matches_pytorch_and_carries_the_metadata(checkpoints, tmp_path):
    import onnx

    ckpt = checkpoints["mtac"]
    path = export_onnx(ckpt, tmp_path / "model.onnx")
    method, _ = load_method(ckpt)
    for batch, seed in ((1, 0), (5, 1)):
        assert onnx_max_difference(path, method.net, SIZE, batch, seed) < 1e-4
    raw = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert {"class_names", "mean", "std", "image_size", "alignment", "provenance"} <= set(raw)
    meta = read_onnx_metadata(path)
    bundle = read_bundle_meta(export_bundle(ckpt, tmp_path / "b"))
    for key in ("class_names", "mean", "std", "image_size", "alignment", "backbone", "method"):
        assert meta[key] == bundle[key], key
    assert meta["outputs"] == ["logits"] and meta["uncertainty"] is None


def test_export_cli_writes_bundle_and_checked_onnx(checkpoints, tmp_path, capsys):
    ckpt = checkpoints["poi"]
    assert main(["export", str(ckpt), "--out", str(tmp_path / "bundle")]) == 0
    assert (tmp_path / "bundle" / "model.safetensors").is_file()
    assert main(["export", str(ckpt), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 0
    out = capsys.readouterr().out
    assert "outputs logits, uncertainty" in out
    diff = float(out.split("max |diff| ")[1].split()[0])
    assert diff < 1e-4
    assert main(["export", str(tmp_path / "missing.ckpt")]) == 1
    assert "checkpoint not found" in capsys.readouterr().err


def test_export_bundle_loads_without_lightning_or_training_code(checkpoints, tmp_path):
    folder = export_bundle(checkpoints["mtac"], tmp_path / "bundle", heads=True)
    faces = _faces(3)
    np.save(tmp_path / "faces.npy", faces.permute(0, 2, 3, 1).numpy())
    script = f"""
import sys
for name in ("lightning", "pytorch_lightning", "torchmetrics", "ufer.methods", "ufer.engine"):
    sys.modules[name] = None  # importing any of them now fails
import numpy as np
from ufer import Recognizer
rec = Recognizer.from_bundle({str(folder)!r})
rows = rec.predict_dicts(np.load({str(tmp_path / "faces.npy")!r}), detect=False)
print([[row[c] for c in rec.class_names] + [row["valence"], row["AU01"]] for row in rows])
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          check=False, env={"HF_HUB_OFFLINE": "1", "PATH": ""})
    assert done.returncode == 0, done.stderr
    got = np.array(json.loads(done.stdout.strip().splitlines()[-1]))
    rec = Recognizer.from_checkpoint(checkpoints["mtac"])
    out = rec.classify(faces)
    expected = np.concatenate([out["probs"], out["valence_arousal"][:, :1],
                               out["au_probs"][:, :1]], axis=1)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_load_network_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"is not a ufer bundle \(no model.json\)"):
        load_network(tmp_path)
    (tmp_path / "model.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"no model.safetensors"):
        load_network(tmp_path)
