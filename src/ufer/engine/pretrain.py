"""``ufer pretrain``: a face-recognition-pretrained backbone without MS-Celeb-1M.

The papers fine-tune a ResNet pretrained on MS-Celeb-1M identity classification. Here the
stand-in is synthetic: persons that never appear in an expression dataset
(``data.synthetic.generate_identities``), every expression and nuisance varied, and a
backbone trained to tell the PERSONS apart (the expression labels are never seen). The
result is ``OUT/backbone.safetensors`` (timm names, what ``pretrained_path`` loads) and
``OUT/provenance.json``. Interrupted, the same command continues from
``OUT/run/checkpoints/last.ckpt``.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from ufer.data.dataset import ManifestDataset
from ufer.data.manifest import read_manifest
from ufer.data.synthetic import generate_identities
from ufer.engine.evaluate import predict_probs
from ufer.engine.train import train_method
from ufer.hashing import file_sha256
from ufer.methods.base import load_method

WEIGHTS = "backbone.safetensors"
PROVENANCE = "provenance.json"


def pretrain(out: str | Path, backbone: str = "fer_resnet_small", identities: int = 400,
             per_identity: int = 30, held_out: int = 5, epochs: int = 30, image_size: int = 48,
             batch_size: int = 128, lr: float = 0.05, seed: int = 0, workers: int = 1,
             **overrides: Any) -> dict[str, Any]:
    """Generate the identity data once, train ``backbone`` on identity classification (SGD +
    OneCycle, the bench's scratch schedule), write the weights and their provenance.

    Returns:
        The provenance dict (also ``OUT/provenance.json``): generator seed, identities,
        images, epochs, identity accuracy on the held-out images of the same persons,
        seconds, the weights file and its sha256. Cached: a finished ``OUT`` is returned as is.
    """
    out = Path(out)
    if (out / PROVENANCE).is_file():
        return json.loads((out / PROVENANCE).read_text())
    start = time.perf_counter()
    manifest = out / "data" / "manifest.csv"
    if not manifest.is_file():
        print(f"generating {identities} synthetic persons x {per_identity + held_out} images "
              f"into {manifest.parent}", flush=True)
        generate_identities(manifest.parent, identities, per_identity, held_out, seed,
                            image_size, workers)
    run_dir = out / "run"
    last = run_dir / "checkpoints" / "last.ckpt"
    train_method(manifest, "baseline", run_dir, epochs, seed=seed,
                 method_kwargs={"backbone": backbone, "lr": lr},
                 data_kwargs={"batch_size": batch_size, "image_size": image_size,
                              "val_split": "val", "test_split": "val"},
                 resume=last if last.is_file() else None, test=False, **overrides)
    method, _ = load_method(last)
    held = ManifestDataset(read_manifest(manifest), "val", image_size)
    probs = predict_probs(method.net, held, method.normalization)
    accuracy = float((probs.argmax(1) == held.labels).float().mean())
    weights = out / WEIGHTS
    state = {k: v.contiguous() for k, v in method.net.backbone.model.state_dict().items()}
    save_file(state, str(weights), metadata={"ufer": "synthetic identity pretraining"})
    provenance = {
        "backbone": backbone, "image_size": image_size, "generator_seed": seed,
        "identities": identities, "train_images": identities * per_identity,
        "held_out_images": identities * held_out, "epochs": epochs, "batch_size": batch_size,
        "lr": lr, "schedule": "SGD + OneCycle", "identity_accuracy_held_out": accuracy,
        "seconds": time.perf_counter() - start, "weights": WEIGHTS,
        "sha256": file_sha256(weights),
        "note": "identity classification of synthetic persons disjoint from every expression "
                "dataset; expression labels never seen. A stand-in for MS-Celeb-1M pretraining."}
    (out / PROVENANCE).write_text(json.dumps(provenance, indent=2) + "\n")
    return provenance
