"""``ufer demo`` (what ``make demo`` runs): the main job end to end on synthetic data.

Synthesize the ``demo`` preset, inject 30 % symmetric noise into the training labels,
train the baseline on clean and noisy labels and every registered method on the noisy
ones with one schedule, evaluate each on the test split, print one table.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ufer._registry import list_methods
from ufer.data.manifest import read_manifest
from ufer.data.noise import write_noisy_manifest
from ufer.data.synthetic import generate
from ufer.engine.train import set_threads, train_method


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
    """Run the demo grid; returns one result dict per trained model."""
    set_threads()
    out = Path(out)
    start = time.perf_counter()
    clean, noisy = prepare_demo_data(out / "data", seed, rate)
    print(f"data: {clean} and {noisy} ({time.perf_counter() - start:.0f}s)", flush=True)
    cells = [("baseline", clean, "clean")] + [(m, noisy, f"{rate:.0%} noise")
                                              for m in (methods or list_methods())]
    results = []
    for method, manifest, label in cells:
        run_dir = out / f"{method}-{'clean' if manifest == clean else 'noisy'}"
        print(f"training {method} on {label} labels -> {run_dir}", flush=True)
        result = train_method(manifest, method, run_dir, epochs, seed=seed)
        result["data"] = label
        results.append(result)
    print(format_results(results))
    print(f"total {time.perf_counter() - start:.0f}s; logs: <run>/metrics.csv and TensorBoard "
          f"(tensorboard --logdir {out}); checkpoints: <run>/checkpoints/last.ckpt")
    return results


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
