"""Why does template relabeling help or hurt? Diagnostics of MTAC / ULC-AG's memory templates.

``template_diagnostics`` runs the network over the (un-augmented) training split and
measures each link of the relabel chain of MTAC eqs 6-12 against the truth that synthetic
data carries:

- the AU branch: AUROC of the AU logits s for the offered AU labels, and the mean
  per-AU BCE next to the BCE of always predicting each AU's training frequency;
- the templates: mean pairwise cosine similarity (1 = all templates point the same way,
  nothing to choose between) and the accuracy of the nearest-template classifier
  (eq 11) against the clean and the given labels;
- the confidence alpha: AUROC of 1 - alpha for flipped labels, and the share of flipped
  labels in the relabel-eligible low-confidence group;
- the relabel rule (eq 12) applied to every sample now: how many would move and how many
  of those moves restore the clean label.

``TemplateDiagnostics`` appends one JSON line per epoch to ``RUN/template_diagnostics.jsonl``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchmetrics.functional.classification import binary_auroc

from ufer.data.dataset import ManifestDataset
from ufer.data.transforms import normalize, to_float
from ufer.methods.base import FERMethod


@torch.no_grad()
def _outputs(method: Any, dataset: ManifestDataset, batch_size: int = 256
             ) -> dict[str, torch.Tensor]:
    """alpha (N,), AU logits s (N, M), offered AUs and mask (N, M), in dataset order."""
    was_training = method.training
    method.eval()
    device = method.device
    parts: dict[str, list[torch.Tensor]] = {"alpha": [], "s": [], "au": [], "au_mask": []}
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        f, _ = method.net.features_and_logits(normalize(to_float(batch["image"].to(device))))
        alpha = (torch.sigmoid(method.confidence_head(f)).squeeze(1)
                 if method.confidence_head is not None else f.new_ones(f.shape[0]))
        parts["alpha"].append(alpha.cpu())
        parts["s"].append(method.au_head(f).cpu())
        parts["au"].append(batch["au"])
        parts["au_mask"].append(batch["au_mask"])
    method.train(was_training)
    return {k: torch.cat(v) for k, v in parts.items()}


def _auroc(scores: torch.Tensor, target: torch.Tensor) -> float | None:
    if target.numel() == 0 or bool(target.all()) or not bool(target.any()):
        return None
    return float(binary_auroc(scores, target.long()))


def template_diagnostics(method: FERMethod, dataset: ManifestDataset,
                         high_fraction: float | None = None) -> dict[str, Any]:
    """Measure the AU branch, templates, alpha and relabel rule of an MTAC-family method.

    Args:
        method: a method with ``au_head``, ``templates``, ``template_initialized`` and
            ``labels`` (MTAC, ULC-AG); its current weights are used as they are.
        dataset: its training split (the order of ``method.labels``), without augmentation.
        high_fraction: share of samples treated as high-confidence; the rest (lowest alpha
            over the whole split) is the eligible group. Default: the method's phi.

    Returns:
        A flat dict of floats (None where undefined, e.g. no clean labels): ``au_auroc``,
        ``au_bce``, ``au_bce_prior``, ``template_cosine``, ``template_acc_clean``,
        ``template_acc_given``, ``template_acc_current``, ``alpha_auroc``,
        ``eligible_flipped``, ``flipped``, ``would_move``, ``would_move_right``.
    """
    if getattr(method, "au_head", None) is None:
        raise ValueError(f"{type(method).__name__} has no AU branch: no templates to diagnose")
    phi = method.hparams.high_fraction if high_fraction is None else high_fraction
    out = _outputs(method, dataset)
    s, alpha, au, mask = out["s"], out["alpha"], out["au"], out["au_mask"]
    present = au >= method.hparams.au_threshold
    prior = (present & mask).sum(0).float() / mask.sum(0).clamp(min=1)  # per-AU frequency
    bce = F.binary_cross_entropy_with_logits(s, present.float(), reduction="none")
    prior_bce = F.binary_cross_entropy(prior.clamp(1e-4, 1 - 1e-4).expand_as(s),
                                       present.float(), reduction="none")
    aurocs = [_auroc(s[mask[:, m], m], present[mask[:, m], m]) for m in range(s.shape[1])]
    aurocs = [a for a in aurocs if a is not None]

    templates = method.templates.cpu()
    ready = method.template_initialized.cpu()
    t = F.normalize(templates[ready], dim=1)
    cos_t = t @ t.T
    off = ~torch.eye(len(t), dtype=torch.bool)
    cosine = F.normalize(s, dim=1) @ F.normalize(templates, dim=1).T
    nearest = cosine.masked_fill(~ready.unsqueeze(0), -2.0).argmax(1)

    labels = method.labels
    given, current, clean = (labels.original.cpu(), labels.current.cpu(), labels.clean.cpu())
    known = clean >= 0
    flipped = given != clean
    low = alpha <= alpha.quantile(1.0 - phi)
    own = cosine.gather(1, current.unsqueeze(1)).squeeze(1)
    move = ready[current] & (own < cosine.masked_fill(~ready.unsqueeze(0), -2.0).max(1).values)

    def share(a: torch.Tensor, within: torch.Tensor) -> float | None:
        return float(a[within].float().mean()) if bool(within.any()) else None

    return {
        "au_auroc": sum(aurocs) / len(aurocs) if aurocs else None,
        "au_bce": float(bce[mask].mean()), "au_bce_prior": float(prior_bce[mask].mean()),
        "template_cosine": float(cos_t[off].mean()) if len(t) > 1 else None,
        "template_acc_clean": share(nearest == clean, known),
        "template_acc_given": float((nearest == given).float().mean()),
        "template_acc_current": float((nearest == current).float().mean()),
        "alpha_auroc": _auroc(1.0 - alpha[known], flipped[known]),
        "flipped": share(flipped, known),
        "eligible_flipped": share(flipped, known & low),
        "would_move": float((move & low).float().mean()),
        "would_move_right": share(nearest == clean, known & move & low),
    }


class TemplateDiagnostics(pl.Callback):
    """Append ``template_diagnostics`` of every ``every``-th epoch to RUN/template_diagnostics.jsonl."""

    def __init__(self, dataset: ManifestDataset, path: str | Path, every: int = 1):
        self.dataset, self.path, self.every = dataset, Path(path), every

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: Any) -> None:
        epoch = trainer.current_epoch
        if trainer.global_rank != 0 or (epoch + 1) % self.every:
            return
        row = {"epoch": epoch, **template_diagnostics(pl_module, self.dataset)}
        with self.path.open("a") as fh:
            fh.write(json.dumps(row) + "\n")


def format_diagnostics(diag: dict[str, Any]) -> str:
    """One line: the numbers of ``template_diagnostics`` that say whether relabeling can work."""
    def pct(key: str) -> str:
        value = diag.get(key)
        return "n/a" if value is None else f"{100 * value:.1f}%"

    def num(key: str) -> str:
        value = diag.get(key)
        return "n/a" if value is None else f"{value:.3f}"

    return (f"AU AUROC {num('au_auroc')} (BCE {num('au_bce')} vs {num('au_bce_prior')} for "
            f"AU frequencies); template cosine {num('template_cosine')}; nearest template = "
            f"clean label {pct('template_acc_clean')}; alpha AUROC for wrong labels "
            f"{num('alpha_auroc')}; eligible group {pct('eligible_flipped')} wrong "
            f"(all {pct('flipped')}); would move {pct('would_move')}, right "
            f"{pct('would_move_right')}")
