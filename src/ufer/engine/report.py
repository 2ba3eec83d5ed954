"""``ufer report RUN``: what a trained run did to its training labels, sample by sample.

Writes into ``RUN/report/``:

- ``samples.csv``: one row per training sample: index, path, original / final / clean
  label (and class names), corrected, corrected_epoch, the final model's prediction,
  ``label_quality`` in [0, 1] (LOWER = label more likely wrong; the method's confidence
  alpha where it keeps one, else the final model's softmax probability of the given label)
  and ``is_label_issue`` (cleanlab's convention: the method corrected the label, or the
  final model still predicts another class than the final label);
- ``corrections.png``: class-to-class counts of corrected labels (``LabelState.flow``);
- ``uncertain.png`` / ``corrected.png``: contact sheets of the lowest-quality and of the
  corrected images, titled ``given->final``;
- ``curves.png``: loss components, accuracies and label counts per epoch (metrics.csv);
- ``summary.json``: the counts printed by ``format_summary``; for MTAC / ULC-AG also
  ``templates``: how well the AU branch, memory templates and alpha work on the training
  split, next to a probe AU head refitted on the frozen features
  (``ufer.engine.diagnose.template_diagnostics``).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ufer.data.dataset import ManifestDataset
from ufer.data.manifest import read_manifest
from ufer.engine.diagnose import format_diagnostics, template_diagnostics
from ufer.engine.evaluate import predict_probs
from ufer.engine.plots import contact_sheet
from ufer.engine.report_plots import correction_matrix, epoch_table, training_curves
from ufer.methods.base import FERMethod, load_method


def method_confidence(method: FERMethod) -> np.ndarray | None:
    """The method's per-sample confidence (N,) in [0, 1] with NaN where unknown, or None.

    Read from a ``confidence`` buffer of shape (N,) (SCN's alpha, MTAC's alpha); negative
    values mean "not seen yet".
    """
    conf = getattr(method, "confidence", None)
    n = method.labels.original.numel()
    if not isinstance(conf, torch.Tensor) or conf.shape != (n,):
        return None
    values = conf.detach().float().cpu().numpy().copy()
    values[~(values >= 0)] = np.nan
    return values


def label_quality(method: FERMethod, probs: np.ndarray, given: np.ndarray
                  ) -> tuple[np.ndarray, str]:
    """(quality (N,) in [0, 1], lower = more likely wrong; where it comes from).

    The method's confidence alpha where it has one (samples it never saw fall back to the
    probability), else the final model's softmax probability of the given label.
    """
    p_given = probs[np.arange(len(given)), given]
    conf = method_confidence(method)
    if conf is None:
        return p_given, "p(given label)"
    return np.where(np.isnan(conf), p_given, conf), "alpha (confidence)"


def training_probs(method: FERMethod, manifest: str | Path, image_size: int | None = None,
                   batch_size: int = 256) -> tuple[ManifestDataset, np.ndarray]:
    """(training split dataset, final-model softmax probabilities (N, C)) without augmentation."""
    dataset = ManifestDataset(read_manifest(manifest), "train", image_size)
    if len(dataset) != method.labels.original.numel():
        raise ValueError(f"{manifest} has {len(dataset)} training samples but the run's label "
                         f"state holds {method.labels.original.numel()}; is it the run's manifest?")
    return dataset, predict_probs(method.net, dataset, batch_size).numpy()


def sample_table(method: FERMethod, dataset: ManifestDataset, probs: np.ndarray) -> pd.DataFrame:
    """One row per training sample (see the module docstring)."""
    names = list(method.hparams.class_names or dataset.classes)
    lab = method.labels
    original = lab.original.cpu().numpy()
    final = lab.current.cpu().numpy()
    clean = lab.clean.cpu().numpy()
    quality, _ = label_quality(method, probs, original)
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
    table["label_quality"] = np.clip(quality, 0.0, 1.0)
    table["is_label_issue"] = corrected | (pred != final)
    return table


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
    method = load_method(run_dir / "checkpoints" / "last.ckpt")
    manifest = manifest or method.data_hparams.get("manifest")
    if not manifest:
        raise ValueError(f"{run_dir}: the checkpoint records no manifest; pass --manifest")
    if not Path(manifest).is_file():
        raise FileNotFoundError(f"training manifest {manifest} (recorded in the checkpoint) "
                                "not found; pass --manifest")
    out = Path(out_dir) if out_dir else run_dir / "report"
    out.mkdir(parents=True, exist_ok=True)
    dataset, probs = training_probs(method, manifest, method.data_hparams.get("image_size"))
    table = sample_table(method, dataset, probs)
    table.to_csv(out / "samples.csv", index=False)
    names = list(method.hparams.class_names or dataset.classes)
    counts = method.labels.summary()
    correction_matrix(method.labels.flow(len(names)).cpu().numpy(), names,
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
    _, source = label_quality(method, probs, table.original_label.to_numpy())
    summary = {"run": str(run_dir), "method": method.method_name, "manifest": str(manifest),
               "samples": len(table), "corrected": int(table.corrected.sum()),
               "label_issues": int(table.is_label_issue.sum()), "label_quality": source,
               "logged_corrected": last_logged(run_dir, "labels/corrected"),
               "labels": counts, "files": [str(p) for p in written]}
    if "clean_label" in table:
        wrong = table.original_label != table.clean_label
        summary["wrong_given"] = int(wrong.sum())
        summary["issues_that_are_wrong"] = int((table.is_label_issue & wrong).sum())
    if getattr(method, "au_head", None) is not None:
        summary["templates"] = template_diagnostics(method, dataset, probe_steps=600)
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
    if "templates" in summary:
        lines.append("  templates: " + format_diagnostics(summary["templates"]))
    lines.append(f"  written: {Path(summary['files'][0]).parent}/ "
                 + ", ".join(Path(p).name for p in summary["files"]))
    return "\n".join(lines)
