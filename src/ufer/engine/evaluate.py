"""``ufer evaluate``: a checkpoint on one split of a manifest -> metrics, tables, plots."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from ufer import metrics
from ufer.data.datamodule import check_sizes, check_split_names, split_counts
from ufer.data.dataset import ManifestDataset
from ufer.data.manifest import read_manifest
from ufer.data.transforms import preprocess
from ufer.engine.plots import plot_confusion
from ufer.methods.base import FERMethod, Normalization, load_method
from ufer.models.net import FERNet


@torch.inference_mode()
def predict_probs(net: FERNet, dataset: ManifestDataset, normalization: Normalization,
                  batch_size: int = 256) -> torch.Tensor:
    """Softmax probabilities (N, C) of ``net`` on every item of ``dataset``, in order, with the
    inputs preprocessed by ``normalization`` = (mean, std) (the method's)."""
    net.eval()
    device = next(net.parameters()).device
    out = []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        images = preprocess(batch["image"].to(device), *normalization)
        out.append(net(images).softmax(dim=1).cpu())
    return torch.cat(out)


@torch.inference_mode()
def predict_with_uncertainty(method: FERMethod, dataset: ManifestDataset,
                             batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Softmax probabilities (N, C) of ``method.net`` and a per-image uncertainty (N,),
    higher = less trustworthy: ``method.inference_uncertainty`` where the method has one,
    else 1 - the softmax maximum. Also returns what the uncertainty is, in words."""
    method.eval()
    device = next(method.net.parameters()).device
    probs, scores, source = [], [], "softmax maximum"
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        images = preprocess(batch["image"].to(device), *method.normalization)
        p = method.net(images).softmax(dim=1)
        own = method.inference_uncertainty(images)
        if own is not None:
            source = f"{method.method_name}.inference_uncertainty"
        probs.append(p.cpu())
        scores.append((1.0 - p.max(dim=1).values if own is None else own).float().cpu())
    return torch.cat(probs), torch.cat(scores), source


def confidence_subsets(uncertainty: torch.Tensor, correct: torch.Tensor,
                       fractions: tuple[float, ...] = (0.3, 0.5, 0.7)) -> dict[str, Any]:
    """Accuracy on the most and the least confident fractions of a test set (POI's table IV).

    Args:
        uncertainty: (N,) per image, higher = less confident; ties keep dataset order.
        correct: (N,) bool, the prediction equals the label.
        fractions: subset sizes as fractions of N (each at least one image).

    Returns:
        ``{"most_confident": {"30%": acc, ...}, "least_confident": {...}}``.
    """
    order = torch.sort(uncertainty, stable=True).indices
    ranked = correct[order].float()
    sizes = {f"{round(100 * f)}%": max(1, round(f * len(ranked))) for f in fractions}
    return {"most_confident": {k: float(ranked[:n].mean()) for k, n in sizes.items()},
            "least_confident": {k: float(ranked[-n:].mean()) for k, n in sizes.items()}}


def summarize(probs: torch.Tensor, labels: torch.Tensor, class_names: list[str],
              clean_labels: torch.Tensor | None = None) -> dict[str, Any]:
    """Accuracy, mean class accuracy, per-class accuracy and confusion of predictions."""
    pred = probs.argmax(dim=1)
    conf = metrics.confusion_matrix(pred, labels, len(class_names))
    result: dict[str, Any] = {
        "n": int(labels.numel()),
        "accuracy": metrics.accuracy(conf),
        "mean_class_accuracy": metrics.mean_class_accuracy(conf),
        "per_class": dict(zip(class_names, metrics.per_class_accuracy(conf).tolist())),
        "confusion": conf.tolist()}
    if clean_labels is not None:
        clean_conf = metrics.confusion_matrix(pred, clean_labels, len(class_names))
        result["accuracy_clean"] = metrics.accuracy(clean_conf)
        result["mean_class_accuracy_clean"] = metrics.mean_class_accuracy(clean_conf)
    return result


def format_table(result: dict[str, Any]) -> str:
    """The per-class table and the two headline numbers as plain text."""
    lines = [f"{'class':12s} {'accuracy':>9s}"]
    lines += [f"{name:12s} {100 * acc:8.2f}%" for name, acc in result["per_class"].items()]
    lines.append(f"overall accuracy     {100 * result['accuracy']:.2f}%  "
                 f"(the number FER papers report)")
    lines.append(f"mean class accuracy  {100 * result['mean_class_accuracy']:.2f}%")
    if "accuracy_clean" in result:
        lines.append(f"accuracy vs clean_label (synthetic truth) "
                     f"{100 * result['accuracy_clean']:.2f}%")
    if "confidence_subsets" in result:
        subsets = result["confidence_subsets"]
        for group in ("most_confident", "least_confident"):
            values = "  ".join(f"{k} {100 * v:.2f}%" for k, v in subsets[group].items())
            lines.append(f"{group.replace('_', ' '):16s} {values}  (ranked by "
                         f"{subsets['ranked_by']})")
    return "\n".join(lines)


def evaluate(checkpoint: str | Path, manifest: str | Path, split: str = "test",
             out_dir: str | Path | None = None, batch_size: int = 256,
             image_size: int | None = None) -> dict[str, Any]:
    """Evaluate a ufer checkpoint on ``split`` of ``manifest``; write JSON, CSV and PNG.

    ``image_size`` defaults to the size stored in the checkpoint's data settings, else
    the manifest's own images. Wrong sizes, an unknown or empty split and a checkpoint of
    another class count are errors naming what to change.
    """
    check_sizes(image_size=image_size, batch_size=batch_size)
    data = read_manifest(manifest)
    check_split_names(split=split)
    rows = int((data.frame["split"] == split).sum())
    if not rows:
        raise ValueError(f"{manifest} has no '{split}' rows ({split_counts(data)}): nothing to "
                         "evaluate; choose another --split")
    method, settings = load_method(checkpoint)
    names = list(method.hparams.class_names or data.classes)
    if len(names) != data.num_classes:
        raise ValueError(f"{checkpoint} predicts {len(names)} classes but {manifest} has "
                         f"{data.num_classes}: evaluate it on data with its classes "
                         f"({', '.join(names)})")
    image_size = image_size or settings.get("image_size")
    dataset = ManifestDataset(data, split, image_size)
    probs, uncertainty, ranked_by = predict_with_uncertainty(method, dataset, batch_size)
    result = summarize(probs, dataset.labels, names, dataset.clean_labels)
    result["confidence_subsets"] = {"ranked_by": ranked_by, **confidence_subsets(
        uncertainty, probs.argmax(dim=1) == dataset.labels)}
    result.update(checkpoint=str(checkpoint), manifest=str(manifest), split=split,
                  method=method.method_name)
    out = Path(out_dir) if out_dir else Path(checkpoint).resolve().parent.parent / f"eval-{split}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "per_class.csv").write_text("class,accuracy\n" + "".join(
        f"{k},{v:.6f}\n" for k, v in result["per_class"].items()))
    plot_confusion(torch.tensor(result["confusion"]), names, out / "confusion.png",
                   title=f"{method.method_name} on {Path(manifest).name}:{split}")
    result["out_dir"] = str(out)
    return result
