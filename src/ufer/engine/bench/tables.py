"""The Markdown tables of ``OUT/results.md``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def by_method_rate(cells: list[dict[str, Any]], value: Any) -> dict[str, dict[float, list[float]]]:
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


REGIME_TEXT = {
    "scratch": ("Regime **scratch**: every row trains from random weights under one shared "
                "schedule; methods keep their paper switches (\"paper switches, shared "
                "schedule\"), not their papers' recipes."),
    "paper": ("Regime **paper**: each method fine-tunes the pretrained backbone with its own "
              "paper's recipe and switches; each baseline row got the recipe it names, so "
              "compare a method with the baseline of its recipe."),
}


def recipe_table(results: dict[str, Any]) -> list[str]:
    """The regime and recipe of every row, and the start of the paper regime."""
    rows = results.get("rows") or []
    if not rows:
        return []
    shared = {}
    for r in rows:
        shared.setdefault(r["recipe"], []).append(r["label"])
    lines = ["| row | regime | recipe | rows with this recipe |", "|---|---|---|---|"]
    lines += [f"| {r['label']} | {r['regime']} | {r['recipe']} | "
              f"{', '.join(shared[r['recipe']])} |" for r in rows]
    cfg = results["config"]
    if cfg.get("regime") == "paper":
        start = cfg.get("pretrained") or "ufer pretrain, cached in OUT/data"
        lines += ["", (f"Pretrained start: {start}. The cleanlab reference keeps the scratch "
                  f"schedule ({cfg['epochs']} epochs, batch {cfg['batch_size']}, from random "
                  "weights).")]
    return lines


def _seed_range(cfg: dict[str, Any]) -> str:
    """' (K..L)', the seeds of a grid that does not start at seed 0; else ''."""
    first = cfg.get("first_seed", 0)
    return f" ({first}..{first + cfg['seeds'] - 1})" if first else ""


def best_val_table(cells: list[dict[str, Any]], methods: list[str], rates: list[float],
                   seeds: int, head: str, rule: str) -> list[str]:
    """Test accuracy of each cell's best-validation epoch (``cells.best_val_test``), mean ±
    std and per seed with that epoch and its wrong labels left; [] when no cell has one."""
    best = [c for c in cells if c.get("best_val")]
    if not best:
        return []
    acc = by_method_rate(best, lambda c: c["best_val"]["acc"])
    lines = ["", "## Test accuracy (%), epoch of best validation accuracy", "",
             ("The weights of the epoch whose validation accuracy was highest (early stopping "
              "on the validation split; the test split plays no part). On synthetic presets "
              "the validation labels are clean; real noisy data rarely has such a split."),
             "", head, rule] + [_row(m, acc[m], rates, seeds=seeds) for m in methods if m in acc]
    lines += ["", "Per seed: test accuracy % (epoch; wrong training labels left then):", "",
              "| method | noise | per seed |", "|---|---|---|"]
    for m in methods:
        for r in rates:
            group = sorted((c for c in best if c["method"] == m and c["rate"] == r),
                           key=lambda c: c["seed"])
            if group:
                lines.append(f"| {m} | {100 * r:g} % | " + " / ".join(
                    f"{100 * c['best_val']['acc']:.1f} (ep {c['best_val']['epoch']}; "
                    f"{c['best_val']['labels'].get('noisy_left', float('nan')):.0f})"
                    for c in group) + " |")
    return lines


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
             (f"{len(methods)} rows x {len(rates)} noise rates ({cfg['protocol']}) x "
             f"{seeds} seeds{_seed_range(cfg)}; backbone {cfg['backbone']}, image size "
             f"{cfg.get('image_size') or 'as stored'}, the same data and augmentation in every "
             f"cell; mean ± std over seeds. " + REGIME_TEXT[cfg.get("regime", "scratch")]),
             "", *recipe_table(results), "", "## Test accuracy (%), final epoch", "", head,
             rule]
    if results.get("missing"):
        missing = results["missing"]
        lines[3:3] = ["", (f"**Partial:** {len(missing)} cells or references not finished "
                           f"({', '.join(missing)}); an entry over fewer seeds says n=.")]
    acc = by_method_rate(cells, lambda c: c["test"].get("acc"))
    lines += [_row(m, acc[m], rates, seeds=seeds) for m in methods]
    lines += ["", f"Per seed (test accuracy %, seed {cfg.get('first_seed', 0)}, ...):", "",
              "| method | noise | per seed |", "|---|---|---|"]
    lines += [f"| {m} | {100 * r:g} % | " + " / ".join(
        f"{100 * c['test']['acc']:.1f}" for c in sorted(cells, key=lambda c: c["seed"])
        if c["method"] == m and c["rate"] == r and "acc" in c["test"]) + " |"
        for m in methods for r in rates]
    truth = by_method_rate(cells, lambda c: c["test"].get("acc_clean"))
    if any(v for m in truth.values() for v in m.values()):
        lines += ["", "Against the true labels of the test split (synthetic truth):", "",
                  head, rule] + [_row(m, truth[m], rates, seeds=seeds) for m in methods]
    lines += best_val_table(cells, methods, rates, seeds, head, rule)
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
              "labels: its own per-sample score where it keeps one (named in the row), else 1 - "
              "the final model's probability of the given label."), "", head, rule]
    auroc = by_method_rate(cells, lambda c: c.get("auroc"))
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
