"""``ufer evaluate``: a checkpoint on one split of a manifest -> metrics, tables, plots."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from ufer import metrics
from ufer.data.dataset import ManifestDataset
from ufer.data.manifest import read_manifest
from ufer.data.transforms import preprocess
from ufer.engine.plots import plot_confusion
from ufer.methods.base import Normalization, load_method
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
    return "\n".join(lines)


def evaluate(checkpoint: str | Path, manifest: str | Path, split: str = "test",
             out_dir: str | Path | None = None, batch_size: int = 256,
             image_size: int | None = None) -> dict[str, Any]:
    """Evaluate a ufer checkpoint on ``split`` of ``manifest``; write JSON, CSV and PNG.

    ``image_size`` defaults to the size stored in the checkpoint's data settings, else
    the manifest's own images.
    """
    method, settings = load_method(checkpoint)
    data = read_manifest(manifest)
    names = list(method.hparams.class_names or data.classes)
    if len(names) != data.num_classes:
        raise ValueError(f"{checkpoint} predicts {len(names)} classes but {manifest} has "
                         f"{data.num_classes}")
    image_size = image_size or settings.get("image_size")
    dataset = ManifestDataset(data, split, image_size)
    probs = predict_probs(method.net, dataset, method.normalization, batch_size)
    result = summarize(probs, dataset.labels, names, dataset.clean_labels)
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
