"""``ufer demo`` (what ``make demo`` runs): the main job end to end on synthetic data, in the
regime where the methods work.

1. A small face-recognition start: ``ufer pretrain`` at demo size (synthetic persons that
   never appear in the expression data), made once and cached (``runs/cache`` by default;
   the first demo's time includes it).
2. The ``demo`` preset (3000 training faces, 48 px) and its labels with 30 % symmetric noise
   (exactly 900 flips).
3. Rows: the baseline on clean and on noisy labels, and MTAC with our tuned switches on the
   noisy ones; ``all_methods`` adds every registered method with its paper switches.
   Every row fine-tunes the cached start with one demo recipe: Adam 0.001 (SCN's paper
   rate), lr x0.1 after epochs 10 and 15, batch 128, 20 epochs. Not a paper's recipe: 3000
   faces give MTAC's batch of 512 only 5 steps per epoch, and from this small start MTAC's
   Adam 0.01 drives its confidence to 0 and the target branch never learns (measured: 13.8 %
   test accuracy after 24 epochs, baseline 54.0 %). The per-paper recipes are
   ``ufer bench --regime paper`` (docs/benchmarks.md).
4. One table: row, switches, training labels, test accuracy, wrong labels given -> left,
   corrections and their precision, seconds.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ufer._registry import list_methods, method_class
from ufer.data.manifest import read_manifest
from ufer.data.noise import write_noisy_manifest
from ufer.data.synthetic import generate
from ufer.engine.bench.config import load_method_config, method_of
from ufer.engine.bench.recipes import CONFIG_DIR, Recipe, paper_recipe, recipe_items
from ufer.engine.pretrain import WEIGHTS, pretrain
from ufer.engine.train import RUN_LOG, check_max_epochs, holds_run, set_threads, train_method

BACKBONE = "fer_resnet_small"
BATCH_SIZE = 128
# The demo's recipe (ours; see the module docstring for why not MTAC's Adam 0.01).
RECIPE = {"optimizer": "adam", "lr": 0.001, "scheduler": "multistep", "milestones": [10, 15],
          "lr_decay": 0.1}
# Our tuned variants the demo knows (row label -> config of switches, ours not the papers').
TUNED = {"mtac@tuned": CONFIG_DIR.parent / "tuned" / "mtac_paper_regime.yaml"}
DEFAULT_ROWS = ["mtac@tuned"]
# The demo's pretrained start: 150 persons x 12 images, 10 epochs (~1 minute here).
PRETRAIN = {"identities": 150, "per_identity": 12, "held_out": 3, "epochs": 10}


@dataclass(frozen=True)
class DemoRow:
    """One trained model: ``label`` (``baseline``, ``scn``, ``mtac@tuned``), its run folder,
    the labels it trains on (``clean`` or ``noisy``), its switches and where they come from."""

    label: str
    run_dir: Path
    labels: str
    switches_from: str
    switches: dict[str, Any] = field(hash=False)


def demo_switches(label: str) -> tuple[str, dict[str, Any]]:
    """(where they come from, the switches) of row ``label``: the method's paper config,
    with a tuned variant's own switches on top."""
    method = method_of(label)
    if method == "baseline":
        return "-", {}
    _, switches = paper_recipe(method)
    if label == method:
        return "paper", switches
    if label not in TUNED:
        raise ValueError(f"unknown demo row {label!r}: a method ({', '.join(list_methods())}) "
                         f"or one of {', '.join(TUNED)}")
    tuned = {k: v for k, v in load_method_config(TUNED[label]).items() if k not in RECIPE}
    return f"tuned ({TUNED[label].relative_to(CONFIG_DIR.parent.parent)})", {**switches, **tuned}


def demo_rows(out: Path, epochs: int, rate: float, methods: list[str] | None,
              all_methods: bool) -> list[DemoRow]:
    """The rows of a demo, after checking the arguments and that no run folder holds a run
    already (nothing is generated or trained before every check passed)."""
    check_max_epochs(epochs)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"--rate must lie in [0, 1], got {rate}")
    if all_methods:
        labels = [m for m in list_methods() if m != "baseline"] + DEFAULT_ROWS
    else:
        labels = list(methods) if methods is not None else DEFAULT_ROWS
    for label in labels:
        method_class(method_of(label))  # an unknown name raises, listing the known methods
    rows = [DemoRow("baseline", out / "baseline-clean", "clean", "-", {})]
    for label in ["baseline"] + [m for m in labels if m != "baseline"]:
        origin, switches = demo_switches(label)
        rows.append(DemoRow(label, out / f"{label.replace('@', '-')}-noisy", "noisy", origin,
                            switches))
    taken = [str(row.run_dir) for row in rows if holds_run(row.run_dir)]
    if taken:
        what = "holds a run" if len(taken) == 1 else "hold runs"
        raise FileExistsError(f"{', '.join(taken)} {what} of an earlier demo: pass another "
                              f"--out, or delete {out} (make clean-runs) to run it again")
    return rows


def prepare_demo_data(out: Path, seed: int, rate: float) -> tuple[Path, Path]:
    """(clean manifest, noisy manifest) under ``out``; generated once and then reused."""
    clean = out / "manifest.csv"
    if not clean.exists():
        generate(out, preset="demo", seed=seed)
    noisy = out / f"manifest_sym{round(100 * rate)}.csv"
    if not noisy.exists():
        write_noisy_manifest(read_manifest(clean), noisy, protocol="symmetric", rate=rate,
                             seed=seed, exact=True, overwrite=True)
    return clean, noisy


def pretrained_start(cache: Path, seed: int) -> Path:
    """The demo's pretrained backbone weights, made once into ``cache`` and then reused."""
    result = pretrain(cache, BACKBONE, seed=seed, **PRETRAIN)
    print(f"pretrained start: {cache / WEIGHTS} (identity accuracy on held-out images "
          f"{100 * result['identity_accuracy_held_out']:.1f}%, {result['identities']} persons)",
          flush=True)
    return cache / WEIGHTS


def run_demo(out: str | Path = "runs/demo", epochs: int = 20, rate: float = 0.3,
             seed: int = 0, methods: list[str] | None = None, all_methods: bool = False,
             cache: str | Path = "runs/cache/demo-pretrain",
             pretrained: str | Path | None = None) -> list[dict[str, Any]]:
    """Run the demo; returns one result dict per trained model.

    ``methods`` replaces the default rows beside the two baselines (``mtac@tuned``);
    ``all_methods`` runs every registered method with its paper switches and ``mtac@tuned``;
    ``pretrained`` uses those backbone weights instead of the cached demo start. Each run
    writes its detail to ``<run>/train.log``; the console gets one line per epoch.
    """
    out = Path(out)
    rows = demo_rows(out, epochs, rate, methods, all_methods)
    set_threads()
    start = time.perf_counter()
    weights = Path(pretrained) if pretrained else pretrained_start(Path(cache), seed)
    clean, noisy = prepare_demo_data(out / "data", seed, rate)
    recipe = Recipe("demo", recipe_items(RECIPE), BATCH_SIZE, epochs)
    print(f"data: {clean} and {noisy} ({time.perf_counter() - start:.0f}s so far)\n"
          f"every row: {BACKBONE} from {weights}, {recipe.describe()}", flush=True)
    results = []
    for row in rows:
        print(f"training {row.label} on {row.labels} labels -> {row.run_dir} "
              f"(log: {row.run_dir}/{RUN_LOG})", flush=True)
        kwargs = {**row.switches, **RECIPE, "backbone": BACKBONE, "pretrained_path": str(weights)}
        result = train_method(clean if row.labels == "clean" else noisy, method_of(row.label),
                              row.run_dir, epochs, seed=seed, method_kwargs=kwargs,
                              data_kwargs={"batch_size": BATCH_SIZE})
        result.update(row=row.label, switches=row.switches_from,
                      data="clean" if row.labels == "clean" else f"{rate:.0%} noise")
        results.append(result)
    print(format_results(results))
    print(f"total {time.perf_counter() - start:.0f}s; logs: <run>/metrics.csv and TensorBoard "
          f"(tensorboard --logdir {out}); checkpoints: <run>/checkpoints/last.ckpt")
    return results


def format_results(results: list[dict[str, Any]]) -> str:
    """A Markdown table of demo results (test accuracy of the final epoch; wrong labels
    among the training labels as given and as left by the method)."""
    head = ("| row | switches | training labels | test acc | mean class acc | "
            "wrong labels given -> left | labels corrected | correction precision | seconds |")
    rows = [head, "|" + "---|" * 9]
    for r in results:
        t, lab = r.get("test", {}), r.get("labels", {})
        prec = lab.get("correction_precision")
        wrong = (f"{int(lab['noisy_given'])} -> {int(lab['noisy_left'])}"
                 if "noisy_given" in lab else "-")
        rows.append(
            f"| {r.get('row', r['method'])} | {r.get('switches', '-')} | {r['data']} | "
            f"{100 * t.get('acc', float('nan')):.1f} | "
            f"{100 * t.get('mean_acc', float('nan')):.1f} | {wrong} | "
            f"{int(lab.get('corrected', 0))} | "
            f"{'-' if not lab.get('corrected') else f'{100 * prec:.0f}%'} | "
            f"{r['seconds']:.0f} |")
    return "\n".join(rows)
