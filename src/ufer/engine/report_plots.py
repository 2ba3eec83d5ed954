"""Figures of ``ufer bench`` and ``ufer report`` (matplotlib, Agg backend, PNG files).

- ``accuracy_vs_noise``: test accuracy (mean +- std over seeds) per method against noise.
- ``correction_vs_noise``: precision and recall of label corrections per method.
- ``detection_roc``: ROC curves of uncertainty scores for spotting wrong labels.
- ``correction_matrix``: class-to-class counts of corrected labels (``LabelState.flow``).
- ``training_curves``: loss components, accuracy and label counts from ``metrics.csv``.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ufer.metrics import auroc, roc_curve


def _save(fig: plt.Figure, out_png: str | Path) -> Path:
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def accuracy_vs_noise(table: Mapping[str, Mapping[float, Sequence[float]]], out_png: str | Path,
                      title: str = "test accuracy vs label noise") -> Path:
    """table: method -> noise rate -> accuracies over seeds (fractions)."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for method, by_rate in table.items():
        rates = sorted(by_rate)
        mean = [100 * np.mean(by_rate[r]) for r in rates]
        std = [100 * np.std(by_rate[r], ddof=1) if len(by_rate[r]) > 1 else 0.0 for r in rates]
        ax.errorbar([100 * r for r in rates], mean, yerr=std, marker="o", capsize=3,
                    label=method)
    ax.set(xlabel="noise rate (%)", ylabel="test accuracy (%)", title=title)
    ax.grid(alpha=0.3)
    ax.legend()
    return _save(fig, out_png)


def correction_vs_noise(table: Mapping[str, Mapping[float, tuple[float, float]]],
                        out_png: str | Path) -> Path:
    """table: method -> noise rate -> (mean precision, mean recall) of corrections; methods
    that never correct are left out by the caller."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8))
    for method, by_rate in table.items():
        rates = sorted(by_rate)
        for k, ax in enumerate(axes):
            ax.plot([100 * r for r in rates], [100 * by_rate[r][k] for r in rates], marker="o",
                    label=method)
    for ax, name in zip(axes, ("precision", "recall")):
        ax.set(xlabel="noise rate (%)", ylabel=f"correction {name} (%)", ylim=(0, 100),
               title=f"label corrections: {name}")
        ax.grid(alpha=0.3)
    if table:
        axes[0].legend()
    else:
        axes[0].text(0.5, 0.5, "no method corrected labels", ha="center",
                     transform=axes[0].transAxes)
    return _save(fig, out_png)


def detection_roc(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], out_png: str | Path,
                  title: str = "spotting wrong labels") -> Path:
    """curves: name -> (uncertainty scores, is-wrong mask); one ROC curve each, AUROC in the
    legend."""
    fig, ax = plt.subplots(figsize=(4.8, 4.5))
    for name, (scores, positives) in curves.items():
        fpr, tpr = roc_curve(scores, positives)
        ax.plot(fpr, tpr, label=f"{name} (AUROC {auroc(scores, positives):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=title,
           xlim=(0, 1), ylim=(0, 1))
    ax.legend(fontsize=7, loc="lower right")
    return _save(fig, out_png)


def correction_matrix(flow: np.ndarray, class_names: Sequence[str], out_png: str | Path,
                      title: str = "label corrections") -> Path:
    """flow: (C, C) counts, rows = original label, columns = final label."""
    flow = np.asarray(flow)
    c = len(class_names)
    fig, ax = plt.subplots(figsize=(1.0 + 0.6 * c, 0.8 + 0.55 * c))
    ax.imshow(flow, cmap="Blues", vmin=0, vmax=max(int(flow.max()), 1))
    for i in range(c):
        for j in range(c):
            if flow[i, j]:
                ax.text(j, i, str(int(flow[i, j])), ha="center", va="center", fontsize=8,
                        color="white" if flow[i, j] > flow.max() / 2 else "black")
    ax.set_xticks(range(c), class_names, rotation=45, ha="right")
    ax.set_yticks(range(c), class_names)
    ax.set(xlabel="final label", ylabel="original (given) label",
           title=f"{title} ({int(flow.sum())})")
    return _save(fig, out_png)


def epoch_table(metrics_csv: str | Path) -> pd.DataFrame:
    """metrics.csv (one row per log call) -> one row per epoch, last logged value per column."""
    frame = pd.read_csv(metrics_csv)
    if "epoch" not in frame.columns:
        raise ValueError(f"{metrics_csv}: no 'epoch' column (not a Lightning CSVLogger file)")
    frame = frame.dropna(subset=["epoch"])
    return frame.groupby("epoch").last().drop(columns=["step"], errors="ignore")


def training_curves(metrics_csv: str | Path, out_png: str | Path, title: str = "") -> Path:
    """Three panels: training loss components, accuracies, label counts per epoch."""
    table = epoch_table(metrics_csv)
    epochs = table.index.to_numpy() + 1
    losses = [c for c in table.columns if c.startswith("train/") and c not in
              ("train/acc", "train/alpha")]
    accs = [c for c in table.columns if c.endswith(("acc", "acc_clean"))]
    counts = [c for c in table.columns if c.startswith("labels/")
              and c not in ("labels/correction_precision",)]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, cols, name in zip(axes, (losses, accs, counts), ("loss", "accuracy", "labels")):
        for col in cols:
            values = table[col]
            if values.notna().any():
                ax.plot(epochs[values.notna()], values.dropna(), marker=".", label=col)
        ax.set(xlabel="epoch", title=f"{title} {name}".strip())
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "nothing logged", ha="center", transform=ax.transAxes)
    return _save(fig, out_png)
