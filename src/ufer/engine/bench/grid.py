"""``run_bench``: the grid of methods x noise rates x seeds, resumable, with its tables and plots.

Every cell goes through ``train_method`` with the same data module settings and schedule
(method-specific switches only through ``method_configs``). Noisy manifests are made with
``write_noisy_manifest`` seeded by the cell's seed and cached in ``OUT/data``. The bench
resumes: a finished cell has ``OUT/cells/<method>-n<rate>-s<seed>/results.json`` and is
skipped; an unfinished one continues from its ``run/checkpoints/last.ckpt``.

Outputs: ``OUT/results.json`` (every cell and cleanlab reference), ``OUT/results.md``
(accuracy table in the papers' layout, label corrections, detection of wrong labels) and
``OUT/plots/*.png``. On synthetic data "wrong label" means label != clean_label (the
injected flips plus the simulated annotators' own mistakes); on a real manifest
``apply_noise`` sets clean_label to the label before noise, so it means "flipped".
"""
from __future__ import annotations

import json
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from ufer._registry import method_class
from ufer.data.datamodule import FERDataModule
from ufer.data.manifest import read_manifest
from ufer.engine.bench.cells import (
    cell_settings,
    check_settings,
    noisy_manifest,
    prepare_clean,
    run_cell,
)
from ufer.engine.bench.config import (
    SCHEDULE_KEYS,
    BenchConfig,
    cell_dir,
    method_of,
    reference_dir,
)
from ufer.engine.bench.plots import write_plots
from ufer.engine.bench.recipes import grid_rows
from ufer.engine.bench.reference import (
    CLEANLAB_MISSING,
    cleanlab_available,
    cleanlab_reference,
    reference_settings,
)
from ufer.engine.bench.tables import format_bench
from ufer.engine.jobs import run_jobs
from ufer.engine.pretrain import pretrain
from ufer.engine.train import set_threads


def _finished(folder: Path) -> bool:
    return (folder / "results.json").exists()


def runnable_methods(cfg: BenchConfig, manifest: Path) -> BenchConfig:
    """``cfg`` without the methods that cannot train on ``manifest`` (``data_problem``), each
    skipped with one line saying why, before any cell trains."""
    sizes = FERDataModule(str(manifest)).method_sizes()
    keep = []
    for name in cfg.methods:
        problem = method_class(method_of(name)).data_problem(sizes)
        if problem:
            print(f"skipping {name}: {problem}", flush=True)
        else:
            keep.append(name)
    if not keep:
        raise ValueError(f"no method of {cfg.methods} can train on {manifest}")
    return replace(cfg, methods=keep)


def pretrained_start(cfg: BenchConfig, clean: Path) -> str | None:
    """The paper regime's backbone weights: ``--pretrained``, or ``ufer pretrain`` run once
    for the grid's backbone at the data's image size, cached in OUT/data; None in scratch."""
    if cfg.regime != "paper":
        return None
    if cfg.pretrained:
        if not Path(cfg.pretrained).is_file():
            raise FileNotFoundError(f"--pretrained {cfg.pretrained}: file not found")
        return cfg.pretrained
    size = cfg.image_size or read_manifest(clean, check_images=False).meta.get("image_size")
    if not size:
        raise ValueError("the paper regime pretrains at the data's image size: pass "
                         "--image-size (or --pretrained PATH)")
    folder = Path(cfg.out) / "data" / f"pretrain-{cfg.backbone}-{size}px"
    print(f"paper regime: pretrained start {folder} (ufer pretrain, cached)", flush=True)
    provenance = pretrain(folder, backbone=cfg.backbone, image_size=int(size), seed=cfg.data_seed)
    return str(folder / provenance["weights"])


def run_bench(cfg: BenchConfig, train: bool = True, **overrides: Any) -> dict[str, Any]:
    """Run (or continue) the grid; write OUT/results.json, results.md and plots.

    ``overrides`` go to the Trainer (``accelerator``, ``progress`` ...), the same for every
    cell. ``train=False`` trains nothing: the tables cover the finished cells and cleanlab
    references only, and ``results["missing"]`` names the others (a look at a grid that is
    still running, or one stopped early). Every cell's settings are checked against what it
    recorded before anything trains (``cells.check_settings``).
    """
    cfg = cfg.resolved()
    set_threads()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    clean = prepare_clean(cfg)
    cfg = runnable_methods(cfg, clean)
    data_dir = out / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    if cfg.regime == "scratch":
        for name, kwargs in cfg.method_configs.items():
            changed = [k for k in SCHEDULE_KEYS if k in kwargs]
            if name != "all" and changed:
                print(f"warning: --method-config {name} sets {', '.join(changed)}: {name} no "
                      "longer shares the schedule of the other methods (use all=YAML for every "
                      "method)", flush=True)
    use_cleanlab = cfg.cleanlab and cleanlab_available()
    if cfg.cleanlab and not use_cleanlab:
        print(f"skipping the cleanlab reference: {CLEANLAB_MISSING}", flush=True)
    start = time.perf_counter()
    rows = grid_rows(cfg, pretrained_start(cfg, clean))
    manifests = {(r, s): noisy_manifest(clean, data_dir, cfg.protocol, r, s)
                 for r in cfg.noise for s in cfg.seed_list}
    cell_jobs = []
    for rate in cfg.noise:
        for seed in cfg.seed_list:
            for row in rows:
                folder = cell_dir(out, row.label, rate, seed, row.regime)
                settings = cell_settings(cfg, row, rate, seed, manifests[rate, seed])
                if check_settings(folder, settings, cfg.reuse_unverified,
                                  record=train) == "unverified":
                    print(f"{folder.name}: unverified (no recorded settings), reused as asked",
                          flush=True)
                cell_jobs.append((run_cell, (cfg, row, rate, seed, manifests[rate, seed]),
                                  folder))
    reference_jobs = [(cleanlab_reference, (cfg, r, s, manifests[r, s]), reference_dir(out, r, s))
                      for r in cfg.noise for s in cfg.seed_list] if use_cleanlab else []
    for fn, args, folder in reference_jobs:
        check_settings(folder, reference_settings(*args), cfg.reuse_unverified, record=train)
    todo = [job for job in cell_jobs + reference_jobs if not _finished(job[2])]
    to_train = sum(job[0] is run_cell for job in todo)
    print(f"{len(cell_jobs)} cells ({cfg.regime} regime), {len(cell_jobs) - to_train} done, "
          f"{to_train} to train" + (f", {cfg.jobs} at a time" if cfg.jobs > 1 else ""),
          flush=True)
    if train:
        run_jobs(todo, cfg.jobs, overrides)
    missing = [folder.relative_to(out).as_posix() for *_, folder in todo if not _finished(folder)]
    if missing:
        print(f"--no-train: tables without {len(missing)} unfinished: {', '.join(missing)}",
              flush=True)
    # every finished job returns its cached results.json
    cells = [fn(*args) for fn, args, folder in cell_jobs if _finished(folder)]
    references = [fn(*args) for fn, args, folder in reference_jobs if _finished(folder)]
    config = asdict(cfg)
    config["manifest"] = str(clean)
    results = {"config": config, "rows": [{"label": r.label, "regime": r.regime,
                                           "recipe": r.recipe.describe(),
                                           "recipe_source": r.recipe.source} for r in rows],
               "cells": cells, "cleanlab": references,
               "cleanlab_note": None if use_cleanlab else
               ("disabled" if not cfg.cleanlab else CLEANLAB_MISSING),
               "trained_now": to_train if train else 0, "missing": missing,
               "seconds": time.perf_counter() - start}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    results["plots"] = [str(p) for p in write_plots(results, out / "plots")]
    (out / "results.md").write_text(format_bench(results) + "\n")
    return results
