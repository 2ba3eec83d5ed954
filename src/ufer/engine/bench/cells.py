"""One cell of the grid: train a row on one noisy manifest (or continue it), then score what it
did to the training labels. Also the noisy manifests the cells train on, and the record of
what each cell was trained with, so a changed grid never reuses a stale cell."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ufer.data.dataset import ManifestDataset
from ufer.data.manifest import read_manifest
from ufer.data.noise import scaled_transition, write_noisy_manifest
from ufer.data.schema import sidecar_path
from ufer.data.synthetic import generate
from ufer.engine.bench.config import BenchConfig, cell_dir
from ufer.engine.bench.recipes import Row
from ufer.engine.evaluate import predict_probs, summarize
from ufer.engine.report import label_uncertainty, training_probs
from ufer.engine.train import train_method
from ufer.hashing import file_sha256
from ufer.methods.base import load_method, read_checkpoint
from ufer.metrics import auroc

SETTINGS = "settings.json"


class StaleCellError(ValueError):
    """A cell folder holds a run of other settings than the grid asks for."""


def data_sha256(manifest: Path) -> str:
    """sha256 of a manifest's table and sidecar (what a cell's labels and paths come from)."""
    return file_sha256(manifest)[:32] + file_sha256(sidecar_path(manifest))[:32]


def noisy_manifest(clean: Path, data_dir: Path, protocol: str, rate: float, seed: int) -> Path:
    """The manifest of one (rate, seed), cached as
    ``data_dir/noisy-<protocol>-n<rate>-s<seed>-<clean manifest hash>.csv``: another clean
    manifest (or another version of it) never reuses these labels."""
    tag = protocol if protocol in ("symmetric", "pairwise") else Path(protocol).stem
    path = data_dir / f"noisy-{tag}-n{rate:g}-s{seed}-{data_sha256(clean)[:10]}.csv"
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


def cell_settings(cfg: BenchConfig, row: Row, rate: float, seed: int, manifest: Path
                  ) -> dict[str, Any]:
    """Everything one cell's result depends on (not grid-level settings such as the number of
    seeds or jobs, so a grid can grow): the row's method, arguments and recipe, the data's
    hash, and the pretrained weights' hash; JSON-normalised."""
    kwargs = dict(row.kwargs)
    pretrained = kwargs.pop("pretrained_path", None)
    settings = {"regime": row.regime, "row": row.label, "method": row.method,
                "method_kwargs": kwargs, "batch_size": row.recipe.batch_size,
                "epochs": row.recipe.epochs, "image_size": cfg.image_size, "rate": rate,
                "seed": seed, "protocol": cfg.protocol, "data_sha256": data_sha256(manifest),
                "pretrained_sha256": None if pretrained is None else file_sha256(pretrained)}
    return json.loads(json.dumps(settings, sort_keys=True))


def check_settings(folder: Path, settings: dict[str, Any], reuse_unverified: bool,
                   record: bool = True) -> str:
    """Check ``settings`` against the ones a cell folder recorded, or (``record``) record them
    in a new folder.

    Returns ``"new"``, ``"same"`` or ``"unverified"`` (a cell from before settings were
    recorded, reused because the user said so).

    Raises:
        StaleCellError: the folder was trained with other settings (naming each one), or it
            is unverified and ``reuse_unverified`` is off.
    """
    path = folder / SETTINGS
    if path.is_file():
        recorded = json.loads(path.read_text())
        differ = [k for k in sorted(set(recorded) | set(settings))
                  if recorded.get(k) != settings.get(k)]
        if differ:
            said = "; ".join(f"{k}: recorded {recorded.get(k)!r}, now {settings.get(k)!r}"
                             for k in differ)
            raise StaleCellError(f"{folder} was trained with other settings ({said}); use "
                                 "another --out, or delete that folder to retrain it")
        return "same"
    if folder.exists() and any(folder.iterdir()):
        if not reuse_unverified:
            raise StaleCellError(f"{folder} holds a run that did not record its settings (an "
                                 "older ufer): it cannot be checked against this grid. Delete "
                                 "it to retrain, or pass --reuse-unverified to use it as it is")
        return "unverified"
    if record:
        folder.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
    return "new"


def run_cell(cfg: BenchConfig, row: Row, rate: float, seed: int, manifest: Path,
             **overrides: Any) -> dict[str, Any]:
    """Train one cell (or continue it), then score its training labels; cached."""
    cell = cell_dir(cfg.out, row.label, rate, seed, row.regime)
    done = cell / "results.json"
    if done.exists():
        entry = json.loads(done.read_text())
        if "best_val" not in entry:  # a cell from before this entry existed: evaluate only
            entry["best_val"] = best_val_test(cell / "run", manifest, cfg.image_size)
            done.write_text(json.dumps(entry, indent=2) + "\n")
        return entry
    run_dir = cell / "run"
    last = run_dir / "checkpoints" / "last.ckpt"
    resume = last if last.exists() else None
    if resume is None and run_dir.exists():
        shutil.rmtree(run_dir)
    data_kwargs = {"batch_size": row.recipe.batch_size, "image_size": cfg.image_size}
    result = train_method(manifest, row.method, run_dir, row.recipe.epochs, seed=seed,
                          method_kwargs=row.kwargs, data_kwargs=data_kwargs, resume=resume,
                          **overrides)
    model, _ = load_method(last)
    _, probs = training_probs(model, manifest, cfg.image_size)
    samples = model.samples
    given = samples.original.cpu().numpy()
    uncertainty, source = label_uncertainty(model, probs, given)
    wrong = samples.wrong_given().cpu().numpy() if samples.known_clean else None
    lab = result["labels"]
    noisy_given = lab.get("noisy_given")
    entry = {"method": row.label, "regime": row.regime, "recipe": row.recipe.describe(),
             "recipe_source": row.recipe.source, "rate": rate, "seed": seed,
             "protocol": cfg.protocol, "manifest": str(manifest), "run_dir": str(run_dir),
             "test": result.get("test", {}), "labels": lab, "seconds": result["seconds"],
             "epochs": row.recipe.epochs,
             "correction_recall": (lab.get("corrected_right", 0.0) / noisy_given
                                   if noisy_given else None),
             "score": source, "auroc": None if wrong is None else auroc(uncertainty, wrong),
             "best_val": best_val_test(run_dir, manifest, cfg.image_size)}
    scores = {"index": np.arange(len(given)).tolist(), "given": given.tolist(),
              "wrong": None if wrong is None else wrong.astype(int).tolist(),
              "score": uncertainty.tolist()}
    (cell / "scores.json").write_text(json.dumps(scores) + "\n")
    done.write_text(json.dumps(entry, indent=2) + "\n")
    return entry


def best_val_test(run_dir: Path, manifest: Path, image_size: int | None) -> dict[str, Any] | None:
    """The run's ``checkpoints/best.ckpt`` on the test split: the weights of the epoch with the
    best validation accuracy (the Trainer keeps them; the test split plays no part in the
    choice). Beside the final epoch's test accuracy, this shows what early stopping on the
    validation split would give: on the synthetic presets that split is clean (noise is
    injected into ``train`` only), which real noisy data rarely offers.

    Returns:
        ``{"epoch": 1-based epoch of those weights, "acc", "mean_acc" (mean class accuracy),
        "acc_clean" (None without clean labels), "labels": that epoch's label counts
        (``SampleState.summary``)}``; None when the run has no best checkpoint or the
        manifest no test rows.
    """
    path = run_dir / "checkpoints" / "best.ckpt"
    data = read_manifest(manifest, check_images=False)
    if not path.exists() or not (data.frame["split"] == "test").any():
        return None
    model, _ = load_method(path)
    dataset = ManifestDataset(data, "test", image_size)
    probs = predict_probs(model.net, dataset, model.normalization)
    test = summarize(probs, dataset.labels, list(data.classes), dataset.clean_labels)
    return {"epoch": int(read_checkpoint(path)["epoch"]) + 1, "acc": test["accuracy"],
            "mean_acc": test["mean_class_accuracy"], "acc_clean": test.get("accuracy_clean"),
            "labels": model.samples.summary()}
