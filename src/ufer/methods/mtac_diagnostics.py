"""Why does template relabeling help or hurt? Diagnostics of MTAC / ULC-AG's memory templates
(``MTAC.diagnostics``, shown by ``ufer report``).

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
  of those moves restore the clean label;
- optionally (``probe_steps``) a probe: a fresh AU head of the same shape fitted with Adam
  on the frozen features, and the same template numbers for it. A probe far better than the
  branch means the features carry the AU information and the branch did not learn it.
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ufer.data.dataset import ManifestDataset
from ufer.data.transforms import preprocess
from ufer.losses.au import weighted_au_bce
from ufer.methods.relabel import batch_centers, relabel_nearest_template
from ufer.metrics import auroc
from ufer.models.au_graph import AUGraphHead


@torch.no_grad()
def _outputs(method: Any, dataset: ManifestDataset, batch_size: int = 256
             ) -> dict[str, torch.Tensor]:
    """alpha (N,), features f (N, D), AU logits s (N, M), offered AUs and mask (N, M)."""
    was_training = method.training
    method.eval()
    device = method.device
    parts: dict[str, list[torch.Tensor]] = {"alpha": [], "f": [], "s": [], "au": [],
                                            "au_mask": []}
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        images = preprocess(batch["image"].to(device), *method.normalization)
        f, _ = method.net.features_and_logits(images)
        parts["alpha"].append(method.confidence(f).cpu())
        parts["f"].append(f.cpu())
        parts["s"].append(method.au_head(f).cpu())
        parts["au"].append(batch["au"])
        parts["au_mask"].append(batch["au_mask"])
    method.train(was_training)
    return {k: torch.cat(v) for k, v in parts.items()}


def _auroc(scores: torch.Tensor, target: torch.Tensor) -> float | None:
    return auroc(scores.numpy(), target.numpy())


def _share(a: torch.Tensor, within: torch.Tensor) -> float | None:
    return float(a[within].float().mean()) if bool(within.any()) else None


def _template_stats(s: torch.Tensor, templates: torch.Tensor, ready: torch.Tensor,
                    labels: Any, low: torch.Tensor) -> dict[str, float | None]:
    """Template numbers for AU logits s (N, M) and templates (C, M) (eqs 11-12)."""
    t = F.normalize(templates[ready], dim=1)
    off = ~torch.eye(len(t), dtype=torch.bool)
    nearest = (F.normalize(s, dim=1) @ F.normalize(templates, dim=1).T
               ).masked_fill(~ready.unsqueeze(0), -2.0).argmax(1)
    given, current, clean = (labels.original.cpu(), labels.current.cpu(), labels.clean.cpu())
    known = clean >= 0
    move = relabel_nearest_template(s, templates, current, low, ready) != current
    return {
        "template_cosine": float((t @ t.T)[off].mean()) if len(t) > 1 else None,
        "template_acc_clean": _share(nearest == clean, known),
        "template_acc_given": float((nearest == given).float().mean()),
        "template_acc_current": float((nearest == current).float().mean()),
        "would_move": float(move.float().mean()),
        "would_move_right": _share(nearest == clean, known & move),
    }


def refit_au_head(method: Any, f: torch.Tensor, present: torch.Tensor, mask: torch.Tensor,
                  steps: int = 600, seed: int = 0) -> torch.Tensor:
    """AU logits (N, M) of a fresh AU head shaped like ``method.au_head``, fitted on frozen
    features f (N, D) to the AU presence ``present`` (N, M) where ``mask`` (N, M).

    Adam (lr 1e-3, batches of 128) on the masked BCE of MTAC eq 8 without alpha; the
    probe of ``template_diagnostics``.
    """
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # a fresh head, initialised like the branch's own
        head = AUGraphHead(f.shape[1], method.au_head.adjacency.cpu(), method.hparams.node_dim)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.Adam(head.parameters(), lr=1e-3)
    with torch.enable_grad():
        for _ in range(steps):
            i = torch.randint(0, len(f), (min(128, len(f)),), generator=generator)
            loss = weighted_au_bce(head(f[i]), present[i].float(), mask[i])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        return head(f)


def template_diagnostics(method: Any, dataset: ManifestDataset,
                         high_fraction: float | None = None,
                         probe_steps: int = 0) -> dict[str, Any]:
    """Measure the AU branch, templates, alpha and relabel rule of an MTAC-family method.

    Args:
        method: a method with ``au_head``, ``templates``, ``template_initialized`` and
            ``samples`` (MTAC, ULC-AG); its current weights are used as they are.
        dataset: its training split (the order of ``method.samples``), without augmentation.
        high_fraction: share of samples treated as high-confidence; the rest (lowest alpha
            over the whole split) is the eligible group. Default: the method's phi.
        probe_steps: > 0 also fits a fresh AU head for this many Adam steps on the frozen
            features (``refit_au_head``) and reports ``probe_*`` numbers, its templates
            being the alpha-weighted class means of its logits over the GIVEN labels
            (eq 9 over the whole split, before any relabeling could drift them).

    Returns:
        A flat dict of floats (None where undefined, e.g. no clean labels): ``au_auroc``,
        ``au_bce``, ``au_bce_prior``, ``template_cosine``, ``template_acc_clean``,
        ``template_acc_given``, ``template_acc_current``, ``alpha_auroc``,
        ``eligible_flipped``, ``flipped``, ``would_move``, ``would_move_right`` (+ with a
        probe: ``probe_au_auroc``, ``probe_template_cosine``, ``probe_template_acc_clean``,
        ``probe_would_move``, ``probe_would_move_right`` ...).
    """
    if getattr(method, "au_head", None) is None:
        raise ValueError(f"{type(method).__name__} has no AU branch: no templates to diagnose")
    phi = method.hparams.high_fraction if high_fraction is None else high_fraction
    out = _outputs(method, dataset)
    s, alpha, mask = out["s"], out["alpha"], out["au_mask"]
    present = (out["au"] >= method.hparams.au_threshold) & mask
    prior = present.sum(0).float() / mask.sum(0).clamp(min=1)  # per-AU frequency
    bce = F.binary_cross_entropy_with_logits(s, present.float(), reduction="none")
    prior_bce = F.binary_cross_entropy(prior.clamp(1e-4, 1 - 1e-4).expand_as(s),
                                       present.float(), reduction="none")
    labels = method.samples
    given, clean = labels.original.cpu(), labels.clean.cpu()
    known, flipped = clean >= 0, given != clean
    low = alpha <= alpha.quantile(1.0 - phi)
    result: dict[str, Any] = {
        "au_auroc": _mean_auroc(s, present, mask),
        "au_bce": float(bce[mask].mean()), "au_bce_prior": float(prior_bce[mask].mean()),
        **_template_stats(s, method.templates.cpu(), method.template_initialized.cpu(),
                          labels, low),
        "alpha_auroc": _auroc(1.0 - alpha[known], flipped[known]),
        "flipped": _share(flipped, known),
        "eligible_flipped": _share(flipped, known & low),
    }
    if probe_steps > 0:
        probe = refit_au_head(method, out["f"], present, mask, probe_steps)
        sums, counts = batch_centers(probe, given, method.hparams.num_classes, alpha)
        stats = _template_stats(probe, sums / counts.clamp(min=1).unsqueeze(1), counts > 0,
                                labels, low)
        result["probe_au_auroc"] = _mean_auroc(probe, present, mask)
        result.update({f"probe_{k}": v for k, v in stats.items()})
    return result


def _mean_auroc(s: torch.Tensor, present: torch.Tensor, mask: torch.Tensor) -> float | None:
    """Mean over AUs of the AUROC of logits s[:, m] for presence, on known entries."""
    values = [_auroc(s[mask[:, m], m], present[mask[:, m], m]) for m in range(s.shape[1])]
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None
