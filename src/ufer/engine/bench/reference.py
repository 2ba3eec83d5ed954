"""The outside reference of ``ufer bench``: cleanlab on out-of-fold baseline probabilities
(k-fold cross-validation on the training split, the scratch schedule of the grid)."""
from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ufer.data import schema
from ufer.data.dataset import ManifestDataset
from ufer.data.manifest import read_manifest, write_manifest
from ufer.engine.bench.cells import data_sha256
from ufer.engine.bench.config import BenchConfig, reference_dir
from ufer.engine.evaluate import predict_probs
from ufer.engine.train import train_method
from ufer.methods.base import load_method
from ufer.metrics import auroc

CLEANLAB_MISSING = "cleanlab is not installed: pip install 'ufer[bench]'"


def _fold_of(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Stratified fold id per sample: within each class, a seeded shuffle dealt round-robin."""
    rng = np.random.default_rng([seed, 7919])
    fold = np.empty(len(labels), dtype=np.int64)
    offset = 0
    for c in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == c))
        fold[members] = (np.arange(len(members)) + offset) % folds
        offset += len(members)
    return fold


def out_of_fold_probs(cfg: BenchConfig, manifest: Path, seed: int, work: Path,
                      **overrides: Any) -> np.ndarray:
    """(N_train, C) out-of-fold probabilities of the baseline (k-fold on the training split,
    same schedule as the cells). Each fold trains on the other folds and predicts its own."""
    data = read_manifest(manifest, check_images=False)
    frame = data.frame.drop(columns=["row"], errors="ignore")
    train_rows = np.flatnonzero(frame[schema.SPLIT].to_numpy() == "train")
    labels = frame[schema.LABEL].to_numpy()[train_rows]
    fold = _fold_of(labels, cfg.folds, seed)
    probs = np.zeros((len(train_rows), data.num_classes))
    for k in range(cfg.folds):
        part = work / f"fold{k}"
        cached = part / "probs.npy"
        if cached.exists():
            probs[fold == k] = np.load(cached)
            continue
        # the held-out fold becomes this manifest's test split; the real test rows leave
        split = frame[schema.SPLIT].to_numpy().copy()
        split[train_rows[fold == k]] = "test"
        fold_frame = frame.assign(**{schema.SPLIT: split})
        keep = ~((frame[schema.SPLIT] == "test").to_numpy())
        keep[train_rows[fold == k]] = True
        fold_manifest = write_manifest(fold_frame[keep].reset_index(drop=True),
                                       {k2: v for k2, v in data.meta.items() if k2 != "counts"},
                                       manifest.parent / f".{work.name}-fold{k}.csv")
        run_dir = part / "run"
        if run_dir.exists():
            shutil.rmtree(run_dir)
        train_method(fold_manifest, "baseline", run_dir, cfg.epochs, seed=seed,
                     method_kwargs={"backbone": cfg.backbone, **cfg.method_configs.get("all", {})},
                     data_kwargs={"batch_size": cfg.batch_size, "image_size": cfg.image_size},
                     test=False, **overrides)
        model, _ = load_method(run_dir / "checkpoints" / "last.ckpt")
        held = ManifestDataset(read_manifest(fold_manifest), "test", cfg.image_size)
        fold_probs = predict_probs(model.net, held, model.normalization).numpy()
        np.save(cached, fold_probs)
        probs[fold == k] = fold_probs
    return probs


def reference_settings(cfg: BenchConfig, rate: float, seed: int, manifest: Path
                       ) -> dict[str, Any]:
    """What one cleanlab reference depends on (the scratch schedule, folds, data hash)."""
    settings = {"reference": "cleanlab", "backbone": cfg.backbone, "epochs": cfg.epochs,
                "batch_size": cfg.batch_size, "image_size": cfg.image_size, "folds": cfg.folds,
                "all": cfg.method_configs.get("all", {}), "rate": rate, "seed": seed,
                "protocol": cfg.protocol, "data_sha256": data_sha256(manifest)}
    return json.loads(json.dumps(settings, sort_keys=True))


def cleanlab_reference(cfg: BenchConfig, rate: float, seed: int, manifest: Path,
                       **overrides: Any) -> dict[str, Any]:
    """cleanlab's ``find_label_issues`` (precision/recall of its flags) and
    ``get_label_quality_scores`` (AUROC) on out-of-fold baseline probabilities; cached."""
    work = reference_dir(cfg.out, rate, seed)
    done = work / "results.json"
    if done.exists():
        return json.loads(done.read_text())
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    work.mkdir(parents=True, exist_ok=True)
    probs = out_of_fold_probs(cfg, manifest, seed, work, **overrides)
    train = read_manifest(manifest, check_images=False).split("train").frame
    given = train[schema.LABEL].to_numpy()
    wrong = (given != train[schema.CLEAN_LABEL].to_numpy()
             if schema.CLEAN_LABEL in train.columns else None)
    flags = find_label_issues(given, probs, n_jobs=1)
    quality = get_label_quality_scores(given, probs)
    entry: dict[str, Any] = {"rate": rate, "seed": seed, "folds": cfg.folds,
                             "flagged": int(flags.sum()),
                             "oof_accuracy": float((probs.argmax(1) == given).mean())}
    if wrong is not None:
        entry.update(precision=float((flags & wrong).sum() / max(flags.sum(), 1)),
                     recall=float((flags & wrong).sum() / max(wrong.sum(), 1)),
                     auroc=auroc(1.0 - quality, wrong))
    (work / "scores.json").write_text(json.dumps(
        {"wrong": None if wrong is None else wrong.astype(int).tolist(),
         "score": (1.0 - quality).tolist(), "flagged": flags.astype(int).tolist()}) + "\n")
    done.write_text(json.dumps(entry, indent=2) + "\n")
    return entry


def cleanlab_available() -> bool:
    return importlib.util.find_spec("cleanlab") is not None
