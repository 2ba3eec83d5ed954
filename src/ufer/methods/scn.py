"""SCN: Self-Cure Network (Wang et al., CVPR 2020), on the shared core.

Three parts (shared/spec/baselines.md, shared/spec/peers.md section 4.1):

1. Self-attention importance: alpha_i = sigmoid(Linear(f_i)), a training-only head; the
   logits are scaled by alpha inside the softmax (``confidence_weighted_ce``).
2. Rank regularization: the top ``high_fraction`` of the batch by alpha is the high group;
   L_RR = max(0, rank_margin - (mean_H alpha - mean_L alpha)); loss = CE + L_RR.
3. Relabeling from epoch ``relabel_start`` (0-based): label := argmax when
   max_j p_j - p_y > ``relabel_margin`` (p from the alpha-scaled logits of the same
   forward), for the low group (paper) or every sample (public code).

The latest alpha of every training sample is kept in the per-sample store
(``samples.confidence``, NaN = not seen yet); ``sample_uncertainty`` is 1 - alpha.
"""
from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from ufer._registry import register_method
from ufer.losses.classification import (
    confidence_weighted_ce,
    rank_regularization,
    split_high_low,
)
from ufer.methods.base import Batch, FERMethod, decayed_groups
from ufer.methods.relabel import relabel_margin


@register_method("scn")
class SCN(FERMethod):
    """Self-Cure Network.

    Args:
        high_fraction: beta, share of the batch in the high-importance group (paper 0.7).
        rank_margin: m1 (delta_1) of the rank regularization (paper 0.15 at batch 1024;
            the authors' README recommends 0.07 at batch 64).
        rank_weight: weight of L_RR in the total loss (paper 1).
        relabel: switch the relabeling module on or off (the paper's ablation).
        relabel_start: first epoch (0-based) that relabels; the paper's epoch 10 (1-based)
            is 9.
        relabel_margin: m2 (delta_2) of the relabel rule (paper 0.2).
        relabel_scope: ``low``: only the low-importance group may move (paper); ``all``:
            every sample (the public code).
        **kwargs: the ``FERMethod`` arguments (backbone, sizes, optimizer, schedule).
    """

    uncertainty_name = "1 - alpha"
    paper_config = "scn_rafdb.yaml"

    def __init__(self, high_fraction: float = 0.7, rank_margin: float = 0.15,
                 rank_weight: float = 1.0, relabel: bool = True, relabel_start: int = 9,
                 relabel_margin: float = 0.2, relabel_scope: Literal["low", "all"] = "low",
                 **kwargs: Any):
        super().__init__(**kwargs)
        if relabel_scope not in ("low", "all"):
            raise ValueError(f"relabel_scope must be 'low' or 'all', got {relabel_scope!r}")
        if not 0.0 < high_fraction < 1.0:
            raise ValueError(f"high_fraction must be in (0, 1), got {high_fraction}")
        self.attention = nn.Linear(self.net.num_features, 1)
        self.samples.add("confidence")  # latest alpha per training sample, NaN = unseen

    # ----------------------------------------------------------------- training contract
    def forward_train(self, batch: Batch) -> dict[str, Tensor]:
        f, logits = self.net.features_and_logits(batch["image"])
        alpha = torch.sigmoid(self.attention(f)).squeeze(1)
        return {"features": f, "logits": logits, "alpha": alpha}

    def training_losses(self, batch: Batch, out: dict[str, Tensor]) -> dict[str, Tensor]:
        hp = self.hparams
        ce = confidence_weighted_ce(out["logits"], self.targets(batch), out["alpha"])
        rr = rank_regularization(out["alpha"], hp.high_fraction, hp.rank_margin)
        return {"loss": ce + hp.rank_weight * rr, "ce": ce, "rr": rr,
                "alpha": out["alpha"].detach().mean()}

    def update_state(self, batch: Batch, out: dict[str, Tensor]) -> None:
        hp = self.hparams
        index, alpha = batch["index"], out["alpha"]
        self.samples.write(index, confidence=alpha)
        if not hp.relabel or self.current_epoch < hp.relabel_start:
            return
        labels = self.targets(batch)
        probs = (out["logits"] * alpha.unsqueeze(1)).softmax(dim=1)
        eligible = (~split_high_low(alpha, hp.high_fraction) if hp.relabel_scope == "low"
                    else torch.ones_like(labels, dtype=torch.bool))
        new = relabel_margin(probs, labels, eligible, hp.relabel_margin)
        self.samples.relabel(index, new, self.current_epoch)

    # ----------------------------------------------------------------- hooks for the engine
    @property
    def relabels(self) -> bool:
        return bool(self.hparams.relabel)

    def sample_uncertainty(self) -> Tensor:
        """1 - alpha of each training sample's latest step (N,), NaN where unseen."""
        return 1.0 - self.samples.confidence

    def param_groups(self) -> list[dict[str, Any]]:
        hp = self.hparams
        return super().param_groups() + decayed_groups(self.attention.parameters(), hp.lr,
                                                       hp.weight_decay)
