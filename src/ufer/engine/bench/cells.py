"""One cell of the grid: train a method on one noisy manifest (or continue it), then score
what it did to the training labels. Also the noisy manifests the cells train on."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ufer.data.manifest import read_manifest
from ufer.data.noise import scaled_transition, write_noisy_manifest
from ufer.data.synthetic import generate
from ufer.engine.bench.config import BenchConfig, cell_dir, method_kwargs, method_of
from ufer.engine.report import label_uncertainty, training_probs
from ufer.engine.train import train_method
from ufer.methods.base import load_method
from ufer.metrics import auroc


def noisy_manifest(clean: Path, data_dir: Path, protocol: str, rate: float, seed: int) -> Path:
    """The manifest of one (rate, seed): cached as ``data_dir/noisy-<protocol>-n<rate>-s<seed>.csv``."""
    tag = protocol if protocol in ("symmetric", "pairwise") else Path(protocol).stem
    path = data_dir / f"noisy-{tag}-n{rate:g}-s{seed}.csv"
    if path.exists():
        return path
    manifest = read_manifest(clean, check_images=False)
    if protocol == "symmetric":
        noise: dict[str, Any] = {"protocol": "symmetric", "exact": True}
    elif protocol == "pairwise":
        noise = {"protocol": "pairwise"}
    else:
        noise = {"protocol": "matrix",
                 "transition": scaled_transition(protocol, manifest.num_classes, rate)}
    write_noisy_manifest(manifest, path, rate=rate, seed=seed, **noise)
    return path


def prepare_clean(cfg: BenchConfig) -> Path:
    """The clean manifest: the user's, or the preset generated once into OUT/data."""
    if cfg.manifest:
        return Path(cfg.manifest)
    data = Path(cfg.out) / "data" / cfg.preset
    path = data / "manifest.csv"
    if not path.exists():
        print(f"generating the {cfg.preset} synthetic data into {data}", flush=True)
        generate(data, preset=cfg.preset, seed=cfg.data_seed)
    return path


def run_cell(cfg: BenchConfig, method: str, rate: float, seed: int, manifest: Path,
             **overrides: Any) -> dict[str, Any]:
    """Train one cell (or continue it), then score its training labels; cached."""
    cell = cell_dir(cfg.out, method, rate, seed)
    done = cell / "results.json"
    if done.exists():
        return json.loads(done.read_text())
    run_dir = cell / "run"
    last = run_dir / "checkpoints" / "last.ckpt"
    resume = last if last.exists() else None
    if resume is None and run_dir.exists():
        shutil.rmtree(run_dir)
    data_kwargs = {"batch_size": cfg.batch_size, "image_size": cfg.image_size}
    result = train_method(manifest, method_of(method), run_dir, cfg.epochs, seed=seed,
                          method_kwargs=method_kwargs(cfg, method), data_kwargs=data_kwargs,
                          resume=resume, **overrides)
    model, _ = load_method(last)
    _, probs = training_probs(model, manifest, cfg.image_size)
    samples = model.samples
    given = samples.original.cpu().numpy()
    uncertainty, source = label_uncertainty(model, probs, given)
    wrong = samples.wrong_given().cpu().numpy() if samples.known_clean else None
    lab = result["labels"]
    noisy_given = lab.get("noisy_given")
    entry = {"method": method, "rate": rate, "seed": seed, "protocol": cfg.protocol,
             "manifest": str(manifest), "run_dir": str(run_dir), "test": result.get("test", {}),
             "labels": lab, "seconds": result["seconds"], "epochs": cfg.epochs,
             "correction_recall": (lab.get("corrected_right", 0.0) / noisy_given
                                   if noisy_given else None),
             "score": source, "auroc": None if wrong is None else auroc(uncertainty, wrong)}
    scores = {"index": np.arange(len(given)).tolist(), "given": given.tolist(),
              "wrong": None if wrong is None else wrong.astype(int).tolist(),
              "score": uncertainty.tolist()}
    (cell / "scores.json").write_text(json.dumps(scores) + "\n")
    done.write_text(json.dumps(entry, indent=2) + "\n")
    return entry
