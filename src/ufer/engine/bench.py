"""``ufer bench``: methods x noise rates x seeds on one manifest, with known ground truth.

Every cell goes through ``train_method`` with the same data module settings and schedule
(method-specific switches only through ``method_configs``). Noisy manifests are made with
``apply_noise`` seeded by the cell's seed and cached in ``OUT/data``. The bench resumes:
a finished cell has ``OUT/cells/<method>-n<rate>-s<seed>/results.json`` and is skipped;
an unfinished one continues from its ``run/checkpoints/last.ckpt``.

Outputs: ``OUT/results.json`` (every cell and cleanlab reference), ``OUT/results.md``
(accuracy table in the papers' layout, label corrections, detection of wrong labels) and
``OUT/plots/*.png``. On synthetic data "wrong label" means label != clean_label (the
injected flips plus the simulated annotators' own mistakes); on a real manifest
``apply_noise`` sets clean_label to the label before noise, so it means "flipped".
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from ufer._registry import list_methods
from ufer.data import schema
from ufer.data.dataset import ManifestDataset
from ufer.data.manifest import read_manifest, write_manifest
from ufer.data.noise import apply_noise, load_transition, validate_transition
from ufer.data.synthetic import generate
from ufer.engine import report_plots
from ufer.engine.evaluate import predict_probs
from ufer.engine.report import label_quality, training_probs
from ufer.engine.train import set_threads, train_method
from ufer.methods.base import load_method

CLEANLAB_MISSING = "cleanlab is not installed: pip install 'ufer[bench]'"

# Defaults per synthetic preset: epochs, backbone, batch size, and the default grid.
PRESET_DEFAULTS: dict[str, dict[str, Any]] = {
    "tiny": {"epochs": 2, "backbone": "fer_resnet_small", "batch_size": 64,
             "noise": [0.0, 0.3], "seeds": 1},
    "demo": {"epochs": 25, "backbone": "fer_resnet_small", "batch_size": 128,
             "noise": [0.0, 0.3], "seeds": 1},
    "bench-cpu": {"epochs": 70, "backbone": "fer_resnet_small", "batch_size": 128,
                  "noise": [0.0, 0.3], "seeds": 3},
    "bench": {"epochs": 40, "backbone": "resnet18", "batch_size": 64,
              "noise": [0.0, 0.1, 0.2, 0.3], "seeds": 3},
}
# Method arguments that make up the shared schedule: set per method, they break the comparison.
SCHEDULE_KEYS = ("backbone", "pretrained_path", "optimizer", "lr", "weight_decay", "momentum",
                 "scheduler", "warmup", "milestones", "lr_decay")
NO_PRESET = {"epochs": 30, "backbone": "fer_resnet_small", "batch_size": 64,
             "noise": [0.0, 0.1, 0.2, 0.3], "seeds": 3}


@dataclass
class BenchConfig:
    """One benchmark grid.

    Attributes:
        out: output folder (data cache, cells, tables, plots).
        manifest: the clean manifest; None with ``preset`` (generated into OUT/data).
        preset: synthetic preset to generate (``tiny``, ``demo``, ``bench-cpu``, ``bench``).
        methods: registered method names (default: all).
        noise: noise rates of the grid.
        seeds: number of seeds (0 .. seeds-1); each seeds the noise, the data order and init.
        protocol: ``symmetric``, ``pairwise`` or a transition-matrix file (.csv/.npy) whose
            off-diagonal pattern is scaled to each rate.
        epochs, backbone, batch_size, image_size: the schedule shared by every cell.
        method_configs: method name (or ``all``) -> constructor keyword arguments.
        cleanlab: compute the cleanlab reference (out-of-fold baseline, ``folds`` folds).
        data_seed: seed of the generated synthetic data.
        jobs: cells trained at once, each in its own process with cores / jobs threads
            (on a 2-core CPU two 1-thread cells do ~1.2x the work of one 2-thread cell);
            a cell's training output then goes to ``OUT/cells/<cell>/train.log``.
    """

    out: str = "runs/bench"
    manifest: str | None = None
    preset: str | None = None
    methods: list[str] | None = None
    noise: list[float] | None = None
    seeds: int | None = None
    protocol: str = "symmetric"
    epochs: int | None = None
    backbone: str | None = None
    batch_size: int | None = None
    image_size: int | None = None
    method_configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    cleanlab: bool = True
    folds: int = 3
    data_seed: int = 0
    jobs: int = 1

    def resolved(self) -> BenchConfig:
        """A copy with every None filled from the preset's (or the generic) defaults."""
        if self.preset is not None and self.preset not in PRESET_DEFAULTS:
            raise ValueError(f"unknown preset {self.preset!r}; choose from "
                             f"{sorted(PRESET_DEFAULTS)}")
        if (self.manifest is None) == (self.preset is None):
            raise ValueError("give exactly one of --manifest (your data) or --preset "
                             "(generate synthetic data)")
        defaults = PRESET_DEFAULTS[self.preset] if self.preset else NO_PRESET
        values = asdict(self)
        for key, value in defaults.items():
            if values[key] is None:
                values[key] = value
        values["methods"] = list(values["methods"] or list_methods())
        known = list_methods()
        unknown = [m for m in values["methods"] if m not in known]
        if unknown:
            raise ValueError(f"unknown method(s) {unknown}; known: {', '.join(known)}")
        for name in values["method_configs"]:
            if name != "all" and name not in values["methods"]:
                raise ValueError(f"--method-config {name}: not a method of this bench "
                                 f"({', '.join(values['methods'])}, or 'all')")
        values["noise"] = sorted(float(r) for r in values["noise"])
        return BenchConfig(**values)


def load_method_config(path: str | Path) -> dict[str, Any]:
    """Constructor arguments from YAML: a flat mapping, or a ``ufer train`` config whose
    ``model.init_args`` (or ``init_args``) holds them."""
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping of method arguments")
    if "model" in data:
        data = data["model"] or {}
    if "init_args" in data:
        data = data["init_args"] or {}
    return dict(data)


def cell_name(method: str, rate: float, seed: int) -> str:
    return f"{method}-n{rate:g}-s{seed}"


def cell_dir(out: str | Path, method: str, rate: float, seed: int) -> Path:
    """``OUT/cells/<method>-n<rate>-s<seed>``: one cell's run, scores and results.json."""
    return Path(out) / "cells" / cell_name(method, rate, seed)


def reference_dir(out: str | Path, rate: float, seed: int) -> Path:
    """``OUT/cleanlab/n<rate>-s<seed>``: one cleanlab reference's folds and results.json."""
    return Path(out) / "cleanlab" / f"n{rate:g}-s{seed}"


def _finished(folder: Path) -> bool:
    return (folder / "results.json").exists()


# ----------------------------------------------------------------------------- data
def _relocate(paths: Any, root: Path, new_root: Path) -> Any:
    if root.resolve() == new_root.resolve():
        return paths
    return paths.map(lambda p: Path(os.path.relpath(root / p, new_root)).as_posix())


def _transition(protocol_file: str, num_classes: int, rate: float) -> np.ndarray:
    """A transition-matrix file's flip pattern scaled to ``rate``: (1 - r) I + r Q, where Q
    is the file's off-diagonal part with rows renormalised (rows without flips stay I)."""
    t = load_transition(protocol_file, num_classes)
    off = t * (1.0 - np.eye(num_classes))
    sums = off.sum(1, keepdims=True)
    q = np.where(sums > 0, off / np.where(sums > 0, sums, 1.0), np.eye(num_classes))
    scaled = np.where(sums > 0, (1.0 - rate) * np.eye(num_classes) + rate * q,
                      np.eye(num_classes))
    return validate_transition(scaled, num_classes, source=protocol_file)


def noisy_manifest(clean: Path, data_dir: Path, protocol: str, rate: float, seed: int) -> Path:
    """The manifest of one (rate, seed): cached as ``data_dir/noisy-n<rate>-s<seed>.csv``."""
    tag = protocol if protocol in ("symmetric", "pairwise") else Path(protocol).stem
    path = data_dir / f"noisy-{tag}-n{rate:g}-s{seed}.csv"
    if path.exists():
        return path
    manifest = read_manifest(clean, check_images=False)
    if protocol == "symmetric":
        frame, meta = apply_noise(manifest, protocol="symmetric", rate=rate, seed=seed,
                                  exact=True)
    elif protocol == "pairwise":
        frame, meta = apply_noise(manifest, protocol="pairwise", rate=rate, seed=seed)
    else:
        frame, meta = apply_noise(manifest, protocol="matrix", rate=rate, seed=seed,
                                  transition=_transition(protocol, manifest.num_classes, rate))
    frame[schema.PATH] = _relocate(frame[schema.PATH], manifest.root, data_dir)
    tmp = data_dir / f".{path.stem}.tmp.csv"
    write_manifest(frame, {**meta, "noise_source": str(clean)}, tmp)
    schema.sidecar_path(tmp).replace(schema.sidecar_path(path))
    tmp.replace(path)  # the table last: its presence means the pair is complete
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


# ----------------------------------------------------------------------------- cells
def _wrong_labels(method: Any) -> np.ndarray | None:
    clean = method.labels.clean.cpu().numpy()
    if not (clean >= 0).all():
        return None
    return method.labels.original.cpu().numpy() != clean


def _detection(scores: np.ndarray, wrong: np.ndarray | None) -> float | None:
    if wrong is None:
        return None
    value = report_plots.auroc(scores, wrong)
    return None if np.isnan(value) else value


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
    kwargs = {"backbone": cfg.backbone, **cfg.method_configs.get("all", {}),
              **cfg.method_configs.get(method, {})}
    data_kwargs = {"batch_size": cfg.batch_size, "image_size": cfg.image_size}
    result = train_method(manifest, method, run_dir, cfg.epochs, seed=seed,
                          method_kwargs=kwargs, data_kwargs=data_kwargs, resume=resume,
                          **overrides)
    model = load_method(last)
    _, probs = training_probs(model, manifest, cfg.image_size)
    given = model.labels.original.cpu().numpy()
    quality, source = label_quality(model, probs, given)
    wrong = _wrong_labels(model)
    lab = result["labels"]
    noisy_given = lab.get("noisy_given")
    entry = {"method": method, "rate": rate, "seed": seed, "protocol": cfg.protocol,
             "manifest": str(manifest), "run_dir": str(run_dir), "test": result.get("test", {}),
             "labels": lab, "seconds": result["seconds"], "epochs": cfg.epochs,
             "correction_recall": (lab.get("corrected_right", 0.0) / noisy_given
                                   if noisy_given else None),
             "score": f"1 - {source}", "auroc": _detection(1.0 - quality, wrong)}
    scores = {"index": np.arange(len(given)).tolist(), "given": given.tolist(),
              "wrong": None if wrong is None else wrong.astype(int).tolist(),
              "score": (1.0 - quality).tolist()}
    (cell / "scores.json").write_text(json.dumps(scores) + "\n")
    done.write_text(json.dumps(entry, indent=2) + "\n")
    return entry


# ----------------------------------------------------------------------------- cleanlab
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
        model = load_method(run_dir / "checkpoints" / "last.ckpt")
        held = ManifestDataset(read_manifest(fold_manifest), "test", cfg.image_size)
        fold_probs = predict_probs(model.net, held).numpy()
        np.save(cached, fold_probs)
        probs[fold == k] = fold_probs
    return probs


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
                     auroc=_detection(1.0 - quality, wrong))
    (work / "scores.json").write_text(json.dumps(
        {"wrong": None if wrong is None else wrong.astype(int).tolist(),
         "score": (1.0 - quality).tolist(), "flagged": flags.astype(int).tolist()}) + "\n")
    done.write_text(json.dumps(entry, indent=2) + "\n")
    return entry


def cleanlab_available() -> bool:
    return importlib.util.find_spec("cleanlab") is not None


# ----------------------------------------------------------------------------- the grid
def _in_process(fn: Any, args: tuple, log_dir: Path, threads: int,
                overrides: dict[str, Any]) -> str:
    """Run one job in a worker process with ``threads`` torch threads; output to train.log."""
    import torch

    torch.set_num_threads(threads)
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / "train.log", "a") as log, contextlib.redirect_stdout(log), \
            contextlib.redirect_stderr(log):
        fn(*args, **overrides)
    return log_dir.name


def _run_jobs(jobs: list[tuple[Any, tuple, Path]], processes: int,
              overrides: dict[str, Any]) -> None:
    """Run (function, args, folder) jobs: in this process, or ``processes`` at a time."""
    total = len(jobs)
    if processes <= 1:
        for number, (fn, args, folder) in enumerate(jobs, 1):
            print(f"[{number}/{total}] {folder.name}: training", flush=True)
            fn(*args, **overrides)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = set_threads(processes)
    with _sigterm_as_interrupt(), ProcessPoolExecutor(
            processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_in_process, fn, args, folder, threads, overrides)
                   for fn, args, folder in jobs]
        try:
            for number, future in enumerate(as_completed(futures), 1):
                print(f"[{number}/{total}] {future.result()}: finished", flush=True)
        except BaseException:  # Ctrl-C, kill, or a failed cell: stop the other workers too
            for future in futures:
                future.cancel()
            for child in multiprocessing.active_children():
                child.kill()
            raise


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM (``kill PID``) raises KeyboardInterrupt like Ctrl-C does, so
    the bench stops its worker processes instead of leaving them training on their own.
    Only the main thread can set signal handlers; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_bench(cfg: BenchConfig, train: bool = True, **overrides: Any) -> dict[str, Any]:
    """Run (or continue) the grid; write OUT/results.json, results.md and plots.

    ``overrides`` go to the Trainer (``accelerator``, ``progress`` ...), the same for every
    cell. ``train=False`` trains nothing: the tables cover the finished cells and cleanlab
    references only, and ``results["missing"]`` names the others (a look at a grid that is
    still running, or one stopped early).
    """
    cfg = cfg.resolved()
    set_threads()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    clean = prepare_clean(cfg)
    data_dir = out / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    for name, kwargs in cfg.method_configs.items():
        changed = [k for k in SCHEDULE_KEYS if k in kwargs]
        if name != "all" and changed:
            print(f"warning: --method-config {name} sets {', '.join(changed)}: {name} no longer "
                  "shares the schedule of the other methods (use all=YAML for every method)",
                  flush=True)
    use_cleanlab = cfg.cleanlab and cleanlab_available()
    if cfg.cleanlab and not use_cleanlab:
        print(f"skipping the cleanlab reference: {CLEANLAB_MISSING}", flush=True)
    start = time.perf_counter()
    grid = [(m, r, s) for r in cfg.noise for s in range(cfg.seeds) for m in cfg.methods]
    manifests = {(r, s): noisy_manifest(clean, data_dir, cfg.protocol, r, s)
                 for r in cfg.noise for s in range(cfg.seeds)}
    cell_jobs = [(run_cell, (cfg, m, r, s, manifests[r, s]), cell_dir(out, m, r, s))
                 for m, r, s in grid]
    reference_jobs = [(cleanlab_reference, (cfg, r, s, manifests[r, s]), reference_dir(out, r, s))
                      for r in cfg.noise for s in range(cfg.seeds)] if use_cleanlab else []
    todo = [job for job in cell_jobs + reference_jobs if not _finished(job[2])]
    to_train = sum(job[0] is run_cell for job in todo)
    print(f"{len(grid)} cells, {len(grid) - to_train} done, {to_train} to train"
          + (f", {cfg.jobs} at a time" if cfg.jobs > 1 else ""), flush=True)
    if train:
        _run_jobs(todo, cfg.jobs, overrides)
    missing = [folder.relative_to(out).as_posix() for *_, folder in todo if not _finished(folder)]
    if missing:
        print(f"--no-train: tables without {len(missing)} unfinished: {', '.join(missing)}",
              flush=True)
    # every finished job returns its cached results.json
    cells = [fn(*args) for fn, args, folder in cell_jobs if _finished(folder)]
    references = [fn(*args) for fn, args, folder in reference_jobs if _finished(folder)]
    config = {k: v for k, v in asdict(cfg).items()}
    config["manifest"] = str(clean)
    results = {"config": config, "cells": cells, "cleanlab": references,
               "cleanlab_note": None if use_cleanlab else
               ("disabled" if not cfg.cleanlab else CLEANLAB_MISSING),
               "trained_now": to_train if train else 0, "missing": missing,
               "seconds": time.perf_counter() - start}
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    results["plots"] = [str(p) for p in write_plots(results, out / "plots")]
    (out / "results.md").write_text(format_bench(results) + "\n")
    return results


# ----------------------------------------------------------------------------- tables
def _by(cells: list[dict[str, Any]], value: Any) -> dict[str, dict[float, list[float]]]:
    """method -> rate -> values over seeds (None values dropped)."""
    table: dict[str, dict[float, list[float]]] = {}
    for c in cells:
        v = value(c)
        table.setdefault(c["method"], {}).setdefault(c["rate"], [])
        if v is not None:
            table[c["method"]][c["rate"]].append(float(v))
    return table


def _mean_std(values: list[float], scale: float = 100.0, digits: int = 1,
              seeds: int | None = None) -> str:
    """'mean ± std' (sample std) of ``values`` x ``scale``; '-' when empty; with ``seeds``,
    an entry over fewer values than seeds says how many, e.g. '41.2 ± 1.9 (n=2)'."""
    if not values:
        return "-"
    mean = scale * float(np.mean(values))
    text = (f"{mean:.{digits}f}" if len(values) == 1 else
            f"{mean:.{digits}f} ± {scale * float(np.std(values, ddof=1)):.{digits}f}")
    return text + (f" (n={len(values)})" if seeds is not None and len(values) < seeds else "")


def _row(name: str, by_rate: dict[float, list[float]], rates: list[float], **kw: Any) -> str:
    return f"| {name} | " + " | ".join(_mean_std(by_rate.get(r, []), **kw) for r in rates) + " |"


def format_bench(results: dict[str, Any]) -> str:
    """The three Markdown tables of ``results.md``."""
    cfg, cells = results["config"], results["cells"]
    rates = sorted({c["rate"] for c in cells})
    methods = list(dict.fromkeys(c["method"] for c in cells))
    seeds = cfg["seeds"]
    head = "| method | " + " | ".join(f"{100 * r:g} %" for r in rates) + " |"
    rule = "|---|" + "---|" * len(rates)
    lines = [f"# ufer bench: {Path(cfg['manifest']).name}",
             "",
             (f"{len(methods)} methods x {len(rates)} noise rates ({cfg['protocol']}) x "
             f"{seeds} seeds; {cfg['epochs']} epochs, backbone {cfg['backbone']}, batch "
             f"{cfg['batch_size']}, the same data settings and schedule in every cell. "
             f"mean ± std over seeds."),
             "", "## Test accuracy (%), final epoch", "", head, rule]
    if results.get("missing"):
        missing = results["missing"]
        lines[3:3] = ["", (f"**Partial:** {len(missing)} cells or references not finished "
                           f"({', '.join(missing)}); an entry over fewer seeds says n=.")]
    acc = _by(cells, lambda c: c["test"].get("acc"))
    lines += [_row(m, acc[m], rates, seeds=seeds) for m in methods]
    truth = _by(cells, lambda c: c["test"].get("acc_clean"))
    if any(v for m in truth.values() for v in m.values()):
        lines += ["", "Against the true labels of the test split (synthetic truth):", "",
                  head, rule] + [_row(m, truth[m], rates, seeds=seeds) for m in methods]
    lines += ["", "## Label corrections on the training split (synthetic truth)", "",
              ("precision = corrections that give the true label / corrections; recall = "
              "right corrections / wrong given labels; left = wrong labels after training "
              "(given: wrong labels before)."), "",
              ("| method | noise | corrected | precision (%) | recall (%) | wrong given | "
              "wrong left |"), "|---|---|---|---|---|---|---|"]
    for m in methods:
        for r in rates:
            group = [c for c in cells if c["method"] == m and c["rate"] == r]
            lab = [c["labels"] for c in group]
            prec = [x["correction_precision"] for x in lab if x.get("corrected")]
            rec = [c["correction_recall"] for c in group if c.get("correction_recall") is not None]
            lines.append(
                f"| {m} | {100 * r:g} % | {_mean_std([x['corrected'] for x in lab], 1, 0, seeds)} | "
                f"{_mean_std(prec)} | {_mean_std(rec)} | "
                f"{_mean_std([x['noisy_given'] for x in lab if 'noisy_given' in x], 1, 0)} | "
                f"{_mean_std([x['noisy_left'] for x in lab if 'noisy_left' in x], 1, 0)} |")
    lines += ["", "## Spotting wrong training labels: AUROC (%)", "",
              ("Each method's uncertainty score on the training split against the known wrong "
              "labels (SCN/MTAC: 1 - alpha; others: 1 - the final model's probability of the "
              "given label)."), "", head, rule]
    auroc = _by(cells, lambda c: c.get("auroc"))
    for m in methods:
        score = next((c["score"] for c in cells if c["method"] == m), "")
        lines.append(_row(f"{m} ({score})", auroc[m], rates, seeds=seeds))
    refs = results.get("cleanlab") or []
    if refs:
        folds = refs[0]["folds"]
        by_rate = {r: [x for x in refs if x["rate"] == r] for r in rates}
        lines.append(_row(f"cleanlab get_label_quality_scores (OOF baseline, k={folds})",
                          {r: [x["auroc"] for x in v if x.get("auroc") is not None]
                           for r, v in by_rate.items()}, rates, seeds=seeds))
        lines.append("| cleanlab find_label_issues: precision / recall (%) | " + " | ".join(
            f"{_mean_std([x['precision'] for x in by_rate[r] if 'precision' in x], digits=0)} / "
            f"{_mean_std([x['recall'] for x in by_rate[r] if 'recall' in x], digits=0)}"
            for r in rates) + " |")
    else:
        lines += ["", f"cleanlab reference: {results.get('cleanlab_note') or 'not run'}"]
    lines += ["", "Plots: " + ", ".join(Path(p).name for p in results.get("plots", [])),
              f"Cells and per-cell runs: {Path(cfg['out']) / 'cells'}"]
    return "\n".join(lines)


def write_plots(results: dict[str, Any], plots: Path) -> list[Path]:
    """accuracy_vs_noise.png, corrections.png, detection_roc.png."""
    cells = results["cells"]
    written = [report_plots.accuracy_vs_noise(_by(cells, lambda c: c["test"].get("acc")),
                                              plots / "accuracy_vs_noise.png")]
    corrections = {}
    for m, by_rate in _by(cells, lambda c: c["labels"].get("corrected")).items():
        if not any(v for vals in by_rate.values() for v in vals):
            continue
        corrections[m] = {}
        for r in by_rate:
            group = [c for c in cells if c["method"] == m and c["rate"] == r]
            prec = [c["labels"].get("correction_precision", np.nan) for c in group]
            rec = [c.get("correction_recall") or 0.0 for c in group]
            corrections[m][r] = (float(np.nanmean(prec)) if prec else np.nan,
                                 float(np.mean(rec)))
    written.append(report_plots.correction_vs_noise(corrections, plots / "corrections.png"))
    rate = max(c["rate"] for c in cells)
    out = Path(results["config"]["out"])
    curves = {}
    for c in cells:
        if c["rate"] == rate and c["seed"] == 0:
            s = json.loads((cell_dir(out, c["method"], rate, 0) / "scores.json").read_text())
            if s["wrong"] is not None:
                curves[c["method"]] = (np.array(s["score"]), np.array(s["wrong"], bool))
    ref = reference_dir(out, rate, 0) / "scores.json"
    if ref.exists():
        s = json.loads(ref.read_text())
        if s["wrong"] is not None:
            curves["cleanlab (OOF)"] = (np.array(s["score"]), np.array(s["wrong"], bool))
    if curves:
        written.append(report_plots.detection_roc(
            curves, plots / "detection_roc.png",
            title=f"spotting wrong labels, {100 * rate:g} % noise, seed 0"))
    return written
