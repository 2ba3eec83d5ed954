"""``ufer demo`` (what ``make demo`` runs): the main job end to end on synthetic data.

Synthesize the ``demo`` preset, inject 30 % symmetric noise into the training labels,
train the baseline on clean and noisy labels and every registered method on the noisy
ones with one schedule, evaluate each on the test split, print one table.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ufer._registry import list_methods, method_class
from ufer.data.manifest import read_manifest
from ufer.data.noise import write_noisy_manifest
from ufer.data.synthetic import generate
from ufer.engine.train import RUN_LOG, check_max_epochs, holds_run, set_threads, train_method


def prepare_demo_data(out: Path, seed: int, rate: float) -> tuple[Path, Path]:
    """(clean manifest, noisy manifest) under ``out``; generated once and then reused."""
    clean = out / "manifest.csv"
    if not clean.exists():
        generate(out, preset="demo", seed=seed)
    noisy = out / f"manifest_sym{round(100 * rate)}.csv"
    if not noisy.exists():
        write_noisy_manifest(read_manifest(clean), noisy, protocol="symmetric", rate=rate,
                             seed=seed, overwrite=True)
    return clean, noisy


def run_demo(out: str | Path = "runs/demo", epochs: int = 25, rate: float = 0.3,
             seed: int = 0, methods: list[str] | None = None) -> list[dict[str, Any]]:
    """Run the demo grid; returns one result dict per trained model.

    Every argument is checked, and every run folder is checked to be free, before the
    data is synthesized: a wrong one fails in a second, not after the first training.
    Each run writes its detail to ``<run>/train.log``; the console gets one line per epoch.
    """
    out = Path(out)
    cells = demo_cells(out, epochs, rate, methods)
    set_threads()
    start = time.perf_counter()
    clean, noisy = prepare_demo_data(out / "data", seed, rate)
    print(f"data: {clean} and {noisy} ({time.perf_counter() - start:.0f}s)", flush=True)
    results = []
    for method, run_dir, label in cells:
        manifest = clean if label == "clean" else noisy
        print(f"training {method} on {label} labels -> {run_dir} (log: {run_dir}/{RUN_LOG})",
              flush=True)
        result = train_method(manifest, method, run_dir, epochs, seed=seed)
        result["data"] = label
        results.append(result)
    print(format_results(results))
    print(f"total {time.perf_counter() - start:.0f}s; logs: <run>/metrics.csv and TensorBoard "
          f"(tensorboard --logdir {out}); checkpoints: <run>/checkpoints/last.ckpt")
    return results


def demo_cells(out: Path, epochs: int, rate: float,
               methods: list[str] | None) -> list[tuple[str, Path, str]]:
    """(method, run folder, training labels) of every demo run, after checking the
    arguments and that no run folder holds a run already."""
    check_max_epochs(epochs)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"--rate must lie in [0, 1], got {rate}")
    for name in methods or []:
        method_class(name)  # an unknown name raises, listing the known methods
    cells = [("baseline", out / "baseline-clean", "clean")] + [
        (m, out / f"{m}-noisy", f"{rate:.0%} noise") for m in (methods or list_methods())]
    taken = [str(run_dir) for _, run_dir, _ in cells if holds_run(run_dir)]
    if taken:
        what = "holds a run" if len(taken) == 1 else "hold runs"
        raise FileExistsError(f"{', '.join(taken)} {what} of an earlier demo: pass another "
                              f"--out, or delete {out} (make clean-runs) to run it again")
    return cells


def format_results(results: list[dict[str, Any]]) -> str:
    """A Markdown table of demo/bench results (test accuracy of the final epoch)."""
    head = ("| method | training labels | test acc | mean class acc | acc vs truth | "
            "labels corrected | correction precision | seconds |")
    rows = [head, "|" + "---|" * 8]
    for r in results:
        t, lab = r.get("test", {}), r.get("labels", {})
        prec = lab.get("correction_precision")
        rows.append(
            f"| {r['method']} | {r['data']} | {100 * t.get('acc', float('nan')):.1f} | "
            f"{100 * t.get('mean_acc', float('nan')):.1f} | "
            f"{100 * t.get('acc_clean', float('nan')):.1f} | {int(lab.get('corrected', 0))} | "
            f"{'-' if not lab.get('corrected') else f'{100 * prec:.0f}%'} | "
            f"{r['seconds']:.0f} |")
    return "\n".join(rows)
