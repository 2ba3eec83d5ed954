"""``ufer report RUN``: what a trained run did to its training labels, sample by sample.

Writes into ``RUN/report/``:

- ``samples.csv``: one row per training sample: index, path, original / final / clean
  label (and class names), corrected, corrected_epoch, the final model's prediction,
  ``label_quality`` in [0, 1] (LOWER = label more likely wrong, cleanlab's convention: 1 -
  the method's ``sample_uncertainty()`` where it keeps one, e.g. alpha for SCN and MTAC,
  else the final model's softmax probability of the given label)
  and ``is_label_issue`` (cleanlab's convention: the method corrected the label, or the
  final model still predicts another class than the final label);
- ``corrections.png``: class-to-class counts of corrected labels (``LabelState.flow``);
- ``uncertain.png`` / ``corrected.png``: contact sheets of the lowest-quality and of the
  corrected images, titled ``given->final``;
- ``curves.png``: loss components, accuracies and label counts per epoch (metrics.csv);
- ``uncertainty.png`` (methods with a ``sample_uncertainty()``): its histogram, split into
  wrong and right given labels where the truth is known;
- ``distributions.csv`` (methods with a ``label_distribution()``, e.g. LDLVA): the samples
  whose learned distribution moved most from their given label (total variation distance
  1 - d_i[given]), with the distribution's argmax and every class's share;
- ``summary.json``: the counts printed by ``format_summary`` and the method's own
  ``diagnostics()`` (MTAC / ULC-AG: how well the AU branch, memory templates and alpha work
  on the training split, next to a probe AU head refitted on the frozen features).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ufer.data.dataset import ManifestDataset
from ufer.data.manifest import read_manifest
from ufer.engine.evaluate import predict_probs
from ufer.engine.plots import contact_sheet
from ufer.engine.report_plots import correction_matrix, epoch_table, training_curves
from ufer.methods.base import FERMethod, load_method, uncertainty_stats


def label_uncertainty(method: FERMethod, probs: np.ndarray, given: np.ndarray
                      ) -> tuple[np.ndarray, str]:
    """(uncertainty (N,) in [0, 1], higher = label more likely wrong; what it is).

    The method's own ``sample_uncertainty()`` where it keeps one (samples it never saw fall
    back to the next line), else 1 - the final model's softmax probability (N, C) of the
    given label (N,).
    """
    p_wrong = 1.0 - probs[np.arange(len(given)), given]
    own = method.sample_uncertainty()
    if own is None:
        return p_wrong, "1 - p(given label)"
    values = own.detach().float().cpu().numpy()
    return np.where(np.isnan(values), p_wrong, values), method.uncertainty_name


def training_probs(method: FERMethod, manifest: str | Path, image_size: int | None = None,
                   batch_size: int = 256) -> tuple[ManifestDataset, np.ndarray]:
    """(training split dataset, final-model softmax probabilities (N, C)) without augmentation."""
    dataset = ManifestDataset(read_manifest(manifest), "train", image_size)
    if len(dataset) != method.samples.num_samples:
        raise ValueError(f"{manifest} has {len(dataset)} training samples but the run's label "
                         f"state holds {method.samples.num_samples}; is it the run's manifest?")
    stored = method.samples.row_id.cpu().numpy()
    if stored.any():  # checkpoints from before row ids were recorded cannot be checked
        dataset.manifest.check_rows(stored)
    return dataset, predict_probs(method.net, dataset, method.normalization, batch_size).numpy()


def sample_table(method: FERMethod, dataset: ManifestDataset, probs: np.ndarray) -> pd.DataFrame:
    """One row per training sample (see the module docstring)."""
    names = list(method.hparams.class_names or dataset.classes)
    lab = method.samples
    original = lab.original.cpu().numpy()
    final = lab.current.cpu().numpy()
    clean = lab.clean.cpu().numpy()
    uncertainty, _ = label_uncertainty(method, probs, original)
    pred = probs.argmax(1)
    corrected = final != original
    table = pd.DataFrame({
        "index": np.arange(len(original)),
        "path": dataset.manifest.frame["path"].to_numpy(),
        "original_label": original, "original_class": [names[i] for i in original],
        "final_label": final, "final_class": [names[i] for i in final],
    })
    if (clean >= 0).any():
        table["clean_label"] = clean
        table["clean_class"] = [names[i] if i >= 0 else "" for i in clean]
    table["corrected"] = corrected
    table["corrected_epoch"] = lab.corrected_epoch.cpu().numpy()
    table["predicted_label"] = pred
    table["predicted_prob"] = probs.max(1)
    table["label_quality"] = np.clip(1.0 - uncertainty, 0.0, 1.0)
    table["is_label_issue"] = corrected | (pred != final)
    return table


def uncertainty_histogram(scores: np.ndarray, wrong: np.ndarray | None, name: str,
                          out_png: str | Path) -> Path:
    """Histogram of a per-sample uncertainty (n,) of the samples seen, split by ``wrong``
    (n,) bool (given label wrong) where the truth is known."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    bins = np.histogram_bin_edges(scores, bins=30)
    groups = {"all samples": scores} if wrong is None else {
        f"wrong given label ({int(wrong.sum())})": scores[wrong],
        f"right given label ({int((~wrong).sum())})": scores[~wrong]}
    for label, values in groups.items():
        ax.hist(values, bins=bins, alpha=0.6, label=label)
    ax.set(xlabel=name, ylabel="training samples", title=f"{name} per training sample")
    ax.legend(fontsize=8)
    out_png = Path(out_png)
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def distribution_table(dist: np.ndarray, table: pd.DataFrame, names: list[str]
                       ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The learned label distributions (N, C) (NaN rows: never trained on) next to the given
    labels of ``sample_table``'s ``table``.

    Returns:
        (the trained-on samples, most moved first: index, path, given / clean class, the
        distribution's argmax, ``moved`` = total variation distance to the one-hot given
        label = 1 - d[given], one ``d_<class>`` column per class; counts: samples, mean
        moved, how often the argmax differs from the given label and, with the truth, how
        often it is then the true label, and on wrong given labels how often the argmax is
        the true one).
    """
    known = ~np.isnan(dist).any(axis=1)
    given = table.original_label.to_numpy()
    rows = np.flatnonzero(known)
    moved = 1.0 - dist[rows, given[rows]]
    top = dist[rows].argmax(axis=1)
    differs = top != given[rows]
    stats: dict[str, Any] = {"samples": int(known.sum()),
                             "mean_moved": float(moved.mean()) if len(rows) else None,
                             "argmax_differs": int(differs.sum())}
    columns = ["index", "path", "original_class"]
    if "clean_label" in table:
        clean = table.clean_label.to_numpy()[rows]
        wrong = given[rows] != clean
        stats["argmax_differs_is_true"] = _share(top[differs] == clean[differs])
        stats["wrong_given_argmax_true"] = _share(top[wrong] == clean[wrong])
        columns.append("clean_class")
    frame = table.iloc[rows][columns].reset_index(drop=True)
    frame["argmax_class"] = [names[j] for j in top]
    frame["moved"] = moved
    for j, name in enumerate(names):
        frame[f"d_{name}"] = dist[rows, j]
    return frame.sort_values("moved", ascending=False, kind="stable"), stats


def _share(mask: np.ndarray) -> float | None:
    return float(mask.mean()) if len(mask) else None


def _short(name: str) -> str:
    return name[:3]


def _sheet(dataset: ManifestDataset, table: pd.DataFrame, rows: np.ndarray, out_png: Path,
           with_quality: bool) -> Path | None:
    if len(rows) == 0:
        return None
    images = [dataset[int(i)]["image"].permute(1, 2, 0).numpy() for i in rows]
    titles = [f"{_short(table.original_class.iat[i])}->{_short(table.final_class.iat[i])}"
              + (f" {table.label_quality.iat[i]:.2f}" if with_quality else "") for i in rows]
    return contact_sheet(images, titles, out_png, ncols=10)


def last_logged(run_dir: str | Path, key: str) -> float | None:
    """The value of ``key`` at the last epoch that logged it in RUN/metrics.csv, or None."""
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return None
    table = epoch_table(path)
    if key not in table.columns or table[key].isna().all():
        return None
    return float(table[key].dropna().iloc[-1])


def precision_gate_log(run_dir: str | Path) -> dict[str, Any] | None:
    """What MTAC's ``relabel_min_precision`` gate did, from RUN/metrics.csv; None when the run
    did not log it.

    Returns:
        ``open_for_epochs``: the 1-based epochs the gate allowed relabeling in (the gate set at
        the validation of epoch e governs epoch e + 1; relabel_start and relabel_min_val_acc
        still apply); ``est_precision``: the estimate at each validation, in epoch order.
    """
    path = Path(run_dir) / "metrics.csv"
    if not path.is_file():
        return None
    table = epoch_table(path)
    if "relabel/precision_gate" not in table.columns:
        return None
    logged = table[["relabel/precision_gate", "relabel/est_precision"]].dropna()
    last = int(table.index.max())
    opened = [int(e) + 2 for e in logged.index[logged["relabel/precision_gate"] > 0] if e < last]
    return {"open_for_epochs": opened,
            "est_precision": [round(float(v), 4) for v in logged["relabel/est_precision"]]}


def write_report(run_dir: str | Path, out_dir: str | Path | None = None,
                 manifest: str | Path | None = None, top: int = 40) -> dict[str, Any]:
    """Write RUN/report/ (see the module docstring) and return the summary dict.

    Args:
        run_dir: a training run folder (``checkpoints/last.ckpt``, ``metrics.csv``).
        out_dir: destination (default ``RUN/report``).
        manifest: the training manifest (default: the one recorded in the checkpoint).
        top: images per contact sheet.
    """
    run_dir = Path(run_dir)
    method, data = load_method(run_dir / "checkpoints" / "last.ckpt")
    manifest = manifest or data.get("manifest")
    if not manifest:
        raise ValueError(f"{run_dir}: the checkpoint records no manifest; pass --manifest")
    if not Path(manifest).is_file():
        raise FileNotFoundError(f"training manifest {manifest} (recorded in the checkpoint) "
                                "not found; pass --manifest")
    out = Path(out_dir) if out_dir else run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    dataset, probs = training_probs(method, manifest, data.get("image_size"))
    table = sample_table(method, dataset, probs)
    table.to_csv(out / "samples.csv", index=False)
    names = list(method.hparams.class_names or dataset.classes)
    counts = method.samples.summary()
    correction_matrix(method.samples.flow(len(names)).cpu().numpy(), names,
                      out / "corrections.png", title=f"{method.method_name}: corrections")
    uncertain = table.sort_values("label_quality", kind="stable").index.to_numpy()[:top]
    corrected = table.index[table.corrected].to_numpy()[:top]
    written = [out / "samples.csv", out / "corrections.png"]
    for rows, name, quality in ((uncertain, "uncertain.png", True),
                                (corrected, "corrected.png", False)):
        path = _sheet(dataset, table, rows, out / name, quality)
        if path is not None:
            written.append(path)
    if (run_dir / "metrics.csv").is_file():
        written.append(training_curves(run_dir / "metrics.csv", out / "curves.png",
                                       title=method.method_name))
    _, source = label_uncertainty(method, probs, table.original_label.to_numpy())
    summary = {"run": str(run_dir), "method": method.method_name, "manifest": str(manifest),
               "samples": len(table), "corrected": int(table.corrected.sum()),
               "label_issues": int(table.is_label_issue.sum()),
               "label_quality": source.removeprefix("1 - ") if source.startswith("1 - ")
               else f"1 - {source}",
               "logged_corrected": last_logged(run_dir, "labels/corrected"),
               "labels": counts, "files": [str(p) for p in written]}
    wrong = None
    if "clean_label" in table:
        wrong = table.original_label != table.clean_label
        summary["wrong_given"] = int(wrong.sum())
        summary["issues_that_are_wrong"] = int((table.is_label_issue & wrong).sum())
    own = method.sample_uncertainty()
    if own is not None:
        scores = own.detach().float().cpu().numpy()
        seen = ~np.isnan(scores)
        if seen.any():
            summary["files"].append(str(uncertainty_histogram(
                scores[seen], None if wrong is None else wrong.to_numpy()[seen],
                method.uncertainty_name, out / "uncertainty.png")))
        summary["uncertainty"] = {"name": method.uncertainty_name, "seen": int(seen.sum()),
                                  **uncertainty_stats(own, method.samples)}
    dist = method.label_distribution()
    if dist is not None:
        frame, summary["label_distribution"] = distribution_table(
            dist.detach().float().cpu().numpy(), table, names)
        frame.head(top).to_csv(out / "distributions.csv", index=False)
        summary["files"].append(str(out / "distributions.csv"))
    gate = precision_gate_log(run_dir)
    if gate is not None:
        summary["precision_gate"] = gate
    diagnostics = method.diagnostics(dataset)
    if diagnostics:
        summary["diagnostics"] = diagnostics
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """A few plain lines for the terminal."""
    lines = [f"{summary['method']} run {summary['run']}: {summary['samples']} training samples",
             (f"  corrected labels: {summary['corrected']} "
             f"(metrics.csv last epoch: {summary['logged_corrected']})"),
             f"  label issues (corrected, or the model disagrees): {summary['label_issues']}",
             f"  label_quality = {summary['label_quality']} (lower = more likely wrong)"]
    lab = summary["labels"]
    if "wrong_given" in summary:
        lines.append(f"  truth known: {summary['wrong_given']} given labels wrong; "
                     f"{summary['issues_that_are_wrong']} of the issues are wrong labels; "
                     f"{int(lab.get('corrected_right', 0))} corrections right; "
                     f"{int(lab.get('noisy_left', 0))} wrong labels left")
    if "uncertainty" in summary:
        lines.append("  uncertainty: " + format_numbers(summary["uncertainty"]))
    if "label_distribution" in summary:
        lines.append("  label distributions: " + format_numbers(summary["label_distribution"]))
    if "precision_gate" in summary:
        opened = summary["precision_gate"]["open_for_epochs"]
        lines.append("  relabel_min_precision gate open for epochs (1-based): "
                     + (", ".join(map(str, opened)) if opened else "none"))
    if "diagnostics" in summary:
        lines.append("  diagnostics: " + format_numbers(summary["diagnostics"]))
    lines.append(f"  written: {Path(summary['files'][0]).parent}/ "
                 + ", ".join(Path(p).name for p in summary["files"]))
    return "\n".join(lines)


def format_numbers(values: dict[str, Any], digits: int = 3) -> str:
    """``key value`` pairs of a flat dict on one line (None as '-'), e.g. a method's
    ``diagnostics``."""
    return ", ".join(f"{k} {'-' if v is None else f'{v:.{digits}g}' if isinstance(v, float) else v}"
                     for k, v in values.items())
