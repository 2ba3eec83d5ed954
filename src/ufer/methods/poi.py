"""poi: Prior-based Objective Inference (Liu, Cai, Lin, Li, Xiao; arXiv 2411.13024).

POI's published text lost all of its equations (1-12) and its code is not reachable. What
runs here is the reconstruction of ``shared/spec/peers.md`` section 1.3, with the defaults
of ``shared/spec/poi.md``; every choice marked [inferred] there is a switch below.

Training (``forward_train``), on the shared extractor's stage-3 map X (eq 1):

- PIN (``models.subregions.PriorInferenceNetwork``): four corner crops, right ones flipped
  (eq 2); eye branch P1 on the top crops, mouth branch P2 on the bottom crops; 13 AU nets
  with importance weights (eq 3) trained on the emotion-AU prior of table I
  (``data.au_prior``) for the sample's CURRENT label, smoothed (eq 4); subregion classifiers
  (CE, eq 5); temperature softmax (eq 6); the OIM's gate and intermediate prediction q_bar
  (eq 7); mutual learning KL(q_bar || q_r) (eq 8).
- TRN = ``self.net`` (the plain backbone + classifier): CE on the label (eq 9); the UEM's
  confidence c from its own predictions on the four crops (eq 10); distillation of q_bar
  weighted by 1 - c (eq 11).
- Total (eq 12): lambda3 CE_TRN + KD + ML + lambda1 L_AU + lambda2 (CE_PIN + CE_gate).

Inference and export are ``self.net`` only; ``inference_uncertainty`` is the UEM from the
TRN alone (the paper's table IV). Table X's switches: ``prior_branches`` (PB),
``oim`` (OIM), ``uem`` (UEM); table III's "inpre" is ``oim=False``.
"""
from __future__ import annotations

import logging
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics.classification import MulticlassAccuracy

from ufer._registry import register_method
from ufer.data import schema
from ufer.data.au_prior import CITATION, PRIOR_AUS, TABLE, au_columns, prior_matrix, smooth
from ufer.losses.poi import (
    au_prior_loss,
    intermediate_prediction,
    mutual_learning,
    subregion_ce,
    weighted_distillation,
)
from ufer.methods.base import Batch, FERMethod, decayed_groups
from ufer.methods.state import unused_parameters_term
from ufer.models.subregions import (
    SHARED_STAGE,
    UEM_KIND,
    PriorInferenceNetwork,
    corner_crops,
    crop_uncertainty,
    eval_mode,
    map_uncertainty,
)

log = logging.getLogger(__name__)

_CHOICES = {"gate_on": ("probs", "logits"), "au_targets": ("prior", "data", "data_then_prior"),
            "prior_stage": ("resnet_stage", "conv3x3"), "au_gate": ("scalar", "vector"),
            "subregion_classifier": ("branch", "subregion")}


def _class_names(class_names: list[str] | None, num_classes: int) -> list[str]:
    """The classes in label order; without names, the first C of ufer's order."""
    return list(class_names) if class_names else list(schema.EMOTIONS8[:num_classes])


def _prior_problem(class_names: list[str]) -> str | None:
    unknown = [c for c in class_names if c not in TABLE]
    if not unknown:
        return None
    return (f"POI's AU targets come from the emotion-AU prior ({CITATION}), which has no row "
            f"for classes {unknown}; map them onto {list(TABLE)} or use au_targets='data' "
            "with AU columns in the manifest")


@register_method("poi")
class POI(FERMethod):
    """POI, reconstructed (see module docstring). Defaults: ``shared/spec/poi.md``.

    Args:
        crop_frac: crop side k as a fraction of the stage-3 map (9/14: k = 9 on the 14 x 14
            map at 224 px, table XI); at least 1.
        temperature: T of eqs 6, 8, 11 (3, table XII).
        prior_stage: the prior branches' "convolutional layer": ``resnet_stage`` = a copy
            of the backbone's layers after stage 3 (ResNet-18: layer4) [inferred];
            ``conv3x3`` = one 3x3 conv with stride 2 + BN + ReLU (cheaper).
        au_dim, au_embed_dim: d_a and d_e of the AU nets (lost; 256 and 64 ours).
        au_gate: the AU importance weight of eq 3: ``scalar`` per AU [inferred] or
            ``vector`` (elementwise).
        subregion_classifier: ``branch`` (one per prior branch, both crops) or
            ``subregion`` (one per crop) [inferred].
        prior_branches: PB of table X: the AU supervision from the prior (eq 4); off = the
            subregion branches learn without AU targets.
        oim: OIM of table X: the gate, q_bar (eq 7) and mutual learning (eq 8); off = table
            III's "inpre": no gate, no KL, the soft label is the mean of the subregion
            predictions [inferred].
        uem: UEM of table X: weight the distillation by 1 - c (eq 11); off = weight 1.
        uem_weights_ce: also weight the TRN's CE per image by c (a variant, peers.md 1.3
            eq 11); with neither PB nor OIM this is what the UEM does alone.
        gate_on: eq 7 gates ``probs`` (sum_r g_r softmax(o_r/T)) [inferred] or ``logits``
            (ONE's softmax(sum_r g_r o_r / T)).
        gate_ce: train the gate with a CE on the gated logits sum_r g_r o_r (ONE's
            ensemble CE) [inferred]; without it (and with ``detach_teacher``) the gate gets
            no gradient and is declared unused for DDP.
        detach_teacher: stop-gradient on q_bar in eqs 8 and 11 [inferred].
        au_targets: ``prior`` (table I for the current label); ``data`` (the manifest's AU
            columns, AUs it lacks get no loss); ``data_then_prior`` (the manifest where
            known, else the prior).
        au_eps: eps of the AU target smoothing z (1 - eps) + eps / 2 (eq 4; lost, 0.1 ours).
        lambda1, lambda2, lambda3: eq 12's weights of L_AU, the PIN's CE and the TRN's CE
            (lost; 1.0, 0.5, 1.0 ours, lambda2 < lambda3 as the text says).
        compare_pin: at validation and test also log the accuracy of the PIN's
            intermediate prediction (``acc_p_in``) and subregion mean (``acc_p_avg``) next
            to the TRN's ``acc`` (section IV-H); costs a PIN pass per evaluation batch.
        **kwargs: the ``FERMethod`` arguments (backbone, sizes, optimizer, schedule).
    """

    uncertainty_name = "UEM 1 - c"
    paper_config = "poi_rafdb.yaml"

    def __init__(self, crop_frac: float = 9 / 14, temperature: float = 3.0,
                 prior_stage: Literal["resnet_stage", "conv3x3"] = "resnet_stage",
                 au_dim: int = 256, au_embed_dim: int = 64,
                 au_gate: Literal["scalar", "vector"] = "scalar",
                 subregion_classifier: Literal["branch", "subregion"] = "branch",
                 prior_branches: bool = True, oim: bool = True, uem: bool = True,
                 uem_weights_ce: bool = False, gate_on: Literal["probs", "logits"] = "probs",
                 gate_ce: bool = True, detach_teacher: bool = True,
                 au_targets: Literal["prior", "data", "data_then_prior"] = "prior",
                 au_eps: float = 0.1, lambda1: float = 1.0, lambda2: float = 0.5,
                 lambda3: float = 1.0, compare_pin: bool = False, **kwargs: Any):
        super().__init__(**kwargs)
        for name, choices in _CHOICES.items():
            if locals()[name] not in choices:
                raise ValueError(f"{name} must be one of {choices}, got {locals()[name]!r}")
        if temperature <= 0:
            raise ValueError(f"temperature must be positive, got {temperature}")
        hp = self.hparams
        self.pin = None
        if prior_branches or oim:
            self.pin = PriorInferenceNetwork(self.net.backbone, hp.num_classes, prior_stage,
                                             au_dim, au_embed_dim, au_gate,
                                             subregion_classifier, gate=oim)
        names = _class_names(hp.class_names, hp.num_classes)
        if prior_branches and au_targets != "data":
            problem = _prior_problem(names)
            if problem:
                raise ValueError(problem)
            prior = torch.from_numpy(prior_matrix(names))
        else:
            prior = torch.zeros(hp.num_classes, len(PRIOR_AUS))
        self.register_buffer("prior", prior, persistent=False)  # (C, M) table I
        # column of each PRIOR_AUS entry in the data's AU columns, -1 = absent (setup_from_data)
        self.register_buffer("au_index", torch.full((len(PRIOR_AUS),), -1, dtype=torch.long))
        if uem:
            self.samples.add("uem")  # latest 1 - c per training sample, NaN = unseen
        if compare_pin:  # section IV-H: accuracy of P_in and P_avg next to the TRN's
            self.val_acc_p_in = MulticlassAccuracy(hp.num_classes, average="micro")
            self.val_acc_p_avg = MulticlassAccuracy(hp.num_classes, average="micro")

    @classmethod
    def data_problem(cls, sizes: dict[str, Any]) -> str | None:
        """Classes the emotion-AU prior does not cover (with the default ``au_targets``)."""
        return _prior_problem(_class_names(sizes.get("class_names"), sizes["num_classes"]))

    # ----------------------------------------------------------------- data statistics
    def setup_from_data(self, datamodule: Any) -> None:
        """Find POI's 13 AUs among the data's AU columns (``au_targets`` data modes)."""
        hp = self.hparams
        if self.pin is None or not hp.prior_branches or hp.au_targets == "prior":
            return
        names = list(datamodule.train_set.au_names)
        index = [names.index(c) if c in names else -1 for c in au_columns()]
        self.au_index.copy_(torch.tensor(index))
        missing = [c for c, i in zip(au_columns(), index) if i < 0]
        if hp.au_targets == "data" and len(missing) == len(PRIOR_AUS):
            raise ValueError(f"au_targets='data' but the data has none of POI's AUs "
                             f"{au_columns()}; use au_targets='prior' or 'data_then_prior'")
        if missing:
            log.info("POI: the data lacks %s; %s", missing,
                     "no AU loss for them" if hp.au_targets == "data" else "prior targets there")

    # ----------------------------------------------------------------- training
    def forward_train(self, batch: Batch) -> dict[str, Tensor]:
        hp = self.hparams
        x3 = self.net.backbone.forward_until(batch["image"], SHARED_STAGE)  # eq 1
        f = self.net.backbone.forward_from(x3, SHARED_STAGE)
        out = {"features": f, "logits": self.net.classifier(f)}
        if self.pin is not None:
            pin = self.pin(corner_crops(x3, hp.crop_frac))
            out.update(pin_logits=pin["logits"], au_logits=pin["au_logits"])
            if "gate" in pin:
                out["gate"] = pin["gate"]
        if hp.uem:
            out["uem"] = self.uem_of_map(x3)
        return out

    @torch.no_grad()
    def uem_of_map(self, x3: Tensor) -> Tensor:
        """1 - c (reconstructed eq 10) of the TRN in eval mode (its running BatchNorm
        statistics, left unchanged) on the crops of a stage-3 map (N, C_s, H, W) -> (N,)."""
        with eval_mode(self.net):
            return map_uncertainty(self.net, x3.detach(), self.hparams.crop_frac)

    def au_targets(self, batch: Batch, labels: Tensor) -> tuple[Tensor, Tensor]:
        """Smoothed AU targets (N, M) over ``PRIOR_AUS`` and where they are known (N, M)
        (eq 4): the prior row of the CURRENT label, the data's AUs, or both."""
        hp = self.hparams
        prior = self.prior[labels]
        known = torch.ones_like(prior, dtype=torch.bool)
        if hp.au_targets != "prior":
            present = self.au_index >= 0
            if "au" in batch:
                columns = self.au_index.clamp(min=0)
                data = batch["au"][:, columns].float()
                observed = batch["au_mask"][:, columns] & present
            else:
                data, observed = torch.zeros_like(prior), torch.zeros_like(known)
            if hp.au_targets == "data":
                prior, known = data, observed
            else:
                prior = torch.where(observed, data, prior)
        return smooth(prior, hp.au_eps), known

    def training_losses(self, batch: Batch, out: dict[str, Tensor]) -> dict[str, Tensor]:
        hp = self.hparams
        y, u = self.targets(batch), out["logits"]
        zero = u.new_zeros((), dtype=torch.float32)
        confidence = 1.0 - out["uem"] if hp.uem else None
        ce = F.cross_entropy(u.float(), y, reduction="none")  # eq 9
        ce_trn = (confidence * ce).mean() if confidence is not None and hp.uem_weights_ce \
            else ce.mean()
        losses = {"ce_trn": ce_trn, "ce_pin": zero, "ce_gate": zero, "ml": zero, "kd": zero,
                  "au": zero}
        unused: list[Any] = []
        if self.pin is not None:
            o = out["pin_logits"]
            losses["ce_pin"] = subregion_ce(o, y)  # eq 5
            if "gate" in out:
                q_bar = intermediate_prediction(out["gate"], o, hp.temperature, hp.gate_on)
                teacher = q_bar.detach() if hp.detach_teacher else q_bar
                losses["ml"] = mutual_learning(teacher, o, hp.temperature)  # eq 8
                if hp.gate_ce:
                    gated = (out["gate"].unsqueeze(2) * o.float()).sum(dim=1)
                    losses["ce_gate"] = F.cross_entropy(gated, y)
                elif hp.detach_teacher:
                    unused.append(self.pin.gate)
            else:  # "inpre" (table III): the soft label is the mean subregion prediction
                teacher = (o.float() / hp.temperature).softmax(dim=2).mean(dim=1).detach()
            weight = 1.0 - confidence if confidence is not None else torch.ones_like(ce)
            losses["kd"] = weighted_distillation(teacher, u, weight, hp.temperature)  # eq 11
            if hp.prior_branches:
                targets, known = self.au_targets(batch, y)
                mask = self.pin.au_mask.unsqueeze(0) & known.unsqueeze(1)
                losses["au"] = au_prior_loss(out["au_logits"], targets, mask)  # eq 4
            else:
                unused += self.pin.occurrence_heads()
        total = (hp.lambda3 * losses["ce_trn"] + losses["kd"] + losses["ml"]  # eq 12
                 + hp.lambda1 * losses["au"] + hp.lambda2 * (losses["ce_pin"] + losses["ce_gate"])
                 + unused_parameters_term(*unused).to(zero))
        return {"loss": total, **losses}

    def update_state(self, batch: Batch, out: dict[str, Tensor]) -> None:
        """Record each sample's latest UEM score 1 - c."""
        if "uem" in out:
            self.samples.write(batch["index"], uem=out["uem"])

    # ----------------------------------------------------------------- hooks for the engine
    def sample_uncertainty(self) -> Tensor | None:
        """1 - c of each training sample's latest step (N,), NaN where unseen; None with the
        UEM switched off."""
        return self.samples.uem if self.hparams.uem else None

    @torch.no_grad()
    def inference_uncertainty(self, images: Tensor) -> Tensor:
        """The UEM's 1 - c from the TRN alone (``self.net``) on its four crops (table IV)."""
        return crop_uncertainty(self.net, images, self.hparams.crop_frac)

    def inference_heads(self) -> dict[str, Any]:
        """No heads: the UEM needs only ``self.net`` (``crop_uncertainty``)."""
        return {"uncertainty": {"kind": UEM_KIND, "crop_frac": float(self.hparams.crop_frac),
                                "name": self.uncertainty_name}}

    # ----------------------------------------------------------------- evaluation
    def _eval_step(self, batch: Batch, prefix: str) -> None:
        """The TRN's metrics; with ``compare_pin`` also P_in and P_avg (section IV-H)."""
        super()._eval_step(batch, prefix)
        if not self.hparams.compare_pin or self.pin is None:
            return
        hp, size = self.hparams, batch["label"].shape[0]
        x3 = self.net.backbone.forward_until(batch["image"], SHARED_STAGE)
        pin = self.pin(corner_crops(x3, hp.crop_frac))
        q = (pin["logits"].float() / hp.temperature).softmax(dim=2)
        if "gate" in pin:
            p_in = intermediate_prediction(pin["gate"], pin["logits"], hp.temperature,
                                           hp.gate_on)
            self.val_acc_p_in(p_in, batch["label"])
            self.log(f"{prefix}/acc_p_in", self.val_acc_p_in, batch_size=size)
        self.val_acc_p_avg(q.mean(dim=1), batch["label"])
        self.log(f"{prefix}/acc_p_avg", self.val_acc_p_avg, batch_size=size)

    # ----------------------------------------------------------------- optimisation
    def param_groups(self) -> list[dict[str, Any]]:
        """The network and the PIN, both at ``lr``."""
        groups = super().param_groups()
        if self.pin is not None:
            groups += decayed_groups(self.pin.parameters(), self.hparams.lr,
                                     self.hparams.weight_decay)
        return groups
