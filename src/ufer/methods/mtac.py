"""mtac: multi-task assisted correction (MTAC, TMM 2023); ULC-AG (ICPR 2022) is a preset.

Three training-only branches on the pooled backbone feature f (shared/spec/mtac.md):

- target: confidence alpha = sigmoid(Linear(f)) scales the logits inside the softmax
  (MTAC eqs 1-2), optionally times the class-oriented weight gamma_{y} (ULC-AG eq 3),
  optionally with SCN's rank regularization (ULC-AG eq 4);
- VA: (valence, arousal) = tanh(Linear(f)), trained with the class-balanced CCC loss
  (MTAC eqs 3-5), gamma weighting the classes;
- AU: per-AU node features, two GCN layers over the row-normalised AU co-occurrence graph,
  AU logits s (MTAC eqs 6-8); alpha-weighted centers of s form per-class memory templates
  (eqs 9-10), and low-confidence samples whose s is nearer another class's template are
  relabeled (eqs 11-12) through the persistent ``LabelState``.

Total loss: MTAC eq 13 ``lambda1 (L_wce + L_w3c) + lambda2 L_wau`` or ULC-AG eq 11
``lambda1 / 2 (L_wce + L_rr) + lambda2 L_au`` with the ramps of eqs 14-15. Inference is
``self.net`` only: a plain backbone + linear classifier.

ULC-AG = this class with ``rank_regularization=True, gamma="target", va_branch=False,
template_from="high", au_grad_to_backbone=True, loss_form="ulcag"``
(``configs/paper/ulcag_rafdb.yaml``).
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ufer._registry import register_method
from ufer.losses.au import weighted_au_bce
from ufer.losses.ccc import class_balanced_ccc_loss
from ufer.losses.classification import (
    class_weights,
    confidence_weighted_ce,
    split_high_low,
)
from ufer.losses.classification import rank_regularization as rank_regularization_loss
from ufer.methods.base import Batch, FERMethod, decayed_groups
from ufer.methods.relabel import (
    batch_centers,
    estimated_move_precision,
    keep_agreeing,
    keep_confident,
    relabel_nearest_template,
    update_templates,
)
from ufer.methods.schedules import ramp_lambda1, ramp_lambda2, template_weight
from ufer.methods.state import all_reduce_sum, unused_parameters_term
from ufer.models.au_graph import (
    AUGraphHead,
    au_cooccurrence_graph,
    ones_graph,
    random_graph,
    row_normalize,
)

log = logging.getLogger(__name__)

_CHOICES = {"gamma": ("none", "target", "va", "auto"), "au_graph": ("data", "random", "ones"),
            "template_from": ("all", "high"), "relabel_scope": ("low", "all"),
            "loss_form": ("mtac", "ulcag"), "au_start_mode": ("branch", "gradient"),
            "template_labels": ("current", "given"), "template_h": ("global", "epoch")}


@register_method("mtac")
class MTAC(FERMethod):
    """MTAC / ULC-AG (see module docstring); defaults are the MTAC paper's.

    Args:
        gamma: where the class-oriented weight gamma_j = 1 - N_j / N (MTAC eq 4, over the
            batch's CURRENT labels, summed over processes) goes: ``none``; ``target``
            (logits scaled by alpha_i * gamma_{y_i}, ULC-AG eq 3); ``va`` (weights of the
            per-class CCC terms, MTAC eq 5); ``auto`` = ``va`` when the VA branch is active,
            else ``target`` (what MTAC does on RAF-DB). MTAC table II.
        target_branch: apply alpha (and gamma/rank regularization) to the classification
            loss; False = plain CE and no confidence head, alpha = 1 everywhere (MTAC table I
            and ULC-AG table I rows without the target branch).
        rank_regularization: add L_rr = max(0, theta - (mean_H alpha - mean_L alpha))
            (ULC-AG eq 4; MTAC drops it).
        high_fraction: phi, fraction of a batch in the high-confidence group H (0.8); the
            rest, L, is eligible for relabeling and H feeds ``template_from="high"``.
        rank_margin: theta of L_rr (0.15).
        va_branch: the VA regression branch (MTAC eqs 3-5); off by itself without VA data.
        au_branch: the AU graph branch, templates and relabeling (MTAC eqs 6-12); off by
            itself when the data has no AU columns (the AU head is then not built).
        au_graph: adjacency of the GCN: ``data`` = P(AU_p | AU_q) of the training split
            (eq 6), ``random`` = U(0, 1) fixed at init, ``ones`` = fully connected (MTAC
            table III; ULC-AG table II).
        au_graph_path: .pt / .npy graph computed on another dataset (MTAC table IV; see
            ``save_au_graph``); replaces ``au_graph`` when given.
        au_graph_seed: seed of the ``random`` graph.
        au_threshold: AU present when its value is >= this (graph counts only).
        au_grad_to_backbone: let the AU loss train the backbone (ULC-AG: True); MTAC
            detaches f before the AU branch ("does not participate in the update of the
            backbone").
        au_lr: learning rate of the AU branch's parameters (own group; 0.005).
        node_dim: B, node feature and GCN width (64).
        template_from: samples whose alpha * s form the batch centers (eq 9): ``all`` of
            class j (MTAC) or only the high-confidence group (ULC-AG eq 8).
        tau: template update rate factor of w_h = exp(-tau h) (eq 10; 0.9).
        template_w_min: floor of w_h; 0 = the literal eq 10 (templates freeze after ~8
            batches), 0.01 = an exponential moving average (shared/spec/mtac.md).
        relabel: relabel eligible samples to the nearest template (eqs 11-12).
        relabel_start: first 0-based epoch in which relabeling runs. The paper's "after 10
            epochs" = after 10 complete epochs = 0-based epoch 10 (the 11th epoch): 10.
        relabel_scope: eligible samples: the batch's low-confidence group L (``low``, the
            papers) or ``all``.
        ramp_H: H of the ramps lambda1/lambda2 (MTAC eqs 14-15; ULC-AG's beta), in epochs.
        loss_form: total loss ``mtac`` = lambda1 (L_wce + L_w3c + L_rr) + lambda2 L_wau
            (eq 13, L_rr only when switched on); ``ulcag`` = lambda1 / 2 (L_wce + L_rr
            + L_w3c) + lambda2 L_au (ULC-AG eq 11; L_w3c only if the VA branch is on).
        au_start_epoch: first 0-based epoch of the AU branch (loss, templates, h counter);
            ULC-AG trains it only after 10 epochs; MTAC from the start (0).
        au_source: where the data's AU labels come from, recorded in hparams and logs:
            ``dataset`` | ``openface`` | ``pseudo`` | ``prior``.
        au_start_mode: what ``au_start_epoch`` delays. ULC-AG says the AU branch "will not
            participate in the network optimization until 10 epochs to obtain initial
            templates"; two readings: ``branch`` (literal, today's default: no AU loss and no
            templates before it, the head starts from random then) or ``gradient`` (AU head
            and templates from epoch 0; only the AU loss's gradient into the backbone waits).
        template_labels: the labels the batch centers of eq 9 group by: ``current`` (the
            corrected labels, the papers' literal reading; a wrong move shifts the template
            and can cause more moves) or ``given`` (the labels as given).
        template_h: eq 10's batch counter h: ``global`` (counted from the first AU-active
            batch of the run) or ``epoch`` (restarting at every epoch: "h denotes the batch
            index").
        au_lr_decay: whether the per-epoch lr schedule (``multistep``/``exponential``) also
            decays the AU branch's ``au_lr``. The paper names 0.005 "the decayed learning
            rate" of an Adam optimizer and does not say; True decays it with the rest.
        relabel_margin: ours, 0 in the paper: eq 12 moves a label only when its own template
            is farther than the nearest one by more than this cosine distance.
        relabel_min_val_acc: ours, 0 in the paper: relabeling waits until the validation
            accuracy has reached this value once (no relabeling while the model is weak).
        relabel_agreement: ours, off in the paper: eq 12 moves a label only to the class the
            classifier also predicts (argmax of the logits), so one branch's bias towards a
            class cannot move labels on its own.
        relabel_min_prob: ours, 0 in the paper: eq 12 moves a label only when the classifier
            gives the new class at least this softmax probability. Against the moves of
            clean labels at 0 % noise, where template and classifier are wrong together;
            0.9 reduced them but did not stop them (docs/benchmarks.md).
        relabel_min_precision: ours, 0 in the paper: relabeling in an epoch runs only when,
            at the last validation, the estimated share of moves that fix a wrong label
            (``relabel.estimated_move_precision``: the rate at which the rule above, with
            every other switch, proposes moves on the training batches of the epoch against
            the rate at which it proposes moving the validation split's labels) reached this.
            0.5 = moves that fix at least as many labels as they break. Needs a validation
            split; closed until the first validation.
        confidence_floor: ours, 0 in the paper: alpha = floor + (1 - floor) sigmoid(.), so
            the logits are never scaled below ``floor``. Against the collapse measured under
            Adam 0.01, where alpha fell to ~0.0005 and the target branch stayed at chance for
            5 to 17 epochs (docs/benchmarks.md).
        confidence_lr: ours, None in the paper (= ``lr``): learning rate of the confidence
            head (decayed by the schedule like ``lr``). Against alpha's saturation at the
            floor under Adam 0.01: every step moves all of the head's weights by about the
            rate in one direction, and on the non-negative pooled features that drove the
            logit of alpha to about -20 within two epochs, where sigmoid has no gradient
            left (docs/benchmarks.md).
        **kwargs: the ``FERMethod`` arguments (backbone, sizes, optimizer, schedule).
    """

    uncertainty_name = "1 - alpha"
    paper_config = "mtac_rafdb.yaml"

    def __init__(self, gamma: Literal["none", "target", "va", "auto"] = "auto",
                 target_branch: bool = True, rank_regularization: bool = False,
                 high_fraction: float = 0.8, rank_margin: float = 0.15,
                 va_branch: bool = True, au_branch: bool = True,
                 au_graph: Literal["data", "random", "ones"] = "data",
                 au_graph_path: str | None = None, au_graph_seed: int = 0,
                 au_threshold: float = 0.5, au_grad_to_backbone: bool = False,
                 au_lr: float = 0.005, node_dim: int = 64,
                 template_from: Literal["all", "high"] = "all", tau: float = 0.9,
                 template_w_min: float = 0.01, relabel: bool = True, relabel_start: int = 10,
                 relabel_scope: Literal["low", "all"] = "low", ramp_H: float = 5.0,
                 loss_form: Literal["mtac", "ulcag"] = "mtac", au_start_epoch: int = 0,
                 au_source: str = "dataset",
                 au_start_mode: Literal["branch", "gradient"] = "branch",
                 template_labels: Literal["current", "given"] = "current",
                 template_h: Literal["global", "epoch"] = "global", au_lr_decay: bool = True,
                 relabel_margin: float = 0.0, relabel_min_val_acc: float = 0.0,
                 relabel_agreement: bool = False, relabel_min_prob: float = 0.0,
                 relabel_min_precision: float = 0.0, confidence_floor: float = 0.0,
                 confidence_lr: float | None = None, **kwargs: Any):
        super().__init__(**kwargs)
        for name, choices in _CHOICES.items():
            if locals()[name] not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {locals()[name]!r}")
        for name in ("relabel_min_prob", "relabel_min_precision"):
            if not 0.0 <= locals()[name] <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {locals()[name]}")
        if confidence_lr is not None and confidence_lr <= 0:
            raise ValueError(f"confidence_lr must be positive, got {confidence_lr}")
        if not 0.0 <= confidence_floor < 1.0:
            raise ValueError(f"confidence_floor must be in [0, 1), got {confidence_floor}")
        if not 0.0 < high_fraction < 1.0:
            raise ValueError(f"high_fraction must be in (0, 1), got {high_fraction}")
        hp = self.hparams
        dim, num_classes, num_aus = self.net.num_features, hp.num_classes, hp.num_aus

        self.confidence_head = nn.Linear(dim, 1) if target_branch else None
        self.va_active = va_branch and hp.has_va
        if va_branch and not hp.has_va:
            log.info("MTAC: VA branch off: the data has no valence/arousal")
        self.va_head = nn.Linear(dim, 2) if self.va_active else None

        self.au_active = au_branch and num_aus > 0
        if au_branch and num_aus == 0:
            log.info("MTAC: AU branch off (no AU head, templates or relabeling): "
                     "the data has no AU columns")
        self.au_head = None
        if self.au_active:
            if au_graph == "random" and au_graph_path is None:
                adjacency = random_graph(num_aus, torch.Generator().manual_seed(au_graph_seed))
            else:  # ones; data / file graphs replace this in setup_from_data
                adjacency = ones_graph(num_aus)
            self.au_head = AUGraphHead(dim, adjacency, node_dim)
            log.info("MTAC: AU branch on, %d AUs from source %r, graph %s", num_aus, au_source,
                     au_graph_path or au_graph)
        self.relabel_active = relabel and self.au_active
        if relabel and not self.au_active:
            log.info("MTAC: relabeling off: it needs the AU branch's templates")

        if gamma == "auto":
            gamma = "va" if self.va_active else "target"
        if gamma == "va" and not self.va_active:
            log.info("MTAC: gamma='va' but the VA branch is off: class weights not applied")
            gamma = "none"
        if gamma == "target" and not target_branch:
            gamma = "none"
        self.gamma_placement = gamma

        self.register_buffer("templates", torch.zeros(num_classes, num_aus))
        self.register_buffer("template_initialized", torch.zeros(num_classes, dtype=torch.bool))
        self.register_buffer("template_step", torch.zeros((), dtype=torch.long))
        # relabeling allowed (relabel_min_val_acc reached once); saved, so a resume agrees
        self.register_buffer("relabel_gate", torch.tensor(relabel_min_val_acc <= 0.0))
        # relabeling allowed this epoch by relabel_min_precision (set at each validation)
        self.register_buffer("precision_gate", torch.tensor(relabel_min_precision <= 0.0))
        self.checks_precision = self.relabel_active and relabel_min_precision > 0
        self._proposed = {"train": [0, 0], "val": [0, 0]}  # [moves, samples] this epoch
        self.samples.add("confidence")  # latest alpha per training sample, NaN = unseen
        self._h: int | None = None  # Python mirror of template_step (no device sync per step)
        self._epoch_h = 0  # batches since the epoch started (template_h="epoch")

    # ----------------------------------------------------------------- data statistics
    def setup_from_data(self, datamodule: Any) -> None:
        """Fill the AU graph from the training split (``data``) or a file (``au_graph_path``)."""
        hp = self.hparams
        if self.au_head is None or (hp.au_graph != "data" and hp.au_graph_path is None):
            return
        train = datamodule.train_set
        if hp.au_graph_path is not None:
            graph = load_au_graph(hp.au_graph_path, list(train.au_names))
        else:
            au, mask = train.au_matrix()
            graph = au_cooccurrence_graph(au, mask, hp.au_threshold)
        if graph.shape != self.au_head.adjacency.shape:
            raise ValueError(f"AU graph has shape {tuple(graph.shape)} but the data has "
                             f"{hp.num_aus} AUs")
        self.au_head.adjacency.copy_(row_normalize(graph.float()).to(self.au_head.adjacency))
        log.info("MTAC: AU graph from %s", hp.au_graph_path or f"the training split "
                 f"({len(train)} samples, threshold {hp.au_threshold})")

    # ----------------------------------------------------------------- training
    def _au_started(self) -> bool:
        return self.current_epoch >= self.hparams.au_start_epoch

    def _au_on(self) -> bool:
        """The AU branch runs (loss, templates): from au_start_epoch in the ``branch``
        reading, from the start in the ``gradient`` one."""
        return self.au_head is not None and (self.hparams.au_start_mode == "gradient"
                                             or self._au_started())

    def forward_train(self, batch: Batch) -> dict[str, Tensor]:
        hp = self.hparams
        f, logits = self.net.features_and_logits(batch["image"])
        out = {"features": f, "logits": logits}
        out["alpha"] = self.confidence(f)
        if self.va_head is not None:
            out["va_pred"] = torch.tanh(self.va_head(f))
        if self._au_on():
            to_backbone = hp.au_grad_to_backbone and self._au_started()
            out["au_logits"] = self.au_head(f if to_backbone else f.detach())
        return out

    def confidence(self, f: Tensor) -> Tensor:
        """alpha_i = sigmoid(Linear(f_i)) (MTAC eq 1), lifted to [floor, 1] by
        ``confidence_floor`` (ours; 0 is the paper); 1 without the target branch. (N,)."""
        if self.confidence_head is None:
            return f.new_ones(f.shape[0])
        floor = self.hparams.confidence_floor
        return floor + (1.0 - floor) * torch.sigmoid(self.confidence_head(f)).squeeze(1)

    def batch_gamma(self, labels: Tensor) -> Tensor:
        """gamma_j = 1 - N_j / N over the batch (all processes' batches together), (C,)."""
        counts = torch.bincount(labels, minlength=self.hparams.num_classes)
        return class_weights(all_reduce_sum(counts))

    def training_losses(self, batch: Batch, out: dict[str, Tensor]) -> dict[str, Tensor]:
        hp = self.hparams
        y, logits, alpha = self.targets(batch), out["logits"], out["alpha"]
        zero = logits.new_zeros(())
        gamma = self.batch_gamma(y) if self.gamma_placement != "none" else None
        if self.confidence_head is not None:
            scale = gamma[y] if self.gamma_placement == "target" else None
            wce = confidence_weighted_ce(logits, y, alpha, scale)
            rr = (rank_regularization_loss(alpha, hp.high_fraction, hp.rank_margin)
                  if hp.rank_regularization else zero)
        else:
            wce, rr = F.cross_entropy(logits, y), zero
        ccc = zero
        if "va_pred" in out and "va" in batch:
            ccc = class_balanced_ccc_loss(out["va_pred"], batch["va"], batch["va_mask"], y,
                                          hp.num_classes,
                                          gamma if self.gamma_placement == "va" else None)
        if "au_logits" in out and "au" in batch:
            au = weighted_au_bce(out["au_logits"], batch["au"], batch["au_mask"], alpha)
        else:  # AU branch not started yet (DDP still needs a zero gradient for its parameters)
            au = zero + unused_parameters_term(self.au_head)
        lambda1 = ramp_lambda1(self.current_epoch, hp.ramp_H)
        lambda2 = ramp_lambda2(self.current_epoch, hp.ramp_H)
        if hp.loss_form == "mtac":
            total = lambda1 * (wce + ccc + rr) + lambda2 * au
        else:
            total = lambda1 / 2.0 * (wce + rr + ccc) + lambda2 * au
        return {"loss": total, "wce": wce, "ccc": ccc, "au": au, "rr": rr,
                "lambda1": zero + lambda1, "lambda2": zero + lambda2}

    @torch.no_grad()
    def update_state(self, batch: Batch, out: dict[str, Tensor]) -> None:
        """Record alpha; update the templates (eq 10); relabel eligible samples (eq 12)."""
        hp = self.hparams
        alpha, index = out["alpha"], batch["index"]
        self.samples.write(index, confidence=alpha)
        if "au_logits" not in out:
            return
        s, y = out["au_logits"], self.targets(batch)
        grouped = y if hp.template_labels == "current" else self.samples.original[index]
        high = split_high_low(alpha, hp.high_fraction)
        sums, counts = batch_centers(s, grouped, hp.num_classes, alpha,
                                     high if hp.template_from == "high" else None)
        sums, counts = all_reduce_sum(sums), all_reduce_sum(counts)
        if self._h is None:
            self._h = int(self.template_step)
        h = self._h if hp.template_h == "global" else self._epoch_h
        w = template_weight(h, hp.tau, hp.template_w_min)
        self.templates.copy_(update_templates(self.templates, sums, counts, w,
                                              self.template_initialized))
        self.template_initialized |= counts > 0
        self.template_step += 1
        self._h += 1
        self._epoch_h += 1
        relabel_now = (self.relabel_active and self.current_epoch >= hp.relabel_start
                       and bool(self.relabel_gate & self.precision_gate))
        if relabel_now or self.checks_precision:
            new = self.propose_labels(s, y, high, out.get("logits"))
            self._count("train", new, y)
            if relabel_now:
                self.samples.relabel(index, new, self.current_epoch)

    @torch.no_grad()
    def propose_labels(self, s: Tensor, labels: Tensor, high: Tensor,
                       logits: Tensor | None) -> Tensor:
        """Eq 12's nearest-template labels (MTAC eqs 11-12) of the eligible samples, kept
        only where ``relabel_agreement`` / ``relabel_min_prob`` allow; (N,) int64.

        Args:
            s: (N, M) AU logits; labels: (N,) current labels; high: (N,) bool high group;
            logits: (N, C) classifier logits (needed by those two switches only).
        """
        hp = self.hparams
        eligible = ~high if hp.relabel_scope == "low" else torch.ones_like(high)
        new = relabel_nearest_template(s, self.templates, labels, eligible,
                                       self.template_initialized, margin=hp.relabel_margin)
        if hp.relabel_agreement:
            new = keep_agreeing(new, labels, logits.argmax(1))
        if hp.relabel_min_prob > 0:
            new = keep_confident(new, labels, logits.softmax(1), hp.relabel_min_prob)
        return new

    def _count(self, split: str, new: Tensor, labels: Tensor) -> None:
        if self.checks_precision:  # the move count stays on the device: no sync per step
            counts = self._proposed[split]
            counts[0] = counts[0] + (new != labels).sum()
            counts[1] += labels.numel()

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        """Accuracy; with ``relabel_min_precision`` also the moves the relabel rule would make
        on the validation labels (one forward serves both)."""
        if not self.checks_precision:
            return super().validation_step(batch, batch_idx)
        f, logits = self.net.features_and_logits(batch["image"])
        self._eval_step(batch, "val", logits)
        high = split_high_low(self.confidence(f), self.hparams.high_fraction)
        new = self.propose_labels(self.au_head(f), batch["label"], high, logits)
        self._count("val", new, batch["label"])

    def on_train_start(self) -> None:
        super().on_train_start()
        self._h = None  # re-read from the (possibly restored) template_step buffer

    def on_train_epoch_start(self) -> None:
        self._epoch_h = 0
        self._proposed["train"] = [0, 0]

    def on_validation_epoch_start(self) -> None:
        self._proposed["val"] = [0, 0]

    def on_validation_epoch_end(self) -> None:
        """Open the relabel gate once the validation accuracy reaches relabel_min_val_acc;
        set this epoch's precision gate from the moves proposed on train and validation."""
        if self.trainer.state.fn != "fit":
            return
        if (not bool(self.relabel_gate)
                and float(self.val_acc.compute()) >= self.hparams.relabel_min_val_acc):
            self.relabel_gate.fill_(True)
        if self.checks_precision:
            self._update_precision_gate()

    def _update_precision_gate(self) -> None:
        counts = all_reduce_sum(torch.tensor([float(c) for c in self._proposed["train"]
                                              + self._proposed["val"]],
                                             dtype=torch.float64, device=self.device))
        train_moves, train_seen, val_moves, val_seen = counts.tolist()
        if val_seen == 0:
            log.warning("MTAC: relabel_min_precision needs a validation split; "
                        "relabeling stays off")
        precision = estimated_move_precision(train_moves, train_seen, val_moves, val_seen)
        self.precision_gate.fill_(precision >= self.hparams.relabel_min_precision)
        rates = {"train_move_rate": train_moves / max(train_seen, 1.0),
                 "val_move_rate": val_moves / max(val_seen, 1.0),
                 "est_precision": precision, "precision_gate": float(self.precision_gate)}
        for name, value in rates.items():
            self.log(f"relabel/{name}", value, on_step=False, on_epoch=True, sync_dist=False)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Also accept checkpoints written before the relabel gates existed: their runs had no
        such switch, so the gates are open."""
        super().on_load_checkpoint(checkpoint)
        for gate in ("relabel_gate", "precision_gate"):
            checkpoint["state_dict"].setdefault(gate, torch.tensor(True))
        self._h = None

    # ----------------------------------------------------------------- hooks for the engine
    @property
    def relabels(self) -> bool:
        return self.relabel_active

    def sample_uncertainty(self) -> Tensor | None:
        """1 - alpha of each training sample's latest step (N,), NaN where unseen; None
        without the target branch (alpha is then 1 for everyone)."""
        return None if self.confidence_head is None else 1.0 - self.samples.confidence

    @torch.no_grad()
    def auxiliary_outputs(self, images: Tensor) -> dict[str, Tensor]:
        """``valence_arousal`` from the VA head and ``au_probs`` = sigmoid of the AU logits
        s (eq 8) where those branches exist."""
        f = self.net.backbone(images)
        out = {}
        if self.va_head is not None:
            out["valence_arousal"] = torch.tanh(self.va_head(f))
        if self.au_head is not None:
            out["au_probs"] = torch.sigmoid(self.au_head(f))
        return out

    def inference_heads(self) -> dict[str, Any]:
        """The VA head and the AU graph head, where those branches exist."""
        return {k: m for k, m in (("va", self.va_head), ("au", self.au_head)) if m is not None}

    def diagnostics(self, train_set: Any) -> dict[str, Any]:
        """The memory-template diagnostics (``mtac_diagnostics.template_diagnostics``, with a
        600-step probe AU head) on the un-augmented training split; {} without AU branch."""
        if self.au_head is None:
            return {}
        from ufer.methods.mtac_diagnostics import template_diagnostics

        return template_diagnostics(self, train_set, probe_steps=600)

    # ----------------------------------------------------------------- optimisation
    def param_groups(self) -> list[dict[str, Any]]:
        """Network and VA head at ``lr``; the confidence head at ``confidence_lr`` (default
        ``lr``: then it shares the VA head's groups, as in runs from before the switch); the
        AU branch at ``au_lr``."""
        hp = self.hparams
        heads: dict[float, list[nn.Parameter]] = {}
        for head, lr in ((self.confidence_head, hp.confidence_lr or hp.lr), (self.va_head, hp.lr)):
            if head is not None:
                heads.setdefault(lr, []).extend(head.parameters())
        groups = super().param_groups()
        for lr, params in heads.items():
            groups += decayed_groups(params, lr, hp.weight_decay)
        if self.au_head is not None:
            au = decayed_groups(self.au_head.parameters(), hp.au_lr, hp.weight_decay)
            groups += [{**g, "scheduled": hp.au_lr_decay} for g in au]
        return groups


# --------------------------------------------------------------------- AU graph files
def save_au_graph(manifest: str | Path, path: str | Path, threshold: float = 0.5) -> Path:
    """Compute the training split's AU graph A (eq 6) of ``manifest`` and save it to ``path``.

    The file (``torch.save`` of ``{"graph": (M, M), "aus": [names]}``) is what
    ``au_graph_path`` reads, e.g. a RAF-DB graph used to train on AffWild2 (MTAC table IV).
    """
    from ufer.data.datamodule import FERDataModule

    train = FERDataModule(str(manifest), cache=False).train_set
    au, mask = train.au_matrix()
    path = Path(path)
    torch.save({"graph": au_cooccurrence_graph(au, mask, threshold),
                "aus": list(train.au_names)}, path)
    return path


def load_au_graph(path: str | Path, au_names: list[str] | None = None) -> Tensor:
    """Read an (M, M) AU graph from .npy or .pt (a tensor or ``save_au_graph``'s dict).

    When the file names its AUs and ``au_names`` is given, the graph is reordered to
    ``au_names``; an AU the file lacks is an error naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"AU graph file not found: {path}")
    if path.suffix == ".npy":
        data: Any = torch.from_numpy(np.load(path))
    else:
        data = torch.load(path, map_location="cpu", weights_only=True)
    names = None
    if isinstance(data, dict):
        graph, names = torch.as_tensor(data["graph"]), data.get("aus")
    else:
        graph = torch.as_tensor(data)
    graph = graph.float()
    if graph.dim() != 2 or graph.shape[0] != graph.shape[1]:
        raise ValueError(f"{path}: an AU graph must be a square (M, M) matrix, "
                         f"got shape {tuple(graph.shape)}")
    if names is not None and au_names is not None:
        missing = [a for a in au_names if a not in names]
        if missing:
            raise ValueError(f"{path}: the graph has no entry for AUs {missing} of the data")
        order = torch.tensor([list(names).index(a) for a in au_names])
        graph = graph[order][:, order]
    return graph


@register_method("ulcag")
class ULCAG(MTAC):
    """ULC-AG (ICPR 2022), MTAC's earlier version: the same class with ULC-AG's switches as
    defaults, so ``create_method("ulcag")``, ``ufer bench`` and ``--model ULCAG`` reach it.

    Defaults (shared/papers/ulcag-icpr2022.md; mirrored in configs/paper/ulcag_rafdb.yaml):
    logits scaled by alpha * gamma_y (eq 3), rank regularization (eq 4), no VA branch,
    AU branch sharing the backbone (multi-task), started after 10 epochs, templates from the
    high-confidence set (eq 8), relabeling one epoch later (ours), total loss of eq 11.
    """

    paper_config = "ulcag_rafdb.yaml"

    def __init__(self, gamma: Literal["none", "target", "va", "auto"] = "target",
                 rank_regularization: bool = True, va_branch: bool = False,
                 au_grad_to_backbone: bool = True, au_start_epoch: int = 10,
                 template_from: Literal["all", "high"] = "high", relabel_start: int = 11,
                 loss_form: Literal["mtac", "ulcag"] = "ulcag", **kwargs: Any):
        super().__init__(gamma=gamma, rank_regularization=rank_regularization,
                         va_branch=va_branch, au_grad_to_backbone=au_grad_to_backbone,
                         au_start_epoch=au_start_epoch, template_from=template_from,
                         relabel_start=relabel_start, loss_form=loss_form, **kwargs)
